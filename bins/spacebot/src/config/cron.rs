//! `[[agents.cron]]`: an agent's scheduled jobs, checked as the scheduler will read them and
//! upserted into the store at start (the cron tool, the CLI and the API add more at run time).
//!
//! ```toml
//! [[agents.cron]]
//! id = "daily-summary"
//! prompt = "Summarise what happened in #ops today"
//! cron = "0 17 * * 1-5"          # or every = "30m"
//! timezone = "Europe/Berlin"
//! active_hours = [9, 18]
//! run_once = false
//! timeout = "10m"
//! deliver_to = "discord:123456789"
//! ```

use anyhow::bail;

use spacebot_core::{CronJob, CronJobSpec};

/// The checked jobs of agent `agent`, whose config key is `key` (`agents[0]`).
pub(crate) fn cron_jobs(specs: Vec<CronJobSpec>, agent: &str, key: &str) -> anyhow::Result<Vec<CronJob>> {
    let mut jobs: Vec<CronJob> = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let key = format!("{key}.cron[{index}]");
        let job = spec.into_job(agent).and_then(|job| spacebot_cortex::validate_job(&job).map(|()| job));
        let job = match job {
            Ok(job) => job.with_source("config"),
            Err(error) => bail!("config key `{key}`: {error}"),
        };
        if jobs.iter().any(|j| j.id == job.id) {
            bail!("config key `{key}.id`: cron job `{}` is defined twice", job.id);
        }
        jobs.push(job);
    }
    Ok(jobs)
}

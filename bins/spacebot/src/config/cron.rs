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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, Location};

    fn load_str(toml: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml)?;
        Config::load(&Location::new().with_config(&path).with_data_dir(dir.path()))
    }

    #[test]
    fn an_agent_s_jobs_are_read_and_checked() {
        let config = load_str(
            r#"
[[agents]]
id = "main"

[[agents.cron]]
id = "daily"
prompt = "Summarise the day"
cron = "0 17 * * 1-5"
timezone = "Europe/Berlin"
active_hours = [9, 18]
timeout = "5m"
deliver_to = "discord:123"

[[agents.cron]]
id = "ping"
prompt = "Ping"
every = "30m"
run_once = true
deliver_to = "webhook:c1"
"#,
        )
        .unwrap();
        let jobs = &config.agents[0].cron;
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!((jobs[0].active_hours, jobs[0].timeout), (Some((9, 18)), Some(Duration::from_secs(300))));
        assert_eq!((jobs[1].every, jobs[1].run_once), (Some(Duration::from_secs(1800)), true));
        assert!(jobs.iter().all(|j| j.source == "config" && j.agent.as_str() == "main"));

        let job =
            |body: &str| format!("[[agents]]\nid = \"main\"\n[[agents.cron]]\nid = \"j\"\nprompt = \"p\"\n{body}");
        for (toml, expected) in [
            (job("cron = \"every day\"\ndeliver_to = \"webhook:c1\""), "`agents[0].cron[0]`"),
            (job("every = \"soon\"\ndeliver_to = \"webhook:c1\""), "`every`"),
            (job("every = \"1m\"\ntimezone = \"Moon/Base\"\ndeliver_to = \"webhook:c1\""), "`timezone`"),
            (job("every = \"1m\"\ndeliver_to = \"nowhere\""), "`deliver_to`"),
            (job("every = \"1m\"\ndeliver_to = \"webhook:c1\"\nwhen = 3"), "when"),
            (
                format!(
                    "{}\n[[agents.cron]]\nid = \"j\"\nprompt = \"q\"\nevery = 5\ndeliver_to = \"webhook:c1\"",
                    job("every = 5\ndeliver_to = \"webhook:c1\"")
                ),
                "defined twice",
            ),
        ] {
            let error = load_str(&toml).unwrap_err().to_string();
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }
}

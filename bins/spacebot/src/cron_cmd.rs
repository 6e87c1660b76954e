//! `spacebot cron list|add|rm|run`: an agent's scheduled jobs, managed on the running daemon
//! through `/api/agents/{agent}/cron` (the `admin` scope).

use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::{CronAddArgs, CronArgs, CronCommand, GlobalArgs};
use crate::client::{Client, block_on};

pub(crate) fn run(global: &GlobalArgs, args: &CronArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(global)?;
    let base = format!("/api/agents/{}/cron", args.agent);
    match &args.command {
        CronCommand::List => {
            let answer = block_on(client.call(reqwest::Method::GET, &base, None))??;
            print!("{}", render(&answer));
        }
        CronCommand::Add(add) => {
            let body = body(add)?;
            let job = block_on(client.call(reqwest::Method::POST, &base, Some(&body)))??;
            println!("created {}", line(&job));
        }
        CronCommand::Rm { id } => {
            block_on(client.call(reqwest::Method::DELETE, &format!("{base}/{id}"), None))??;
            println!("deleted {id}");
        }
        CronCommand::Run { id } => {
            block_on(client.call(reqwest::Method::POST, &format!("{base}/{id}/run"), None))??;
            println!("started {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `POST` body: the fields of `[[agents.cron]]`.
fn body(add: &CronAddArgs) -> anyhow::Result<Value> {
    let active_hours = match &add.active_hours {
        Some(text) => {
            let (start, end) = text.split_once('-').context("--active-hours must be START-END, like 9-18")?;
            let hour =
                |h: &str| h.trim().parse::<u8>().with_context(|| format!("--active-hours: `{h}` is not an hour"));
            Some([hour(start)?, hour(end)?])
        }
        None => None,
    };
    if add.cron.is_none() && add.every.is_none() {
        bail!("give --cron or --every");
    }
    Ok(json!({
        "id": add.id,
        "prompt": add.prompt,
        "cron": add.cron,
        "every": add.every,
        "timezone": add.timezone,
        "active_hours": active_hours,
        "run_once": add.run_once,
        "timeout": add.timeout,
        "deliver_to": add.deliver_to,
    }))
}

/// One job as a line: `id  schedule  state  next run  -> target`.
fn line(job: &Value) -> String {
    let text = |key: &str| job[key].as_str().unwrap_or("").to_owned();
    let schedule = match (job["cron"].as_str(), job["every"].as_f64()) {
        (Some(cron), _) => match job["timezone"].as_str() {
            Some(tz) => format!("cron \"{cron}\" ({tz})"),
            None => format!("cron \"{cron}\""),
        },
        (None, Some(every)) => format!("every {every}s"),
        (None, None) => "no schedule".to_owned(),
    };
    let state = if job["enabled"].as_bool().unwrap_or(false) { "enabled" } else { "disabled" };
    let once = if job["run_once"].as_bool().unwrap_or(false) { ", once" } else { "" };
    let next = job["next_run"].as_str().unwrap_or("not planned");
    format!("{}  {schedule}{once}  {state}  next: {next}  -> {}", text("id"), text("deliver_to"))
}

fn render(answer: &Value) -> String {
    let jobs = answer["jobs"].as_array().map(Vec::as_slice).unwrap_or_default();
    if jobs.is_empty() {
        return "no cron jobs\n".to_owned();
    }
    jobs.iter().map(|job| line(job) + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_listed_one_per_line() {
        let answer = json!({ "jobs": [{
            "id": "daily", "cron": "0 17 * * *", "timezone": "Europe/Berlin", "every": null, "enabled": true,
            "run_once": false, "next_run": "2026-01-05T16:00:00Z", "deliver_to": "discord:1"
        }]});
        assert_eq!(
            render(&answer),
            "daily  cron \"0 17 * * *\" (Europe/Berlin)  enabled  next: 2026-01-05T16:00:00Z  -> discord:1\n"
        );
        assert_eq!(render(&json!({ "jobs": [] })), "no cron jobs\n");
    }
}

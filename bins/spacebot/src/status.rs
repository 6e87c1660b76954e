//! `spacebot status`: is the daemon running, and what does it host.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::client::{Client, block_on};

pub(crate) fn run(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(global)?;
    let status = block_on(client.status())??;
    let list = |key: &str| {
        status[key]
            .as_array()
            .map(|items| items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    println!("spacebot {} is running (up {}s)", status["version"].as_str().unwrap_or("?"), status["uptime_seconds"]);
    println!("agents: {}", list("agents"));
    println!("adapters: {}", list("adapters"));
    println!("live conversations: {}", status["conversations"]);
    let fleet = &status["fleet"];
    if fleet.is_object() {
        let members = fleet["members"].as_array().map(Vec::as_slice).unwrap_or_default();
        println!(
            "fleet: member {} of {} (leases of {} ms)",
            fleet["member"].as_str().unwrap_or("?"),
            members.len(),
            fleet["lease_ms"]
        );
        for member in members {
            let connections: Vec<&str> = member["connections"]
                .as_array()
                .map(|names| names.iter().filter_map(|name| name.as_str()).collect())
                .unwrap_or_default();
            let connections =
                if connections.is_empty() { String::new() } else { format!(", runs {}", connections.join(", ")) };
            println!(
                "  {} at {}: {} conversations{connections}, seen {} ms ago",
                member["member"].as_str().unwrap_or("?"),
                member["address"].as_str().unwrap_or("(no address)"),
                member["conversations"],
                member["seen_ms_ago"]
            );
        }
    }
    for notice in status["notices"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!("notice: {}", notice.as_str().unwrap_or("?"));
    }
    let processes = status["processes"].as_array().map(Vec::as_slice).unwrap_or_default();
    println!("live processes: {}", processes.len());
    for process in processes {
        let text = |key: &str| process[key].as_str().unwrap_or("?").to_owned();
        let limit = process["limit_seconds"].as_u64().map(|limit| format!(" of {limit}s")).unwrap_or_default();
        println!(
            "  {} {} [{}/{}] running {}s{limit}: {}",
            text("kind"),
            text("process"),
            text("agent"),
            text("conversation"),
            process["running_seconds"],
            text("description"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `spacebot mcp list`: each MCP server's state and tools. Asked of the running daemon
//! (`GET /api/mcp`) when there is one; otherwise the servers are connected to now, each given
//! its timeout, and closed again.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::client::{Client, NotRunning, block_on};
use crate::config::Config;

pub(crate) fn list(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(global)?;
    let report = match block_on(client.mcp())? {
        Ok(report) => report,
        Err(error) if error.is::<NotRunning>() => {
            let config = Config::load(&global.location())?;
            println!("spacebot is not running: connecting to each MCP server now");
            block_on(connect_now(&config))?
        }
        Err(error) => return Err(error),
    };
    print!("{}", render(&report));
    Ok(ExitCode::SUCCESS)
}

/// Connects to every configured server (stdio ones in the sandbox, as the daemon would), waits
/// for each to connect or fail, and reports.
async fn connect_now(config: &Config) -> Value {
    let clients = crate::mcp_setup::start(config, CancellationToken::new());
    let longest = config.mcp_servers.iter().map(|server| server.timeout).max().unwrap_or_default();
    clients.settled(longest + Duration::from_secs(1)).await;
    let report = serde_json::json!({ "servers": clients.status() });
    clients.shutdown().await;
    report
}

/// One block per server: its name, transport and state, then its tools.
fn render(report: &Value) -> String {
    let servers = report["servers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if servers.is_empty() {
        return "no MCP servers configured ([[mcp_servers]])\n".to_owned();
    }
    let mut out = String::new();
    for server in servers {
        let text = |key: &str| server[key].as_str().unwrap_or("?").to_owned();
        let state = &server["state"];
        let state = match state["reason"].as_str() {
            Some(reason) => format!("{}: {reason}", state["state"].as_str().unwrap_or("?")),
            None => state["state"].as_str().unwrap_or("?").to_owned(),
        };
        out.push_str(&format!("{} ({}): {state}\n", text("name"), text("transport")));
        for tool in server["tools"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let description = tool["description"].as_str().unwrap_or_default();
            let first_line = description.lines().next().unwrap_or_default();
            out.push_str(&format!("  {}  {first_line}\n", tool["name"].as_str().unwrap_or("?")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_shows_its_state_and_tools() {
        let report = serde_json::json!({ "servers": [
            { "name": "files", "transport": "stdio: npx fs", "state": { "state": "connected" },
              "tools": [{ "name": "files_read_file", "description": "Read a file.\nMore." }] },
            { "name": "web", "transport": "http: http://x/mcp", "state": { "state": "failed", "reason": "refused" },
              "tools": [] },
        ]});
        assert_eq!(
            render(&report),
            "files (stdio: npx fs): connected\n  files_read_file  Read a file.\nweb (http: http://x/mcp): failed: refused\n"
        );
        assert!(render(&serde_json::json!({ "servers": [] })).starts_with("no MCP servers"));
    }
}

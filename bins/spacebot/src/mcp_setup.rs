//! The daemon's MCP clients: `[[mcp_servers]]` started in the background, stdio servers in the
//! workers' sandbox, and their tools handed to every agent's workers.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use spacebot_agent::{AgentProfile, Launcher, Mounts, ToolSource};
use spacebot_core::Tool;
use spacebot_mcp::{McpClients, McpHandle, StdioLauncher, StdioSettings};

use crate::config::Config;

/// What a stdio MCP server gets when it may not run unsandboxed.
const NO_SANDBOX: &str = "stdio MCP servers are disabled: bubblewrap (`bwrap`) is not installed, and they don't run \
     unsandboxed unless the operator says so; install bubblewrap (`apt install bubblewrap`), or set \
     `tools.sandbox = \"off\"` to run them unsandboxed";

/// Starts stdio servers as the workers' shell commands run: in bubblewrap (the server's working
/// directory and `write_paths` writable, `read_paths` readable, the data dir and config hidden)
/// when the sandbox is on, refused under `auto` without bubblewrap.
struct SandboxLauncher {
    launcher: Result<Launcher, String>,
}

impl StdioLauncher for SandboxLauncher {
    fn command(&self, server: &StdioSettings) -> Result<tokio::process::Command, String> {
        let launcher = self.launcher.as_ref().map_err(Clone::clone)?;
        let mounts = Mounts::new(&server.workdir).with_writable(&server.writable).with_readable(&server.readable);
        let mut command =
            launcher.command(mounts, server.command.as_ref(), &server.args).ok_or_else(|| NO_SANDBOX.to_owned())?;
        command.kill_on_drop(true);
        Ok(command)
    }
}

/// The launcher for stdio servers under the config's `[tools]` sandbox settings.
fn launcher(config: &Config) -> Arc<dyn StdioLauncher> {
    let hidden = std::iter::once(config.data_dir.root().to_path_buf()).chain(config.source.clone());
    let settings = config.task_tools.clone().with_hidden_paths(hidden);
    Arc::new(SandboxLauncher { launcher: Launcher::new(&settings).map_err(|error| error.to_string()) })
}

/// Starts the configured servers' clients in the background (nothing waits for a server).
pub(crate) fn start(config: &Config, cancel: CancellationToken) -> McpClients {
    McpClients::start(&config.mcp_servers, launcher(config), cancel)
}

/// The MCP servers' tools, as the workers' tool source.
struct McpTools(McpHandle);

impl ToolSource for McpTools {
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.0.tools()
    }
}

/// Gives `profile`'s workers the tools of the servers connected when each starts.
pub(crate) fn with_tools(profile: AgentProfile, mcp: &McpHandle) -> AgentProfile {
    profile.with_tool_source(Arc::new(McpTools(mcp.clone())))
}

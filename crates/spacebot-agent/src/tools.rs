//! The tools of the agent's processes, behind one seam.
//!
//! Every tool's arguments are read once, by [`spacebot_core::parse_tool_args`] (which also takes
//! the arguments object encoded as a JSON string, as some OpenAI-compatible servers send it):
//! typed tools ([`spacebot_core::TypedTool`]) through their blanket [`spacebot_core::Tool`] impl,
//! and the channel's own tools, which act on the channel's state rather than run as `Tool`s,
//! through [`ChannelCall::parse`] (`tools/channel.rs`; the `cron` tool's body is in `tools/cron.rs`). The harness's tools of branches and
//! workers (`spawn_worker`, `set_status`) are in `tools/process.rs`; every other tool a branch
//! or worker calls runs through [`run_tool`].

mod channel;
mod cron;
mod process;

use std::sync::Arc;
use std::time::Duration;

use spacebot_core::{Scrubber, Tool, ToolCall};

pub use channel::{BRANCH_TOOL, CANCEL_TOOL, REACT_TOOL, REPLY_TOOL, ROUTE_TOOL, SKIP_TOOL, SPAWN_WORKER_TOOL};
pub(crate) use channel::{
    BranchArgs, CancelArgs, ChannelCall, ChannelToolSet, ReactArgs, RouteArgs, SpawnWorkerArgs, channel_tools,
    fallback_refusal,
};
pub use cron::CRON_TOOL;
pub(crate) use cron::run_cron_tool;
pub use process::SET_STATUS_TOOL;
pub(crate) use process::{BranchCall, WorkerCall, branch_spawn_worker_tool, set_status_tool};

/// Longest a single tool call of a branch or worker may take (shell has its own, shorter, limit).
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `call` on the tool of that name among `tools`, within [`TOOL_TIMEOUT`], and returns what
/// the model sees as its result: the output, or what went wrong.
///
/// What a tool returns goes through `scrubber` before the model sees it: a command that prints a
/// configured key (`env`, `cat` of a file holding it) gives the model `[redacted]`, not the key.
pub(crate) async fn run_tool(tools: &[Arc<dyn Tool>], call: &ToolCall, scrubber: &Scrubber) -> String {
    let Some(tool) = tools.iter().find(|tool| tool.name() == call.name) else {
        return format!("There is no tool named `{}`.", call.name);
    };
    let output = match tokio::time::timeout(TOOL_TIMEOUT, tool.call(call.arguments.clone())).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => format!("error: {error}"),
        Err(_) => format!("error: `{}` took longer than {} seconds", call.name, TOOL_TIMEOUT.as_secs()),
    };
    scrubber.scrub_owned(output)
}

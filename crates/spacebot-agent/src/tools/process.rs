//! The tools the harness itself gives branches and workers: a branch's `spawn_worker` (it may
//! delegate one task) and a worker's `set_status` (progress, and the outcome it must declare).
//! Their calls are read into [`BranchCall`] and [`WorkerCall`]; any other call goes to
//! [`run_tool`](super::run_tool).

use serde::Deserialize;
use serde_json::json;

use spacebot_core::{ToolCall, ToolSpec, parse_tool_args};

use super::channel::SPAWN_WORKER_TOOL;

/// The worker tool that reports progress and declares the outcome.
pub const SET_STATUS_TOOL: &str = "set_status";

/// The `spawn_worker` tool as a branch sees it: it may delegate one task.
pub(crate) fn branch_spawn_worker_tool() -> ToolSpec {
    ToolSpec::new(
        SPAWN_WORKER_TOOL,
        "Delegate one task to a worker and end this branch; the worker's outcome goes to the \
         conversation. At most once.",
        json!({
            "type": "object",
            "properties": { "task": { "type": "string", "description": "The task, complete and self-contained." } },
            "required": ["task"]
        }),
    )
}

/// The worker's `set_status` tool.
pub(crate) fn set_status_tool() -> ToolSpec {
    ToolSpec::new(
        SET_STATUS_TOOL,
        "Report progress (kind `progress`), or declare your outcome and finish: kind `done` with \
         the result, or kind `failed` with the reason. You must declare an outcome to finish.",
        json!({
            "type": "object",
            "properties": {
                "status": { "type": "string", "description": "Progress text, or the result / failure reason." },
                "kind": { "type": "string", "enum": ["progress", "done", "failed"] }
            },
            "required": ["status"]
        }),
    )
}

/// A branch's call, read.
#[derive(Debug)]
pub(crate) enum BranchCall {
    /// Delegate this task to a worker (and end the branch).
    SpawnWorker(String),
    /// A `spawn_worker` call that can't be carried out: the text for the model.
    Invalid(String),
    /// Any other tool: [`run_tool`](super::run_tool) runs it.
    Tool,
}

impl BranchCall {
    pub(crate) fn parse(call: &ToolCall) -> Self {
        if call.name != SPAWN_WORKER_TOOL {
            return Self::Tool;
        }
        #[derive(Deserialize)]
        struct Args {
            task: String,
        }
        match parse_tool_args::<Args>(SPAWN_WORKER_TOOL, &call.arguments) {
            Ok(args) if !args.task.trim().is_empty() => Self::SpawnWorker(args.task),
            Ok(_) => Self::Invalid("`spawn_worker` needs a non-empty `task`.".to_owned()),
            Err(error) => Self::Invalid(error.to_string()),
        }
    }
}

/// What `set_status` declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatusKind {
    Progress,
    Done,
    #[serde(alias = "failure", alias = "error")]
    Failed,
}

/// A worker's call, read.
#[derive(Debug)]
pub(crate) enum WorkerCall {
    /// Progress text for the status block.
    Progress(String),
    /// The outcome of its task: success or failure, with the result or reason.
    Outcome { success: bool, text: String },
    /// A `set_status` call that can't be read: the text for the model.
    Invalid(String),
    /// Any other tool: [`run_tool`](super::run_tool) runs it.
    Tool,
}

impl WorkerCall {
    pub(crate) fn parse(call: &ToolCall) -> Self {
        if call.name != SET_STATUS_TOOL {
            return Self::Tool;
        }
        #[derive(Deserialize)]
        struct Args {
            #[serde(alias = "text", alias = "message")]
            status: String,
            #[serde(default = "progress")]
            kind: StatusKind,
        }
        fn progress() -> StatusKind {
            StatusKind::Progress
        }
        match parse_tool_args::<Args>(SET_STATUS_TOOL, &call.arguments) {
            Ok(Args { status, kind: StatusKind::Progress }) => Self::Progress(status),
            Ok(Args { status, kind }) => Self::Outcome { success: kind == StatusKind::Done, text: status },
            Err(error) => Self::Invalid(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
        ToolCall::new("c1", name, arguments)
    }

    #[test]
    fn set_status_reads_progress_and_outcomes_in_either_shape() {
        let done = json!({ "status": "all good", "kind": "done" });
        for arguments in [done.clone(), json!(done.to_string())] {
            let parsed = WorkerCall::parse(&call(SET_STATUS_TOOL, arguments));
            assert!(
                matches!(parsed, WorkerCall::Outcome { success: true, ref text } if text == "all good"),
                "{parsed:?}"
            );
        }
        assert!(matches!(
            WorkerCall::parse(&call(SET_STATUS_TOOL, json!({ "text": "step 2" }))),
            WorkerCall::Progress(_)
        ));
        assert!(matches!(
            WorkerCall::parse(&call(SET_STATUS_TOOL, json!({ "status": "x", "kind": "error" }))),
            WorkerCall::Outcome { success: false, .. }
        ));
        assert!(matches!(WorkerCall::parse(&call(SET_STATUS_TOOL, json!({}))), WorkerCall::Invalid(_)));
        assert!(matches!(WorkerCall::parse(&call("shell", json!({}))), WorkerCall::Tool));
    }

    #[test]
    fn a_branch_delegates_only_a_real_task() {
        let parsed = BranchCall::parse(&call(SPAWN_WORKER_TOOL, json!("{\"task\": \"fetch it\"}")));
        assert!(matches!(parsed, BranchCall::SpawnWorker(ref task) if task == "fetch it"), "{parsed:?}");
        assert!(matches!(BranchCall::parse(&call(SPAWN_WORKER_TOOL, json!({ "task": " " }))), BranchCall::Invalid(_)));
        assert!(matches!(BranchCall::parse(&call("memory_recall", json!({}))), BranchCall::Tool));
    }
}

//! The channel's tools and the checks on plain-text fallback replies.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::json;

use spacebot_core::ToolSpec;

use crate::context::chronicle::chronicle_tool_spec;

/// The tool that sends a message to the conversation and ends the turn.
pub const REPLY_TOOL: &str = "reply";
/// The tool that ends the turn without a message.
pub const SKIP_TOOL: &str = "skip";

/// The tool that reacts to the message with an emoji; the turn goes on.
pub const REACT_TOOL: &str = "react";
/// The tool that starts a branch.
pub const BRANCH_TOOL: &str = "branch";
/// The tool that starts a worker.
pub const SPAWN_WORKER_TOOL: &str = "spawn_worker";
/// The tool that sends a message to a worker.
pub const ROUTE_TOOL: &str = "route";
/// The tool that cancels a branch or worker.
pub const CANCEL_TOOL: &str = "cancel";
/// The worker tool that reports progress and declares the outcome.
pub const SET_STATUS_TOOL: &str = "set_status";

/// The tools a channel offers the model, in a fixed order so requests are byte-stable, with
/// `chronicle` last when the conversation has (or, in chronicle mode, will have) checkpoints.
/// Built once and shared by every request.
pub(crate) fn channel_tools(chronicle: bool) -> Arc<[ToolSpec]> {
    static TOOLS: OnceLock<Arc<[ToolSpec]>> = OnceLock::new();
    static WITH_CHRONICLE: OnceLock<Arc<[ToolSpec]>> = OnceLock::new();
    if chronicle {
        WITH_CHRONICLE
            .get_or_init(|| build_channel_tools().into_iter().chain([chronicle_tool_spec(false)]).collect())
            .clone()
    } else {
        TOOLS.get_or_init(|| Arc::from(build_channel_tools())).clone()
    }
}

fn build_channel_tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec::new(
            REPLY_TOOL,
            "Send a message to the conversation. Ends your turn.",
            json!({
                "type": "object",
                "properties": {
                    "content": { "type": "string", "description": "The message to send." }
                },
                "required": ["content"]
            }),
        ),
        ToolSpec::new(
            SKIP_TOOL,
            "Send nothing this turn, when the message needs no answer. Ends your turn.",
            json!({
                "type": "object",
                "properties": {
                    "reason": { "type": "string", "description": "Why no reply is needed (for logs)." }
                }
            }),
        ),
        ToolSpec::new(
            REACT_TOOL,
            "React to the message with an emoji. Your turn goes on: still `reply` or `skip`.",
            json!({
                "type": "object",
                "properties": { "emoji": { "type": "string", "description": "One emoji." } },
                "required": ["emoji"]
            }),
        ),
        ToolSpec::new(
            BRANCH_TOOL,
            "Think something through in the background with a copy of this conversation (recall, \
             plan, decide). Returns at once; the conclusion arrives later as a background result.",
            json!({
                "type": "object",
                "properties": { "task": { "type": "string", "description": "What to think about." } },
                "required": ["task"]
            }),
        ),
        ToolSpec::new(
            SPAWN_WORKER_TOOL,
            "Start a worker that does a task with tools (shell, files, web) in the background. \
             Returns at once; its outcome arrives later as a background result. An interactive \
             worker stays available for follow-ups sent with `route`.",
            json!({
                "type": "object",
                "properties": {
                    "task": { "type": "string", "description": "The task, complete and self-contained." },
                    "interactive": { "type": "boolean", "description": "Keep the worker for follow-ups." }
                },
                "required": ["task"]
            }),
        ),
        ToolSpec::new(
            ROUTE_TOOL,
            "Send a message to a worker: a follow-up task to an idle interactive worker, or more \
             context to a running one.",
            json!({
                "type": "object",
                "properties": {
                    "worker_id": { "type": "string" },
                    "message": { "type": "string" }
                },
                "required": ["worker_id", "message"]
            }),
        ),
        ToolSpec::new(
            CANCEL_TOOL,
            "Cancel a running branch or worker.",
            json!({
                "type": "object",
                "properties": {
                    "process_id": { "type": "string" },
                    "reason": { "type": "string" }
                },
                "required": ["process_id"]
            }),
        ),
    ]
}

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

/// Reads a tool's arguments into `T`, accepting an arguments object sent as a JSON string.
pub(crate) fn parse_args<T: serde::de::DeserializeOwned>(
    tool: &str,
    arguments: &serde_json::Value,
) -> Result<T, String> {
    let parsed = match arguments {
        serde_json::Value::String(raw) => serde_json::from_str::<T>(raw),
        other => serde_json::from_value::<T>(other.clone()),
    };
    parsed.map_err(|error| format!("invalid arguments for `{tool}`: {error}."))
}

/// Arguments of `react`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReactArgs {
    pub(crate) emoji: String,
}

/// Arguments of `branch`.
#[derive(Debug, Deserialize)]
pub(crate) struct BranchArgs {
    #[serde(alias = "description", alias = "prompt")]
    pub(crate) task: String,
}

/// Arguments of `spawn_worker`.
#[derive(Debug, Deserialize)]
pub(crate) struct SpawnWorkerArgs {
    pub(crate) task: String,
    #[serde(default)]
    pub(crate) interactive: bool,
}

/// Arguments of `route`.
#[derive(Debug, Deserialize)]
pub(crate) struct RouteArgs {
    #[serde(alias = "id", alias = "process_id")]
    pub(crate) worker_id: String,
    #[serde(alias = "content", alias = "text")]
    pub(crate) message: String,
}

/// Arguments of `cancel`.
#[derive(Debug, Deserialize)]
pub(crate) struct CancelArgs {
    #[serde(alias = "id", alias = "worker_id", alias = "branch_id")]
    pub(crate) process_id: String,
    #[serde(default)]
    pub(crate) reason: Option<String>,
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

/// Arguments of `set_status`.
#[derive(Debug, Deserialize)]
pub(crate) struct SetStatusArgs {
    #[serde(alias = "text", alias = "message")]
    pub(crate) status: String,
    #[serde(default = "progress")]
    pub(crate) kind: StatusKind,
}

fn progress() -> StatusKind {
    StatusKind::Progress
}

#[derive(Debug, Deserialize)]
struct ReplyArgs {
    #[serde(alias = "text", alias = "message")]
    content: String,
}

/// The message of a `reply` call, or the error text to show the model.
pub(crate) fn parse_reply(arguments: &serde_json::Value) -> Result<String, String> {
    // Some models send the arguments object as a JSON string.
    let parsed = match arguments {
        serde_json::Value::String(raw) => serde_json::from_str::<ReplyArgs>(raw),
        other => serde_json::from_value::<ReplyArgs>(other.clone()),
    };
    match parsed {
        Ok(args) if args.content.trim().is_empty() => {
            Err("`reply` needs a non-empty `content`; call `skip` to send nothing.".to_owned())
        }
        Ok(args) => Ok(args.content),
        Err(error) => Err(format!("invalid arguments for `reply`: {error}; expected {{\"content\": \"...\"}}.")),
    }
}

/// Why plain model text must not be sent as a fallback reply, if it must not.
pub(crate) fn fallback_refusal(text: &str) -> Option<&'static str> {
    if looks_like_tool_syntax(text) {
        Some("it looks like a tool call written as text")
    } else if contains_secret(text) {
        Some("it appears to contain a secret")
    } else {
        None
    }
}

fn looks_like_tool_syntax(text: &str) -> bool {
    let trimmed = text.trim();
    if ["<tool_call", "<function", "<|tool", "[TOOL_CALLS]", "```tool"].iter().any(|tag| trimmed.contains(tag)) {
        return true;
    }
    // A bare JSON object naming a tool, as weak models emit when they mean to call one.
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(map)) => {
            map.contains_key("name") && (map.contains_key("arguments") || map.contains_key("parameters"))
                || map.contains_key("tool")
                || map.contains_key("function")
        }
        _ => false,
    }
}

fn contains_secret(text: &str) -> bool {
    const PREFIXES: [(&str, usize); 7] =
        [("sk-", 20), ("sk-ant-", 20), ("xoxb-", 10), ("xoxp-", 10), ("xapp-", 10), ("ghp_", 20), ("github_pat_", 20)];
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY") {
        return true;
    }
    text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | '(' | ')')).any(|word| {
        PREFIXES.iter().any(|(prefix, min_len)| {
            word.strip_prefix(prefix).is_some_and(|rest| {
                rest.len() >= *min_len && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_arguments_are_parsed_leniently_but_checked() {
        assert_eq!(parse_reply(&json!({"content": "hi"})), Ok("hi".to_owned()));
        assert_eq!(parse_reply(&json!({"text": "hi"})), Ok("hi".to_owned()));
        assert_eq!(parse_reply(&json!("{\"content\": \"hi\"}")), Ok("hi".to_owned()));
        assert!(parse_reply(&json!({"content": "  "})).is_err());
        assert!(parse_reply(&json!({"body": "hi"})).unwrap_err().contains("expected"));
    }

    #[test]
    fn ordinary_text_is_a_valid_fallback() {
        assert_eq!(fallback_refusal("Sure, the meeting is at 3pm."), None);
        assert_eq!(fallback_refusal("{\"weather\": \"sunny\"}"), None);
        assert_eq!(fallback_refusal("use the sk- prefix for keys"), None);
    }

    #[test]
    fn tool_syntax_is_not_sent() {
        assert!(fallback_refusal("{\"name\": \"reply\", \"arguments\": {\"content\": \"x\"}}").is_some());
        assert!(fallback_refusal("<tool_call>{\"name\":\"reply\"}</tool_call>").is_some());
    }

    #[test]
    fn secrets_are_not_sent() {
        assert!(fallback_refusal("your key is sk-abcdefghijklmnopqrstuvwx").is_some());
        assert!(fallback_refusal("token: xoxb-1234567890-abcdef").is_some());
        assert!(fallback_refusal("-----BEGIN RSA PRIVATE KEY-----\nabc").is_some());
    }
}

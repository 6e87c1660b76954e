//! The channel's tools: their specs, their arguments read once into a [`ChannelCall`], and the
//! checks on plain-text fallback replies.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::json;

use spacebot_core::{Scrubber, ToolCall, ToolSpec};

use crate::context::chronicle::{CHRONICLE_TOOL, ChronicleArgs, chronicle_tool_spec};
use crate::task_tools::{SEND_FILE_TOOL, SendFileArgs, send_file_spec};
use crate::tools::cron::{CRON_TOOL, CronArgs, cron_tool_spec};

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

/// Which of the optional tools a channel offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelToolSet {
    /// `chronicle`: the conversation has (or, in chronicle mode, will have) checkpoints.
    pub(crate) chronicle: bool,
    /// `cron`: the agent has cron jobs.
    pub(crate) cron: bool,
    /// `send_file`: the agent has a workspace.
    pub(crate) files: bool,
}

impl ChannelToolSet {
    /// How many sets there are.
    pub(crate) const COUNT: usize = 8;

    /// This set's place among the [`COUNT`](Self::COUNT), for tables built once per set.
    pub(crate) fn index(self) -> usize {
        usize::from(self.chronicle) * 4 + usize::from(self.cron) * 2 + usize::from(self.files)
    }

    /// The optional tools' names, for the model when it names a tool that doesn't exist.
    fn names(self) -> String {
        let optional = [(self.chronicle, CHRONICLE_TOOL), (self.cron, CRON_TOOL), (self.files, SEND_FILE_TOOL)];
        optional.iter().filter(|(on, _)| *on).map(|(_, name)| format!(" and `{name}`")).collect()
    }
}

/// The tools a channel offers the model, in a fixed order so requests are byte-stable: the
/// seven always offered, then `chronicle`, `cron` and `send_file` when the set has them. Built
/// once per set and shared by every request.
pub(crate) fn channel_tools(set: ChannelToolSet) -> Arc<[ToolSpec]> {
    static TOOLS: [OnceLock<Arc<[ToolSpec]>>; ChannelToolSet::COUNT] =
        [const { OnceLock::new() }; ChannelToolSet::COUNT];
    TOOLS[set.index()]
        .get_or_init(|| {
            let chronicle = set.chronicle.then(|| chronicle_tool_spec(false));
            let cron = set.cron.then(cron_tool_spec);
            let files = set.files.then(send_file_spec);
            build_channel_tools().into_iter().chain(chronicle).chain(cron).chain(files).collect()
        })
        .clone()
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

/// A call of a channel tool, its arguments read.
#[derive(Debug)]
pub(crate) enum ChannelCall {
    /// Send this message and end the turn.
    Reply(String),
    /// End the turn without a message, for this reason (for the logs) if one was given.
    Skip(Option<String>),
    React(ReactArgs),
    Branch(BranchArgs),
    SpawnWorker(SpawnWorkerArgs),
    Route(RouteArgs),
    Cancel(CancelArgs),
    /// `chronicle`, offered when the conversation has (or will have) checkpoints.
    Chronicle(ChronicleArgs),
    /// `cron`, offered when the agent has cron jobs.
    Cron(CronArgs),
    /// `send_file`, offered when the agent has a workspace.
    SendFile(SendFileArgs),
}

impl ChannelCall {
    /// Reads a call of one of the channel's tools (`chronicle` only when offered), or says what
    /// is wrong with it in words the model can act on.
    pub(crate) fn parse(call: &ToolCall, set: ChannelToolSet) -> Result<Self, String> {
        let arguments = &call.arguments;
        Ok(match call.name.as_str() {
            REPLY_TOOL => {
                let args: ReplyArgs = parse(REPLY_TOOL, arguments)?;
                Self::Reply(non_blank(
                    args.content,
                    "`reply` needs a non-empty `content`; call `skip` to send nothing.",
                )?)
            }
            // Whatever the arguments, the turn ends: the reason is only for the logs.
            SKIP_TOOL => Self::Skip(parse::<SkipArgs>(SKIP_TOOL, arguments).ok().and_then(|args| args.reason)),
            REACT_TOOL => {
                let args: ReactArgs = parse(REACT_TOOL, arguments)?;
                Self::React(ReactArgs { emoji: non_blank(args.emoji, "`react` needs an `emoji`.")? })
            }
            BRANCH_TOOL => {
                let args: BranchArgs = parse(BRANCH_TOOL, arguments)?;
                Self::Branch(BranchArgs { task: non_blank(args.task, "`branch` needs a non-empty `task`.")? })
            }
            SPAWN_WORKER_TOOL => {
                let args: SpawnWorkerArgs = parse(SPAWN_WORKER_TOOL, arguments)?;
                let task = non_blank(args.task, "`spawn_worker` needs a non-empty `task`.")?;
                Self::SpawnWorker(SpawnWorkerArgs { task, ..args })
            }
            ROUTE_TOOL => Self::Route(parse(ROUTE_TOOL, arguments)?),
            CANCEL_TOOL => Self::Cancel(parse(CANCEL_TOOL, arguments)?),
            CHRONICLE_TOOL if set.chronicle => Self::Chronicle(parse(CHRONICLE_TOOL, arguments)?),
            CRON_TOOL if set.cron => Self::Cron(parse(CRON_TOOL, arguments)?),
            SEND_FILE_TOOL if set.files => Self::SendFile(parse(SEND_FILE_TOOL, arguments)?),
            other => {
                return Err(format!(
                    "There is no tool named `{other}`. The tools are `reply`, `skip`, `react`, `branch`, \
                     `spawn_worker`, `route` and `cancel`{}.",
                    set.names()
                ));
            }
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(tool: &str, arguments: &serde_json::Value) -> Result<T, String> {
    spacebot_core::parse_tool_args(tool, arguments).map_err(|error| format!("{error}."))
}

/// `text`, unless it is blank; then `complaint` for the model.
fn non_blank(text: String, complaint: &str) -> Result<String, String> {
    if text.trim().is_empty() { Err(complaint.to_owned()) } else { Ok(text) }
}

#[derive(Debug, Deserialize)]
struct ReplyArgs {
    #[serde(alias = "text", alias = "message")]
    content: String,
}

#[derive(Debug, Deserialize)]
struct SkipArgs {
    #[serde(default)]
    reason: Option<String>,
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

/// Why plain model text must not be sent as a fallback reply, if it must not: it looks like a
/// tool call written as text, or it carries a secret (`scrubber` is the outbox's). A reply sent
/// with `reply` is scrubbed instead; plain text is refused so the model says it again properly.
pub(crate) fn fallback_refusal(text: &str, scrubber: &Scrubber) -> Option<String> {
    if looks_like_tool_syntax(text) {
        Some("it looks like a tool call written as text".to_owned())
    } else {
        scrubber.find(text).map(|secret| format!("it appears to contain a secret ({secret})"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: serde_json::Value) -> Result<ChannelCall, String> {
        ChannelCall::parse(&ToolCall::new("c1", name, arguments), ChannelToolSet::default())
    }

    fn reply_text(arguments: serde_json::Value) -> Result<String, String> {
        match call(REPLY_TOOL, arguments)? {
            ChannelCall::Reply(text) => Ok(text),
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn reply_arguments_are_parsed_leniently_but_checked() {
        assert_eq!(reply_text(json!({"content": "hi"})), Ok("hi".to_owned()));
        assert_eq!(reply_text(json!({"text": "hi"})), Ok("hi".to_owned()));
        assert_eq!(reply_text(json!("{\"content\": \"hi\"}")), Ok("hi".to_owned()));
        assert!(reply_text(json!({"content": "  "})).unwrap_err().contains("non-empty"));
        assert!(reply_text(json!({"body": "hi"})).unwrap_err().contains("missing field `content`"));
    }

    #[test]
    fn every_channel_tool_reads_arguments_sent_as_a_string() {
        for (name, arguments) in [
            (REACT_TOOL, json!({"emoji": "👍"})),
            (BRANCH_TOOL, json!({"task": "think"})),
            (SPAWN_WORKER_TOOL, json!({"task": "work", "interactive": true})),
            (ROUTE_TOOL, json!({"worker_id": "w1", "message": "more"})),
            (CANCEL_TOOL, json!({"process_id": "w1"})),
        ] {
            let as_object = format!("{:?}", call(name, arguments.clone()).expect("an object parses"));
            let as_string = format!("{:?}", call(name, json!(arguments.to_string())).expect("a string parses"));
            assert_eq!(as_object, as_string, "{name}");
        }
        assert!(matches!(call(SKIP_TOOL, json!(null)), Ok(ChannelCall::Skip(None))));
        assert!(matches!(call(SKIP_TOOL, json!("{\"reason\": \"chatter\"}")), Ok(ChannelCall::Skip(Some(_)))));
        assert!(call("chronicle", json!({"action": "list"})).unwrap_err().contains("no tool named"));
        assert!(call(SEND_FILE_TOOL, json!({"path": "a.txt"})).unwrap_err().contains("no tool named"));
    }

    #[test]
    fn each_tool_set_offers_its_optional_tools_after_the_seven_in_a_fixed_order() {
        let mut seen = std::collections::HashSet::new();
        for index in 0..ChannelToolSet::COUNT {
            let set = ChannelToolSet { chronicle: index & 4 != 0, cron: index & 2 != 0, files: index & 1 != 0 };
            assert!(seen.insert(set.index()), "two sets share index {}", set.index());
            let names: Vec<String> = channel_tools(set).iter().map(|tool| tool.name.clone()).collect();
            let optional: Vec<&str> =
                [(set.chronicle, CHRONICLE_TOOL), (set.cron, CRON_TOOL), (set.files, SEND_FILE_TOOL)]
                    .into_iter()
                    .filter_map(|(on, name)| on.then_some(name))
                    .collect();
            assert_eq!(names.len(), 7 + optional.len(), "{set:?}");
            assert_eq!(&names[7..], optional.as_slice(), "{set:?}");
        }
        let files = ChannelToolSet { files: true, ..ChannelToolSet::default() };
        let parsed = ChannelCall::parse(&ToolCall::new("c1", SEND_FILE_TOOL, json!({"file": "out/a.png"})), files);
        assert!(matches!(parsed, Ok(ChannelCall::SendFile(args)) if args.path == "out/a.png"));
        let missing = ChannelCall::parse(&ToolCall::new("c1", "upload", json!({})), files).unwrap_err();
        assert!(missing.ends_with("`cancel` and `send_file`."), "{missing}");
    }

    fn refusal(text: &str) -> Option<String> {
        fallback_refusal(text, &Scrubber::new().with_secrets(["configured-secret-1"]))
    }

    #[test]
    fn ordinary_text_is_a_valid_fallback() {
        assert_eq!(refusal("Sure, the meeting is at 3pm."), None);
        assert_eq!(refusal("{\"weather\": \"sunny\"}"), None);
        assert_eq!(refusal("use the sk- prefix for keys"), None);
    }

    #[test]
    fn tool_syntax_is_not_sent() {
        assert!(refusal("{\"name\": \"reply\", \"arguments\": {\"content\": \"x\"}}").is_some());
        assert!(refusal("<tool_call>{\"name\":\"reply\"}</tool_call>").is_some());
    }

    #[test]
    fn secrets_are_not_sent() {
        assert!(refusal("your key is sk-abcdefghijklmnopqrstuvwx").is_some());
        assert!(refusal("token: xoxb-1234567890-abcdef").is_some());
        assert!(refusal("-----BEGIN RSA PRIVATE KEY-----\nabc").is_some());
        assert!(refusal("the password is configured-secret-1").is_some());
    }
}

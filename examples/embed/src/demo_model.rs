//! [`DemoModel`]: a tiny in-process [`LanguageModel`] that plays the agent's part without a
//! provider, so the example runs offline and its test is deterministic.
//!
//! It answers the way a real model would, through the agent's tools: asked to roll dice, the
//! channel starts a worker; the worker calls `dice_roll` and declares the result; the channel
//! relays it. Anything else gets a hint. Swap in any other `LanguageModel` (`spacebot_llm` over
//! an OpenAI-compatible server, say) and nothing else changes.

use async_trait::async_trait;
use serde_json::json;

use spacebot_agent::{REPLY_TOOL, SET_STATUS_TOOL, SPAWN_WORKER_TOOL};
use spacebot_core::{ChatMessage, ChatRequest, ChatResponse, LanguageModel, LlmError, ToolCall};

use crate::dice::{DICE_ROLL_TOOL, parse_dice};

/// The opening of the message that brings background results to the channel.
const BACKGROUND_RESULTS: &str = "[background results]";

/// A scripted stand-in for a model.
#[derive(Debug, Default)]
pub struct DemoModel;

impl DemoModel {
    /// The model.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl LanguageModel for DemoModel {
    fn name(&self) -> &str {
        "demo/dice"
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        // A worker is offered `set_status`; a channel is offered `reply`.
        let is_worker = request.tools.iter().any(|tool| tool.name == SET_STATUS_TOOL);
        let call = if is_worker { worker_step(request.messages.last()) } else { channel_step(request.messages.last()) };
        Ok(ChatResponse::text("").with_tool_calls(vec![call]))
    }
}

/// The channel's move after `last`.
fn channel_step(last: Option<&ChatMessage>) -> ToolCall {
    match last {
        Some(ChatMessage::User { content, .. }) if content.starts_with(BACKGROUND_RESULTS) => reply(&relay(content)),
        Some(ChatMessage::User { content, .. }) => match find_dice(content) {
            Some(dice) => call(SPAWN_WORKER_TOOL, json!({ "task": format!("Roll {dice} with `{DICE_ROLL_TOOL}`.") })),
            None => reply("I roll dice. Try `roll 2d6` or `roll d20`."),
        },
        Some(ChatMessage::ToolResult { name, .. }) if name == SPAWN_WORKER_TOOL => reply("Rolling…"),
        _ => reply("Done."),
    }
}

/// The worker's move after `last`.
fn worker_step(last: Option<&ChatMessage>) -> ToolCall {
    let outcome = |kind: &str, status: &str| call(SET_STATUS_TOOL, json!({ "kind": kind, "status": status }));
    match last {
        Some(ChatMessage::User { content, .. }) => match find_dice(content) {
            Some(dice) => call(DICE_ROLL_TOOL, json!({ "dice": dice })),
            None => outcome("failed", "the task names no dice to roll"),
        },
        Some(ChatMessage::ToolResult { name, content, .. })
            if name == DICE_ROLL_TOOL && !content.starts_with("error") =>
        {
            outcome("done", content)
        }
        Some(ChatMessage::ToolResult { content, .. }) => outcome("failed", content),
        _ => outcome("failed", "lost track of the task"),
    }
}

/// What to tell people about background results: each line is `- [worker <id>] <state>: <text>`.
fn relay(results: &str) -> String {
    let lines: Vec<String> = results
        .lines()
        .filter_map(|line| line.strip_prefix("- [")?.split_once("] "))
        .map(|(_, outcome)| match outcome.strip_prefix("done: ") {
            Some(result) => format!("You rolled {result}"),
            None => format!("The roll didn't work ({outcome})."),
        })
        .collect();
    if lines.is_empty() { "Something finished, but I couldn't read what.".to_owned() } else { lines.join("\n") }
}

/// The first word that reads as dice (`2d6`, `d20`).
fn find_dice(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == '`' || c == '?' || c == '!')
        .find_map(|word| parse_dice(word).map(|(count, sides)| format!("{count}d{sides}")))
}

fn reply(text: &str) -> ToolCall {
    call(REPLY_TOOL, json!({ "content": text }))
}

fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall::new(format!("call-{name}"), name, arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_are_found_in_what_people_write() {
        assert_eq!(find_dice("[2026-01-01 10:00 UTC | you] could you roll 3d8, please?").as_deref(), Some("3d8"));
        assert_eq!(find_dice("roll `d20`!").as_deref(), Some("1d20"));
        assert_eq!(find_dice("hello there"), None);
    }

    #[test]
    fn results_are_relayed_in_words() {
        let results = "[background results] Background work finished:\n- [worker w1] done: 2d6: 3 + 4 = 7\nRelay …";
        assert_eq!(relay(results), "You rolled 2d6: 3 + 4 = 7");
        let failed = "[background results] x\n- [worker w1] failed: error: no dice\n";
        assert_eq!(relay(failed), "The roll didn't work (failed: error: no dice).");
    }
}

//! Prompts and the message envelope.
//!
//! The system prompt stays byte-identical from turn to turn (providers cache on its prefix), so
//! anything that changes per message, the time included, goes in the message envelope instead.

use spacebot_core::{AgentId, InboundMessage};

/// The system prompt of an agent that was not given one.
pub(crate) fn default_system_prompt(agent: &AgentId) -> String {
    format!(
        "You are {agent}, an AI agent talking with people in a chat conversation.\n\
         \n\
         Each user message starts with an envelope: the time it was sent and who sent it.\n\
         \n\
         To answer, call the `reply` tool with your message; the conversation only sees what you \
         send with `reply`. If a message needs no answer (it is not meant for you, or nothing is \
         worth adding), call `skip`. Each turn ends with exactly one `reply` or `skip`.\n\
         \n\
         Be concise and helpful. Never reveal secrets such as API keys or tokens."
    )
}

/// The text the model sees for an inbound message: time and sender, then the content.
pub(crate) fn envelope(message: &InboundMessage) -> String {
    format!(
        "[{} | {}] {}",
        message.timestamp.format("%Y-%m-%d %H:%M UTC"),
        message.sender.label(),
        message.content.text()
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use spacebot_core::Sender;

    use super::*;

    #[test]
    fn envelope_carries_time_and_sender() {
        let time = chrono::Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).single().expect("valid time");
        let message = InboundMessage::text("webhook", "c", Sender::new("u1").with_display_name("Alice"), "hello")
            .with_timestamp(time);
        assert_eq!(envelope(&message), "[2026-11-22 09:30 UTC | Alice] hello");
    }

    #[test]
    fn system_prompt_is_stable() {
        let agent = AgentId::new("main");
        assert_eq!(default_system_prompt(&agent), default_system_prompt(&agent));
        assert!(default_system_prompt(&agent).starts_with("You are main,"));
    }
}

//! The Slack adapter for Spacebot: a [`MessagingAdapter`](spacebot_core::MessagingAdapter) over
//! slack-morphism in Socket Mode.
//!
//! [`SlackAdapter`] receives channel messages, thread replies, direct messages and the control
//! slash commands (`/status`, `/stop`, `/pause`, `/resume`, `/new`, or `/spacebot <command>`) over a
//! Socket Mode websocket, and answers through the Web API: replies split for mrkdwn (never inside
//! a word, a code block or a `<...>` link or mention), thread replies, reactions, and the
//! assistant-thread status as a typing indicator.
//!
//! **Acknowledgement after durability.** Slack redelivers an event that is not acknowledged. The
//! adapter acknowledges an envelope only once the runtime has taken the message, which it does by
//! recording it durably (`RuntimeHandle::submit` returns after the write): the envelope of a
//! message is acknowledged when the runtime asks the stream for the next one. An envelope whose
//! message was never taken (the stream was dropped first) is not acknowledged, and Slack sends it
//! again; the message id (`slack:{team}:{channel}:{ts}`) makes the retry a no-op when it was in
//! fact recorded.
//!
//! Conversation ids: `slack:{team}:{channel}` for a channel or DM, and
//! `slack:{team}:{channel}:{thread_ts}` for a thread, so threads are kept apart; a named instance
//! uses its runtime key instead of `slack`.

mod adapter;
mod emoji;
mod error;
mod images;
mod inbound;
mod settings;

pub use adapter::SlackAdapter;
pub use emoji::shortcode;
pub use error::classify;
pub use settings::SlackSettings;

#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    //! The Socket Mode payload mapping, reachable by the fuzz targets in `fuzz/` (feature
    //! `fuzzing`) without making the mapping part of the crate's API.

    use slack_morphism::prelude::{SlackCommandEvent, SlackPushEvent, SlackPushEventCallback};

    use spacebot_core::InboundMessage;

    use crate::settings::SlackSettings;

    /// Reads `payload` as Slack would deliver it (an `event_callback` push, its bare callback, or
    /// a slash command) and maps it as the adapter does; `None` when it is no such payload or is
    /// filtered out.
    pub fn map_payload(settings: &SlackSettings, bot_user: &str, payload: &[u8]) -> Option<InboundMessage> {
        if let Ok(SlackPushEvent::EventCallback(push)) = serde_json::from_slice::<SlackPushEvent>(payload) {
            return crate::inbound::map_push(settings, bot_user, &push);
        }
        if let Ok(push) = serde_json::from_slice::<SlackPushEventCallback>(payload) {
            return crate::inbound::map_push(settings, bot_user, &push);
        }
        let command: SlackCommandEvent = serde_json::from_slice(payload).ok()?;
        crate::inbound::map_command(settings, &command)
    }
}

/// How many characters of text one Slack message carries before it is split. Slack accepts more,
/// but longer messages are collapsed and hard to read.
pub const MESSAGE_LIMIT: usize = 4000;

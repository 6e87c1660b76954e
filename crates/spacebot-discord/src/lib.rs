//! The Discord adapter for Spacebot: a [`MessagingAdapter`](spacebot_core::MessagingAdapter) over
//! serenity.
//!
//! [`DiscordAdapter`] connects to the gateway and turns guild messages, thread messages, direct
//! messages and the control slash commands (`/status`, `/stop`, `/pause`, `/resume`, `/new`) into
//! [`InboundMessage`](spacebot_core::InboundMessage)s; it sends replies split at Discord's 2000
//! character limit (never inside a word or a code block), thread replies, reactions and a typing
//! indicator. Allow-lists of guilds, channels and DM users decide what it hands in.
//!
//! Conversation ids keep places apart: `discord:{guild}:{channel}` (a thread is a channel of its
//! own, so a conversation of its own), `discord:dm:{user}`; a named instance uses its runtime key
//! instead of `discord` (`discord:ops:{guild}:{channel}`).
//!
//! Like every adapter it depends on `spacebot-core` alone. [`DiscordSettings::with_api_url`]
//! points it at a local fake of Discord (`spacebot-testing`'s `FakeDiscord`).

mod adapter;
mod commands;
mod error;
mod images;
mod inbound;
mod order;
mod settings;

pub use adapter::DiscordAdapter;
pub use commands::CONTROL_COMMANDS;
pub use error::classify;
pub use settings::DiscordSettings;

/// Discord's limit on the characters of one message.
pub const MESSAGE_LIMIT: usize = 2000;

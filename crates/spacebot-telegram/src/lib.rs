//! The Telegram adapter for Spacebot: a [`MessagingAdapter`](spacebot_core::MessagingAdapter) over
//! the Bot API: frankenstein's typed methods over our own reqwest client (`client.rs`).
//!
//! [`TelegramAdapter`] receives private chats, groups, and supergroups with forum topics as
//! threads, by long polling (`getUpdates`) or, when configured, a webhook. It answers in HTML
//! rendered from the model's Markdown (so a stray `_` or `*` never gets a message refused), split
//! at Telegram's 4,096-character limit without breaking words or code blocks; thread replies
//! (the message's topic, a new topic in a forum, or a reply to the message), reactions from
//! Telegram's set, a typing indicator (`sendChatAction`, repeated while the turn runs), and files
//! (`sendDocument`). `/commands`, including `/command@bot` in groups, arrive as commands; a command
//! addressed to another bot is not handed in. Rate limits (429) are waited out for as long as
//! Telegram's `retry_after` says.
//!
//! **Confirmed after durability.** Telegram forgets an update once a later `getUpdates` names an
//! offset past it. The adapter hands each message in and waits until the runtime took it (recorded
//! it durably), and only then moves its offset past the update; shutdown confirms what was taken.
//! After a crash Telegram delivers the unconfirmed updates again, and the message id
//! (`telegram:{chat}:{message_id}`) makes a second delivery of a recorded message a no-op: nothing
//! is skipped and nothing is answered twice. In webhook mode, a delivery is answered only after
//! its message was taken.
//!
//! Conversation ids: `telegram:{chat}` for a private chat or a group, and
//! `telegram:{chat}:{topic}` for a forum topic; a named instance uses its runtime key instead of
//! `telegram`. Attachments arrive by reference, `telegram:file:{file_id}`: the download URL
//! carries the bot token, so it is never handed in. Images (up to 3.75 MiB) are also downloaded
//! before the message is handed in, so a vision-capable model can see them.

mod adapter;
mod client;
mod error;
mod format;
mod images;
mod inbound;
mod reaction;
mod settings;
mod webhook;

pub use adapter::TelegramAdapter;
pub use client::CallError;
pub use error::classify;
pub use settings::{DEFAULT_API_URL, TelegramSettings, WebhookSettings};

/// The most characters (UTF-16 code units) one Telegram message carries.
pub const MESSAGE_LIMIT: usize = 4096;

/// The most characters (UTF-16 code units) a file's caption carries.
pub const CAPTION_LIMIT: usize = 1024;

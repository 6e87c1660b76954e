//! The email adapter for Spacebot: a [`MessagingAdapter`](spacebot_core::MessagingAdapter) that
//! reads a mailbox over IMAP and answers over SMTP.
//!
//! [`EmailAdapter`] logs into IMAP (`async-imap`), waits for mail with IDLE (checking every
//! [`EmailSettings::poll_interval`] when the server has no IDLE), and hands in each unseen message
//! from an allowed sender: plain text, or HTML turned into text, with the quoted history and the
//! signature trimmed; attachments by reference. Replies go out through SMTP (`lettre`), threaded
//! under the message they answer (`In-Reply-To`, `References`, `Re:`), to its sender and the
//! others on it, marked `Auto-Submitted: auto-replied`.
//!
//! **Seen after durability.** A message is marked `\Seen` only after the runtime recorded it; a
//! crash before that reads it again, and its id (`email:{Message-ID}`) makes the second reading a
//! no-op. Mail from the bot itself, auto-replies, bounces and list traffic are never handed in, so
//! two robots can't answer each other forever; mail from senders not allowed is left unread.
//!
//! Conversation ids: `email:{hash}` per thread, where the hash is of the thread's first Message-ID
//! (the first of `References`, else `In-Reply-To`, else the message's own), so a whole thread is
//! one conversation; a named instance uses its runtime key instead of `email`. A mail to the bot
//! alone is direct; one with others on it is a group conversation, where the bot counts as
//! addressed when it is in `To` (not only `Cc`).

mod adapter;
mod error;
mod imap;
mod inbound;
mod outbound;
mod settings;

pub use adapter::EmailAdapter;
pub use error::{classify_imap, classify_smtp};
pub use settings::{EmailSettings, Security, Server};

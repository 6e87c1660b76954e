//! Example: a Spacebot adapter for a new chat platform, written against `spacebot-core` alone.
//!
//! The platform is *LineChat*, a chat server small enough to describe here in full. A client
//! talks to it over TCP, one line per command or event, fields separated by spaces, free text
//! last with newlines escaped as `\n`:
//!
//! ```text
//! bot ─▶ LISTEN spacebot                  open the event connection (kept open)
//! bot ◀─ WELCOME
//! bot ◀─ MSG 17 #general alice hi all     someone said something: id, room, user, text
//! bot ◀─ MSG 18 #general/17 bob re: hi    rooms: #channel, #channel/<root id> (a thread), @user (a DM)
//!
//! bot ─▶ SAY #general/17 hello\nthere     one command per short connection ...
//! bot ◀─ OK 19                            ... answered OK, or ERR <code> <reason> (busy = try later)
//! bot ─▶ REACT #general 17 👍
//! bot ─▶ TYPING @alice
//! ```
//!
//! [`LineChatAdapter`] maps that onto [`spacebot_core::MessagingAdapter`]: `MSG` lines become
//! [`spacebot_core::InboundMessage`]s (one conversation per room, DMs marked direct, routing
//! metadata set), responses become `SAY`/`REACT`/`TYPING` commands, refusals become
//! [`spacebot_core::AdapterError`]s of the right kind. `tests/it/` runs the shared adapter
//! conformance suite against it and a LineChat server of a hundred lines. `docs/custom-adapter.md`
//! walks through it.

mod adapter;
pub mod protocol;

pub use adapter::{LineChatAdapter, MESSAGE_KEY, MESSAGE_LIMIT, PLATFORM, ROOM_KEY};

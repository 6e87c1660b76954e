//! Spacebot storage on SQLite.
//!
//! Today this crate holds the **conversation log**: [`SqliteStore`] implements
//! [`spacebot_core::ConversationLog`] on one SQLite file (bundled SQLite through sqlx, WAL mode,
//! migrations from the workspace `migrations/` directory applied at open). Every inbound message
//! is recorded with its full serialized form before it is processed, every reply is recorded
//! together with the handled marks of the messages it answers, and [`ConversationLog::unhandled`]
//! hands back, after a restart, the messages that were accepted but never answered.
//!
//! The typed memory graph described in the design (`MemoryStore`: typed memories and edges, FTS5,
//! embedding vectors, hybrid recall, maintenance) and the embedders are not here yet; they arrive
//! with the memory issue, in this crate and on the same kind of SQLite file.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous = NORMAL`. A transaction that has committed is
//! in the write-ahead log, in the operating system's hands, so it survives a crash of this
//! process (a panic, an abort, `SIGKILL`): that is the guarantee the harness needs to recover
//! accepted messages. What `NORMAL` gives up against `FULL` is an `fsync` on every commit, so the
//! last few commits may be lost if the whole machine loses power or the kernel crashes; the
//! database itself stays consistent either way.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use spacebot_core::{ConversationLog, InboundMessage, Sender};
//! use spacebot_memory::SqliteStore;
//!
//! let store = SqliteStore::open("/var/lib/spacebot/main.db".as_ref()).await?;
//! let message = InboundMessage::text("cli", "cli:me", Sender::new("me"), "hello").with_agent("main");
//! assert!(store.record_inbound(&message).await?);
//! for pending in store.unhandled().await? {
//!     println!("still to answer: {}", pending.id);
//! }
//! store.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`ConversationLog::unhandled`]: spacebot_core::ConversationLog::unhandled

mod conversation_log;
mod error;
mod sqlite;

pub use error::Error;
pub use sqlite::SqliteStore;

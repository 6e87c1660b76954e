//! Spacebot storage on SQLite or PostgreSQL.
//!
//! - [`SqliteLog`] implements [`spacebot_core::ConversationLog`] on one SQLite file (bundled
//!   SQLite through sqlx, WAL mode, migrations from the workspace `migrations/` directory applied
//!   at open). Every inbound message is recorded with its full serialized form before it is
//!   processed, every reply is recorded together with the handled marks of the messages it
//!   answers, and [`ConversationLog::unhandled`] hands back, after a restart, the messages that
//!   were accepted but never answered.
//! - With the cargo feature `postgres`, `PgLog` implements the same log traits
//!   ([`ConversationLog`](spacebot_core::ConversationLog) with its chronicle, process runs and
//!   cron store, and [`UsageLedger`](spacebot_core::UsageLedger)) on a PostgreSQL database, with
//!   the same semantics and the same statements (migrations from `migrations/postgres/`).
//! - [`MemoryGraph`] implements [`spacebot_core::MemoryStore`]: an agent's typed memory graph
//!   (memories, edges, embedding vectors, identity anchors) in one SQLite file
//!   ([`MemoryGraph::open`]) or, with the `postgres` feature, in the PostgreSQL database of a
//!   `PgLog` (`MemoryGraph::on_postgres`): every write one transaction, hybrid recall (words,
//!   vectors, graph, dates) fused by score over in-memory copies that follow the database,
//!   visibility enforced in every query, maintenance (decay, prune, merge, link) and a
//!   deterministic knowledge render. The statements are written once for both engines (see
//!   `memory/db.rs`). See `docs/memory.md`.
//! - Embedders behind [`spacebot_core::Embedder`]: [`HashingEmbedder`] (no dependencies),
//!   [`OpenAiEmbedder`] (any OpenAI-compatible `/v1/embeddings` server), and with the cargo
//!   feature `local-embeddings` `LocalEmbedder` (a sentence-embedding model such as
//!   all-MiniLM-L6-v2, run in-process on the CPU with candle).
//!
//! All databases share one schema (the migrations): the daemon keeps its conversation log in
//! `data_dir/spacebot.db` and each agent's memory graph in a file of its own, so one agent's
//! memories can be copied, inspected or deleted without touching another's.
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
//! use std::sync::Arc;
//!
//! use spacebot_core::{MemoryScope, MemoryStore, MemoryType, NewMemory, RecallQuery, Visibility};
//! use spacebot_memory::{HashingEmbedder, MemoryGraph};
//!
//! let memory = MemoryGraph::open("/var/lib/spacebot/agents/main/memory.db".as_ref(), Arc::new(HashingEmbedder::default())).await?;
//! memory.save(NewMemory::new(MemoryType::Preference, "Alice drinks green tea", MemoryScope::private_to("main", "discord:1"))).await?;
//! let seen_by_alice = Visibility::conversation("discord:dm-1", ["discord:1"]);
//! for hit in memory.recall(RecallQuery::new("main", "what does Alice drink").with_visibility(seen_by_alice)).await? {
//!     println!("{:.3} {}", hit.score, hit.memory.content);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`ConversationLog::unhandled`]: spacebot_core::ConversationLog::unhandled

mod chronicle;
mod chunk;
mod conversation_log;
mod cron;
mod embed;
mod error;
#[cfg(feature = "postgres")]
mod fleet;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod process_runs;
mod sqlite;
mod usage;

pub use chunk::chunk_text;
pub use embed::{HashingEmbedder, LOCAL_MODEL_FILES, OpenAiEmbedder, dot, normalize};
#[cfg(feature = "local-embeddings")]
pub use embed::{LocalEmbedder, LocalModelError};
pub use error::{Error, Result};
#[cfg(feature = "postgres")]
pub use fleet::PgLeases;
pub use memory::{Clock, ImportMark, IndexFootprint, MemoryGraph, RecallLists};
pub use memory::{MAX_CONTENT_BYTES, text_hash};
#[cfg(feature = "postgres")]
pub use postgres::{PgLog, redacted as redacted_url};
pub use sqlite::SqliteLog;

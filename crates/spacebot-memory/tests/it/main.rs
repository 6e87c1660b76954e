//! Integration tests of the conversation log and the memory graph, on SQLite and PostgreSQL (the
//! storage suite in `support.rs`; what only SQLite files have stays SQLite-only), in one test
//! binary.

mod chronicle;
mod concurrency;
mod conversation;
mod cron;
mod embedders;
mod fleet;
#[cfg(feature = "local-embeddings")]
mod local_embedder;
mod memory_durability;
mod memory_maintenance;
mod memory_recall;
mod memory_render;
mod memory_sharing;
mod memory_support;
mod memory_visibility;
mod memory_writes;
mod open;
mod postgres;
mod process_runs;
mod recovery;
mod support;
mod usage;

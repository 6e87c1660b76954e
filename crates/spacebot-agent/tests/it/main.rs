//! Integration tests of the channel engine through the real runtime: messages go in through a
//! capturing adapter (adapter supervisor → submit → log → router → channel), the channel talks
//! to a scripted model, and the tests check what the adapter received, what the log stored and
//! what the model was asked.
//!
//! One test binary; modules by concern. Every test runs on tokio's paused clock, so delays,
//! hangs and timeouts cost no real time and the order of events is deterministic.

mod chronicle;
mod compaction;
mod concurrency;
mod control;
mod eviction;
mod failures;
mod faults;
mod history;
mod idle;
mod images;
mod memory;
mod modes;
mod previews;
mod processes;
mod recording;
mod recovery;
mod restart;
mod secrets;
mod snapshots;
mod supervision;
mod support;
mod task_tools;
mod turns;

//! Integration tests of the runtime kernel through its public API: submit and the log, the
//! router and its conversation tasks (eviction included), the outbox, adapter supervision, recovery and shutdown.
//!
//! One test binary; modules by concern; the fakes are in `support`. Every test that involves
//! time runs on tokio's paused clock, so backoffs, hangs and grace periods cost no real time and
//! the order of events is deterministic.

mod adapters;
mod eviction;
mod fleet;
mod outbox;
mod properties;
mod router;
mod send_sync;
mod shutdown;
mod submit;
mod support;

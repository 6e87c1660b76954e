//! The cortex's watchdog against the real runtime and channel engine: what outlives its bound is
//! ended, with exactly one terminal state, and no message is left without an answer.
//!
//! Every test runs on tokio's paused clock; limits are minutes long and cost no real time.

mod cron;
mod enforcement;

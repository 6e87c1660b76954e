//! The cortex: Spacebot's supervisor of processes and keeper of memory.
//!
//! What exists today is the [`Watchdog`], a liveness auditor. Timeouts are enforced where the
//! work runs (each branch, worker and compactor summary races its own limit inside the channel
//! that owns it; each turn runs under the turn timeout; the one terminal transition of a process
//! is a compare-and-swap in `spacebot-core`), so the cortex does not duplicate them. The
//! watchdog checks from the runtime's events that they held, and reports, once and as an error,
//! any process or turn that outlived its bound: the symptom of a wedge that would otherwise be
//! silent. It makes no model call.
//!
//! [`MemoryMaintenance`] runs each agent's memory upkeep (decay, prune, merge near-duplicates,
//! link related memories) every interval, within a time budget per agent; it too makes no model
//! call. Cron jobs are not here yet.

mod maintenance;
mod watchdog;

pub use maintenance::{MaintenanceSettings, MemoryMaintenance};
pub use watchdog::{Finding, Watchdog, WatchdogSettings};

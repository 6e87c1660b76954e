//! The cortex: Spacebot's supervisor of processes and keeper of memory.
//!
//! The [`Watchdog`] supervises liveness. Timeouts are enforced first where the work runs (each
//! branch, worker and compactor summary races its own limit inside the channel that owns it;
//! each turn runs under the turn timeout; the one terminal transition of a process is a
//! compare-and-swap in `spacebot-core`). The watchdog catches what escapes those bounds: from
//! the runtime's process registry and events it finds any process or turn still running well
//! past its limit, ends it (a hung process as `timed_out`, a hung turn by restarting its
//! conversation's task, whose message then gets a visible error) and logs the intervention.
//! It makes no model call.
//!
//! [`MemoryMaintenance`] runs each agent's memory upkeep (decay, prune, merge near-duplicates,
//! link related memories) every interval, within a time budget per agent; it too makes no model
//! call.
//!
//! [`CronScheduler`] runs cron jobs: durable, claimed before each run, each run a fresh
//! conversation whose first reply goes to the job's target (see `cron.rs`).

mod cron;
mod maintenance;
mod watchdog;

pub use cron::{CRON_ADAPTER, CronAdapter, CronClock, CronScheduler, CronSettings, validate_job};
pub use maintenance::{MaintenanceSettings, MemoryMaintenance};
pub use watchdog::{Finding, Intervention, Watchdog, WatchdogSettings};

//! Memory maintenance: a periodic pass over each agent's memory (decay, prune, merge
//! near-duplicates, link related memories), run by [`MemoryMaintenance`].
//!
//! The store does the work ([`MemoryStore::maintain`]) and stops between batches once the pass's
//! time budget is spent; the loop adds an outer limit (the budget plus a grace period) so a store
//! that hangs cannot stall the loop, and agents are maintained one after another so a pass never
//! loads the machine with every agent at once. It makes no model call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use spacebot_core::{AgentId, MaintenanceOptions, MemoryStore};

/// How often maintenance runs and what a pass does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MaintenanceSettings {
    /// Time between passes; the first pass runs one interval after start.
    pub interval: Duration,
    /// The settings of each agent's pass, its time budget included.
    pub options: MaintenanceOptions,
    /// How long past its time budget a pass may run before the loop gives up on it.
    pub grace: Duration,
}

impl Default for MaintenanceSettings {
    /// Hourly passes of at most a minute per agent.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60 * 60),
            options: MaintenanceOptions::default(),
            grace: Duration::from_secs(30),
        }
    }
}

impl MaintenanceSettings {
    /// Sets the time between passes (at least one second).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Sets each agent's time budget per pass.
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.options = self.options.with_time_budget(budget);
        self
    }

    /// Sets the settings of each pass.
    pub fn with_options(mut self, options: MaintenanceOptions) -> Self {
        self.options = options;
        self
    }
}

/// Runs memory maintenance for a set of agents every interval until stopped.
///
/// Cheap to clone; clones share the pass counter.
#[derive(Clone)]
pub struct MemoryMaintenance {
    settings: Arc<MaintenanceSettings>,
    agents: Vec<(AgentId, Arc<dyn MemoryStore>)>,
    passes: Arc<AtomicU64>,
}

impl MemoryMaintenance {
    /// Maintenance with these settings and no agent yet.
    pub fn new(settings: MaintenanceSettings) -> Self {
        Self { settings: Arc::new(settings), agents: Vec::new(), passes: Arc::default() }
    }

    /// Adds an agent and its memory.
    pub fn with_agent(mut self, agent: impl Into<AgentId>, memory: Arc<dyn MemoryStore>) -> Self {
        self.agents.push((agent.into(), memory));
        self
    }

    /// Whether there is no agent to maintain.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// How many passes (over every agent) have finished.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Runs a pass every interval until `shutdown` is cancelled; returns promptly then, even in
    /// the middle of a pass (a store write in flight is a transaction, so nothing is half done).
    /// Spawn it and keep the handle.
    pub async fn run(self, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + self.settings.interval;
        let mut tick = tokio::time::interval_at(start, self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (agent, memory) in &self.agents {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = self.maintain(agent, memory.as_ref()) => {}
                }
            }
            self.passes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One agent's pass, bounded; its outcome is logged, never fatal.
    async fn maintain(&self, agent: &AgentId, memory: &dyn MemoryStore) {
        let limit = self.settings.options.time_budget + self.settings.grace;
        match tokio::time::timeout(limit, memory.maintain(agent, self.settings.options.clone())).await {
            Ok(Ok(report)) => tracing::info!(
                %agent,
                decayed = report.decayed,
                pruned = report.pruned,
                merged = report.merged,
                linked = report.linked,
                complete = report.complete,
                "memory maintenance pass"
            ),
            Ok(Err(error)) => tracing::warn!(%agent, %error, "memory maintenance failed; retrying next interval"),
            Err(_) => tracing::error!(%agent, ?limit, "memory maintenance did not finish in time; abandoned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use spacebot_testing::FakeMemory;

    use super::*;

    /// The agent and time budget of each maintenance pass `memory` was asked for.
    fn calls(memory: &FakeMemory) -> Vec<(AgentId, Duration)> {
        memory.maintenance_calls().into_iter().map(|(agent, options)| (agent, options.time_budget)).collect()
    }

    async fn wait(seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    fn settings() -> MaintenanceSettings {
        MaintenanceSettings::default()
            .with_interval(Duration::from_secs(3600))
            .with_time_budget(Duration::from_secs(10))
    }

    #[tokio::test(start_paused = true)]
    async fn each_agent_is_maintained_every_interval_with_its_budget_until_stopped() {
        let one = Arc::new(FakeMemory::new());
        let two = Arc::new(FakeMemory::new());
        let maintenance =
            MemoryMaintenance::new(settings()).with_agent("one", one.clone()).with_agent("two", two.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(maintenance.clone().run(stop.clone()));

        wait(3599).await;
        assert!(calls(&one).is_empty(), "no pass before the first interval");
        wait(2).await;
        assert_eq!(calls(&one), vec![(AgentId::new("one"), Duration::from_secs(10))]);
        assert_eq!(calls(&two), vec![(AgentId::new("two"), Duration::from_secs(10))]);
        assert_eq!(maintenance.passes(), 1);
        wait(3600).await;
        assert_eq!(calls(&one).len(), 2);
        assert_eq!(maintenance.passes(), 2);

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task).await.expect("stops promptly").expect("no panic");
        wait(10_000).await;
        assert_eq!(calls(&one).len(), 2, "nothing runs after the stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_store_is_abandoned_and_the_others_still_run_and_stop_interrupts_a_pass() {
        let hung = Arc::new(FakeMemory::new().with_hung_maintenance());
        let fine = Arc::new(FakeMemory::new());
        let maintenance =
            MemoryMaintenance::new(settings()).with_agent("hung", hung.clone()).with_agent("fine", fine.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(maintenance.clone().run(stop.clone()));

        wait(3601).await;
        assert_eq!(calls(&hung).len(), 1);
        assert!(calls(&fine).is_empty(), "still waiting on the hung store");
        // The budget (10 s) plus the grace (30 s), then the next agent.
        wait(40).await;
        assert_eq!(calls(&fine).len(), 1);
        assert_eq!(maintenance.passes(), 1);

        // The second pass starts on schedule (7,200 s) and hangs again.
        wait(3561).await;
        assert_eq!(calls(&hung).len(), 2, "tried again next interval");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task).await.expect("stops mid-pass").expect("no panic");
        assert_eq!(calls(&fine).len(), 1);
    }
}

//! An in-memory [`CronStore`] with the SQLite store's semantics (an unchanged upsert keeps the
//! job's state, claims are compare-and-set, the breaker trips once), for scheduler tests on
//! tokio's paused clock. Clones share the same data, so a test can "restart" a scheduler over
//! the state the last one left.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use spacebot_core::{AgentId, BreakerChange, CronJob, CronOutcome, CronRun, CronStore, StoreError};

/// Cron jobs and runs kept in memory.
#[derive(Default, Clone)]
pub struct MemoryCronStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    jobs: Vec<CronJob>,
    runs: Vec<CronRun>,
}

impl MemoryCronStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every run recorded, oldest first.
    pub fn all_runs(&self) -> Vec<CronRun> {
        self.state().runs.clone()
    }

    /// A job as stored.
    pub fn job(&self, agent: &str, id: &str) -> Option<CronJob> {
        self.state().jobs.iter().find(|j| j.agent.as_str() == agent && j.id == id).cloned()
    }

    /// Puts a job in as it is, state included (to set up what a previous run left).
    pub fn put(&self, job: CronJob) {
        let mut state = self.state();
        state.jobs.retain(|j| !(j.agent == job.agent && j.id == job.id));
        state.jobs.push(job);
    }
}

#[async_trait]
impl CronStore for MemoryCronStore {
    async fn upsert_job(&self, job: &CronJob) -> Result<(), StoreError> {
        let mut state = self.state();
        match state.jobs.iter_mut().find(|j| j.agent == job.agent && j.id == job.id) {
            Some(old) if old.same_definition(job) => {
                let (enabled, next_run, failures) = (old.enabled, old.next_run, old.consecutive_failures);
                *old = job.clone();
                old.enabled = enabled;
                old.next_run = next_run;
                old.consecutive_failures = failures;
            }
            Some(old) => {
                *old = job.clone();
                old.consecutive_failures = 0;
            }
            None => {
                let mut job = job.clone();
                job.consecutive_failures = 0;
                state.jobs.push(job);
            }
        }
        Ok(())
    }

    async fn jobs(&self, agent: Option<&AgentId>) -> Result<Vec<CronJob>, StoreError> {
        let mut jobs: Vec<CronJob> =
            self.state().jobs.iter().filter(|j| agent.is_none_or(|a| &j.agent == a)).cloned().collect();
        jobs.sort_by(|a, b| (a.agent.as_str(), &a.id).cmp(&(b.agent.as_str(), &b.id)));
        Ok(jobs)
    }

    async fn delete_job(&self, agent: &AgentId, id: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        let before = state.jobs.len();
        state.jobs.retain(|j| !(&j.agent == agent && j.id == id));
        Ok(state.jobs.len() < before)
    }

    async fn claim(
        &self,
        agent: &AgentId,
        id: &str,
        expected: Option<DateTime<Utc>>,
        next: Option<DateTime<Utc>>,
        spend: bool,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(job) =
            state.jobs.iter_mut().find(|j| &j.agent == agent && j.id == id && j.enabled && j.next_run == expected)
        else {
            return Ok(false);
        };
        job.next_run = next;
        if spend {
            job.enabled = false;
        }
        Ok(true)
    }

    async fn count_outcome(
        &self,
        agent: &AgentId,
        id: &str,
        failed: bool,
        limit: u32,
    ) -> Result<BreakerChange, StoreError> {
        let mut state = self.state();
        let Some(job) = state.jobs.iter_mut().find(|j| &j.agent == agent && j.id == id) else {
            return Ok(BreakerChange::None);
        };
        if !failed {
            job.consecutive_failures = 0;
            return Ok(BreakerChange::None);
        }
        job.consecutive_failures += 1;
        if job.enabled && job.consecutive_failures >= limit {
            job.enabled = false;
            return Ok(BreakerChange::Tripped);
        }
        Ok(BreakerChange::None)
    }

    async fn run_started(&self, run: &CronRun) -> Result<(), StoreError> {
        let mut state = self.state();
        if !state.runs.iter().any(|r| r.id == run.id) {
            state.runs.push(run.clone());
        }
        Ok(())
    }

    async fn run_finished(
        &self,
        run: &str,
        outcome: CronOutcome,
        delivery: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(run) = state.runs.iter_mut().find(|r| r.id == run && r.finished_at.is_none()) {
            run.finished_at = Some(at);
            run.outcome = Some(outcome);
            run.delivery = delivery.map(str::to_owned);
        }
        Ok(())
    }

    async fn runs(&self, agent: &AgentId, job: &str, limit: usize) -> Result<Vec<CronRun>, StoreError> {
        let state = self.state();
        Ok(state.runs.iter().rev().filter(|r| &r.agent == agent && r.job == job).take(limit).cloned().collect())
    }

    async fn interrupt_unfinished(&self, at: DateTime<Utc>) -> Result<Vec<CronRun>, StoreError> {
        let mut state = self.state();
        let mut settled = Vec::new();
        for run in state.runs.iter_mut().filter(|r| r.finished_at.is_none()) {
            run.finished_at = Some(at);
            run.outcome = Some(CronOutcome::Interrupted);
            settled.push(run.clone());
        }
        Ok(settled)
    }
}

//! The agent's allowance of background model calls: the calls nobody is waiting for (rolling
//! summaries, chronicle checkpoints and rollups), which is where a loop can spend a user's money
//! while nobody watches.
//!
//! Every such call goes through [`context::summarize`](crate::context), which asks the agent's
//! one [`BackgroundBudget`] first. The budget refuses a call when
//! - the agent made `max_calls_per_hour` background calls in the last hour, or
//! - its circuit breaker is open: `breaker_failures` background calls in a row failed or were
//!   wasted (their result refused by the store), so the next ones wait `breaker_cooldown`.
//!
//! A refusal costs nothing and is not a failure; the job that asked fails (or, for a checkpoint,
//! commits unsummarized) and is retried after the usual delay. Each trip and each exhaustion is
//! logged once, and [`BackgroundBudget::notice`] says what holds calls back, for `status`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use spacebot_core::AgentId;

/// How many background model calls an agent may make, and when its breaker opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackgroundBudgetSettings {
    /// Background model calls allowed per rolling hour, across all the agent's conversations.
    pub max_calls_per_hour: u32,
    /// Failed or wasted background calls in a row that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls.
    pub breaker_cooldown: Duration,
}

impl Default for BackgroundBudgetSettings {
    fn default() -> Self {
        Self { max_calls_per_hour: 600, breaker_failures: 5, breaker_cooldown: Duration::from_secs(15 * 60) }
    }
}

impl BackgroundBudgetSettings {
    /// Sets the calls allowed per rolling hour (at least 1).
    pub fn with_max_calls_per_hour(mut self, calls: u32) -> Self {
        self.max_calls_per_hour = calls.max(1);
        self
    }

    /// Sets the failures in a row that open the breaker (at least 1) and how long it stays open.
    pub fn with_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cooldown = cooldown;
        self
    }
}

/// Why a background call was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the agent's background budget of {limit} model calls an hour is spent (the next is allowed in {wait}s)")]
    Spent { limit: u32, wait: u64 },
    #[error("background model calls are paused for {wait}s after {failures} failed in a row")]
    BreakerOpen { failures: u32, wait: u64 },
}

/// One agent's background budget, shared by all its conversations.
#[derive(Debug)]
pub struct BackgroundBudget {
    agent: AgentId,
    settings: BackgroundBudgetSettings,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When each call of the last hour was made, oldest first.
    calls: VecDeque<Instant>,
    /// Failed or wasted calls since the last success.
    failures: u32,
    /// Until when the breaker refuses calls.
    open_until: Option<Instant>,
    /// Whether the exhaustion of the hourly budget was logged (once per exhaustion).
    spent_logged: bool,
}

impl BackgroundBudget {
    /// A fresh budget for `agent`.
    pub fn new(agent: AgentId, settings: BackgroundBudgetSettings) -> Self {
        Self { agent, settings, state: Mutex::default() }
    }

    /// The settings.
    pub fn settings(&self) -> &BackgroundBudgetSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters, consistent after every statement; a panic elsewhere while
        // holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one call from the budget, or says why not.
    pub(crate) fn acquire(&self) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(until) = state.open_until {
            if now < until {
                return Err(Refusal::BreakerOpen { failures: state.failures, wait: (until - now).as_secs() });
            }
            // Half-open: this call may go; one more failure opens it again.
            state.open_until = None;
            state.failures = self.settings.breaker_failures.saturating_sub(1);
        }
        let hour = Duration::from_secs(3600);
        while state.calls.front().is_some_and(|at| now.duration_since(*at) >= hour) {
            state.calls.pop_front();
        }
        if state.calls.len() >= self.settings.max_calls_per_hour as usize {
            let wait = state.calls.front().map_or(0, |oldest| (hour - now.duration_since(*oldest)).as_secs());
            if !std::mem::replace(&mut state.spent_logged, true) {
                tracing::error!(agent = %self.agent, limit = self.settings.max_calls_per_hour,
                    "the agent's background model-call budget is spent: compaction waits until calls age out");
            }
            return Err(Refusal::Spent { limit: self.settings.max_calls_per_hour, wait });
        }
        state.spent_logged = false;
        state.calls.push_back(now);
        Ok(())
    }

    /// Records how a background call (or the job it served) turned out: a success closes the
    /// breaker; `breaker_failures` failures in a row open it.
    pub(crate) fn record(&self, success: bool, what: &str) {
        let mut state = self.lock();
        if success {
            state.failures = 0;
            return;
        }
        state.failures += 1;
        if state.failures >= self.settings.breaker_failures && state.open_until.is_none() {
            state.open_until = Some(Instant::now() + self.settings.breaker_cooldown);
            tracing::error!(agent = %self.agent, failures = state.failures, cooldown = ?self.settings.breaker_cooldown,
                last = what, "background model calls failed repeatedly; pausing them (circuit breaker open)");
        }
    }

    /// What holds background calls back right now, in a sentence, if anything.
    pub fn notice(&self) -> Option<String> {
        let now = Instant::now();
        let state = self.lock();
        if let Some(until) = state.open_until.filter(|until| now < *until) {
            return Some(format!(
                "agent '{}': background model calls (compaction) are paused for {}s after {} failed in a row",
                self.agent,
                (until - now).as_secs(),
                state.failures
            ));
        }
        let hour = Duration::from_secs(3600);
        let recent = state.calls.iter().filter(|at| now.duration_since(**at) < hour).count();
        (recent >= self.settings.max_calls_per_hour as usize).then(|| {
            format!(
                "agent '{}': the background budget of {} model calls an hour is spent; compaction waits",
                self.agent, self.settings.max_calls_per_hour
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(calls: u32, failures: u32) -> BackgroundBudget {
        let settings = BackgroundBudgetSettings::default()
            .with_max_calls_per_hour(calls)
            .with_breaker(failures, Duration::from_secs(600));
        BackgroundBudget::new(AgentId::new("main"), settings)
    }

    #[tokio::test(start_paused = true)]
    async fn the_hourly_budget_refuses_once_spent_and_refills_as_calls_age() {
        let budget = budget(3, 5);
        for _ in 0..3 {
            budget.acquire().expect("within the budget");
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        assert_eq!(budget.acquire(), Err(Refusal::Spent { limit: 3, wait: 3600 - 180 }));
        assert!(budget.notice().is_some_and(|notice| notice.contains("budget of 3")));
        tokio::time::advance(Duration::from_secs(3600 - 180)).await;
        assert_eq!(budget.acquire(), Ok(()), "the oldest call aged out");
        assert_eq!(budget.acquire(), Err(Refusal::Spent { limit: 3, wait: 60 }));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_open_the_breaker_for_its_cooldown() {
        let budget = budget(100, 3);
        for _ in 0..2 {
            budget.acquire().expect("closed");
            budget.record(false, "server error");
        }
        budget.acquire().expect("still closed");
        budget.record(true, "ok");
        for _ in 0..3 {
            budget.acquire().expect("a success reset the count");
            budget.record(false, "server error");
        }
        assert!(matches!(budget.acquire(), Err(Refusal::BreakerOpen { failures: 3, wait: 600 })));
        assert!(budget.notice().is_some_and(|notice| notice.contains("paused")));
        tokio::time::advance(Duration::from_secs(600)).await;
        budget.acquire().expect("half-open after the cooldown");
        budget.record(false, "still failing");
        assert!(matches!(budget.acquire(), Err(Refusal::BreakerOpen { .. })), "one more failure opens it again");
        tokio::time::advance(Duration::from_secs(600)).await;
        budget.acquire().expect("half-open");
        budget.record(true, "recovered");
        assert_eq!(budget.notice(), None);
        budget.acquire().expect("closed again");
    }
}

//! Cron jobs: the durable definitions and run records ([`CronStore`], kept beside the conversation
//! log) and the service that creates, lists, deletes and starts them ([`CronJobs`], implemented
//! by the cortex's scheduler), so the channel's `cron` tool and the HTTP API need this crate alone.
//!
//! A job's *next run* is part of its durable state: the scheduler claims a run by moving it
//! forward with a compare-and-set ([`CronStore::claim`]) before the run starts, so a restart
//! neither repeats nor skips a run, and a run-once job is spent by its claim, so it fires at most
//! once even if the daemon dies mid-run.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{CronError, StoreError};
use crate::ids::{AgentId, ConversationId};

/// One cron job: what to ask, when, and where the answer goes.
///
/// The definition (prompt, schedule, limits, target) is what its creator gave; `enabled`,
/// `next_run` and `consecutive_failures` are the scheduler's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CronJob {
    /// The agent that runs it.
    pub agent: AgentId,
    /// Its id, unique per agent.
    pub id: String,
    /// The message each run starts with.
    pub prompt: String,
    /// A cron expression (five fields, or six with seconds first), read in `timezone`.
    pub cron: Option<String>,
    /// Or a fixed interval between runs.
    #[serde(with = "opt_secs", default)]
    pub every: Option<Duration>,
    /// The IANA time zone of `cron` and `active_hours` (`Europe/Berlin`); UTC when unset.
    pub timezone: Option<String>,
    /// Runs only when the local hour is in `[start, end)` (`end` may wrap past midnight).
    pub active_hours: Option<(u8, u8)>,
    /// Runs once, at its first due time, and is then spent.
    #[serde(default)]
    pub run_once: bool,
    /// How long a run may take before it counts as failed.
    #[serde(with = "opt_secs", default)]
    pub timeout: Option<Duration>,
    /// Where a run's first reply goes: `adapter:target` (`discord:123456789`, `webhook:c1`).
    pub deliver_to: String,
    /// The conversation that created it (through the `cron` tool), if one did.
    pub conversation: Option<ConversationId>,
    /// Where it came from: `config`, `conversation`, `cli` or `api`.
    pub source: String,
    /// Whether it runs; the circuit breaker and a spent run-once job clear it.
    pub enabled: bool,
    /// When it runs next, once the scheduler has planned it.
    pub next_run: Option<DateTime<Utc>>,
    /// Failed runs since the last success.
    pub consecutive_failures: u32,
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let secs = Option::<f64>::deserialize(deserializer)?;
        Ok(secs.filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64))
    }
}

impl CronJob {
    /// An enabled job with no schedule yet (set one with [`with_cron`](Self::with_cron) or
    /// [`with_every`](Self::with_every)).
    pub fn new(
        agent: impl Into<AgentId>,
        id: impl Into<String>,
        prompt: impl Into<String>,
        deliver_to: impl Into<String>,
    ) -> Self {
        Self {
            agent: agent.into(),
            id: id.into(),
            prompt: prompt.into(),
            cron: None,
            every: None,
            timezone: None,
            active_hours: None,
            run_once: false,
            timeout: None,
            deliver_to: deliver_to.into(),
            conversation: None,
            source: "api".to_owned(),
            enabled: true,
            next_run: None,
            consecutive_failures: 0,
        }
    }

    /// Runs on a cron expression.
    pub fn with_cron(mut self, expression: impl Into<String>) -> Self {
        self.cron = Some(expression.into());
        self
    }

    /// Runs every `interval`.
    pub fn with_every(mut self, interval: Duration) -> Self {
        self.every = Some(interval);
        self
    }

    /// Reads the schedule and active hours in this IANA time zone.
    pub fn with_timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = Some(timezone.into());
        self
    }

    /// Runs only when the local hour is in `[start, end)`.
    pub fn with_active_hours(mut self, start: u8, end: u8) -> Self {
        self.active_hours = Some((start, end));
        self
    }

    /// Makes it a run-once job.
    pub fn with_run_once(mut self, run_once: bool) -> Self {
        self.run_once = run_once;
        self
    }

    /// Sets the per-run timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Records the conversation that created it.
    pub fn with_conversation(mut self, conversation: impl Into<ConversationId>) -> Self {
        self.conversation = Some(conversation.into());
        self
    }

    /// Records where it came from (`config`, `conversation`, `cli`, `api`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Whether two jobs have the same definition (the scheduler's state aside): an upsert of an
    /// unchanged definition keeps the job's next run, failures and whether it is enabled.
    pub fn same_definition(&self, other: &CronJob) -> bool {
        self.agent == other.agent
            && self.id == other.id
            && self.prompt == other.prompt
            && self.cron == other.cron
            && self.every == other.every
            && self.timezone == other.timezone
            && self.active_hours == other.active_hours
            && self.run_once == other.run_once
            && self.timeout == other.timeout
            && self.deliver_to == other.deliver_to
    }

    /// The adapter and target of `deliver_to`: the target is what follows the last `:`, so a
    /// named adapter instance (`discord:ops:123`) keeps its key. `None` when either is empty.
    pub fn delivery_target(&self) -> Option<(&str, &str)> {
        let (adapter, target) = self.deliver_to.rsplit_once(':')?;
        (!adapter.is_empty() && !target.is_empty()).then_some((adapter, target))
    }
}

/// A job as a person writes it: the fields of `[[agents.cron]]` in the config, and of the body
/// of `POST /api/agents/{agent}/cron`. Durations are `"30m"`, `"1h30m"`, `"45s"` or a number
/// of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CronJobSpec {
    /// The job's id, unique per agent.
    pub id: String,
    /// The message each run starts with.
    pub prompt: String,
    /// A cron expression.
    #[serde(default)]
    pub cron: Option<String>,
    /// Or an interval.
    #[serde(default)]
    pub every: Option<DurationText>,
    /// The IANA time zone (UTC when unset).
    #[serde(default)]
    pub timezone: Option<String>,
    /// `[start, end)` local hours.
    #[serde(default)]
    pub active_hours: Option<[u8; 2]>,
    /// Run once, then stop.
    #[serde(default)]
    pub run_once: bool,
    /// How long a run may take.
    #[serde(default)]
    pub timeout: Option<DurationText>,
    /// `adapter:target`.
    pub deliver_to: String,
}

/// A duration as written: `"30m"`, `"1h30m"`, `"45s"`, `"500ms"`, or a number of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    /// A number of seconds.
    Seconds(f64),
    /// A duration with units.
    Text(String),
}

impl DurationText {
    /// The duration, or why it can't be read.
    pub fn parse(&self) -> Result<Duration, String> {
        match self {
            Self::Seconds(secs) if secs.is_finite() && *secs >= 0.0 => Ok(Duration::from_secs_f64(*secs)),
            Self::Seconds(secs) => Err(format!("{secs} is not a number of seconds")),
            Self::Text(text) => parse_duration(text),
        }
    }
}

/// Reads `"30m"`, `"1h30m"`, `"45s"`, `"500ms"`, `"2d"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("`{text}` is not a duration like 30s, 15m, 1h30m or 2d");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        let part = scale.checked_mul(u32::try_from(number).map_err(|_| bad())?).ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

impl CronJobSpec {
    /// A spec with no schedule yet (set `cron` or `every`).
    pub fn new(id: impl Into<String>, prompt: impl Into<String>, deliver_to: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            prompt: prompt.into(),
            cron: None,
            every: None,
            timezone: None,
            active_hours: None,
            run_once: false,
            timeout: None,
            deliver_to: deliver_to.into(),
        }
    }

    /// The job this spec describes for `agent` (its schedule is checked when it is created).
    pub fn into_job(self, agent: impl Into<AgentId>) -> Result<CronJob, CronError> {
        let mut job = CronJob::new(agent, self.id, self.prompt, self.deliver_to);
        job.cron = self.cron;
        job.every =
            self.every.map(|e| e.parse().map_err(|m| CronError::Invalid(format!("`every`: {m}")))).transpose()?;
        job.timeout =
            self.timeout.map(|t| t.parse().map_err(|m| CronError::Invalid(format!("`timeout`: {m}")))).transpose()?;
        job.timezone = self.timezone;
        job.active_hours = self.active_hours.map(|[start, end]| (start, end));
        job.run_once = self.run_once;
        Ok(job)
    }
}

/// How a cron run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CronOutcome {
    /// The agent replied; the reply was handed on to the target.
    Replied,
    /// The agent chose not to reply.
    Skipped,
    /// The turn failed.
    Failed,
    /// The run outlived its timeout.
    TimedOut,
    /// Not started: the previous run of the job was still going.
    Overlapped,
    /// The daemon stopped or died during the run.
    Interrupted,
}

impl CronOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Overlapped => "overlapped",
            Self::Interrupted => "interrupted",
        }
    }

    /// The outcome with this stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Replied, Self::Skipped, Self::Failed, Self::TimedOut, Self::Overlapped, Self::Interrupted]
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }

    /// Whether the run counts against the circuit breaker.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut)
    }
}

/// One run of a cron job, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CronRun {
    /// The run's id.
    pub id: String,
    /// The agent.
    pub agent: AgentId,
    /// The job.
    pub job: String,
    /// The fresh conversation the run happened in.
    pub conversation: ConversationId,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended, once it has.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended, once it has.
    pub outcome: Option<CronOutcome>,
    /// What became of the delivery: `delivered`, `nothing to deliver`, or why it failed.
    pub delivery: Option<String>,
}

impl CronRun {
    /// A run of `job` starting now in `conversation`.
    pub fn new(
        id: impl Into<String>,
        agent: impl Into<AgentId>,
        job: impl Into<String>,
        conversation: impl Into<ConversationId>,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.into(),
            agent: agent.into(),
            job: job.into(),
            conversation: conversation.into(),
            started_at,
            finished_at: None,
            outcome: None,
            delivery: None,
        }
    }
}

/// What a failed run did to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerChange {
    /// Nothing changed beyond the failure count.
    None,
    /// This failure disabled the job (it reached the limit while the job was enabled).
    Tripped,
}

/// The durable record of cron jobs and their runs, kept beside the conversation log.
#[async_trait]
pub trait CronStore: Send + Sync + 'static {
    /// Creates a job, or updates its definition. An unchanged definition keeps the job's state
    /// (a spent run-once job stays spent); a changed one is enabled again and replanned.
    async fn upsert_job(&self, job: &CronJob) -> Result<(), StoreError>;

    /// The jobs of `agent` (every agent's when `None`), ordered by agent and id.
    async fn jobs(&self, agent: Option<&AgentId>) -> Result<Vec<CronJob>, StoreError>;

    /// Deletes a job (its runs stay recorded). Returns `false` when there was none.
    async fn delete_job(&self, agent: &AgentId, id: &str) -> Result<bool, StoreError>;

    /// Moves a job's next run from `expected` to `next` if it still is `expected`; with
    /// `spend`, also disables it (a run-once job's claim). Returns whether this call won.
    async fn claim(
        &self,
        agent: &AgentId,
        id: &str,
        expected: Option<DateTime<Utc>>,
        next: Option<DateTime<Utc>>,
        spend: bool,
    ) -> Result<bool, StoreError>;

    /// Counts a run's outcome: a success resets the failure count; a failure adds one and
    /// disables the job at `limit` consecutive failures.
    async fn count_outcome(
        &self,
        agent: &AgentId,
        id: &str,
        failed: bool,
        limit: u32,
    ) -> Result<BreakerChange, StoreError>;

    /// Records a run as started.
    async fn run_started(&self, run: &CronRun) -> Result<(), StoreError>;

    /// Records how a run ended (once: a second call changes nothing).
    async fn run_finished(
        &self,
        run: &str,
        outcome: CronOutcome,
        delivery: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The latest `limit` runs of a job, newest first.
    async fn runs(&self, agent: &AgentId, job: &str, limit: usize) -> Result<Vec<CronRun>, StoreError>;

    /// Records every run still without an end as interrupted (at start: the last daemon died
    /// during them), and returns those runs.
    async fn interrupt_unfinished(&self, at: DateTime<Utc>) -> Result<Vec<CronRun>, StoreError>;
}

/// The cron service as tools and the API see it: validated creation, listing, deletion and an
/// immediate run. The cortex's scheduler implements it.
#[async_trait]
pub trait CronJobs: Send + Sync + 'static {
    /// Validates and stores a job (replacing one with the same id) and plans its first run.
    async fn create(&self, job: CronJob) -> Result<CronJob, CronError>;

    /// The jobs of an agent.
    async fn list(&self, agent: &AgentId) -> Result<Vec<CronJob>, CronError>;

    /// Deletes a job. Returns `false` when there was none.
    async fn delete(&self, agent: &AgentId, id: &str) -> Result<bool, CronError>;

    /// Starts a run of the job now, outside its schedule (its planned runs are unchanged).
    async fn run_now(&self, agent: &AgentId, id: &str) -> Result<(), CronError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units_or_as_seconds() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err() && parse_duration("5x").is_err() && parse_duration("").is_err());
        let spec: CronJobSpec = serde_json::from_value(serde_json::json!({
            "id": "j", "prompt": "p", "every": "2s", "timeout": 30, "deliver_to": "webhook:c1", "active_hours": [9, 18]
        }))
        .unwrap();
        let job = spec.into_job("main").unwrap();
        assert_eq!(
            (job.every, job.timeout, job.active_hours),
            (Some(Duration::from_secs(2)), Some(Duration::from_secs(30)), Some((9, 18)))
        );
    }

    #[test]
    fn the_target_follows_the_last_colon() {
        let job = CronJob::new("main", "j", "p", "discord:ops:123");
        assert_eq!(job.delivery_target(), Some(("discord:ops", "123")));
        assert_eq!(CronJob::new("main", "j", "p", "webhook:c1").delivery_target(), Some(("webhook", "c1")));
        assert_eq!(CronJob::new("main", "j", "p", "nocolon").delivery_target(), None);
        assert_eq!(CronJob::new("main", "j", "p", "webhook:").delivery_target(), None);
    }

    #[test]
    fn outcomes_round_trip_and_only_failures_count() {
        for outcome in [
            CronOutcome::Replied,
            CronOutcome::Skipped,
            CronOutcome::Failed,
            CronOutcome::TimedOut,
            CronOutcome::Overlapped,
            CronOutcome::Interrupted,
        ] {
            assert_eq!(CronOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert!(CronOutcome::TimedOut.is_failure());
        assert!(!CronOutcome::Overlapped.is_failure());
    }

    #[test]
    fn jobs_serialize_durations_as_seconds() {
        let job = CronJob::new("main", "j", "p", "webhook:c1").with_every(Duration::from_secs(90));
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["every"], 90.0);
        let back: CronJob = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
    }
}

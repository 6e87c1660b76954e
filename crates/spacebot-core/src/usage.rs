//! Token usage, recorded durably ([`UsageLedger`]): every model call's tokens added to a row per
//! day, agent, model and process kind, so `GET /api/usage` and `spacebot usage` can say what the
//! agents spent, across restarts.

use async_trait::async_trait;
use chrono::NaiveDate;

use crate::error::StoreError;
use crate::ids::AgentId;
use crate::process::ProcessKind;

/// The usage of model calls on one day by one agent's process kind on one model: a row of the
/// ledger, or one call's share of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRow {
    /// The day (UTC).
    pub day: NaiveDate,
    /// The agent.
    pub agent: AgentId,
    /// The model, as `provider/model`.
    pub model: String,
    /// The kind of process that made the calls.
    pub process: ProcessKind,
    /// How many requests answered.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl UsageRow {
    /// A row.
    pub fn new(day: NaiveDate, agent: AgentId, model: impl Into<String>, process: ProcessKind) -> Self {
        Self { day, agent, model: model.into(), process, requests: 0, input_tokens: 0, output_tokens: 0 }
    }

    /// Sets the counts.
    pub fn with_counts(mut self, requests: u64, input_tokens: u64, output_tokens: u64) -> Self {
        self.requests = requests;
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }
}

/// Where usage is kept.
#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// Adds `usage`'s counts to its row (created at zero when new).
    async fn add_usage(&self, usage: &UsageRow) -> Result<(), StoreError>;

    /// Every row from `since` on (all of them without it), ordered by day, agent, model and
    /// process kind.
    async fn usage(&self, since: Option<NaiveDate>) -> Result<Vec<UsageRow>, StoreError>;
}

//! Durable records of process runs ([`ProcessRuns`]), so that a branch or worker cut short by a
//! crash still gets its one terminal state, recorded, and the person who asked for it hears
//! about it. The runtime task that writes them is in `journal.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{AgentId, ConversationId, ProcessId};
use crate::message::InboundMessage;
use crate::process::{ProcessKind, TerminalState};

/// One run of a process, as recorded when it started.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessRun {
    /// The process.
    pub process: ProcessId,
    /// The agent.
    pub agent: AgentId,
    /// The conversation that owns it.
    pub conversation: ConversationId,
    /// Its kind.
    pub kind: ProcessKind,
    /// Its task or description.
    pub description: String,
    /// The message whose turn started it, to answer in that context if it is interrupted.
    pub origin: Option<InboundMessage>,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

impl ProcessRun {
    /// A run starting now.
    pub fn new(
        process: ProcessId,
        agent: AgentId,
        conversation: ConversationId,
        kind: ProcessKind,
        description: impl Into<String>,
        origin: Option<InboundMessage>,
    ) -> Self {
        Self { process, agent, conversation, kind, description: description.into(), origin, started_at: Utc::now() }
    }
}

/// Where process runs are recorded; a [`ConversationLog`] that keeps them hands one out from
/// [`ConversationLog::process_runs`].
///
/// [`ConversationLog`]: crate::ConversationLog
/// [`ConversationLog::process_runs`]: crate::ConversationLog::process_runs
#[async_trait]
pub trait ProcessRuns: Send + Sync + 'static {
    /// Records a run that started.
    async fn started(&self, run: &ProcessRun) -> Result<(), StoreError>;

    /// Records how a run ended, unless its end is recorded already. Returns whether this call
    /// recorded it.
    async fn ended(&self, process: &ProcessId, state: TerminalState) -> Result<bool, StoreError>;

    /// Runs recorded as started and never as ended, oldest first.
    async fn unfinished(&self) -> Result<Vec<ProcessRun>, StoreError>;
}

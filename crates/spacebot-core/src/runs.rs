//! Durable records of process runs ([`ProcessRuns`]), so that a branch or worker cut short by a
//! crash still gets its one terminal state, recorded, and the person who asked for it hears
//! about it. The runtime task that writes them is in `journal.rs`.
//!
//! A run also keeps what its conversation is still [`Owed`] when it ends (a result to relay, or a
//! notice that a shutdown stopped it), until the conversation has been told, so a crash or a
//! restart between the end and the telling loses nothing: the next start tells it, once. And a
//! run is found again by the message that started it ([`ProcessRuns::started_for`]), so a turn
//! replayed after a crash does not start the same work a second time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{AgentId, ConversationId, MessageId, ProcessId};
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

/// What a conversation is still owed about a run that ended, recorded with its end and kept
/// until [`ProcessRuns::told`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owed {
    /// Its result, for the conversation's next relay turn.
    Result(String),
    /// A notice to send as it is (the harness's words, not the model's).
    Notice(String),
}

impl Owed {
    /// The text owed.
    pub fn text(&self) -> &str {
        match self {
            Self::Result(text) | Self::Notice(text) => text,
        }
    }
}

/// A recorded run with what became of it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedRun {
    /// The run as it started.
    pub run: ProcessRun,
    /// How it ended; `None` while it runs (or until a crash that cut it short is settled).
    pub state: Option<TerminalState>,
    /// Its result or end as its conversation got it, when one was recorded.
    pub result: Option<String>,
    /// What its conversation is still owed, if anything.
    pub owed: Option<Owed>,
}

impl RecordedRun {
    /// A run with no end recorded.
    pub fn new(run: ProcessRun) -> Self {
        Self { run, state: None, result: None, owed: None }
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

    /// Records how a run ended, and what its conversation is owed about it, unless its end is
    /// recorded already. Returns whether this call recorded it.
    async fn ended(&self, process: &ProcessId, state: TerminalState, owed: Option<&Owed>) -> Result<bool, StoreError>;

    /// Runs recorded as started and never as ended, oldest first.
    async fn unfinished(&self) -> Result<Vec<ProcessRun>, StoreError>;

    /// Ended runs whose conversation is still owed something, oldest first.
    async fn owed(&self) -> Result<Vec<RecordedRun>, StoreError>;

    /// One conversation's ended runs still owed to it, oldest first. The default filters
    /// [`owed`](Self::owed); a store with an index should answer from it.
    async fn owed_in(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Vec<RecordedRun>, StoreError> {
        Ok(self
            .owed()
            .await?
            .into_iter()
            .filter(|recorded| &recorded.run.agent == agent && &recorded.run.conversation == conversation)
            .collect())
    }

    /// Marks what these runs owed their conversation as told (unknown ids are ignored).
    async fn told(&self, processes: &[ProcessId]) -> Result<(), StoreError>;

    /// The runs started in the turns answering these messages of `agent`, oldest first.
    async fn started_for(&self, agent: &AgentId, messages: &[MessageId]) -> Result<Vec<RecordedRun>, StoreError>;
}

//! The chronicle contract: durable checkpoints that summarise a conversation's log.
//!
//! A long conversation cannot keep every message in its model's context, and a rolling summary
//! forgets, and is lost at a restart. A chronicle instead keeps *checkpoints* next to the log:
//! each level-0 checkpoint summarises one span of the conversation's recorded messages (by their
//! log sequence number), the spans are contiguous and never overlap, and every so often a run of
//! them is summarised again into a level-1 *rollup*. The live context then holds only what came
//! after the newest checkpoint, plus a compact view of the checkpoints.
//!
//! Contiguity is the store's job, not the caller's: [`Chronicle::commit`] is a compare-and-set
//! that accepts a level-0 checkpoint only when it starts at the first message after the previous
//! one, and fails with [`ChronicleError::Superseded`] otherwise. A store that offers a chronicle
//! over its log says so through [`ConversationLog::chronicle`](crate::ConversationLog::chronicle),
//! so checkpoints always describe the very log the conversation is recorded in.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ids::{AgentId, ConversationId};
use crate::message::StoredMessage;

/// Why a checkpoint was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckpointKind {
    /// Enough messages (or context) accumulated since the last checkpoint.
    Interval,
    /// The first checkpoint of a conversation that already had a long log.
    Bootstrap,
    /// The context passed the background compaction threshold.
    Pressure,
    /// The context was truncated at once; the span is recorded without a summary.
    Emergency,
    /// A level-1 summary of several level-0 checkpoints.
    Rollup,
}

impl CheckpointKind {
    /// Every kind.
    pub const ALL: [CheckpointKind; 5] =
        [Self::Interval, Self::Bootstrap, Self::Pressure, Self::Emergency, Self::Rollup];

    /// The stored label: `interval`, `bootstrap`, `pressure`, `emergency`, `rollup`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interval => "interval",
            Self::Bootstrap => "bootstrap",
            Self::Pressure => "pressure",
            Self::Emergency => "emergency",
            Self::Rollup => "rollup",
        }
    }

    /// The kind with this label, if any.
    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == label)
    }
}

impl fmt::Display for CheckpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A committed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The agent.
    pub agent: AgentId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Its number in the conversation: 1, 2, 3, ... over both levels, in commit order.
    pub seq: u64,
    /// 0 for the summary of a span of messages, 1 for a rollup of level-0 checkpoints.
    pub level: u8,
    /// Why it was cut.
    pub kind: CheckpointKind,
    /// A short title.
    pub title: String,
    /// The summary (or, when `unsummarized`, a notice saying why there is none).
    pub summary: String,
    /// The span could not be summarised; its messages are still in the log.
    pub unsummarized: bool,
    /// Log sequence number of the first message covered.
    pub covers_from_seq: u64,
    /// Log sequence number of the last message covered.
    pub covers_to_seq: u64,
    /// When the first covered message was written.
    pub covers_from_at: DateTime<Utc>,
    /// When the last covered message was written.
    pub covers_to_at: DateTime<Utc>,
    /// Messages covered.
    pub message_count: u64,
    /// Estimated tokens of the summary.
    pub token_estimate: u64,
    /// The model that wrote the summary, if one did.
    pub model: Option<String>,
    /// For a level-0 checkpoint: the rollup that summarises it, once one does.
    pub rolled_up_into: Option<u64>,
    /// For a rollup: the first and last checkpoint numbers it summarises.
    pub rolls_up: Option<(u64, u64)>,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
}

impl Checkpoint {
    /// A checkpoint numbered `seq` of `kind` (level 1 for a rollup, else 0) with every other
    /// field empty: stores fill in the public fields from what they read.
    pub fn new(agent: AgentId, conversation: ConversationId, seq: u64, kind: CheckpointKind) -> Self {
        Self {
            agent,
            conversation,
            seq,
            level: u8::from(kind == CheckpointKind::Rollup),
            kind,
            title: String::new(),
            summary: String::new(),
            unsummarized: false,
            covers_from_seq: 0,
            covers_to_seq: 0,
            covers_from_at: DateTime::<Utc>::UNIX_EPOCH,
            covers_to_at: DateTime::<Utc>::UNIX_EPOCH,
            message_count: 0,
            token_estimate: 0,
            model: None,
            rolled_up_into: None,
            rolls_up: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    /// Whether it stands in the chronicle's view: a rollup, or a level-0 checkpoint no rollup
    /// summarises.
    pub fn is_current(&self) -> bool {
        self.level > 0 || self.rolled_up_into.is_none()
    }
}

/// A level-0 checkpoint to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewCheckpoint {
    /// The agent.
    pub agent: AgentId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Why it is cut (not [`CheckpointKind::Rollup`]).
    pub kind: CheckpointKind,
    /// A short title.
    pub title: String,
    /// The summary, or the notice of an unsummarised span.
    pub summary: String,
    /// Whether `summary` is only a notice.
    pub unsummarized: bool,
    /// The first and last log sequence numbers covered (inclusive).
    pub covers: (u64, u64),
    /// When the first and last covered messages were written.
    pub covers_at: (DateTime<Utc>, DateTime<Utc>),
    /// Messages covered.
    pub message_count: u64,
    /// The model that wrote the summary.
    pub model: Option<String>,
}

impl NewCheckpoint {
    /// A checkpoint of `kind` covering the log span `messages` (oldest first, at least one), with
    /// this title and summary. Empty `messages` give `None`.
    pub fn over(
        kind: CheckpointKind,
        messages: &[LoggedMessage],
        title: impl Into<String>,
        summary: impl Into<String>,
    ) -> Option<Self> {
        let (first, last) = (messages.first()?, messages.last()?);
        Some(Self {
            agent: first.message.agent.clone(),
            conversation: first.message.conversation.clone(),
            kind,
            title: title.into(),
            summary: summary.into(),
            unsummarized: false,
            covers: (first.seq, last.seq),
            covers_at: (first.message.created_at, last.message.created_at),
            message_count: messages.len() as u64,
            model: None,
        })
    }

    /// Marks the summary as a notice of an unsummarised span.
    pub fn unsummarized(mut self) -> Self {
        self.unsummarized = true;
        self
    }

    /// Records the model that wrote the summary.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

/// A rollup to commit: a level-1 summary of consecutive level-0 checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewRollup {
    /// The agent.
    pub agent: AgentId,
    /// The conversation.
    pub conversation: ConversationId,
    /// The first and last checkpoint numbers summarised (inclusive); none may be rolled up yet.
    pub sources: (u64, u64),
    /// A short title.
    pub title: String,
    /// The summary.
    pub summary: String,
    /// The model that wrote it.
    pub model: Option<String>,
}

impl NewRollup {
    /// A rollup of the checkpoints numbered `sources.0..=sources.1`.
    pub fn new(
        agent: AgentId,
        conversation: ConversationId,
        sources: (u64, u64),
        title: impl Into<String>,
        summary: impl Into<String>,
    ) -> Self {
        Self { agent, conversation, sources, title: title.into(), summary: summary.into(), model: None }
    }

    /// Records the model that wrote the summary.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

/// A message of the log with its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoggedMessage {
    /// Its place in the log: increasing in recording order (not consecutive within a
    /// conversation, since the numbers may be shared by all conversations of a store).
    pub seq: u64,
    /// The message.
    pub message: StoredMessage,
}

impl LoggedMessage {
    /// A message at `seq`.
    pub fn new(seq: u64, message: StoredMessage) -> Self {
        Self { seq, message }
    }
}

/// What the log holds after some point: how many messages, and the newest one's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogTail {
    /// Messages after the point.
    pub count: u64,
    /// The newest message's sequence number, if there is any after the point.
    pub newest: Option<u64>,
}

impl LogTail {
    /// A tail of `count` messages ending at `newest`.
    pub fn new(count: u64, newest: Option<u64>) -> Self {
        Self { count, newest }
    }
}

/// Why a checkpoint was not committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChronicleError {
    /// The chronicle moved on since the checkpoint was planned: its span no longer starts right
    /// after the previous checkpoint, or a source of the rollup is gone or rolled up already.
    /// Retrying the same checkpoint will not help; plan a new one.
    #[error("the checkpoint was superseded: {0}")]
    Superseded(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChronicleError {
    /// Whether the checkpoint lost a race with the chronicle (see [`ChronicleError::Superseded`]).
    pub fn is_superseded(&self) -> bool {
        matches!(self, Self::Superseded(_))
    }

    /// Whether a retry may succeed (a busy store).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_transient())
    }
}

/// The checkpoints of conversations, kept beside their log.
///
/// All reads are per `(agent, conversation)`. Message sequence numbers are those of the log the
/// store keeps; obtain a chronicle from the log itself
/// ([`ConversationLog::chronicle`](crate::ConversationLog::chronicle)) so the two agree.
#[async_trait]
pub trait Chronicle: Send + Sync + 'static {
    /// Every checkpoint of a conversation, both levels, in commit order (by `seq`).
    async fn checkpoints(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Vec<Checkpoint>, StoreError>;

    /// One checkpoint by its number, if it exists.
    async fn checkpoint(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<Option<Checkpoint>, StoreError>;

    /// Commits a level-0 checkpoint, atomically, if its span starts at the conversation's first
    /// message after the newest level-0 checkpoint (or at its first message, when there is
    /// none) and ends at or after that. Otherwise nothing changes and the error is
    /// [`ChronicleError::Superseded`].
    async fn commit(&self, checkpoint: NewCheckpoint) -> Result<Checkpoint, ChronicleError>;

    /// Commits a rollup and marks its sources rolled up, in one transaction. The sources are the
    /// level-0 checkpoints numbered `first..=last` (rollups numbered among them are not sources):
    /// at least two, `first` and `last` among them, none rolled up yet; else nothing changes and
    /// the error is [`ChronicleError::Superseded`]. The rollup's span is theirs.
    async fn commit_rollup(&self, rollup: NewRollup) -> Result<Checkpoint, ChronicleError>;

    /// The first `limit` messages of the conversation after log sequence number `after`
    /// (0: from the start), oldest first.
    async fn messages_after(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedMessage>, StoreError>;

    /// The last `limit` messages of the conversation after `after`, oldest first: what a
    /// conversation reloads after a restart.
    async fn latest_after(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedMessage>, StoreError>;

    /// How many messages the conversation has after `after`, and the newest one's number.
    async fn tail(&self, agent: &AgentId, conversation: &ConversationId, after: u64) -> Result<LogTail, StoreError>;

    /// The log sequence number of the last message the level-0 checkpoints cover (0 when there
    /// is none).
    async fn covered_to(&self, agent: &AgentId, conversation: &ConversationId) -> Result<u64, StoreError> {
        Ok(self
            .checkpoints(agent, conversation)
            .await?
            .iter()
            .filter(|checkpoint| checkpoint.level == 0)
            .map(|checkpoint| checkpoint.covers_to_seq)
            .max()
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Role;

    #[test]
    fn kinds_round_trip_through_their_labels() {
        for kind in CheckpointKind::ALL {
            assert_eq!(CheckpointKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CheckpointKind::parse("weekly"), None);
    }

    #[test]
    fn a_new_checkpoint_covers_its_messages_from_first_to_last() {
        let message = |seq: u64, text: &str| {
            LoggedMessage::new(
                seq,
                StoredMessage::new(AgentId::new("a"), ConversationId::new("c"), Role::User, "u", text),
            )
        };
        let messages = [message(3, "one"), message(7, "two"), message(9, "three")];
        let checkpoint =
            NewCheckpoint::over(CheckpointKind::Interval, &messages, "t", "s").expect("messages give a span");
        assert_eq!((checkpoint.covers, checkpoint.message_count), ((3, 9), 3));
        assert!(NewCheckpoint::over(CheckpointKind::Interval, &[], "t", "s").is_none());
        assert!(ChronicleError::Superseded("moved".to_owned()).is_superseded());
    }
}

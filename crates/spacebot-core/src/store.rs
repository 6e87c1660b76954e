//! Storage contracts: the conversation log, the memory store and embedders.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EmbedError, StoreError};
use crate::ids::{AgentId, ConversationId, MessageId};
use crate::message::{InboundMessage, StoredMessage};

/// The durable record of every conversation.
///
/// Inbound messages are recorded before they are processed (and before a platform is
/// acknowledged where it allows), replies as they are sent. An inbound message stays *unhandled*
/// until the turn that answers it records its reply or skip, so a crash mid-turn leaves it to be
/// processed again on restart, and a reply recorded with its handled marks is never sent twice.
#[async_trait]
pub trait ConversationLog: Send + Sync + 'static {
    /// Records an inbound message (its `agent` must be set). Returns `false` when a message with
    /// the same id was already recorded for that agent, so redelivered platform events are
    /// processed once.
    async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError>;

    /// Records an outbound message and marks `answers` handled, in one transaction.
    async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError>;

    /// Marks inbound messages handled without a reply (the agent skipped them).
    async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError>;

    /// The last `limit` messages of a conversation, oldest first.
    async fn history(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Inbound messages recorded but not yet handled, oldest first, for recovery at start.
    async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError>;

    /// The ids of one conversation's unhandled inbound messages, oldest first.
    ///
    /// A conversation starting up reads this to tell answered history from messages still on
    /// their way to it. The default filters [`unhandled`](Self::unhandled); a store with an index
    /// should answer from it, since this runs whenever a conversation starts.
    async fn unhandled_in(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Vec<MessageId>, StoreError> {
        Ok(self
            .unhandled()
            .await?
            .into_iter()
            .filter(|m| m.agent.as_ref() == Some(agent) && &m.conversation == conversation)
            .map(|m| m.id)
            .collect())
    }
}

/// The kinds of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryType {
    /// Something true about the world.
    Fact,
    /// What someone likes or wants.
    Preference,
    /// A choice that was made.
    Decision,
    /// Who someone (or the agent) is.
    Identity,
    /// Something that happened.
    Event,
    /// Something noticed.
    Observation,
    /// Something to achieve.
    Goal,
    /// Something to do.
    Todo,
}

/// Who may see a memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryScope {
    /// The owning agent.
    pub agent: AgentId,
    /// The conversation it came from, if it is tied to one.
    pub conversation: Option<ConversationId>,
    /// The person it is about or came from.
    pub human: Option<String>,
    /// Private memories are visible only in conversations with `human`.
    pub private: bool,
}

impl MemoryScope {
    /// A shared, agent-wide scope.
    pub fn agent(agent: AgentId) -> Self {
        Self { agent, conversation: None, human: None, private: false }
    }

    /// A memory private to one person.
    pub fn private_to(agent: AgentId, human: impl Into<String>) -> Self {
        Self { agent, conversation: None, human: Some(human.into()), private: true }
    }
}

/// A memory to save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewMemory {
    /// What kind of memory.
    pub kind: MemoryType,
    /// The content.
    pub content: String,
    /// Importance in `0.0..=1.0`.
    pub importance: f32,
    /// Who may see it.
    pub scope: MemoryScope,
    /// Where it came from (a conversation, a file, a tool).
    pub source: Option<String>,
}

impl NewMemory {
    /// A memory with the given kind, content and scope, at importance 0.5.
    pub fn new(kind: MemoryType, content: impl Into<String>, scope: MemoryScope) -> Self {
        Self { kind, content: content.into(), importance: 0.5, scope, source: None }
    }
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Memory {
    /// Its id.
    pub id: String,
    /// What kind of memory.
    pub kind: MemoryType,
    /// The content.
    pub content: String,
    /// Importance in `0.0..=1.0`.
    pub importance: f32,
    /// Who may see it.
    pub scope: MemoryScope,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A recall query: what to look for, as whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecallQuery {
    /// Free text.
    pub text: String,
    /// The agent recalling.
    pub agent: AgentId,
    /// The people taking part in the conversation: their private memories are visible.
    pub participants: Vec<String>,
    /// Only these kinds, if not empty.
    pub kinds: Vec<MemoryType>,
    /// At most this many results.
    pub limit: usize,
}

impl RecallQuery {
    /// A query for `text` as `agent` with no participants, ten results.
    pub fn new(agent: AgentId, text: impl Into<String>) -> Self {
        Self { text: text.into(), agent, participants: Vec::new(), kinds: Vec::new(), limit: 10 }
    }
}

/// Typed memory with hybrid recall, scoped per person. Implemented by `spacebot-memory`.
#[async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// Saves a memory; saving the same content twice returns the same id.
    async fn save(&self, memory: NewMemory) -> Result<String, StoreError>;

    /// Recalls memories relevant to the query that the query's scope may see.
    async fn recall(&self, query: RecallQuery) -> Result<Vec<Memory>, StoreError>;

    /// Forgets a memory. Returns `false` when there was none with that id.
    async fn forget(&self, agent: &AgentId, id: &str) -> Result<bool, StoreError>;
}

/// Turns text into vectors for similarity search.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// A stable name for the model; a change triggers a reindex.
    fn model_id(&self) -> &str;

    /// The vector length.
    fn dimensions(&self) -> usize;

    /// One vector per input text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

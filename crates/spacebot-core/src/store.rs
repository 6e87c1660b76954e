//! Storage contracts: the conversation log, the memory store and embedders.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chronicle::Chronicle;
use crate::error::{EmbedError, StoreError};
use crate::ids::{AgentId, ConversationId, MessageId};
use crate::message::{InboundMessage, StoredMessage};
use crate::runs::ProcessRuns;

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

    /// The checkpoints kept beside this log, if the store keeps any (chronicle compaction needs
    /// them). The default has none; a store with a chronicle returns a handle to it over the same
    /// data, so checkpoint spans and log sequence numbers always agree.
    fn chronicle(&self) -> Option<Arc<dyn Chronicle>> {
        None
    }

    /// The record of process runs kept beside this log, if the store keeps one; with it, a
    /// worker or branch cut short by a crash is recorded as failed at the next start and its
    /// conversation told. The default keeps none.
    fn process_runs(&self) -> Option<Arc<dyn ProcessRuns>> {
        None
    }
}

/// The id of a memory (a UUIDv7 for memories this crate's users create, so ids sort by creation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemoryId(Arc<str>);

impl MemoryId {
    /// Wraps a string as a memory id.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self::new(uuid::Uuid::now_v7().to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryId({:?})", &*self.0)
    }
}

impl From<&str> for MemoryId {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for MemoryId {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl AsRef<str> for MemoryId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The kinds of memory. Each has a default importance and a stable lowercase label (what is
/// stored, and what models and the CLI write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryType {
    /// Something true about the world.
    Fact,
    /// What someone likes or wants, and how they like things done.
    Preference,
    /// A choice that was made and constrains later ones.
    Decision,
    /// Who someone (or the agent) is. Never decays and is never pruned.
    Identity,
    /// Something that happened at a point in time.
    Event,
    /// A pattern noticed, inferred rather than stated.
    Observation,
    /// Something being worked toward.
    Goal,
    /// A concrete task to do.
    Todo,
}

impl MemoryType {
    /// Every type, in the order renders and tool schemas list them.
    pub const ALL: [MemoryType; 8] = [
        Self::Identity,
        Self::Preference,
        Self::Fact,
        Self::Decision,
        Self::Goal,
        Self::Todo,
        Self::Event,
        Self::Observation,
    ];

    /// The stored label: `fact`, `preference`, ...
    pub fn label(self) -> &'static str {
        match self {
            Self::Fact => "fact",
            Self::Preference => "preference",
            Self::Decision => "decision",
            Self::Identity => "identity",
            Self::Event => "event",
            Self::Observation => "observation",
            Self::Goal => "goal",
            Self::Todo => "todo",
        }
    }

    /// The type with this label, if any (exact, lowercase).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.label() == label)
    }

    /// The importance a memory of this type gets when the caller gives none.
    pub fn default_importance(self) -> f32 {
        match self {
            Self::Identity => 1.0,
            Self::Goal => 0.9,
            Self::Decision | Self::Todo => 0.8,
            Self::Preference => 0.7,
            Self::Fact => 0.6,
            Self::Event => 0.4,
            Self::Observation => 0.3,
        }
    }

    /// The heading a knowledge render gives this type (`Facts`, `Preferences`, ...).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Fact => "Facts",
            Self::Preference => "Preferences",
            Self::Decision => "Decisions",
            Self::Identity => "Identity",
            Self::Event => "Events",
            Self::Observation => "Observations",
            Self::Goal => "Goals",
            Self::Todo => "To do",
        }
    }
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The kinds of directed edge between memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RelationKind {
    /// The two are about the same thing.
    RelatedTo,
    /// The source supersedes the target (a newer statement of the same thing).
    Updates,
    /// The source says the opposite of the target.
    Contradicts,
    /// The source happened because of the target.
    CausedBy,
    /// The source is a piece of the target.
    PartOf,
}

impl RelationKind {
    /// Every kind.
    pub const ALL: [RelationKind; 5] =
        [Self::RelatedTo, Self::Updates, Self::Contradicts, Self::CausedBy, Self::PartOf];

    /// The stored label: `related_to`, `updates`, ...
    pub fn label(self) -> &'static str {
        match self {
            Self::RelatedTo => "related_to",
            Self::Updates => "updates",
            Self::Contradicts => "contradicts",
            Self::CausedBy => "caused_by",
            Self::PartOf => "part_of",
        }
    }

    /// The kind with this label, if any.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.label() == label)
    }
}

impl fmt::Display for RelationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Who a memory belongs to and who may see it.
///
/// A *shared* memory (`private == false`) is visible in every conversation of its agent;
/// `conversation` and `human` then only say where it came from and whom it concerns. A *private*
/// memory is visible only where its person takes part (`human`), or, with no person, only in its
/// own conversation. Stores enforce this in the query that reads memories, never in a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryScope {
    /// The owning agent.
    pub agent: AgentId,
    /// The conversation it came from, if any.
    pub conversation: Option<ConversationId>,
    /// The person it is about or came from: a person id, or a platform id (`discord:123`) that
    /// a store maps to the person through its identity anchors.
    pub human: Option<String>,
    /// Whether only `human` (or, without one, `conversation`) may see it.
    pub private: bool,
}

impl MemoryScope {
    /// A shared, agent-wide scope.
    pub fn agent(agent: impl Into<AgentId>) -> Self {
        Self { agent: agent.into(), conversation: None, human: None, private: false }
    }

    /// A memory private to one person: visible only in conversations they take part in.
    pub fn private_to(agent: impl Into<AgentId>, human: impl Into<String>) -> Self {
        Self { agent: agent.into(), conversation: None, human: Some(human.into()), private: true }
    }

    /// A memory private to one conversation.
    pub fn private_to_conversation(agent: impl Into<AgentId>, conversation: impl Into<ConversationId>) -> Self {
        Self { agent: agent.into(), conversation: Some(conversation.into()), human: None, private: true }
    }

    /// Records the conversation the memory came from.
    pub fn with_conversation(mut self, conversation: impl Into<ConversationId>) -> Self {
        self.conversation = Some(conversation.into());
        self
    }

    /// Records the person the memory is about (visibility is unchanged).
    pub fn with_human(mut self, human: impl Into<String>) -> Self {
        self.human = Some(human.into());
        self
    }
}

/// An edge a new memory starts with: from the new memory to `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewEdge {
    /// The memory the edge points at.
    pub target: MemoryId,
    /// What the relation is.
    pub kind: RelationKind,
    /// Strength in `0.0..=1.0`.
    pub weight: f32,
}

impl NewEdge {
    /// An edge of weight 1.0 to `target`.
    pub fn new(target: impl Into<MemoryId>, kind: RelationKind) -> Self {
        Self { target: target.into(), kind, weight: 1.0 }
    }

    /// Sets the weight, clamped to `0.0..=1.0`.
    pub fn with_weight(mut self, weight: f32) -> Self {
        self.weight = clamp_unit(weight);
        self
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
    /// Where it came from (`user stated`, `file:notes.md#3`, a tool).
    pub source: Option<String>,
    /// Edges from this memory to existing ones (`updates`, `contradicts`, ...).
    pub edges: Vec<NewEdge>,
}

impl NewMemory {
    /// A memory with the given kind, content and scope, at the kind's default importance.
    pub fn new(kind: MemoryType, content: impl Into<String>, scope: MemoryScope) -> Self {
        Self {
            kind,
            content: content.into(),
            importance: kind.default_importance(),
            scope,
            source: None,
            edges: Vec::new(),
        }
    }

    /// Sets the importance, clamped to `0.0..=1.0`.
    pub fn with_importance(mut self, importance: f32) -> Self {
        self.importance = clamp_unit(importance);
        self
    }

    /// Records where the memory came from.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Adds an edge from the new memory to an existing one.
    pub fn with_edge(mut self, edge: NewEdge) -> Self {
        self.edges.push(edge);
        self
    }
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Memory {
    /// Its id.
    pub id: MemoryId,
    /// What kind of memory.
    pub kind: MemoryType,
    /// The content.
    pub content: String,
    /// Importance in `0.0..=1.0`.
    pub importance: f32,
    /// Who may see it.
    pub scope: MemoryScope,
    /// Where it came from.
    pub source: Option<String>,
    /// How many times recall returned it.
    pub access_count: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its content or importance was last set by a write (never by decay).
    pub updated_at: DateTime<Utc>,
    /// When recall last returned it (its creation time until then).
    pub accessed_at: DateTime<Utc>,
    /// Whether it was forgotten (soft-deleted). Forgotten memories are never recalled.
    pub forgotten: bool,
}

impl Memory {
    /// A live memory created now, at the type's default importance, never accessed. Stores read
    /// rows into this and set the other fields.
    pub fn new(id: impl Into<MemoryId>, kind: MemoryType, content: impl Into<String>, scope: MemoryScope) -> Self {
        let now = Utc::now();
        Self {
            id: id.into(),
            kind,
            content: content.into(),
            importance: kind.default_importance(),
            scope,
            source: None,
            access_count: 0,
            created_at: now,
            updated_at: now,
            accessed_at: now,
            forgotten: false,
        }
    }
}

/// A directed, weighted edge between two memories. Unique per `(source, target, kind)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Edge {
    /// Where it starts.
    pub source: MemoryId,
    /// Where it points.
    pub target: MemoryId,
    /// What the relation is.
    pub kind: RelationKind,
    /// Strength in `0.0..=1.0`.
    pub weight: f32,
}

impl Edge {
    /// An edge.
    pub fn new(source: impl Into<MemoryId>, target: impl Into<MemoryId>, kind: RelationKind, weight: f32) -> Self {
        Self { source: source.into(), target: target.into(), kind, weight: clamp_unit(weight) }
    }
}

/// What happened to a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SaveStatus {
    /// A new memory was stored.
    Created,
    /// The same content of the same type and scope was already stored; nothing changed.
    Unchanged,
    /// A near-duplicate of the same type and scope existed; it absorbed this save (importance
    /// raised to the higher of the two) and keeps its id and text.
    Merged,
}

/// The result of a save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SaveOutcome {
    /// The memory that now holds the content.
    pub id: MemoryId,
    /// Whether it is new, unchanged or merged.
    pub status: SaveStatus,
}

impl SaveOutcome {
    /// An outcome.
    pub fn new(id: MemoryId, status: SaveStatus) -> Self {
        Self { id, status }
    }
}

/// Whose memories a read may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Visibility {
    /// Shared memories only.
    Shared,
    /// What one conversation may see: shared memories, memories private to one of its
    /// participants (platform ids or person ids), and memories private to the conversation.
    /// Never another person's private memories.
    Conversation {
        /// The conversation reading.
        conversation: ConversationId,
        /// Who takes part in it.
        participants: Vec<String>,
    },
    /// Everything, private memories included: for the operator's command line, never for a model.
    Operator,
}

impl Visibility {
    /// What `conversation`, with these participants, may see.
    pub fn conversation(
        conversation: impl Into<ConversationId>,
        participants: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::Conversation {
            conversation: conversation.into(),
            participants: participants.into_iter().map(Into::into).collect(),
        }
    }
}

/// A recall query: what to look for, as whom, filtered how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecallQuery {
    /// The agent recalling.
    pub agent: AgentId,
    /// Free text (required).
    pub text: String,
    /// Whose memories the results may include.
    pub visibility: Visibility,
    /// Only these kinds, if not empty.
    pub kinds: Vec<MemoryType>,
    /// Only memories created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only memories created before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many results.
    pub limit: usize,
    /// Whether returning a memory counts as an access (it does, unless turned off).
    pub record_access: bool,
}

impl RecallQuery {
    /// A query for `text` as `agent` that sees shared memories only, ten results.
    pub fn new(agent: impl Into<AgentId>, text: impl Into<String>) -> Self {
        Self {
            agent: agent.into(),
            text: text.into(),
            visibility: Visibility::Shared,
            kinds: Vec::new(),
            since: None,
            until: None,
            limit: 10,
            record_access: true,
        }
    }

    /// Sets whose memories may be returned.
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Only these kinds.
    pub fn with_kinds(mut self, kinds: impl IntoIterator<Item = MemoryType>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Only memories created in `since..until` (either end optional).
    pub fn with_period(mut self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// At most `limit` results.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Don't count the results as accessed (for inspection: the CLI, tests).
    pub fn without_access_recording(mut self) -> Self {
        self.record_access = false;
        self
    }
}

/// One recall result, with the rank it had in each source list, so the fusion is inspectable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecallHit {
    /// The memory.
    pub memory: Memory,
    /// The fused score (Reciprocal Rank Fusion).
    pub score: f32,
    /// 1-based rank in the full-text list, if it was there.
    pub text_rank: Option<usize>,
    /// 1-based rank in the vector-similarity list, if it was there.
    pub vector_rank: Option<usize>,
    /// 1-based rank in the graph-walk list, if it was there.
    pub graph_rank: Option<usize>,
}

impl RecallHit {
    /// A hit found by no list in particular (for stores without fusion).
    pub fn new(memory: Memory, score: f32) -> Self {
        Self { memory, score, text_rank: None, vector_rank: None, graph_rank: None }
    }

    /// Sets the ranks per source list.
    pub fn with_ranks(mut self, text: Option<usize>, vector: Option<usize>, graph: Option<usize>) -> Self {
        self.text_rank = text;
        self.vector_rank = vector;
        self.graph_rank = graph;
        self
    }
}

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ListOrder {
    /// Newest first.
    Recent,
    /// Most important first.
    Importance,
    /// Most recalled first.
    MostAccessed,
}

/// A listing of memories, for inspection (no access is recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListQuery {
    /// The agent.
    pub agent: AgentId,
    /// Whose memories.
    pub visibility: Visibility,
    /// Only these kinds, if not empty.
    pub kinds: Vec<MemoryType>,
    /// The order.
    pub order: ListOrder,
    /// At most this many.
    pub limit: usize,
    /// Skip this many first.
    pub offset: usize,
    /// Include forgotten memories.
    pub include_forgotten: bool,
}

impl ListQuery {
    /// The 50 newest shared memories of `agent`.
    pub fn new(agent: impl Into<AgentId>) -> Self {
        Self {
            agent: agent.into(),
            visibility: Visibility::Shared,
            kinds: Vec::new(),
            order: ListOrder::Recent,
            limit: 50,
            offset: 0,
            include_forgotten: false,
        }
    }

    /// Sets whose memories are listed.
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Only these kinds.
    pub fn with_kinds(mut self, kinds: impl IntoIterator<Item = MemoryType>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Sets the order.
    pub fn with_order(mut self, order: ListOrder) -> Self {
        self.order = order;
        self
    }

    /// Sets the page.
    pub fn with_page(mut self, limit: usize, offset: usize) -> Self {
        self.limit = limit;
        self.offset = offset;
        self
    }

    /// Includes forgotten memories.
    pub fn including_forgotten(mut self) -> Self {
        self.include_forgotten = true;
        self
    }
}

/// What a knowledge render covers and how long it may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KnowledgeQuery {
    /// The agent.
    pub agent: AgentId,
    /// Whose memories (the conversation the prompt is for).
    pub visibility: Visibility,
    /// At most this many entries per type.
    pub per_type: usize,
    /// At most this many characters in all (the render stops before a line that would exceed it).
    pub max_chars: usize,
}

impl KnowledgeQuery {
    /// A render for `visibility`: at most 8 entries per type and 4,000 characters.
    pub fn new(agent: impl Into<AgentId>, visibility: Visibility) -> Self {
        Self { agent: agent.into(), visibility, per_type: 8, max_chars: 4000 }
    }

    /// Sets the per-type cap.
    pub fn with_per_type(mut self, per_type: usize) -> Self {
        self.per_type = per_type;
        self
    }

    /// Sets the character budget.
    pub fn with_max_chars(mut self, max_chars: usize) -> Self {
        self.max_chars = max_chars;
        self
    }
}

/// Settings of one maintenance pass. Every step is bounded by `max_items` and by `time_budget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MaintenanceOptions {
    /// Fraction of importance an idle memory loses per idle day (compounded).
    pub decay_per_day: f32,
    /// How long after its last access a memory starts to decay.
    pub decay_grace: Duration,
    /// Memories below this importance may be pruned ...
    pub prune_below: f32,
    /// ... once they are older than this and were not accessed for as long.
    pub prune_min_age: Duration,
    /// Forgotten memories are deleted for good this long after they were forgotten.
    pub forgotten_retention: Duration,
    /// Memories of one type and scope at least this similar (cosine) are merged.
    pub merge_similarity: f32,
    /// New memories at least this similar to another get a `related_to` edge.
    pub link_similarity: f32,
    /// At most this many memories handled by each step.
    pub max_items: usize,
    /// The whole pass stops between batches once this much time has passed.
    pub time_budget: Duration,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Self {
            decay_per_day: 0.03,
            decay_grace: Duration::from_secs(7 * DAY),
            prune_below: 0.1,
            prune_min_age: Duration::from_secs(30 * DAY),
            forgotten_retention: Duration::from_secs(30 * DAY),
            merge_similarity: 0.95,
            link_similarity: 0.8,
            max_items: 2000,
            time_budget: Duration::from_secs(60),
        }
    }
}

impl MaintenanceOptions {
    /// Sets the time budget of the pass.
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    /// Sets how many memories each step handles at most.
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items;
        self
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Memories whose importance decayed.
    pub decayed: usize,
    /// Memories deleted for good (forgotten long ago, or faded).
    pub pruned: usize,
    /// Near-duplicates merged into a survivor.
    pub merged: usize,
    /// `related_to` edges created or strengthened.
    pub linked: usize,
    /// Whether every step finished, rather than stopping at its item cap or the time budget.
    pub complete: bool,
}

/// Typed memory with hybrid recall, scoped per person. Implemented by `spacebot-memory`.
///
/// Every read takes a [`Visibility`] and a store enforces it in its queries, so a conversation
/// never sees another person's private memories, whatever a model asks for.
#[async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// Saves a memory. Saving the same content with the same type and scope again changes nothing
    /// and returns the same id; a near-duplicate of the same type and scope is merged into the
    /// existing memory. Memories of different types or scopes are never merged.
    async fn save(&self, memory: NewMemory) -> Result<SaveOutcome, StoreError>;

    /// Saves several memories, in order, as one unit where the store can. The default saves
    /// them one by one.
    async fn save_batch(&self, memories: Vec<NewMemory>) -> Result<Vec<SaveOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(memories.len());
        for memory in memories {
            outcomes.push(self.save(memory).await?);
        }
        Ok(outcomes)
    }

    /// One memory by id, forgotten or not (inspection; no visibility filter, no access recorded).
    async fn get(&self, agent: &AgentId, id: &MemoryId) -> Result<Option<Memory>, StoreError>;

    /// One live memory by id if `visibility` may see it (what a model may act on).
    ///
    /// The default reads [`get`](Self::get) and applies the visibility rule to the stored
    /// person id as is; stores that map platform ids to people override it.
    async fn get_visible(
        &self,
        agent: &AgentId,
        id: &MemoryId,
        visibility: &Visibility,
    ) -> Result<Option<Memory>, StoreError> {
        let Some(memory) = self.get(agent, id).await? else { return Ok(None) };
        let visible = !memory.forgotten
            && match visibility {
                Visibility::Operator => true,
                Visibility::Conversation { conversation, participants } => {
                    !memory.scope.private
                        || match &memory.scope.human {
                            Some(human) => participants.contains(human),
                            None => memory.scope.conversation.as_ref() == Some(conversation),
                        }
                }
                _ => !memory.scope.private,
            };
        Ok(visible.then_some(memory))
    }

    /// The memories relevant to the query that its visibility allows, best first. Counts each
    /// returned memory as accessed unless the query says otherwise.
    async fn recall(&self, query: RecallQuery) -> Result<Vec<RecallHit>, StoreError>;

    /// Memories in a fixed order, for inspection.
    async fn list(&self, query: ListQuery) -> Result<Vec<Memory>, StoreError>;

    /// Forgets a memory (soft delete: it is never recalled again and maintenance deletes it
    /// later). Returns `false` when there was no live memory with that id.
    async fn forget(&self, agent: &AgentId, id: &MemoryId) -> Result<bool, StoreError>;

    /// Adds an edge, or updates the weight of the same `(source, target, kind)` edge.
    async fn link(&self, agent: &AgentId, edge: Edge) -> Result<(), StoreError>;

    /// The edges touching a memory, in either direction.
    async fn edges(&self, agent: &AgentId, id: &MemoryId) -> Result<Vec<Edge>, StoreError>;

    /// Records that `platform_id` (`discord:123`, `slack:U42`) is the person `human`, so the
    /// person's private memories follow them across platforms.
    async fn link_identity(&self, agent: &AgentId, platform_id: &str, human: &str) -> Result<(), StoreError>;

    /// A deterministic text summary of the most important memories per type that `query`'s
    /// visibility allows, for a system prompt; empty when there is nothing to show. The same
    /// store state renders the same bytes.
    async fn render_knowledge(&self, query: KnowledgeQuery) -> Result<String, StoreError>;

    /// One maintenance pass: decay, prune, merge near-duplicates, link related memories. The
    /// default does nothing, for stores without upkeep.
    async fn maintain(&self, agent: &AgentId, options: MaintenanceOptions) -> Result<MaintenanceReport, StoreError> {
        let _ = (agent, options);
        Ok(MaintenanceReport { complete: true, ..MaintenanceReport::default() })
    }
}

/// Turns text into vectors for similarity search.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// A stable name for the model and its settings; when it changes, stored vectors are rebuilt.
    fn model_id(&self) -> &str;

    /// The vector length.
    fn dimensions(&self) -> usize;

    /// One vector per input text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

fn clamp_unit(value: f32) -> f32 {
    if value.is_nan() { 0.0 } else { value.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_labels_round_trip_and_unknown_labels_are_none() {
        for kind in MemoryType::ALL {
            assert_eq!(MemoryType::from_label(kind.label()), Some(kind));
        }
        for kind in RelationKind::ALL {
            assert_eq!(RelationKind::from_label(kind.label()), Some(kind));
        }
        assert_eq!(MemoryType::from_label("human"), None);
        assert_eq!(RelationKind::from_label("result_of"), None);
    }

    #[test]
    fn new_memories_take_their_type_default_and_clamp_importance() {
        let scope = MemoryScope::agent("main");
        assert_eq!(NewMemory::new(MemoryType::Fact, "x", scope.clone()).importance, 0.6);
        assert_eq!(NewMemory::new(MemoryType::Identity, "x", scope.clone()).importance, 1.0);
        assert_eq!(NewMemory::new(MemoryType::Observation, "x", scope.clone()).importance, 0.3);
        assert_eq!(NewMemory::new(MemoryType::Fact, "x", scope.clone()).with_importance(1.7).importance, 1.0);
        assert_eq!(NewMemory::new(MemoryType::Fact, "x", scope.clone()).with_importance(-0.2).importance, 0.0);
        assert_eq!(NewMemory::new(MemoryType::Fact, "x", scope).with_importance(f32::NAN).importance, 0.0);
    }

    #[test]
    fn scopes_say_who_may_see() {
        let private = MemoryScope::private_to("main", "discord:1");
        assert!(private.private);
        assert_eq!(private.human.as_deref(), Some("discord:1"));
        let shared = MemoryScope::agent("main").with_human("discord:1");
        assert!(!shared.private);
    }

    #[test]
    fn generated_memory_ids_are_unique() {
        assert_ne!(MemoryId::generate(), MemoryId::generate());
    }
}

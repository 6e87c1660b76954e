//! What reads ask for: recall queries and their hits, listings, knowledge renders.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::AgentId;
use crate::memory::model::{Memory, MemoryType};
use crate::memory::scope::Visibility;

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
    /// The fused score (higher is better; comparable within one recall only).
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

//! The memory model: memories, their types, the edges between them, and what a save did.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::MemoryId;
use crate::memory::scope::MemoryScope;

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
    /// When what it holds was said or happened, when that is not now (an import of an old
    /// conversation): stored as its creation time, which time-aware recall reads.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
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
            created_at: None,
        }
    }

    /// Dates the memory at `at` instead of the time it is saved.
    pub fn with_created_at(mut self, at: DateTime<Utc>) -> Self {
        self.created_at = Some(at);
        self
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
}

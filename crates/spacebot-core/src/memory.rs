//! The memory contract: [`MemoryStore`], typed memory with hybrid recall, scoped per person.
//!
//! The model types live in submodules: `model.rs` (memories, their types, edges and save
//! outcomes), `scope.rs` (who a memory belongs to and who may see it: the one visibility rule),
//! `query.rs` (recall, listing and knowledge-render queries) and `maintenance.rs` (the settings
//! and report of an upkeep pass).

mod maintenance;
mod model;
mod query;
mod scope;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{AgentId, MemoryId};

pub use maintenance::{MaintenanceOptions, MaintenanceReport};
pub use model::{Edge, Memory, MemoryType, NewEdge, NewMemory, RelationKind, SaveOutcome, SaveStatus};
pub use query::{KnowledgeQuery, ListOrder, ListQuery, RecallHit, RecallQuery};
pub use scope::{MemoryScope, ScopeView, Visibility};

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
    /// The default reads [`get`](Self::get) and applies [`Visibility::admits`] to the stored
    /// person id as is; stores that map platform ids to people override it.
    async fn get_visible(
        &self,
        agent: &AgentId,
        id: &MemoryId,
        visibility: &Visibility,
    ) -> Result<Option<Memory>, StoreError> {
        let Some(memory) = self.get(agent, id).await? else { return Ok(None) };
        let visible = !memory.forgotten && visibility.admits(memory.scope.view());
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

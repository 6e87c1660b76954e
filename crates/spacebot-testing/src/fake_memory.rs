//! [`FakeMemory`]: an in-process [`MemoryStore`] for tests of what uses a memory (the memory
//! tools, the knowledge render in prompts, maintenance scheduling), with no database.
//!
//! Memories are kept in a list in save order. Reads apply core's privacy rule,
//! [`Visibility::admits`], with the participants' identity links resolved as the SQLite store
//! resolves them ([`Visibility::with_participants`]), so a test sees the same privacy behaviour
//! as in production. Recall is a case-insensitive substring match; the knowledge render is a
//! bullet list of the visible memories under `## What I remember`. Everything asked is recorded
//! (saves, renders, maintenance passes), and maintenance can be made to hang.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use spacebot_core::{
    AgentId, Edge, KnowledgeQuery, ListOrder, ListQuery, MaintenanceOptions, MaintenanceReport, Memory, MemoryId,
    MemoryStore, NewMemory, RecallHit, RecallQuery, SaveOutcome, SaveStatus, StoreError, Visibility,
};

/// The heading [`FakeMemory`]'s knowledge render starts with.
pub const RENDER_HEADING: &str = "## What I remember";

/// An in-memory [`MemoryStore`] that records what it was asked (see the module docs).
#[derive(Default)]
pub struct FakeMemory {
    state: Mutex<State>,
    hung_maintenance: bool,
}

#[derive(Default)]
struct State {
    memories: Vec<Memory>,
    saved: Vec<NewMemory>,
    edges: Vec<Edge>,
    /// `(agent, platform id, person)`.
    identities: Vec<(AgentId, String, String)>,
    renders: Vec<Visibility>,
    maintenance: Vec<(AgentId, MaintenanceOptions)>,
}

impl State {
    /// `visibility` with the people its participants are linked to taking part too.
    fn resolve(&self, agent: &AgentId, visibility: &Visibility) -> Visibility {
        let Visibility::Conversation { participants, .. } = visibility else { return visibility.clone() };
        let people = self
            .identities
            .iter()
            .filter(|(of, platform_id, _)| of == agent && participants.contains(platform_id))
            .map(|(_, _, person)| person.clone());
        visibility.clone().with_participants(people)
    }

    /// The live memories of `agent` that `visibility` may see, in save order.
    fn visible<'a>(&'a self, agent: &'a AgentId, visibility: &Visibility) -> impl Iterator<Item = &'a Memory> + 'a {
        let resolved = self.resolve(agent, visibility);
        self.memories.iter().filter(move |m| &m.scope.agent == agent && !m.forgotten && resolved.admits(m.scope.view()))
    }
}

impl FakeMemory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes [`MemoryStore::maintain`] record its call and then never return, like a store
    /// wedged on a lock.
    pub fn with_hung_maintenance(mut self) -> Self {
        self.hung_maintenance = true;
        self
    }

    /// Every stored memory, forgotten ones included, in save order.
    pub fn memories(&self) -> Vec<Memory> {
        self.lock().memories.clone()
    }

    /// Every memory a save was asked for, as given, in order (duplicates included).
    pub fn saved(&self) -> Vec<NewMemory> {
        self.lock().saved.clone()
    }

    /// The visibility of each knowledge render asked for, in order.
    pub fn renders(&self) -> Vec<Visibility> {
        self.lock().renders.clone()
    }

    /// Each maintenance pass asked for: the agent and its options, in order.
    pub fn maintenance_calls(&self) -> Vec<(AgentId, MaintenanceOptions)> {
        self.lock().maintenance.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves whole values behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl MemoryStore for FakeMemory {
    /// Stores the memory, or returns the live one of the same type, scope and content unchanged.
    async fn save(&self, memory: NewMemory) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock();
        state.saved.push(memory.clone());
        if let Some(same) = state
            .memories
            .iter()
            .find(|m| !m.forgotten && m.kind == memory.kind && m.scope == memory.scope && m.content == memory.content)
        {
            return Ok(SaveOutcome::new(same.id.clone(), SaveStatus::Unchanged));
        }
        let id = MemoryId::generate();
        let mut stored = Memory::new(id.clone(), memory.kind, memory.content, memory.scope);
        stored.importance = memory.importance;
        stored.source = memory.source;
        if let Some(at) = memory.created_at {
            stored.created_at = at;
        }
        for edge in memory.edges {
            state.edges.push(Edge::new(id.clone(), edge.target, edge.kind, edge.weight));
        }
        state.memories.push(stored);
        Ok(SaveOutcome::new(id, SaveStatus::Created))
    }

    async fn get(&self, agent: &AgentId, id: &MemoryId) -> Result<Option<Memory>, StoreError> {
        Ok(self.lock().memories.iter().find(|m| &m.scope.agent == agent && &m.id == id).cloned())
    }

    async fn get_visible(
        &self,
        agent: &AgentId,
        id: &MemoryId,
        visibility: &Visibility,
    ) -> Result<Option<Memory>, StoreError> {
        Ok(self.lock().visible(agent, visibility).find(|m| &m.id == id).cloned())
    }

    /// The visible memories whose content contains the query text, ignoring case, in save order.
    async fn recall(&self, query: RecallQuery) -> Result<Vec<RecallHit>, StoreError> {
        let mut state = self.lock();
        let text = query.text.to_lowercase();
        let ids: Vec<MemoryId> = state
            .visible(&query.agent, &query.visibility)
            .filter(|m| query.kinds.is_empty() || query.kinds.contains(&m.kind))
            .filter(|m| query.since.is_none_or(|since| m.created_at >= since))
            .filter(|m| query.until.is_none_or(|until| m.created_at < until))
            .filter(|m| m.content.to_lowercase().contains(&text))
            .take(query.limit)
            .map(|m| m.id.clone())
            .collect();
        let mut hits = Vec::with_capacity(ids.len());
        for memory in state.memories.iter_mut().filter(|m| ids.contains(&m.id)) {
            if query.record_access {
                memory.access_count += 1;
            }
            hits.push(RecallHit::new(memory.clone(), 1.0));
        }
        Ok(hits)
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<Memory>, StoreError> {
        let state = self.lock();
        let resolved = state.resolve(&query.agent, &query.visibility);
        let mut listed: Vec<Memory> = state
            .memories
            .iter()
            .filter(|m| m.scope.agent == query.agent && (query.include_forgotten || !m.forgotten))
            .filter(|m| resolved.admits(m.scope.view()))
            .filter(|m| query.kinds.is_empty() || query.kinds.contains(&m.kind))
            .cloned()
            .collect();
        // Save order is creation order; each listing is newest first within its order.
        listed.reverse();
        match query.order {
            ListOrder::Importance => listed.sort_by(|a, b| b.importance.total_cmp(&a.importance)),
            ListOrder::MostAccessed => listed.sort_by_key(|m| std::cmp::Reverse(m.access_count)),
            _ => {}
        }
        Ok(listed.into_iter().skip(query.offset).take(query.limit).collect())
    }

    async fn forget(&self, agent: &AgentId, id: &MemoryId) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let live = state.memories.iter_mut().find(|m| &m.scope.agent == agent && &m.id == id && !m.forgotten);
        let Some(memory) = live else { return Ok(false) };
        memory.forgotten = true;
        Ok(true)
    }

    async fn link(&self, _: &AgentId, edge: Edge) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.edges.retain(|e| (&e.source, &e.target, e.kind) != (&edge.source, &edge.target, edge.kind));
        state.edges.push(edge);
        Ok(())
    }

    async fn edges(&self, _: &AgentId, id: &MemoryId) -> Result<Vec<Edge>, StoreError> {
        Ok(self.lock().edges.iter().filter(|e| &e.source == id || &e.target == id).cloned().collect())
    }

    async fn link_identity(&self, agent: &AgentId, platform_id: &str, human: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.identities.retain(|(of, id, _)| !(of == agent && id == platform_id));
        state.identities.push((agent.clone(), platform_id.to_owned(), human.to_owned()));
        Ok(())
    }

    /// [`RENDER_HEADING`] and one `- content` line per visible memory, in save order; empty when
    /// there is none.
    async fn render_knowledge(&self, query: KnowledgeQuery) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.renders.push(query.visibility.clone());
        let lines: String =
            state.visible(&query.agent, &query.visibility).map(|m| format!("- {}\n", m.content)).collect();
        Ok(if lines.is_empty() { lines } else { format!("{RENDER_HEADING}\n{lines}") })
    }

    /// Records the call and reports a complete pass that changed nothing (or never returns,
    /// [`with_hung_maintenance`](FakeMemory::with_hung_maintenance)).
    async fn maintain(&self, agent: &AgentId, options: MaintenanceOptions) -> Result<MaintenanceReport, StoreError> {
        self.lock().maintenance.push((agent.clone(), options));
        if self.hung_maintenance {
            std::future::pending::<()>().await;
        }
        let mut report = MaintenanceReport::default();
        report.complete = true;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use spacebot_core::{MemoryScope, MemoryType};

    use super::*;

    #[tokio::test]
    async fn reads_keep_private_memories_to_their_people_and_follow_identity_links() {
        let store = FakeMemory::new();
        let agent = AgentId::from("main");
        let alices =
            NewMemory::new(MemoryType::Preference, "Likes green tea", MemoryScope::private_to("main", "alice"));
        let id = store.save(alices.clone()).await.unwrap().id;
        assert_eq!(store.save(alices).await.unwrap(), SaveOutcome::new(id.clone(), SaveStatus::Unchanged));
        store.save(NewMemory::new(MemoryType::Fact, "The office has tea", MemoryScope::agent("main"))).await.unwrap();

        let with_her = Visibility::conversation("c1", ["discord:1"]);
        let recalled = |visibility: Visibility| {
            let store = &store;
            async move {
                let hits = store.recall(RecallQuery::new("main", "TEA").with_visibility(visibility)).await.unwrap();
                hits.into_iter().map(|hit| hit.memory.content).collect::<Vec<_>>()
            }
        };
        assert_eq!(recalled(with_her.clone()).await, vec!["The office has tea"], "not linked yet");
        store.link_identity(&agent, "discord:1", "alice").await.unwrap();
        assert_eq!(recalled(with_her.clone()).await, vec!["Likes green tea", "The office has tea"]);
        assert!(store.get_visible(&agent, &id, &with_her).await.unwrap().is_some());
        assert!(store.get_visible(&agent, &id, &Visibility::Shared).await.unwrap().is_none());

        let render = store.render_knowledge(KnowledgeQuery::new("main", Visibility::Shared)).await.unwrap();
        assert_eq!(render, "## What I remember\n- The office has tea\n");
        assert_eq!(store.renders(), vec![Visibility::Shared]);
        assert!(store.forget(&agent, &id).await.unwrap());
        assert!(!store.forget(&agent, &id).await.unwrap(), "forgotten once");
        assert_eq!(store.list(ListQuery::new("main").with_visibility(Visibility::Operator)).await.unwrap().len(), 1);
    }
}

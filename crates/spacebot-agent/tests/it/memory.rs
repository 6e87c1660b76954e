//! An agent with a memory: branches get the memory tools bound to their conversation, and the
//! channel's system prompt carries the knowledge render, byte-identical until a memory changes.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use spacebot_agent::{BRANCH_TOOL, ChannelSettings, MEMORY_DELETE_TOOL, MEMORY_RECALL_TOOL, MEMORY_SAVE_TOOL};
use spacebot_core::{
    AgentId, Edge, KnowledgeQuery, ListQuery, Memory, MemoryId, MemoryScope, MemoryStore, MemoryType, NewMemory,
    RecallHit, RecallQuery, SaveOutcome, SaveStatus, StoreError, TurnOutcome, Visibility,
};
use spacebot_testing::{MemoryLog, ScriptedTurn};

use crate::processes::{Models, reply};
use crate::support::{AGENT, CONV, idle, start, tool_names};

/// An in-process store: a list of memories; the render lists the visible ones in save order.
#[derive(Default)]
struct FakeMemory {
    memories: Mutex<Vec<Memory>>,
    renders: Mutex<Vec<Visibility>>,
}

impl FakeMemory {
    fn memories(&self) -> Vec<Memory> {
        self.memories.lock().expect("lock").clone()
    }
}

#[async_trait]
impl MemoryStore for FakeMemory {
    async fn save(&self, memory: NewMemory) -> Result<SaveOutcome, StoreError> {
        let id = MemoryId::generate();
        self.memories.lock().expect("lock").push(Memory::new(id.clone(), memory.kind, memory.content, memory.scope));
        Ok(SaveOutcome::new(id, SaveStatus::Created))
    }
    async fn get(&self, _: &AgentId, id: &MemoryId) -> Result<Option<Memory>, StoreError> {
        Ok(self.memories().into_iter().find(|m| &m.id == id))
    }
    async fn recall(&self, _: RecallQuery) -> Result<Vec<RecallHit>, StoreError> {
        Ok(Vec::new())
    }
    async fn list(&self, _: ListQuery) -> Result<Vec<Memory>, StoreError> {
        Ok(Vec::new())
    }
    async fn forget(&self, _: &AgentId, _: &MemoryId) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn link(&self, _: &AgentId, _: Edge) -> Result<(), StoreError> {
        Ok(())
    }
    async fn edges(&self, _: &AgentId, _: &MemoryId) -> Result<Vec<Edge>, StoreError> {
        Ok(Vec::new())
    }
    async fn link_identity(&self, _: &AgentId, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn render_knowledge(&self, query: KnowledgeQuery) -> Result<String, StoreError> {
        self.renders.lock().expect("lock").push(query.visibility.clone());
        let mut text = String::new();
        for memory in self.memories() {
            if self.get_visible(&query.agent, &memory.id, &query.visibility).await?.is_some() {
                text.push_str(&format!("- {}\n", memory.content));
            }
        }
        Ok(if text.is_empty() { text } else { format!("## What I remember\n{text}") })
    }
}

#[tokio::test(start_paused = true)]
async fn the_render_is_in_the_prompt_and_a_branch_saves_with_the_memory_tools() {
    let memory = Arc::new(FakeMemory::default());
    memory.save(NewMemory::new(MemoryType::Fact, "The sky is blue", MemoryScope::agent(AGENT))).await.expect("seeded");
    memory
        .save(NewMemory::new(MemoryType::Preference, "Bob hates tea", MemoryScope::private_to(AGENT, "test:bob")))
        .await
        .expect("seeded");
    let models = Models::new();
    let profile = models.profile(ChannelSettings::default()).with_memory(memory.clone());
    models.channel.push_all([
        reply("one"),
        reply("two"),
        ScriptedTurn::tool_call(BRANCH_TOOL, json!({ "task": "remember that Alice likes green tea" })),
        reply("thinking"),
        reply("noted"),
        reply("four"),
    ]);
    models.branch.push_all([
        ScriptedTurn::tool_call(
            MEMORY_SAVE_TOOL,
            json!({ "content": "Alice likes green tea", "memory_type": "preference" }),
        ),
        ScriptedTurn::text("saved it"),
    ]);
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;

    for text in ["a", "b", "c"] {
        h.say(CONV, text);
        h.wait_turns(1).await;
        idle().await;
    }
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied], "the relay turn");
    h.say(CONV, "d");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    let requests = models.channel.requests();
    assert_eq!(requests.len(), 6);
    assert!(requests[0].system.contains("## What I remember\n- The sky is blue"), "{}", requests[0].system);
    assert!(!requests[0].system.contains("Bob hates tea"), "another person's private memory: {}", requests[0].system);
    assert_eq!(requests[0].system.as_bytes(), requests[1].system.as_bytes(), "no memory changed");
    assert!(!requests[1].system.contains("green tea"));
    assert!(requests[5].system.contains("- Alice likes green tea"), "{}", requests[5].system);

    let branch = models.branch.requests();
    let names = tool_names(&branch[0]);
    for tool in [MEMORY_RECALL_TOOL, MEMORY_SAVE_TOOL, MEMORY_DELETE_TOOL] {
        assert!(names.iter().any(|name| name == tool), "{tool} missing from {names:?}");
    }
    let saved = memory.memories();
    assert_eq!(saved.len(), 3);
    assert_eq!(saved[2].kind, MemoryType::Preference);
    let renders = memory.renders.lock().expect("lock").clone();
    assert_eq!(renders[0], Visibility::conversation(CONV, ["test:alice"]), "bound to the conversation and its sender");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_memory_branches_have_no_memory_tools() {
    let models = Models::new();
    models.channel.push_all([
        ScriptedTurn::tool_call(BRANCH_TOOL, json!({ "task": "think" })),
        reply("thinking"),
        reply("done"),
    ]);
    models.branch.push(ScriptedTurn::text("thought"));
    let mut h = start(models.profile(ChannelSettings::default()), Arc::new(MemoryLog::new())).await;
    h.say(CONV, "a");
    assert_eq!(h.wait_turns(2).await, vec![TurnOutcome::Replied; 2]);
    let names = tool_names(&models.branch.requests()[0]);
    assert!(!names.iter().any(|name| name.starts_with("memory_")), "{names:?}");
    assert!(!models.channel.requests()[0].system.contains("What I remember"));
    h.shutdown().await;
}

/// After a restart, the private memories of everyone who took part in the conversation are
/// visible at once, not only once each person speaks again: participants come from the reloaded
/// history too.
#[tokio::test(start_paused = true)]
async fn after_a_restart_participants_come_from_the_reloaded_history() {
    let memory = Arc::new(FakeMemory::default());
    memory
        .save(NewMemory::new(MemoryType::Preference, "Bob hates tea", MemoryScope::private_to(AGENT, "test:bob")))
        .await
        .expect("seeded");
    let log = Arc::new(MemoryLog::new());

    let models = Models::new();
    models.channel.push(reply("hi bob"));
    let mut h = start(models.profile(ChannelSettings::default()).with_memory(memory.clone()), log.clone()).await;
    h.say_in_group(CONV, "bob", "hello");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    h.shutdown().await;

    let models = Models::new();
    models.channel.push(reply("welcome back"));
    let mut h = start(models.profile(ChannelSettings::default()).with_memory(memory.clone()), log).await;
    h.say_in_group(CONV, "alice", "what does bob like?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let system = models.channel.requests()[0].system.clone();
    assert!(system.contains("Bob hates tea"), "bob's memory missing after the restart: {system}");
    h.shutdown().await;
}

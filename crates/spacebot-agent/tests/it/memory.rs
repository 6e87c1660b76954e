//! An agent with a memory: branches get the memory tools bound to their conversation, and the
//! channel's system prompt carries the knowledge render, byte-identical until a memory changes.

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::{BRANCH_TOOL, ChannelSettings, MEMORY_DELETE_TOOL, MEMORY_RECALL_TOOL, MEMORY_SAVE_TOOL};
use spacebot_core::{MemoryScope, MemoryStore, MemoryType, NewMemory, TurnOutcome, Visibility};
use spacebot_testing::{FakeMemory, MemoryLog, ScriptedTurn};

use crate::processes::{Models, reply};
use crate::support::{AGENT, CONV, idle, start, tool_names};

#[tokio::test(start_paused = true)]
async fn the_render_is_in_the_prompt_and_a_branch_saves_with_the_memory_tools() {
    let memory = Arc::new(FakeMemory::new());
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
    let renders = memory.renders();
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
    let memory = Arc::new(FakeMemory::new());
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

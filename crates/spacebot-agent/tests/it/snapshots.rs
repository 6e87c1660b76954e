//! Snapshots of the text the model reads byte for byte: the channel's system prompt (the agent's
//! prompt, the knowledge render, the status block of background work) and the branch and worker
//! prompts. Providers cache on the system prompt's prefix, so a changed byte is a changed promise:
//! these tests fail on any difference, and an intended change is accepted by updating the
//! snapshot (`INSTA_UPDATE=always cargo test -p spacebot-agent --test it snapshots`, then review
//! the diff of `tests/it/snapshots/` like code; see `AGENTS.md`).
//!
//! Everything that varies between runs is fixed or replaced: the clock is tokio's paused one, the
//! model is scripted, and process ids (generated, so different each run) are replaced by their
//! kind and start order (`worker-1`, `branch-1`) before the comparison.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use spacebot_agent::{BRANCH_TOOL, ChannelSettings, SET_STATUS_TOOL, SPAWN_WORKER_TOOL};
use spacebot_core::{MemoryScope, MemoryStore, MemoryType, NewMemory, ProcessKind, TurnOutcome};
use spacebot_testing::{FakeMemory, MemoryLog, ScriptedTurn};

use crate::processes::{Models, done, reply};
use crate::support::{AGENT, CONV, Harness, first_user_text, idle, start, tool_results};

/// `text` as snapshotted: with an `<end>` marker, so trailing whitespace (which the snapshot
/// comparison would otherwise ignore) counts too.
fn exact(text: &str) -> String {
    format!("{text}<end>")
}

/// `text` with every started process's id replaced by its kind and start order.
fn without_ids(h: &mut Harness, text: &str) -> String {
    let mut text = text.to_owned();
    let (mut workers, mut branches) = (0, 0);
    for (id, kind) in h.started() {
        let name = match kind {
            ProcessKind::Worker => {
                workers += 1;
                format!("worker-{workers}")
            }
            ProcessKind::Branch => {
                branches += 1;
                format!("branch-{branches}")
            }
            other => format!("{other}"),
        };
        text = text.replace(id.as_str(), &name);
    }
    text
}

#[tokio::test(start_paused = true)]
async fn the_system_prompt_of_an_agent_with_defaults() {
    let models = Models::new();
    models.channel.push(reply("hello"));
    let mut h = start(models.profile(ChannelSettings::default()), Arc::new(MemoryLog::new())).await;
    h.say(CONV, "hi");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let requests = models.channel.requests();
    insta::assert_snapshot!("default_system_prompt", exact(&requests[0].system));
    h.shutdown().await;
}

/// The full system prompt while background work runs: the agent's prompt, the knowledge render,
/// then the status block with an active worker (with its status), an active branch and a result
/// that arrived during the turn and is not relayed yet.
#[tokio::test(start_paused = true)]
async fn the_system_prompt_with_knowledge_and_background_work() {
    let memory = Arc::new(FakeMemory::new());
    for (kind, content) in [
        (MemoryType::Identity, "I am the ops assistant of the infrastructure team"),
        (MemoryType::Fact, "The build cache lives on the NAS"),
        (MemoryType::Preference, "Alice likes short answers"),
    ] {
        memory.save(NewMemory::new(kind, content, MemoryScope::agent(AGENT))).await.expect("seeded");
    }
    let models = Models::new();
    let profile = models.profile(ChannelSettings::default()).with_memory(memory);
    models.channel.push_all([
        ScriptedTurn::tool_calls(vec![
            (
                SPAWN_WORKER_TOOL.to_owned(),
                json!({ "task": "check the disk usage on every server", "interactive": true }),
            ),
            (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": "count the open tickets" })),
            (BRANCH_TOOL.to_owned(), json!({ "task": "think about which server to retire first" })),
        ]),
        reply("On it."),
        reply("Still working."),
        reply("Still working."),
        reply("There are 12 open tickets."),
    ]);
    models.worker.respond_with(|request| {
        if first_user_text(request).contains("tickets") {
            done("12 open tickets").delay(Duration::from_secs(20))
        } else if tool_results(request).is_empty() {
            ScriptedTurn::tool_call(SET_STATUS_TOOL, json!({ "status": "scanning server 2 of 5", "kind": "progress" }))
        } else {
            ScriptedTurn::hang()
        }
    });
    models.branch.respond_with(|_| ScriptedTurn::hang());
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;

    h.say(CONV, "how are the servers?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    idle().await;
    // The system prompt is rendered when a turn starts: this one sees the three processes.
    h.say(CONV, "anything yet?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    // The ticket count is done at 20 s; a message inside the relay window (500 ms) is answered
    // first, with the result waiting in the status block.
    tokio::time::sleep(Duration::from_millis(19_200)).await;
    h.say(CONV, "and now?");
    assert_eq!(h.wait_turns(2).await, vec![TurnOutcome::Replied, TurnOutcome::Replied], "the turn, then the relay");

    let requests = models.channel.requests();
    assert_eq!(requests.len(), 5, "two calls for the first turn, one for each other turn and the relay");
    insta::assert_snapshot!("system_prompt_with_background_work", exact(&without_ids(&mut h, &requests[2].system)));
    insta::assert_snapshot!(
        "system_prompt_with_a_result_not_yet_relayed",
        exact(&without_ids(&mut h, &requests[3].system))
    );

    let workers = models.worker.requests();
    let prompt_for = |task: &str| {
        let request = workers.iter().find(|r| first_user_text(r).contains(task)).expect("the worker was called");
        request.system.clone()
    };
    insta::assert_snapshot!("worker_system_prompt", exact(&prompt_for("tickets")));
    insta::assert_snapshot!("interactive_worker_system_prompt", exact(&prompt_for("disk")));
    let branch = models.branch.requests();
    insta::assert_snapshot!("branch_system_prompt", exact(&branch[0].system));
    h.shutdown().await;
}

/// The identity files follow the agent's prompt, in their fixed order, and an edit shows in the
/// next turn without a restart.
#[tokio::test(start_paused = true)]
async fn the_identity_files_are_in_the_system_prompt_and_read_again_each_turn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = spacebot_agent::IdentityDir::new(dir.path().join("main"));
    identity.create_missing().expect("templates");
    std::fs::write(identity.path().join("SOUL.md"), "<!-- kept out -->\nBe kind, and brief.\n").expect("write");
    std::fs::write(identity.path().join("IDENTITY.md"), "You are Orbit, the ops team's bot.").expect("write");
    let models = Models::new();
    models.channel.push(reply("hello"));
    models.channel.push(reply("hello again"));
    let profile = models.profile(ChannelSettings::default()).with_identity(identity.clone());
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;
    h.say(CONV, "hi");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    std::fs::write(identity.path().join("SOUL.md"), "Be terse.").expect("edit");
    h.say(CONV, "hi again");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let requests = models.channel.requests();
    insta::assert_snapshot!("system_prompt_with_identity", exact(&requests[0].system));
    assert!(requests[1].system.contains("## Soul\n\nBe terse.\n\n## Identity"), "{}", requests[1].system);
    assert!(!requests[1].system.contains("Be kind"), "the edit replaced the old text");
    h.shutdown().await;
}

//! What the model sees of the past: earlier turns, history reloaded after a restart, no harness
//! notices, and a system prompt that never changes.

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::REPLY_TOOL;
use spacebot_core::{ChatMessage, LlmErrorKind, Role, TurnOutcome};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{CONV, profile, request_text, start, user};

fn reply(text: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": text }))
}

#[tokio::test(start_paused = true)]
async fn the_second_turn_sees_the_first_exchange() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([reply("first answer"), reply("second answer")]);
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    let first = h.say(CONV, "first question");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let second = h.say(CONV, "second question");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].messages, vec![user(&first)]);
    assert_eq!(requests[1].messages, vec![user(&first), ChatMessage::assistant("first answer"), user(&second)]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn conversations_have_separate_histories() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([reply("to one"), reply("to two")]);
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    h.say("test:one", "in one");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let other = h.say("test:two", "in two");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(model.requests()[1].messages, vec![user(&other)]);
    assert_eq!(h.adapter.texts_for("test:one"), vec!["to one"]);
    assert_eq!(h.adapter.texts_for("test:two"), vec!["to two"]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn error_notices_are_not_sent_back_to_the_model() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([ScriptedTurn::error(LlmErrorKind::ServerError), reply("better now")]);
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let first = h.say(CONV, "hello");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);
    let second = h.say(CONV, "hello again");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert!(log.messages().iter().any(|m| m.role == Role::System), "the notice is in the log");
    let requests = model.requests();
    assert_eq!(requests[1].messages, vec![user(&first), user(&second)]);
    assert!(!request_text(&requests[1]).contains("⚠️"), "{:#?}", requests[1]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_history_is_reloaded_from_the_log() {
    let log = Arc::new(MemoryLog::new());

    let before = Arc::new(ScriptedModel::new());
    before.push_all([reply("first answer"), ScriptedTurn::error(LlmErrorKind::Timeout)]);
    let mut h = start(profile(&before), log.clone()).await;
    let first = h.say(CONV, "hello");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let second = h.say(CONV, "are you ok?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);
    h.shutdown().await;
    assert!(log.messages().iter().any(|m| m.role == Role::System), "a notice is in the log");

    let after = Arc::new(ScriptedModel::new());
    after.push(reply("welcome back"));
    let mut h = start(profile(&after), log.clone()).await;
    let third = h.say(CONV, "I'm back");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    assert_eq!(h.adapter.texts_for(CONV), vec!["welcome back"]);

    let requests = after.requests();
    assert_eq!(requests.len(), 1);
    // The same context the channel would have had without the restart: the exchange, the
    // failed message without its notice, and the new message once.
    assert_eq!(
        requests[0].messages,
        vec![user(&first), ChatMessage::assistant("first answer"), user(&second), user(&third)]
    );
    assert!(!request_text(&requests[0]).contains("⚠️"));
    assert_eq!(requests[0].system, before.requests()[0].system, "the system prompt survives a restart");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_system_prompt_is_byte_identical_between_turns() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([
        reply("one"),
        ScriptedTurn::tool_call("unknown", json!({})),
        reply("two"),
        ScriptedTurn::text("three"),
    ]);
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    for text in ["a", "b", "c"] {
        h.say(CONV, text);
        assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    }

    let requests = model.requests();
    assert_eq!(requests.len(), 4);
    let system = requests[0].system.as_bytes();
    assert!(!system.is_empty());
    for request in &requests[1..] {
        assert_eq!(request.system.as_bytes(), system, "the system prompt changed between calls");
        assert_eq!(request.tools, requests[0].tools, "the tools changed between calls");
    }
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_custom_system_prompt_is_used_verbatim() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([reply("one"), reply("two")]);
    let mut h = start(profile(&model).with_system_prompt("You are a terse bot."), Arc::new(MemoryLog::new())).await;

    h.say(CONV, "a");
    h.say(CONV, "b");
    assert_eq!(h.wait_turns(2).await, vec![TurnOutcome::Replied; 2]);
    let systems: Vec<_> = model.requests().into_iter().map(|r| r.system).collect();
    assert_eq!(systems, vec!["You are a terse bot.", "You are a terse bot."]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fresh_start_with_new_holds_after_a_restart() {
    let log = Arc::new(MemoryLog::new());
    let before = Arc::new(ScriptedModel::new());
    before.push_all([reply("old answer"), reply("new answer")]);
    let mut h = start(profile(&before), log.clone()).await;
    h.say(CONV, "old topic");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    h.say(CONV, "/new");
    let fresh = h.say(CONV, "new topic");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    h.shutdown().await;

    let after = Arc::new(ScriptedModel::new());
    after.push(reply("still new"));
    let mut h = start(profile(&after), log).await;
    let next = h.say(CONV, "and now?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let request = &after.requests()[0];
    assert_eq!(
        request.messages,
        vec![user(&fresh), ChatMessage::assistant("new answer"), user(&next)],
        "only what came after /new is reloaded"
    );
    assert!(!request_text(request).contains("old topic"), "{request:#?}");
    h.shutdown().await;
}

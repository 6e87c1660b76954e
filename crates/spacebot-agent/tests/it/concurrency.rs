//! Ordering within a conversation and independence between conversations.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use spacebot_agent::{ChannelSettings, REPLY_TOOL};
use spacebot_core::{ChatMessage, ConversationLog, Role, TurnOutcome};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{CONV, idle, last_user_text, profile, start, stop_typing, typing, user};

/// A model that answers `re: <text>` to every message, after `delay`.
fn echo_model(delay: Duration) -> Arc<ScriptedModel> {
    let model = Arc::new(ScriptedModel::new());
    model.respond_with(move |request| {
        let text = format!("re: {}", last_user_text(request));
        ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": text })).delay(delay)
    });
    model
}

#[tokio::test(start_paused = true)]
async fn messages_arriving_mid_turn_are_answered_afterwards_in_order() {
    let model = echo_model(Duration::from_secs(5));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let one = h.say(CONV, "one");
    idle().await;
    assert_eq!(model.request_count(), 1, "the first turn is waiting on the model");
    let two = h.say(CONV, "two");
    let three = h.say(CONV, "three");
    idle().await;
    assert_eq!(model.request_count(), 1, "queued messages wait for the turn in progress");
    assert!(h.adapter.texts_for(CONV).is_empty());

    assert_eq!(h.wait_turns(3).await, vec![TurnOutcome::Replied; 3]);
    assert_eq!(h.adapter.texts_for(CONV), vec!["re: one", "re: two", "re: three"]);
    for (message, answer) in [(&one, "re: one"), (&two, "re: two"), (&three, "re: three")] {
        let texts: Vec<_> =
            h.responses_to(message).iter().filter_map(|r| r.text_content().map(str::to_owned)).collect();
        assert_eq!(texts, vec![answer], "each message gets its own reply");
    }

    // Each turn saw the turns before it, complete and in order.
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].messages, vec![user(&one)]);
    assert_eq!(requests[1].messages, vec![user(&one), ChatMessage::assistant("re: one"), user(&two)]);
    assert_eq!(
        requests[2].messages,
        vec![
            user(&one),
            ChatMessage::assistant("re: one"),
            user(&two),
            ChatMessage::assistant("re: two"),
            user(&three)
        ]
    );
    let answers: Vec<_> = log.messages().into_iter().filter(|m| m.role == Role::Assistant).map(|m| m.text).collect();
    assert_eq!(answers, vec!["re: one", "re: two", "re: three"]);
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_before_the_channel_starts_is_answered_in_order_with_ordered_context() {
    let model = echo_model(Duration::ZERO);
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    // Both are recorded in the log before the channel for the conversation first runs.
    let one = h.say(CONV, "one");
    let two = h.say(CONV, "two");
    assert_eq!(h.wait_turns(2).await, vec![TurnOutcome::Replied; 2]);

    assert_eq!(h.adapter.texts_for(CONV), vec!["re: one", "re: two"]);
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].messages, vec![user(&one)], "the first turn must not see a later message");
    assert_eq!(requests[1].messages, vec![user(&one), ChatMessage::assistant("re: one"), user(&two)]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_conversation_does_not_delay_another() {
    const SLOW: &str = "test:slow";
    const FAST: &str = "test:fast";
    let model = Arc::new(ScriptedModel::new());
    model.respond_with(|request| match last_user_text(request).as_str() {
        "slow" => ScriptedTurn::hang(),
        text => ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": format!("fast: {text}") })),
    });
    let settings = ChannelSettings::default().with_turn_timeout(Duration::from_secs(60));
    let mut h = start(profile(&model).with_settings(settings), Arc::new(MemoryLog::new())).await;

    h.say(SLOW, "slow");
    idle().await;
    assert_eq!(model.request_count(), 1, "the slow conversation is waiting on the model");

    let started = Instant::now();
    h.say(FAST, "quick");
    let texts = h.adapter.wait_for_texts(FAST, 1, Duration::from_secs(5)).await;
    assert_eq!(texts, vec!["fast: quick"]);
    h.say(FAST, "again");
    let texts = h.adapter.wait_for_texts(FAST, 2, Duration::from_secs(5)).await;
    assert_eq!(texts, vec!["fast: quick", "fast: again"]);
    assert!(started.elapsed() < Duration::from_secs(1), "the fast conversation waited {:?}", started.elapsed());
    assert_eq!(h.adapter.responses_for(SLOW), vec![typing()], "the slow turn is still running");

    // The hung conversation still ends in a visible error.
    let slow = h.adapter.wait_for_texts(SLOW, 1, Duration::from_secs(120)).await;
    assert!(slow[0].contains("60-second limit"), "{slow:?}");
    let outcomes = h.wait_turns(3).await;
    assert_eq!(outcomes, vec![TurnOutcome::Replied, TurnOutcome::Replied, TurnOutcome::Failed]);
    assert_eq!(h.adapter.responses_for(SLOW).last(), Some(&stop_typing()));
    h.shutdown().await;
}

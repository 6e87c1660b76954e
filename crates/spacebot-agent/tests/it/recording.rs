//! A reply is delivered only once it is recorded with the messages it answers, so no message is
//! ever answered twice (a restart answers exactly the unrecorded ones) and none goes silent (a
//! reply that can't be recorded becomes a visible notice).

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::{REPLY_TOOL, SKIP_TOOL};
use spacebot_core::{ConversationLog, Role};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{CONV, idle, profile, start};

fn answering_model() -> Arc<ScriptedModel> {
    let model = Arc::new(ScriptedModel::new());
    model.respond_with(|_| ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": "the answer" })));
    model
}

fn assistant_texts(log: &MemoryLog) -> Vec<String> {
    log.messages().into_iter().filter(|m| m.role == Role::Assistant).map(|m| m.text).collect()
}

#[tokio::test(start_paused = true)]
async fn a_busy_log_is_retried_and_the_reply_is_sent_once_recorded() {
    let log = Arc::new(MemoryLog::new());
    log.fail_replies(Role::Assistant, 2, true);
    let h = start(profile(&answering_model()), log.clone()).await;

    h.say(CONV, "hello");
    assert_eq!(h.wait_texts(CONV, 1).await, vec!["the answer"]);
    idle().await;

    assert_eq!(h.adapter.texts_for(CONV), vec!["the answer"], "one reply, no notice");
    assert_eq!(assistant_texts(&log), vec!["the answer"], "recorded once");
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "the message counts as answered");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_reply_that_cannot_be_recorded_is_not_sent_and_the_user_is_told() {
    let log = Arc::new(MemoryLog::new());
    log.fail_replies(Role::Assistant, 1, false);
    let h = start(profile(&answering_model()), log.clone()).await;

    h.say(CONV, "hello");
    let texts = h.wait_texts(CONV, 1).await;
    idle().await;

    assert_eq!(h.adapter.texts_for(CONV), texts, "exactly one message reaches the user");
    assert!(texts[0].starts_with("⚠️") && texts[0].contains("couldn't save"), "a visible notice: {texts:?}");
    assert!(assistant_texts(&log).is_empty(), "no reply was recorded");
    // The notice was recorded with the message it answers, so a restart doesn't answer it again.
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;

    let model = answering_model();
    let h = start(profile(&model), log.clone()).await;
    idle().await;
    assert_eq!(model.request_count(), 0, "nothing is answered again after a restart");
    assert!(h.adapter.sent().is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn when_nothing_can_be_recorded_the_message_is_answered_once_after_a_restart() {
    let log = Arc::new(MemoryLog::new());
    // The reply and the notice both fail: the log is down for this turn.
    log.fail_replies(Role::Assistant, 1, false);
    log.fail_replies(Role::System, 1, false);
    let h = start(profile(&answering_model()), log.clone()).await;

    h.say(CONV, "hello");
    let texts = h.wait_texts(CONV, 1).await;
    idle().await;
    assert_eq!(h.adapter.texts_for(CONV), texts);
    assert!(!texts.contains(&"the answer".to_owned()), "an unrecorded reply is never sent: {texts:?}");
    assert_eq!(log.unhandled().await.expect("unhandled").len(), 1, "the message waits for the next start");
    h.shutdown().await;

    let h = start(profile(&answering_model()), log.clone()).await;
    assert_eq!(h.wait_texts(CONV, 1).await, vec!["the answer"]);
    idle().await;
    assert_eq!(assistant_texts(&log), vec!["the answer"], "answered exactly once over both runs");
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_skip_is_retried_on_a_busy_log() {
    let log = Arc::new(MemoryLog::new());
    let model = Arc::new(ScriptedModel::new());
    model.respond_with(|_| ScriptedTurn::tool_call(SKIP_TOOL, json!({})));
    let h = start(profile(&model), log.clone()).await;
    log.fail_marks(1, true);

    h.say(CONV, "no answer needed");
    idle().await;
    assert!(h.adapter.texts_for(CONV).is_empty());
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "the skip is recorded after a retry");
    h.shutdown().await;
}

//! Messages recorded but not answered before a restart are answered once when the runtime
//! starts; answered messages are never answered again.

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::REPLY_TOOL;
use spacebot_core::{ConversationLog, InboundMessage, Role, Sender};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{ADAPTER, AGENT, CONV, idle, last_user_text, profile, start, user};

fn pending(text: &str) -> InboundMessage {
    InboundMessage::text(ADAPTER, CONV, Sender::new("alice"), text).with_agent(AGENT).with_direct(true)
}

fn echo_model() -> Arc<ScriptedModel> {
    let model = Arc::new(ScriptedModel::new());
    model.respond_with(|request| {
        ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": format!("re: {}", last_user_text(request)) }))
    });
    model
}

#[tokio::test(start_paused = true)]
async fn an_unhandled_message_is_answered_at_start_exactly_once() {
    let log = Arc::new(MemoryLog::new());
    let message = pending("did you get this?");
    assert!(log.record_inbound(&message).await.expect("recorded"));
    assert_eq!(log.unhandled().await.expect("unhandled").len(), 1);

    let model = echo_model();
    let h = start(profile(&model), log.clone()).await;
    assert_eq!(h.wait_texts(CONV, 1).await, vec!["re: did you get this?"]);
    idle().await;

    assert_eq!(h.adapter.texts_for(CONV).len(), 1, "answered once");
    let texts: Vec<_> = h.responses_to(&message).iter().filter_map(|r| r.text_content().map(str::to_owned)).collect();
    assert_eq!(texts, vec!["re: did you get this?"], "the reply goes to the recovered message");
    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].messages, vec![user(&message)], "the recovered message appears once in context");
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    let answers = log.messages().into_iter().filter(|m| m.role == Role::Assistant).count();
    assert_eq!(answers, 1);
    h.shutdown().await;

    // Another restart finds nothing to answer.
    let model = echo_model();
    let h = start(profile(&model), log.clone()).await;
    idle().await;
    assert_eq!(model.request_count(), 0);
    assert!(h.adapter.sent().is_empty(), "nothing is sent twice: {:#?}", h.adapter.sent());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn several_unhandled_messages_are_answered_in_order_with_ordered_context() {
    let log = Arc::new(MemoryLog::new());
    let first = pending("first");
    let second = pending("second");
    for message in [&first, &second] {
        assert!(log.record_inbound(message).await.expect("recorded"));
    }

    let model = echo_model();
    let h = start(profile(&model), log.clone()).await;
    assert_eq!(h.wait_texts(CONV, 2).await, vec!["re: first", "re: second"]);
    idle().await;

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].messages, vec![user(&first)], "the first answer must not see the second message");
    assert_eq!(
        requests[1].messages,
        vec![user(&first), spacebot_core::ChatMessage::assistant("re: first"), user(&second)]
    );
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_message_is_answered_once() {
    let model = echo_model();
    let log = Arc::new(MemoryLog::new());
    let h = start(profile(&model), log.clone()).await;

    let message = pending("only once");
    let handle = h.runtime.handle();
    let first = handle.submit(message.clone()).await.expect("accepted");
    let again = handle.submit(message.clone()).await.expect("a duplicate is accepted, not processed");
    assert_eq!(first, again);
    assert_eq!(h.wait_texts(CONV, 1).await, vec!["re: only once"]);
    idle().await;

    assert_eq!(h.adapter.texts_for(CONV).len(), 1);
    assert_eq!(model.request_count(), 1);
    h.shutdown().await;
}

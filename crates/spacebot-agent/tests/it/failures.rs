//! Turns that fail: every one ends in a visible error that is stored and marks the message
//! handled, and the typing indicator always stops.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use spacebot_agent::{AgentProfile, ChannelSettings, REPLY_TOOL, SKIP_TOOL};
use spacebot_core::{
    ChatMessage, ConversationLog, InboundMessage, LlmErrorKind, OutboundResponse, Role, Sender, StatusUpdate,
    StoredMessage, TurnOutcome,
};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{ADAPTER, AGENT, CONV, Harness, idle, profile, start, start_with, stop_typing, typing};

/// Checks that `message` was answered by exactly one visible error containing `needle`, stored
/// as a system notice, and that the message is handled. Returns the error text.
async fn assert_visible_error(h: &Harness, log: &MemoryLog, message: &InboundMessage, needle: &str) -> String {
    let responses = h.responses_to(message);
    assert_eq!(responses.len(), 3, "typing, the error, stop typing: {responses:#?}");
    assert_eq!((&responses[0], &responses[2]), (&typing(), &stop_typing()));
    let Some(text) = responses[1].text_content() else { panic!("expected an error text: {responses:#?}") };
    assert!(text.starts_with("⚠️"), "{text}");
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");

    let notices: Vec<StoredMessage> = log.messages().into_iter().filter(|m| m.role != Role::User).collect();
    let notice = notices.iter().find(|m| m.text == text).unwrap_or_else(|| panic!("not stored: {notices:#?}"));
    assert_eq!(notice.role, Role::System);
    assert_eq!(notice.sender, "spacebot");
    assert_eq!(notice.agent.as_str(), AGENT);
    assert_eq!(notice.conversation, message.conversation);
    assert!(notices.iter().all(|m| m.role != Role::Assistant), "no assistant message on failure: {notices:#?}");
    let unhandled = log.unhandled().await.expect("unhandled");
    assert!(unhandled.iter().all(|m| m.id != message.id), "the failed message must be marked handled");
    text.to_owned()
}

#[tokio::test(start_paused = true)]
async fn model_error_is_a_visible_stored_error() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::error(LlmErrorKind::ServerError));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let inbound = h.say(CONV, "hello");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);

    assert_visible_error(&h, &log, &inbound, "server error").await;
    assert_eq!(h.adapter.texts_for(CONV).len(), 1);
    assert_eq!(model.request_count(), 1, "the channel does not retry a failed model call itself");
    h.shutdown().await;
}

/// The error says whether asking again can help: only when the failure may pass. A refused key
/// or request needs whoever runs the daemon, so the person is not told to try again.
#[tokio::test(start_paused = true)]
async fn a_model_error_says_whether_asking_again_helps() {
    let cases = [
        (LlmErrorKind::RateLimited, "rate-limiting", true),
        (LlmErrorKind::Unreachable, "can't be reached", true),
        (LlmErrorKind::Auth, "refused the daemon's API key", false),
        (LlmErrorKind::InvalidRequest, "refused the request as invalid", false),
        (LlmErrorKind::Untrusted, "certificate isn't trusted", false),
    ];
    for (kind, reason, passes) in cases {
        let model = Arc::new(ScriptedModel::new());
        model.push(ScriptedTurn::error(kind));
        let log = Arc::new(MemoryLog::new());
        let mut h = start(profile(&model), log.clone()).await;

        let inbound = h.say(CONV, "hello");
        assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed], "{kind:?}");
        let text = assert_visible_error(&h, &log, &inbound, reason).await;
        assert_eq!(text.contains("Please try again in a moment."), passes, "{kind:?}: {text}");
        assert_eq!(text.contains("the daemon's log says which provider and why"), !passes, "{kind:?}: {text}");
        h.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn budget_exhausted_after_exactly_the_allowed_model_calls() {
    let model = Arc::new(ScriptedModel::new());
    model.respond_with(|_| ScriptedTurn::tool_call("lookup", json!({"what": "anything"})));
    let settings = ChannelSettings::default().with_max_model_calls_per_turn(3);
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model).with_settings(settings), log.clone()).await;

    let inbound = h.say(CONV, "loop forever please");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);
    idle().await;

    assert_eq!(model.request_count(), 3);
    let text = assert_visible_error(&h, &log, &inbound, "3 calls").await;
    assert!(text.contains("without sending a reply"), "{text}");
    // Each call saw the results of the calls before it.
    for (index, request) in model.requests().iter().enumerate() {
        let results = request.messages.iter().filter(|m| matches!(m, ChatMessage::ToolResult { .. })).count();
        assert_eq!(results, index, "request {index}: {:#?}", request.messages);
    }
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn hung_model_hits_the_turn_timeout_and_the_channel_carries_on() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::hang());
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "back again"})));
    let settings = ChannelSettings::default().with_turn_timeout(Duration::from_secs(10));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model).with_settings(settings), log.clone()).await;

    let started = Instant::now();
    let inbound = h.say(CONV, "hello?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(11), "took {elapsed:?}");

    let text = assert_visible_error(&h, &log, &inbound, "10-second limit").await;
    assert!(text.contains("time"), "{text}");

    // The conversation is not stuck behind the hung call.
    h.say(CONV, "still there?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    assert_eq!(h.adapter.texts_for(CONV), vec![text, "back again".to_owned()]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_model_configured_is_a_visible_error_naming_the_setting() {
    let log = Arc::new(MemoryLog::new());
    let mut h = start(AgentProfile::new(AGENT), log.clone()).await;

    let inbound = h.say(CONV, "hello");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);

    let text = assert_visible_error(&h, &log, &inbound, "`llm.models.channel`").await;
    assert!(text.contains("'main'"), "the error names the agent: {text}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn agent_unknown_to_the_engine_answers_with_the_no_model_error() {
    let model = Arc::new(ScriptedModel::new());
    let log = Arc::new(MemoryLog::new());
    // The runtime hosts "other", the engine was only told about "main".
    let mut h = start_with(vec![profile(&model)], &[AGENT, "other"], log.clone()).await;

    let message = InboundMessage::text(ADAPTER, CONV, Sender::new("alice"), "anyone?").with_agent("other");
    h.runtime.handle().submit(message).await.expect("accepted");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);

    let texts = h.adapter.texts_for(CONV);
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("'other'") && texts[0].contains("`llm.models.channel`"), "{texts:?}");
    assert_eq!(model.request_count(), 0, "another agent's model is never used");
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn every_turn_starts_and_stops_typing_whatever_its_outcome() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([
        ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "one"})),
        ScriptedTurn::tool_call(SKIP_TOOL, json!({})),
        ScriptedTurn::error(LlmErrorKind::RateLimited),
        ScriptedTurn::tool_call("nope", json!({})),
        ScriptedTurn::tool_call("nope", json!({})),
        ScriptedTurn::hang(),
        ScriptedTurn::text("plain"),
    ]);
    let settings =
        ChannelSettings::default().with_max_model_calls_per_turn(2).with_turn_timeout(Duration::from_secs(5));
    let mut h = start(profile(&model).with_settings(settings), Arc::new(MemoryLog::new())).await;

    let messages: Vec<_> = ["a", "b", "c", "d", "e", "f"].into_iter().map(|text| h.say(CONV, text)).collect();
    let outcomes = h.wait_turns(6).await;
    use TurnOutcome::{Failed, Replied, Skipped};
    assert_eq!(outcomes, vec![Replied, Skipped, Failed, Failed, Failed, Replied]);

    for message in &messages {
        let responses = h.responses_to(message);
        assert_eq!(responses.first(), Some(&typing()), "{responses:#?}");
        assert_eq!(responses.last(), Some(&stop_typing()), "{responses:#?}");
        let statuses = responses.iter().filter(|r| matches!(r, OutboundResponse::Status { .. })).count();
        assert_eq!(statuses, 2, "one start and one stop per turn: {responses:#?}");
    }
    // Turns never overlap: indicators alternate across the whole conversation.
    let statuses: Vec<_> = h
        .adapter
        .responses_for(CONV)
        .into_iter()
        .filter_map(|r| match r {
            OutboundResponse::Status { status } => Some(status),
            _ => None,
        })
        .collect();
    let expected: Vec<_> = (0..6).flat_map(|_| [StatusUpdate::Typing, StatusUpdate::StopTyping]).collect();
    assert_eq!(statuses, expected);
    h.shutdown().await;
}

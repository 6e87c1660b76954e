//! How a turn ends well: `reply`, `skip`, plain-text fallback, and the model's mistakes the
//! channel corrects (tool syntax written as text, secrets, unknown tools).

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::{BRANCH_TOOL, CANCEL_TOOL, REACT_TOOL, REPLY_TOOL, ROUTE_TOOL, SKIP_TOOL, SPAWN_WORKER_TOOL};
use spacebot_core::{ChatMessage, ConversationLog, OutboundResponse, Role, TurnOutcome};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{AGENT, CONV, profile, start, stop_typing, tool_names, typing, user};

#[tokio::test(start_paused = true)]
async fn reply_tool_delivers_one_text_stored_as_the_agent() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "Hi Alice!"})));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let inbound = h.say(CONV, "hello");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(h.adapter.texts_for(CONV), vec!["Hi Alice!"]);
    assert_eq!(h.responses_to(&inbound), vec![typing(), OutboundResponse::text("Hi Alice!"), stop_typing()]);

    let stored = log.messages();
    assert_eq!(stored.len(), 2, "{stored:#?}");
    assert_eq!(
        (stored[0].role, stored[0].id.clone(), stored[0].text.as_str()),
        (Role::User, inbound.id.clone(), "hello")
    );
    let answer = &stored[1];
    assert_eq!(answer.role, Role::Assistant);
    assert_eq!(answer.sender, AGENT);
    assert_eq!(answer.agent.as_str(), AGENT);
    assert_eq!(answer.conversation.as_str(), CONV);
    assert_eq!(answer.text, "Hi Alice!");
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "the message must be marked handled");

    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        tool_names(&requests[0]),
        vec![REPLY_TOOL, SKIP_TOOL, REACT_TOOL, BRANCH_TOOL, SPAWN_WORKER_TOOL, ROUTE_TOOL, CANCEL_TOOL]
    );
    assert!(requests[0].system.starts_with("You are main,"), "{}", requests[0].system);
    assert_eq!(requests[0].messages, vec![user(&inbound)]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn skip_sends_nothing_but_typing_and_marks_handled() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::tool_call(SKIP_TOOL, json!({"reason": "not addressed to me"})));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let inbound = h.say(CONV, "talking to bob here");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Skipped]);

    assert_eq!(h.adapter.responses_for(CONV), vec![typing(), stop_typing()]);
    assert_eq!(h.responses_to(&inbound).len(), 2);
    let stored = log.messages();
    assert_eq!(stored.len(), 1, "only the inbound message is stored: {stored:#?}");
    assert_eq!(stored[0].role, Role::User);
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "a skipped message is handled");
    assert_eq!(model.request_count(), 1);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn plain_text_is_sent_as_a_fallback_reply() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::text("  The meeting is at 3pm.\n"));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    h.say(CONV, "when is the meeting?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(h.adapter.texts_for(CONV), vec!["The meeting is at 3pm."]);
    let answers: Vec<_> = log.messages().into_iter().filter(|m| m.role == Role::Assistant).collect();
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].text.as_str(), answers[0].sender.as_str()), ("The meeting is at 3pm.", AGENT));
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    assert_eq!(model.request_count(), 1);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn text_that_looks_like_a_tool_call_is_not_sent_and_the_model_is_nudged() {
    let fake_call = r#"{"name": "reply", "arguments": {"content": "hi"}}"#;
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::text(fake_call));
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "Hello for real."})));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let inbound = h.say(CONV, "hi");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(h.adapter.texts_for(CONV), vec!["Hello for real."]);
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let second = &requests[1].messages;
    assert_eq!(second.len(), 3, "{second:#?}");
    assert_eq!(second[0], user(&inbound));
    assert_eq!(second[1], ChatMessage::assistant(fake_call));
    let ChatMessage::User { content: nudge, .. } = &second[2] else { panic!("expected a nudge, got {:?}", second[2]) };
    assert!(nudge.starts_with("[harness]"), "{nudge}");
    assert!(nudge.contains("tool call") && nudge.contains("`reply`"), "{nudge}");

    let answers: Vec<_> = log.messages().into_iter().filter(|m| m.role == Role::Assistant).map(|m| m.text).collect();
    assert_eq!(answers, vec!["Hello for real."]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn text_carrying_a_secret_is_not_sent() {
    let secret = format!("sk-{}", "a1B2c3D4e5".repeat(3));
    assert_eq!(secret.len(), 33);
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::text(format!("Sure, the key is {secret} — keep it safe.")));
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "I can't share credentials."})));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    h.say(CONV, "what's the API key?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(h.adapter.texts_for(CONV), vec!["I can't share credentials."]);
    for (_, response) in h.adapter.sent() {
        assert!(!format!("{response:?}").contains(&secret), "the secret was sent: {response:?}");
    }
    for stored in log.messages() {
        assert!(!stored.text.contains(&secret), "the secret was stored: {stored:?}");
    }
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let Some(ChatMessage::User { content: nudge, .. }) = requests[1].messages.last() else {
        panic!("expected a nudge: {:#?}", requests[1].messages)
    };
    assert!(nudge.contains("secret"), "{nudge}");
    assert!(!nudge.contains(&secret), "the nudge must not repeat the secret: {nudge}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_tool_gets_an_error_result_then_reply_works() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::tool_call("web_search", json!({"query": "weather"})));
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "It is sunny."})));
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile(&model), log.clone()).await;

    let inbound = h.say(CONV, "weather?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(h.adapter.texts_for(CONV), vec!["It is sunny."]);
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].tools, requests[0].tools, "the same tools are offered on every call");
    let second = &requests[1].messages;
    assert_eq!(second.len(), 3, "{second:#?}");
    assert_eq!(second[0], user(&inbound));
    let ChatMessage::Assistant { tool_calls, .. } = &second[1] else { panic!("expected the call: {second:#?}") };
    assert_eq!(tool_calls.len(), 1);
    assert_eq!(tool_calls[0].name, "web_search");
    let ChatMessage::ToolResult { call_id, name, content } = &second[2] else {
        panic!("expected a tool result: {second:#?}")
    };
    assert_eq!(call_id, &tool_calls[0].id);
    assert_eq!(name, "web_search");
    assert!(content.contains("`web_search`"), "{content}");
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reply_arguments_in_a_json_string_are_accepted() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!("{\"text\": \"stringly typed\"}")));
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    h.say(CONV, "hi");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    assert_eq!(h.adapter.texts_for(CONV), vec!["stringly typed"]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn empty_reply_is_refused_and_the_model_asked_again() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "   "})));
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "Now with words."})));
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    h.say(CONV, "hi");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    assert_eq!(h.adapter.texts_for(CONV), vec!["Now with words."]);
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let Some(ChatMessage::ToolResult { name, content, .. }) = requests[1].messages.last() else {
        panic!("expected a tool result: {:#?}", requests[1].messages)
    };
    assert_eq!(name, REPLY_TOOL);
    assert!(content.contains("non-empty"), "{content}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn react_sends_an_emoji_and_the_turn_goes_on_to_its_reply() {
    let model = Arc::new(ScriptedModel::new());
    model.push_all([
        ScriptedTurn::tool_call(REACT_TOOL, json!({"emoji": "  "})),
        ScriptedTurn::tool_call(REACT_TOOL, json!({"emoji": "👍"})),
        ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "Noted."})),
    ]);
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    let inbound = h.say(CONV, "I fixed the build");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    assert_eq!(
        h.responses_to(&inbound),
        vec![
            typing(),
            OutboundResponse::Reaction { emoji: "👍".to_owned() },
            OutboundResponse::text("Noted."),
            stop_typing()
        ],
        "an empty emoji sends nothing; the reaction goes out before the reply"
    );
    let requests = model.requests();
    assert_eq!(requests.len(), 3, "the turn went on after each reaction");
    let result = |index: usize| match requests[index].messages.last() {
        Some(ChatMessage::ToolResult { content, .. }) => content.clone(),
        other => panic!("expected a tool result, got {other:?}"),
    };
    assert!(result(1).contains("needs an `emoji`"), "{}", result(1));
    assert!(result(2).starts_with("Reacted."), "{}", result(2));
    h.shutdown().await;
}

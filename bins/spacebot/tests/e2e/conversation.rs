//! A conversation end to end: webhook in, model over HTTP, reply stored, history after restart.

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply, Wire};

use crate::daemon::{Daemon, Home, openai_config};

#[tokio::test]
async fn openai_conversation_survives_a_restart() {
    let model = FakeLlmServer::start().await;
    let home = Home::new(&openai_config(&model.openai_base_url()));

    let daemon = Daemon::start(&home).await;
    model.push(FakeReply::tool_call("reply", json!({"content": "Hello Alice, nice to meet you."})));
    let id = daemon.say("main", "support-1", "alice", "Hi, I'm Alice").await;
    let answers = daemon.wait_for_answers("main", "support-1", 1).await;
    assert_eq!(answers[0]["role"], "assistant");
    assert_eq!(answers[0]["text"], "Hello Alice, nice to meet you.");
    assert_eq!(answers[0]["sender"], "main");

    let messages = daemon.messages("main", "support-1").await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], id.as_str());
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["sender"], "alice");
    assert_eq!(messages[0]["text"], "Hi, I'm Alice");
    assert!(messages[0]["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // The model saw the channel's tools and the enveloped message.
    let request = model.last_request().expect("a model request");
    assert_eq!(request.wire, Wire::OpenAi);
    assert!(request.tool_names().contains(&"reply".to_owned()));
    assert!(request.last_user_text().is_some_and(|t| t.contains("alice] Hi, I'm Alice")));

    let (status, logs) = daemon.stop().await;
    assert!(status.success(), "clean exit on SIGTERM; logs:\n{}", logs.join("\n"));
    assert!(logs.iter().any(|l| l.contains("shutdown complete")));

    // After a restart the history is intact and the channel remembers it.
    let daemon = Daemon::start(&home).await;
    let before = daemon.messages("main", "support-1").await;
    assert_eq!(before, messages, "history changed across the restart");

    model.push(FakeReply::tool_call("reply", json!({"content": "You told me you are Alice."})));
    daemon.say("main", "support-1", "alice", "What's my name?").await;
    let answers = daemon.wait_for_answers("main", "support-1", 2).await;
    assert_eq!(answers[1]["text"], "You told me you are Alice.");
    let request = model.last_request().expect("a model request");
    let body = request.body.to_string();
    assert!(body.contains("Hi, I'm Alice"), "history not reloaded into the channel: {body}");
    assert!(body.contains("Hello Alice, nice to meet you."), "reply not in reloaded history: {body}");
    daemon.stop().await;
}

#[tokio::test]
async fn anthropic_conversation_survives_a_restart() {
    let model = FakeLlmServer::start().await;
    let config = format!(
        r#"
[llm.providers.claude]
kind = "anthropic"
base_url = "{}"
api_key = "env:TEST_ANTHROPIC_KEY"

[llm.models]
channel = "claude/claude-test"
"#,
        model.anthropic_base_url()
    );
    let home = Home::new(&config);
    let env = [("TEST_ANTHROPIC_KEY", "sk-ant-test")];

    let daemon = Daemon::start_with(&home, &env).await;
    model.push(FakeReply::tool_call("reply", json!({"content": "Bonjour!"})));
    daemon.say("main", "fr", "bob", "Salut").await;
    let answers = daemon.wait_for_answers("main", "fr", 1).await;
    assert_eq!(answers[0]["text"], "Bonjour!");
    let request = model.last_request().expect("a model request");
    assert_eq!(request.wire, Wire::Anthropic);
    let key = request.headers.iter().find(|(name, _)| name == "x-api-key").map(|(_, v)| v.as_str());
    assert_eq!(key, Some("sk-ant-test"), "the env: reference was not resolved");
    daemon.stop().await;

    let daemon = Daemon::start_with(&home, &env).await;
    model.push(FakeReply::text("Toujours là."));
    daemon.say("main", "fr", "bob", "Encore?").await;
    let answers = daemon.wait_for_answers("main", "fr", 2).await;
    // Plain text with no tool call is sent as the reply.
    assert_eq!(answers[1]["text"], "Toujours là.");
    let body = model.last_request().expect("request").body.to_string();
    assert!(body.contains("Salut") && body.contains("Bonjour!"), "history not reloaded: {body}");
    daemon.stop().await;
}

#[tokio::test]
async fn fifty_conversations_at_once_each_get_their_own_reply() {
    let model = FakeLlmServer::start().await;
    // Every answer quotes the question it answers, and takes a moment, so turns overlap.
    model.respond_with(|request| {
        let question = request.last_user_text().unwrap_or_default();
        let question = question.rsplit("] ").next().unwrap_or_default().to_owned();
        FakeReply::tool_call("reply", json!({"content": format!("answer to {question}")}))
            .delay(std::time::Duration::from_millis(100))
    });
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let daemon = Daemon::start(&home).await;

    let posts = (0..50).map(|i| {
        let daemon = &daemon;
        async move { daemon.say("main", &format!("c{i}"), &format!("user{i}"), &format!("question {i}")).await }
    });
    futures::future::join_all(posts).await;

    for i in 0..50 {
        let answers = daemon.wait_for_answers("main", &format!("c{i}"), 1).await;
        assert_eq!(answers.len(), 1, "conversation c{i} got {answers:?}");
        assert_eq!(answers[0]["text"], format!("answer to question {i}"));
    }
    assert_eq!(model.request_count(), 50);
    daemon.stop().await;
}

#[tokio::test]
async fn a_message_accepted_before_a_crash_is_answered_after_restart_exactly_once() {
    let model = FakeLlmServer::start().await;
    let home = Home::new(&openai_config(&model.openai_base_url()));

    let daemon = Daemon::start(&home).await;
    // The model is still thinking when the daemon dies.
    model.push(FakeReply::hang());
    daemon.say("main", "crash", "carol", "Please remember this").await;
    let deadline = std::time::Instant::now() + crate::daemon::PATIENCE;
    while model.request_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the model was never asked");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    daemon.crash().await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Noted."})));
    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("resuming messages left unanswered", crate::daemon::PATIENCE).await;
    let answers = daemon.wait_for_answers("main", "crash", 1).await;
    assert_eq!(answers[0]["text"], "Noted.");
    daemon.stop().await;

    // A second restart finds nothing left to do: the reply is not sent again.
    let requests = model.request_count();
    let daemon = Daemon::start(&home).await;
    let messages = daemon.messages("main", "crash").await;
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let (_, logs) = daemon.stop().await;
    assert!(!logs.iter().any(|l| l.contains("resuming messages")), "recovered twice:\n{}", logs.join("\n"));
    assert_eq!(model.request_count(), requests);
}

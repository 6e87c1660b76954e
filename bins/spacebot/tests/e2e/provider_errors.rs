//! A provider that fails never leaves a conversation silent: each case ends in a reply or a
//! visible error message.

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config};

async fn answer_after(script: Vec<FakeReply>) -> (serde_json::Value, usize) {
    let model = FakeLlmServer::start().await;
    for reply in script {
        model.push(reply);
    }
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let daemon = Daemon::start(&home).await;
    daemon.say("main", "errors", "dave", "hello?").await;
    let answers = daemon.wait_for_answers("main", "errors", 1).await;
    daemon.stop().await;
    (answers[0].clone(), model.request_count())
}

#[tokio::test]
async fn rate_limited_then_success_is_retried_and_delivered() {
    let (answer, requests) = answer_after(vec![
        FakeReply::status(429).with_header("retry-after", "0"),
        FakeReply::tool_call("reply", json!({"content": "made it"})),
    ])
    .await;
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["text"], "made it");
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn server_error_forever_ends_in_a_visible_error() {
    // The config allows 2 retries: 3 attempts, then the user is told.
    let (answer, requests) =
        answer_after(vec![FakeReply::status(500), FakeReply::status(500), FakeReply::status(500)]).await;
    assert_eq!(answer["role"], "system");
    assert_eq!(answer["sender"], "spacebot");
    assert!(answer["text"].as_str().unwrap().contains("server error"), "{answer}");
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn garbage_from_the_provider_ends_in_a_visible_error() {
    let (answer, _) = answer_after(vec![
        FakeReply::garbage("this is not JSON"),
        FakeReply::garbage("this is not JSON"),
        FakeReply::garbage("this is not JSON"),
    ])
    .await;
    assert_eq!(answer["role"], "system");
    assert!(answer["text"].as_str().unwrap().contains("could not be read"), "{answer}");
}

#[tokio::test]
async fn a_hanging_provider_times_out_into_a_visible_error() {
    // timeout_secs = 2 and 2 retries: the user hears back in about 6 seconds, not never.
    let (answer, requests) = answer_after(vec![FakeReply::hang(), FakeReply::hang(), FakeReply::hang()]).await;
    assert_eq!(answer["role"], "system");
    assert!(answer["text"].as_str().unwrap().contains("did not answer in time"), "{answer}");
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn an_agent_without_a_model_says_so() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;
    daemon.say("main", "nomodel", "erin", "anyone there?").await;
    let answers = daemon.wait_for_answers("main", "nomodel", 1).await;
    assert_eq!(answers[0]["role"], "system");
    assert!(answers[0]["text"].as_str().unwrap().contains("llm.models.channel"), "{}", answers[0]);
    daemon.stop().await;
}

//! The OpenAI-compatible API over a real runtime: answers, streamed chunks, the conversation it
//! keeps, control commands, and errors in OpenAI's shape.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use spacebot_core::{
    ConversationContext, ConversationEngine, ConversationInput, Inbox, OutboundResponse, RuntimeEvent, StatusUpdate,
    TurnOutcome, Usage,
};
use spacebot_webhook::{ApiConfig, OpenAiAdapter, ServeLimits};

use crate::support::{RawResponse, Served, exchange};

/// Answers `echo: <text>` (and a second reply when the text says `twice`), then ends the turn
/// as the channel does; answers a control command with one line and no end of turn.
struct EchoEngine;

impl ConversationEngine for EchoEngine {
    fn run_conversation(&self, ctx: ConversationContext, mut inbox: Inbox) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // How many messages this conversation has seen: shows that a conversation persists.
            let mut seen = 0;
            while let Some(input) = inbox.recv().await {
                match input {
                    ConversationInput::Message(message) => {
                        seen += 1;
                        let text = message.content.text();
                        let outbox = &ctx.outbox;
                        let _ = outbox.send(&message, OutboundResponse::Status { status: StatusUpdate::Typing }).await;
                        let reply = format!("echo #{seen} in {}: {text}", ctx.conversation);
                        let _ = outbox.send(&message, OutboundResponse::text(reply)).await;
                        if text.contains("twice") {
                            let _ = outbox.send(&message, OutboundResponse::text("and again")).await;
                        }
                        let _ =
                            outbox.send(&message, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await;
                        // As the channel does: the turn's end names the message and its usage.
                        outbox.publish(RuntimeEvent::TurnFinished {
                            agent: ctx.agent.clone(),
                            conversation: ctx.conversation.clone(),
                            outcome: TurnOutcome::Replied,
                            message: Some(message.id.clone()),
                            usage: Usage::new(10, 2),
                        });
                    }
                    ConversationInput::Control(command, message) => {
                        let _ = ctx.outbox.send(&message, OutboundResponse::text(format!("did {command:?}"))).await;
                    }
                    _ => {}
                }
            }
        })
    }
}

async fn served(token: Option<&str>) -> Served {
    let api = ApiConfig::default().with_token(token.map(str::to_owned)).with_openai(OpenAiAdapter::new());
    Served::start_with(ServeLimits::default(), Arc::new(EchoEngine), api).await
}

async fn post(served: &Served, path: &str, body: &Value, extra_headers: &str) -> RawResponse {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    let mut stream = served.connect().await;
    exchange(&mut stream, &request).await
}

fn chat(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }], "user": "alice" })
}

fn content(response: &RawResponse) -> String {
    let body = response.json();
    body["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no content: {body}")).to_owned()
}

#[tokio::test]
async fn a_completion_is_the_agents_answer_in_a_conversation_it_keeps() {
    let served = served(None).await;
    let first = post(&served, "/v1/chat/completions", &chat("main", "hello"), "").await;
    assert_eq!(first.status, 200, "{first:?}");
    let body = first.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "main");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{body}");
    assert_eq!(content(&first), "echo #1 in openai:alice: hello");
    assert_eq!(body["usage"], json!({ "prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12 }));

    // The same user continues the same conversation; every reply of a turn is in the answer.
    let second = post(&served, "/v1/chat/completions", &chat("main", "say it twice"), "").await;
    assert_eq!(content(&second), "echo #2 in openai:alice: say it twice\n\nand again");

    // The header names the conversation.
    let other = post(&served, "/v1/chat/completions", &chat("main", "hi"), "x-spacebot-conversation: ops\r\n").await;
    assert_eq!(content(&other), "echo #1 in openai:ops: hi");
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_control_command_is_answered_without_waiting_for_a_turn() {
    let served = served(None).await;
    let response = post(&served, "/v1/chat/completions", &chat("main", "/status"), "").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(content(&response), "did Status");
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_streamed_completion_sends_a_chunk_per_reply_then_done() {
    let served = served(None).await;
    let mut body = chat("main", "say it twice");
    body["stream"] = json!(true);
    let body = body.to_string();
    // HTTP/1.0: the event stream ends with the connection, so it can be read whole.
    let request = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = served.connect().await;
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("stream ends")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.0 200"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("content-type: text/event-stream"), "{raw}");
    let data: Vec<&str> = raw.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{raw}");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("a JSON chunk")).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "main"), "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(text, "echo #1 in openai:alice: say it twice\n\nand again");
    let finishes: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).collect();
    assert_eq!(finishes.last(), Some(&&json!("stop")));
    assert!(finishes[..finishes.len() - 1].iter().all(|f| f.is_null()), "{finishes:?}");
    assert_eq!(chunks.len(), 4, "role, two replies, finish: {chunks:?}");
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn models_are_the_agents_and_an_unknown_one_is_an_openai_404() {
    let served = served(None).await;
    let mut stream = served.connect().await;
    let models = exchange(&mut stream, "GET /v1/models HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["data"][0]["id"], "main");
    assert_eq!(models.json()["object"], "list");

    let unknown = post(&served, "/v1/chat/completions", &chat("gpt-4o", "hello"), "").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let error = &unknown.json()["error"];
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("gpt-4o")), "{error}");

    let invalid = post(&served, "/v1/chat/completions", &json!({ "model": "main", "messages": [] }), "").await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json()["error"]["type"], "invalid_request_error");
    assert_eq!(invalid.json()["error"]["param"], "messages");

    let mut stream = served.connect().await;
    let wrong_method = exchange(&mut stream, "DELETE /v1/models HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json()["error"]["message"].as_str().is_some(), "{wrong_method:?}");
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_api_token_is_the_api_key() {
    let served = served(Some("s3cret-token")).await;
    let refused = post(&served, "/v1/chat/completions", &chat("main", "hello"), "").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"]["code"], "invalid_api_key");
    let wrong = post(&served, "/v1/chat/completions", &chat("main", "hello"), "authorization: Bearer nope\r\n").await;
    assert_eq!(wrong.status, 401);
    let mut stream = served.connect().await;
    let models = exchange(&mut stream, "GET /v1/models HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert_eq!(models.status, 401);

    let allowed =
        post(&served, "/v1/chat/completions", &chat("main", "hello"), "authorization: Bearer s3cret-token\r\n").await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(content(&allowed), "echo #1 in openai:alice: hello");
    served.stop(Duration::from_secs(5)).await;
}

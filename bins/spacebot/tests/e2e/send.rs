//! `send` and `chat` follow the daemon's event stream instead of polling: they subscribe before
//! posting, read the messages once an event says a reply went out, and say so when the daemon
//! goes away. Run against a stand-in daemon that records what the client asks, in order, and
//! decides when events arrive.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::daemon::run_cli;

/// What the stand-in daemon does when the message is posted.
#[derive(Clone, Copy)]
enum Scenario {
    /// Records the reply and announces it on the event stream, after some noise.
    Replies,
    /// Ends every event stream without a reply: the daemon went away.
    GoesAway,
}

#[derive(Clone)]
struct Stub {
    scenario: Scenario,
    /// The requests, in the order they arrived.
    requests: Arc<Mutex<Vec<&'static str>>>,
    /// The stored messages of `webhook:cli`.
    messages: Arc<Mutex<Vec<Value>>>,
    /// Runtime events; `None` ends the streams.
    events: broadcast::Sender<Option<Value>>,
}

impl Stub {
    fn note(&self, request: &'static str) {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).push(request);
    }

    fn requests(&self) -> Vec<&'static str> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

async fn events(State(stub): State<Stub>) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    stub.note("events");
    // Subscribed before the response starts, as the real daemon does.
    let receiver = stub.events.subscribe();
    let stream = tokio_stream_from(receiver)
        .take_while(|event| std::future::ready(event.is_some()))
        .map(|event| Ok(Event::default().event("runtime").data(event.unwrap_or_default().to_string())));
    Sse::new(stream)
}

/// The broadcast receiver as a stream of its values (lagging is not expected here).
fn tokio_stream_from(receiver: broadcast::Receiver<Option<Value>>) -> impl futures::Stream<Item = Option<Value>> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await.ok()?;
        Some((event, receiver))
    })
}

async fn webhook(State(stub): State<Stub>, Json(body): Json<Value>) -> (axum::http::StatusCode, Json<Value>) {
    stub.note("post");
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let conversation = "webhook:cli";
    let sent = |conversation: &str, response: Value| json!({"type": "response_sent", "agent": "main", "conversation": conversation, "adapter": "webhook", "response": response});
    match stub.scenario {
        Scenario::Replies => {
            {
                let mut messages = stub.messages.lock().unwrap_or_else(PoisonError::into_inner);
                messages.push(json!({"id": "m1", "role": "user", "sender": "me", "text": text}));
                messages.push(
                    json!({"id": "r1", "role": "assistant", "sender": "main", "text": format!("pong to {text}")}),
                );
            }
            // Another conversation's reply and this one's typing indicator come first; neither
            // makes the client read the messages.
            let _ = stub.events.send(Some(sent("webhook:other", json!({"type": "text", "text": "not yours"}))));
            let _ = stub.events.send(Some(sent(conversation, json!({"type": "status", "status": {"type": "typing"}}))));
            let _ = stub.events.send(Some(sent(conversation, json!({"type": "text", "text": "pong"}))));
        }
        Scenario::GoesAway => {
            let _ = stub.events.send(None);
        }
    }
    (axum::http::StatusCode::ACCEPTED, Json(json!({"message_id": "m1", "conversation": conversation})))
}

async fn messages(State(stub): State<Stub>) -> Json<Value> {
    stub.note("messages");
    Json(Value::Array(stub.messages.lock().unwrap_or_else(PoisonError::into_inner).clone()))
}

/// Serves the stand-in daemon on a free port; returns its state and URL.
async fn serve(scenario: Scenario) -> (Stub, String) {
    let stub = Stub { scenario, requests: Arc::default(), messages: Arc::default(), events: broadcast::channel(16).0 };
    let app = axum::Router::new()
        .route("/api/events", get(events))
        .route("/webhook/{agent}", post(webhook))
        .route("/api/agents/{agent}/conversations/{conversation}/messages", get(messages))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // Ends with the test's runtime.
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, base)
}

#[tokio::test]
async fn send_subscribes_before_posting_and_reads_the_reply_when_its_event_arrives() {
    let (stub, base) = serve(Scenario::Replies).await;
    let output = tokio::task::spawn_blocking(move || {
        run_cli(&["send", "--url", &base, "--timeout", "30", "ping"], &[], std::path::Path::new("/"))
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "pong to ping");
    // No polling: the messages are read once, after the reply's event (the other
    // conversation's reply and the typing indicator did not count).
    assert_eq!(stub.requests(), ["events", "post", "messages"]);
}

#[tokio::test]
async fn chat_follows_the_events_too() {
    let (stub, base) = serve(Scenario::Replies).await;
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = crate::daemon::spacebot()
            .args(["chat", "--url", &base, "--conversation", "cli"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn chat");
        child.stdin.take().expect("stdin").write_all(b"hello\n").expect("type");
        child.wait_with_output().expect("chat output")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("main: pong to hello"), "{output:?}");
    assert_eq!(stub.requests(), ["events", "post", "messages"]);
}

#[tokio::test]
async fn send_says_so_when_the_daemon_goes_away_before_replying() {
    let (stub, base) = serve(Scenario::GoesAway).await;
    let url = base.clone();
    let output = tokio::task::spawn_blocking(move || {
        run_cli(&["send", "--url", &url, "--timeout", "30", "ping"], &[], std::path::Path::new("/"))
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!("error: the daemon at {base} closed its event stream before the reply arrived (did it stop?)")
    );
    assert_eq!(stub.requests(), ["events", "post"]);
}

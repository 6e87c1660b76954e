//! The OpenAI-compatible API through the real binary and the real provider client: a raw HTTP
//! check of both answer shapes, and the official `openai` Python package as a third-party client
//! (`openai_client.py`: a plain call, a second turn that remembers the first, a streamed call, the
//! model list, an unknown model, a wrong key).
//!
//! The Python check needs the `openai` package: `.ci/run` installs it (`pip install openai`);
//! `SPACEBOT_TEST_PYTHON` names the interpreter (default `python3`). Without it the test fails
//! and says how to install it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, RecordedRequest};

use crate::daemon::{Daemon, Home, openai_config};

const TOKEN: &str = "e2e-openai-token";

/// The fake model answers with every user message it was shown, so an answer proves what the
/// agent's context held.
fn heard(request: &RecordedRequest) -> FakeReply {
    let users: Vec<String> = request
        .messages()
        .iter()
        .filter(|message| message["role"] == "user")
        .filter_map(|message| message["content"].as_str().map(str::to_owned))
        .collect();
    FakeReply::text(format!("heard: {}", users.join(" | ")))
}

async fn start() -> (FakeLlmServer, Home, Daemon) {
    let fake = FakeLlmServer::start().await;
    fake.respond_with(heard);
    let config = format!("{}\n[api]\ntoken = \"{TOKEN}\"\n", openai_config(&fake.openai_base_url()));
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;
    (fake, home, daemon)
}

async fn complete(daemon: &Daemon, body: Value) -> reqwest::Response {
    daemon
        .http
        .post(format!("{}/v1/chat/completions", daemon.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_chat_completion_is_answered_by_the_agent_and_streams_as_chunks() {
    let (_fake, _home, daemon) = start().await;
    let body = json!({ "model": "main", "user": "raw", "messages": [
        { "role": "system", "content": "ignored: the agent has its own" },
        { "role": "user", "content": "first words" },
    ]});
    let response = complete(&daemon, body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    let text = answer["choices"][0]["message"]["content"].as_str().expect("content");
    assert!(text.starts_with("heard: ") && text.contains("first words"), "{answer}");
    assert!(!text.contains("ignored"), "the client's system message is not the agent's: {text}");
    // The fake model reports its usage per call; the turn made one.
    let usage = &answer["usage"];
    assert!(usage["prompt_tokens"].as_u64().is_some_and(|tokens| tokens > 0), "{answer}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0)),
        "{answer}"
    );

    // The conversation is stored like any other, under `openai:<user>`.
    let url = format!("{}/api/agents/main/conversations/openai:raw/messages", daemon.base);
    let stored: Vec<Value> =
        daemon.http.get(url).bearer_auth(TOKEN).send().await.expect("messages").json().await.expect("JSON");
    let roles: Vec<&str> = stored.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant"], "{stored:?}");

    let body = json!({ "model": "main", "user": "raw", "stream": true,
        "messages": [{ "role": "user", "content": "second words" }] });
    let response = complete(&daemon, body).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        response.headers()
    );
    let raw = response.text().await.expect("the stream ends");
    let data: Vec<&str> = raw.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{raw}");
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|chunk| serde_json::from_str::<Value>(chunk).expect("a JSON chunk"))
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(streamed.contains("first words") && streamed.contains("second words"), "{streamed}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_streamed_answer_arrives_while_the_model_is_still_writing_it() {
    let fake = FakeLlmServer::start().await;
    let reply = "Streaming works: each piece of this answer leaves the daemon as soon as the model writes it.";
    // Every event of the model's stream 250 ms after the one before.
    fake.respond_with(move |_| {
        FakeReply::tool_call("reply", json!({ "content": reply })).chunk_delay(Duration::from_millis(250))
    });
    let config = format!("{}\n[api]\ntoken = \"{TOKEN}\"\n", openai_config(&fake.openai_base_url()));
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;

    let body = json!({ "model": "main", "user": "paced", "stream": true,
        "messages": [{ "role": "user", "content": "tell me slowly" }] });
    let mut response = complete(&daemon, body).await;
    assert_eq!(response.status(), 200);
    // Each content chunk with when it arrived.
    let mut content: Vec<(Instant, String)> = Vec::new();
    let mut buffer = String::new();
    while let Some(bytes) = response.chunk().await.expect("the stream reads") {
        let arrived = Instant::now();
        buffer.push_str(std::str::from_utf8(&bytes).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(data).expect("a JSON chunk");
            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str().filter(|text| !text.is_empty()) {
                content.push((arrived, text.to_owned()));
            }
        }
    }
    let streamed: String = content.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(streamed, reply, "the pieces make the reply: {content:?}");
    assert!(content.len() >= 3, "the reply came in pieces: {content:?}");

    // The first piece left while the model was still writing: before its last event was sent.
    let frames = fake.streamed_events();
    let (model_done, _) = frames.last().expect("the model streamed");
    let (first, _) = content[0];
    assert!(first < *model_done, "the first piece arrived only after the model finished: {content:?}");
    // How long after the model's event that let it settle each piece arrived (the latest event
    // sent before it): the harness's part of a streamed reply's latency.
    let lags: Vec<Duration> = content
        .iter()
        .map(|(arrived, _)| {
            let sent = frames.iter().map(|(at, _)| *at).filter(|at| at <= arrived).max().expect("an event before it");
            *arrived - sent
        })
        .collect();
    println!(
        "streamed reply figures: pieces {}, lag after the model's event: first {:?}, all {lags:?}",
        content.len(),
        lags[0]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn the_official_openai_python_client_talks_to_an_agent() {
    let (_fake, _home, daemon) = start().await;
    let python = std::env::var("SPACEBOT_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = Command::new(&python).args(["-c", "import openai"]).output();
    let installed = probe.as_ref().is_ok_and(|output| output.status.success());
    assert!(
        installed,
        "this test needs the `openai` Python package: `{python} -m pip install openai` (or set \
         SPACEBOT_TEST_PYTHON to a Python that has it); .ci/run installs it. {probe:?}"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/openai_client.py");
    let base = daemon.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("OPENAI_BASE_URL", format!("{base}/v1"))
            .env("OPENAI_API_KEY", TOKEN)
            .env("SPACEBOT_AGENT", "main")
            // The SDK retries some failures; a failure here should show at once.
            .env("OPENAI_MAX_RETRIES", "0")
            .output()
            .expect("run python")
    })
    .await
    .expect("python finished");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");
    daemon.stop().await;
}

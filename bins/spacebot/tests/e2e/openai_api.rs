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

//! Shared helpers: models pointed at a fake server, quick retry settings, stream collection.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use spacebot_core::{ChatMessage, ChatRequest, ChatStream, LlmError, StreamEvent, ToolSpec};
use spacebot_llm::{ProviderConfig, ProviderKind, ProviderModel};
use spacebot_testing::FakeLlmServer;

/// Both wires, for tests that run against each.
pub(crate) const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];

/// Installs the process-wide rustls provider (first line of every test).
pub(crate) fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The base URL of `server` for `kind`.
pub(crate) fn base_url(server: &FakeLlmServer, kind: ProviderKind) -> String {
    match kind {
        ProviderKind::OpenAi => server.openai_base_url(),
        _ => server.anthropic_base_url(),
    }
}

/// Settings for `kind` at `base_url` with fast retries.
pub(crate) fn config_at(kind: ProviderKind, base_url: &str) -> ProviderConfig {
    ProviderConfig::new(kind, "test-key")
        .with_base_url(base_url)
        .with_timeout(Duration::from_secs(10))
        .with_max_retries(3)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(50))
        .with_max_tokens(256)
}

/// Settings for `kind` at the fake server.
pub(crate) fn config(server: &FakeLlmServer, kind: ProviderKind) -> ProviderConfig {
    config_at(kind, &base_url(server, kind))
}

/// A model named `fake/fake-model` with `config`.
pub(crate) fn model_with(config: ProviderConfig) -> ProviderModel {
    ProviderModel::new("fake", config, "fake-model").expect("valid settings")
}

/// A model at the fake server for `kind`.
pub(crate) fn model(server: &FakeLlmServer, kind: ProviderKind) -> ProviderModel {
    model_with(config(server, kind))
}

/// The `reply` tool as the channel offers it.
pub(crate) fn reply_tool() -> ToolSpec {
    ToolSpec::new(
        "reply",
        "Send a message to the conversation.",
        json!({
            "type": "object",
            "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["text"]
        }),
    )
}

/// A one-message request with a system prompt.
pub(crate) fn hello() -> ChatRequest {
    ChatRequest::new("You are terse.", vec![ChatMessage::user("hello")])
}

/// Every item of a stream, errors kept.
pub(crate) async fn collect(stream: ChatStream) -> Vec<Result<StreamEvent, LlmError>> {
    stream.collect().await
}

/// The text deltas of `events`, joined.
pub(crate) fn streamed_text(events: &[Result<StreamEvent, LlmError>]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            Ok(StreamEvent::TextDelta(text)) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The messages array of a recorded body.
pub(crate) fn messages(body: &Value) -> &Vec<Value> {
    body["messages"].as_array().expect("a messages array")
}

//! The real provider clients (rig-core's OpenAI chat-completions and Anthropic messages) accept
//! what the fake model server sends, plain and streamed (dev-only test support).

use rig_core::completion::{CompletionRequest, CompletionResponse, FinishReason, ToolDefinition};
use rig_core::message::ToolName;
use rig_core::providers::anthropic::AnthropicConfig;
use rig_core::providers::openai::OpenAIConfig;
use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply, Wire};

/// rig's clients build reqwest clients, and reqwest (built without a crypto provider of its own)
/// needs the process's: install ring, as the daemon does, before any client is named.
fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn request() -> CompletionRequest {
    let tool = ToolDefinition::new(
        ToolName::new("reply").expect("a non-empty tool name"),
        "Reply to the user",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    );
    CompletionRequest::new("hello there").preamble("be brief").tool(tool).max_tokens(256)
}

fn script(server: &FakeLlmServer) {
    server.push(FakeReply::text("plain answer"));
    server.push(FakeReply::text_and_tool_call("calling", "reply", json!({"text": "hi"})));
    server.push(FakeReply::text("streamed answer, in pieces"));
    server.push(FakeReply::text_and_tool_call("calling", "reply", json!({"text": "hi"})));
}

fn check(responses: [CompletionResponse; 4]) {
    let [plain, call, streamed, streamed_call] = responses;
    assert_eq!(plain.text(), "plain answer");
    assert_eq!(plain.finish_reason(), Some(FinishReason::Stop));
    assert!(plain.usage.input_tokens.unwrap_or(0) > 0);
    assert_eq!(streamed.text(), "streamed answer, in pieces");
    for response in [call, streamed_call] {
        assert_eq!(response.text(), "calling");
        assert_eq!(response.finish_reason(), Some(FinishReason::ToolCalls));
        let calls: Vec<_> = response.tool_calls().collect();
        assert_eq!(calls.len(), 1, "{response:?}");
        assert_eq!(calls[0].function.name.as_str(), "reply");
        assert_eq!(serde_json::Value::Object(calls[0].function.arguments.clone()), json!({"text": "hi"}));
    }
}

#[tokio::test]
async fn openai_chat_completions_client_reads_the_fake() {
    install_tls();
    let server = FakeLlmServer::start().await;
    script(&server);
    let model = OpenAIConfig::new("sk-test").with_base_url(server.openai_base_url()).client().chat("gpt-test");

    let plain = model.call(request()).await.unwrap();
    let call = model.call(request()).await.unwrap();
    let streamed = model.stream(request()).unwrap().finish().await.unwrap();
    let streamed_call = model.stream(request()).unwrap().finish().await.unwrap();
    check([plain, call, streamed, streamed_call]);

    let requests = server.requests();
    assert!(requests.iter().all(|request| request.wire == Wire::OpenAi));
    assert_eq!(requests[0].last_user_text().as_deref(), Some("hello there"));
    assert_eq!(requests[0].system_text().as_deref(), Some("be brief"));
    assert_eq!(requests[0].tool_names(), vec!["reply"]);
    assert!(!requests[0].stream && requests[2].stream);
}

#[tokio::test]
async fn anthropic_messages_client_reads_the_fake() {
    install_tls();
    let server = FakeLlmServer::start().await;
    script(&server);
    let model = AnthropicConfig::new("sk-ant-test")
        .with_base_url(server.anthropic_base_url())
        .client()
        .completion("claude-test");

    let plain = model.call(request()).await.unwrap();
    let call = model.call(request()).await.unwrap();
    let streamed = model.stream(request()).unwrap().finish().await.unwrap();
    let streamed_call = model.stream(request()).unwrap().finish().await.unwrap();
    check([plain, call, streamed, streamed_call]);

    let requests = server.requests();
    assert!(requests.iter().all(|request| request.wire == Wire::Anthropic));
    assert_eq!(requests[0].last_user_text().as_deref(), Some("hello there"));
    assert_eq!(requests[0].system_text().as_deref(), Some("be brief"));
    assert_eq!(requests[0].tool_names(), vec!["reply"]);
    assert!(!requests[0].stream && requests[2].stream);
}

#[tokio::test]
async fn clients_see_scripted_failures_as_errors() {
    install_tls();
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::status(429));
    server.push(FakeReply::garbage("{\"unexpected\": true"));
    let model = OpenAIConfig::new("sk-test").with_base_url(server.openai_base_url()).client().chat("gpt-test");
    assert!(model.call(request()).await.is_err());
    assert!(model.call(request()).await.is_err());
    assert!(model.call(request()).await.is_err(), "an exhausted script must fail");
}

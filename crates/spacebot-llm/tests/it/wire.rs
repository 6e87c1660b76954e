//! What goes over each wire on `complete()`: plain text, tool calls, and a tool-call round trip,
//! checked on the body the fake server received.

use serde_json::{Value, json};

use spacebot_core::{ChatMessage, ChatRequest, ImagePart, LanguageModel, ToolCall};
use spacebot_llm::ProviderKind;
use spacebot_testing::{FakeLlmServer, FakeReply, Wire};

use crate::support::{KINDS, hello, init, messages, model, reply_tool};

#[tokio::test]
async fn plain_text_on_both_wires() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::text("hi there").with_usage(11, 3));
        let model = model(&server, kind);
        assert_eq!(model.name(), "fake/fake-model");

        let answer = model.complete(hello()).await.expect("an answer");
        assert_eq!(answer.content, "hi there", "{kind}");
        assert!(answer.tool_calls.is_empty());
        assert_eq!((answer.usage.input_tokens, answer.usage.output_tokens), (11, 3), "{kind}");

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert!(!request.stream);
        assert_eq!(request.model(), Some("fake-model"));
        assert_eq!(request.system_text().as_deref(), Some("You are terse."));
        assert_eq!(request.last_user_text().as_deref(), Some("hello"));
        assert_eq!(request.body["max_tokens"], json!(256), "{kind}: {}", request.body);
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(request.wire, Wire::OpenAi);
                assert_eq!(request.path, "/v1/chat/completions");
                assert_eq!(request.header("authorization"), Some("Bearer test-key"));
                // The system prompt travels as the first message on Chat Completions.
                assert_eq!(messages(&request.body)[0]["role"], "system");
            }
            _ => {
                assert_eq!(request.wire, Wire::Anthropic);
                assert_eq!(request.path, "/v1/messages");
                assert_eq!(request.header("x-api-key"), Some("test-key"));
                assert!(request.header("anthropic-version").is_some());
                // Anthropic takes the system prompt beside the messages.
                assert!(messages(&request.body).iter().all(|message| message["role"] != "system"));
            }
        }
    }
}

#[tokio::test]
async fn request_settings_reach_the_body() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::text("ok"));
        let mut request = hello().with_max_tokens(42);
        request.temperature = Some(0.25);
        model(&server, kind).complete(request).await.expect("an answer");
        let body = &server.requests()[0].body;
        assert_eq!(body["max_tokens"], json!(42), "{kind}: {body}");
        assert_eq!(body["temperature"], json!(0.25), "{kind}: {body}");
    }
}

#[tokio::test]
async fn tool_call_with_arguments_on_both_wires() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::tool_call("reply", json!({"text": "hi", "n": 2})));
        let request = hello().with_tools(vec![reply_tool()]);

        let answer = model(&server, kind).complete(request).await.expect("an answer");
        assert_eq!(answer.content, "", "{kind}");
        assert_eq!(answer.tool_calls.len(), 1, "{kind}");
        let call = &answer.tool_calls[0];
        assert_eq!(call.name, "reply");
        assert_eq!(call.arguments, json!({"text": "hi", "n": 2}));
        assert!(!call.id.is_empty());

        let request = server.last_request().expect("a request");
        assert_eq!(request.tool_names(), vec!["reply"], "{kind}");
        let tool = &request.body["tools"][0];
        let (description, schema) = match kind {
            ProviderKind::OpenAi => (&tool["function"]["description"], &tool["function"]["parameters"]),
            _ => (&tool["description"], &tool["input_schema"]),
        };
        assert_eq!(description, "Send a message to the conversation.", "{kind}: {tool}");
        assert_eq!(schema["properties"]["text"]["type"], "string", "{kind}: {tool}");
        // Fine-grained tool input streaming is not requested (complete calls are all we use).
        assert!(tool.get("eager_input_streaming").is_none(), "{kind}: {tool}");
    }
}

/// The first turn's tool call goes back with its result; the second request must carry both,
/// spelled the way each wire wants them.
#[tokio::test]
async fn tool_call_round_trip_on_both_wires() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::text_and_tool_call("Adding.", "add", json!({"a": 2, "b": 3})));
        server.push(FakeReply::text("2 + 3 = 5"));
        let model = model(&server, kind);

        let mut history = vec![ChatMessage::user("what is 2 + 3?")];
        let add = spacebot_core::ToolSpec::new(
            "add",
            "Adds two numbers.",
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}),
        );
        let first = model
            .complete(ChatRequest::new("Use tools.", history.clone()).with_tools(vec![add.clone()]))
            .await
            .expect("the first answer");
        assert_eq!(first.content, "Adding.", "{kind}");
        let call: ToolCall = first.tool_calls[0].clone();
        history.push(ChatMessage::assistant_with_calls(first.content.clone(), first.tool_calls.clone()));
        history.push(ChatMessage::tool_result(call.id.clone(), "add", "5"));

        let second = model
            .complete(ChatRequest::new("Use tools.", history).with_tools(vec![add]))
            .await
            .expect("the second answer");
        assert_eq!(second.content, "2 + 3 = 5");

        let body = &server.requests()[1].body;
        let sent = messages(body);
        match kind {
            ProviderKind::OpenAi => {
                // system, user, assistant with tool_calls, tool result.
                assert_eq!(sent.len(), 4, "{body:#}");
                let assistant = &sent[2];
                assert_eq!(assistant["role"], "assistant");
                assert_eq!(assistant["content"], "Adding.", "{body:#}");
                let sent_call = &assistant["tool_calls"][0];
                assert_eq!(sent_call["id"], json!(call.id));
                assert_eq!(sent_call["type"], "function");
                assert_eq!(sent_call["function"]["name"], "add");
                let arguments: Value =
                    serde_json::from_str(sent_call["function"]["arguments"].as_str().expect("string arguments"))
                        .expect("JSON arguments");
                assert_eq!(arguments, json!({"a": 2, "b": 3}));
                let result = &sent[3];
                assert_eq!(result["role"], "tool", "{body:#}");
                assert_eq!(result["tool_call_id"], json!(call.id));
                assert_eq!(result["content"], "5");
            }
            _ => {
                // user, assistant with text + tool_use, user with tool_result.
                assert_eq!(sent.len(), 3, "{body:#}");
                let assistant = &sent[1];
                assert_eq!(assistant["role"], "assistant");
                let blocks = assistant["content"].as_array().expect("content blocks");
                assert_eq!(blocks[0]["type"], "text", "{body:#}");
                assert_eq!(blocks[0]["text"], "Adding.");
                assert_eq!(blocks[1]["type"], "tool_use");
                assert_eq!(blocks[1]["id"], json!(call.id));
                assert_eq!(blocks[1]["name"], "add");
                assert_eq!(blocks[1]["input"], json!({"a": 2, "b": 3}));
                let user = &sent[2];
                assert_eq!(user["role"], "user");
                let result = &user["content"][0];
                assert_eq!(result["type"], "tool_result", "{body:#}");
                assert_eq!(result["tool_use_id"], json!(call.id));
                let text = match &result["content"] {
                    Value::String(text) => text.clone(),
                    blocks => blocks[0]["text"].as_str().unwrap_or_default().to_owned(),
                };
                assert_eq!(text, "5", "{body:#}");
            }
        }
    }
}

/// Several results of one turn share the single user turn Anthropic requires after it.
#[tokio::test]
async fn parallel_tool_results_share_one_anthropic_user_turn() {
    init();
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("done"));
    let history = vec![
        ChatMessage::user("two things"),
        ChatMessage::assistant_with_calls(
            "",
            vec![
                ToolCall::new("toolu_a", "reply", json!({"text": "one"})),
                ToolCall::new("toolu_b", "reply", json!({"text": "two"})),
            ],
        ),
        ChatMessage::tool_result("toolu_a", "reply", "sent"),
        ChatMessage::tool_result("toolu_b", "reply", "sent"),
    ];
    let request = ChatRequest::new("", history).with_tools(vec![reply_tool()]);
    model(&server, ProviderKind::Anthropic).complete(request).await.expect("an answer");

    let body = &server.requests()[0].body;
    let sent = messages(body);
    assert_eq!(sent.len(), 3, "{body:#}");
    let results = sent[2]["content"].as_array().expect("blocks");
    let ids: Vec<&Value> = results.iter().map(|block| &block["tool_use_id"]).collect();
    assert_eq!(ids, [&json!("toolu_a"), &json!("toolu_b")]);
    // An assistant turn of tool calls only carries no empty text block.
    let assistant = sent[1]["content"].as_array().expect("blocks");
    assert!(assistant.iter().all(|block| block["type"] == "tool_use"), "{body:#}");
}

#[tokio::test]
async fn images_reach_the_model_on_both_wires() {
    init();
    // A 1x1 PNG's first bytes are enough: the wire carries bytes, it doesn't decode them.
    let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d];
    let jpeg: Vec<u8> = vec![0xff, 0xd8, 0xff, 0xe0];
    for kind in KINDS {
        for streamed in [false, true] {
            let server = FakeLlmServer::start().await;
            server.push(FakeReply::text("a cat"));
            let model = model(&server, kind);
            let request = ChatRequest::new(
                "You are terse.",
                vec![ChatMessage::user_with_images(
                    "what is in these?",
                    vec![ImagePart::new("image/png", png.clone()), ImagePart::new("image/jpeg", jpeg.clone())],
                )],
            );
            if streamed {
                let events = crate::support::collect(model.stream(request).await.expect("a stream")).await;
                assert_eq!(crate::support::streamed_text(&events), "a cat", "{kind}");
            } else {
                assert_eq!(model.complete(request).await.expect("an answer").content, "a cat", "{kind}");
            }
            let recorded = &server.requests()[0];
            assert_eq!(
                recorded.images(),
                vec![
                    ("image/png".to_owned(), "iVBORw0KGgoAAAAN".to_owned()),
                    ("image/jpeg".to_owned(), "/9j/4A==".to_owned())
                ],
                "{kind} (streamed: {streamed}): {}",
                recorded.body
            );
            assert_eq!(recorded.last_user_text().as_deref(), Some("what is in these?"), "{kind}");
            // The text comes first, then the images, in one user turn.
            let parts = messages(&recorded.body).last().expect("a user message")["content"].clone();
            let kinds: Vec<&str> = parts.as_array().expect("parts").iter().filter_map(|p| p["type"].as_str()).collect();
            let image = if kind == ProviderKind::OpenAi { "image_url" } else { "image" };
            assert_eq!(kinds, vec!["text", image, image], "{kind}");
        }
    }
}

//! Tests of the fake model server over real HTTP, with a plain HTTP client (dev-only test support).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, Wire};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn openai_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text}
        ],
        "tools": [{"type": "function", "function": {"name": "reply", "description": "", "parameters": {}}}]
    })
}

fn anthropic_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 100,
        "stream": stream,
        "system": "be kind",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "tools": [{"name": "reply", "description": "", "input_schema": {"type": "object"}}]
    })
}

async fn post_openai(server: &FakeLlmServer, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", server.openai_base_url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .expect("the fake server answers")
}

async fn post_anthropic(server: &FakeLlmServer, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", server.anthropic_base_url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("the fake server answers")
}

/// One server-sent event: its `event:` name (if any) and its `data:` payload.
#[derive(Debug)]
struct Sse {
    event: Option<String>,
    data: String,
}

async fn read_events(response: reqwest::Response) -> Vec<Sse> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.expect("a complete event stream");
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    data.push_str(payload);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Sse { event, data }
        })
        .collect()
}

#[tokio::test]
async fn openai_plain_text() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("hello there"));

    let response = post_openai(&server, &openai_body("hi", false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-test");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello there");
    assert!(choice["message"].get("tool_calls").is_none());
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.wire, Wire::OpenAi);
    assert_eq!(request.path, "/v1/chat/completions");
    assert!(!request.stream);
    assert_eq!(request.header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(request.last_user_text().as_deref(), Some("hi"));
    assert_eq!(request.system_text().as_deref(), Some("be brief"));
    assert_eq!(request.tool_names(), vec!["reply"]);
    assert!(!request.has_tool_result());
}

#[tokio::test]
async fn openai_tool_call() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::tool_call("reply", json!({"text": "hi", "n": 2})).with_usage(7, 3));

    let body: Value = post_openai(&server, &openai_body("hi", false)).await.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "reply");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"text": "hi", "n": 2}));
    assert_eq!(body["usage"], json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}));
}

#[tokio::test]
async fn openai_streaming_reassembles() {
    let server = FakeLlmServer::start().await;
    let arguments = json!({"query": "cats and dogs", "limit": 5});
    server.push(FakeReply::text_and_tool_call("checking my memory now", "memory_recall", arguments.clone()));

    let events = read_events(post_openai(&server, &openai_body("hi", true)).await).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|event| serde_json::from_str(&event.data).unwrap()).collect();

    let mut text = String::new();
    let mut text_deltas = 0;
    let (mut id, mut name, mut args, mut arg_fragments) = (None, None, String::new(), 0);
    let mut finish = None;
    let mut usage = None;
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
        if !chunk["usage"].is_null() {
            usage = Some(chunk["usage"].clone());
        }
        let Some(choice) = chunk["choices"].get(0) else { continue };
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
        let delta = &choice["delta"];
        if let Some(piece) = delta["content"].as_str().filter(|piece| !piece.is_empty()) {
            text.push_str(piece);
            text_deltas += 1;
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            assert_eq!(call["index"], 0);
            if let Some(call_id) = call["id"].as_str() {
                id = Some(call_id.to_owned());
                name = call["function"]["name"].as_str().map(str::to_owned);
            }
            if let Some(fragment) = call["function"]["arguments"].as_str().filter(|fragment| !fragment.is_empty()) {
                args.push_str(fragment);
                arg_fragments += 1;
            }
        }
    }
    assert_eq!(text, "checking my memory now");
    assert!(text_deltas > 1, "text came in one delta");
    assert!(id.unwrap().starts_with("call_"));
    assert_eq!(name.as_deref(), Some("memory_recall"));
    assert!(arg_fragments > 1, "arguments came in one fragment");
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), arguments);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(usage.unwrap()["total_tokens"].as_u64().unwrap() > 0);
    assert!(server.requests()[0].stream);
}

#[tokio::test]
async fn anthropic_plain() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text_and_tool_call("let me reply", "reply", json!({"text": "hi"})));
    server.push(FakeReply::text("just text"));

    let body: Value = post_anthropic(&server, &anthropic_body("hello", false)).await.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0], json!({"type": "text", "text": "let me reply"}));
    let tool_use = &body["content"][1];
    assert_eq!(tool_use["type"], "tool_use");
    assert!(tool_use["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(tool_use["name"], "reply");
    assert_eq!(tool_use["input"], json!({"text": "hi"}));
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let body: Value = post_anthropic(&server, &anthropic_body("again", false)).await.json().await.unwrap();
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["content"], json!([{"type": "text", "text": "just text"}]));

    let request = server.last_request().unwrap();
    assert_eq!(request.wire, Wire::Anthropic);
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(request.last_user_text().as_deref(), Some("again"));
    assert_eq!(request.system_text().as_deref(), Some("be kind"));
    assert_eq!(request.tool_names(), vec!["reply"]);
}

#[tokio::test]
async fn anthropic_streaming_reassembles() {
    let server = FakeLlmServer::start().await;
    let input = json!({"command": "ls -la", "timeout": 30});
    server.push(FakeReply::text_and_tool_call("running it", "shell", input.clone()));

    let events = read_events(post_anthropic(&server, &anthropic_body("hi", true)).await).await;
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let (mut stop_reason, mut output_tokens, mut deltas) = (None, None, 0);
    for event in &events {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        let name = event.event.as_deref().unwrap();
        assert_eq!(data["type"], name, "event name and data type differ");
        match name {
            "message_start" => {
                assert_eq!(data["message"]["type"], "message");
                assert_eq!(data["message"]["role"], "assistant");
                assert_eq!(data["message"]["model"], "claude-test");
            }
            "content_block_start" => {
                assert_eq!(data["index"].as_u64().unwrap() as usize, blocks.len());
                blocks.push(data["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => partial[index].push_str(delta["text"].as_str().unwrap()),
                    "input_json_delta" => partial[index].push_str(delta["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
                deltas += 1;
            }
            "message_delta" => {
                stop_reason = data["delta"]["stop_reason"].as_str().map(str::to_owned);
                output_tokens = data["usage"]["output_tokens"].as_u64();
            }
            "content_block_stop" | "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(events.first().unwrap().event.as_deref(), Some("message_start"));
    assert_eq!(events.last().unwrap().event.as_deref(), Some("message_stop"));
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["type"], "text");
    assert_eq!(partial[0], "running it");
    assert_eq!(blocks[1]["type"], "tool_use");
    assert_eq!(blocks[1]["name"], "shell");
    assert!(blocks[1]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(serde_json::from_str::<Value>(&partial[1]).unwrap(), input);
    assert!(deltas > 3, "too few deltas: {deltas}");
    assert_eq!(stop_reason.as_deref(), Some("tool_use"));
    assert!(output_tokens.unwrap() > 0);
}

#[tokio::test]
async fn rate_limits_with_retry_after() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::status(429));
    server.push(FakeReply::status(429).with_header("retry-after", "7").with_message("slow down"));

    let response = post_openai(&server, &openai_body("hi", false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "0");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let response = post_anthropic(&server, &anthropic_body("hi", true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers().get_all("retry-after").iter().count(), 1);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
}

#[tokio::test]
async fn server_errors_and_garbage() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::status(500));
    server.push(FakeReply::status(401));
    server.push(FakeReply::garbage("<html>not json</html>"));

    let response = post_openai(&server, &openai_body("hi", false)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "server_error");

    let response = post_anthropic(&server, &anthropic_body("hi", false)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "authentication_error");

    let response = post_openai(&server, &openai_body("hi", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "<html>not json</html>");
}

#[tokio::test]
async fn exhausted_script_answers_500_and_records() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("only one"));
    assert_eq!(post_openai(&server, &openai_body("first", false)).await.status(), 200);

    let response = post_openai(&server, &openai_body("second", false)).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("fake model: script exhausted"), "{body}");

    let response = post_anthropic(&server, &anthropic_body("third", true)).await;
    assert_eq!(response.status(), 500);
    assert!(response.text().await.unwrap().contains("fake model: script exhausted"));

    let texts: Vec<_> = server.requests().iter().map(|request| request.last_user_text().unwrap()).collect();
    assert_eq!(texts, vec!["first", "second", "third"]);
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn responder_answers_when_the_script_is_empty() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("scripted first"));
    server.respond_with(|request| match request.last_user_text() {
        Some(text) => FakeReply::text(format!("echo: {text}")),
        None => FakeReply::status(400),
    });

    let answer = |body: Value| body["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert_eq!(answer(post_openai(&server, &openai_body("a", false)).await.json().await.unwrap()), "scripted first");
    assert_eq!(answer(post_openai(&server, &openai_body("b", false)).await.json().await.unwrap()), "echo: b");
    let body: Value = post_anthropic(&server, &anthropic_body("c", false)).await.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "echo: c");
}

#[tokio::test]
async fn rejects_a_body_that_is_not_json_and_unknown_paths() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("kept for later"));
    let response =
        client().post(format!("{}/chat/completions", server.openai_base_url())).body("not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(server.request_count(), 1);

    let response = client().post(format!("{}/v1/embeddings", server.anthropic_base_url())).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(server.pending_replies(), 1);
}

#[tokio::test]
async fn delays_before_answering() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("late").delay(Duration::from_millis(150)));
    let started = Instant::now();
    assert_eq!(post_openai(&server, &openai_body("hi", false)).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn paces_streamed_events() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::text("one two three").chunk_delay(Duration::from_millis(20)));
    let started = Instant::now();
    let events = read_events(post_openai(&server, &openai_body("hi", true)).await).await;
    assert!(started.elapsed() >= Duration::from_millis(20) * events.len() as u32);
}

#[tokio::test]
async fn hangs_until_the_client_gives_up_or_the_server_stops() {
    let server = FakeLlmServer::start().await;
    server.push(FakeReply::hang());
    server.push(FakeReply::text("after the hang"));
    server.push(FakeReply::hang());

    let impatient =
        client().post(format!("{}/chat/completions", server.openai_base_url())).timeout(Duration::from_millis(200));
    let error = impatient.json(&openai_body("hi", false)).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");

    assert_eq!(post_openai(&server, &openai_body("hi", false)).await.status(), 200);

    let url = format!("{}/chat/completions", server.openai_base_url());
    let waiting = tokio::spawn(async move { client().post(url).json(&openai_body("hi", false)).send().await });
    while server.request_count() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server);
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("dropping the server ends hangs");
    assert!(outcome.unwrap().is_err(), "a hanging request got an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_many_requests_at_once() {
    let server = FakeLlmServer::start().await;
    server.respond_with(|request| {
        FakeReply::text(format!("re: {}", request.last_user_text().unwrap_or_default()))
            .delay(Duration::from_millis(100))
    });
    let client = client();
    let url = format!("{}/chat/completions", server.openai_base_url());
    let started = Instant::now();
    let calls = (0..60).map(|index| {
        let request = client.post(&url).json(&openai_body(&format!("question {index}"), index % 2 == 0)).send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            (index, response.text().await.unwrap())
        }
    });
    let answers = futures::future::join_all(calls).await;
    for (index, body) in answers {
        let expected = if index % 2 == 0 {
            format!("\"content\":\"{index}\"")
        } else {
            format!("\"content\":\"re: question {index}\"")
        };
        assert!(body.contains(&expected), "answer {index} is not its own: {body}");
    }
    assert_eq!(server.request_count(), 60);
    assert!(started.elapsed() < Duration::from_secs(5), "requests were served one at a time");
}

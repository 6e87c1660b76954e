//! `stream()`: text deltas, complete tool calls, a final `Done`, and retries before the first
//! event.

use std::time::Duration;

use serde_json::json;

use spacebot_core::{LanguageModel, LlmErrorKind, StreamEvent};
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::support::{KINDS, collect, config, hello, init, model, model_with, reply_tool, streamed_text};

#[tokio::test]
async fn streams_text_deltas_then_done() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::text("one two three four").with_usage(9, 4));
        let stream = model(&server, kind).stream(hello()).await.expect("a stream");
        let events = collect(stream).await;

        let deltas = events.iter().filter(|event| matches!(event, Ok(StreamEvent::TextDelta(_)))).count();
        assert!(deltas > 1, "{kind}: the text should arrive in pieces: {events:?}");
        assert_eq!(streamed_text(&events), "one two three four", "{kind}");
        let Some(Ok(StreamEvent::Done(done))) = events.last() else {
            panic!("{kind}: the stream should end with Done: {events:?}");
        };
        assert_eq!(done.content, "one two three four");
        assert!(done.tool_calls.is_empty());
        assert_eq!((done.usage.input_tokens, done.usage.output_tokens), (9, 4), "{kind}");
        assert!(server.requests()[0].stream, "{kind}: the request should ask for a stream");
    }
}

#[tokio::test]
async fn streams_text_and_a_complete_tool_call() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::text_and_tool_call("Replying now.", "reply", json!({"text": "hi", "n": 7})));
        let request = hello().with_tools(vec![reply_tool()]);
        let events = collect(model(&server, kind).stream(request).await.expect("a stream")).await;

        assert_eq!(streamed_text(&events), "Replying now.", "{kind}");
        let calls: Vec<_> = events
            .iter()
            .filter_map(|event| match event {
                Ok(StreamEvent::ToolCall(call)) => Some(call.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 1, "{kind}: {events:?}");
        assert_eq!(calls[0].name, "reply");
        assert_eq!(calls[0].arguments, json!({"text": "hi", "n": 7}), "{kind}");
        let Some(Ok(StreamEvent::Done(done))) = events.last() else {
            panic!("{kind}: the stream should end with Done: {events:?}");
        };
        assert_eq!(done.content, "Replying now.");
        assert_eq!(done.tool_calls, calls, "{kind}: Done repeats the streamed calls");
        assert!(events.iter().all(Result::is_ok), "{kind}: {events:?}");
    }
}

#[tokio::test]
async fn a_stream_is_retried_until_its_first_event() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(429));
        server.push(FakeReply::status(503));
        server.push(FakeReply::text("third time"));
        let events = collect(model(&server, kind).stream(hello()).await.expect("a stream")).await;
        assert_eq!(streamed_text(&events), "third time", "{kind}");
        assert_eq!(server.request_count(), 3, "{kind}");
    }
}

#[tokio::test]
async fn a_stream_fails_at_once_on_bad_credentials() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(401));
        let error = model(&server, kind).stream(hello()).await.err().expect("an error");
        assert_eq!(error.kind(), LlmErrorKind::Auth, "{kind}: {error}");
        assert_eq!(server.request_count(), 1, "{kind}");
    }
}

#[tokio::test]
async fn a_stream_that_goes_quiet_times_out() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::hang());
        server.push(FakeReply::hang());
        let config = config(&server, kind).with_timeout(Duration::from_millis(300)).with_max_retries(1);
        let error = model_with(config).stream(hello()).await.err().expect("an error");
        assert_eq!(error.kind(), LlmErrorKind::Timeout, "{kind}: {error}");
        assert_eq!(server.request_count(), 2, "{kind}: a timeout is retried");
    }
}

/// The stream timeout bounds the silence between events, not the whole answer: a slow but
/// steady stream that takes longer than the timeout in total still completes.
#[tokio::test]
async fn a_slow_but_steady_stream_is_not_cut_off() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        let text = "one two three four five six seven eight nine ten eleven twelve";
        server.push(FakeReply::text(text).chunk_delay(Duration::from_millis(50)));
        let config = config(&server, kind).with_timeout(Duration::from_millis(400)).with_max_retries(0);
        let started = std::time::Instant::now();
        let events = collect(model_with(config).stream(hello()).await.expect("a stream")).await;
        assert!(started.elapsed() > Duration::from_millis(400), "{kind}: the whole stream outlasts the timeout");
        assert_eq!(streamed_text(&events), text, "{kind}: {events:?}");
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Done(_)))), "{kind}: {events:?}");
    }
}

#[tokio::test]
async fn a_server_that_answers_a_stream_whole_is_asked_for_whole_answers_from_then_on() {
    init();
    let server = FakeLlmServer::start().await;
    // A server that can't stream: JSON whatever the request asks for.
    let whole = |text: &str| {
        let body = json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]});
        FakeReply::garbage(body.to_string())
    };
    server.push(whole("ignored: the answer to a streamed request"));
    server.push(whole("first"));
    server.push(whole("second"));
    let model = model(&server, KINDS[0]);
    for expected in ["first", "second"] {
        let events = collect(model.stream(hello()).await.expect("answered without streaming")).await;
        assert_eq!(streamed_text(&events), expected, "{events:?}");
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Done(done))) if done.content == expected));
    }
    let streamed: Vec<bool> = server.requests().iter().map(|request| request.stream).collect();
    assert_eq!(streamed, [true, false, false], "asked once for a stream, then for whole answers");
}

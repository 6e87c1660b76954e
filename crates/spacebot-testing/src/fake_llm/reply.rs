//! What the fake model server answers (dev-only test support).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use serde_json::Value;

/// One scripted answer of the fake model server, rendered in whichever wire format the request
/// used, streamed when the request asked for it.
///
/// ```
/// use std::time::Duration;
/// use spacebot_testing::FakeReply;
///
/// let replies = [
///     FakeReply::text("hello"),
///     FakeReply::tool_call("reply", serde_json::json!({"text": "hi"})),
///     FakeReply::status(429).with_header("retry-after", "2"),
///     FakeReply::text("slow").delay(Duration::from_millis(50)),
/// ];
/// # drop(replies);
/// ```
#[derive(Debug, Clone)]
pub struct FakeReply {
    pub(super) kind: ReplyKind,
    pub(super) delay: Option<Duration>,
    pub(super) chunk_delay: Option<Duration>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) usage: Option<(u64, u64)>,
}

/// What a [`FakeReply`] does.
#[derive(Debug, Clone)]
pub(super) enum ReplyKind {
    /// A successful answer: text and tool calls `(name, arguments)`.
    Answer { text: String, calls: Vec<(String, Value)> },
    /// An HTTP error with a provider-style error body.
    Status { code: u16, message: Option<String> },
    /// 200 with this body, labelled JSON.
    Garbage(String),
    /// Never answers.
    Hang,
}

impl FakeReply {
    fn of(kind: ReplyKind) -> Self {
        Self { kind, delay: None, chunk_delay: None, headers: Vec::new(), usage: None }
    }

    /// A text answer (`finish_reason: "stop"` / `stop_reason: "end_turn"`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::of(ReplyKind::Answer { text: text.into(), calls: Vec::new() })
    }

    /// An answer with one tool call and no text. The call id is generated per server
    /// (`call_N_0` for OpenAI, `toolu_N_0` for Anthropic).
    pub fn tool_call(name: &str, arguments: Value) -> Self {
        Self::tool_calls(vec![(name.to_owned(), arguments)])
    }

    /// An answer with several tool calls `(name, arguments)`, in order, and no text.
    pub fn tool_calls(calls: Vec<(String, Value)>) -> Self {
        Self::of(ReplyKind::Answer { text: String::new(), calls })
    }

    /// An answer with text followed by one tool call.
    pub fn text_and_tool_call(text: impl Into<String>, name: &str, arguments: Value) -> Self {
        Self::of(ReplyKind::Answer { text: text.into(), calls: vec![(name.to_owned(), arguments)] })
    }

    /// An HTTP error with the provider's JSON error body (`{"error": {...}}` for OpenAI,
    /// `{"type": "error", "error": {...}}` for Anthropic). A 429 carries `retry-after: 0` unless
    /// [`with_header`](Self::with_header) says otherwise. A code that is not a valid status
    /// answers 500.
    pub fn status(code: u16) -> Self {
        let reply = Self::of(ReplyKind::Status { code, message: None });
        if code == 429 { reply.with_header("retry-after", "0") } else { reply }
    }

    /// A 200 answer whose body is `body` verbatim, labelled `application/json`: for testing how
    /// clients treat answers that are not JSON or have the wrong shape.
    pub fn garbage(body: impl Into<String>) -> Self {
        Self::of(ReplyKind::Garbage(body.into()))
    }

    /// Never answers: the request stays open until the client gives up or the server is dropped.
    pub fn hang() -> Self {
        Self::of(ReplyKind::Hang)
    }

    /// Waits this long (on the tokio clock) before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Waits this long before each server-sent event of a streamed answer, so a test can watch a
    /// reply arrive piece by piece.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = Some(delay);
        self
    }

    /// Sets a response header, replacing one of the same name (such as the default
    /// `retry-after` of a 429).
    ///
    /// # Panics
    ///
    /// When the name or value is not a valid HTTP header name or value: a bug in the test.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = match HeaderName::try_from(name) {
            Ok(name) => name,
            Err(error) => panic!("FakeReply::with_header: invalid header name {name:?}: {error}"),
        };
        let value = match HeaderValue::try_from(value) {
            Ok(value) => value,
            Err(error) => panic!("FakeReply::with_header: invalid value {value:?} for {name}: {error}"),
        };
        self.headers.retain(|(existing, _)| *existing != name);
        self.headers.push((name, value));
        self
    }

    /// Sets the error message of a [`status`](Self::status) reply (the default names the code).
    /// No effect on other replies.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        if let ReplyKind::Status { message: slot, .. } = &mut self.kind {
            *slot = Some(message.into());
        }
        self
    }

    /// Sets the reported token usage. The default estimates four bytes per token of the request
    /// body and the answer.
    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.usage = Some((input_tokens, output_tokens));
        self
    }
}

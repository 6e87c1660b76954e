//! An in-process scripted [`LanguageModel`] for unit tests (dev-only test support).
//!
//! [`ScriptedModel`] answers each request with the next [`ScriptedTurn`] of its script: text, tool
//! calls, an [`LlmError`] of a chosen kind, after an optional delay, or never. When the script is
//! empty a responder closure answers, and without one the request fails with
//! [`LlmErrorKind::InvalidResponse`] "scripted model: script exhausted". Delays run on the tokio
//! clock, so tests with a paused clock advance through them instantly.
//!
//! ```
//! # async fn example() {
//! use std::sync::Arc;
//! use spacebot_core::{ChatMessage, ChatRequest, LanguageModel};
//! use spacebot_testing::{ScriptedModel, ScriptedTurn};
//!
//! let model = Arc::new(ScriptedModel::new());
//! model.push(ScriptedTurn::tool_call("reply", serde_json::json!({"text": "hi"})));
//! let dyn_model: Arc<dyn LanguageModel> = model.clone();
//! let response = dyn_model.complete(ChatRequest::new("system", vec![ChatMessage::user("hello")])).await;
//! assert_eq!(response.map(|r| r.tool_calls[0].name.clone()).ok().as_deref(), Some("reply"));
//! assert_eq!(model.request_count(), 1);
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use spacebot_core::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, LanguageModel, LlmError, LlmErrorKind, StreamEvent, ToolCall,
    Usage,
};

use crate::chunk;

/// What answers a request when the script is empty.
type Responder = Arc<dyn Fn(&ChatRequest) -> ScriptedTurn + Send + Sync>;

/// An in-process [`LanguageModel`] that answers from a script. Share it as an `Arc` to keep
/// scripting and inspecting it while the code under test holds it as `Arc<dyn LanguageModel>`.
pub struct ScriptedModel {
    name: String,
    context_window: usize,
    script: Mutex<VecDeque<ScriptedTurn>>,
    responder: Mutex<Option<Responder>>,
    requests: Mutex<Vec<ChatRequest>>,
    /// Numbers generated tool-call ids.
    calls: AtomicU64,
}

/// One scripted answer of a [`ScriptedModel`].
#[derive(Debug, Clone)]
pub struct ScriptedTurn {
    outcome: Outcome,
    delay: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// Answer this; tool calls with an empty id get a generated one.
    Answer { response: ChatResponse, usage_set: bool },
    /// Fail with an error of this kind.
    Fail { kind: LlmErrorKind, message: Option<String>, retry_after: Option<Duration> },
    /// Never answer.
    Hang,
}

impl ScriptedTurn {
    fn answer(response: ChatResponse) -> Self {
        Self { outcome: Outcome::Answer { response, usage_set: false }, delay: None }
    }

    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self::answer(ChatResponse::text(text))
    }

    /// One tool call and no text. The call id is generated per model: `call_1`, `call_2`, ...
    pub fn tool_call(name: &str, arguments: Value) -> Self {
        Self::tool_calls(vec![(name.to_owned(), arguments)])
    }

    /// Several tool calls `(name, arguments)`, in order, and no text.
    pub fn tool_calls(calls: Vec<(String, Value)>) -> Self {
        Self::text_and_tool_calls(String::new(), calls)
    }

    /// Text followed by one tool call.
    pub fn text_and_tool_call(text: impl Into<String>, name: &str, arguments: Value) -> Self {
        Self::text_and_tool_calls(text, vec![(name.to_owned(), arguments)])
    }

    /// Text followed by several tool calls.
    pub fn text_and_tool_calls(text: impl Into<String>, calls: Vec<(String, Value)>) -> Self {
        let calls = calls.into_iter().map(|(name, arguments)| ToolCall::new(String::new(), name, arguments)).collect();
        Self::answer(ChatResponse::text(text).with_tool_calls(calls))
    }

    /// This exact response (tool calls with an empty id still get a generated one). Its usage is
    /// kept as given.
    pub fn response(response: ChatResponse) -> Self {
        Self { outcome: Outcome::Answer { response, usage_set: true }, delay: None }
    }

    /// Fails with an [`LlmError`] of this kind; the message defaults to one naming the kind.
    pub fn error(kind: LlmErrorKind) -> Self {
        Self { outcome: Outcome::Fail { kind, message: None, retry_after: None }, delay: None }
    }

    /// Never answers: the call stays pending until the caller drops it (a timeout, a cancel).
    pub fn hang() -> Self {
        Self { outcome: Outcome::Hang, delay: None }
    }

    /// Waits this long (on the tokio clock) before answering or failing.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the message of an [`error`](Self::error) turn. No effect on other turns.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        if let Outcome::Fail { message: slot, .. } = &mut self.outcome {
            *slot = Some(message.into());
        }
        self
    }

    /// Sets the retry-after of an [`error`](Self::error) turn. No effect on other turns.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        if let Outcome::Fail { retry_after: slot, .. } = &mut self.outcome {
            *slot = Some(retry_after);
        }
        self
    }

    /// Sets the reported usage of an answer. The default estimates four characters per token of
    /// the request and the answer. No effect on other turns.
    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        if let Outcome::Answer { response, usage_set } = &mut self.outcome {
            response.usage = Usage::new(input_tokens, output_tokens);
            *usage_set = true;
        }
        self
    }
}

impl ScriptedModel {
    /// A model named `scripted/model` with an empty script and a 128k-token context window.
    pub fn new() -> Self {
        Self {
            name: "scripted/model".to_owned(),
            context_window: 128_000,
            script: Mutex::default(),
            responder: Mutex::default(),
            requests: Mutex::default(),
            calls: AtomicU64::new(0),
        }
    }

    /// Sets the context window it reports, to test compaction thresholds.
    pub fn with_context_window(mut self, tokens: usize) -> Self {
        self.context_window = tokens;
        self
    }

    /// Sets the name it reports (default `scripted/model`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Appends a turn to the script; each request takes the oldest.
    pub fn push(&self, turn: ScriptedTurn) {
        lock(&self.script).push_back(turn);
    }

    /// Appends several turns to the script, in order.
    pub fn push_all(&self, turns: impl IntoIterator<Item = ScriptedTurn>) {
        lock(&self.script).extend(turns);
    }

    /// Answers requests with `responder` whenever the script is empty.
    pub fn respond_with(&self, responder: impl Fn(&ChatRequest) -> ScriptedTurn + Send + Sync + 'static) {
        *lock(&self.responder) = Some(Arc::new(responder));
    }

    /// Every request received so far, in order, failed ones included.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<ChatRequest> {
        lock(&self.requests).last().cloned()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.requests).len()
    }

    /// How many scripted turns are still queued.
    pub fn pending_turns(&self) -> usize {
        lock(&self.script).len()
    }

    /// The next turn: the script's oldest, else the responder's, else none.
    fn next_turn(&self, request: &ChatRequest) -> Option<ScriptedTurn> {
        if let Some(turn) = lock(&self.script).pop_front() {
            return Some(turn);
        }
        let responder = lock(&self.responder).clone();
        responder.map(|responder| responder(request))
    }

    /// Plays a turn: waits its delay, then answers, fails or hangs.
    async fn play(&self, turn: ScriptedTurn, request_chars: usize) -> Result<ChatResponse, LlmError> {
        if let Some(delay) = turn.delay {
            tokio::time::sleep(delay).await;
        }
        match turn.outcome {
            Outcome::Answer { mut response, usage_set } => {
                for call in response.tool_calls.iter_mut().filter(|call| call.id.is_empty()) {
                    call.id = format!("call_{}", self.calls.fetch_add(1, Ordering::Relaxed) + 1);
                }
                if !usage_set {
                    let output_chars =
                        ChatMessage::assistant_with_calls(&response.content, response.tool_calls.clone()).char_len();
                    response.usage = Usage::new(estimate_tokens(request_chars), estimate_tokens(output_chars));
                }
                Ok(response)
            }
            Outcome::Fail { kind, message, retry_after } => {
                let message = message.unwrap_or_else(|| format!("scripted model: scripted {kind:?} error"));
                let error = LlmError::new(kind, message);
                Err(match retry_after {
                    Some(retry_after) => error.with_retry_after(retry_after),
                    None => error,
                })
            }
            Outcome::Hang => std::future::pending().await,
        }
    }
}

impl Default for ScriptedModel {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("name", &self.name)
            .field("requests", &self.request_count())
            .field("pending_turns", &self.pending_turns())
            .finish()
    }
}

#[async_trait]
impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let request_chars = request.system.len() + request.messages.iter().map(ChatMessage::char_len).sum::<usize>();
        lock(&self.requests).push(request.clone());
        match self.next_turn(&request) {
            Some(turn) => self.play(turn, request_chars).await,
            None => Err(LlmError::new(
                LlmErrorKind::InvalidResponse,
                format!("scripted model: script exhausted (request {})", self.request_count()),
            )),
        }
    }

    /// Streams the answer as word-sized text deltas, then each tool call as it would stream from
    /// a provider (its start, its argument JSON in fragments, the complete call), then `Done`.
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let response = self.complete(request).await?;
        let mut events: Vec<Result<StreamEvent, LlmError>> =
            chunk::words(&response.content).map(|piece| Ok(StreamEvent::TextDelta(piece.to_owned()))).collect();
        for (call, tool_call) in response.tool_calls.iter().enumerate() {
            // The text, when there is any, is the answer's first part.
            let call = call + usize::from(!response.content.is_empty());
            events.push(Ok(StreamEvent::ToolCallStarted { call, name: tool_call.name.clone() }));
            let arguments = tool_call.arguments.to_string();
            events.extend(
                chunk::fragments(&arguments, chunk::ARGUMENT_FRAGMENTS)
                    .into_iter()
                    .map(|json| Ok(StreamEvent::ToolArguments { call, json: json.to_owned() })),
            );
            events.push(Ok(StreamEvent::ToolCall(tool_call.clone())));
        }
        events.push(Ok(StreamEvent::Done(response)));
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

/// Four characters per token, at least one.
fn estimate_tokens(chars: usize) -> u64 {
    u64::try_from(chars / 4).unwrap_or(u64::MAX).max(1)
}

/// Locks a mutex, carrying on after a panic elsewhere: the data (a script, a log) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use serde_json::json;

    use super::*;

    fn request(text: &str) -> ChatRequest {
        ChatRequest::new("be brief", vec![ChatMessage::user(text)])
    }

    #[tokio::test]
    async fn answers_in_script_order_and_records_requests() {
        let model = ScriptedModel::new();
        model.push_all([ScriptedTurn::text("one"), ScriptedTurn::tool_call("reply", json!({"text": "two"}))]);

        let first = model.complete(request("a")).await.unwrap();
        assert_eq!(first.content, "one");
        assert!(first.usage.input_tokens >= 1);
        let second = model.complete(request("b")).await.unwrap();
        assert_eq!(second.content, "");
        assert_eq!(second.tool_calls, vec![ToolCall::new("call_1", "reply", json!({"text": "two"}))]);

        let error = model.complete(request("c")).await.unwrap_err();
        assert_eq!(error.kind(), LlmErrorKind::InvalidResponse);
        assert!(error.to_string().contains("scripted model: script exhausted"), "{error}");

        assert_eq!(model.request_count(), 3);
        assert_eq!(model.requests()[1].messages, vec![ChatMessage::user("b")]);
        assert_eq!(model.name(), "scripted/model");
    }

    #[tokio::test]
    async fn fails_with_the_scripted_kind() {
        let model = ScriptedModel::new();
        model.push(ScriptedTurn::error(LlmErrorKind::RateLimited).with_retry_after(Duration::from_secs(3)));
        let error = model.complete(request("a")).await.unwrap_err();
        assert_eq!(error.kind(), LlmErrorKind::RateLimited);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn responder_answers_when_the_script_is_empty() {
        let model = ScriptedModel::new();
        model.push(ScriptedTurn::text("scripted"));
        model.respond_with(|request| match request.messages.last() {
            Some(ChatMessage::User { content, .. }) => ScriptedTurn::text(format!("echo {content}")),
            _ => ScriptedTurn::text("?"),
        });
        assert_eq!(model.complete(request("x")).await.unwrap().content, "scripted");
        assert_eq!(model.complete(request("y")).await.unwrap().content, "echo y");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_run_on_the_paused_clock_and_hangs_never_answer() {
        let model = ScriptedModel::new();
        model.push(ScriptedTurn::text("late").delay(Duration::from_secs(600)));
        model.push(ScriptedTurn::hang());
        let started = tokio::time::Instant::now();
        assert_eq!(model.complete(request("a")).await.unwrap().content, "late");
        assert!(started.elapsed() >= Duration::from_secs(600));

        let hung = tokio::time::timeout(Duration::from_secs(3600), model.complete(request("b"))).await;
        assert!(hung.is_err(), "a hanging turn answered");
    }

    #[tokio::test]
    async fn streams_words_then_calls_then_done() {
        let model = ScriptedModel::new().with_context_window(1000);
        model.push(ScriptedTurn::text_and_tool_call("let me check", "memory_recall", json!({"query": "cats"})));
        let events: Vec<StreamEvent> =
            model.stream(request("a")).await.unwrap().map(|event| event.unwrap()).collect().await;
        let text: String = events
            .iter()
            .filter_map(|event| match event {
                StreamEvent::TextDelta(piece) => Some(piece.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "let me check");
        assert!(matches!(&events[3], StreamEvent::ToolCallStarted { call: 1, name } if name == "memory_recall"));
        let arguments: String = events
            .iter()
            .filter_map(|event| match event {
                StreamEvent::ToolArguments { call: 1, json } => Some(json.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&arguments).unwrap(), json!({"query": "cats"}));
        let [.., call, done] = events.as_slice() else { panic!("{events:?}") };
        assert!(matches!(call, StreamEvent::ToolCall(call) if call.name == "memory_recall"), "{events:?}");
        assert!(matches!(done, StreamEvent::Done(response) if response.content == "let me check"));
        assert_eq!(model.context_window(), 1000);
    }
}

//! The OpenAI-compatible API: `POST /v1/chat/completions` and `GET /v1/models`, so any OpenAI
//! client (the official SDKs, LangChain, Open WebUI) can talk to an agent.
//!
//! `model` names the agent. The request's last `user` message becomes one inbound message of the
//! conversation `openai:<name>`, where the name is the `X-Spacebot-Conversation` header, else the
//! request's `user` field, else `default`. The agent keeps the conversation's history itself, as
//! on every other platform, so the earlier messages a client sends along (as OpenAI clients do)
//! are not read again: send only the new message, or everything, the answer is the same.
//!
//! Replies reach the waiting request through [`OpenAiAdapter`], the adapter that owns `openai:`
//! conversations: everything the turn answering the message sends is collected until the turn
//! ends (the channel's end-of-turn status), and a control command (`/status`, `/stop`, ...)
//! ends with its answer. With `stream: true` a reply leaves as `chat.completion.chunk` events
//! while the model writes it (the runtime's `reply_delta` events, token by token when the
//! provider streams), then `data: [DONE]`. A reply that comes after the
//! request has given up (the client went away, or [`ApiConfig::reply_timeout`] passed) is not
//! lost: it is in the conversation, like every reply.
//!
//! In a fleet, the request is answered by the member running the conversation: it is sent there
//! when that is another member (`forward.rs`).
//!
//! Errors are OpenAI's JSON shape, `{"error": {"message", "type", "param", "code"}}`.
//!
//! [`ApiConfig::reply_timeout`]: crate::ApiConfig::reply_timeout

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use spacebot_core::{
    AdapterError, AgentId, ControlCommand, ConversationId, InboundMessage, InboundStream, MessageId, MessagingAdapter,
    OutboundResponse, RuntimeEvent, Sender, StatusUpdate, Usage,
};

use crate::access::{Caller, Scope};
use crate::api::{AppState, read_json_body, required_name, required_string};
use crate::error::ApiError;
use crate::forward;

/// The runtime key (and message source) of the OpenAI-compatible API.
pub const OPENAI_ADAPTER: &str = "openai";

/// Longest conversation name taken from the header or the `user` field, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// The adapter that owns `openai:` conversations: it hands each reply to the request waiting
/// for it. Register the same value with the runtime and in [`ApiConfig::with_openai`].
///
/// [`ApiConfig::with_openai`]: crate::ApiConfig::with_openai
#[derive(Debug, Clone, Default)]
pub struct OpenAiAdapter {
    waiting: Arc<Waiting>,
}

/// The requests waiting for replies, by the id of the message each submitted. Locked only to
/// insert, remove or clone a sender, never across an await.
#[derive(Debug, Default)]
struct Waiting(Mutex<HashMap<MessageId, mpsc::UnboundedSender<Piece>>>);

/// What the channel sent in answer to one message.
#[derive(Debug)]
enum Piece {
    Text(String),
    /// The turn ended.
    End,
}

impl OpenAiAdapter {
    /// A new adapter with nobody waiting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts waiting for the replies to message `id`, until the returned guard is dropped.
    fn wait_for(&self, id: MessageId) -> (WaitGuard, mpsc::UnboundedReceiver<Piece>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.waiting.0.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), sender);
        (WaitGuard { waiting: Arc::clone(&self.waiting), id }, receiver)
    }
}

/// Stops waiting for a message's replies when the request ends, however it ends.
struct WaitGuard {
    waiting: Arc<Waiting>,
    id: MessageId,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.waiting.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

#[async_trait]
impl MessagingAdapter for OpenAiAdapter {
    fn name(&self) -> &str {
        OPENAI_ADAPTER
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        // Messages are submitted by the HTTP handler, which then waits for their replies.
        Ok(Box::pin(futures::stream::pending()))
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let piece = match response {
            OutboundResponse::Text { text } | OutboundResponse::ThreadReply { text, .. } => Piece::Text(text),
            OutboundResponse::Status { status: StatusUpdate::StopTyping } => Piece::End,
            OutboundResponse::File { .. } => {
                return Err(AdapterError::unsupported(
                    OPENAI_ADAPTER,
                    "a chat completion can't carry files; they stay in the agent's workspace",
                ));
            }
            // Reactions and typing have no place in a chat completion.
            _ => return Ok(()),
        };
        let sender = self.waiting.0.lock().unwrap_or_else(PoisonError::into_inner).get(&target.id).cloned();
        match sender {
            // A request that went away drops its receiver; the reply is in the conversation.
            Some(sender) => {
                let _ = sender.send(piece);
            }
            None if matches!(piece, Piece::Text(_)) => tracing::debug!(
                message = %target.id,
                "a reply to an OpenAI API request that no longer waits; it is in the conversation"
            ),
            None => {}
        }
        Ok(())
    }
}

/// An error in OpenAI's shape.
#[derive(Debug)]
pub(crate) struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl OpenAiError {
    fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or invalid API key: send the daemon's api.token as `Authorization: Bearer <token>`"
                .to_owned(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    fn unknown_model(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model '{model}' does not exist: models are the daemon's agents (GET /v1/models)"),
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    fn server(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind: "server_error", param: None, code: None }
    }
}

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        let kind = if status.is_server_error() {
            "server_error"
        } else if status == StatusCode::FORBIDDEN {
            "permission_error"
        } else {
            "invalid_request_error"
        };
        Self { status, message: error.to_string(), kind, param: None, code: None }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = %self.message, "OpenAI API request failed");
        }
        let body = json!({
            "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code }
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The bearer token check of the `/v1` routes, answering in OpenAI's error shape.
pub(crate) async fn require_key(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match Caller::identify(&state.config, request.headers()) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => OpenAiError::unauthorized().into_response(),
    }
}

/// `GET /v1/models`: one model per agent the caller may reach.
pub(crate) async fn models(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let data: Vec<Value> = state
        .runtime
        .agents()
        .iter()
        .filter(|agent| caller.reaches(agent))
        .map(|agent| json!({ "id": agent, "object": "model", "created": 0, "owned_by": "spacebot" }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<Value>,
    messages: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
}

/// A request, checked.
#[derive(Debug)]
struct Completion {
    agent: AgentId,
    text: String,
    conversation: String,
    sender: String,
    stream: bool,
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let Some(adapter) = state.config.openai.clone() else {
        return Err(OpenAiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "the OpenAI-compatible API is not enabled on this server",
        ));
    };
    let bytes = read_json_body(&headers, body, state.config.max_body_bytes).await?;
    let completion = parse(&bytes, &headers, state.config.max_text_bytes)?;
    if !state.runtime.has_agent(&completion.agent) || !caller.reaches(&completion.agent) {
        return Err(OpenAiError::unknown_model(completion.agent.as_str()));
    }
    caller.require(Scope::Webhook, &completion.agent)?;
    caller.may_speak_as(&completion.sender)?;
    let conversation = ConversationId::new(format!("{OPENAI_ADAPTER}:{}", completion.conversation));
    // In a fleet, the member running the conversation answers.
    let deadline = Instant::now() + state.config.reply_timeout;
    let path = "/v1/chat/completions";
    match forward::to_runner(&state.runtime, &completion.agent, &conversation, path, &headers, &bytes, deadline).await {
        Ok(Some(response)) => return Ok(response),
        Ok(None) => {}
        Err(error) => return Err(OpenAiError::server(StatusCode::SERVICE_UNAVAILABLE, error.to_string())),
    }
    let message =
        InboundMessage::text(OPENAI_ADAPTER, conversation, Sender::new(completion.sender.as_str()), completion.text)
            .with_agent(completion.agent.clone())
            .with_direct(true);
    // A control command is answered at once, without a turn (and so without an end of turn).
    let command = ControlCommand::parse(&message).is_some();
    // Waiting starts before the message is submitted, so no reply (nor the turn's end) can come
    // first.
    let (guard, replies) = adapter.wait_for(message.id.clone());
    let mut waiter = Waiter::new(guard, replies, state.runtime.subscribe(), message.id.clone());
    let id = state.runtime.submit(message).await.map_err(ApiError::from)?;
    let answer = Answer {
        id: format!("chatcmpl-{id}"),
        model: completion.agent.to_string(),
        created: chrono::Utc::now().timestamp(),
        command,
        deadline: Instant::now() + state.config.reply_timeout,
        timeout: state.config.reply_timeout,
    };
    if completion.stream {
        Ok(stream(answer, waiter.with_previews()).into_response())
    } else {
        let text = collect(&answer, &mut waiter).await?;
        Ok(Json(answer.completion(&text, waiter.usage())).into_response())
    }
}

fn parse(bytes: &[u8], headers: &HeaderMap, max_text_bytes: usize) -> Result<Completion, OpenAiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| OpenAiError::invalid(format!("invalid JSON body: {error}"), None))?;
    if !value.is_object() {
        return Err(OpenAiError::invalid("invalid JSON body: expected an object with `model` and `messages`", None));
    }
    let request: CompletionRequest = serde_json::from_value(value)
        .map_err(|error| OpenAiError::invalid(format!("invalid JSON body: {error}"), None))?;
    let model = required_string(request.model, "model", MAX_NAME_BYTES)
        .map_err(|error| OpenAiError::invalid(error.to_string(), Some("model")))?;
    let text = last_user_text(request.messages, max_text_bytes)?;
    let stream = match request.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => stream,
        Some(_) => return Err(OpenAiError::invalid("field `stream` must be a boolean", Some("stream"))),
    };
    let user = match request.user {
        None | Some(Value::Null) => None,
        some => Some(
            required_name(some, "user", MAX_NAME_BYTES)
                .map_err(|error| OpenAiError::invalid(error.to_string(), Some("user")))?,
        ),
    };
    let header = match headers.get("x-spacebot-conversation") {
        None => None,
        Some(value) => {
            let value = value.to_str().ok().map(str::trim).filter(|v| !v.is_empty() && v.len() <= MAX_NAME_BYTES);
            Some(value.ok_or_else(|| {
                OpenAiError::invalid(
                    format!(
                        "header `X-Spacebot-Conversation` must be visible ASCII text of 1 to {MAX_NAME_BYTES} bytes"
                    ),
                    None,
                )
            })?)
        }
    };
    let conversation = header.map(str::to_owned).or_else(|| user.clone()).unwrap_or_else(|| "default".to_owned());
    Ok(Completion {
        agent: AgentId::new(model),
        text,
        conversation,
        sender: user.unwrap_or_else(|| OPENAI_ADAPTER.to_owned()),
        stream,
    })
}

/// The text of the last `user` message: a string, or the `text` parts of a content array.
fn last_user_text(messages: Option<Value>, max_bytes: usize) -> Result<String, OpenAiError> {
    let invalid = |message: String| OpenAiError::invalid(message, Some("messages"));
    let messages = match messages {
        None | Some(Value::Null) => return Err(invalid("missing field `messages`".to_owned())),
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(invalid("field `messages` must be an array".to_owned())),
    };
    let Some(last) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
        return Err(invalid("`messages` holds no message with role `user`".to_owned()));
    };
    let text = match last.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect();
            texts.join("\n")
        }
        _ => {
            return Err(invalid(
                "the last `user` message's `content` must be a string or an array of parts".to_owned(),
            ));
        }
    };
    required_string(Some(Value::String(text)), "content", max_bytes)
        .map_err(|error| invalid(format!("the last `user` message's {error}")))
}

/// What a request knows to answer with.
struct Answer {
    id: String,
    model: String,
    created: i64,
    /// The message is a control command: its answer is the whole of it.
    command: bool,
    deadline: Instant,
    timeout: Duration,
}

impl Answer {
    fn completion(&self, text: &str, usage: Value) -> Value {
        json!({
            "usage": usage,
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": "stop",
            }],
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, usage: Value) -> Event {
        let chunk = json!({
            "usage": usage,
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        });
        Event::default().data(chunk.to_string())
    }

    fn timed_out(&self) -> OpenAiError {
        OpenAiError::server(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "agent '{}' did not finish answering within {} s; the reply will be in the conversation",
                self.model,
                self.timeout.as_secs()
            ),
        )
    }
}

/// How long, after the end of a turn, a request waits for the turn's event that carries its
/// token usage (it follows the end at once; a lagging event stream only costs the `usage`).
const USAGE_GRACE: Duration = Duration::from_secs(1);

/// What a request waits on: the replies the adapter hands over for its message, and the
/// runtime's events, whose `turn_finished` for the message ends the answer and carries its
/// usage, and (for a streamed answer) whose `reply_delta`s preview a reply as it is written.
///
/// It hands out the answer's content in pieces: whole replies joined by blank lines, or, with
/// previews, each reply as it is written and then what its preview had not shown yet.
struct Waiter {
    _guard: WaitGuard,
    replies: mpsc::UnboundedReceiver<Piece>,
    events: Option<broadcast::Receiver<RuntimeEvent>>,
    message: MessageId,
    /// Content ready to hand out.
    pending: VecDeque<String>,
    /// The end-of-turn status came; waiting for the usage now.
    ended: Option<Instant>,
    /// Nothing more will come.
    finished: bool,
    /// Some content was handed out (the next reply is set apart by a blank line).
    seen: bool,
    usage: Option<Usage>,
    /// Replies are previewed as they are written (a streamed answer).
    previews: bool,
    /// The preview of the reply being written that was handed out.
    shown: String,
    /// Its tentative text, held until the reply confirms it (content can't be taken back).
    held: String,
}

impl Waiter {
    fn new(
        guard: WaitGuard,
        replies: mpsc::UnboundedReceiver<Piece>,
        events: broadcast::Receiver<RuntimeEvent>,
        message: MessageId,
    ) -> Self {
        Self {
            _guard: guard,
            replies,
            events: Some(events),
            message,
            pending: VecDeque::new(),
            ended: None,
            finished: false,
            seen: false,
            usage: None,
            previews: false,
            shown: String::new(),
            held: String::new(),
        }
    }

    /// Hands out each reply as it is written (for a streamed answer).
    fn with_previews(mut self) -> Self {
        self.previews = true;
        self
    }

    /// The next piece of content, `None` once the answer is complete, or an error when time is
    /// up.
    async fn next(&mut self, answer: &Answer) -> Result<Option<String>, OpenAiError> {
        loop {
            if let Some(text) = self.pending.pop_front() {
                return Ok(Some(text));
            }
            // A control command's answer is the whole of it: no turn, no end, no usage.
            if self.finished || (answer.command && self.seen) {
                return Ok(None);
            }
            let deadline = match self.ended {
                // A deadline already past fires at once: the answer is complete without usage.
                Some(at) => (at + USAGE_GRACE).min(answer.deadline),
                None => answer.deadline,
            };
            tokio::select! {
                piece = self.replies.recv(), if self.ended.is_none() => match piece {
                    Some(Piece::Text(text)) => {
                        // The reply's preview was published before the reply was handed over:
                        // read it first, and what followed the reply after it.
                        let mut later = Vec::new();
                        while let Some(receiver) = &mut self.events {
                            match receiver.try_recv() {
                                Ok(event @ (RuntimeEvent::ReplyDelta { .. } | RuntimeEvent::ReplyDiscarded { .. })) => {
                                    self.on_event(event);
                                }
                                Ok(event) => later.push(event),
                                Err(broadcast::error::TryRecvError::Empty) => break,
                                Err(_) => self.events = None,
                            }
                        }
                        self.on_reply(text);
                        for event in later {
                            self.on_event(event);
                        }
                    }
                    // The adapter holds no sender once the guard is gone; before that, it can't close.
                    Some(Piece::End) | None => self.ended = Some(Instant::now()),
                },
                event = recv_event(&mut self.events) => match event {
                    Some(event) => self.on_event(event),
                    // No events to follow (closed, or fell behind): the end-of-turn status decides.
                    None => self.events = None,
                },
                () = tokio::time::sleep_until(deadline) => {
                    if self.ended.is_some() {
                        self.finished = true;
                    } else {
                        return Err(answer.timed_out());
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::TurnFinished { message: Some(message), usage, .. } if message == self.message => {
                self.usage = Some(usage);
                // Everything the turn sent was handed over before its end was published.
                while let Ok(piece) = self.replies.try_recv() {
                    if let Piece::Text(text) = piece {
                        self.on_reply(text);
                    }
                }
                self.finished = true;
            }
            RuntimeEvent::ReplyDelta { message: Some(message), text, tentative, .. }
                if self.previews && message == self.message =>
            {
                if tentative {
                    self.held.push_str(&text);
                } else {
                    let piece = if self.shown.is_empty() { self.apart(text.clone()) } else { text.clone() };
                    self.shown.push_str(&text);
                    self.hand_out(piece);
                }
            }
            RuntimeEvent::ReplyDiscarded { message: Some(message), .. } if message == self.message => {
                // A preview already handed out stays; the reply that comes is set apart from it.
                self.shown.clear();
                self.held.clear();
            }
            _ => {}
        }
    }

    /// A reply: what its preview did not show, or the whole of it.
    fn on_reply(&mut self, text: String) {
        let shown = std::mem::take(&mut self.shown);
        self.held.clear();
        let rest = match text.trim_start().strip_prefix(shown.as_str()) {
            Some(rest) if !shown.is_empty() => rest.to_owned(),
            _ => {
                if !shown.is_empty() {
                    tracing::debug!(message = %self.message, "a reply differs from its preview; sent whole after it");
                }
                self.apart(text)
            }
        };
        self.hand_out(rest);
    }

    /// `text` set apart from content handed out before, by a blank line.
    fn apart(&self, text: String) -> String {
        if self.seen { format!("\n\n{text}") } else { text }
    }

    fn hand_out(&mut self, piece: String) {
        if !piece.is_empty() {
            self.seen = true;
            self.pending.push_back(piece);
        }
    }

    /// `usage` in OpenAI's shape, when the turn's event said it.
    fn usage(&self) -> Value {
        match self.usage {
            Some(usage) => json!({
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            }),
            None => Value::Null,
        }
    }
}

/// The next runtime event, or `None` when there are no more to follow: the stream closed, or
/// this reader fell behind and may have missed the one it waits for. Never resolves without a
/// receiver, so a `select!` waits on its other branches.
async fn recv_event(events: &mut Option<broadcast::Receiver<RuntimeEvent>>) -> Option<RuntimeEvent> {
    let Some(receiver) = events else { return std::future::pending().await };
    receiver.recv().await.ok()
}

/// Every reply of the turn, joined by blank lines.
async fn collect(answer: &Answer, waiter: &mut Waiter) -> Result<String, OpenAiError> {
    let mut text = String::new();
    while let Some(piece) = waiter.next(answer).await? {
        text.push_str(&piece);
    }
    Ok(text)
}

/// Where a streamed answer is.
enum Streaming {
    /// The role chunk has not been sent yet.
    Start,
    /// Content is flowing.
    Replies,
    /// The final chunk went out; `[DONE]` is next.
    Done,
    Finished,
}

/// The answer as server-sent events: a role chunk, one content chunk per reply, a final chunk
/// with `finish_reason` (and `usage`), then `[DONE]`. A timeout ends it with an error event and
/// `[DONE]`.
fn stream(answer: Answer, waiter: Waiter) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = (answer, waiter, Streaming::Start);
    let events = futures::stream::unfold(state, |(answer, mut waiter, step)| async move {
        let (event, next) = match step {
            Streaming::Start => {
                (answer.chunk(json!({ "role": "assistant", "content": "" }), None, Value::Null), Streaming::Replies)
            }
            Streaming::Replies => match waiter.next(&answer).await {
                Ok(Some(text)) => (answer.chunk(json!({ "content": text }), None, Value::Null), Streaming::Replies),
                Ok(None) => (answer.chunk(json!({}), Some("stop"), waiter.usage()), Streaming::Done),
                Err(error) => {
                    let body = json!({ "error": { "message": error.message, "type": error.kind, "param": null, "code": null } });
                    (Event::default().data(body.to_string()), Streaming::Done)
                }
            },
            Streaming::Done => (Event::default().data("[DONE]"), Streaming::Finished),
            Streaming::Finished => return None,
        };
        Some((Ok(event), (answer, waiter, next)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<Completion, OpenAiError> {
        parse(body.to_string().as_bytes(), &HeaderMap::new(), 1024)
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_does_not_finish_in_time_is_a_504_naming_the_wait() {
        let timeout = Duration::from_secs(300);
        let answer = answer("chatcmpl-1");
        let adapter = OpenAiAdapter::new();
        let message = MessageId::new("m1");
        let (guard, receiver) = adapter.wait_for(message.clone());
        let (events, events_receiver) = broadcast::channel(8);
        let mut waiter = Waiter::new(guard, receiver, events_receiver, message.clone());
        let target = InboundMessage::text(OPENAI_ADAPTER, "openai:u", Sender::new("u"), "hi").with_id(message.clone());
        adapter.send(&target, OutboundResponse::text("partial")).await.expect("delivered");
        let started = Instant::now();
        let error = collect(&answer, &mut waiter).await.expect_err("times out");
        assert_eq!(started.elapsed(), timeout);
        assert_eq!(error.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(error.message.contains("300 s"), "{}", error.message);
        drop(events);
    }

    /// An answer to a request for agent `main`, waiting up to 300 s.
    fn answer(id: &str) -> Answer {
        Answer {
            id: id.to_owned(),
            model: "main".to_owned(),
            created: 0,
            command: false,
            deadline: Instant::now() + Duration::from_secs(300),
            timeout: Duration::from_secs(300),
        }
    }

    /// The message `id` a request submitted to `openai:u`.
    fn submitted(id: &str) -> (MessageId, InboundMessage) {
        let message = MessageId::new(id);
        let target = InboundMessage::text(OPENAI_ADAPTER, "openai:u", Sender::new("u"), "hi").with_id(message.clone());
        (message, target)
    }

    #[tokio::test(start_paused = true)]
    async fn the_turns_end_carries_the_usage_and_an_unseen_one_costs_only_the_usage() {
        let answer = answer("chatcmpl-1");
        let adapter = OpenAiAdapter::new();
        let (message, target) = submitted("m1");
        let (events, events_receiver) = broadcast::channel(8);
        let (guard, receiver) = adapter.wait_for(message.clone());
        let mut waiter = Waiter::new(guard, receiver, events_receiver, message.clone());
        adapter.send(&target, OutboundResponse::text("one")).await.expect("delivered");
        adapter.send(&target, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await.expect("delivered");
        // Another turn's end first, then this one's.
        for answered in [MessageId::new("other"), message.clone()] {
            events
                .send(RuntimeEvent::TurnFinished {
                    agent: AgentId::new("main"),
                    conversation: ConversationId::new("openai:u"),
                    outcome: spacebot_core::TurnOutcome::Replied,
                    message: Some(answered),
                    usage: Usage::new(120, 7),
                })
                .expect("a receiver");
        }
        assert_eq!(collect(&answer, &mut waiter).await.expect("answered"), "one");
        assert_eq!(waiter.usage(), json!({ "prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127 }));

        // No event for the turn (the reader fell behind): the answer ends a moment after the turn.
        let (guard, receiver) = adapter.wait_for(message.clone());
        let mut waiter = Waiter::new(guard, receiver, events.subscribe(), message.clone());
        adapter.send(&target, OutboundResponse::text("two")).await.expect("delivered");
        adapter.send(&target, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await.expect("delivered");
        let started = Instant::now();
        assert_eq!(collect(&answer, &mut waiter).await.expect("answered"), "two");
        assert_eq!(started.elapsed(), USAGE_GRACE);
        assert_eq!(waiter.usage(), Value::Null);
    }

    #[tokio::test(start_paused = true)]
    async fn a_streamed_answer_shows_a_reply_as_it_is_written_and_then_only_the_rest() {
        let answer = answer("chatcmpl-2");
        let adapter = OpenAiAdapter::new();
        let (message, target) = submitted("m2");
        let (events, events_receiver) = broadcast::channel(64);
        let (guard, receiver) = adapter.wait_for(message.clone());
        let mut waiter = Waiter::new(guard, receiver, events_receiver, message.clone()).with_previews();
        let (agent, conversation) = (AgentId::new("main"), ConversationId::new("openai:u"));
        let delta = |text: &str, tentative: bool| RuntimeEvent::ReplyDelta {
            agent: agent.clone(),
            conversation: conversation.clone(),
            message: Some(message.clone()),
            text: text.to_owned(),
            tentative,
        };
        let discarded = RuntimeEvent::ReplyDiscarded {
            agent: agent.clone(),
            conversation: conversation.clone(),
            message: Some(message.clone()),
        };
        let sequence = [
            // Tentative text, taken back: never shown.
            delta("Let me check", true),
            discarded.clone(),
            // A reply written, then sent whole: only what the preview had not shown follows.
            delta("The answer", false),
            delta(" is 42", false),
            // Another message's preview is not this answer's.
            RuntimeEvent::ReplyDelta {
                agent: agent.clone(),
                conversation: conversation.clone(),
                message: Some(MessageId::new("other")),
                text: "not mine".to_owned(),
                tentative: false,
            },
        ];
        for event in sequence {
            events.send(event).expect("a receiver");
        }
        assert_eq!(waiter.next(&answer).await.expect("a piece").as_deref(), Some("The answer"));
        assert_eq!(waiter.next(&answer).await.expect("a piece").as_deref(), Some(" is 42"));
        adapter.send(&target, OutboundResponse::text("The answer is 42.")).await.expect("delivered");
        assert_eq!(waiter.next(&answer).await.expect("a piece").as_deref(), Some("."));
        // A preview taken back after it was shown stays; the next reply is set apart from it.
        events.send(delta("Oops", false)).expect("a receiver");
        events.send(discarded).expect("a receiver");
        adapter.send(&target, OutboundResponse::text("Sorry, that failed.")).await.expect("delivered");
        adapter.send(&target, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await.expect("delivered");
        events
            .send(RuntimeEvent::TurnFinished {
                agent,
                conversation,
                outcome: spacebot_core::TurnOutcome::Failed,
                message: Some(message.clone()),
                usage: Usage::new(10, 2),
            })
            .expect("a receiver");
        let rest = collect(&answer, &mut waiter).await.expect("answered");
        assert_eq!(rest, "\n\nOops\n\nSorry, that failed.");
        assert_eq!(waiter.usage()["total_tokens"], 12);
    }

    #[test]
    fn the_last_user_message_is_the_one_taken() {
        let completion = request(json!({
            "model": "main",
            "messages": [
                { "role": "system", "content": "be brief" },
                { "role": "user", "content": "first" },
                { "role": "assistant", "content": "ok" },
                { "role": "user", "content": [{ "type": "text", "text": "second" }, { "type": "image_url" }] },
            ],
            "user": "alice",
        }))
        .expect("valid");
        assert_eq!(completion.text, "second");
        assert_eq!(completion.conversation, "alice");
        assert_eq!(completion.sender, "alice");
        assert!(!completion.stream);
    }

    #[test]
    fn the_conversation_header_wins_over_the_user_field() {
        let mut headers = HeaderMap::new();
        headers.insert("x-spacebot-conversation", header::HeaderValue::from_static("team-chat"));
        let body = json!({ "model": "main", "messages": [{ "role": "user", "content": "hi" }], "user": "bob" });
        let completion = parse(body.to_string().as_bytes(), &headers, 1024).expect("valid");
        assert_eq!(completion.conversation, "team-chat");
        let body = json!({ "model": "main", "messages": [{ "role": "user", "content": "hi" }] });
        assert_eq!(parse(body.to_string().as_bytes(), &HeaderMap::new(), 1024).expect("valid").conversation, "default");
    }

    #[test]
    fn bad_requests_name_the_parameter_at_fault() {
        let cases = [
            (json!({ "messages": [{ "role": "user", "content": "hi" }] }), Some("model")),
            (json!({ "model": "main" }), Some("messages")),
            (json!({ "model": "main", "messages": [{ "role": "system", "content": "x" }] }), Some("messages")),
            (json!({ "model": "main", "messages": [{ "role": "user", "content": "\u{200B}" }] }), Some("messages")),
            (json!({ "model": "main", "messages": [{ "role": "user", "content": 3 }] }), Some("messages")),
            (
                json!({ "model": "main", "messages": [{ "role": "user", "content": "hi" }], "stream": "yes" }),
                Some("stream"),
            ),
            (json!([1, 2]), None),
        ];
        for (body, param) in cases {
            let error = request(body.clone()).expect_err("refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error.param, param, "{body}: {}", error.message);
        }
    }
}

//! Routes, handlers and the server loop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use spacebot_core::{
    AgentId, ConversationId, ConversationLog, CronJobs, InboundMessage, MemoryStore, ProcessId, RuntimeHandle, Sender,
    StoredMessage, TerminalState, UsageLedger,
};

use crate::access::{Caller, Scope, ScopedToken};
use crate::adapter::WEBHOOK_ADAPTER;
use crate::cron;
use crate::error::ApiError;
use crate::memories;
use crate::metrics::{self, Metrics};
use crate::openai::{self, OpenAiAdapter};
use crate::portal;
use crate::serve::BodyReadTimeout;
use crate::stored_tokens::StoredTokens;
use crate::usage::{self, ModelPrice};

/// Settings of the HTTP API.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// The admin token: when set (or when scoped tokens are), every route but `/health` needs
    /// `Authorization: Bearer <token>`, and this one may do everything.
    pub token: Option<String>,
    /// Tokens with limited rights.
    pub tokens: Vec<Arc<ScopedToken>>,
    /// Scoped tokens kept (as digests) in the data dir's token file, followed as it changes.
    pub stored_tokens: Option<StoredTokens>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted message text, in bytes.
    pub max_text_bytes: usize,
    /// The adapter of the OpenAI-compatible API (`/v1`); without it those routes answer `503`.
    pub openai: Option<OpenAiAdapter>,
    /// How long a `/v1/chat/completions` request waits for the agent to finish answering
    /// before it gives up with `504` (the reply still lands in the conversation).
    pub reply_timeout: Duration,
    /// The metrics `GET /metrics` serves; without them it answers `404`.
    pub metrics: Option<Metrics>,
    /// Where `GET /api/usage` reads the model usage; without it that route answers `404`.
    pub usage: Option<Arc<dyn UsageLedger>>,
    /// The prices `GET /api/usage` costs tokens at, by model (`provider/model`).
    pub prices: BTreeMap<String, ModelPrice>,
    /// The agents' memories `GET /api/agents/{agent}/memories` searches.
    pub memories: BTreeMap<AgentId, Arc<dyn MemoryStore>>,
    /// The cron jobs `/api/agents/{agent}/cron` manages; without them those routes answer `404`.
    pub cron: Option<Arc<dyn CronJobs>>,
    /// What `GET /api/mcp` answers (the MCP servers' state and tools, read when asked); without
    /// it that route answers `404`.
    pub mcp_status: Option<StatusSource>,
    /// `GET /api/config`: the configuration the daemon runs with, secrets already redacted by
    /// whoever set it (the daemon).
    pub effective_config: Option<serde_json::Value>,
}

/// A JSON document read each time a route is asked (the MCP servers' state, say): the daemon
/// fills it in, so this crate needs no type of the part it describes.
pub type StatusSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token: None,
            tokens: Vec::new(),
            stored_tokens: None,
            max_body_bytes: 256 * 1024,
            max_text_bytes: 64 * 1024,
            openai: None,
            reply_timeout: Duration::from_secs(300),
            metrics: None,
            usage: None,
            cron: None,
            prices: BTreeMap::new(),
            memories: BTreeMap::new(),
            mcp_status: None,
            effective_config: None,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("tokens", &self.tokens)
            .field("stored_tokens", &self.stored_tokens)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_text_bytes", &self.max_text_bytes)
            .field("openai", &self.openai.is_some())
            .field("reply_timeout", &self.reply_timeout)
            .field("metrics", &self.metrics.is_some())
            .field("usage", &self.usage.is_some())
            .field("cron", &self.cron.is_some())
            .field("prices", &self.prices)
            .field("memories", &self.memories.keys().collect::<Vec<_>>())
            .field("mcp_status", &self.mcp_status.is_some())
            .finish()
    }
}

impl ApiConfig {
    /// Sets the bearer token.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Also accepts the tokens of the data dir's token file, as it changes.
    pub fn with_stored_tokens(mut self, tokens: StoredTokens) -> Self {
        self.stored_tokens = Some(tokens);
        self
    }

    /// Adds tokens with limited rights.
    pub fn with_scoped_tokens(mut self, tokens: impl IntoIterator<Item = ScopedToken>) -> Self {
        self.tokens.extend(tokens.into_iter().map(Arc::new));
        self
    }

    /// Sets the body limit.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Serves the OpenAI-compatible API through `adapter`, which must also be registered with
    /// the runtime (it delivers the replies).
    pub fn with_openai(mut self, adapter: OpenAiAdapter) -> Self {
        self.openai = Some(adapter);
        self
    }

    /// Serves `metrics` on `GET /metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves `GET /api/usage` from `ledger`, costed at `prices`.
    pub fn with_usage(mut self, ledger: Arc<dyn UsageLedger>, prices: BTreeMap<String, ModelPrice>) -> Self {
        self.usage = Some(ledger);
        self.prices = prices;
        self
    }

    /// Serves `GET /api/agents/{agent}/memories` from these stores.
    pub fn with_memories(mut self, memories: impl IntoIterator<Item = (AgentId, Arc<dyn MemoryStore>)>) -> Self {
        self.memories.extend(memories);
        self
    }

    /// Serves `/api/agents/{agent}/cron` from `cron`.
    pub fn with_cron(mut self, cron: Arc<dyn CronJobs>) -> Self {
        self.cron = Some(cron);
        self
    }

    /// Serves `GET /api/mcp` from `source`.
    pub fn with_mcp_status(mut self, source: StatusSource) -> Self {
        self.mcp_status = Some(source);
        self
    }

    /// Serves `GET /api/config` (daemon-wide `admin` scope): `config` must carry no secret; the
    /// daemon passes its effective configuration with every key and token redacted.
    pub fn with_effective_config(mut self, config: serde_json::Value) -> Self {
        self.effective_config = Some(config);
        self
    }

    /// Sets how long a chat completion waits for the agent's answer.
    pub fn with_reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }
}

/// What every handler reads. Cloned for each route when the router is built and for each request
/// (axum hands each handler and middleware its own `State`), so the config is shared, not copied:
/// it holds the effective config, the tokens and the prices.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) runtime: RuntimeHandle,
    pub(crate) config: Arc<ApiConfig>,
    started: Instant,
}

/// The API's routes over a running runtime.
pub fn router(runtime: RuntimeHandle, config: ApiConfig) -> Router {
    let state = AppState { runtime, config: Arc::new(config), started: Instant::now() };
    let protected = Router::new()
        .route("/webhook/{agent}", post(webhook))
        .route("/api/agents/{agent}/conversations/{conversation}/messages", get(messages))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/metrics", get(serve_metrics))
        .route("/api/usage", get(usage::usage))
        .route("/api/agents/{agent}/memories", get(memories::search))
        .route("/api/agents/{agent}/memories/{id}", get(memories::show).delete(memories::forget))
        .route("/api/processes/{process}/cancel", post(cancel_process))
        .route("/api/agents/{agent}/cron", get(cron::list).post(cron::create))
        .route("/api/agents/{agent}/cron/{id}", get(cron::show).delete(cron::delete))
        .route("/api/agents/{agent}/cron/{id}/run", post(cron::run))
        .route("/api/mcp", get(mcp_status))
        .route("/api/config", get(effective_config))
        .route("/api/turns", get(recent_turns))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let openai = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route_layer(middleware::from_fn_with_state(state.clone(), openai::require_key));
    let routes = Router::new()
        .route("/health", get(health))
        .route("/", get(portal::index))
        .route("/portal/app.js", get(portal::script))
        .route("/portal/style.css", get(portal::style))
        .merge(protected)
        .merge(openai)
        .fallback(not_found)
        .with_state(state);
    // Around the whole router rather than each route, so the `405` it answers itself, with its
    // `Allow` header, passes through too.
    Router::new().fallback_service(routes).layer(middleware::from_fn(json_errors))
}

/// `POST /api/processes/{process}/cancel`: ends a running branch or worker as cancelled (the
/// portal's cancel button), with the `admin` scope for its agent.
async fn cancel_process(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(process): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = ProcessId::new(process.as_str());
    let registry = state.runtime.processes();
    let Some(info) = registry.list().into_iter().find(|info| info.process == id) else {
        return Err(ApiError::NotFound(format!("no running process `{process}`")));
    };
    caller.require(Scope::Admin, &info.agent)?;
    if !registry.end(&id, TerminalState::Cancelled, "cancelled through the API") {
        return Err(ApiError::NotFound(format!("process `{process}` ended before it could be cancelled")));
    }
    Ok(Json(json!({ "process": process, "agent": info.agent, "cancelled": true })))
}

/// `GET /api/mcp`: the MCP servers' state and tools (daemon-wide, like `/api/usage`).
async fn mcp_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_daemon_wide()?;
    match &state.config.mcp_status {
        Some(source) => Ok(Json(source())),
        None => Err(ApiError::NotFound("no MCP servers on this server".to_owned())),
    }
}

#[derive(Debug, serde::Deserialize)]
struct TurnsQuery {
    agent: Option<String>,
}

/// `GET /api/turns[?agent=A]`: the latest turns with their durations, oldest first.
async fn recent_turns(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<TurnsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_daemon_wide()?;
    let Some(metrics) = &state.config.metrics else {
        return Err(ApiError::NotFound("this server keeps no metrics".to_owned()));
    };
    let mut turns = metrics.recent_turns();
    if let Some(agent) = query.agent.as_deref().filter(|agent| !agent.is_empty()) {
        turns.retain(|turn| turn.agent.as_str() == agent);
    }
    Ok(Json(serde_json::json!({ "kept": crate::metrics::RECENT_TURNS, "turns": turns })))
}

async fn effective_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_daemon_wide()?;
    match &state.config.effective_config {
        Some(config) => Ok(Json(config.clone())),
        None => Err(ApiError::NotFound("this server does not publish its configuration".to_owned())),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

/// Largest error body of the router's own (a rejection's text) that is carried into the JSON.
const MAX_ERROR_TEXT: usize = 1024;

/// Turns every error answer that isn't JSON yet (the router's `405`, an extractor's plain-text
/// rejection) into `{"error": "..."}`, keeping its status and headers (`Allow` on a `405`).
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(is_json_media_type);
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts.headers.get(header::ALLOW).and_then(|value| value.to_str().ok()).unwrap_or_default();
        format!("method {method} is not allowed on {path}; allowed: {allowed}")
    } else {
        let text = axum::body::to_bytes(body, MAX_ERROR_TEXT).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        if text.is_empty() { status.canonical_reason().unwrap_or("request failed").to_lowercase() } else { text }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    // OpenAI clients read `error.message`.
    let body = if path.starts_with("/v1/") {
        json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null } })
    } else {
        json!({ "error": message })
    };
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// Lets a request with a valid token through, carrying who it is ([`Caller`]) for the handler.
async fn require_token(State(state): State<AppState>, mut request: Request, next: Next) -> Result<Response, ApiError> {
    let caller = Caller::identify(&state.config, request.headers()).ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

async fn health(State(state): State<AppState>) -> Response {
    if state.runtime.is_accepting() {
        Json(json!({ "status": "ok" })).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting_down" }))).into_response()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    conversation: Option<serde_json::Value>,
    sender: Option<serde_json::Value>,
    text: Option<serde_json::Value>,
    /// The caller's own key for the message: a send retried with the same key is recorded once.
    id: Option<serde_json::Value>,
}

/// Reads a required, non-empty string field with something visible in it, naming it in the error.
pub(crate) fn required_string(
    value: Option<serde_json::Value>,
    field: &str,
    max_bytes: usize,
) -> Result<String, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Err(ApiError::BadRequest(format!("missing field `{field}`"))),
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => {
            Err(ApiError::BadRequest(format!("field `{field}` must not be empty")))
        }
        Some(serde_json::Value::String(text)) if text.chars().all(is_invisible) => Err(ApiError::BadRequest(format!(
            "field `{field}` must not be empty: it holds only invisible characters (zero-width spaces, joiners, ...)"
        ))),
        Some(serde_json::Value::String(text)) if text.len() > max_bytes => {
            Err(ApiError::BadRequest(format!("field `{field}` is longer than {max_bytes} bytes")))
        }
        Some(serde_json::Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::BadRequest(format!("field `{field}` must be a string"))),
    }
}

/// A required name-like field (a conversation, a sender, a key): as [`required_string`], and
/// without control characters, which no name has and some stores can't keep (PostgreSQL refuses
/// NUL in text).
pub(crate) fn required_name(
    value: Option<serde_json::Value>,
    field: &str,
    max_bytes: usize,
) -> Result<String, ApiError> {
    let name = required_string(value, field, max_bytes)?;
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("field `{field}` must not contain control characters")));
    }
    Ok(name)
}

/// Whether `c` shows nothing: whitespace, or a default-ignorable code point of Unicode (zero-width
/// space, non-joiner and joiner, word joiner, byte-order mark, soft hyphen, bidi and variation
/// marks, Hangul fillers, tags). A text made only of these reads as empty.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Whether a `Content-Type` value is the media type `application/json`: type and subtype
/// compared without regard to case, parameters (`; charset=utf-8`) allowed, nothing else
/// (`application/jsonx`, `application/json-seq`, `text/json`) accepted.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| kind.eq_ignore_ascii_case("application") && subtype.eq_ignore_ascii_case("json"))
}

pub(crate) async fn read_json_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json_media_type(content_type) {
        return Err(ApiError::UnsupportedMediaType);
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if current.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge(limit);
            }
            if let Some(timeout) = current.downcast_ref::<BodyReadTimeout>() {
                return ApiError::RequestTimeout(format!("{timeout}; send it without pauses"));
            }
            cause = current.source();
        }
        ApiError::BadRequest(format!("can't read the request body: {error}"))
    })
}

#[derive(Serialize)]
struct Accepted {
    message_id: String,
    conversation: String,
}

async fn webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let agent = AgentId::new(agent);
    if !state.runtime.has_agent(&agent) {
        return Err(ApiError::NotFound(format!("no agent named '{agent}'")));
    }
    caller.require(Scope::Webhook, &agent)?;
    let bytes = read_json_body(&headers, body, state.config.max_body_bytes).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected an object with `conversation`, `sender` and `text`".to_owned(),
        ));
    }
    let body: WebhookBody =
        serde_json::from_value(value).map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))?;
    let max = state.config.max_text_bytes;
    let conversation = required_name(body.conversation, "conversation", 256)?;
    let sender = required_name(body.sender, "sender", 256)?;
    caller.may_speak_as(&sender)?;
    let text = required_string(body.text, "text", max)?;

    let key = match body.id {
        None | Some(serde_json::Value::Null) => None,
        some => Some(required_name(some, "id", 128)?),
    };
    let conversation = webhook_conversation(&conversation);
    let mut message = InboundMessage::text(WEBHOOK_ADAPTER, conversation.clone(), Sender::new(sender), text)
        .with_agent(agent)
        .with_direct(true);
    if let Some(key) = key {
        // Scoped to the conversation, so two callers' keys can't collide across conversations.
        message = message.with_id(format!("{conversation}:{key}"));
    }
    let id = state.runtime.submit(message).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message_id: id.to_string(), conversation: conversation.to_string() })))
}

#[derive(Debug, Deserialize)]
struct MessagesQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct MessageView {
    id: String,
    role: &'static str,
    sender: String,
    text: String,
    created_at: String,
}

impl From<StoredMessage> for MessageView {
    fn from(message: StoredMessage) -> Self {
        Self {
            id: message.id.to_string(),
            role: message.role.as_str(),
            sender: message.sender,
            text: message.text,
            created_at: message.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

async fn messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, conversation)): Path<(String, String)>,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let Query(query) = query.map_err(|error| ApiError::BadRequest(format!("invalid query: {}", error.body_text())))?;
    let agent = AgentId::new(agent);
    if !state.runtime.has_agent(&agent) {
        return Err(ApiError::NotFound(format!("no agent named '{agent}'")));
    }
    caller.require(Scope::Read, &agent)?;
    let limit = query.limit.unwrap_or(200).clamp(1, 10_000);
    let log = state.runtime.log();
    let mut history = read_history(log.as_ref(), &agent, &ConversationId::new(conversation.as_str()), limit).await?;
    // The id the caller sent to `POST /webhook` (`c1`) names the webhook conversation `webhook:c1`;
    // an id stored as given (the canonical `webhook:c1`, or another platform's) wins.
    let prefixed = conversation.strip_prefix(WEBHOOK_ADAPTER).is_some_and(|rest| rest.starts_with(':'));
    if history.is_empty() && !prefixed {
        history = read_history(log.as_ref(), &agent, &webhook_conversation(&conversation), limit).await?;
    }
    Ok(Json(history.into_iter().map(MessageView::from).collect()))
}

async fn read_history(
    log: &dyn ConversationLog,
    agent: &AgentId,
    conversation: &ConversationId,
    limit: usize,
) -> Result<Vec<StoredMessage>, ApiError> {
    log.history(agent, conversation, limit)
        .await
        .map_err(|error| ApiError::Internal(format!("can't read the conversation '{conversation}': {error}")))
}

/// The canonical id of the webhook conversation a caller named `name`.
fn webhook_conversation(name: &str) -> ConversationId {
    ConversationId::new(format!("{WEBHOOK_ADAPTER}:{name}"))
}

async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_daemon_wide()?;
    let status = state.runtime.status().await?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "agents": status.agents,
        "conversations": status.conversations,
        "adapters": status.adapters,
        "notices": status.notices,
        "fleet": status.fleet,
        "processes": state.runtime.processes().list().into_iter().map(|process| json!({
            "agent": process.agent,
            "conversation": process.conversation,
            "process": process.process,
            "kind": process.kind,
            "description": process.description,
            "running_seconds": process.running_for.as_secs(),
            "limit_seconds": process.limit.map(|limit| limit.as_secs()),
        })).collect::<Vec<_>>(),
    })))
}

async fn serve_metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    caller.require_daemon_wide()?;
    let Some(metrics) = &state.config.metrics else {
        return Err(ApiError::NotFound("metrics are not enabled on this server".to_owned()));
    };
    let text = metrics.render(&state.runtime).await;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require_daemon_wide()?;
    let receiver = state.runtime.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(event) => {
                let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
                Event::default().event("runtime").data(data)
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                Event::default().event("lagged").data(json!({ "type": "lagged", "missed": missed }).to_string())
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_media_type_is_matched_whole_and_without_regard_to_case() {
        for accepted in
            ["application/json", "APPLICATION/JSON", "Application/Json;charset=utf-8", " application/json ; q=1"]
        {
            assert!(is_json_media_type(accepted), "{accepted:?} is application/json");
        }
        for refused in
            ["", "application/jsonx", "application/json-seq", "text/json", "application/", "json", "application /json"]
        {
            assert!(!is_json_media_type(refused), "{refused:?} is not application/json");
        }
    }

    #[test]
    fn zero_width_and_other_default_ignorable_characters_are_invisible() {
        for invisible in ["\u{200B}\u{200C}\u{200D}", "\u{FEFF}\u{2060}", " \t\u{3000}\u{00A0}", "\u{E0041}\u{FE0F}"] {
            assert!(invisible.chars().all(is_invisible), "{invisible:?} shows nothing");
        }
        for visible in ["a", "\u{200B}.", "\u{1F600}", "\u{0301}"] {
            assert!(!visible.chars().all(is_invisible), "{visible:?} shows something");
        }
    }
}

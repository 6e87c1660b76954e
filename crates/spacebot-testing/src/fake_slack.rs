//! A fake Slack over real HTTP and a real websocket (dev-only test support).
//!
//! [`FakeSlack`] listens on `127.0.0.1` on a free port and serves:
//!
//! - the Web API under `/api/{method}`: `auth.test`, `apps.connections.open` (pointing at its own
//!   Socket Mode websocket), `chat.postMessage`, `reactions.add`, `assistant.threads.setStatus`,
//!   `api.test`, and file uploads the way Slack takes them (`files.getUploadURLExternal`, the bytes
//!   posted to the URL it gave, `files.completeUploadExternal`, recorded as [`SlackUpload`]s);
//!   bodies are read as JSON or form data and recorded. Scripted failures answer one
//!   call with a Slack error (`{"ok": false, "error": ...}`) or an HTTP status (429 with
//!   `Retry-After` is a rate limit).
//! - Socket Mode on `/socket`: `hello` on connect, then the envelopes a test pushes
//!   (`events_api` messages, `slash_commands`), each on one live connection; the client's acks are
//!   recorded by envelope id. `disconnect` asks the client to reconnect; dropping the socket
//!   simulates a network failure.
//!
//! Point slack-morphism at it with `SlackClientHyperConnector::with_slack_api_url(fake.api_url())`
//! on an HTTP-capable connector.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The largest upload the fake takes.
const MAX_UPLOAD_BYTES: usize = 64 << 20;

/// The bot's user id (`auth.test`).
pub const BOT_USER: &str = "UBOT";
/// The workspace (team) id (`auth.test`).
pub const TEAM: &str = "T1";

/// One Web API call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCall {
    /// The method, e.g. `chat.postMessage`.
    pub method: String,
    /// The arguments, from a JSON or form body (`Null` when there were none).
    pub body: Value,
}

/// A file the bot uploaded and shared into a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackUpload {
    /// The file id Slack gave it.
    pub file_id: String,
    /// The channel it was shared into (`channel_id`).
    pub channel: String,
    /// The thread, if it was shared into one.
    pub thread_ts: Option<String>,
    /// The file name given to `files.getUploadURLExternal`.
    pub filename: String,
    /// The title given when completing the upload.
    pub title: Option<String>,
    /// The message shared with it.
    pub initial_comment: Option<String>,
    /// The content type the bytes were posted with.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// An upload URL handed out and not yet completed.
#[derive(Debug, Clone, Default)]
struct PendingUpload {
    filename: String,
    length: usize,
    content_type: Option<String>,
    bytes: Option<Vec<u8>>,
}

/// A message a fake user posts, pushed as an `events_api` envelope.
#[derive(Debug, Clone)]
pub struct SlackMessage {
    team: String,
    channel: String,
    user: String,
    text: String,
    thread_ts: Option<String>,
    bot_id: Option<String>,
    subtype: Option<String>,
    files: Vec<Value>,
}

impl SlackMessage {
    /// A message in `channel` (a `D...` id is a DM) by `user`.
    pub fn new(channel: &str, user: &str, text: impl Into<String>) -> Self {
        Self {
            team: TEAM.to_owned(),
            channel: channel.to_owned(),
            user: user.to_owned(),
            text: text.into(),
            thread_ts: None,
            bot_id: None,
            subtype: None,
            files: Vec::new(),
        }
    }

    /// Shares a file with it (a `file_share` message): `url` is its `url_private`, such as
    /// [`FakeSlack::add_file`] returns.
    pub fn with_file(mut self, name: &str, url: &str, mimetype: &str) -> Self {
        let id = format!("F{}", self.files.len() + 1);
        self.files.push(json!({"id": id, "name": name, "mimetype": mimetype, "url_private": url}));
        self.subtype = Some("file_share".to_owned());
        self
    }

    /// Posts it in the thread rooted at `thread_ts`.
    pub fn in_thread(mut self, thread_ts: &str) -> Self {
        self.thread_ts = Some(thread_ts.to_owned());
        self
    }

    /// Posts it in another workspace.
    pub fn in_team(mut self, team: &str) -> Self {
        self.team = team.to_owned();
        self
    }

    /// Marks it as posted by a bot.
    pub fn from_bot(mut self, bot_id: &str) -> Self {
        self.bot_id = Some(bot_id.to_owned());
        self
    }

    /// Gives it a subtype (`message_changed`, `channel_join`, ...).
    pub fn with_subtype(mut self, subtype: &str) -> Self {
        self.subtype = Some(subtype.to_owned());
        self
    }

    /// Mentions the bot: prefixes `<@UBOT>` to the text.
    pub fn mentioning_bot(mut self) -> Self {
        self.text = format!("<@{BOT_USER}> {}", self.text);
        self
    }
}

#[derive(Debug, Clone)]
enum Failure {
    Api(String),
    Status(u16, Option<u64>),
}

enum SocketCommand {
    Send(Value),
    Drop,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<SlackCall>>,
    acks: Mutex<Vec<Value>>,
    changed: Notify,
    live: Mutex<Option<mpsc::UnboundedSender<SocketCommand>>>,
    pending: Mutex<VecDeque<Value>>,
    failures: Mutex<Vec<(String, Failure)>>,
    /// Files served at `/files/{name}` to a bearer of a bot token, with their content type.
    files: Mutex<std::collections::HashMap<String, (String, Vec<u8>)>>,
    /// The `Authorization` header of every file download, in order.
    file_downloads: Mutex<Vec<(String, Option<String>)>>,
    /// Upload URLs handed out, by file id.
    pending_uploads: Mutex<std::collections::HashMap<String, PendingUpload>>,
    /// Uploads completed into a channel.
    uploads: Mutex<Vec<SlackUpload>>,
    connections: AtomicUsize,
    next: AtomicU64,
}

/// A fake Slack: Web API and Socket Mode on one local port. Stops when dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeSlack {
    /// Starts the fake on a free port of `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind 127.0.0.1:0 for the fake Slack");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared { next: AtomicU64::new(1), ..Shared::default() });
        let app = Router::new().fallback(handle).with_state(AppState { shared: shared.clone(), addr });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The Web API base for `with_slack_api_url`: `http://127.0.0.1:PORT/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Serves `bytes` as a shared file's `url_private` (bot token required) and returns the URL.
    pub fn add_file(&self, name: &str, content_type: &str, bytes: Vec<u8>) -> String {
        lock(&self.shared.files).insert(name.to_owned(), (content_type.to_owned(), bytes));
        format!("http://{}/files/{name}", self.addr)
    }

    /// Every file download: the path and the `Authorization` header it came with.
    pub fn file_downloads(&self) -> Vec<(String, Option<String>)> {
        lock(&self.shared.file_downloads).clone()
    }

    /// Every file the bot uploaded and shared, in order.
    pub fn uploads(&self) -> Vec<SlackUpload> {
        lock(&self.shared.uploads).clone()
    }

    /// Pushes a message event; returns its envelope id and its `ts`.
    pub fn post(&self, message: SlackMessage) -> (String, String) {
        let n = self.shared.next.fetch_add(1, Ordering::SeqCst);
        let ts = format!("1700000000.{n:06}");
        let mut event = json!({
            "type": "message", "channel": message.channel, "user": message.user, "text": message.text, "ts": ts,
            "channel_type": if message.channel.starts_with('D') { "im" } else { "channel" },
        });
        if let Some(thread) = message.thread_ts {
            event["thread_ts"] = json!(thread);
        }
        if let Some(bot) = message.bot_id {
            event["bot_id"] = json!(bot);
        }
        if let Some(subtype) = message.subtype {
            event["subtype"] = json!(subtype);
        }
        if !message.files.is_empty() {
            event["files"] = json!(message.files);
        }
        (self.push_event(n, &message.team, event), ts)
    }

    /// Pushes the `app_mention` event Slack sends an app subscribed to mentions for a message that
    /// mentions the bot (besides its `message` event, which [`post`](Self::post) pushes): the same
    /// channel, user, text and `ts`. Returns its envelope id.
    pub fn app_mention(&self, message: SlackMessage, ts: &str) -> String {
        let n = self.shared.next.fetch_add(1, Ordering::SeqCst);
        let mut event = json!({
            "type": "app_mention", "channel": message.channel, "user": message.user, "text": message.text,
            "ts": ts, "event_ts": ts,
        });
        if let Some(thread) = message.thread_ts {
            event["thread_ts"] = json!(thread);
        }
        self.push_event(n, &message.team, event)
    }

    /// Pushes an `events_api` envelope carrying `event`; returns its id.
    fn push_event(&self, n: u64, team: &str, event: Value) -> String {
        let envelope = format!("env-{n}");
        self.push(json!({
            "type": "events_api", "envelope_id": envelope, "accepts_response_payload": false,
            "payload": {
                "type": "event_callback", "team_id": team, "api_app_id": "A1", "event": event,
                "event_id": format!("Ev{n}"), "event_time": 1_700_000_000,
            },
        }));
        envelope
    }

    /// Pushes a slash command (`/stop args`); returns its envelope id.
    pub fn slash_command(&self, channel: &str, user: &str, command: &str, text: &str) -> String {
        let n = self.shared.next.fetch_add(1, Ordering::SeqCst);
        let envelope = format!("env-{n}");
        self.push(json!({
            "type": "slash_commands", "envelope_id": envelope, "accepts_response_payload": true,
            "payload": {
                "team_id": TEAM, "channel_id": channel, "user_id": user, "command": command, "text": text,
                "response_url": format!("http://{}/response/{n}", self.addr), "trigger_id": format!("trigger-{n}"),
            },
        }));
        envelope
    }

    /// Asks the connected client to reconnect (`{"type": "disconnect"}`).
    pub fn disconnect(&self) {
        let body = json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}});
        if let Some(live) = lock(&self.shared.live).take() {
            let _ = live.send(SocketCommand::Send(body));
        }
    }

    /// Drops the live socket without a word, like a network failure.
    pub fn drop_socket(&self) {
        if let Some(live) = lock(&self.shared.live).take() {
            let _ = live.send(SocketCommand::Drop);
        }
    }

    /// Answers the next call of `method` with `{"ok": false, "error": error}`.
    pub fn fail_next(&self, method: &str, error: &str) {
        lock(&self.shared.failures).push((method.to_owned(), Failure::Api(error.to_owned())));
    }

    /// Answers the next call of `method` with HTTP `status` (and `Retry-After` seconds).
    pub fn fail_next_status(&self, method: &str, status: u16, retry_after: Option<u64>) {
        lock(&self.shared.failures).push((method.to_owned(), Failure::Status(status, retry_after)));
    }

    /// Every Web API call so far.
    pub fn calls(&self) -> Vec<SlackCall> {
        lock(&self.shared.calls).clone()
    }

    /// The calls of one method.
    pub fn calls_to(&self, method: &str) -> Vec<SlackCall> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// The acks the client sent, in order.
    pub fn acks(&self) -> Vec<Value> {
        lock(&self.shared.acks).clone()
    }

    /// Whether the client acknowledged `envelope`.
    pub fn acked(&self, envelope: &str) -> bool {
        self.acks().iter().any(|ack| ack["envelope_id"] == json!(envelope))
    }

    /// How many Socket Mode connections were opened.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until `check` holds, re-checking after every call, ack and connection.
    ///
    /// # Panics
    ///
    /// When `timeout` passes first, listing the calls and acks seen.
    pub async fn wait_for<F>(&self, what: &str, timeout: Duration, check: F)
    where
        F: Fn(&FakeSlack) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.shared.changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if check(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                panic!(
                    "fake Slack: waited {timeout:?} for {what}; calls: {:#?}; acks: {:?}",
                    self.calls(),
                    self.acks()
                );
            }
        }
    }

    fn push(&self, envelope: Value) {
        let live = lock(&self.shared.live).clone();
        let undelivered = match live {
            Some(live) => live.send(SocketCommand::Send(envelope)).err().map(|e| e.0),
            None => Some(SocketCommand::Send(envelope)),
        };
        if let Some(SocketCommand::Send(envelope)) = undelivered {
            lock(&self.shared.pending).push_back(envelope);
        }
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack").field("addr", &self.addr).finish()
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

async fn handle(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.uri.path() == "/socket" {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade.on_upgrade(move |socket| socket_mode(socket, state.shared)).into_response(),
            Err(rejection) => rejection.into_response(),
        };
    }
    if let Some(name) = parts.uri.path().strip_prefix("/files/") {
        let authorization = parts.headers.get("authorization").and_then(|value| value.to_str().ok()).map(str::to_owned);
        lock(&state.shared.file_downloads).push((parts.uri.path().to_owned(), authorization.clone()));
        state.shared.changed.notify_waiters();
        // Like Slack, a `url_private` without the bot token is refused.
        if !authorization.is_some_and(|value| value.starts_with("Bearer xoxb-")) {
            return (axum::http::StatusCode::FORBIDDEN, "not_authed").into_response();
        }
        return match lock(&state.shared.files).get(name).cloned() {
            Some((content_type, bytes)) => ([(axum::http::header::CONTENT_TYPE, content_type)], bytes).into_response(),
            None => (axum::http::StatusCode::NOT_FOUND, "file_not_found").into_response(),
        };
    }
    if let Some(file_id) = parts.uri.path().strip_prefix("/upload/") {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Ok(bytes) = axum::body::to_bytes(body, MAX_UPLOAD_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response();
        };
        let mut pending = lock(&state.shared.pending_uploads);
        let Some(upload) = pending.get_mut(file_id) else {
            return (StatusCode::NOT_FOUND, "no such upload").into_response();
        };
        // Slack checks the bytes against the length asked for.
        if bytes.len() != upload.length {
            return (StatusCode::BAD_REQUEST, format!("expected {} bytes, got {}", upload.length, bytes.len()))
                .into_response();
        }
        upload.content_type = content_type;
        upload.bytes = Some(bytes.to_vec());
        return ([(header::CONTENT_TYPE, "text/plain")], format!("OK - {}", bytes.len())).into_response();
    }
    let bytes: Bytes = axum::body::to_bytes(body, 10 * 1024 * 1024).await.unwrap_or_default();
    let mut args = parse_body(&bytes);
    if let Some(query) = parts.uri.query()
        && let Value::Object(map) = &mut args
    {
        map.extend(crate::form::parse_form(query));
    }
    let method = parts.uri.path().strip_prefix("/api/").unwrap_or(parts.uri.path()).to_owned();
    web_api(&state, method, args)
}

fn web_api(state: &AppState, method: String, args: Value) -> Response {
    let shared = &state.shared;
    lock(&shared.calls).push(SlackCall { method: method.clone(), body: args.clone() });
    shared.changed.notify_waiters();

    let failure = {
        let mut failures = lock(&shared.failures);
        failures.iter().position(|(m, _)| *m == method).map(|i| failures.remove(i).1)
    };
    match failure {
        Some(Failure::Api(error)) => return ok_json(json!({"ok": false, "error": error})),
        Some(Failure::Status(status, retry_after)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, axum::Json(json!({"ok": false, "error": "ratelimited"}))).into_response();
            if let Some(seconds) = retry_after
                && let Ok(value) = seconds.to_string().parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        None => {}
    }

    let ts = || format!("1700000001.{:06}", shared.next.fetch_add(1, Ordering::SeqCst));
    match method.as_str() {
        "auth.test" => ok_json(json!({
            "ok": true, "url": "https://fake.slack.invalid/", "team": "Fake", "user": "spacebot",
            "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BBOT",
        })),
        "apps.connections.open" => ok_json(json!({"ok": true, "url": format!("ws://{}/socket", state.addr)})),
        "chat.postMessage" => {
            let ts = ts();
            let channel = args["channel"].clone();
            ok_json(json!({
                "ok": true, "channel": channel, "ts": ts,
                "message": {"type": "message", "text": args["text"].clone(), "user": BOT_USER, "ts": ts},
            }))
        }
        "reactions.add" | "assistant.threads.setStatus" | "api.test" => ok_json(json!({"ok": true})),
        "files.getUploadURLExternal" => {
            let filename = args["filename"].as_str().unwrap_or_default().to_owned();
            let length = args["length"]
                .as_str()
                .and_then(|n| n.parse::<usize>().ok())
                .or(args["length"].as_u64().and_then(|n| usize::try_from(n).ok()));
            let (Some(length), false) = (length, filename.is_empty()) else {
                return ok_json(json!({"ok": false, "error": "invalid_arguments"}));
            };
            let file_id = format!("F{:08}", shared.next.fetch_add(1, Ordering::SeqCst));
            lock(&shared.pending_uploads)
                .insert(file_id.clone(), PendingUpload { filename, length, ..PendingUpload::default() });
            ok_json(
                json!({"ok": true, "file_id": file_id, "upload_url": format!("http://{}/upload/{file_id}", state.addr)}),
            )
        }
        "files.completeUploadExternal" => {
            let Some(channel) = args["channel_id"].as_str().map(str::to_owned) else {
                return ok_json(json!({"ok": false, "error": "invalid_arguments"}));
            };
            let files = args["files"].as_array().cloned().unwrap_or_default();
            let mut completed = Vec::new();
            for file in &files {
                let id = file["id"].as_str().unwrap_or_default();
                let Some(PendingUpload { filename, content_type, bytes: Some(bytes), .. }) =
                    lock(&shared.pending_uploads).remove(id)
                else {
                    return ok_json(json!({"ok": false, "error": "file_not_found"}));
                };
                completed.push(json!({"id": id, "name": filename, "title": file["title"].clone()}));
                lock(&shared.uploads).push(SlackUpload {
                    file_id: id.to_owned(),
                    channel: channel.clone(),
                    thread_ts: args["thread_ts"].as_str().map(str::to_owned),
                    filename,
                    title: file["title"].as_str().map(str::to_owned),
                    initial_comment: args["initial_comment"].as_str().map(str::to_owned),
                    content_type,
                    bytes,
                });
            }
            shared.changed.notify_waiters();
            ok_json(json!({"ok": true, "files": completed}))
        }
        _ => ok_json(json!({"ok": false, "error": "unknown_method"})),
    }
}

async fn socket_mode(mut socket: WebSocket, shared: Arc<Shared>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let hello = json!({
        "type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"},
        "debug_info": {"host": "fake", "approximate_connection_time": 18060},
    });
    if socket.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    let (commands, mut receiver) = mpsc::unbounded_channel();
    *lock(&shared.live) = Some(commands.clone());
    shared.changed.notify_waiters();
    let mut flushed = true;
    loop {
        if flushed {
            let queued: Vec<Value> = lock(&shared.pending).drain(..).collect();
            for envelope in queued {
                let _ = commands.send(SocketCommand::Send(envelope));
            }
            flushed = false;
        }
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { break };
                match message {
                    Message::Text(text) => {
                        if let Ok(ack) = serde_json::from_str::<Value>(&text)
                            && ack.get("envelope_id").is_some()
                        {
                            lock(&shared.acks).push(ack);
                            shared.changed.notify_waiters();
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            Some(command) = receiver.recv() => match command {
                SocketCommand::Send(value) => {
                    if socket.send(Message::Text(value.to_string().into())).await.is_err() { break }
                }
                SocketCommand::Drop => break,
            },
        }
    }
    {
        let mut live = lock(&shared.live);
        if live.as_ref().is_some_and(|l| l.same_channel(&commands)) {
            *live = None;
        }
    }
    receiver.close();
    while let Ok(SocketCommand::Send(value)) = receiver.try_recv() {
        if value["type"] != json!("disconnect") {
            lock(&shared.pending).push_back(value);
        }
    }
    shared.changed.notify_waiters();
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::Object(crate::form::parse_form(&String::from_utf8_lossy(bytes))))
}

fn ok_json(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Locks a mutex, carrying on after a panic elsewhere: the data (a log, a queue) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

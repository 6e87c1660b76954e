//! A fake Discord over real HTTP and a real websocket (dev-only test support).
//!
//! [`FakeDiscord`] listens on `127.0.0.1` on a free port and serves what a bot client needs:
//!
//! - REST under `/api/v10`: `GET /gateway` (pointing at its own websocket), `GET /users/@me`,
//!   `GET /channels/{id}`, `POST /channels/{id}/messages`, `POST /channels/{id}/typing`,
//!   `PUT /channels/{id}/messages/{id}/reactions/{emoji}/@me` (a message with files comes as
//!   `multipart/form-data`: its `payload_json` is recorded as the body, its files as the
//!   request's [`DiscordUpload`]s),
//!   `POST /channels/{id}/messages/{id}/threads`, the application command routes, interaction
//!   callbacks and `@original` edits. Every request is recorded; scripted failures (a status with an
//!   optional `Retry-After`) can be queued per route.
//! - The gateway on `/gateway`: HELLO, heartbeat ACKs, IDENTIFY → READY, RESUME → RESUMED, then
//!   whatever the test dispatches (`MESSAGE_CREATE`, `INTERACTION_CREATE`). A test can drop the
//!   connection with a close code, or refuse IDENTIFY, to exercise reconnects.
//!
//! Point serenity at it with `HttpBuilder::new(token).proxy(fake.api_url())`: serenity's proxy
//! setting replaces `https://discord.com`, and the client learns the gateway URL from
//! `GET /api/v10/gateway`. Payloads are the smallest JSON the real client accepts.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The bot's user id in READY and `GET /users/@me`.
pub const BOT_USER_ID: u64 = 900_000_000_000_000_001;
/// The application id in READY.
pub const APPLICATION_ID: u64 = 900_000_000_000_000_002;
const BOT_NAME: &str = "spacebot";
/// The largest multipart body the fake reads: 25 MiB, Discord's largest upload.
const MAX_UPLOAD_BYTES: usize = 25 << 20;
const TIMESTAMP: &str = "2025-01-01T00:00:00.000000+00:00";

/// One REST request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path after `/api/v10`, e.g. `/channels/10/messages`.
    pub path: String,
    /// The JSON body (a multipart message's `payload_json`), or `Null`.
    pub body: Value,
    /// The files of a multipart message, in order.
    pub files: Vec<DiscordUpload>,
}

/// A file the bot uploaded with a message (`multipart/form-data`, as Discord takes files).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordUpload {
    /// The path it was posted to, after `/api/v10`, e.g. `/channels/10/messages`.
    pub path: String,
    /// The file name the client gave.
    pub filename: String,
    /// The part's content type, if the client gave one.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A message a fake user posts, dispatched as `MESSAGE_CREATE`.
#[derive(Debug, Clone)]
pub struct FakeMessage {
    guild: Option<u64>,
    channel: u64,
    author: u64,
    author_name: String,
    author_is_bot: bool,
    content: String,
    mentions: Vec<(u64, String)>,
    attachments: Vec<Value>,
    reply_to_bot: bool,
}

impl FakeMessage {
    /// A message in a guild channel (or thread).
    pub fn guild(guild: u64, channel: u64, author: u64, content: impl Into<String>) -> Self {
        Self {
            guild: Some(guild),
            channel,
            author,
            author_name: format!("user{author}"),
            author_is_bot: false,
            content: content.into(),
            mentions: Vec::new(),
            attachments: Vec::new(),
            reply_to_bot: false,
        }
    }

    /// A direct message; `channel` is the DM channel id.
    pub fn direct(channel: u64, author: u64, content: impl Into<String>) -> Self {
        Self { guild: None, ..Self::guild(0, channel, author, content) }
    }

    /// Sets the author's user name.
    pub fn by(mut self, name: impl Into<String>) -> Self {
        self.author_name = name.into();
        self
    }

    /// Marks the author as a bot.
    pub fn from_a_bot(mut self) -> Self {
        self.author_is_bot = true;
        self
    }

    /// Adds `<@id>` to the mentions (the content should contain it too).
    pub fn mentioning(mut self, user: u64, name: impl Into<String>) -> Self {
        self.mentions.push((user, name.into()));
        self
    }

    /// Mentions the bot: prefixes `<@bot>` to the content and lists it in the mentions.
    pub fn mentioning_bot(mut self) -> Self {
        self.content = format!("<@{BOT_USER_ID}> {}", self.content);
        self.mentions.push((BOT_USER_ID, BOT_NAME.to_owned()));
        self
    }

    /// Makes it a reply to a message the bot wrote.
    pub fn replying_to_bot(mut self) -> Self {
        self.reply_to_bot = true;
        self
    }

    /// Attaches a file by reference.
    pub fn with_attachment(mut self, filename: &str, url: &str, content_type: &str, size: u64) -> Self {
        let id = 800_000 + self.attachments.len() as u64;
        self.attachments.push(json!({
            "id": id.to_string(), "filename": filename, "url": url, "proxy_url": url,
            "size": size, "content_type": content_type,
        }));
        self
    }
}

/// A scripted REST failure.
#[derive(Debug, Clone)]
struct Failure {
    path_contains: String,
    status: u16,
    retry_after: Option<f64>,
}

enum GatewayCommand {
    Dispatch(String, Value),
    Close(u16),
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<DiscordRequest>>,
    /// Woken on every request and every gateway change.
    changed: Notify,
    identifies: Mutex<Vec<Value>>,
    resumes: AtomicUsize,
    connections: AtomicUsize,
    /// The live, identified gateway connection.
    gateway: Mutex<Option<mpsc::UnboundedSender<GatewayCommand>>>,
    /// Dispatches waiting for an identified connection.
    pending: Mutex<VecDeque<(String, Value)>>,
    seq: AtomicU64,
    next_id: AtomicU64,
    /// Channel id → channel JSON, for `GET /channels/{id}`.
    channels: Mutex<HashMap<u64, Value>>,
    failures: Mutex<Vec<Failure>>,
    reject_identify: AtomicU16,
    commands: Mutex<Vec<Value>>,
    /// Files served at `/files/{name}` (attachments), with their content type.
    files: Mutex<HashMap<String, (String, Vec<u8>)>>,
}

/// A fake Discord: REST and gateway on one local port. Stops when dropped.
pub struct FakeDiscord {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeDiscord {
    /// Starts the fake on a free port of `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind 127.0.0.1:0 for the fake Discord");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared { next_id: AtomicU64::new(700_000_000_000_000_000), ..Shared::default() });
        let state = AppState { shared: shared.clone(), addr };
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The base to give serenity's `HttpBuilder::proxy`: `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` as an attachment (its CDN copy) and returns its URL, for
    /// [`FakeMessage::with_attachment`].
    pub fn add_file(&self, name: &str, content_type: &str, bytes: Vec<u8>) -> String {
        lock(&self.shared.files).insert(name.to_owned(), (content_type.to_owned(), bytes));
        format!("http://{}/files/{name}", self.addr)
    }

    /// Registers a guild text channel, so `GET /channels/{id}` knows it.
    pub fn add_channel(&self, guild: u64, channel: u64) {
        lock(&self.shared.channels).insert(channel, guild_channel_json(guild, channel, None, 0));
    }

    /// Registers a public thread of `parent`.
    pub fn add_thread(&self, guild: u64, thread: u64, parent: u64) {
        lock(&self.shared.channels).insert(thread, guild_channel_json(guild, thread, Some(parent), 11));
    }

    /// Dispatches `MESSAGE_CREATE` to the connected bot (or the next one to connect) and returns
    /// the message id.
    pub fn post(&self, message: FakeMessage) -> u64 {
        let id = self.next_id();
        let author = user_json(message.author, &message.author_name, message.author_is_bot);
        let mentions: Vec<Value> =
            message.mentions.iter().map(|(id, name)| user_json(*id, name, *id == BOT_USER_ID)).collect();
        let mut data = json!({
            "id": id.to_string(), "channel_id": message.channel.to_string(), "author": author,
            "content": message.content, "timestamp": TIMESTAMP, "edited_timestamp": null, "tts": false,
            "mention_everyone": false, "mentions": mentions, "mention_roles": [], "attachments": message.attachments,
            "embeds": [], "pinned": false, "type": 0,
        });
        if let Some(guild) = message.guild {
            data["guild_id"] = json!(guild.to_string());
            data["member"] = json!({"roles": [], "joined_at": TIMESTAMP, "deaf": false, "mute": false});
        }
        if message.reply_to_bot {
            let referenced = self.bot_message_json(message.channel, "an earlier answer");
            data["referenced_message"] = referenced;
            data["type"] = json!(19);
        }
        self.dispatch("MESSAGE_CREATE", data);
        id
    }

    /// Dispatches an application command (`INTERACTION_CREATE`, type 2) and returns its id. With
    /// `guild` `None` it comes from a DM.
    pub fn slash_command(&self, guild: Option<u64>, channel: u64, user: u64, name: &str, input: Option<&str>) -> u64 {
        let id = self.next_id();
        let options: Vec<Value> = input.map(|v| json!({"name": "input", "type": 3, "value": v})).into_iter().collect();
        let mut data = json!({
            "id": id.to_string(), "application_id": APPLICATION_ID.to_string(), "type": 2,
            "data": {"id": "1", "name": name, "type": 1, "options": options},
            "channel_id": channel.to_string(), "token": format!("token-{id}"), "version": 1,
            "locale": "en-US", "entitlements": [], "authorizing_integration_owners": {},
            "app_permissions": "0", "flags": 0, "attachment_size_limit": 10485760,
        });
        let user = user_json(user, &format!("user{user}"), false);
        match guild {
            Some(guild) => {
                data["guild_id"] = json!(guild.to_string());
                data["guild_locale"] = json!("en-US");
                data["member"] = json!({"user": user, "roles": [], "joined_at": TIMESTAMP, "deaf": false, "mute": false, "permissions": "0", "flags": 0});
            }
            None => data["user"] = user,
        }
        self.dispatch("INTERACTION_CREATE", data);
        id
    }

    /// Sends a raw dispatch event.
    pub fn dispatch(&self, event: &str, data: Value) {
        let live = lock(&self.shared.gateway).clone();
        let undelivered = match live {
            Some(gateway) => gateway.send(GatewayCommand::Dispatch(event.to_owned(), data)).err().map(|e| e.0),
            None => Some(GatewayCommand::Dispatch(event.to_owned(), data)),
        };
        if let Some(GatewayCommand::Dispatch(event, data)) = undelivered {
            lock(&self.shared.pending).push_back((event, data));
        }
    }

    /// Closes the live gateway connection with `code` (4000 is "unknown error": the client
    /// resumes; 4004 is "authentication failed": it gives up).
    pub fn drop_connection(&self, code: u16) {
        if let Some(gateway) = lock(&self.shared.gateway).take() {
            let _ = gateway.send(GatewayCommand::Close(code));
        }
    }

    /// Answers every later IDENTIFY by closing with `code` (0 accepts again).
    pub fn reject_identify(&self, code: u16) {
        self.shared.reject_identify.store(code, Ordering::SeqCst);
    }

    /// Fails the next request whose path contains `path_contains` with `status`, with a
    /// `Retry-After` header (seconds) when given (a 429 with it is a rate limit).
    pub fn fail_next(&self, path_contains: &str, status: u16, retry_after: Option<f64>) {
        lock(&self.shared.failures).push(Failure { path_contains: path_contains.to_owned(), status, retry_after });
    }

    /// Every REST request so far.
    pub fn requests(&self) -> Vec<DiscordRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every file the bot uploaded, in order.
    pub fn uploads(&self) -> Vec<DiscordUpload> {
        lock(&self.shared.requests).iter().flat_map(|request| request.files.iter().cloned()).collect()
    }

    /// The contents of the messages the bot posted in `channel`, in order.
    pub fn messages_in(&self, channel: u64) -> Vec<String> {
        let path = format!("/channels/{channel}/messages");
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .map(|r| r.body["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// How many IDENTIFYs and RESUMEs the gateway has seen, and how many connections it took.
    pub fn gateway_counts(&self) -> (usize, usize, usize) {
        (
            lock(&self.shared.identifies).len(),
            self.shared.resumes.load(Ordering::SeqCst),
            self.shared.connections.load(Ordering::SeqCst),
        )
    }

    /// The IDENTIFY payloads received (`d` of op 2), for token and intents.
    pub fn identifies(&self) -> Vec<Value> {
        lock(&self.shared.identifies).clone()
    }

    /// The global application commands last set with `PUT /applications/{id}/commands`.
    pub fn registered_commands(&self) -> Vec<Value> {
        lock(&self.shared.commands).clone()
    }

    /// Waits until `check` holds for the recorded requests, and returns them.
    ///
    /// # Panics
    ///
    /// When `timeout` passes first, listing the requests seen.
    pub async fn wait_for<F>(&self, what: &str, timeout: Duration, check: F) -> Vec<DiscordRequest>
    where
        F: Fn(&[DiscordRequest]) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.shared.changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let requests = self.requests();
            if check(&requests) {
                return requests;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                panic!("fake Discord: waited {timeout:?} for {what}; requests seen: {requests:#?}");
            }
        }
    }

    /// Waits until the gateway has an identified (or resumed) connection.
    ///
    /// # Panics
    ///
    /// When `timeout` passes first.
    pub async fn wait_connected(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.shared.changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if lock(&self.shared.gateway).is_some() {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                panic!("fake Discord: no identified gateway connection within {timeout:?}");
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::SeqCst)
    }

    fn bot_message_json(&self, channel: u64, content: &str) -> Value {
        message_json(self.next_id(), channel, content)
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord").field("addr", &self.addr).finish()
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

async fn handle(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.uri.path() == "/gateway" {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade.on_upgrade(move |socket| gateway(socket, state.shared)).into_response(),
            Err(rejection) => rejection.into_response(),
        };
    }
    if let Some(name) = parts.uri.path().strip_prefix("/files/") {
        lock(&state.shared.requests).push(DiscordRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body: Value::Null,
            files: Vec::new(),
        });
        state.shared.changed.notify_waiters();
        return match lock(&state.shared.files).get(name).cloned() {
            Some((content_type, bytes)) => ([(axum::http::header::CONTENT_TYPE, content_type)], bytes).into_response(),
            None => not_found("fake Discord: no such file", 0),
        };
    }
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    if multipart {
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let path = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path()).to_owned();
        return match read_multipart(axum::extract::Request::from_parts(parts, body), &state, &path).await {
            Ok((payload, uploads)) => rest(&state, &method, &uri, &payload, uploads),
            Err(error) => {
                (StatusCode::BAD_REQUEST, axum::Json(json!({"message": error, "code": 50035}))).into_response()
            }
        };
    }
    let bytes: Bytes = axum::body::to_bytes(body, 10 * 1024 * 1024).await.unwrap_or_default();
    rest(&state, &parts.method, &parts.uri, &bytes, Vec::new())
}

/// A `multipart/form-data` message: its `payload_json` and its files (`files[n]`), as Discord
/// reads them (at most [`MAX_UPLOAD_BYTES`] in all).
async fn read_multipart(
    request: axum::extract::Request,
    state: &AppState,
    path: &str,
) -> Result<(Bytes, Vec<DiscordUpload>), String> {
    let mut form = axum::extract::Multipart::from_request(request, state).await.map_err(|e| e.body_text())?;
    let mut payload = Bytes::new();
    let mut uploads = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| e.body_text())?;
        match (name.as_str(), filename) {
            ("payload_json", _) => payload = bytes,
            (name, Some(filename)) if name.starts_with("files[") => {
                uploads.push(DiscordUpload { path: path.to_owned(), filename, content_type, bytes: bytes.to_vec() });
            }
            (other, _) => return Err(format!("fake Discord: unexpected form field `{other}`")),
        }
    }
    Ok((payload, uploads))
}

fn rest(state: &AppState, method: &Method, uri: &Uri, body: &[u8], files: Vec<DiscordUpload>) -> Response {
    let shared = &state.shared;
    let path = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path()).to_owned();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    lock(&shared.requests).push(DiscordRequest {
        method: method.to_string(),
        path: path.clone(),
        body: body.clone(),
        files,
    });
    shared.changed.notify_waiters();

    let failure = {
        let mut failures = lock(&shared.failures);
        failures.iter().position(|f| path.contains(&f.path_contains)).map(|i| failures.remove(i))
    };
    if let Some(failure) = failure {
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"message": "fake Discord: scripted failure", "code": 0, "retry_after": failure.retry_after.unwrap_or(0.0), "global": false});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = failure.retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = || shared.next_id.fetch_add(1, Ordering::SeqCst);
    let parse = |s: &str| s.parse::<u64>().unwrap_or(0);
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["gateway"]) => json_ok(json!({"url": format!("ws://{}/gateway", state.addr)})),
        ("GET", ["users", "@me"]) => json_ok(user_json(BOT_USER_ID, BOT_NAME, true)),
        ("GET", ["channels", channel]) => match lock(&shared.channels).get(&parse(channel)) {
            Some(found) => json_ok(found.clone()),
            None => not_found("Unknown Channel", 10003),
        },
        ("POST", ["channels", channel, "messages"]) => {
            let content = body["content"].as_str().unwrap_or_default();
            json_ok(message_json(id(), parse(channel), content))
        }
        ("POST", ["channels", _, "typing"]) | ("PUT", ["channels", _, "messages", _, "reactions", _, "@me"]) => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["channels", channel, "messages", _, "threads"]) | ("POST", ["channels", channel, "threads"]) => {
            let guild = lock(&shared.channels)
                .get(&parse(channel))
                .and_then(|c| c["guild_id"].as_str().map(parse))
                .unwrap_or(1);
            let thread = id();
            let mut json = guild_channel_json(guild, thread, Some(parse(channel)), 11);
            json["name"] = body["name"].clone();
            lock(&shared.channels).insert(thread, json.clone());
            json_ok(json)
        }
        ("GET", ["applications", _, "commands"]) => json_ok(Value::Array(lock(&shared.commands).clone())),
        ("PUT", ["applications", _, "commands"]) => {
            let commands: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c["id"] = json!(id().to_string());
                    c["application_id"] = json!(APPLICATION_ID.to_string());
                    c["version"] = json!("1");
                    c["type"] = json!(1);
                    c["default_member_permissions"] = Value::Null;
                    c
                })
                .collect();
            *lock(&shared.commands) = commands.clone();
            json_ok(Value::Array(commands))
        }
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) | ("POST", ["webhooks", _, _]) => {
            let content = body["content"].as_str().unwrap_or_default();
            // Discord ids are never 0; the channel is not known here.
            json_ok(message_json(id(), 1, content))
        }
        _ => not_found("fake Discord: no such route", 0),
    }
}

async fn gateway(mut socket: WebSocket, shared: Arc<Shared>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let (commands, mut receiver) = mpsc::unbounded_channel::<GatewayCommand>();
    if send_json(&mut socket, &json!({"op": 10, "d": {"heartbeat_interval": 41_250}})).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { break };
                let text = match message {
                    Message::Text(text) => text.to_string(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                match frame["op"].as_u64() {
                    Some(1) if send_json(&mut socket, &json!({"op": 11})).await.is_err() => break,
                    Some(1) => {}
                    Some(2) => {
                        lock(&shared.identifies).push(frame["d"].clone());
                        let reject = shared.reject_identify.load(Ordering::SeqCst);
                        if reject != 0 {
                            shared.changed.notify_waiters();
                            let _ = socket.send(close(reject)).await;
                            break;
                        }
                        let ready = json!({
                            "v": 10, "user": user_json(BOT_USER_ID, BOT_NAME, true), "guilds": [],
                            "session_id": "fake-session", "resume_gateway_url": "ws://unused.invalid",
                            "shard": [0, 1], "application": {"id": APPLICATION_ID.to_string(), "flags": 0},
                        });
                        if send_dispatch(&mut socket, &shared, "READY", ready).await.is_err() { break }
                        if go_live(&mut socket, &shared, &commands).await.is_err() { break }
                    }
                    Some(6) => {
                        shared.resumes.fetch_add(1, Ordering::SeqCst);
                        if send_dispatch(&mut socket, &shared, "RESUMED", json!({})).await.is_err() { break }
                        if go_live(&mut socket, &shared, &commands).await.is_err() { break }
                    }
                    _ => {}
                }
            }
            Some(command) = receiver.recv() => match command {
                GatewayCommand::Dispatch(event, data) => {
                    if send_dispatch(&mut socket, &shared, &event, data).await.is_err() { break }
                }
                GatewayCommand::Close(code) => {
                    let _ = socket.send(close(code)).await;
                    break;
                }
            },
        }
    }
    // Forget this connection if it is still the live one; undelivered dispatches wait for the next.
    {
        let mut live = lock(&shared.gateway);
        if live.as_ref().is_some_and(|l| l.same_channel(&commands)) {
            *live = None;
        }
    }
    receiver.close();
    while let Ok(GatewayCommand::Dispatch(event, data)) = receiver.try_recv() {
        lock(&shared.pending).push_back((event, data));
    }
    shared.changed.notify_waiters();
}

/// Makes this connection the live one and flushes dispatches queued while none was.
async fn go_live(
    socket: &mut WebSocket,
    shared: &Shared,
    commands: &mpsc::UnboundedSender<GatewayCommand>,
) -> Result<(), axum::Error> {
    *lock(&shared.gateway) = Some(commands.clone());
    shared.changed.notify_waiters();
    loop {
        let next = lock(&shared.pending).pop_front();
        let Some((event, data)) = next else { return Ok(()) };
        send_dispatch(socket, shared, &event, data).await?;
    }
}

async fn send_dispatch(socket: &mut WebSocket, shared: &Shared, event: &str, data: Value) -> Result<(), axum::Error> {
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    send_json(socket, &json!({"op": 0, "t": event, "s": seq, "d": data})).await
}

async fn send_json(socket: &mut WebSocket, value: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(value.to_string().into())).await
}

fn close(code: u16) -> Message {
    Message::Close(Some(CloseFrame { code, reason: "fake Discord closed the connection".into() }))
}

fn user_json(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "avatar": null, "global_name": name, "bot": bot})
}

fn message_json(id: u64, channel: u64, content: &str) -> Value {
    json!({
        "id": id.to_string(), "channel_id": channel.to_string(), "author": user_json(BOT_USER_ID, BOT_NAME, true),
        "content": content, "timestamp": TIMESTAMP, "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
        "pinned": false, "type": 0,
    })
}

fn guild_channel_json(guild: u64, channel: u64, parent: Option<u64>, kind: u8) -> Value {
    let mut json = json!({
        "id": channel.to_string(), "guild_id": guild.to_string(), "type": kind, "name": format!("channel-{channel}"),
        "position": 0, "permission_overwrites": [],
    });
    if let Some(parent) = parent {
        json["parent_id"] = json!(parent.to_string());
        json["thread_metadata"] =
            json!({"archived": false, "auto_archive_duration": 1440, "archive_timestamp": TIMESTAMP, "locked": false});
    }
    json
}

fn json_ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn not_found(message: &str, code: u32) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"message": message, "code": code}))).into_response()
}

/// Locks a mutex, carrying on after a panic elsewhere: the data (a log, a queue) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

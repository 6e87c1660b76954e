//! A fake Telegram Bot API over real HTTP (dev-only test support).
//!
//! [`FakeTelegram`] listens on `127.0.0.1` on a free port and answers the Bot API the way
//! `api.telegram.org` does: `POST /bot{token}/{method}` with a JSON, form or multipart body (a
//! `GET` with query parameters works too), answered with `{"ok": true, "result": ...}` or
//! `{"ok": false, "error_code": N, "description": "..."}` under the matching HTTP status. Files are
//! downloaded from `GET /file/bot{token}/{file_path}`.
//!
//! - Updates: a test pushes messages ([`TelegramMessage`]) or raw updates; `getUpdates` hands them
//!   out with Telegram's semantics (an `offset` confirms every earlier update, unconfirmed ones are
//!   delivered again, `timeout` long-polls), and answers 409 while a webhook is set.
//! - Sending: `sendMessage`, `editMessageText`, `sendChatAction`, `setMessageReaction`,
//!   `createForumTopic` and multipart `sendDocument` are validated like Telegram validates them
//!   (empty or too long text, strict `parse_mode` HTML through [`parse_html`], reactions outside
//!   [`REACTION_EMOJI`]) and recorded ([`SentMessage`], [`SentDocument`], [`SentReaction`]);
//!   `setMyCommands` and `getMyCommands` keep the command menu ([`FakeTelegram::commands`]).
//! - Failures: [`FakeTelegram::fail_next`] answers one call with an error (a 429 carries
//!   `parameters.retry_after`); [`FakeTelegram::drop_polls`] answers long polls with a non-JSON
//!   HTTP 502, as Telegram's front end does when it goes away.
//!
//! Point a client at it with the base URL [`FakeTelegram::api_url`] and the token [`TOKEN`]: the
//! bot's methods live under `{api_url}/bot{TOKEN}/`.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{FromRequest, Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::form::{parse_form, percent_decode};

/// The bot's user id (`getMe`, and the `from` of everything it sends).
pub const BOT_ID: u64 = 4242;
/// The bot's username (`getMe`).
pub const BOT_USERNAME: &str = "spacebot_test_bot";
/// The token the fake accepts until [`FakeTelegram::set_token`] changes it.
pub const TOKEN: &str = "4242:test-token";

/// The emoji a bot may react with (`setMessageReaction`), as the Bot API documents them for
/// `ReactionTypeEmoji`. Note that "❤" is U+2764 alone: "❤️" (with U+FE0F) is refused.
// One row per 20 emoji: rustfmt would put each on its own line.
#[rustfmt::skip]
pub const REACTION_EMOJI: &[&str] = &[
    "👍", "👎", "❤", "🔥", "🥰", "👏", "😁", "🤔", "🤯", "😱", "🤬", "😢", "🎉", "🤩", "🤮", "💩", "🙏", "👌", "🕊", "🤡",
    "🥱", "🥴", "😍", "🐳", "❤‍🔥", "🌚", "🌭", "💯", "🤣", "⚡", "🍌", "🏆", "💔", "🤨", "😐", "🍓", "🍾", "💋", "🖕", "😈",
    "😴", "😭", "🤓", "👻", "👨‍💻", "👀", "🎃", "🙈", "😇", "😨", "🤝", "✍", "🤗", "🫡", "🎅", "🎄", "☃", "💅", "🤪", "🗿",
    "🆒", "💘", "🙉", "🦄", "😘", "💊", "🙊", "😎", "👾", "🤷‍♂", "🤷", "🤷‍♀", "😡",
];

/// The chat actions `sendChatAction` accepts.
const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// The largest request body the fake reads: Telegram's 50 MB upload limit, rounded up.
const MAX_BODY_BYTES: usize = 64 << 20;
/// The first `update_id` handed out.
const FIRST_UPDATE_ID: u32 = 1000;
/// The first `message_thread_id` `createForumTopic` hands out.
const FIRST_TOPIC_ID: i32 = 100;
/// Telegram caps a long poll at 50 seconds.
const MAX_POLL_SECONDS: f64 = 50.0;
/// The longest message text, in UTF-16 code units after parsing.
const MAX_TEXT_UNITS: usize = 4096;
/// The longest caption, in UTF-16 code units after parsing.
const MAX_CAPTION_UNITS: usize = 1024;
/// The icon colour `createForumTopic` reports (Telegram's default blue).
const TOPIC_ICON_COLOR: u32 = 7_322_096;

/// One Bot API call the fake received, answered or refused.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramCall {
    /// The method as it appeared in the path, e.g. `sendMessage`.
    pub method: String,
    /// The arguments: the JSON body, or the form's (or multipart form's) text fields as a JSON
    /// object of strings, with query parameters merged in. Files are not included.
    pub body: Value,
    /// When the call arrived.
    pub at: Instant,
}

/// A message the bot sent (`sendMessage`) or edited (`editMessageText`).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// The chat it went to.
    pub chat_id: i64,
    /// Its id in that chat.
    pub message_id: i32,
    /// The forum topic (`message_thread_id`), if any.
    pub thread_id: Option<i32>,
    /// The message it replies to (`reply_parameters.message_id`), if any.
    pub reply_to: Option<i32>,
    /// The text as the user sees it: HTML tags and entities parsed away.
    pub text: String,
    /// The text as sent.
    pub raw: String,
    /// The `parse_mode` it was sent with.
    pub parse_mode: Option<String>,
    /// Whether this records an `editMessageText`.
    pub edited: bool,
}

/// A document the bot uploaded with `sendDocument`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentDocument {
    /// The chat it went to.
    pub chat_id: i64,
    /// The forum topic (`message_thread_id`), if any.
    pub thread_id: Option<i32>,
    /// The file name of the `document` part.
    pub filename: String,
    /// The caption as the user sees it (parsed like a message's text).
    pub caption: Option<String>,
    /// The content type of the `document` part, if the client gave one.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A reaction the bot set with `setMessageReaction`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentReaction {
    /// The chat of the message.
    pub chat_id: i64,
    /// The message reacted to.
    pub message_id: i32,
    /// The emoji set (empty when the reaction was removed).
    pub emoji: Vec<String>,
}

/// A message a fake user sends the bot, pushed as an update by [`FakeTelegram::push`].
#[derive(Debug, Clone)]
pub struct TelegramMessage {
    chat_id: i64,
    private: bool,
    user_id: u64,
    username: String,
    text: String,
    thread_id: Option<i32>,
    reply_to_bot: bool,
    from_bot: bool,
    document: Option<Value>,
    photo: Option<Value>,
    edited: bool,
}

impl TelegramMessage {
    /// A message in the private chat between user `user_id` and the bot.
    pub fn private(user_id: u64, text: &str) -> Self {
        Self {
            chat_id: i64::try_from(user_id).unwrap_or(i64::MAX),
            private: true,
            user_id,
            username: "alice".to_owned(),
            text: text.to_owned(),
            thread_id: None,
            reply_to_bot: false,
            from_bot: false,
            document: None,
            photo: None,
            edited: false,
        }
    }

    /// A message by `user_id` in the supergroup `chat_id` (a forum: "Test group").
    pub fn group(chat_id: i64, user_id: u64, text: &str) -> Self {
        Self { chat_id, private: false, ..Self::private(user_id, text) }
    }

    /// Posts it in the forum topic `thread_id`.
    pub fn in_topic(mut self, thread_id: i32) -> Self {
        self.thread_id = Some(thread_id);
        self
    }

    /// Makes it a reply to an earlier message of the bot in the same chat.
    pub fn replying_to_bot(mut self) -> Self {
        self.reply_to_bot = true;
        self
    }

    /// Makes the sender another bot.
    pub fn from_bot(mut self) -> Self {
        self.from_bot = true;
        self
    }

    /// Sets the sender's username and first name (by default `alice`).
    pub fn by(mut self, username: &str) -> Self {
        self.username = username.to_owned();
        self
    }

    /// Attaches a document; the text becomes its caption.
    pub fn with_document(mut self, file_id: &str, file_name: &str, mime_type: &str, size: u64) -> Self {
        self.document = Some(json!({
            "file_id": file_id, "file_unique_id": unique_id(file_id), "file_name": file_name,
            "mime_type": mime_type, "file_size": size,
        }));
        self
    }

    /// Attaches a photo (one size); the text becomes its caption.
    pub fn with_photo(mut self, file_id: &str, width: u32, height: u32, size: u64) -> Self {
        self.photo = Some(json!([{
            "file_id": file_id, "file_unique_id": unique_id(file_id), "width": width, "height": height,
            "file_size": size,
        }]));
        self
    }

    /// Pushes it as an `edited_message` update (of the sender's last message in the chat, if any).
    pub fn edited(mut self) -> Self {
        self.edited = true;
        self
    }

    fn chat_json(&self) -> Value {
        if self.private {
            json!({"id": self.chat_id, "type": "private", "first_name": self.username, "username": self.username})
        } else {
            group_chat_json(self.chat_id)
        }
    }
}

/// A scripted error for the next call of a method.
#[derive(Debug, Clone)]
struct Failure {
    method: String,
    status: u16,
    description: String,
    retry_after: Option<u32>,
}

/// A file served by `getFile` and the download route.
#[derive(Debug, Clone)]
struct StoredFile {
    path: String,
    bytes: Vec<u8>,
}

/// What the fake knows of a chat.
#[derive(Debug, Clone)]
struct Chat {
    json: Value,
    /// The last message id used in the chat; bot and user messages share the sequence.
    last_id: i32,
    /// The bot's messages, by id, as they stand now (for `editMessageText`).
    bot_messages: HashMap<i32, BotMessage>,
    /// Each user's last message id, for `edited()` pushes.
    last_by_user: HashMap<u64, i32>,
}

#[derive(Debug, Clone)]
struct BotMessage {
    json: Value,
    thread_id: Option<i32>,
    reply_to: Option<i32>,
}

/// A file part of a multipart body.
#[derive(Debug, Clone)]
struct Upload {
    field: String,
    filename: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

struct Inner {
    token: String,
    calls: Vec<TelegramCall>,
    next_update_id: u32,
    /// Updates not confirmed yet, oldest first.
    queue: VecDeque<(u32, Value)>,
    confirmed: u32,
    chats: HashMap<i64, Chat>,
    files: HashMap<String, StoredFile>,
    failures: Vec<Failure>,
    /// The next `getUpdates` answers 502.
    drop_next_poll: bool,
    /// Bumped by `drop_polls`, so a waiting poll sees it was dropped.
    drop_generation: u64,
    webhook: Option<(String, Option<String>)>,
    sent: Vec<SentMessage>,
    documents: Vec<SentDocument>,
    reactions: Vec<SentReaction>,
    chat_actions: Vec<(i64, Option<i32>, String)>,
    topics: Vec<(i64, i32, String)>,
    next_topic: i32,
    next_file: u64,
    /// The command menu (`setMyCommands`), as `[{command, description}]`.
    commands: Value,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            token: TOKEN.to_owned(),
            calls: Vec::new(),
            next_update_id: FIRST_UPDATE_ID,
            queue: VecDeque::new(),
            confirmed: 0,
            chats: HashMap::new(),
            files: HashMap::new(),
            failures: Vec::new(),
            drop_next_poll: false,
            drop_generation: 0,
            webhook: None,
            sent: Vec::new(),
            documents: Vec::new(),
            reactions: Vec::new(),
            chat_actions: Vec::new(),
            topics: Vec::new(),
            next_topic: FIRST_TOPIC_ID,
            next_file: 1,
            commands: json!([]),
        }
    }
}

impl Inner {
    fn chat(&mut self, chat_id: i64) -> &mut Chat {
        self.chats.entry(chat_id).or_insert_with(|| Chat {
            json: default_chat_json(chat_id),
            last_id: 0,
            bot_messages: HashMap::new(),
            last_by_user: HashMap::new(),
        })
    }

    fn enqueue(&mut self, mut update: Value) -> u32 {
        let id = self.next_update_id;
        self.next_update_id += 1;
        if let Value::Object(map) = &mut update {
            map.insert("update_id".to_owned(), json!(id));
        } else {
            update = json!({"update_id": id});
        }
        self.queue.push_back((id, update));
        id
    }

    /// Forgets every update before `offset`, as a `getUpdates` offset does.
    fn confirm(&mut self, offset: i64) {
        let keep_from = if offset < 0 {
            // A negative offset keeps the last `-offset` updates and forgets the rest.
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            let skip = self.queue.len().saturating_sub(keep);
            match self.queue.get(skip) {
                Some((id, _)) => i64::from(*id),
                None => i64::from(self.next_update_id),
            }
        } else {
            offset
        };
        self.queue.retain(|(id, _)| i64::from(*id) >= keep_from);
        let last_issued = i64::from(self.next_update_id) - 1;
        let upto = (keep_from - 1).min(last_issued);
        if upto >= i64::from(FIRST_UPDATE_ID) {
            self.confirmed = self.confirmed.max(u32::try_from(upto).unwrap_or(u32::MAX));
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Woken when an update is pushed or polls are dropped.
    wake: Notify,
}

/// A fake Telegram Bot API on one local port. Stops when dropped.
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeTelegram {
    /// Starts the fake on a free port of `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind 127.0.0.1:0 for the fake Telegram");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared { inner: Mutex::new(Inner::default()), wake: Notify::new() });
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The API base, `http://127.0.0.1:PORT` (no trailing slash); the bot's methods live under
    /// `{api_url}/bot{TOKEN}/`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the token the fake accepts; calls with any other get 401 `Unauthorized`.
    pub fn set_token(&self, token: &str) {
        lock(&self.shared.inner).token = token.to_owned();
    }

    /// Queues a `message` update (an `edited_message` one for [`TelegramMessage::edited`]) and
    /// returns its `update_id`. The message gets the chat's next `message_id` and the current
    /// date, and its `entities` (or `caption_entities`) as Telegram computes them.
    pub fn push(&self, message: TelegramMessage) -> u32 {
        let date = unix_now();
        let mut inner = lock(&self.shared.inner);
        let chat_json = message.chat_json();
        let chat = inner.chat(message.chat_id);
        chat.json = chat_json.clone();
        let bot_reply = message.reply_to_bot.then(|| {
            chat.last_id += 1;
            let mut replied = bot_message_json(&chat_json, chat.last_id, date, message.thread_id);
            replied["text"] = json!("an earlier answer");
            let id = chat.last_id;
            chat.bot_messages
                .insert(id, BotMessage { json: replied.clone(), thread_id: message.thread_id, reply_to: None });
            replied
        });
        let message_id = match (message.edited, chat.last_by_user.get(&message.user_id)) {
            (true, Some(id)) => *id,
            _ => {
                chat.last_id += 1;
                chat.last_id
            }
        };
        chat.last_by_user.insert(message.user_id, message_id);

        let from = json!({
            "id": message.user_id, "is_bot": message.from_bot, "first_name": message.username,
            "username": message.username,
        });
        let mut json = json!({"message_id": message_id, "from": from, "chat": chat_json, "date": date});
        if let Some(thread) = message.thread_id {
            json["message_thread_id"] = json!(thread);
            json["is_topic_message"] = json!(true);
        }
        if let Some(replied) = bot_reply {
            json["reply_to_message"] = replied;
        }
        let entities = entities(&message.text);
        let has_media = message.document.is_some() || message.photo.is_some();
        if let Some(document) = message.document {
            json["document"] = document;
        }
        if let Some(photo) = message.photo {
            json["photo"] = photo;
        }
        let (text_key, entities_key) = if has_media { ("caption", "caption_entities") } else { ("text", "entities") };
        if !message.text.is_empty() || !has_media {
            json[text_key] = json!(message.text);
        }
        if !entities.is_empty() {
            json[entities_key] = Value::Array(entities);
        }
        let update = if message.edited {
            json["edit_date"] = json!(date);
            json!({"edited_message": json})
        } else {
            json!({"message": json})
        };
        let id = inner.enqueue(update);
        drop(inner);
        self.shared.wake.notify_waiters();
        id
    }

    /// Queues any update object as it is; the fake sets its `update_id`, which it returns.
    pub fn push_raw(&self, update: Value) -> u32 {
        let id = lock(&self.shared.inner).enqueue(update);
        self.shared.wake.notify_waiters();
        id
    }

    /// Serves `bytes` as the file `file_id`: `getFile` answers with `file_path`, and
    /// `/file/bot{token}/{file_path}` with the bytes.
    pub fn add_file(&self, file_id: &str, file_path: &str, bytes: Vec<u8>) {
        lock(&self.shared.inner).files.insert(file_id.to_owned(), StoredFile { path: file_path.to_owned(), bytes });
    }

    /// Answers the next call of `method` with HTTP `status` and
    /// `{"ok": false, "error_code": status, "description": description}`, plus
    /// `"parameters": {"retry_after": N}` when `retry_after` is given (a 429 is a flood limit).
    pub fn fail_next(&self, method: &str, status: u16, description: &str, retry_after: Option<u32>) {
        lock(&self.shared.inner).failures.push(Failure {
            method: method.to_owned(),
            status,
            description: description.to_owned(),
            retry_after,
        });
    }

    /// Answers every `getUpdates` waiting now, and the next one to arrive, with HTTP 502 and the
    /// plain-text body `Bad Gateway` (Telegram's front end going away).
    pub fn drop_polls(&self) {
        {
            let mut inner = lock(&self.shared.inner);
            inner.drop_next_poll = true;
            inner.drop_generation += 1;
        }
        self.shared.wake.notify_waiters();
    }

    /// Every Bot API call so far, in order, including refused ones.
    pub fn calls(&self) -> Vec<TelegramCall> {
        lock(&self.shared.inner).calls.clone()
    }

    /// The calls of one method, in order.
    pub fn calls_to(&self, method: &str) -> Vec<TelegramCall> {
        self.calls().into_iter().filter(|call| call.method == method).collect()
    }

    /// The messages the bot sent or edited successfully, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        lock(&self.shared.inner).sent.clone()
    }

    /// The documents the bot uploaded successfully, in order.
    pub fn documents(&self) -> Vec<SentDocument> {
        lock(&self.shared.inner).documents.clone()
    }

    /// The reactions the bot set, in order.
    pub fn reactions(&self) -> Vec<SentReaction> {
        lock(&self.shared.inner).reactions.clone()
    }

    /// The chat actions the bot sent: `(chat_id, message_thread_id, action)`.
    pub fn chat_actions(&self) -> Vec<(i64, Option<i32>, String)> {
        lock(&self.shared.inner).chat_actions.clone()
    }

    /// The bot's command menu as `setMyCommands` last set it: `(command, description)` pairs.
    pub fn commands(&self) -> Vec<(String, String)> {
        let commands = lock(&self.shared.inner).commands.clone();
        commands
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["command"].as_str().unwrap_or_default().to_owned(),
                    c["description"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The forum topics the bot created: `(chat_id, message_thread_id, name)`.
    pub fn topics(&self) -> Vec<(i64, i32, String)> {
        lock(&self.shared.inner).topics.clone()
    }

    /// The highest `update_id` a `getUpdates` offset confirmed (0 if none).
    pub fn confirmed(&self) -> u32 {
        lock(&self.shared.inner).confirmed
    }

    /// How many updates are queued and not confirmed yet.
    pub fn pending_updates(&self) -> usize {
        lock(&self.shared.inner).queue.len()
    }

    /// The `url` and `secret_token` of the webhook `setWebhook` set; `None` after
    /// `deleteWebhook` (or before any).
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        lock(&self.shared.inner).webhook.clone()
    }

    /// Waits until `check` holds, checking every 20 ms.
    ///
    /// # Panics
    ///
    /// When `timeout` passes first, naming `what` and listing the calls seen.
    pub async fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&FakeTelegram) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(self) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("fake Telegram: waited {timeout:?} for {what}; calls: {:#?}", self.calls());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram").field("addr", &self.addr).finish()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/file/bot") {
        return download(&shared, rest);
    }
    let Some((token, method)) = path.strip_prefix("/bot").and_then(|rest| rest.split_once('/')) else {
        return error(404, "Not Found", None);
    };
    let token = percent_decode(token, false);
    let method = method.to_owned();
    let (args, uploads) = match read_args(request).await {
        Ok(read) => read,
        Err(reason) => {
            record(&shared, &method, Value::Object(Map::new()));
            return bad_request(&reason);
        }
    };
    record(&shared, &method, args.clone());

    let failure = {
        let mut inner = lock(&shared.inner);
        if token != inner.token {
            return error(401, "Unauthorized", None);
        }
        let found = inner.failures.iter().position(|f| f.method.eq_ignore_ascii_case(&method));
        found.map(|i| inner.failures.remove(i))
    };
    if let Some(failure) = failure {
        return error(failure.status, &failure.description, failure.retry_after);
    }

    // Telegram's method names are case-insensitive.
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(bot_user_json()),
        "getupdates" => get_updates(&shared, &args).await,
        "setwebhook" => {
            let url = str_arg(&args, "url").unwrap_or_default();
            // An empty url removes the webhook, as on Telegram.
            lock(&shared.inner).webhook =
                (!url.is_empty()).then(|| (url, str_arg(&args, "secret_token").filter(|s| !s.is_empty())));
            ok(json!(true))
        }
        "deletewebhook" => {
            let mut inner = lock(&shared.inner);
            inner.webhook = None;
            if bool_arg(&args, "drop_pending_updates") {
                inner.queue.clear();
            }
            ok(json!(true))
        }
        "sendmessage" => send_message(&shared, &args),
        "editmessagetext" => edit_message_text(&shared, &args),
        "sendchataction" => send_chat_action(&shared, &args),
        "setmessagereaction" => set_message_reaction(&shared, &args),
        "createforumtopic" => create_forum_topic(&shared, &args),
        "senddocument" => send_document(&shared, &args, uploads),
        "getfile" => get_file(&shared, &args),
        "getmycommands" => ok(lock(&shared.inner).commands.clone()),
        "setmycommands" => set_my_commands(&shared, &args),
        _ => error(404, "Not Found", None),
    }
}

fn record(shared: &Shared, method: &str, body: Value) {
    lock(&shared.inner).calls.push(TelegramCall { method: method.to_owned(), body, at: Instant::now() });
}

/// `GET /file/bot{token}/{file_path}`; `rest` is what follows `/file/bot`.
fn download(shared: &Shared, rest: &str) -> Response {
    let Some((token, file_path)) = rest.split_once('/') else {
        return error(404, "Not Found", None);
    };
    let inner = lock(&shared.inner);
    if percent_decode(token, false) != inner.token {
        return error(401, "Unauthorized", None);
    }
    let file_path = percent_decode(file_path, false);
    match inner.files.values().find(|file| file.path == file_path) {
        Some(file) => ([(header::CONTENT_TYPE, "application/octet-stream")], file.bytes.clone()).into_response(),
        None => error(404, "Not Found", None),
    }
}

async fn get_updates(shared: &Shared, args: &Value) -> Response {
    let offset = int_arg(args, "offset");
    let limit = usize::try_from(int_arg(args, "limit").unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let timeout = float_arg(args, "timeout").unwrap_or(0.0).clamp(0.0, MAX_POLL_SECONDS);
    let generation = {
        let mut inner = lock(&shared.inner);
        if inner.webhook.is_some() {
            return error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                None,
            );
        }
        if std::mem::take(&mut inner.drop_next_poll) {
            return bad_gateway();
        }
        if let Some(offset) = offset {
            inner.confirm(offset);
        }
        inner.drop_generation
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
    loop {
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let inner = lock(&shared.inner);
            if inner.drop_generation != generation {
                return bad_gateway();
            }
            let from = offset.filter(|offset| *offset > 0).unwrap_or(0);
            let batch: Vec<Value> = inner
                .queue
                .iter()
                .filter(|(id, _)| i64::from(*id) >= from)
                .take(limit)
                .map(|(_, update)| update.clone())
                .collect();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(batch));
            }
        }
        // On timeout the next turn answers what there is (possibly nothing).
        let _ = tokio::time::timeout_at(deadline, woken).await;
    }
}

/// A message's text as sent, its parse mode, and the text as the user sees it; or Telegram's
/// refusal (unparseable, too long, empty).
fn message_text(args: &Value) -> Result<(String, Option<String>, String), Box<Response>> {
    let raw = str_arg(args, "text").unwrap_or_default();
    let parse_mode = str_arg(args, "parse_mode").filter(|mode| !mode.is_empty());
    let text = rendered(&raw, parse_mode.as_deref(), MAX_TEXT_UNITS, "message is too long")
        .map_err(|reason| Box::new(bad_request(&reason)))?;
    if text.trim().is_empty() {
        return Err(Box::new(bad_request("message text is empty")));
    }
    Ok((raw, parse_mode, text))
}

fn send_message(shared: &Shared, args: &Value) -> Response {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return chat_id_error(args);
    };
    let (raw, parse_mode, text) = match message_text(args) {
        Ok(parts) => parts,
        Err(response) => return *response,
    };
    let thread_id = int_arg(args, "message_thread_id").and_then(|id| i32::try_from(id).ok()).filter(|id| *id != 0);
    let reply_to = reply_to(args);

    let date = unix_now();
    let mut inner = lock(&shared.inner);
    let chat = inner.chat(chat_id);
    chat.last_id += 1;
    let message_id = chat.last_id;
    let mut message = bot_message_json(&chat.json, message_id, date, thread_id);
    message["text"] = json!(text);
    chat.bot_messages.insert(message_id, BotMessage { json: message.clone(), thread_id, reply_to });
    inner.sent.push(SentMessage { chat_id, message_id, thread_id, reply_to, text, raw, parse_mode, edited: false });
    ok(message)
}

fn edit_message_text(shared: &Shared, args: &Value) -> Response {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return chat_id_error(args);
    };
    let Some(message_id) = int_arg(args, "message_id").and_then(|id| i32::try_from(id).ok()) else {
        return bad_request("message identifier is not specified");
    };
    let (raw, parse_mode, text) = match message_text(args) {
        Ok(parts) => parts,
        Err(response) => return *response,
    };

    let date = unix_now();
    let mut inner = lock(&shared.inner);
    let Some(message) = inner.chats.get_mut(&chat_id).and_then(|chat| chat.bot_messages.get_mut(&message_id)) else {
        return bad_request("message to edit not found");
    };
    message.json["text"] = json!(text);
    message.json["edit_date"] = json!(date);
    let (result, thread_id, reply_to) = (message.json.clone(), message.thread_id, message.reply_to);
    inner.sent.push(SentMessage { chat_id, message_id, thread_id, reply_to, text, raw, parse_mode, edited: true });
    ok(result)
}

fn send_chat_action(shared: &Shared, args: &Value) -> Response {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return chat_id_error(args);
    };
    let action = str_arg(args, "action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return bad_request("wrong parameter action in request");
    }
    let thread_id = int_arg(args, "message_thread_id").and_then(|id| i32::try_from(id).ok()).filter(|id| *id != 0);
    lock(&shared.inner).chat_actions.push((chat_id, thread_id, action));
    ok(json!(true))
}

fn set_message_reaction(shared: &Shared, args: &Value) -> Response {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return chat_id_error(args);
    };
    let Some(message_id) = int_arg(args, "message_id").and_then(|id| i32::try_from(id).ok()) else {
        return bad_request("message identifier is not specified");
    };
    let reaction = json_arg(args, "reaction").unwrap_or(Value::Array(Vec::new()));
    let Value::Array(reaction) = reaction else {
        return bad_request("can't parse reaction types JSON object");
    };
    let mut emoji = Vec::new();
    for kind in &reaction {
        match (kind["type"].as_str(), kind["emoji"].as_str()) {
            (Some("emoji"), Some(e)) if REACTION_EMOJI.contains(&e) => emoji.push(e.to_owned()),
            _ => return bad_request("REACTION_INVALID"),
        }
    }
    // Bots count as non-premium users: one reaction per message.
    if emoji.len() > 1 {
        return bad_request("REACTIONS_TOO_MUCH");
    }
    lock(&shared.inner).reactions.push(SentReaction { chat_id, message_id, emoji });
    ok(json!(true))
}

/// `setMyCommands`, checked as Telegram does: 1-32 lowercase letters, digits and underscores, a
/// description of 1-256 characters, at most 100 commands. Forms send the list as a JSON string.
fn set_my_commands(shared: &Shared, args: &Value) -> Response {
    let commands = match &args["commands"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let Some(list) = commands.as_array() else {
        return bad_request("can't parse commands JSON object");
    };
    if list.len() > 100 {
        return bad_request("too many commands");
    }
    for command in list {
        let name = command["command"].as_str().unwrap_or_default();
        let valid = (1..=32).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return bad_request("BOT_COMMAND_INVALID");
        }
        let description = command["description"].as_str().unwrap_or_default();
        if !(1..=256).contains(&description.chars().count()) {
            return bad_request("BOT_COMMAND_DESCRIPTION_INVALID");
        }
    }
    lock(&shared.inner).commands = commands;
    ok(json!(true))
}

fn create_forum_topic(shared: &Shared, args: &Value) -> Response {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return chat_id_error(args);
    };
    let name = str_arg(args, "name").unwrap_or_default();
    if name.is_empty() {
        return bad_request("TOPIC_TITLE_EMPTY");
    }
    let mut inner = lock(&shared.inner);
    let thread_id = inner.next_topic;
    inner.next_topic += 1;
    inner.topics.push((chat_id, thread_id, name.clone()));
    ok(json!({"message_thread_id": thread_id, "name": name, "icon_color": TOPIC_ICON_COLOR}))
}

fn send_document(shared: &Shared, args: &Value, uploads: Vec<Upload>) -> Response {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return chat_id_error(args);
    };
    let raw_caption = str_arg(args, "caption");
    let parse_mode = str_arg(args, "parse_mode").filter(|mode| !mode.is_empty());
    let caption = match raw_caption
        .as_deref()
        .map(|raw| rendered(raw, parse_mode.as_deref(), MAX_CAPTION_UNITS, "message caption is too long"))
    {
        Some(Ok(caption)) => Some(caption).filter(|caption| !caption.is_empty()),
        Some(Err(reason)) => return bad_request(&reason),
        None => None,
    };
    let thread_id = int_arg(args, "message_thread_id").and_then(|id| i32::try_from(id).ok()).filter(|id| *id != 0);

    let mut inner = lock(&shared.inner);
    let upload = uploads.into_iter().find(|upload| upload.field == "document");
    let (filename, content_type, bytes) = match (upload, str_arg(args, "document")) {
        (Some(upload), _) => (upload.filename, upload.content_type, upload.bytes),
        // A `file_id` of a known file sends it again.
        (None, Some(file_id)) => match inner.files.get(&file_id) {
            Some(file) => {
                let name = file.path.rsplit('/').next().unwrap_or_default().to_owned();
                (name, None, file.bytes.clone())
            }
            None => return bad_request("wrong file identifier/HTTP URL specified"),
        },
        (None, None) => return bad_request("there is no document in the request"),
    };
    if bytes.is_empty() {
        return bad_request("file must be non-empty");
    }

    let file_id = format!("doc-{}", inner.next_file);
    inner.next_file += 1;
    let size = bytes.len();
    inner
        .files
        .insert(file_id.clone(), StoredFile { path: format!("documents/{file_id}/{filename}"), bytes: bytes.clone() });
    let date = unix_now();
    let chat = inner.chat(chat_id);
    chat.last_id += 1;
    let message_id = chat.last_id;
    let mut message = bot_message_json(&chat.json, message_id, date, thread_id);
    message["document"] = json!({
        "file_id": file_id, "file_unique_id": unique_id(&file_id), "file_name": filename, "file_size": size,
    });
    if let Some(content_type) = &content_type {
        message["document"]["mime_type"] = json!(content_type);
    }
    if let Some(caption) = &caption {
        message["caption"] = json!(caption);
    }
    chat.bot_messages.insert(message_id, BotMessage { json: message.clone(), thread_id, reply_to: reply_to(args) });
    inner.documents.push(SentDocument { chat_id, thread_id, filename, caption, content_type, bytes });
    ok(message)
}

fn get_file(shared: &Shared, args: &Value) -> Response {
    let file_id = str_arg(args, "file_id").unwrap_or_default();
    match lock(&shared.inner).files.get(&file_id) {
        Some(file) => ok(json!({
            "file_id": file_id, "file_unique_id": unique_id(&file_id), "file_size": file.bytes.len(),
            "file_path": file.path,
        })),
        None => bad_request("invalid file_id"),
    }
}

/// The text as the user sees it under `parse_mode`, or the reason of the 400 Telegram answers
/// (after `Bad Request: `).
fn rendered(raw: &str, parse_mode: Option<&str>, max_units: usize, too_long: &str) -> Result<String, String> {
    let text = match parse_mode {
        None => raw.to_owned(),
        Some(mode) if mode.eq_ignore_ascii_case("html") => {
            parse_html(raw).map_err(|reason| format!("can't parse entities: {reason}"))?
        }
        Some(mode) if mode.eq_ignore_ascii_case("markdown") || mode.eq_ignore_ascii_case("markdownv2") => {
            return Err("the fake supports parse_mode HTML only".to_owned());
        }
        Some(_) => return Err("unsupported parse_mode".to_owned()),
    };
    if text.encode_utf16().count() > max_units {
        return Err(too_long.to_owned());
    }
    Ok(text)
}

/// `reply_parameters.message_id` (an object, or a JSON string in a form), or the older
/// `reply_to_message_id`.
fn reply_to(args: &Value) -> Option<i32> {
    let from_parameters = json_arg(args, "reply_parameters").and_then(|parameters| int_arg(&parameters, "message_id"));
    from_parameters.or_else(|| int_arg(args, "reply_to_message_id")).and_then(|id| i32::try_from(id).ok())
}

fn chat_id_error(args: &Value) -> Response {
    if args.get("chat_id").is_some_and(|chat| !chat.is_null()) {
        bad_request("chat not found")
    } else {
        bad_request("chat_id is empty")
    }
}

/// The arguments of a call (query parameters, then the JSON, form or multipart body) and the
/// file parts of a multipart body.
async fn read_args(request: axum::extract::Request) -> Result<(Value, Vec<Upload>), String> {
    let (parts, body) = request.into_parts();
    let mut args = Map::new();
    if let Some(query) = parts.uri.query() {
        args.extend(parse_form(query));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut uploads = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        let request = axum::extract::Request::from_parts(parts, body);
        let mut form = Multipart::from_request(request, &()).await.map_err(|e| e.body_text())?;
        while let Some(field) = form.next_field().await.map_err(|e| e.body_text())? {
            let name = field.name().unwrap_or_default().to_owned();
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field.bytes().await.map_err(|e| e.body_text())?;
            match filename {
                Some(filename) => uploads.push(Upload { field: name, filename, content_type, bytes: bytes.to_vec() }),
                None => {
                    args.insert(name, Value::String(String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        }
        return Ok((Value::Object(args), uploads));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| format!("can't read the body: {e}"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Value::Object(args), uploads));
    }
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) if !is_form => args.extend(map),
        Ok(Value::Null) if !is_form => {}
        Ok(_) | Err(_) if content_type.starts_with("application/json") => {
            return Err("can't parse the JSON body: an object is expected".to_owned());
        }
        _ => args.extend(parse_form(&String::from_utf8_lossy(&bytes))),
    }
    Ok((Value::Object(args), uploads))
}

/// An integer argument, given as a number or (in a form) a string.
fn int_arg(args: &Value, key: &str) -> Option<i64> {
    match args.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float_arg(args: &Value, key: &str) -> Option<f64> {
    match args.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_arg(args: &Value, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bool_arg(args: &Value, key: &str) -> bool {
    match args.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

/// A structured argument: JSON in a JSON body, a JSON string in a form.
fn json_arg(args: &Value, key: &str) -> Option<Value> {
    match args.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn bot_user_json() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Spacebot", "username": BOT_USERNAME})
}

fn bot_message_json(chat: &Value, message_id: i32, date: u64, thread_id: Option<i32>) -> Value {
    let mut message = json!({"message_id": message_id, "from": bot_user_json(), "chat": chat, "date": date});
    if let Some(thread) = thread_id {
        message["message_thread_id"] = json!(thread);
        message["is_topic_message"] = json!(true);
    }
    message
}

fn group_chat_json(chat_id: i64) -> Value {
    json!({"id": chat_id, "type": "supergroup", "title": "Test group", "is_forum": true})
}

/// A chat the fake has not seen a message in: positive ids are users, negative ones groups.
fn default_chat_json(chat_id: i64) -> Value {
    if chat_id > 0 { json!({"id": chat_id, "type": "private", "first_name": "User"}) } else { group_chat_json(chat_id) }
}

fn unique_id(file_id: &str) -> String {
    format!("unique-{file_id}")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}

/// The entities Telegram detects in a user's text: a `bot_command` at the start (`/word` or
/// `/word@name`) and a `mention` for each `@username`, with offsets and lengths in UTF-16 units.
fn entities(text: &str) -> Vec<Value> {
    let chars: Vec<char> = text.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Run length of word characters from `start`.
    let word_run = |start: usize| chars.get(start..).map_or(0, |rest| rest.iter().take_while(|c| is_word(**c)).count());
    let mut found = Vec::new();
    if chars.first() == Some(&'/') {
        let mut end = 1 + word_run(1);
        if end > 1 {
            if chars.get(end) == Some(&'@') && word_run(end + 1) > 0 {
                end += 1 + word_run(end + 1);
            }
            // Everything up to `end` is ASCII, one UTF-16 unit per char.
            found.push(json!({"type": "bot_command", "offset": 0, "length": end}));
        }
    }
    let mut offset = 0;
    for (i, c) in chars.iter().enumerate() {
        let starts_mention = *c == '@' && (i == 0 || !is_word(chars[i - 1]) && chars[i - 1] != '@');
        let run = if starts_mention { word_run(i + 1) } else { 0 };
        if (3..=32).contains(&run) && chars.get(i + 1 + run) != Some(&'@') {
            found.push(json!({"type": "mention", "offset": offset, "length": 1 + run}));
        }
        offset += c.len_utf16();
    }
    found
}

/// Parses Telegram-flavoured HTML the way `parse_mode: "HTML"` does, strictly, and returns the
/// plain text a user sees.
///
/// Allowed tags: `b`, `strong`, `i`, `em`, `u`, `ins`, `s`, `strike`, `del`, `tg-spoiler`,
/// `span class="tg-spoiler"`, `a href="..."`, `code`, `pre` (with `<pre><code
/// class="language-x">` for a language), `blockquote` (optionally `expandable`) and
/// `tg-emoji emoji-id="..."`. Tags must be closed and nest properly; attribute values are quoted
/// (double or single) or bare; other attributes are ignored, as Telegram does. The only named
/// entities are `&lt;`, `&gt;`, `&amp;` and `&quot;`; numeric ones (`&#NN;`, `&#xNN;`) decode too.
/// A lone `>` is text.
///
/// # Errors
///
/// The reason Telegram would give after `can't parse entities: `, such as
/// `Unsupported start tag "div" at byte offset 0`, `Unmatched end tag "i" at byte offset 5,
/// expected "</b>"`, or `Can't find end tag corresponding to start tag "b"`, for an unsupported or
/// unclosed tag, a misnested end tag, a missing required attribute, a `<` that starts no tag, or an
/// `&` that starts no supported entity.
pub fn parse_html(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    let mut plain_from = 0;
    while i < bytes.len() {
        match bytes[i] {
            // `<` and `&` are ASCII, so these byte offsets are char boundaries.
            b'<' => {
                out.push_str(&text[plain_from..i]);
                i = parse_tag(text, i, &mut open)?;
                plain_from = i;
            }
            b'&' => {
                out.push_str(&text[plain_from..i]);
                let (decoded, next) = parse_entity(text, i)?;
                out.push(decoded);
                i = next;
                plain_from = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[plain_from..]);
    match open.last() {
        Some(name) => Err(format!("Can't find end tag corresponding to start tag \"{name}\"")),
        None => Ok(out),
    }
}

const HTML_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "tg-spoiler",
    "span",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Parses the tag starting at the `<` at `start`, updating the open tags; returns the offset after
/// its `>`.
fn parse_tag(text: &str, start: usize, open: &mut Vec<String>) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
        i += 1;
    }
    let name = text[name_start..i].to_ascii_lowercase();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("Unexpected \"<\" at byte offset {start}; a literal \"<\" is written &lt;"));
    }
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };

    if closing {
        i = skip_spaces(i);
        if bytes.get(i) != Some(&b'>') {
            return Err(format!("Unclosed end tag \"{name}\" at byte offset {start}"));
        }
        return match open.last() {
            Some(top) if *top == name => {
                open.pop();
                Ok(i + 1)
            }
            Some(top) => Err(format!("Unmatched end tag \"{name}\" at byte offset {start}, expected \"</{top}>\"")),
            None => Err(format!("Unmatched end tag \"{name}\" at byte offset {start}")),
        };
    }

    if !HTML_TAGS.contains(&name.as_str()) {
        return Err(format!("Unsupported start tag \"{name}\" at byte offset {start}"));
    }
    let mut attributes: Vec<(String, String)> = Vec::new();
    loop {
        i = skip_spaces(i);
        let Some(&byte) = bytes.get(i) else {
            return Err(format!("Unclosed start tag \"{name}\" at byte offset {start}"));
        };
        if byte == b'>' {
            i += 1;
            break;
        }
        let attribute_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b'_') {
            i += 1;
        }
        if i == attribute_start {
            let found = text[i..].chars().next().unwrap_or_default();
            return Err(format!("Unexpected \"{found}\" in start tag \"{name}\" at byte offset {i}"));
        }
        let attribute = text[attribute_start..i].to_ascii_lowercase();
        i = skip_spaces(i);
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i = skip_spaces(i + 1);
            match bytes.get(i) {
                Some(&quote) if quote == b'"' || quote == b'\'' => {
                    let Some(length) = text[i + 1..].find(char::from(quote)) else {
                        return Err(format!("Unclosed value of attribute \"{attribute}\" at byte offset {i}"));
                    };
                    value = unescape(&text[i + 1..i + 1 + length], i + 1)?;
                    i += length + 2;
                }
                Some(_) => {
                    let value_start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = unescape(&text[value_start..i], value_start)?;
                }
                None => return Err(format!("Unclosed start tag \"{name}\" at byte offset {start}")),
            }
        }
        attributes.push((attribute, value));
    }

    let attribute = |key: &str| attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    match name.as_str() {
        "a" if attribute("href").is_none() => {
            return Err(format!("Tag \"a\" must have attribute \"href\" at byte offset {start}"));
        }
        "span" if attribute("class") != Some("tg-spoiler") => {
            return Err(format!("Tag \"span\" must have class \"tg-spoiler\" at byte offset {start}"));
        }
        "tg-emoji" if attribute("emoji-id").is_none_or(str::is_empty) => {
            return Err(format!("Tag \"tg-emoji\" must have attribute \"emoji-id\" at byte offset {start}"));
        }
        _ => {}
    }
    open.push(name);
    Ok(i)
}

/// Decodes the entity starting at the `&` at `start`; returns the character and the offset after
/// its `;`.
fn parse_entity(text: &str, start: usize) -> Result<(char, usize), String> {
    let bytes = text.as_bytes();
    let mut end = start + 1;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'#') {
        end += 1;
    }
    if end == start + 1 || bytes.get(end) != Some(&b';') {
        return Err(format!(
            "Character \"&\" at byte offset {start} starts no entity; a literal \"&\" is written &amp;"
        ));
    }
    let name = &text[start + 1..end];
    let decoded = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        _ => {
            let code = match name.strip_prefix('#') {
                Some(hex) if hex.starts_with(['x', 'X']) => u32::from_str_radix(&hex[1..], 16).ok(),
                Some(decimal) => decimal.parse::<u32>().ok(),
                None => return Err(format!("Unsupported HTML entity \"&{name};\" at byte offset {start}")),
            };
            code.filter(|code| *code != 0).and_then(char::from_u32)
        }
    };
    match decoded {
        Some(c) => Ok((c, end + 1)),
        None => Err(format!("Invalid HTML entity \"&{name};\" at byte offset {start}")),
    }
}

/// Decodes the entities of an attribute value found at `offset`.
fn unescape(value: &str, offset: usize) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut plain_from = 0;
    while let Some(found) = value[i..].find('&') {
        let at = i + found;
        out.push_str(&value[plain_from..at]);
        let (decoded, next) = parse_entity(value, at)
            .map_err(|_| format!("Character \"&\" at byte offset {} starts no supported entity", offset + at))?;
        out.push(decoded);
        i = next;
        plain_from = next;
    }
    out.push_str(&value[plain_from..]);
    Ok(out)
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": true, "result": result}))).into_response()
}

/// A Bot API error: `{"ok": false, "error_code": status, "description": ...}` under that status.
fn error(status: u16, description: &str, retry_after: Option<u32>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({"retry_after": seconds});
    }
    (code, axum::Json(body)).into_response()
}

fn bad_request(reason: &str) -> Response {
    error(400, &format!("Bad Request: {reason}"), None)
}

fn bad_gateway() -> Response {
    (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "text/plain")], "Bad Gateway").into_response()
}

/// Locks a mutex, carrying on after a panic elsewhere: the data (a log, a queue) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn method_url(fake: &FakeTelegram, method: &str) -> String {
        format!("{}/bot{TOKEN}/{method}", fake.api_url())
    }

    /// Calls `method` with a JSON body; returns the HTTP status and the JSON answer.
    async fn call(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
        let response = client().post(method_url(fake, method)).json(&body).send().await.expect("the fake answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    async fn description(fake: &FakeTelegram, method: &str, body: Value) -> String {
        let (status, answer) = call(fake, method, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["ok"], json!(false));
        assert_eq!(answer["error_code"], json!(400));
        answer["description"].as_str().expect("a description").to_owned()
    }

    #[tokio::test]
    async fn get_me_answers_the_bot() {
        let fake = FakeTelegram::start().await;
        let (status, answer) = call(&fake, "getMe", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(answer["ok"], json!(true));
        assert_eq!(answer["result"]["id"], json!(BOT_ID));
        assert_eq!(answer["result"]["username"], json!(BOT_USERNAME));
        assert_eq!(fake.calls_to("getMe").len(), 1);
    }

    #[tokio::test]
    async fn a_long_poll_returns_an_update_pushed_while_it_waits() {
        let fake = FakeTelegram::start().await;
        let poll = call(&fake, "getUpdates", json!({"timeout": 2}));
        let push = async {
            fake.wait_for("the poll to arrive", Duration::from_secs(2), |f| !f.calls_to("getUpdates").is_empty()).await;
            fake.push(TelegramMessage::private(7, "/start@spacebot_test_bot hi @alice_b"))
        };
        let ((status, answer), update_id) = tokio::join!(poll, push);
        assert_eq!(status, 200);
        assert_eq!(update_id, FIRST_UPDATE_ID);
        let updates = answer["result"].as_array().expect("an array of updates");
        assert_eq!(updates.len(), 1, "{answer}");
        let message = &updates[0]["message"];
        assert_eq!(updates[0]["update_id"], json!(FIRST_UPDATE_ID));
        assert_eq!(message["message_id"], json!(1));
        assert_eq!(message["chat"], json!({"id": 7, "type": "private", "first_name": "alice", "username": "alice"}));
        assert_eq!(message["from"]["is_bot"], json!(false));
        assert!(message["date"].as_u64().is_some_and(|date| date > 1_700_000_000), "{message}");
        assert_eq!(
            message["entities"],
            json!([
                {"type": "bot_command", "offset": 0, "length": 24},
                {"type": "mention", "offset": 28, "length": 8},
            ])
        );
    }

    #[tokio::test]
    async fn a_long_poll_with_nothing_answers_an_empty_list_after_its_timeout() {
        let fake = FakeTelegram::start().await;
        let started = Instant::now();
        let (status, answer) = call(&fake, "getUpdates", json!({"timeout": 1})).await;
        assert_eq!((status, answer["result"].clone()), (200, json!([])));
        assert!(started.elapsed() >= Duration::from_millis(900), "waited only {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_offset_confirms_earlier_updates_and_unconfirmed_ones_come_again() {
        let fake = FakeTelegram::start().await;
        let first = fake.push(TelegramMessage::group(-100, 7, "one"));
        let second = fake.push(TelegramMessage::group(-100, 8, "two").in_topic(5).replying_to_bot());
        assert_eq!(second, first + 1);

        let (_, answer) = call(&fake, "getUpdates", json!({})).await;
        assert_eq!(answer["result"].as_array().map(Vec::len), Some(2));
        let replying = &answer["result"][1]["message"];
        // The replied-to bot message took id 2, so the reply is 3.
        assert_eq!(replying["message_id"], json!(3));
        assert_eq!(replying["message_thread_id"], json!(5));
        assert_eq!(replying["reply_to_message"]["from"]["id"], json!(BOT_ID));
        assert_eq!(replying["chat"]["is_forum"], json!(true));
        assert_eq!(fake.confirmed(), 0);

        // Not confirmed: a new poll without an offset gets both again.
        let (_, again) = call(&fake, "getUpdates", json!({})).await;
        assert_eq!(again["result"], answer["result"]);

        let (_, rest) = call(&fake, "getUpdates", json!({"offset": first + 1})).await;
        assert_eq!(rest["result"].as_array().map(Vec::len), Some(1));
        assert_eq!(rest["result"][0]["update_id"], json!(second));
        assert_eq!((fake.confirmed(), fake.pending_updates()), (first, 1));

        // A form body works like JSON.
        let response = client()
            .post(method_url(&fake, "getUpdates"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("offset={}", second + 1))
            .send()
            .await
            .expect("the fake answers");
        let none: Value = response.json().await.expect("a JSON answer");
        assert_eq!(none["result"], json!([]));
        assert_eq!((fake.confirmed(), fake.pending_updates()), (second, 0));
        assert_eq!(fake.calls_to("getUpdates")[3].body, json!({"offset": (second + 1).to_string()}));
    }

    #[tokio::test]
    async fn a_limit_caps_the_batch() {
        let fake = FakeTelegram::start().await;
        for text in ["a", "b", "c"] {
            fake.push(TelegramMessage::private(7, text));
        }
        let (_, answer) = call(&fake, "getUpdates", json!({"limit": 2})).await;
        assert_eq!(answer["result"].as_array().map(Vec::len), Some(2));
        assert_eq!(answer["result"][1]["message"]["text"], json!("b"));
    }

    #[tokio::test]
    async fn media_and_edits_carry_captions_and_the_original_id() {
        let fake = FakeTelegram::start().await;
        fake.push(TelegramMessage::private(7, "look").by("bob").with_photo("ph1", 640, 480, 1234));
        fake.push(TelegramMessage::private(7, "/report").with_document("d1", "r.pdf", "application/pdf", 9));
        fake.push(TelegramMessage::private(7, "fixed").edited());
        let raw = fake.push_raw(json!({"callback_query": {"id": "cb"}}));
        let (_, answer) = call(&fake, "getUpdates", json!({})).await;
        let updates = answer["result"].as_array().expect("an array of updates");
        assert_eq!(updates[0]["message"]["caption"], json!("look"));
        assert_eq!(updates[0]["message"]["from"]["username"], json!("bob"));
        assert_eq!(updates[0]["message"]["photo"][0]["width"], json!(640));
        assert_eq!(updates[1]["message"]["document"]["file_name"], json!("r.pdf"));
        assert_eq!(updates[1]["message"]["caption_entities"][0]["type"], json!("bot_command"));
        assert_eq!(updates[2]["edited_message"]["message_id"], updates[1]["message"]["message_id"]);
        assert_eq!(updates[3], json!({"callback_query": {"id": "cb"}, "update_id": raw}));
    }

    #[tokio::test]
    async fn fail_next_answers_one_call_with_a_flood_limit() {
        let fake = FakeTelegram::start().await;
        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", Some(3));
        let (status, answer) = call(&fake, "sendMessage", json!({"chat_id": 7, "text": "hi"})).await;
        assert_eq!(status, 429);
        assert_eq!(
            answer,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}})
        );
        assert!(fake.sent().is_empty());
        let (status, answer) = call(&fake, "sendMessage", json!({"chat_id": 7, "text": "hi"})).await;
        assert_eq!(status, 200);
        assert_eq!(answer["result"]["text"], json!("hi"));
        assert_eq!(fake.calls_to("sendMessage").len(), 2);
    }

    #[tokio::test]
    async fn a_wrong_token_is_unauthorized() {
        let fake = FakeTelegram::start().await;
        let response = client().post(format!("{}/bot1:nope/getMe", fake.api_url())).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 401);
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(answer, json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
        assert_eq!(fake.calls_to("getMe").len(), 1, "refused calls are recorded too");

        fake.set_token("1:new");
        let (status, _) = call(&fake, "getMe", json!({})).await;
        assert_eq!(status, 401);
        let response = client().get(format!("{}/bot1:new/getMe", fake.api_url())).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 200);
    }

    #[tokio::test]
    async fn unknown_methods_are_not_found() {
        let fake = FakeTelegram::start().await;
        let (status, answer) = call(&fake, "sendTelepathy", json!({})).await;
        assert_eq!(status, 404);
        assert_eq!(answer, json!({"ok": false, "error_code": 404, "description": "Not Found"}));
    }

    #[tokio::test]
    async fn send_message_parses_html_and_records_what_the_user_sees() {
        let fake = FakeTelegram::start().await;
        let body = json!({
            "chat_id": "-100", "text": "<b>bold</b> &amp; <a href=\"https://x.invalid/?a=1&amp;b=2\">link</a>",
            "parse_mode": "HTML", "message_thread_id": 5, "reply_parameters": {"message_id": 1},
        });
        let (status, answer) = call(&fake, "sendMessage", body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["message_id"], json!(1));
        assert_eq!(answer["result"]["from"]["id"], json!(BOT_ID));
        assert_eq!(answer["result"]["chat"]["type"], json!("supergroup"));
        assert_eq!(fake.sent()[0].text, "bold & link");
        assert_eq!(fake.sent()[0].thread_id, Some(5));
        assert_eq!(fake.sent()[0].reply_to, Some(1));

        let (_, second) = call(&fake, "sendMessage", json!({"chat_id": -100, "text": "next"})).await;
        assert_eq!(second["result"]["message_id"], json!(2));

        let (status, edited) = call(
            &fake,
            "editMessageText",
            json!({"chat_id": -100, "message_id": 1, "text": "<i>new</i>", "parse_mode": "HTML"}),
        )
        .await;
        assert_eq!(status, 200, "{edited}");
        assert_eq!(edited["result"]["text"], json!("new"));
        let last = fake.sent().pop().expect("the edit is recorded");
        assert_eq!((last.edited, last.text.as_str(), last.raw.as_str()), (true, "new", "<i>new</i>"));
        assert_eq!(last.thread_id, Some(5));
    }

    #[tokio::test]
    async fn send_message_refuses_what_telegram_refuses() {
        let fake = FakeTelegram::start().await;
        let cases = [
            (json!({"chat_id": 7, "text": ""}), "Bad Request: message text is empty"),
            (json!({"chat_id": 7, "text": "<b> </b>", "parse_mode": "HTML"}), "Bad Request: message text is empty"),
            (
                json!({"chat_id": 7, "text": "<b>x", "parse_mode": "HTML"}),
                "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"",
            ),
            (
                json!({"chat_id": 7, "text": "*x*", "parse_mode": "MarkdownV2"}),
                "Bad Request: the fake supports parse_mode HTML only",
            ),
            (json!({"chat_id": 7, "text": "x".repeat(4097)}), "Bad Request: message is too long"),
            // 2048 emoji are 4096 UTF-16 units; one more is too long.
            (json!({"chat_id": 7, "text": "😀".repeat(2049)}), "Bad Request: message is too long"),
            (json!({"text": "hi"}), "Bad Request: chat_id is empty"),
        ];
        for (body, expected) in cases {
            assert_eq!(description(&fake, "sendMessage", body.clone()).await, expected, "for {body}");
        }
        let html = json!({"chat_id": 7, "text": "<div>x</div>", "parse_mode": "HTML"});
        assert!(description(&fake, "sendMessage", html).await.contains("Unsupported start tag \"div\""));
        let (status, _) = call(&fake, "sendMessage", json!({"chat_id": 7, "text": "😀".repeat(2048)})).await;
        assert_eq!(status, 200);
        assert_eq!(fake.sent().len(), 1);
        assert_eq!(
            description(&fake, "editMessageText", json!({"chat_id": 7, "message_id": 99, "text": "x"})).await,
            "Bad Request: message to edit not found"
        );
    }

    #[tokio::test]
    async fn reactions_actions_topics_and_webhooks_are_recorded() {
        let fake = FakeTelegram::start().await;
        let reaction =
            |emoji: &str| json!({"chat_id": 7, "message_id": 1, "reaction": [{"type": "emoji", "emoji": emoji}]});
        assert_eq!(call(&fake, "setMessageReaction", reaction("👍")).await.0, 200);
        assert_eq!(description(&fake, "setMessageReaction", reaction("❤️")).await, "Bad Request: REACTION_INVALID");
        assert_eq!(fake.reactions(), vec![SentReaction { chat_id: 7, message_id: 1, emoji: vec!["👍".to_owned()] }]);

        assert_eq!(
            call(&fake, "sendChatAction", json!({"chat_id": -100, "action": "typing", "message_thread_id": 5})).await.0,
            200
        );
        assert_eq!(fake.chat_actions(), vec![(-100, Some(5), "typing".to_owned())]);

        let (_, topic) = call(&fake, "createForumTopic", json!({"chat_id": -100, "name": "Plans"})).await;
        assert_eq!(topic["result"], json!({"message_thread_id": 100, "name": "Plans", "icon_color": 7_322_096}));
        assert_eq!(fake.topics(), vec![(-100, 100, "Plans".to_owned())]);

        call(&fake, "setWebhook", json!({"url": "https://hook.invalid/tg", "secret_token": "s3"})).await;
        assert_eq!(fake.webhook(), Some(("https://hook.invalid/tg".to_owned(), Some("s3".to_owned()))));
        let (status, answer) = call(&fake, "getUpdates", json!({})).await;
        assert_eq!(status, 409);
        assert!(answer["description"].as_str().is_some_and(|d| d.starts_with("Conflict: can't use getUpdates")));
        call(&fake, "deleteWebhook", json!({"drop_pending_updates": false})).await;
        assert_eq!(fake.webhook(), None);
        assert_eq!(call(&fake, "getUpdates", json!({})).await.0, 200);
    }

    #[tokio::test]
    async fn a_multipart_document_is_recorded_with_its_bytes_intact() {
        let fake = FakeTelegram::start().await;
        let bytes: Vec<u8> = vec![0, 1, 2, 255, b'\r', b'\n', b'-', b'-', 0x80, 42];
        let boundary = "fakeTelegramBoundary42";
        let text_part = |name: &str, value: &str| {
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        };
        let mut body = Vec::new();
        body.extend(text_part("chat_id", "-100").into_bytes());
        body.extend(text_part("message_thread_id", "5").into_bytes());
        body.extend(text_part("caption", "<b>the report</b>").into_bytes());
        body.extend(text_part("parse_mode", "HTML").into_bytes());
        body.extend(text_part("reply_parameters", "{\"message_id\":3}").into_bytes());
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"report.bin\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes(),
        );
        body.extend(&bytes);
        body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());

        let response = client()
            .post(method_url(&fake, "sendDocument"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .expect("the fake answers");
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(answer["result"]["document"]["file_name"], json!("report.bin"));
        assert_eq!(answer["result"]["caption"], json!("the report"));
        assert_eq!(
            fake.documents(),
            vec![SentDocument {
                chat_id: -100,
                thread_id: Some(5),
                filename: "report.bin".to_owned(),
                caption: Some("the report".to_owned()),
                content_type: Some("application/octet-stream".to_owned()),
                bytes: bytes.clone(),
            }]
        );
        let recorded = fake.calls_to("sendDocument").pop().expect("the call is recorded");
        assert_eq!(recorded.body["chat_id"], json!("-100"));
        assert_eq!(recorded.body["reply_parameters"], json!("{\"message_id\":3}"));

        // The upload can be fetched back like any file.
        let file_id = answer["result"]["document"]["file_id"].as_str().expect("a file id").to_owned();
        let (_, file) = call(&fake, "getFile", json!({"file_id": file_id})).await;
        let path = file["result"]["file_path"].as_str().expect("a file path");
        let url = format!("{}/file/bot{TOKEN}/{path}", fake.api_url());
        let downloaded = client().get(url).send().await.expect("answer").bytes().await.expect("bytes");
        assert_eq!(downloaded.to_vec(), bytes);
    }

    #[tokio::test]
    async fn added_files_are_served_to_the_right_token_only() {
        let fake = FakeTelegram::start().await;
        fake.add_file("f1", "photos/file_1.jpg", b"jpeg".to_vec());
        let (status, answer) = call(&fake, "getFile", json!({"file_id": "f1"})).await;
        assert_eq!(status, 200);
        assert_eq!(answer["result"]["file_path"], json!("photos/file_1.jpg"));
        assert_eq!(answer["result"]["file_size"], json!(4));
        assert_eq!(description(&fake, "getFile", json!({"file_id": "nope"})).await, "Bad Request: invalid file_id");

        let get = |url: String| async move { client().get(url).send().await.expect("answer") };
        let ok = get(format!("{}/file/bot{TOKEN}/photos/file_1.jpg", fake.api_url())).await;
        assert_eq!(ok.bytes().await.expect("bytes").as_ref(), b"jpeg");
        let wrong = get(format!("{}/file/bot1:x/photos/file_1.jpg", fake.api_url())).await;
        assert_eq!(wrong.status().as_u16(), 401);
        let missing = get(format!("{}/file/bot{TOKEN}/photos/none.jpg", fake.api_url())).await;
        assert_eq!(missing.status().as_u16(), 404);
    }

    #[tokio::test]
    async fn drop_polls_answers_the_waiting_poll_and_the_next_with_a_bad_gateway() {
        let fake = FakeTelegram::start().await;
        let url = method_url(&fake, "getUpdates");
        let waiting = client().post(&url).json(&json!({"timeout": 2})).send();
        let drop = async {
            fake.wait_for("the poll to arrive", Duration::from_secs(2), |f| !f.calls_to("getUpdates").is_empty()).await;
            fake.drop_polls();
        };
        let (response, ()) = tokio::join!(waiting, drop);
        let response = response.expect("the fake answers");
        assert_eq!(response.status().as_u16(), 502);
        assert_eq!(response.text().await.expect("a body"), "Bad Gateway");

        let next = client().post(&url).json(&json!({})).send().await.expect("the fake answers");
        assert_eq!(next.status().as_u16(), 502);
        let (status, _) = call(&fake, "getUpdates", json!({})).await;
        assert_eq!(status, 200, "only the next poll is dropped");
    }

    #[test]
    fn html_with_nested_tags_renders_its_text() {
        let html = "<b>bold <i>both</i></b> <strong>s</strong><em>e</em><u>u</u><ins>i</ins><s>s</s>\
                    <strike>k</strike><del>d</del><tg-spoiler>p</tg-spoiler><span class=\"tg-spoiler\">q</span>\
                    <a href='https://x.invalid'>a</a><code>c</code><blockquote expandable>bq</blockquote>\
                    <tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji><B>caps</B>";
        assert_eq!(parse_html(html), Ok("bold both seuiskdpqacbq👍caps".to_owned()));
    }

    #[test]
    fn html_code_may_name_its_language_inside_pre() {
        let html = "<pre><code class=\"language-rust\">fn main() { a &lt; b &amp;&amp; c &gt; d }</code></pre>";
        assert_eq!(parse_html(html), Ok("fn main() { a < b && c > d }".to_owned()));
    }

    #[test]
    fn html_entities_decode() {
        assert_eq!(parse_html("&lt;&gt;&amp;&quot;&#65;&#x42;&#X1F600;"), Ok("<>&\"AB😀".to_owned()));
        assert_eq!(parse_html("a > b"), Ok("a > b".to_owned()));
        assert_eq!(parse_html("plain ünïcode"), Ok("plain ünïcode".to_owned()));
    }

    #[test]
    fn html_errors_name_the_fault() {
        let error = |html: &str| parse_html(html).expect_err(html);
        assert_eq!(error("<b>x"), "Can't find end tag corresponding to start tag \"b\"");
        assert_eq!(error("<div>x</div>"), "Unsupported start tag \"div\" at byte offset 0");
        assert_eq!(error("x<br>"), "Unsupported start tag \"br\" at byte offset 1");
        assert!(error("<b><i>x</b></i>").starts_with("Unmatched end tag \"b\" at byte offset 7, expected \"</i>\""));
        assert_eq!(error("x</i>"), "Unmatched end tag \"i\" at byte offset 1");
        assert!(error("a < b").starts_with("Unexpected \"<\" at byte offset 2"));
        assert!(error("<3").starts_with("Unexpected \"<\""));
        assert!(error("AT&T").starts_with("Character \"&\" at byte offset 2"));
        assert!(error("a & b").starts_with("Character \"&\""));
        assert!(error("&nbsp;").starts_with("Unsupported HTML entity \"&nbsp;\""));
        assert!(error("&#xZZ;").starts_with("Invalid HTML entity"));
        assert!(error("&#xD800;").starts_with("Invalid HTML entity"));
        assert!(error("<a>x</a>").starts_with("Tag \"a\" must have attribute \"href\""));
        assert!(error("<span>x</span>").starts_with("Tag \"span\" must have class \"tg-spoiler\""));
        assert!(error("<span class=\"bold\">x</span>").starts_with("Tag \"span\" must have class"));
        assert!(error("<tg-emoji>x</tg-emoji>").starts_with("Tag \"tg-emoji\" must have attribute"));
        assert!(error("<a href=\"x").starts_with("Unclosed value of attribute \"href\""));
        assert!(error("<b").starts_with("Unclosed start tag \"b\""));
        assert!(error("<b>x</b").starts_with("Unclosed end tag \"b\""));
        assert!(error("<a href=\"x&y\">x</a>").starts_with("Character \"&\""));
    }

    #[test]
    fn entities_count_utf16_units() {
        assert_eq!(entities("😀 @someone"), vec![json!({"type": "mention", "offset": 3, "length": 8})]);
        assert_eq!(entities("/help"), vec![json!({"type": "bot_command", "offset": 0, "length": 5})]);
        assert!(entities("mail me@example.com or @ab").is_empty());
    }
}

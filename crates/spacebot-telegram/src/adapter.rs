//! [`TelegramAdapter`]: long polling (or a webhook) in, the Bot API out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use frankenstein::AsyncTelegramApi;
use frankenstein::ParseMode;
use frankenstein::methods::{
    CreateForumTopicParams, GetMyCommandsParams, GetUpdatesParams, SendChatActionParams, SendMessageParams,
    SetMessageReactionParams, SetMyCommandsParams,
};
use frankenstein::response::MethodResponse;
use frankenstein::types::{
    AllowedUpdate, BotCommand, ChatAction, Message, ReactionType, ReactionTypeEmoji, ReplyParameters,
};
use tokio::task::JoinHandle;

use spacebot_core::{
    AdapterError, AdapterErrorKind, CHANNEL_KEY, Handoff, InboundMessage, InboundStream, MessagingAdapter,
    OutboundResponse, StatusUpdate,
};

use crate::client::{self, Bot, CallError};
use crate::error::{classify, with_retries};
use crate::format;
use crate::inbound::{Identity, META_CHAT, META_FORUM, META_MESSAGE, META_TOPIC, map_update};
use crate::reaction::telegram_reaction;
use crate::settings::TelegramSettings;
use crate::{CAPTION_LIMIT, MESSAGE_LIMIT};

/// Inbound messages buffered between the receiver and the runtime.
const INBOUND_BUFFER: usize = 64;
/// Telegram shows "typing" for five seconds; it is repeated a little sooner.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// A typing indicator never outlives this, even if the turn's end was never signalled.
const TYPING_LIMIT: Duration = Duration::from_secs(10 * 60);
/// The longest wait between polls after Telegram failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The control commands shown in Telegram's command menu (its names allow no `-`).
const COMMANDS: &[(&str, &str)] = &[
    ("status", "What the conversation is doing"),
    ("stop", "Stop the reply and every task it started"),
    ("pause", "Stop answering until /resume"),
    ("resume", "Answer again"),
    ("new", "Start over with an empty context"),
    ("active", "Answer every message here"),
    ("mention_only", "Answer here only when mentioned or replied to"),
    ("quiet", "Answer nothing here; keep the messages as context"),
];
/// How long shutdown spends telling Telegram which updates were taken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// A Telegram bot, as a [`MessagingAdapter`].
pub struct TelegramAdapter {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: TelegramSettings,
    pub(crate) bot: Bot,
    /// Uploads from memory (frankenstein uploads files on disk only) and image downloads.
    pub(crate) http: reqwest::Client,
    /// The offset that confirms every update taken so far: the last taken update's id + 1, or 0
    /// before the first.
    pub(crate) next_offset: AtomicI64,
    /// The task receiving updates (the poller or the webhook listener).
    receiver: Mutex<Option<JoinHandle<()>>>,
    /// Typing indicators running, by chat and topic.
    typing: Mutex<HashMap<Place, JoinHandle<()>>>,
}

/// A chat, and a forum topic in it.
type Place = (i64, Option<i32>);

/// A file to upload.
struct Upload {
    filename: String,
    mime_type: String,
    data: Vec<u8>,
    caption: Option<String>,
}

/// Where a response goes.
struct Target {
    chat: i64,
    topic: Option<i32>,
    message: Option<i32>,
    forum: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TelegramAdapter {
    /// An adapter for these settings. Nothing connects until `start`.
    ///
    /// # Errors
    ///
    /// When the HTTP client can't be built (no TLS backend; install a rustls crypto provider).
    pub fn new(settings: TelegramSettings) -> Result<Self, AdapterError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(spacebot_core::tls::client_config())
            .connect_timeout(Duration::from_secs(10))
            // A long poll answers within its own timeout; the margin covers a slow network.
            .timeout(settings.poll_timeout + Duration::from_secs(15))
            .user_agent("spacebot-telegram")
            .build()
            .map_err(|e| AdapterError::permanent(&settings.name, "can't build the HTTP client").with_source(e))?;
        let api_url = format!("{}/bot{}", settings.api_base(), settings.token);
        let bot = Bot::new(api_url, http.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                bot,
                http,
                next_offset: AtomicI64::new(0),
                receiver: Mutex::new(None),
                typing: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &TelegramSettings {
        &self.inner.settings
    }
}

impl std::fmt::Debug for TelegramAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramAdapter").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Drop for TelegramAdapter {
    fn drop(&mut self) {
        self.inner.stop_tasks();
    }
}

impl Inner {
    pub(crate) fn name(&self) -> &str {
        &self.settings.name
    }

    fn stop_tasks(&self) {
        if let Some(task) = lock(&self.receiver).take() {
            task.abort();
        }
        for (_, task) in lock(&self.typing).drain() {
            task.abort();
        }
    }

    /// Shows the control commands in Telegram's command menu, when the menu differs (so restarts
    /// don't rewrite it). A failure is logged, not fatal: typed commands work without the menu.
    async fn register_commands(&self) {
        let wanted: Vec<BotCommand> = COMMANDS
            .iter()
            .map(|(command, description)| BotCommand::builder().command(*command).description(*description).build())
            .collect();
        let current = self.bot.get_my_commands(&GetMyCommandsParams::builder().build()).await;
        let same = current.as_ref().is_ok_and(|current| {
            current.result.iter().map(|c| (c.command.as_str(), c.description.as_str())).eq(COMMANDS.iter().copied())
        });
        if same {
            return;
        }
        match self.bot.set_my_commands(&SetMyCommandsParams::builder().commands(wanted).build()).await {
            Ok(_) => tracing::info!(adapter = self.name(), count = COMMANDS.len(), "registered the command menu"),
            Err(error) => {
                tracing::warn!(adapter = self.name(), error = %classify(self.name(), error), "can't register the command menu")
            }
        }
    }

    async fn identity(&self) -> Result<Identity, AdapterError> {
        let me = self.bot.get_me().await.map_err(|e| classify(self.name(), e))?.result;
        Ok(Identity { id: me.id, username: me.username.unwrap_or_default() })
    }

    async fn send_message(
        &self,
        target: &Target,
        topic: Option<i32>,
        reply_to: Option<i32>,
        text: &str,
        parse_mode: Option<ParseMode>,
    ) -> Result<Message, CallError> {
        let reply =
            reply_to.map(|id| ReplyParameters::builder().message_id(id).allow_sending_without_reply(true).build());
        let params = SendMessageParams::builder()
            .chat_id(target.chat)
            .maybe_message_thread_id(topic)
            .text(text)
            .maybe_parse_mode(parse_mode)
            .maybe_reply_parameters(reply)
            .build();
        with_retries(self.settings.rate_limit_retries, || self.bot.send_message(&params)).await.map(|r| r.result)
    }

    /// Sends Markdown `text` as HTML parts. A part Telegram can't parse (which the renderer is
    /// built never to produce) goes again as plain text rather than being lost.
    async fn post(
        &self,
        target: &Target,
        topic: Option<i32>,
        reply_to: Option<i32>,
        text: &str,
    ) -> Result<(), AdapterError> {
        self.stop_typing(target.chat, topic);
        for part in format::split(text, MESSAGE_LIMIT) {
            let html = format::to_html(&part);
            match self.send_message(target, topic, reply_to, &html, Some(ParseMode::Html)).await {
                Ok(_) => {}
                Err(error) if is_parse_error(&error) => {
                    tracing::warn!(adapter = self.name(), %error, "Telegram could not parse a reply's HTML; sending it as plain text");
                    self.send_message(target, topic, reply_to, &part, None)
                        .await
                        .map_err(|e| classify(self.name(), e))?;
                }
                Err(error) => return Err(classify(self.name(), error)),
            }
        }
        Ok(())
    }

    /// A reply in a thread: the message's topic; a new topic in a forum; a reply to the message
    /// elsewhere (Telegram's nearest thing to a thread).
    async fn post_threaded(&self, target: &Target, thread_name: &str, text: &str) -> Result<(), AdapterError> {
        if target.topic.is_some() {
            return self.post(target, target.topic, None, text).await;
        }
        if target.forum {
            let name: String = thread_name.trim().chars().take(128).collect();
            let name = if name.is_empty() { "Thread".to_owned() } else { name };
            let params = CreateForumTopicParams::builder().chat_id(target.chat).name(name).build();
            match with_retries(self.settings.rate_limit_retries, || self.bot.create_forum_topic(&params)).await {
                Ok(topic) => return self.post(target, Some(topic.result.message_thread_id), None, text).await,
                Err(error) => {
                    let error = classify(self.name(), error);
                    if error.kind() != AdapterErrorKind::Permanent {
                        return Err(error);
                    }
                    tracing::warn!(adapter = self.name(), %error, "can't open a forum topic; replying to the message instead");
                }
            }
        }
        self.post(target, None, target.message, text).await
    }

    async fn react(&self, target: &Target, emoji: &str) -> Result<(), AdapterError> {
        let message = target.message.ok_or_else(|| {
            AdapterError::permanent(self.name(), "the message has no Telegram message id to react to")
        })?;
        let reaction = telegram_reaction(emoji).ok_or_else(|| {
            AdapterError::permanent(
                self.name(),
                format!("Telegram offers bots a fixed set of reactions, and `{emoji}` is not one of them (try 👍, ❤, 🔥, 👀 or 🎉)"),
            )
        })?;
        let params = SetMessageReactionParams::builder()
            .chat_id(target.chat)
            .message_id(message)
            .reaction(vec![ReactionType::Emoji(ReactionTypeEmoji { emoji: reaction.to_owned() })])
            .build();
        with_retries(self.settings.rate_limit_retries, || self.bot.set_message_reaction(&params))
            .await
            .map(|_| ())
            .map_err(|e| classify(self.name(), e))
    }

    fn start_typing(self: &Arc<Self>, chat: i64, topic: Option<i32>) {
        let mut typing = lock(&self.typing);
        if typing.get(&(chat, topic)).is_some_and(|task| !task.is_finished()) {
            return;
        }
        let inner = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + TYPING_LIMIT;
            while tokio::time::Instant::now() < deadline {
                let Some(this) = inner.upgrade() else { return };
                let params = SendChatActionParams::builder()
                    .chat_id(chat)
                    .maybe_message_thread_id(topic)
                    .action(ChatAction::Typing)
                    .build();
                if let Err(error) = this.bot.send_chat_action(&params).await {
                    let error = classify(this.name(), error);
                    tracing::debug!(adapter = this.name(), %error, "typing indicator failed");
                    if error.kind() == AdapterErrorKind::Permanent {
                        return;
                    }
                }
                drop(this);
                tokio::time::sleep(TYPING_EVERY).await;
            }
        });
        typing.insert((chat, topic), task);
    }

    fn stop_typing(&self, chat: i64, topic: Option<i32>) {
        if let Some(task) = lock(&self.typing).remove(&(chat, topic)) {
            task.abort();
        }
    }

    /// Uploads a document from memory (`sendDocument` as a multipart form). A caption over
    /// Telegram's caption limit follows the file as a message of its own.
    async fn upload(&self, target: &Target, file: Upload) -> Result<(), AdapterError> {
        self.stop_typing(target.chat, target.topic);
        let (caption, after) = match file.caption {
            Some(caption) if caption.encode_utf16().count() <= CAPTION_LIMIT => (Some(caption), None),
            other => (None, other),
        };
        let url = format!("{}/bot{}/sendDocument", self.settings.api_base(), self.settings.token);
        let form = || {
            let part = reqwest::multipart::Part::bytes(file.data.clone()).file_name(file.filename.clone());
            let part = part.mime_str(&file.mime_type).unwrap_or_else(|_| {
                reqwest::multipart::Part::bytes(file.data.clone()).file_name(file.filename.clone())
            });
            let mut form =
                reqwest::multipart::Form::new().text("chat_id", target.chat.to_string()).part("document", part);
            if let Some(topic) = target.topic {
                form = form.text("message_thread_id", topic.to_string());
            }
            if let Some(caption) = &caption {
                form = form.text("caption", format::to_html(caption)).text("parse_mode", "HTML");
            }
            form
        };
        with_retries(self.settings.rate_limit_retries, || async {
            let response = self.http.post(&url).multipart(form()).send().await?;
            let success = response.status().is_success();
            let body = response.text().await?;
            client::decode::<MethodResponse<Message>>(success, body).map(|_| ())
        })
        .await
        .map_err(|e| classify(self.name(), e))?;
        match after {
            Some(text) => self.post(target, target.topic, None, &text).await,
            None => Ok(()),
        }
    }

    /// Tells Telegram every taken update was handled, so a restart does not see them again.
    async fn confirm_taken(&self) {
        let offset = self.next_offset.load(Ordering::SeqCst);
        if offset == 0 || self.settings.webhook.is_some() {
            return;
        }
        let params = GetUpdatesParams::builder().offset(offset).limit(1).timeout(0).build();
        match tokio::time::timeout(CONFIRM_TIMEOUT, self.bot.get_updates(&params)).await {
            Ok(Ok(_)) => tracing::debug!(adapter = self.name(), offset, "confirmed the updates taken"),
            Ok(Err(error)) => tracing::debug!(adapter = self.name(), %error, "could not confirm the updates taken"),
            Err(_) => tracing::debug!(adapter = self.name(), "confirming the updates taken timed out"),
        }
    }
}

/// Telegram could not parse the formatting (a 400 saying so).
fn is_parse_error(error: &CallError) -> bool {
    matches!(error, CallError::Api(api) if api.error_code == 400 && api.description.contains("can't parse entities"))
}

fn target(adapter: &str, message: &InboundMessage) -> Result<Target, AdapterError> {
    let meta = |key: &str| message.metadata.get(key);
    // A message the runtime makes up (a cron job's delivery) names its chat by core's key.
    let chat = meta(META_CHAT)
        .and_then(serde_json::Value::as_i64)
        .or_else(|| meta(CHANNEL_KEY).and_then(|v| v.as_str()).and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| AdapterError::permanent(adapter, "the message names no Telegram chat to answer in"))?;
    let small = |key: &str| meta(key).and_then(serde_json::Value::as_i64).and_then(|v| i32::try_from(v).ok());
    Ok(Target {
        chat,
        topic: small(META_TOPIC),
        message: small(META_MESSAGE),
        forum: meta(META_FORUM).and_then(serde_json::Value::as_bool).unwrap_or(false),
    })
}

#[async_trait]
impl MessagingAdapter for TelegramAdapter {
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// In a fleet, one member at a time runs it: one poller or one webhook per bot.
    fn exclusive(&self) -> bool {
        true
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let inner = &self.inner;
        if let Some(task) = lock(&inner.receiver).take() {
            task.abort();
        }
        let identity = inner.identity().await?;
        inner.register_commands().await;
        let (handoff, stream) = spacebot_core::handoff(INBOUND_BUFFER);
        let task = match &inner.settings.webhook {
            Some(webhook) => crate::webhook::start(inner.clone(), webhook.clone(), identity.clone(), handoff).await?,
            None => {
                // Polling and a webhook exclude each other; polling is what the config asks for.
                let params = frankenstein::methods::DeleteWebhookParams::builder().drop_pending_updates(false).build();
                inner.bot.delete_webhook(&params).await.map_err(|e| classify(inner.name(), e))?;
                tokio::spawn(poll(inner.clone(), identity.clone(), handoff))
            }
        };
        *lock(&inner.receiver) = Some(task);
        let mode = if inner.settings.webhook.is_some() { "webhook" } else { "long polling" };
        tracing::info!(adapter = inner.name(), bot = %identity.username, mode, "connected to Telegram");
        Ok(stream)
    }

    async fn send(&self, message: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let inner = &self.inner;
        let target = target(inner.name(), message)?;
        match response {
            OutboundResponse::Text { text } => inner.post(&target, target.topic, None, &text).await,
            OutboundResponse::ThreadReply { thread_name, text } => {
                inner.post_threaded(&target, &thread_name, &text).await
            }
            OutboundResponse::Reaction { emoji } => inner.react(&target, &emoji).await,
            OutboundResponse::Status { status: StatusUpdate::Typing } => {
                inner.start_typing(target.chat, target.topic);
                Ok(())
            }
            OutboundResponse::Status { status: StatusUpdate::StopTyping } => {
                inner.stop_typing(target.chat, target.topic);
                Ok(())
            }
            OutboundResponse::File { filename, mime_type, data, caption } => {
                inner.upload(&target, Upload { filename, mime_type, data, caption }).await
            }
            other => Err(AdapterError::unsupported(inner.name(), format!("the Telegram adapter can't send {other:?}"))),
        }
    }

    /// `getMe`: the token is valid.
    async fn health_check(&self) -> Result<(), AdapterError> {
        self.inner.identity().await.map(|_| ())
    }

    async fn shutdown(&self) {
        self.inner.stop_tasks();
        self.inner.confirm_taken().await;
    }
}

/// Long polling: each batch of updates is handed in one at a time, and the next poll's offset
/// confirms only the updates the runtime took. An update never taken (the stream went away, the
/// daemon died) is delivered again by Telegram; its message id makes that a no-op if it had in
/// fact been recorded. Transient failures are retried with backoff; a permanent one (the token
/// was revoked, another poller took over) ends the stream, and the runtime starts it again.
async fn poll(inner: Arc<Inner>, identity: Identity, handoff: Handoff) {
    let mut backoff = Duration::from_secs(1);
    let timeout = u32::try_from(inner.settings.poll_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    loop {
        let offset = inner.next_offset.load(Ordering::SeqCst);
        let params = GetUpdatesParams::builder()
            .maybe_offset((offset > 0).then_some(offset))
            .timeout(timeout)
            .allowed_updates(vec![AllowedUpdate::Message])
            .build();
        let updates = match inner.bot.get_updates(&params).await {
            Ok(response) => {
                backoff = Duration::from_secs(1);
                response.result
            }
            Err(error) => {
                let error = classify(inner.name(), error);
                if error.kind() == AdapterErrorKind::Permanent {
                    tracing::error!(adapter = inner.name(), %error, "Telegram refused to deliver updates; reconnecting later");
                    return;
                }
                tracing::warn!(adapter = inner.name(), %error, retry_in_secs = backoff.as_secs(), "polling Telegram failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        for update in updates {
            if let Some(message) = map_update(&inner.settings, &identity, &update) {
                let message = crate::images::fetch_images(&inner, message).await;
                if handoff.hand_in(message).await.is_err() {
                    return;
                }
            }
            inner.next_offset.fetch_max(i64::from(update.update_id) + 1, Ordering::SeqCst);
        }
    }
}

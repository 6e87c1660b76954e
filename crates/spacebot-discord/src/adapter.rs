//! [`DiscordAdapter`]: one bot connection (gateway in, REST out).
//!
//! `start` builds a serenity client on the adapter's `Http` (pointed at a local fake when the
//! settings say so), runs it in a task, and returns once the gateway said READY. Messages go
//! from the event handler to one intake task that puts each channel's back in order (see
//! `order.rs`), maps them and hands them to the runtime through a bounded channel; slash
//! commands are mapped in the handler. Serenity
//! resumes a dropped gateway connection by itself; when the client gives up (rejected token,
//! repeated failures) the stream ends and the runtime calls `start` again after its backoff.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serenity::all::{
    Channel, ChannelId, ChannelType, ClientBuilder, Command, Context, CreateAttachment, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateMessage, CreateThread, EditInteractionResponse, EventHandler,
    GatewayIntents, Http, HttpBuilder, Interaction, Message, MessageId, ReactionType, Ready, ShardManager, Typing,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use spacebot_core::{
    AdapterError, AdapterErrorKind, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse, StatusUpdate,
    split_message,
};

use crate::MESSAGE_LIMIT;
use crate::commands::{definitions, map_command, up_to_date};
use crate::error::classify;
use crate::inbound::{
    META_CHANNEL, META_INTERACTION_TOKEN, META_IS_THREAD, META_MESSAGE, Place, admitted, map_message,
};
use crate::order::Reorder;
use crate::settings::DiscordSettings;

/// What the gateway needs to deliver: guild and DM messages with their content, and guilds.
const INTENTS: GatewayIntents = GatewayIntents::GUILDS
    .union(GatewayIntents::GUILD_MESSAGES)
    .union(GatewayIntents::DIRECT_MESSAGES)
    .union(GatewayIntents::MESSAGE_CONTENT);
/// Inbound messages buffered between the gateway and the runtime.
const INBOUND_BUFFER: usize = 256;
/// How long shutdown waits for the client task after asking the shards to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Thread names are capped at 100 characters by Discord.
const THREAD_NAME_LIMIT: usize = 100;
/// Beyond this many remembered channels the parent cache starts over.
const PARENT_CACHE_LIMIT: usize = 10_000;
/// How long a gateway message is held to put its channel's messages back in order: far above
/// the microseconds by which serenity's handler tasks overtake each other, far below what a
/// person notices in a reply.
const ORDER_HOLD: Duration = Duration::from_millis(30);

/// A Discord bot connection, as a [`MessagingAdapter`].
pub struct DiscordAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: DiscordSettings,
    http: Arc<Http>,
    bot_user: AtomicU64,
    /// Channel id → its parent when it is a thread, learned once per channel.
    parents: Mutex<HashMap<u64, Option<u64>>>,
    /// Typing indicators running, by channel id.
    typing: Mutex<HashMap<u64, Typing>>,
    /// Interaction tokens already answered in place.
    answered: Mutex<HashSet<String>>,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Downloads image attachments before a message is handed in (`images.rs`).
    files: Option<reqwest::Client>,
}

/// A running serenity client.
struct Session {
    shards: Arc<ShardManager>,
    task: JoinHandle<()>,
    /// The message intake ([`intake`]); it ends once the client's handler is gone.
    intake: JoinHandle<()>,
}

impl DiscordAdapter {
    /// An adapter for these settings. Nothing connects until `start`.
    pub fn new(settings: DiscordSettings) -> Self {
        let http = Arc::new(build_http(&settings));
        Self {
            inner: Arc::new(Inner {
                settings,
                http,
                bot_user: AtomicU64::new(0),
                parents: Mutex::default(),
                typing: Mutex::default(),
                answered: Mutex::default(),
                session: tokio::sync::Mutex::new(None),
                files: crate::images::client(),
            }),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &DiscordSettings {
        &self.inner.settings
    }
}

fn build_http(settings: &DiscordSettings) -> Http {
    let mut builder = HttpBuilder::new(&settings.token);
    if let Some(url) = &settings.api_url {
        // serenity's "proxy" replaces the `https://discord.com` prefix of every route. Its rate
        // limiter builds URLs without the proxy, so it is off here: a 429 then surfaces as a
        // transient error the runtime's outbox retries. Against Discord itself the rate limiter
        // is on and waits out each bucket and `Retry-After`.
        builder = builder.proxy(url.trim_end_matches('/')).ratelimiter_disabled(true);
    }
    builder.build()
}

impl std::fmt::Debug for DiscordAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordAdapter").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Inner {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// The parent channel of `channel` when it is a thread, asking Discord once per channel.
    async fn parent_of(&self, channel: ChannelId) -> Option<u64> {
        if let Some(known) = lock(&self.parents).get(&channel.get()) {
            return *known;
        }
        match self.http.get_channel(channel).await {
            Ok(Channel::Guild(found)) => {
                let is_thread = matches!(
                    found.kind,
                    ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread
                );
                let parent = found.parent_id.filter(|_| is_thread).map(ChannelId::get);
                let mut parents = lock(&self.parents);
                if parents.len() >= PARENT_CACHE_LIMIT {
                    parents.clear();
                }
                parents.insert(channel.get(), parent);
                parent
            }
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(adapter = self.name(), %channel, %error, "can't look up the channel; treating it as no thread");
                None
            }
        }
    }

    fn stop_typing(&self, channel: u64) {
        if let Some(typing) = lock(&self.typing).remove(&channel) {
            typing.stop();
        }
    }

    async fn stop_session(&self) {
        let Some(session) = self.session.lock().await.take() else { return };
        session.shards.shutdown_all().await;
        let mut task = session.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
        // The client is gone with its handler, so the intake hands in what it held and ends.
        let mut intake = session.intake;
        if tokio::time::timeout(STOP_GRACE, &mut intake).await.is_err() {
            intake.abort();
        }
    }

    async fn post(&self, channel: ChannelId, text: &str) -> Result<Message, AdapterError> {
        channel
            .send_message(&*self.http, CreateMessage::new().content(text))
            .await
            .map_err(|e| classify(self.name(), e))
    }

    /// Sends `text` in `channel`, split at the limit. A slash command's first part replaces its
    /// "thinking" placeholder instead.
    async fn send_text(&self, target: &InboundMessage, channel: ChannelId, text: &str) -> Result<(), AdapterError> {
        let mut parts = split_message(text, MESSAGE_LIMIT).into_iter();
        let token = target.metadata.get(META_INTERACTION_TOKEN).and_then(|v| v.as_str());
        if let Some(token) = token
            && lock(&self.answered).insert(token.to_owned())
            && let Some(first) = parts.next()
        {
            let edit = EditInteractionResponse::new().content(&first);
            if let Err(error) = self.http.edit_original_interaction_response(token, &edit, Vec::new()).await {
                tracing::warn!(adapter = self.name(), %error, "can't answer the slash command in place; posting instead");
                self.post(channel, &first).await?;
            }
        }
        for part in parts {
            self.post(channel, &part).await?;
        }
        Ok(())
    }

    /// The thread a thread reply goes to: the message's own thread or DM, else a new thread
    /// started from the message.
    async fn thread_for(&self, target: &InboundMessage, channel: ChannelId, name: &str) -> ChannelId {
        let in_thread = target.metadata.get(META_IS_THREAD).and_then(|v| v.as_bool()).unwrap_or(false);
        let Some(message) = message_id(target) else { return channel };
        if in_thread || target.direct {
            return channel;
        }
        let name: String =
            if name.trim().is_empty() { "Reply".to_owned() } else { name.chars().take(THREAD_NAME_LIMIT).collect() };
        match channel.create_thread_from_message(&*self.http, message, CreateThread::new(name)).await {
            Ok(thread) => {
                lock(&self.parents).insert(thread.id.get(), Some(channel.get()));
                thread.id
            }
            Err(error) => {
                tracing::warn!(adapter = self.name(), %error, "can't start a thread; replying in the channel");
                channel
            }
        }
    }
}

#[async_trait]
impl MessagingAdapter for DiscordAdapter {
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// In a fleet, one member at a time runs it: one gateway session per shard.
    fn exclusive(&self) -> bool {
        true
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let inner = &self.inner;
        inner.stop_session().await;
        let (sender, receiver) = mpsc::channel(INBOUND_BUFFER);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let (flushed_tx, flushed_rx) = oneshot::channel::<()>();
        let (client_done_tx, client_done_rx) = oneshot::channel::<()>();
        let intake = tokio::spawn({
            let intake = intake(inner.clone(), messages_rx, client_done_rx, sender.clone());
            async move {
                intake.await;
                let _ = flushed_tx.send(());
            }
        });
        let handler =
            Handler { inner: inner.clone(), inbound: sender, messages: messages_tx, ready: Mutex::new(Some(ready_tx)) };
        let mut client = ClientBuilder::new_with_http(build_http(&inner.settings), INTENTS)
            .event_handler(handler)
            .await
            .map_err(|e| classify(inner.name(), e))?;
        let shards = client.shard_manager.clone();
        let (ended_tx, mut ended_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let outcome = client.start().await;
            // Serenity keeps the handler (and so the intake's channel) alive after this; tell
            // the intake directly.
            let _ = client_done_tx.send(());
            let _ = ended_tx.send(outcome);
        });
        *inner.session.lock().await = Some(Session { shards, task, intake });

        let outcome = tokio::select! {
            ready = ready_rx => ready.map_err(|_| AdapterError::transient(inner.name(), "the client stopped before READY")),
            ended = &mut ended_rx => Err(match ended {
                Ok(Err(error)) => classify(inner.name(), error),
                _ => AdapterError::transient(inner.name(), "the gateway closed before READY"),
            }),
            () = tokio::time::sleep(inner.settings.ready_timeout) => Err(AdapterError::transient(
                inner.name(),
                format!("no READY from the gateway within {:?}", inner.settings.ready_timeout),
            )),
        };
        if let Err(error) = outcome {
            inner.stop_session().await;
            return Err(error);
        }
        tracing::info!(adapter = inner.name(), bot = inner.bot_user.load(Ordering::SeqCst), "connected to Discord");

        let name = inner.name().to_owned();
        let ended = async move {
            match ended_rx.await {
                Ok(Err(error)) => tracing::warn!(adapter = %name, %error, "the Discord client stopped"),
                _ => tracing::info!(adapter = %name, "the Discord client stopped"),
            }
            // The messages the intake still held to order them go in before the stream ends.
            if tokio::time::timeout(STOP_GRACE, flushed_rx).await.is_err() {
                tracing::warn!(adapter = %name, "the message intake did not finish; ending the stream anyway");
            }
        };
        Ok(until_ended(receiver, ended))
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let inner = &self.inner;
        let channel = channel_id(target).ok_or_else(|| {
            AdapterError::permanent(inner.name(), "the message names no Discord channel to answer in")
        })?;
        match response {
            OutboundResponse::Text { text } => {
                inner.stop_typing(channel.get());
                inner.send_text(target, channel, &text).await
            }
            OutboundResponse::ThreadReply { thread_name, text } => {
                inner.stop_typing(channel.get());
                let thread = inner.thread_for(target, channel, &thread_name).await;
                for part in split_message(&text, MESSAGE_LIMIT) {
                    inner.post(thread, &part).await?;
                }
                Ok(())
            }
            OutboundResponse::Reaction { emoji } => {
                let message = message_id(target).ok_or_else(|| {
                    AdapterError::permanent(inner.name(), "the message has no Discord id to react to")
                })?;
                let reaction = ReactionType::try_from(emoji.as_str()).map_err(|_| {
                    AdapterError::permanent(inner.name(), format!("`{emoji}` is not an emoji Discord knows"))
                })?;
                inner.http.create_reaction(channel, message, &reaction).await.map_err(|e| classify(inner.name(), e))
            }
            OutboundResponse::Status { status: StatusUpdate::Typing } => {
                // Serenity re-sends the indicator every few seconds until stopped.
                lock(&inner.typing).entry(channel.get()).or_insert_with(|| Typing::start(inner.http.clone(), channel));
                Ok(())
            }
            OutboundResponse::Status { status: StatusUpdate::StopTyping } => {
                inner.stop_typing(channel.get());
                Ok(())
            }
            OutboundResponse::File { filename, data, caption, .. } => {
                inner.stop_typing(channel.get());
                let mut message = CreateMessage::new().add_file(CreateAttachment::bytes(data, filename));
                if let Some(caption) = caption {
                    message = message.content(caption);
                }
                channel.send_message(&*inner.http, message).await.map(|_| ()).map_err(|e| classify(inner.name(), e))
            }
            other => Err(AdapterError::new(
                AdapterErrorKind::Unsupported,
                inner.name(),
                format!("Discord can't send {other:?}"),
            )),
        }
    }

    async fn health_check(&self) -> Result<(), AdapterError> {
        self.inner.http.get_current_user().await.map(|_| ()).map_err(|e| classify(self.name(), e))
    }

    async fn shutdown(&self) {
        let typing: Vec<Typing> = lock(&self.inner.typing).drain().map(|(_, t)| t).collect();
        for indicator in typing {
            indicator.stop();
        }
        self.inner.stop_session().await;
    }
}

/// Receives gateway events for one session.
struct Handler {
    inner: Arc<Inner>,
    inbound: mpsc::Sender<InboundMessage>,
    /// Raw messages to the intake task, which orders them. Unbounded so the handler never waits
    /// before handing a message over (a wait would let the next message's task overtake it);
    /// the intake takes them as fast as they come and holds them for [`ORDER_HOLD`] only.
    messages: mpsc::UnboundedSender<Message>,
    ready: Mutex<Option<oneshot::Sender<()>>>,
}

impl Handler {
    async fn hand_in(&self, message: InboundMessage) {
        if self.inbound.send(message).await.is_err() {
            tracing::debug!(adapter = self.inner.name(), "inbound stream closed; message dropped");
        }
    }

    async fn register_commands(&self, ctx: &Context) {
        let name = self.inner.name();
        match Command::get_global_commands(&ctx.http).await {
            Ok(registered) if up_to_date(&registered) => {}
            _ => {
                if let Err(error) = Command::set_global_commands(&ctx.http, definitions()).await {
                    tracing::warn!(adapter = name, %error, "can't register the slash commands");
                }
            }
        }
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        self.inner.bot_user.store(ready.user.id.get(), Ordering::SeqCst);
        ctx.http.set_application_id(ready.application.id);
        self.inner.http.set_application_id(ready.application.id);
        if self.inner.settings.slash_commands {
            self.register_commands(&ctx).await;
        }
        if let Some(ready) = lock(&self.ready).take() {
            let _ = ready.send(());
        }
    }

    async fn message(&self, _ctx: Context, message: Message) {
        if self.messages.send(message).is_err() {
            tracing::debug!(adapter = self.inner.name(), "message intake closed; message dropped");
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(command) = interaction else { return };
        let guild = command.guild_id.map(|g| g.get());
        let parent = match guild {
            Some(_) => self.inner.parent_of(command.channel_id).await,
            None => None,
        };
        let place = Place { guild, channel: command.channel_id.get(), parent };
        let name = self.inner.name();
        if !admitted(&self.inner.settings, place, command.user.id.get()) {
            let refusal = CreateInteractionResponseMessage::new().content("I'm not listening here.").ephemeral(true);
            if let Err(error) = command.create_response(&ctx.http, CreateInteractionResponse::Message(refusal)).await {
                tracing::debug!(adapter = name, %error, "can't refuse the slash command");
            }
            return;
        }
        // Discord wants an answer within 3 s; the real one replaces this placeholder.
        if let Err(error) = command.defer_ephemeral(&ctx.http).await {
            tracing::warn!(adapter = name, %error, "can't acknowledge the slash command");
        }
        let inbound = map_command(&self.inner.settings, &command, place);
        self.hand_in(inbound).await;
    }
}

/// The inbound stream: what `receiver` yields until `ended` resolves, then what it still buffers
/// (nothing handed in before the end is lost), then its end.
fn until_ended(
    receiver: mpsc::Receiver<InboundMessage>,
    ended: impl Future<Output = ()> + Send + 'static,
) -> InboundStream {
    futures::stream::unfold((receiver, Box::pin(ended), false), |(mut receiver, mut ended, mut closed)| async move {
        loop {
            if closed {
                let message = receiver.recv().await?;
                return Some((message, (receiver, ended, closed)));
            }
            tokio::select! {
                message = receiver.recv() => {
                    let message = message?;
                    return Some((message, (receiver, ended, closed)));
                }
                () = &mut ended => {
                    receiver.close();
                    closed = true;
                }
            }
        }
    })
    .boxed()
}

/// The message intake of one session: puts each channel's gateway messages back in order
/// ([`Reorder`]), then looks up thread parents, maps and hands them in one at a time, so the
/// order survives the lookups too. Ends, after handing in everything it held, when the client
/// stopped (`client_done`) or the handler is gone.
async fn intake(
    inner: Arc<Inner>,
    mut messages: mpsc::UnboundedReceiver<Message>,
    mut client_done: oneshot::Receiver<()>,
    inbound: mpsc::Sender<InboundMessage>,
) {
    let mut order = Reorder::new(ORDER_HOLD);
    // Set once the client stopped: handler tasks serenity spawned just before may still be on
    // their way, so messages are taken until then, and everything held goes in after.
    let mut closing: Option<Instant> = None;
    loop {
        let due = order.next_due();
        let open = tokio::select! {
            received = messages.recv() => match received {
                Some(message) => {
                    order.push(message.channel_id.get(), message.id.get(), message, Instant::now());
                    true
                }
                None => false,
            },
            _ = &mut client_done, if closing.is_none() => {
                closing = Some(Instant::now() + ORDER_HOLD);
                true
            }
            () = sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => false,
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => true,
        };
        let released = if open { order.due(Instant::now()) } else { order.drain() };
        for message in released {
            let parent = match message.guild_id {
                Some(_) => inner.parent_of(message.channel_id).await,
                None => None,
            };
            let bot = inner.bot_user.load(Ordering::SeqCst);
            let Some(mapped) = map_message(&inner.settings, bot, &message, parent) else { continue };
            // In line, so the channel's order holds; each download is bounded by its timeout.
            let mapped = crate::images::fetch_images(inner.files.as_ref(), mapped).await;
            if inbound.send(mapped).await.is_err() {
                tracing::debug!(adapter = inner.name(), "inbound stream closed; message dropped");
            }
        }
        if !open {
            return;
        }
    }
}

/// The channel to answer in; a message the runtime makes up (a cron job's delivery) names it by
/// core's key.
fn channel_id(target: &InboundMessage) -> Option<ChannelId> {
    metadata_id(target, META_CHANNEL).or_else(|| metadata_id(target, spacebot_core::CHANNEL_KEY)).map(ChannelId::new)
}

fn message_id(target: &InboundMessage) -> Option<MessageId> {
    metadata_id(target, META_MESSAGE).map(MessageId::new)
}

fn metadata_id(target: &InboundMessage, key: &str) -> Option<u64> {
    let value = target.metadata.get(key)?;
    value.as_u64().or_else(|| value.as_str()?.parse().ok()).filter(|id| *id != 0)
}

/// Locks a mutex, carrying on after a panic elsewhere: the maps stay valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

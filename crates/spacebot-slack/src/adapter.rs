//! [`SlackAdapter`]: Socket Mode in, Web API out.
//!
//! Two slack-morphism clients share one HTTP-capable connector setup: the Web API client is rate
//! controlled (it spaces calls per Slack's method tiers and waits out `429 Retry-After`), the
//! Socket Mode client is not (its one call, `apps.connections.open`, must not queue behind replies).
//! slack-morphism reconnects a dropped socket by itself; `start` checks both tokens first, so a
//! wrong token fails `start` with a permanent error instead of a silent retry loop.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use slack_morphism::hyper_tokio::{SlackClientHyperConnector, SlackClientHyperHttpsConnector};
use slack_morphism::prelude::{
    HttpStatusCode, SlackApiAppsConnectionOpenRequest, SlackApiAssistantThreadsSetStatusRequest,
    SlackApiChatPostMessageRequest, SlackApiFilesComplete, SlackApiFilesCompleteUploadExternalRequest,
    SlackApiFilesGetUploadUrlExternalRequest, SlackApiFilesUploadViaUrlRequest, SlackApiRateControlConfig,
    SlackApiReactionsAddRequest, SlackApiToken, SlackApiTokenValue, SlackChannelId, SlackClient,
    SlackClientEventsListenerEnvironment, SlackClientEventsUserState, SlackClientSocketModeConfig,
    SlackClientSocketModeListener, SlackCommandEvent, SlackCommandEventResponse, SlackMessageContent,
    SlackPushEventCallback, SlackReactionName, SlackSocketModeListenerCallbacks, SlackTs, UserCallbackResult,
};

use spacebot_core::{
    AdapterError, AdapterErrorKind, Handoff, InboundMessage, InboundStream, MessagingAdapter, NotTaken,
    OutboundResponse, SplitOptions, StatusUpdate, split_message_with,
};

use crate::MESSAGE_LIMIT;
use crate::emoji::shortcode;
use crate::error::classify;
use crate::inbound::{META_CHANNEL, META_THREAD_TS, META_TS, map_command, map_push};
use crate::settings::SlackSettings;

type Connector = SlackClientHyperHttpsConnector;
type Client = SlackClient<Connector>;
type Listener = SlackClientSocketModeListener<Connector>;

/// Inbound messages buffered between Socket Mode and the runtime.
const INBOUND_BUFFER: usize = 256;
/// How long a Socket Mode callback waits for the runtime to take its message before leaving the
/// envelope unacknowledged (Slack then redelivers it).
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the assistant-thread status says while a turn runs.
const THINKING_STATUS: &str = "is thinking…";

/// A Slack app connection, as a [`MessagingAdapter`].
pub struct SlackAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SlackSettings,
    /// Web API calls, rate controlled.
    api: Arc<Client>,
    /// Socket Mode, not rate controlled.
    socket: Arc<Client>,
    bot_token: SlackApiToken,
    listener: tokio::sync::Mutex<Option<Listener>>,
}

/// What the Socket Mode callbacks (plain `fn`s) reach through the listener's user state.
#[derive(Clone)]
struct CallbackState {
    settings: SlackSettings,
    bot_user: String,
    inbound: Handoff,
    /// Downloads image files before a message is handed in (`images.rs`).
    files: Option<reqwest::Client>,
}

/// A file to upload.
struct Upload {
    filename: String,
    mime_type: String,
    data: Vec<u8>,
    caption: Option<String>,
}

impl SlackAdapter {
    /// An adapter for these settings. Nothing connects until `start`, and the system's trusted
    /// roots are read when the first connection checks Slack's certificate (they are the
    /// process's shared TLS configuration, `spacebot_core::tls`).
    pub fn new(settings: SlackSettings) -> Self {
        let api = connector(&settings)
            .with_rate_control(SlackApiRateControlConfig::new().with_max_retries(settings.rate_limit_retries));
        let socket = connector(&settings);
        Self {
            inner: Arc::new(Inner {
                bot_token: SlackApiToken::new(SlackApiTokenValue::new(settings.bot_token.clone())),
                api: Arc::new(SlackClient::new(api)),
                socket: Arc::new(SlackClient::new(socket)),
                settings,
                listener: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &SlackSettings {
        &self.inner.settings
    }
}

/// A connector that speaks HTTPS to Slack and plain HTTP to a local fake, over the process's
/// shared TLS configuration (its roots are read once, on the first certificate any client
/// checks). hyper-rustls sets the ALPN protocols itself from the HTTP versions enabled here, and
/// refuses a configuration that already names some.
fn connector(settings: &SlackSettings) -> Connector {
    let mut tls = spacebot_core::tls::client_config();
    tls.alpn_protocols.clear();
    let https: HttpsConnector<_> =
        HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    let connector = SlackClientHyperConnector::with_connector(https);
    match &settings.api_url {
        Some(url) => connector.with_slack_api_url(url.trim_end_matches('/')),
        None => connector,
    }
}

impl std::fmt::Debug for SlackAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackAdapter").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Inner {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn stop_listener(&self) {
        if let Some(listener) = self.listener.lock().await.take() {
            listener.shutdown().await;
        }
    }

    async fn post(&self, channel: &str, thread: Option<&str>, text: &str) -> Result<(), AdapterError> {
        let request = SlackApiChatPostMessageRequest::new(
            SlackChannelId::new(channel.to_owned()),
            SlackMessageContent::new().with_text(text.to_owned()),
        )
        .opt_thread_ts(thread.map(|t| SlackTs::new(t.to_owned())));
        let session = self.api.open_session(&self.bot_token);
        session.chat_post_message(&request).await.map(|_| ()).map_err(|e| classify(self.name(), e))
    }

    async fn post_split(&self, channel: &str, thread: Option<&str>, text: &str) -> Result<(), AdapterError> {
        for part in split_message_with(text, SplitOptions::new(MESSAGE_LIMIT).with_angle_spans()) {
            self.post(channel, thread, &part).await?;
        }
        Ok(())
    }

    /// Uploads a file into the channel (and thread) the way Slack asks since `files.upload` was
    /// retired: an upload URL, the bytes posted there, then the upload completed into the channel.
    async fn upload(&self, channel: &str, thread: Option<&str>, file: Upload) -> Result<(), AdapterError> {
        let session = self.api.open_session(&self.bot_token);
        let classify = |e| classify(self.name(), e);
        let request = SlackApiFilesGetUploadUrlExternalRequest::new(file.filename.clone(), file.data.len());
        let target = session.get_upload_url_external(&request).await.map_err(classify)?;
        // slack-morphism posts the bytes with the bot token: only to Slack (or the configured API).
        if !crate::images::is_slack_file_host(target.upload_url.0.as_str(), self.settings.api_url.as_deref()) {
            return Err(AdapterError::permanent(
                self.name(),
                format!("Slack gave an upload URL off its own hosts ({}); not sending the file", target.upload_url.0),
            ));
        }
        let bytes = SlackApiFilesUploadViaUrlRequest::new(target.upload_url, file.data, file.mime_type);
        session.files_upload_via_url(&bytes).await.map_err(classify)?;
        let complete = SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(target.file_id).with_title(file.filename),
        ])
        .with_channel_id(SlackChannelId::new(channel.to_owned()))
        .opt_initial_comment(file.caption)
        .opt_thread_ts(thread.map(|t| SlackTs::new(t.to_owned())));
        session.files_complete_upload_external(&complete).await.map(|_| ()).map_err(classify)
    }

    async fn set_thread_status(&self, channel: &str, thread: &str, status: &str) -> Result<(), AdapterError> {
        let request = SlackApiAssistantThreadsSetStatusRequest::new(
            SlackChannelId::new(channel.to_owned()),
            status.to_owned(),
            SlackTs::new(thread.to_owned()),
        );
        let session = self.api.open_session(&self.bot_token);
        session.assistant_threads_set_status(&request).await.map(|_| ()).map_err(|e| classify(self.name(), e))
    }
}

#[async_trait]
impl MessagingAdapter for SlackAdapter {
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// In a fleet, one member at a time runs it: Socket Mode spreads events over every connection of the app.
    fn exclusive(&self) -> bool {
        true
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let inner = &self.inner;
        inner.stop_listener().await;
        let name = inner.name();

        let identity = inner.socket.open_session(&inner.bot_token).auth_test().await.map_err(|e| classify(name, e))?;
        let app_token = SlackApiToken::new(SlackApiTokenValue::new(inner.settings.app_token.clone()));
        // Opening a connection URL proves the app token before the listener starts retrying
        // on its own; the URL itself is single-use and left unused.
        inner
            .socket
            .open_session(&app_token)
            .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
            .await
            .map_err(|e| classify(name, e))?;

        let (handoff, stream) = spacebot_core::handoff(INBOUND_BUFFER);
        let state = CallbackState {
            settings: inner.settings.clone(),
            bot_user: identity.user_id.to_string(),
            inbound: handoff,
            files: crate::images::client(),
        };
        let environment = SlackClientEventsListenerEnvironment::new(inner.socket.clone())
            .with_error_handler(on_error)
            .with_user_state(state);
        let callbacks =
            SlackSocketModeListenerCallbacks::new().with_push_events(on_push).with_command_events(on_command);
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(1)
            .with_reconnect_timeout_in_seconds(inner.settings.reconnect_after.as_secs().max(1));
        let listener = SlackClientSocketModeListener::new(&config, Arc::new(environment), callbacks);
        listener.listen_for(&app_token).await.map_err(|e| classify(name, e))?;
        listener.start().await;
        *inner.listener.lock().await = Some(listener);
        tracing::info!(adapter = name, bot = %identity.user_id, team = %identity.team_id, "connected to Slack");
        Ok(stream)
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let inner = &self.inner;
        let meta = |key: &str| target.metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        // A message the runtime makes up (a cron job's delivery) names its channel by core's key.
        let channel = meta(META_CHANNEL)
            .or_else(|| meta(spacebot_core::CHANNEL_KEY))
            .ok_or_else(|| AdapterError::permanent(inner.name(), "the message names no Slack channel to answer in"))?;
        let thread = meta(META_THREAD_TS);
        match response {
            OutboundResponse::Text { text } => inner.post_split(&channel, thread.as_deref(), &text).await,
            OutboundResponse::ThreadReply { text, .. } => {
                let root = thread.or_else(|| meta(META_TS));
                inner.post_split(&channel, root.as_deref(), &text).await
            }
            OutboundResponse::Reaction { emoji } => {
                let ts = meta(META_TS)
                    .ok_or_else(|| AdapterError::permanent(inner.name(), "the message has no Slack ts to react to"))?;
                let name = shortcode(&emoji).ok_or_else(|| {
                    AdapterError::permanent(inner.name(), format!("no Slack shortcode known for `{emoji}`"))
                })?;
                let request = SlackApiReactionsAddRequest::new(
                    SlackChannelId::new(channel),
                    SlackReactionName::new(name),
                    SlackTs::new(ts),
                );
                let session = inner.api.open_session(&inner.bot_token);
                session.reactions_add(&request).await.map(|_| ()).map_err(|e| classify(inner.name(), e))
            }
            // Slack shows bots "typing" only as an assistant-thread status; elsewhere there is
            // nothing to show, which is not an error.
            OutboundResponse::Status { status: StatusUpdate::Typing } => match thread {
                Some(thread) => inner.set_thread_status(&channel, &thread, THINKING_STATUS).await,
                None => Ok(()),
            },
            OutboundResponse::Status { status: StatusUpdate::StopTyping } => match thread {
                Some(thread) => inner.set_thread_status(&channel, &thread, "").await,
                None => Ok(()),
            },
            OutboundResponse::File { filename, mime_type, data, caption } => {
                inner.upload(&channel, thread.as_deref(), Upload { filename, mime_type, data, caption }).await
            }
            other => Err(AdapterError::new(
                AdapterErrorKind::Unsupported,
                inner.name(),
                format!("the Slack adapter can't send {other:?} yet"),
            )),
        }
    }

    /// Checks both tokens: the bot token with `auth.test`, the app token by opening a Socket Mode
    /// URL (left unused).
    async fn health_check(&self) -> Result<(), AdapterError> {
        let inner = &self.inner;
        let name = inner.name();
        inner.socket.open_session(&inner.bot_token).auth_test().await.map_err(|e| classify(name, e))?;
        let app_token = SlackApiToken::new(SlackApiTokenValue::new(inner.settings.app_token.clone()));
        inner
            .socket
            .open_session(&app_token)
            .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
            .await
            .map(|_| ())
            .map_err(|e| classify(name, e))
    }

    async fn shutdown(&self) {
        self.inner.stop_listener().await;
    }
}

async fn callback_state(states: &SlackClientEventsUserState) -> Option<CallbackState> {
    states.read().await.get_user_state::<CallbackState>().cloned()
}

/// Hands a message to the runtime and waits until it was taken; an envelope whose message was
/// not taken in time stays unacknowledged.
async fn hand_in(state: &CallbackState, message: InboundMessage) -> UserCallbackResult<()> {
    match tokio::time::timeout(TAKE_TIMEOUT, state.inbound.hand_in(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Box::new(NotTaken)),
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(state) = callback_state(&states).await else { return Ok(()) };
    match map_push(&state.settings, &state.bot_user, &event) {
        Some(message) => {
            let message = crate::images::fetch_images(
                state.files.as_ref(),
                &state.settings.bot_token,
                state.settings.api_url.as_deref(),
                message,
            )
            .await;
            hand_in(&state, message).await
        }
        // Not for us: acknowledge it so Slack does not send it again.
        None => Ok(()),
    }
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let Some(state) = callback_state(&states).await else {
        return Ok(SlackCommandEventResponse::new(SlackMessageContent::new()));
    };
    match map_command(&state.settings, &event) {
        Some(message) => {
            hand_in(&state, message).await?;
            Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
        }
        None => {
            Ok(SlackCommandEventResponse::new(SlackMessageContent::new().with_text("I'm not listening here.".into())))
        }
    }
}

/// Leaves envelopes whose message was not taken unacknowledged; acknowledges the rest (a payload
/// that fails to parse never parses better on redelivery).
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    if error.downcast_ref::<NotTaken>().is_some() {
        return HttpStatusCode::SERVICE_UNAVAILABLE;
    }
    tracing::warn!(%error, "Slack Socket Mode event failed");
    HttpStatusCode::OK
}

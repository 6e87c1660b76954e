//! [`ProviderModel`]: one model of one provider behind [`LanguageModel`].
//!
//! Each call encodes the core request with rig's wire for the provider's kind, sends it through
//! rig's reqwest transport over one process-wide client (see [`http`]), and retries transient failures with backoff. Every attempt is
//! bounded by the configured timeout; a stream is bounded per event instead, so a long answer
//! that keeps streaming is never cut off while a stalled one is.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rig_core::DynModel;
use rig_core::completion::{CompletionRequest, CompletionResponse};
use rig_core::error::ProviderError;
use rig_core::message::AssistantContent;
use rig_core::operation::Completion;
use rig_core::providers::anthropic::{AnthropicConfig, ToolInputStreaming};
use rig_core::providers::openai::OpenAIConfig;
use rig_core::streaming::{CompletionStream, Item, PartKind};

use spacebot_core::{
    ChatRequest, ChatResponse, ChatStream, LanguageModel, LlmError, LlmErrorKind, StreamEvent, replayed,
};

use crate::classify::{Failure, Reading, classify, format_duration};
use crate::config::{ProviderConfig, ProviderKind};
use crate::convert::{from_rig_response, from_rig_tool_call, to_rig_request};
use crate::error::Error;
use crate::retry::RetryPolicy;

/// The HTTP client every hosted model sends through: one connection pool per process, like rig's
/// own shared client, but with [`spacebot_core::tls::client_config`], so the system's
/// trusted roots are read on the first https connection rather than when a model is made (at
/// start), and once.
fn http() -> rig_reqwest::ReqwestClient {
    static SHARED: LazyLock<rig_reqwest::ReqwestClient> = LazyLock::new(|| {
        rig_reqwest::ReqwestClient::from(
            reqwest::Client::builder()
                .tls_backend_preconfigured(spacebot_core::tls::client_config())
                .build()
                .unwrap_or_default(),
        )
    });
    SHARED.clone()
}

/// Who a call goes to, for messages and logs; shared with the streams a model hands out.
#[derive(Debug)]
struct Target {
    provider: String,
    model: String,
    base_url: String,
    timeout: Duration,
}

impl Target {
    fn error(&self, failure: Failure, attempts: u32) -> LlmError {
        failure.into_error(&self.provider, &self.base_url, attempts)
    }
}

/// A model served by an OpenAI-compatible or Anthropic provider.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use spacebot_core::{ChatMessage, ChatRequest, LanguageModel};
/// use spacebot_llm::{ProviderConfig, ProviderKind, ProviderModel};
///
/// let config = ProviderConfig::new(ProviderKind::OpenAi, "sk-...").with_base_url("http://127.0.0.1:8080/v1");
/// let model = ProviderModel::new("local", config, "qwen3")?;
/// assert_eq!(model.name(), "local/qwen3");
/// let answer = model.complete(ChatRequest::new("Be brief.", vec![ChatMessage::user("hi")])).await?;
/// println!("{}", answer.content);
/// # Ok(())
/// # }
/// ```
pub struct ProviderModel {
    name: String,
    target: Arc<Target>,
    config: ProviderConfig,
    policy: RetryPolicy,
    rig: DynModel<Completion>,
    /// The server answered a streamed request with one whole body (some OpenAI-compatible
    /// servers can't stream): streamed requests are sent unstreamed from then on.
    unstreamed: AtomicBool,
}

impl ProviderModel {
    /// Builds `model` of the provider named `provider` (the key under `[llm.providers]`).
    ///
    /// Nothing is sent yet. Fails when a name is empty or the base URL is not an absolute
    /// `http`/`https` URL.
    pub fn new(provider: impl Into<String>, config: ProviderConfig, model: impl Into<String>) -> Result<Self, Error> {
        let provider = provider.into();
        let model = model.into();
        if provider.trim().is_empty() {
            return Err(Error::EmptyProvider);
        }
        if model.trim().is_empty() {
            return Err(Error::EmptyModel { provider });
        }
        if config.kind == ProviderKind::Local {
            return Err(Error::NotHosted { provider });
        }
        let base_url = config.effective_base_url().to_owned();
        validate_base_url(&provider, &base_url)?;

        let rig: DynModel<Completion> = match config.kind {
            ProviderKind::OpenAi => OpenAIConfig::new(config.api_key.clone())
                .with_base_url(base_url.clone())
                .connect(http())
                .chat(model.clone())
                .erase(),
            ProviderKind::Anthropic => {
                let mut messages = AnthropicConfig::new(config.api_key.clone())
                    .with_base_url(&base_url)
                    .connect(http())
                    .completion(model.clone());
                // A `reply` call's text is previewed as its input streams. Anthropic's own API
                // takes the per-tool field that streams input as it is written (without it, a long
                // value comes in one burst); Anthropic-format gateways may reject the field, so
                // they are left to stream input as they choose.
                let input_streaming =
                    if config.base_url.is_none() { ToolInputStreaming::Eager } else { ToolInputStreaming::Off };
                messages.wire = messages
                    .wire
                    .with_default_max_tokens(u64::from(config.max_tokens))
                    .with_tool_input_streaming(input_streaming);
                messages.erase()
            }
            ProviderKind::Local => return Err(Error::NotHosted { provider }),
        };
        let policy = RetryPolicy {
            max_retries: config.max_retries,
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
        };
        Ok(Self {
            name: format!("{provider}/{model}"),
            target: Arc::new(Target { provider, model, base_url, timeout: config.timeout }),
            config,
            policy,
            rig,
            unstreamed: AtomicBool::new(false),
        })
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.target.provider
    }

    /// The model's name at the provider.
    pub fn model(&self) -> &str {
        &self.target.model
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.target.base_url
    }

    /// The settings it was built with.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn rig_request(&self, request: &ChatRequest) -> Result<CompletionRequest, LlmError> {
        to_rig_request(request, self.config.max_tokens)
            .map_err(|error| self.target.error(Failure::new(LlmErrorKind::InvalidRequest, error.to_string()), 1))
    }

    /// Waits before retry number `attempt` after `failure`, or returns the error to give up with.
    async fn backoff(&self, attempt: u32, failure: Failure) -> Result<(), LlmError> {
        let Some(wait) = self.policy.wait_before(attempt, &failure) else {
            return Err(self.target.error(failure, attempt));
        };
        tracing::warn!(
            provider = %self.target.provider,
            model = %self.target.model,
            attempt,
            kind = ?failure.kind,
            wait = %format_duration(wait),
            detail = %failure.detail,
            "model call failed, retrying"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

impl fmt::Debug for ProviderModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderModel").field("name", &self.name).field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait]
impl LanguageModel for ProviderModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn context_window(&self) -> usize {
        self.config.context_window
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Built for each attempt rather than cloned: most calls make one, and a clone costs
            // as much as building it and then one more drop.
            let rig_request = self.rig_request(&request)?;
            let failure = match tokio::time::timeout(self.target.timeout, self.rig.call(rig_request)).await {
                Ok(Ok(response)) => match checked(&self.target, &response) {
                    Ok(()) => return Ok(from_rig_response(&response)),
                    Err(failure) => failure,
                },
                Ok(Err(error)) => classify(error, Reading::Unary),
                Err(_) => Failure::timed_out(self.target.timeout),
            };
            self.backoff(attempt, failure).await?;
        }
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        if self.unstreamed.load(Ordering::Relaxed) {
            return Ok(replayed(self.complete(request).await?));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Retry until the first event: until then nothing reached the caller.
            let failure = match self.rig.stream(self.rig_request(&request)?) {
                Err(error) if not_a_stream(&error) => return self.unstreamed(request, &error).await,
                Err(error) => classify(error, Reading::Streaming),
                Ok(mut streamed) => match tokio::time::timeout(self.target.timeout, streamed.next()).await {
                    Ok(Some(Err(error))) if not_a_stream(&error) => return self.unstreamed(request, &error).await,
                    Ok(Some(Err(error))) => classify(error, Reading::Streaming),
                    Ok(first) => {
                        let first = first.and_then(Result::ok);
                        return Ok(events(Arc::clone(&self.target), streamed, first));
                    }
                    Err(_) => Failure::timed_out(self.target.timeout),
                },
            };
            self.backoff(attempt, failure).await?;
        }
    }
}

impl ProviderModel {
    /// Answers a request whole and replays it as a stream, for a server that answered a
    /// streamed request with one whole body; its later requests go unstreamed at once.
    async fn unstreamed(&self, request: ChatRequest, error: &ProviderError) -> Result<ChatStream, LlmError> {
        if !self.unstreamed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                provider = %self.target.provider,
                model = %self.target.model,
                %error,
                "the provider does not stream its answers; asking for whole answers from now on"
            );
        }
        Ok(replayed(self.complete(request).await?))
    }
}

/// Whether a streamed request was answered with something other than an event stream (a
/// server that can't stream sends its whole answer as JSON).
fn not_a_stream(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Http(transport) if matches!(**transport, rig_core::http_client::Error::InvalidContentType(_)))
}

/// Refuses a reply that rig flagged as failed and that carries nothing usable; a flagged reply
/// with content (a missing finish reason from a lax server, say) is logged and kept.
fn checked(target: &Target, response: &CompletionResponse) -> Result<(), Failure> {
    let Some(problem) = &response.error else {
        return Ok(());
    };
    if response.choice.iter().any(|part| matches!(part, AssistantContent::Text(_) | AssistantContent::ToolCall(_))) {
        tracing::warn!(provider = %target.provider, model = %target.model, %problem, "model reply flagged as failed, keeping its content");
        Ok(())
    } else {
        Err(Failure::new(LlmErrorKind::InvalidResponse, problem.clone()))
    }
}

/// What a stream is doing.
struct StreamState {
    target: Arc<Target>,
    /// The reply; `None` once it ended.
    streamed: Option<CompletionStream>,
    /// An item read before the stream was handed out.
    first: Option<Item<rig_core::streaming::StreamEvent>>,
}

/// The core stream over an opened rig stream: text deltas, complete tool calls, then `Done`.
fn events(
    target: Arc<Target>,
    streamed: CompletionStream,
    first: Option<Item<rig_core::streaming::StreamEvent>>,
) -> ChatStream {
    let state = StreamState { target, streamed: Some(streamed), first };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            let streamed = state.streamed.as_mut()?;
            let item = match state.first.take() {
                Some(first) => Some(Ok(first)),
                None => match tokio::time::timeout(state.target.timeout, streamed.next()).await {
                    Ok(item) => item,
                    Err(_) => {
                        state.streamed = None;
                        let failure = Failure::timed_out(state.target.timeout);
                        return Some((Err(state.target.error(failure, 1)), state));
                    }
                },
            };
            match item {
                Some(Ok(Item::Event(event))) => {
                    if let Some(event) = core_event(event) {
                        return Some((Ok(event), state));
                    }
                }
                Some(Ok(Item::Unknown(payload))) => {
                    tracing::debug!(provider = %state.target.provider, ?payload, "ignoring an unmodelled stream payload");
                }
                Some(Err(error)) => {
                    state.streamed = None;
                    return Some((Err(state.target.error(classify(error, Reading::Streaming), 1)), state));
                }
                None => {
                    let streamed = state.streamed.take()?;
                    let done = match streamed.finish().await {
                        Ok(response) => match checked(&state.target, &response) {
                            Ok(()) => Ok(StreamEvent::Done(from_rig_response(&response))),
                            Err(failure) => Err(state.target.error(failure, 1)),
                        },
                        Err(error) => Err(state.target.error(classify(error, Reading::Streaming), 1)),
                    };
                    return Some((done, state));
                }
            }
        }
    }))
}

/// The core event for one rig event, if it is one the harness sees.
fn core_event(event: rig_core::streaming::StreamEvent) -> Option<StreamEvent> {
    match event {
        rig_core::streaming::StreamEvent::Text { text, .. } if !text.is_empty() => Some(StreamEvent::TextDelta(text)),
        rig_core::streaming::StreamEvent::Start { part, kind: PartKind::ToolCall, name: Some(name) } => {
            Some(StreamEvent::ToolCallStarted { call: part.index(), name: name.to_string() })
        }
        rig_core::streaming::StreamEvent::Arguments { part, json } if !json.is_empty() => {
            Some(StreamEvent::ToolArguments { call: part.index(), json })
        }
        rig_core::streaming::StreamEvent::End { content: AssistantContent::ToolCall(call), .. } => {
            Some(StreamEvent::ToolCall(from_rig_tool_call(&call)))
        }
        _ => None,
    }
}

/// Checks that `base_url` is an absolute `http` or `https` URL with a host.
fn validate_base_url(provider: &str, base_url: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidBaseUrl {
        provider: provider.to_owned(),
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it can't have a query or fragment"));
    }
    Ok(())
}

/// Builds `model` of the provider named `provider` as the trait object the runtime takes: a
/// [`ProviderModel`] for the hosted kinds, a `LocalModel` (cargo feature `local-model`) for
/// [`ProviderKind::Local`], whose file is checked to exist but is loaded only on first use.
pub fn build_model(provider: &str, config: &ProviderConfig, model: &str) -> Result<Arc<dyn LanguageModel>, Error> {
    if config.kind == ProviderKind::Local {
        return build_local(provider, config, model);
    }
    Ok(Arc::new(ProviderModel::new(provider, config.clone(), model)?))
}

#[cfg(feature = "local-model")]
fn build_local(provider: &str, config: &ProviderConfig, model: &str) -> Result<Arc<dyn LanguageModel>, Error> {
    let path = config.model_path.clone().ok_or_else(|| Error::NoModelPath { provider: provider.to_owned() })?;
    let settings = crate::local::LocalSettings::new(path)
        .with_max_tokens(config.max_tokens)
        .with_context_window(config.context_window);
    Ok(Arc::new(crate::local::LocalModel::new(format!("{provider}/{model}"), settings)?))
}

#[cfg(not(feature = "local-model"))]
fn build_local(provider: &str, _config: &ProviderConfig, _model: &str) -> Result<Arc<dyn LanguageModel>, Error> {
    Err(Error::LocalModelUnavailable { provider: provider.to_owned() })
}

/// Splits a `provider/model` reference (as in `[llm.models]`) at its first slash; the model part
/// may hold more slashes (`openrouter/anthropic/claude-sonnet-4`).
pub fn split_model_ref(reference: &str) -> Result<(&str, &str), Error> {
    match reference.split_once('/') {
        Some((provider, model)) if !provider.trim().is_empty() && !model.trim().is_empty() => Ok((provider, model)),
        _ => Err(Error::InvalidModelRef(reference.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProviderConfig {
        ProviderConfig::new(ProviderKind::OpenAi, "k")
    }

    #[test]
    fn reqwest_takes_the_shared_tls_configuration() {
        // reqwest recognises a preconfigured backend by its exact type: with a rustls of another
        // version it would refuse it ("Unknown TLS backend"), and `http` would quietly fall back
        // to a default client that reads the roots itself.
        reqwest::Client::builder()
            .tls_backend_preconfigured(spacebot_core::tls::client_config())
            .build()
            .expect("reqwest builds a client on the shared configuration");
        assert!(http().inner().is_some());
    }

    #[test]
    fn names_are_provider_slash_model() {
        let model = ProviderModel::new("main", config(), "gpt-4.1-mini").unwrap();
        assert_eq!(model.name(), "main/gpt-4.1-mini");
        assert_eq!(model.base_url(), "https://api.openai.com/v1");
        let model = ProviderModel::new("claude", ProviderConfig::new(ProviderKind::Anthropic, "k"), "sonnet").unwrap();
        assert_eq!(model.base_url(), "https://api.anthropic.com");
        assert_eq!(model.context_window(), 128_000);
    }

    #[test]
    fn bad_settings_are_refused_with_the_value_at_fault() {
        let error = ProviderModel::new("main", config().with_base_url("localhost:8080"), "m").unwrap_err();
        assert!(error.to_string().starts_with("provider 'main' has an invalid base_url 'localhost:8080'"), "{error}");
        let error = ProviderModel::new("main", config().with_base_url("ftp://host/v1"), "m").unwrap_err();
        assert!(error.to_string().contains("http or https"), "{error}");
        assert!(ProviderModel::new("main", config().with_base_url("not a url"), "m").is_err());
        assert!(matches!(ProviderModel::new("main", config(), " "), Err(Error::EmptyModel { .. })));
        assert!(matches!(ProviderModel::new("", config(), "m"), Err(Error::EmptyProvider)));
    }

    #[test]
    fn debug_hides_the_key() {
        let model = ProviderModel::new("main", ProviderConfig::new(ProviderKind::OpenAi, "sk-hidden"), "m").unwrap();
        assert!(!format!("{model:?}").contains("sk-hidden"));
    }

    #[test]
    fn model_refs_split_at_the_first_slash() {
        assert_eq!(split_model_ref("main/gpt-4").unwrap(), ("main", "gpt-4"));
        assert_eq!(split_model_ref("or/anthropic/claude").unwrap(), ("or", "anthropic/claude"));
        assert!(split_model_ref("gpt-4").is_err());
        assert!(split_model_ref("/gpt-4").is_err());
        assert!(split_model_ref("main/").is_err());
    }
}

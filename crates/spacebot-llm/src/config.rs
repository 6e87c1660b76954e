//! Provider settings: which wire, where, with which key, and how patiently.
//!
//! These are plain values. Nothing here reads a file or the environment: the binary resolves
//! `env:NAME` references and defaults from its config file, then fills a [`ProviderConfig`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderKind {
    /// OpenAI Chat Completions (`POST {base_url}/chat/completions`): OpenAI itself and every
    /// compatible server (OpenRouter, vLLM, llama.cpp server, Ollama, ...).
    OpenAi,
    /// Anthropic Messages (`POST {base_url}/v1/messages`).
    Anthropic,
    /// A GGUF model file run in-process on the CPU ([`ProviderConfig::model_path`]); needs the
    /// `local-model` cargo feature. No URL and no key.
    Local,
}

impl ProviderKind {
    /// The name used in config files: `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Local => "local",
        }
    }

    /// The base URL used when the config names none (`local:` for the in-process model, which
    /// has none).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com",
            Self::Local => "local:",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = Error;

    /// Parses `openai`, `anthropic` or `local` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(Self::OpenAi),
            "anthropic" => Ok(Self::Anthropic),
            "local" => Ok(Self::Local),
            _ => Err(Error::UnknownKind(s.to_owned())),
        }
    }
}

/// How to reach one provider and how hard to try.
///
/// Build it with [`ProviderConfig::new`] and the `with_*` methods; every field is public so the
/// binary can also set them one by one. `Debug` never prints the API key.
///
/// ```
/// use std::time::Duration;
/// use spacebot_llm::{ProviderConfig, ProviderKind};
///
/// let config = ProviderConfig::new(ProviderKind::OpenAi, "sk-secret")
///     .with_base_url("http://127.0.0.1:8080/v1")
///     .with_timeout(Duration::from_secs(30));
/// assert!(!format!("{config:?}").contains("sk-secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// The wire format.
    pub kind: ProviderKind,
    /// Where the API lives; `None` means the kind's [default](ProviderKind::default_base_url).
    /// For OpenAI this includes the version segment (`http://host:port/v1`); for Anthropic it
    /// is the API root (`https://api.anthropic.com`).
    pub base_url: Option<String>,
    /// The credential. May be empty for local servers that need none.
    pub api_key: String,
    /// How long one attempt may take. For a streamed answer, how long the stream may go without
    /// an event (so a long answer that keeps streaming is never cut off).
    pub timeout: Duration,
    /// How many times a transient failure (429, 5xx, timeout, unreachable) is retried.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles on each further retry.
    pub initial_backoff: Duration,
    /// The longest wait between retries. A `Retry-After` longer than this is not waited out: the
    /// error is returned at once, carrying the provider's delay.
    pub max_backoff: Duration,
    /// The output token bound sent when a request sets none (Anthropic requires one).
    pub max_tokens: u32,
    /// The model's context window in tokens, reported to the harness for compaction. For a
    /// [`ProviderKind::Local`] model, `0` (the default of [`ProviderConfig::local`]) means the
    /// file's, up to 4096 tokens.
    pub context_window: usize,
    /// The GGUF file a [`ProviderKind::Local`] provider runs; unused by the other kinds.
    pub model_path: Option<std::path::PathBuf>,
}

impl ProviderConfig {
    /// The default timeout per attempt.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// The default number of retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// The default first backoff.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
    /// The default longest backoff.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
    /// The default output token bound.
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;
    /// The default context window.
    pub const DEFAULT_CONTEXT_WINDOW: usize = 128_000;
    /// The default output token bound of a [`ProviderKind::Local`] model.
    pub const DEFAULT_LOCAL_MAX_TOKENS: u32 = 256;

    /// A provider of `kind` with `api_key`, at the kind's default base URL, with default limits.
    pub fn new(kind: ProviderKind, api_key: impl Into<String>) -> Self {
        Self {
            kind,
            base_url: None,
            api_key: api_key.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            context_window: Self::DEFAULT_CONTEXT_WINDOW,
            model_path: None,
        }
    }

    /// An in-process model running the GGUF file at `path` ([`ProviderKind::Local`]), with a
    /// small output bound (small models ramble, and every token costs CPU time).
    pub fn local(path: impl Into<std::path::PathBuf>) -> Self {
        let mut config = Self::new(ProviderKind::Local, "");
        config.model_path = Some(path.into());
        config.max_tokens = Self::DEFAULT_LOCAL_MAX_TOKENS;
        // The file's own, capped (see `LocalSettings::context_window`).
        config.context_window = 0;
        config
    }

    /// Sets the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Sets the timeout per attempt (idle timeout for streams).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many times transient failures are retried.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the first backoff.
    pub fn with_initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.initial_backoff = initial_backoff;
        self
    }

    /// Sets the longest backoff.
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// Sets the default output token bound.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets the context window.
    pub fn with_context_window(mut self, context_window: usize) -> Self {
        self.context_window = context_window;
        self
    }

    /// The base URL requests go to: the configured one without a trailing slash, or the kind's
    /// default.
    pub fn effective_base_url(&self) -> &str {
        match &self.base_url {
            Some(url) => url.trim_end_matches('/'),
            None => self.kind.default_base_url(),
        }
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api_key = if self.api_key.is_empty() { "<empty>" } else { "<redacted>" };
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &api_key)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_tokens", &self.max_tokens)
            .field("context_window", &self.context_window)
            .field("model_path", &self.model_path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key() {
        let config = ProviderConfig::new(ProviderKind::Anthropic, "sk-ant-very-secret");
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(format!("{:?}", ProviderConfig::new(ProviderKind::OpenAi, "")).contains("<empty>"));
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = ProviderConfig::new(ProviderKind::OpenAi, "k");
        assert_eq!(config.timeout, Duration::from_secs(120));
        assert_eq!(config.max_retries, 3);
        assert_eq!(config.initial_backoff, Duration::from_millis(500));
        assert_eq!(config.max_tokens, 4096);
        assert_eq!(config.effective_base_url(), "https://api.openai.com/v1");
        let config = config.with_base_url("http://localhost:8080/v1/");
        assert_eq!(config.effective_base_url(), "http://localhost:8080/v1");
    }

    #[test]
    fn kinds_parse_from_config_names() {
        assert_eq!("openai".parse::<ProviderKind>().ok(), Some(ProviderKind::OpenAi));
        assert_eq!("Anthropic".parse::<ProviderKind>().ok(), Some(ProviderKind::Anthropic));
        let error = "gemini".parse::<ProviderKind>().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("unknown provider kind 'gemini' (expected 'openai', 'anthropic' or 'local')")
        );
        assert_eq!("LOCAL".parse::<ProviderKind>().ok(), Some(ProviderKind::Local));
    }
}

//! Errors at the contract's boundaries.
//!
//! Each boundary error carries a kind chosen where the failure happened, so the caller decides
//! (retry, give up, tell the user) by matching a typed kind instead of guessing from message text.

use std::time::Duration;

use crate::ids::AgentId;

/// The boxed source of an error from an implementation behind a trait.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a failed delivery or platform call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterErrorKind {
    /// Worth retrying: rate limits, timeouts, dropped connections, 5xx.
    Transient,
    /// Retrying will not help: bad credentials, missing permissions, unknown channel.
    Permanent,
    /// The platform cannot do this (reactions on a webhook, say).
    Unsupported,
}

/// An error from a [`MessagingAdapter`](crate::MessagingAdapter).
#[derive(Debug, thiserror::Error)]
#[error("{adapter}: {message}")]
pub struct AdapterError {
    kind: AdapterErrorKind,
    adapter: String,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl AdapterError {
    /// An error of the given kind from the named adapter.
    pub fn new(kind: AdapterErrorKind, adapter: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, adapter: adapter.into(), message: message.into(), source: None }
    }

    /// A transient error.
    pub fn transient(adapter: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(AdapterErrorKind::Transient, adapter, message)
    }

    /// A permanent error.
    pub fn permanent(adapter: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(AdapterErrorKind::Permanent, adapter, message)
    }

    /// Something the platform (or this adapter) can't do, such as a file where only text goes.
    pub fn unsupported(adapter: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(AdapterErrorKind::Unsupported, adapter, message)
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind, set by the adapter where the failure happened.
    pub fn kind(&self) -> AdapterErrorKind {
        self.kind
    }

    /// The adapter runtime key.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Whether retrying may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == AdapterErrorKind::Transient
    }
}

/// Why a model call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LlmErrorKind {
    /// The provider said 429.
    RateLimited,
    /// The provider answered 5xx.
    ServerError,
    /// No answer within the configured timeout.
    Timeout,
    /// The provider could not be reached (connection refused, DNS, a reset or failed handshake).
    Unreachable,
    /// The provider's TLS certificate is not trusted (no trusted authority signed it, it expired,
    /// or it names another host). Nothing was sent; retrying won't help until someone trusts the
    /// certificate or fixes the address.
    Untrusted,
    /// Credentials were rejected (401/403).
    Auth,
    /// The request was rejected as invalid (other 4xx).
    InvalidRequest,
    /// The provider answered something that is not a valid response.
    InvalidResponse,
    /// No model is configured for this process.
    NotConfigured,
}

impl LlmErrorKind {
    /// Whether a retry of the same request may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::RateLimited | Self::ServerError | Self::Timeout | Self::Unreachable)
    }
}

/// An error from a [`LanguageModel`](crate::LanguageModel).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    kind: LlmErrorKind,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: Option<BoxError>,
}

impl LlmError {
    /// An error of the given kind.
    pub fn new(kind: LlmErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None, source: None }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Records how long the provider asked us to wait.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The kind.
    pub fn kind(&self) -> LlmErrorKind {
        self.kind
    }

    /// How long the provider asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// An error from a store ([`ConversationLog`](crate::ConversationLog),
/// [`MemoryStore`](crate::MemoryStore)).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    transient: bool,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl StoreError {
    /// A store error; `transient` when a retry may succeed (a busy database, say).
    pub fn new(message: impl Into<String>, transient: bool) -> Self {
        Self { transient, message: message.into(), source: None }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// An error from a [`Tool`](crate::Tool). Its text is shown to the model as the tool result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments did not match the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
}

/// An error from an [`Embedder`](crate::Embedder).
#[derive(Debug, thiserror::Error)]
#[error("can't embed: {message}")]
pub struct EmbedError {
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl EmbedError {
    /// An embedding error.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// This crate's own error: failures of the [`Runtime`](crate::Runtime).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message names an agent this runtime does not host.
    #[error("no agent named '{0}'")]
    UnknownAgent(AgentId),
    /// The runtime is shutting down and accepts no more messages.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The runtime was built without a required part.
    #[error("the runtime needs {0}")]
    Missing(&'static str),
    /// The conversation log failed.
    #[error("can't record the message: {0}")]
    Store(#[from] StoreError),
}

/// Why a cron job could not be created, found or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    /// The job's definition is invalid; the message says which field and why.
    #[error("invalid cron job: {0}")]
    Invalid(String),
    /// No job with this id for this agent.
    #[error("no cron job named '{0}'")]
    NotFound(String),
    /// The store failed.
    #[error("can't store the cron job: {0}")]
    Store(#[from] StoreError),
    /// The scheduler has stopped.
    #[error("the cron scheduler is not running")]
    Stopped,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_kinds_are_the_retryable_ones() {
        assert!(LlmErrorKind::RateLimited.is_transient());
        assert!(LlmErrorKind::Timeout.is_transient());
        assert!(!LlmErrorKind::Auth.is_transient());
        assert!(!LlmErrorKind::InvalidResponse.is_transient());
        assert!(AdapterError::transient("discord", "429").is_transient());
        assert!(!AdapterError::permanent("discord", "forbidden").is_transient());
    }
}

//! Errors building a model from its settings.
//!
//! Failures of a model call are [`spacebot_core::LlmError`]s with a kind; this type covers only
//! what can go wrong before any request is sent, so the binary can name the config value at fault.

/// A model could not be built from its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("provider '{provider}' has an invalid base_url '{url}': {reason}")]
    InvalidBaseUrl {
        /// The provider's name.
        provider: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model name is empty.
    #[error("provider '{provider}' was given an empty model name")]
    EmptyModel {
        /// The provider's name.
        provider: String,
    },
    /// The provider name is empty.
    #[error("a provider name can't be empty")]
    EmptyProvider,
    /// A provider kind that is not supported.
    #[error("unknown provider kind '{0}' (expected 'openai' or 'anthropic')")]
    UnknownKind(String),
    /// A `provider/model` reference without the slash.
    #[error("model reference '{0}' should look like 'provider/model'")]
    InvalidModelRef(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    #[error("unknown provider kind '{0}' (expected 'openai', 'anthropic' or 'local')")]
    UnknownKind(String),
    /// [`ProviderModel::new`](crate::ProviderModel::new) was handed a `local` provider, which
    /// runs in-process: [`build_model`](crate::build_model) builds those.
    #[error("provider '{provider}' is of kind 'local', which runs in-process and is built by build_model")]
    NotHosted {
        /// The provider's name.
        provider: String,
    },
    /// A `local` provider without the model file to run.
    #[error("provider '{provider}' is of kind 'local' but names no model file (set its `path`)")]
    NoModelPath {
        /// The provider's name.
        provider: String,
    },
    /// This build has no in-process model (the `local-model` cargo feature is off).
    #[error("provider '{provider}' is of kind 'local', but this spacebot was built without the `local-model` feature")]
    LocalModelUnavailable {
        /// The provider's name.
        provider: String,
    },
    /// The local model's file does not exist.
    #[error("the local model file {} does not exist (fetch it with `scripts/fetch-models chat`)", path.display())]
    ModelFileMissing {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The local model's file could not be read as a GGUF model.
    #[error("the local model file {} can't be loaded: {reason}", path.display())]
    ModelFileInvalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The local model's file holds an architecture this build can't run.
    #[error(
        "the local model file {} holds a '{architecture}' model, which spacebot can't run (it runs GGUF models of the llama and qwen2 architectures)",
        path.display()
    )]
    UnsupportedArchitecture {
        /// The file.
        path: std::path::PathBuf,
        /// `general.architecture` from its metadata.
        architecture: String,
    },
    /// A `provider/model` reference without the slash.
    #[error("model reference '{0}' should look like 'provider/model'")]
    InvalidModelRef(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

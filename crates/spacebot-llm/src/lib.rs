//! Spacebot's [`LanguageModel`](spacebot_core::LanguageModel)s over rig-core providers.
//!
//! A [`ProviderModel`] answers core [`ChatRequest`](spacebot_core::ChatRequest)s through one of
//! two wires, both with tool calls and streaming:
//! - [`ProviderKind::OpenAi`]: OpenAI Chat Completions (`POST {base_url}/chat/completions`), so
//!   any compatible server works (OpenAI, OpenRouter, vLLM, llama.cpp server, Ollama);
//! - [`ProviderKind::Anthropic`]: Anthropic Messages (`POST {base_url}/v1/messages`).
//!
//! With the `local-model` cargo feature, [`ProviderKind::Local`] runs a GGUF chat model
//! in-process on the CPU (`LocalModel`, built by [`build_model`]): streamed, one generation at a
//! time, loaded on first use.
//!
//! rig does the wire encoding; this crate owns the policy around it. Every attempt has a timeout;
//! transient failures (429, 5xx, timeouts, unreachable hosts) are retried with exponential backoff
//! or the provider's `Retry-After`; everything else fails at once. Each error is one sentence
//! naming the provider and its base URL, with an [`LlmErrorKind`](spacebot_core::LlmErrorKind)
//! the caller can match on.
//!
//! Settings are plain values ([`ProviderConfig`]): this crate reads no file and no environment.
//! The process must install a rustls `CryptoProvider` before the first request, as the binary's
//! `main` does.
//!
//! ```no_run
//! # fn example() -> Result<(), spacebot_llm::Error> {
//! use spacebot_llm::{ProviderConfig, ProviderKind, build_model};
//!
//! let config = ProviderConfig::new(ProviderKind::Anthropic, "sk-ant-...");
//! let model = build_model("claude", &config, "claude-sonnet-4-5")?;
//! assert_eq!(model.name(), "claude/claude-sonnet-4-5");
//! # Ok(())
//! # }
//! ```

mod classify;
mod config;
mod convert;
mod error;
#[cfg(feature = "local-model")]
mod local;
mod model;
mod retry;

pub use config::{ProviderConfig, ProviderKind};
pub use error::{Error, Result};
#[cfg(feature = "local-model")]
pub use local::{LocalModel, LocalModelInfo, LocalSettings};
pub use model::{ProviderModel, build_model, split_model_ref};

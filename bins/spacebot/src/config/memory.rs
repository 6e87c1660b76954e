//! The `[memory]` section: which embedder turns memories into vectors, and how often the cortex
//! maintains them.
//!
//! ```toml
//! [memory]
//! embedder = "openai"                  # or "hashing" (the default: built in, no model)
//! embedding_base_url = "https://api.openai.com/v1"
//! embedding_model = "text-embedding-3-small"
//! embedding_dimensions = 384
//! embedding_api_key = "env:OPENAI_API_KEY"
//! maintenance_interval_secs = 3600     # 0 turns maintenance off
//! maintenance_budget_secs = 60
//! ```

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::resolve;

/// The embedding model an OpenAI-compatible embedder uses unless told otherwise.
pub(crate) const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemory {
    embedder: Option<String>,
    embedding_base_url: Option<String>,
    embedding_model: Option<String>,
    embedding_dimensions: Option<usize>,
    embedding_api_key: Option<String>,
    maintenance_interval_secs: Option<u64>,
    maintenance_budget_secs: Option<u64>,
}

/// Which embedder the daemon's memories use.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum EmbedderSettings {
    /// The dependency-free hashing embedder.
    Hashing { dimensions: usize },
    /// An OpenAI-compatible `/embeddings` endpoint.
    OpenAi { base_url: String, model: String, dimensions: usize, api_key: Option<String> },
}

impl std::fmt::Debug for EmbedderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hashing { dimensions } => f.debug_struct("Hashing").field("dimensions", dimensions).finish(),
            Self::OpenAi { base_url, model, dimensions, api_key } => f
                .debug_struct("OpenAi")
                .field("base_url", base_url)
                .field("model", model)
                .field("dimensions", dimensions)
                .field("api_key", &api_key.as_ref().map(|_| "[redacted]"))
                .finish(),
        }
    }
}

/// The checked `[memory]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemorySettings {
    pub(crate) embedder: EmbedderSettings,
    /// Time between maintenance passes; `None` when maintenance is off.
    pub(crate) maintenance_interval: Option<Duration>,
    /// Each agent's time budget per pass.
    pub(crate) maintenance_budget: Duration,
}

pub(crate) fn memory(raw: RawMemory) -> anyhow::Result<MemorySettings> {
    let dimensions = raw.embedding_dimensions.unwrap_or(384);
    if !(8..=8192).contains(&dimensions) {
        bail!("config key `memory.embedding_dimensions` must be between 8 and 8192, not {dimensions}");
    }
    let embedder = match raw.embedder.as_deref().unwrap_or("hashing") {
        "hashing" => EmbedderSettings::Hashing { dimensions },
        "openai" => {
            let Some(base_url) = raw.embedding_base_url else {
                bail!("config key `memory.embedding_base_url` is required with `memory.embedder = \"openai\"`")
            };
            let api_key = match raw.embedding_api_key {
                Some(key) => Some(resolve(&key, "memory.embedding_api_key")?),
                None => None,
            };
            EmbedderSettings::OpenAi {
                base_url,
                model: raw.embedding_model.unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_owned()),
                dimensions,
                api_key,
            }
        }
        other => bail!("config key `memory.embedder` must be \"hashing\" or \"openai\", not `{other}`"),
    };
    let interval = raw.maintenance_interval_secs.unwrap_or(3600);
    Ok(MemorySettings {
        embedder,
        maintenance_interval: (interval > 0).then(|| Duration::from_secs(interval)),
        maintenance_budget: Duration::from_secs(raw.maintenance_budget_secs.unwrap_or(60).max(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_hashing_embedder_and_hourly_maintenance() {
        let settings = memory(RawMemory::default()).unwrap();
        assert_eq!(settings.embedder, EmbedderSettings::Hashing { dimensions: 384 });
        assert_eq!(settings.maintenance_interval, Some(Duration::from_secs(3600)));
        assert_eq!(settings.maintenance_budget, Duration::from_secs(60));
    }

    #[test]
    fn openai_needs_a_base_url_and_unknown_embedders_are_refused() {
        let raw = RawMemory { embedder: Some("openai".into()), ..RawMemory::default() };
        assert!(memory(raw).unwrap_err().to_string().contains("embedding_base_url"));
        let raw = RawMemory { embedder: Some("candle".into()), ..RawMemory::default() };
        assert!(memory(raw).unwrap_err().to_string().contains("memory.embedder"));
        let raw = RawMemory { maintenance_interval_secs: Some(0), ..RawMemory::default() };
        assert_eq!(memory(raw).unwrap().maintenance_interval, None);
    }
}

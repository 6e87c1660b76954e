//! The `[memory]` section: which embedder turns memories into vectors, and how often the cortex
//! maintains them.
//!
//! ```toml
//! [memory]
//! embedder = "openai"                  # or "hashing" (the default: built in, no model), or "local"
//! embedding_base_url = "https://api.openai.com/v1"
//! embedding_model = "text-embedding-3-small"
//! embedding_dimensions = 384
//! embedding_api_key = "env:OPENAI_API_KEY"
//! # embedder = "local" (a binary built with `--features local-embeddings`) reads the model from:
//! # embedding_model_dir = "~/.cache/spacebot/models/all-MiniLM-L6-v2"
//! maintenance_interval_secs = 3600     # 0 turns maintenance off
//! maintenance_budget_secs = 60
//! ```
//!
//! The local model's directory is checked here (it must hold every file the model needs), so
//! `spacebot config check` catches a wrong path; the model itself is loaded when the daemon starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use spacebot_memory::LOCAL_MODEL_FILES;

use super::{expand_home, resolve};

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
    embedding_model_dir: Option<PathBuf>,
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
    /// A sentence-embedding model run in-process (cargo feature `local-embeddings`).
    #[cfg(feature = "local-embeddings")]
    Local { model_dir: PathBuf },
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
            #[cfg(feature = "local-embeddings")]
            Self::Local { model_dir } => f.debug_struct("Local").field("model_dir", model_dir).finish(),
        }
    }
}

/// The checked `[memory]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemorySettings {
    pub(crate) embedder: EmbedderSettings,
    /// Whether `memory.embedder` was set; when not, the embedded default may pick the local one.
    pub(crate) embedder_configured: bool,
    /// Time between maintenance passes; `None` when maintenance is off.
    pub(crate) maintenance_interval: Option<Duration>,
    /// Each agent's time budget per pass.
    pub(crate) maintenance_budget: Duration,
}

pub(crate) fn memory(raw: RawMemory) -> anyhow::Result<MemorySettings> {
    let embedder_configured = raw.embedder.is_some();
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
            let base_url =
                super::check::http_url(&resolve(&base_url, "memory.embedding_base_url")?, "memory.embedding_base_url")?;
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
        "local" => {
            let Some(model_dir) = raw.embedding_model_dir else {
                bail!("config key `memory.embedding_model_dir` is required with `memory.embedder = \"local\"`")
            };
            let model_dir = expand_home(&model_dir);
            check_model_dir(&model_dir)?;
            local(model_dir)?
        }
        other => bail!("config key `memory.embedder` must be \"hashing\", \"openai\" or \"local\", not `{other}`"),
    };
    let interval = raw.maintenance_interval_secs.unwrap_or(3600);
    Ok(MemorySettings {
        embedder,
        embedder_configured,
        maintenance_interval: (interval > 0).then(|| Duration::from_secs(interval)),
        maintenance_budget: Duration::from_secs(
            super::check::positive(raw.maintenance_budget_secs, "memory.maintenance_budget_secs")?.unwrap_or(60),
        ),
    })
}

/// Checks that `dir` holds every file the local model loads.
fn check_model_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("config key `memory.embedding_model_dir` names {}, which is not a directory", dir.display());
    }
    for file in LOCAL_MODEL_FILES {
        if !dir.join(file).is_file() {
            bail!(
                "config key `memory.embedding_model_dir` names {}, which has no {file} (scripts/fetch-models \
                 downloads all-MiniLM-L6-v2)",
                dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(feature = "local-embeddings")]
fn local(model_dir: PathBuf) -> anyhow::Result<EmbedderSettings> {
    Ok(EmbedderSettings::Local { model_dir })
}

#[cfg(not(feature = "local-embeddings"))]
fn local(_model_dir: PathBuf) -> anyhow::Result<EmbedderSettings> {
    bail!(
        "`memory.embedder = \"local\"` needs a binary built with the local embedding model: rebuild with \
         `cargo build --release -p spacebot --features local-embeddings`"
    )
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

    /// A directory with empty stand-ins for the model files, but for `without`.
    fn model_dir(without: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in LOCAL_MODEL_FILES.into_iter().filter(|file| Some(*file) != without) {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        dir
    }

    fn local_raw(dir: Option<&Path>) -> RawMemory {
        RawMemory {
            embedder: Some("local".into()),
            embedding_model_dir: dir.map(Path::to_path_buf),
            ..RawMemory::default()
        }
    }

    #[test]
    fn local_needs_a_model_dir_holding_every_file() {
        let error = memory(local_raw(None)).unwrap_err().to_string();
        assert!(error.contains("`memory.embedding_model_dir` is required"), "{error}");

        let missing = Path::new("/nonexistent/models/all-MiniLM-L6-v2");
        let error = memory(local_raw(Some(missing))).unwrap_err().to_string();
        assert!(error.contains("memory.embedding_model_dir") && error.contains("not a directory"), "{error}");

        for file in LOCAL_MODEL_FILES {
            let dir = model_dir(Some(file));
            let error = memory(local_raw(Some(dir.path()))).unwrap_err().to_string();
            assert!(
                error.contains("memory.embedding_model_dir") && error.contains(&format!("has no {file}")),
                "{error}"
            );
            assert!(error.contains(&dir.path().display().to_string()), "{error}");
        }
    }

    #[cfg(not(feature = "local-embeddings"))]
    #[test]
    fn local_without_the_feature_says_how_to_rebuild() {
        let dir = model_dir(None);
        let error = memory(local_raw(Some(dir.path()))).unwrap_err().to_string();
        assert!(error.contains("--features local-embeddings"), "{error}");
    }

    #[cfg(feature = "local-embeddings")]
    #[test]
    fn local_with_the_feature_keeps_the_directory() {
        let dir = model_dir(None);
        let settings = memory(local_raw(Some(dir.path()))).unwrap();
        assert_eq!(settings.embedder, EmbedderSettings::Local { model_dir: dir.path().to_path_buf() });
    }
}

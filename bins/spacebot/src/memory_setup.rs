//! The daemon's memories: one [`MemoryGraph`] per agent at `DATA_DIR/agents/<id>/memory.db`, or
//! with `[storage] url` one graph of every agent on the PostgreSQL database; embedded with the
//! `[memory]` embedder (hashing unless configured), reindexed at start when the embedder
//! changed, and maintained by the cortex every interval.
//!
//! The embedder is built once and shared by every agent; the local model (cargo feature
//! `local-embeddings`) is opened here, off the async runtime, and loads its weights on first use.

use std::sync::Arc;

use anyhow::Context;

use spacebot_core::Embedder;
use spacebot_cortex::{MaintenanceSettings, MemoryMaintenance};
use spacebot_memory::{HashingEmbedder, MemoryGraph, OpenAiEmbedder, PgLog};

use crate::config::{Config, EmbedderSettings, MemorySettings};

/// Memories embedded per transaction during a reindex at start.
const REINDEX_BATCH: usize = 64;

/// The embedder the settings name.
///
/// Blocking when the settings name the local model, whose config is read and files fingerprinted
/// here (its weights load on first use); async callers run it on the blocking pool.
///
/// # Errors
///
/// When the local model's files are missing or malformed; the message names the file at fault.
pub(crate) fn embedder(settings: &EmbedderSettings) -> anyhow::Result<Arc<dyn Embedder>> {
    Ok(match settings {
        EmbedderSettings::Hashing { dimensions } => Arc::new(HashingEmbedder::new(*dimensions)),
        EmbedderSettings::OpenAi { base_url, model, dimensions, api_key } => {
            let mut embedder = OpenAiEmbedder::new(base_url, model, *dimensions);
            if let Some(key) = api_key {
                embedder = embedder.with_api_key(key);
            }
            Arc::new(embedder)
        }
        #[cfg(feature = "local-embeddings")]
        EmbedderSettings::Local { model_dir } => {
            let embedder = spacebot_memory::LocalEmbedder::open(model_dir)?;
            tracing::info!(
                dir = %model_dir.display(),
                model = embedder.model_id(),
                "local embedding model found; it loads when the first memory is saved or recalled"
            );
            Arc::new(embedder)
        }
    })
}

/// The agents' memories, in config order.
pub(crate) struct Memories {
    stores: Vec<(String, Arc<MemoryGraph>)>,
}

impl Memories {
    /// Opens (creating if needed) each agent's memory file, or the graph on `postgres` when the
    /// log is there, reindexing first what was embedded with another embedder.
    pub(crate) async fn open(config: &Config, postgres: Option<&PgLog>) -> anyhow::Result<Self> {
        let settings = config.memory.embedder.clone();
        let embedder = tokio::task::spawn_blocking(move || embedder(&settings))
            .await
            .context("the task loading the embedder failed")??;
        let mut stores = Vec::new();
        if let Some(log) = postgres {
            // One graph holds every agent's memories (each row names its agent, and every read
            // filters by it), so the agents share one set of in-memory copies.
            let store = Arc::new(MemoryGraph::on_postgres(log, embedder.clone()).await?);
            reindex_if_needed(&store, "every agent", embedder.model_id()).await?;
            for agent in &config.agents {
                stores.push((agent.id.clone(), store.clone()));
            }
            return Ok(Self { stores });
        }
        for agent in &config.agents {
            let path = config.data_dir.memory_db(&agent.id);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("can't create {}", dir.display()))?;
            }
            let store = MemoryGraph::open(&path, embedder.clone()).await?;
            reindex_if_needed(&store, &agent.id, embedder.model_id()).await?;
            stores.push((agent.id.clone(), Arc::new(store)));
        }
        Ok(Self { stores })
    }

    /// Every agent's memory, for the API's memory search.
    pub(crate) fn all(
        &self,
    ) -> impl Iterator<Item = (spacebot_core::AgentId, Arc<dyn spacebot_core::MemoryStore>)> + '_ {
        self.stores.iter().map(|(id, store)| {
            let store: Arc<dyn spacebot_core::MemoryStore> = store.clone();
            (spacebot_core::AgentId::from(id.as_str()), store)
        })
    }

    /// The memory of `agent`, if it has one.
    pub(crate) fn get(&self, agent: &str) -> Option<Arc<MemoryGraph>> {
        self.stores.iter().find(|(id, _)| id == agent).map(|(_, store)| store.clone())
    }

    /// The cortex's maintenance of these memories, or `None` when it is turned off.
    pub(crate) fn maintenance(&self, settings: &MemorySettings) -> Option<MemoryMaintenance> {
        let interval = settings.maintenance_interval?;
        let settings =
            MaintenanceSettings::default().with_interval(interval).with_time_budget(settings.maintenance_budget);
        let maintenance = self
            .stores
            .iter()
            .fold(MemoryMaintenance::new(settings), |m, (id, store)| m.with_agent(id.as_str(), store.clone()));
        (!maintenance.is_empty()).then_some(maintenance)
    }

    /// Closes every memory file (after the runtime and the maintenance stopped). A graph on
    /// PostgreSQL shares the log's connections: closing it closes them, so the log closes after.
    pub(crate) async fn close(&self) {
        for (_, store) in &self.stores {
            store.close().await;
        }
    }
}

/// Embeds the memories of `store` that have no vector of the current embedder (it changed).
async fn reindex_if_needed(store: &MemoryGraph, whose: &str, model: &str) -> anyhow::Result<()> {
    let pending = store.pending_reindex().await?;
    if pending == 0 {
        return Ok(());
    }
    tracing::info!(agent = %whose, pending, model, "the embedder changed: reindexing memories");
    let done = store
        .reindex(REINDEX_BATCH, &mut |done, total| {
            tracing::debug!(done, total, "reindexing");
        })
        .await
        .with_context(|| format!("can't reindex the memories of {whose}"))?;
    tracing::info!(agent = %whose, done, "memories reindexed");
    Ok(())
}

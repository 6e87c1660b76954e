//! [`MemoryGraph`]: the typed memory graph of an agent on SQLite or PostgreSQL, behind
//! [`spacebot_core::MemoryStore`].
//!
//! One database holds everything a memory owns: its row, its edges and its embedding vector
//! (migrations `0002_memory.sql` and `postgres/0003_memory.sql`), and on SQLite its full-text
//! index row. Every write (save, merge, forget, prune, reindex) is one transaction, and the
//! index and vectors follow the rows through triggers or in the same transaction, so no
//! operation can leave a stale index or vector row behind. The statements are written once for
//! both engines; `db.rs` holds what differs.
//!
//! Recall is hybrid: a full-text list (BM25 as FTS5 computes it, over an in-memory copy of the
//! live memories' stemmed words, see `text.rs`), a vector list (cosine over an in-memory copy
//! of the vectors, see `vectors.rs`), a graph-walk list from the best hits of both, a list
//! within a period the query names and a second hop through the names the best hits mention,
//! fused by score and reranked by who said what (`recall.rs`). Visibility, type and time
//! filters are applied as each list is ranked, and the final rows are always read from the
//! database with the filter, so nothing a reader may not see can come back. The copies follow
//! the database commit by commit, another process's commits included (`indexes.rs`).
//!
//! The stages of a recall and of a save run in `trace`-level spans named `recall.*` and `save.*`
//! (`recall.text`, `recall.vectors`, `save.insert`, ...), so a subscriber can time them; the
//! benchmark (`benches/spacebot-bench`) prints them per stage. With no subscriber interested,
//! a span costs a check of a cached flag.

mod audience;
pub(crate) mod db;
mod indexes;
mod maintain;
mod recall;
mod reindex;
mod render;
mod rows;
mod text;
mod vectors;
mod when;
mod write;

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use spacebot_core::{
    AgentId, Edge, Embedder, KnowledgeQuery, ListQuery, MaintenanceOptions, MaintenanceReport, Memory, MemoryId,
    MemoryStore, NewMemory, RecallHit, RecallQuery, SaveOutcome, StoreError, Visibility,
};

use crate::error::{Error, permanent, store_error};
use crate::memory::audience::Filter;
use crate::memory::db::{Db, Tx, on_db};
use crate::memory::indexes::Indexes;
use crate::sqlite::SqliteLog;

pub use recall::RecallLists;
pub use write::{ImportMark, MAX_CONTENT_BYTES, text_hash};

/// The clock a store reads "now" from; tests inject a fixed one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Saves at least this similar (cosine) to a live memory of the same type and scope merge into it.
const MERGE_AT_WRITE: f32 = 0.95;

/// Heap bytes of a store's in-memory copies, approximate (allocations are counted by capacity,
/// hash maps by slots, shared strings not at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexFootprint {
    /// The vectors of the current model, their int8 copy, and what the vector stage filters on.
    pub vectors: usize,
    /// The word index of the live memories (full-text recall).
    pub words: usize,
}

/// The typed memory graph of an agent in one SQLite file (see the module docs).
///
/// Cloning is cheap; clones share the connection pool, the vector copy and the write lock.
#[derive(Clone)]
pub struct MemoryGraph {
    db: Db,
    embedder: Arc<dyn Embedder>,
    index: Arc<RwLock<Indexes>>,
    /// Serialises this process's write transactions with the updates of the vector copy that
    /// follow their commits, so the copy sees commits in commit order.
    writer: Arc<tokio::sync::Mutex<()>>,
    clock: Clock,
    merge_at_write: f32,
    /// Recent knowledge renders, valid while the write generation stands (`render.rs`).
    renders: Arc<std::sync::Mutex<render::RenderCache>>,
}

impl std::fmt::Debug for MemoryGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGraph").field("embedder", &self.embedder.model_id()).finish_non_exhaustive()
    }
}

impl MemoryGraph {
    /// Opens (creating and migrating if needed) the memory database at `path`, embedding with
    /// `embedder`, and loads the vectors of `embedder`'s model.
    ///
    /// When the file holds memories without a vector of this model (the embedder changed), they
    /// are found by full-text and graph search only until [`reindex`](Self::reindex) runs;
    /// [`pending_reindex`](Self::pending_reindex) says how many.
    ///
    /// # Errors
    ///
    /// [`Error`] naming `path` when the file can't be opened, migrated or read.
    pub async fn open(path: &Path, embedder: Arc<dyn Embedder>) -> Result<Self, Error> {
        let store = SqliteLog::open(path).await?;
        Self::on_sqlite(&store, embedder).await.map_err(|source| Error::Load { path: path.to_owned(), source })
    }

    /// A fresh in-memory database, for tests.
    ///
    /// # Errors
    ///
    /// As [`SqliteLog::open_in_memory`].
    pub async fn open_in_memory(embedder: Arc<dyn Embedder>) -> Result<Self, Error> {
        let store = SqliteLog::open_in_memory().await?;
        Self::on_sqlite(&store, embedder)
            .await
            .map_err(|source| Error::Load { path: std::path::PathBuf::from(":memory:"), source })
    }

    /// The memory graph on the database file of an open log (it shares the log's connections).
    ///
    /// # Errors
    ///
    /// When the vectors can't be read.
    pub async fn on_sqlite(store: &SqliteLog, embedder: Arc<dyn Embedder>) -> Result<Self, StoreError> {
        Self::on(Db::Sqlite(store.pool.clone()), embedder).await
    }

    /// The memory graph on the PostgreSQL database of a connected log (it shares the log's
    /// connections; `PgLog::connect` applied the graph's migrations). Every daemon of a fleet
    /// keeps its own in-memory copies and catches them up from the database's change log, so
    /// a memory one daemon saves is recalled by every other.
    ///
    /// # Errors
    ///
    /// When the vectors can't be read.
    #[cfg(feature = "postgres")]
    pub async fn on_postgres(store: &crate::PgLog, embedder: Arc<dyn Embedder>) -> Result<Self, StoreError> {
        Self::on(Db::Postgres(store.pool.clone()), embedder).await
    }

    async fn on(db: Db, embedder: Arc<dyn Embedder>) -> Result<Self, StoreError> {
        let memory = Self {
            db,
            index: Arc::new(RwLock::new(Indexes::new(embedder.dimensions()))),
            embedder,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            clock: Arc::new(Utc::now),
            merge_at_write: MERGE_AT_WRITE,
            renders: Arc::default(),
        };
        memory.ensure_index().await?;
        Ok(memory)
    }

    /// Reads "now" from `clock` instead of the system clock (for tests of decay and prune).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the similarity at which a save merges into an existing memory of the same type and
    /// scope (default 0.95; above 1.0 turns write-time merging off).
    pub fn with_merge_similarity(mut self, similarity: f32) -> Self {
        self.merge_at_write = similarity;
        self
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// How many vectors the in-memory copy holds (live memories with a vector of this model).
    pub fn vector_count(&self) -> usize {
        self.read_index().vectors.len()
    }

    /// About how much heap the in-memory copies recall ranks with take (see `docs/memory.md`).
    pub fn index_footprint(&self) -> IndexFootprint {
        let index = self.read_index();
        IndexFootprint { vectors: index.vectors.heap_bytes(), words: index.text.heap_bytes() }
    }

    /// Closes the connection pool.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// The SQLite pool, for tests that look at the file (panics on another backend).
    #[cfg(test)]
    pub(crate) fn sqlite_pool(&self) -> &sqlx::SqlitePool {
        match &self.db {
            Db::Sqlite(pool) => pool,
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => panic!("not an SQLite memory graph"),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Indexes> {
        // A panic while holding the lock can't leave the index half-updated in a way that
        // matters: the next generation check reloads it.
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Indexes> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        self.db.begin_write().await
    }

    /// The filter for a visibility, with the people its participants map to (through the
    /// identity anchors) added to them.
    async fn filter(&self, agent: &AgentId, visibility: &Visibility) -> Result<Filter, StoreError> {
        let mapped = match visibility {
            Visibility::Conversation { participants, .. } if !participants.is_empty() => {
                let participants = serde_json::Value::from(participants.clone()).to_string();
                on_db!(&self.db, |pool| sqlx::query_scalar::<_, String>(
                    "SELECT human FROM human_identities
                     WHERE agent = $1 AND platform_id IN (SELECT value FROM json_each($2))",
                )
                .bind(agent.as_str())
                .bind(&participants)
                .fetch_all(pool)
                .await)
                .map_err(|error| store_error("resolve the participants' identities", error))?
            }
            _ => Vec::new(),
        };
        Ok(Filter::new(agent.clone(), visibility.clone().with_participants(mapped)))
    }

    /// Brings the in-memory copies up to the file when it changed under them (another process
    /// wrote, or a write of this one could not be applied to the copies).
    async fn ensure_index(&self) -> Result<(), StoreError> {
        let current = self.db.read_stamp().await.map_err(|error| store_error("read the memory generation", error))?;
        if self.read_index().synced().is_some_and(|synced| synced.generation == current.generation) {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        self.sync_index_locked().await
    }

    /// Brings the copies up to the file: only the memories logged as changed since the copies'
    /// stamp when that log is complete and short, else everything. The caller holds the write
    /// lock.
    async fn sync_index_locked(&self) -> Result<(), StoreError> {
        let (synced, held) = {
            let index = self.read_index();
            (index.synced(), index.text.len())
        };
        if let Some(since) = synced {
            // Beyond a quarter of the copy, a reload reads little more and is simpler.
            let limit = (held / 4).max(1_000);
            let changes =
                indexes::changes_since(&self.db, self.embedder.model_id(), self.embedder.dimensions(), since, limit)
                    .await
                    .map_err(|error| store_error("read the memory changes", error))?;
            if let Some(changes) = changes {
                tracing::debug!(changed = changes.len(), "caught the memory index up with the file");
                self.write_index().apply(changes);
                return Ok(());
            }
        }
        let mut loaded = indexes::load(&self.db, self.embedder.model_id(), self.embedder.dimensions())
            .await
            .map_err(|error| store_error("load the memory index", error))?;
        tracing::debug!(memories = loaded.text.len(), "loaded the memory index");
        let mut index = self.write_index();
        loaded.loads += index.loads;
        *index = loaded;
        Ok(())
    }

    /// Applies `change` to the in-memory copies after a commit that brought the file to
    /// `stamp`, when the copies were at the generation just before. When another process wrote
    /// in between, the copies stay at their stamp and the next read catches them up (this
    /// commit's changes included, from the change log).
    fn apply_to_index(&self, stamp: Stamp, change: impl FnOnce(&mut Indexes)) {
        let mut index = self.write_index();
        if index.synced().is_some_and(|synced| synced.generation == stamp.generation - 1) {
            change(&mut index);
            index.set_synced(Some(stamp));
        }
    }
}

/// Where the file stands: its write generation (`memory_meta`) and the id of its last logged
/// change (`memory_changes`, migration `0006_memory_changes.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) generation: i64,
    pub(crate) change: i64,
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn invalid(operation: &str, reason: impl std::fmt::Display) -> StoreError {
    permanent(operation, reason)
}

#[async_trait]
impl MemoryStore for MemoryGraph {
    async fn save(&self, memory: NewMemory) -> Result<SaveOutcome, StoreError> {
        let mut outcomes = self.save_marked(vec![(memory, None)]).await?;
        outcomes.pop().ok_or_else(|| invalid("save a memory", "nothing was saved"))
    }

    /// Saves the memories in one transaction, with one call to the embedder: all or none.
    async fn save_batch(&self, memories: Vec<NewMemory>) -> Result<Vec<SaveOutcome>, StoreError> {
        self.save_marked(memories.into_iter().map(|memory| (memory, None)).collect())
            .instrument(tracing::trace_span!("save"))
            .await
    }

    async fn get(&self, agent: &AgentId, id: &MemoryId) -> Result<Option<Memory>, StoreError> {
        rows::get(&self.db, agent, id).await.map_err(|error| store_error(format!("read memory {id}"), error))
    }

    async fn get_visible(
        &self,
        agent: &AgentId,
        id: &MemoryId,
        visibility: &Visibility,
    ) -> Result<Option<Memory>, StoreError> {
        let filter = self.filter(agent, visibility).await?;
        let rows = rows::load_admitted(&self.db, &filter, std::slice::from_ref(id))
            .await
            .map_err(|error| store_error(format!("read memory {id}"), error))?;
        Ok(rows.into_iter().next().map(rows::MemoryRow::into_memory))
    }

    async fn recall(&self, query: RecallQuery) -> Result<Vec<RecallHit>, StoreError> {
        self.recall_hybrid(query).instrument(tracing::trace_span!("recall")).await
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<Memory>, StoreError> {
        let filter = self.filter(&query.agent, &query.visibility).await?;
        let filter = Filter { kinds: query.kinds.clone(), ..filter };
        rows::list(&self.db, &filter, &query).await.map_err(|error| store_error("list memories", error))
    }

    async fn forget(&self, agent: &AgentId, id: &MemoryId) -> Result<bool, StoreError> {
        self.forget_one(agent, id).await
    }

    async fn link(&self, agent: &AgentId, edge: Edge) -> Result<(), StoreError> {
        self.link_edge(agent, edge).await
    }

    async fn edges(&self, agent: &AgentId, id: &MemoryId) -> Result<Vec<Edge>, StoreError> {
        rows::edges(&self.db, agent, id).await.map_err(|error| store_error(format!("read the edges of {id}"), error))
    }

    async fn link_identity(&self, agent: &AgentId, platform_id: &str, human: &str) -> Result<(), StoreError> {
        self.link_identity_inner(agent, platform_id, human).await
    }

    async fn render_knowledge(&self, query: KnowledgeQuery) -> Result<String, StoreError> {
        self.render(query).await
    }

    async fn maintain(&self, agent: &AgentId, options: MaintenanceOptions) -> Result<MaintenanceReport, StoreError> {
        self.maintain_pass(agent, options).await
    }
}

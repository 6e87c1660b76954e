//! Reindexing: embedding every live memory that has no vector of the current embedder's model
//! (after the embedder changed, or for memories saved while a vector could not be made), and
//! dropping vectors of other models. Batch by batch, each batch one transaction, with progress
//! reported to the caller.

use spacebot_core::StoreError;

use crate::error::store_error;
use crate::memory::db::{on_db, on_tx};
use crate::memory::indexes::EntryRow;
use crate::memory::maintain::set_meta_in;
use crate::memory::rows::encode_vector;
use crate::memory::vectors::NewVectors;
use crate::memory::{MemoryGraph, Stamp};

#[derive(sqlx::FromRow)]
struct PendingRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    content: String,
    content_hash: String,
}

impl MemoryGraph {
    /// How many live memories have no vector of the current model.
    ///
    /// # Errors
    ///
    /// When the database can't be read.
    pub async fn pending_reindex(&self) -> Result<u64, StoreError> {
        let count: i64 = on_db!(&self.db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM memories m
             WHERE m.forgotten_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.memory_seq = m.seq AND v.model = $1)",
        )
        .bind(self.embedder.model_id())
        .fetch_one(pool)
        .await)
        .map_err(|error| store_error("count memories to reindex", error))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Embeds, `batch` memories at a time, every live memory without a vector of the current
    /// model, calling `progress(done, total)` after each batch. Returns how many were embedded.
    /// Interrupted, it resumes where it stopped: each batch is committed on its own.
    ///
    /// # Errors
    ///
    /// When the embedder or the database fails; batches committed before stay committed.
    pub async fn reindex(&self, batch: usize, progress: &mut (dyn FnMut(u64, u64) + Send)) -> Result<u64, StoreError> {
        let model = self.embedder.model_id().to_owned();
        let total = self.pending_reindex().await?;
        let batch = batch.max(1);
        let mut done = 0u64;
        progress(done, total);
        // Each round makes progress or ends: rows whose vector lands leave the pending set, and a
        // round where none could be written (all changed meanwhile) stops the loop.
        loop {
            let rows: Vec<PendingRow> = on_db!(&self.db, |pool| {
                sqlx::query_as(
                "SELECT m.seq, m.id, m.agent, m.kind, m.private, m.human, m.conversation, m.scope_key, m.created_at,
                        m.content, m.content_hash
                 FROM memories m
                 WHERE m.forgotten_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.memory_seq = m.seq AND v.model = $1)
                 ORDER BY m.seq LIMIT $2",
            )
            .bind(&model)
            .bind(i64::try_from(batch).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await
            })
            .map_err(|error| store_error("read memories to reindex", error))?;
            if rows.is_empty() {
                break;
            }
            let texts: Vec<String> = rows.iter().map(|row| row.content.clone()).collect();
            let mut vectors = self
                .embedder
                .embed(&texts)
                .await
                .map_err(|error| StoreError::new(format!("can't reindex: {error}"), false).with_source(error))?;
            if vectors.len() != rows.len() || vectors.iter().any(|v| v.len() != self.embedder.dimensions()) {
                return Err(StoreError::new("can't reindex: the embedder returned vectors of the wrong shape", false));
            }
            for vector in &mut vectors {
                crate::embed::normalize(vector);
            }
            let _writer = self.writer.lock().await;
            self.ensure_index_locked().await?;
            let result: Result<(NewVectors, Stamp), sqlx::Error> = async {
                let mut transaction = self.begin_write().await?;
                let mut written = Vec::new();
                let mut agents = Vec::new();
                for (row, vector) in rows.iter().zip(vectors) {
                    // Only if the memory is still live with the content that was embedded.
                    let done = on_tx!(&mut transaction, |conn| sqlx::query(
                        "INSERT INTO memory_vectors (memory_seq, model, vector)
                         SELECT seq, $2, $3 FROM memories WHERE seq = $1 AND forgotten_at IS NULL AND content_hash = $4
                         ON CONFLICT (memory_seq) DO UPDATE SET model = excluded.model, vector = excluded.vector",
                    )
                    .bind(row.entry.seq)
                    .bind(&model)
                    .bind(encode_vector(&vector))
                    .bind(&row.content_hash)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected()))?;
                    if done > 0 {
                        written.push((row.entry.clone().into_entry(&mut agents), vector));
                    }
                }
                let generation = transaction.bump_generation().await?;
                transaction.commit().await?;
                Ok((written, generation))
            }
            .await;
            let (written, generation) = result.map_err(|error| store_error("store reindexed vectors", error))?;
            let count = written.len() as u64;
            self.apply_to_index(generation, |index| {
                for (entry, vector) in written {
                    index.vectors.upsert(entry, &vector);
                }
            });
            if count == 0 {
                break;
            }
            done += count;
            progress(done.min(total.max(done)), total.max(done));
        }
        self.finish_reindex(&model).await?;
        Ok(done)
    }

    /// Drops vectors of other models and records the model, so maintenance re-examines every
    /// memory with the new vectors.
    async fn finish_reindex(&self, model: &str) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let result: Result<Stamp, sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            let dropped = on_tx!(&mut transaction, |conn| sqlx::query("DELETE FROM memory_vectors WHERE model <> $1")
                .bind(model)
                .execute(conn)
                .await
                .map(|done| done.rows_affected()))?;
            let previous: Option<String> = on_tx!(&mut transaction, |conn| sqlx::query_scalar(
                "SELECT value FROM memory_meta WHERE key = 'embedder'"
            )
            .fetch_optional(conn)
            .await)?;
            if dropped > 0 || previous.as_deref() != Some(model) {
                set_meta_in(&mut transaction, "merge_through", 0).await?;
                set_meta_in(&mut transaction, "link_through", 0).await?;
            }
            set_meta_in(&mut transaction, "embedder", model).await?;
            let stamp = transaction.bump_generation().await?;
            transaction.commit().await?;
            Ok(stamp)
        }
        .await;
        let stamp = result.map_err(|error| store_error("finish the reindex", error))?;
        // Other models' vectors were never in the copies, so they are still right; only the
        // stamp moved (past the change log entries of the dropped vectors).
        self.apply_to_index(stamp, |_| {});
        Ok(())
    }

    /// The embedder model recorded by the last reindex (`None` before the first).
    ///
    /// # Errors
    ///
    /// When the database can't be read.
    pub async fn indexed_model(&self) -> Result<Option<String>, StoreError> {
        on_db!(&self.db, |pool| sqlx::query_scalar("SELECT value FROM memory_meta WHERE key = 'embedder'")
            .fetch_optional(pool)
            .await)
        .map_err(|error| store_error("read the embedder model", error))
    }
}

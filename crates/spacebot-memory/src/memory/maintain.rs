//! Maintenance, called by the cortex: decay, prune, merge of near-duplicates, linking of
//! related memories. Each step works in batches, each batch one transaction, and the pass stops
//! between batches when its time budget is spent (it resumes on the next pass: merge and link
//! keep a watermark in `memory_meta`).
//!
//! Decay changes `importance` and `decayed_at` only: it never rewrites `updated_at`, so renders
//! and listings do not churn. It is compounding over idle time and independent of how often it
//! runs: a memory idle for `d` days past its grace period keeps `(1 - rate)^d` of its importance,
//! whether that is applied in one pass or in a hundred.

use std::collections::HashSet;

use tokio::time::Instant;

use spacebot_core::{AgentId, MaintenanceOptions, MaintenanceReport, StoreError};

use crate::error::store_error;
use crate::memory::db::{Tx, on_db, on_tx};
use crate::memory::vectors::Entry;
use crate::memory::write::{joined_sources, may_merge};
use crate::memory::{MemoryGraph, Stamp, invalid, millis};

/// Rows per transaction.
const BATCH: usize = 200;

/// Change log entries maintenance keeps: a save writes two (row and vector), so about the last
/// 50,000 saves; a process that fell further behind reloads its copies.
const KEPT_CHANGES: i64 = 100_000;

const DAY_MS: f64 = 24.0 * 60.0 * 60.0 * 1000.0;

/// Neighbours looked at per memory when merging or linking.
const NEIGHBOURS: usize = 5;

const MERGE_WATERMARK: &str = "merge_through";
const LINK_WATERMARK: &str = "link_through";

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn validate(options: &MaintenanceOptions) -> Result<(), String> {
    let unit = |name: &str, value: f32| {
        if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(format!("{name} {value} is outside 0..=1")) }
    };
    unit("decay_per_day", options.decay_per_day)?;
    unit("prune_below", options.prune_below)?;
    unit("merge_similarity", options.merge_similarity)?;
    unit("link_similarity", options.link_similarity)
}

impl MemoryGraph {
    pub(crate) async fn maintain_pass(
        &self,
        agent: &AgentId,
        options: MaintenanceOptions,
    ) -> Result<MaintenanceReport, StoreError> {
        validate(&options).map_err(|reason| invalid("run memory maintenance", reason))?;
        let deadline = Instant::now() + options.time_budget;
        let mut report = MaintenanceReport::default();
        let (decayed, decay_done) = self.decay(agent, &options, deadline).await?;
        report.decayed = decayed;
        let (pruned, prune_done) = self.prune(agent, &options, deadline).await?;
        report.pruned = pruned;
        let (merged, merge_done) = self.merge_duplicates(agent, &options, deadline).await?;
        report.merged = merged;
        let (linked, link_done) = self.link_related(agent, &options, deadline).await?;
        report.linked = linked;
        report.complete = decay_done && prune_done && merge_done && link_done;
        self.trim_changes().await?;
        tracing::debug!(%agent, ?report, "memory maintenance pass");
        Ok(report)
    }

    /// Keeps the newest [`KEPT_CHANGES`] entries of the change log (migration 0006). A process
    /// whose copies are older than what is kept reloads them instead of catching up.
    pub(crate) async fn trim_changes(&self) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| sqlx::query(
            "DELETE FROM memory_changes WHERE id <= (SELECT MAX(id) FROM memory_changes) - $1"
        )
        .bind(KEPT_CHANGES)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(|error| store_error("trim the memory change log", error))?;
        Ok(())
    }

    /// Applies decay to idle memories (all but identities). Returns how many changed and
    /// whether every idle memory was handled.
    pub(crate) async fn decay(
        &self,
        agent: &AgentId,
        options: &MaintenanceOptions,
        deadline: Instant,
    ) -> Result<(usize, bool), StoreError> {
        let now = millis(self.now());
        let grace = duration_ms(options.decay_grace);
        let keep_per_day = f64::from(1.0 - options.decay_per_day);
        let mut changed = 0;
        let mut handled = 0;
        loop {
            if Instant::now() >= deadline || handled >= options.max_items {
                return Ok((changed, false));
            }
            let limit = BATCH.min(options.max_items - handled);
            let _writer = self.writer.lock().await;
            let result: Result<(usize, Option<Stamp>), sqlx::Error> = async {
                let mut transaction = self.begin_write().await?;
                let rows: Vec<(i64, f64, i64, i64)> = on_tx!(&mut transaction, |conn| sqlx::query_as(
                    "SELECT seq, importance, accessed_at, decayed_at FROM memories
                     WHERE agent = $1 AND forgotten_at IS NULL AND kind <> 'identity'
                       AND decayed_at < $3 AND accessed_at + $2 < $3
                     ORDER BY decayed_at, seq LIMIT $4",
                )
                .bind(agent.as_str())
                .bind(grace)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(conn)
                .await)?;
                for (seq, importance, accessed_at, decayed_at) in &rows {
                    let idle_from = (*decayed_at).max(accessed_at.saturating_add(grace));
                    let days = (now - idle_from) as f64 / DAY_MS;
                    let decayed = (importance * keep_per_day.powf(days)).clamp(0.0, 1.0);
                    if decayed != *importance {
                        changed += 1;
                    }
                    on_tx!(&mut transaction, |conn| sqlx::query(
                        "UPDATE memories SET importance = $1, decayed_at = $2 WHERE seq = $3"
                    )
                    .bind(decayed)
                    .bind(now)
                    .bind(seq)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected()))?;
                }
                // New importances reorder the knowledge render: the generation tells kept
                // renders apart (the in-memory copies hold no importance).
                let stamp = if rows.is_empty() { None } else { Some(transaction.bump_generation().await?) };
                transaction.commit().await?;
                Ok((rows.len(), stamp))
            }
            .await;
            let (count, stamp) = result.map_err(|error| store_error("decay memories", error))?;
            if let Some(stamp) = stamp {
                self.apply_to_index(stamp, |_| {});
            }
            handled += count;
            if count < limit {
                return Ok((changed, true));
            }
        }
    }

    /// Deletes for good memories forgotten longer ago than the retention, and live memories
    /// (never identities) that faded below the threshold, are older than the minimum age and were
    /// not recalled for as long. Edges, index rows and vectors go in the same transaction.
    pub(crate) async fn prune(
        &self,
        agent: &AgentId,
        options: &MaintenanceOptions,
        deadline: Instant,
    ) -> Result<(usize, bool), StoreError> {
        let now = millis(self.now());
        let forgotten_before = now - duration_ms(options.forgotten_retention);
        let older_than = now - duration_ms(options.prune_min_age);
        let mut pruned = 0;
        loop {
            if Instant::now() >= deadline || pruned >= options.max_items {
                return Ok((pruned, false));
            }
            let limit = BATCH.min(options.max_items - pruned);
            let _writer = self.writer.lock().await;
            self.ensure_index_locked().await?;
            let result: Result<(Vec<i64>, Stamp), sqlx::Error> = async {
                let mut transaction = self.begin_write().await?;
                let seqs: Vec<i64> = on_tx!(&mut transaction, |conn| sqlx::query_scalar(
                    "SELECT seq FROM memories
                     WHERE agent = $1 AND (
                         (forgotten_at IS NOT NULL AND forgotten_at < $2)
                         OR (forgotten_at IS NULL AND kind <> 'identity' AND importance < $3
                             AND created_at < $4 AND accessed_at < $4))
                     ORDER BY seq LIMIT $5",
                )
                .bind(agent.as_str())
                .bind(forgotten_before)
                .bind(f64::from(options.prune_below))
                .bind(older_than)
                .bind(limit as i64)
                .fetch_all(conn)
                .await)?;
                let json = serde_json::Value::from(seqs.clone()).to_string();
                // Explicit deletes, not only the foreign-key cascade and triggers: the rows a
                // memory owns go with it even on a connection without foreign keys.
                on_tx!(&mut transaction, |conn| sqlx::query(
                    "DELETE FROM memory_edges WHERE source IN (SELECT id FROM memories WHERE seq IN (SELECT CAST(value AS BIGINT) FROM json_each($1)))
                        OR target IN (SELECT id FROM memories WHERE seq IN (SELECT CAST(value AS BIGINT) FROM json_each($1)))",
                )
                .bind(&json)
                .execute(conn)
                .await
                .map(|done| done.rows_affected()))?;
                on_tx!(&mut transaction, |conn| sqlx::query("DELETE FROM memory_vectors WHERE memory_seq IN (SELECT CAST(value AS BIGINT) FROM json_each($1))")
                    .bind(&json)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected()))?;
                on_tx!(&mut transaction, |conn| sqlx::query("DELETE FROM memories WHERE seq IN (SELECT CAST(value AS BIGINT) FROM json_each($1))")
                    .bind(&json)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected()))?;
                let generation = transaction.bump_generation().await?;
                transaction.commit().await?;
                Ok((seqs, generation))
            }
            .await;
            let (seqs, generation) = result.map_err(|error| store_error("prune memories", error))?;
            let count = seqs.len();
            self.apply_to_index(generation, |index| {
                for seq in seqs {
                    index.remove(seq);
                }
            });
            pruned += count;
            if count < limit {
                return Ok((pruned, true));
            }
        }
    }

    /// Merges near-duplicates of the same agent, type and scope (never across types or scopes):
    /// the more important one (the older on a tie) survives with the higher importance and the
    /// summed access count, takes over the other's edges and gets an `updates` edge to it; the
    /// other is forgotten. Looks at memories added since the previous pass.
    pub(crate) async fn merge_duplicates(
        &self,
        agent: &AgentId,
        options: &MaintenanceOptions,
        deadline: Instant,
    ) -> Result<(usize, bool), StoreError> {
        let watermark = self.meta_i64(MERGE_WATERMARK).await?;
        let candidates = self.entries_after(agent, watermark);
        let mut absorbed: HashSet<i64> = HashSet::new();
        let mut merged = 0;
        let mut through = watermark;
        let mut complete = true;
        for (handled, entry) in candidates.into_iter().enumerate() {
            if Instant::now() >= deadline || handled >= options.max_items {
                complete = false;
                break;
            }
            if !absorbed.contains(&entry.seq) {
                let neighbours = {
                    let index = &self.read_index().vectors;
                    match index.vector(entry.seq) {
                        Some(vector) => {
                            index.nearest_within(vector, NEIGHBOURS + 1, options.merge_similarity, |other| {
                                other.seq != entry.seq && other.partition == entry.partition
                            })
                        }
                        None => Vec::new(),
                    }
                };
                for (other, _) in neighbours {
                    if absorbed.contains(&other.seq) || absorbed.contains(&entry.seq) {
                        continue;
                    }
                    if let Some(loser) = self.merge_pair(entry.seq, other.seq).await? {
                        absorbed.insert(loser);
                        merged += 1;
                    }
                }
            }
            through = entry.seq;
        }
        self.set_meta(MERGE_WATERMARK, through).await?;
        Ok((merged, complete))
    }

    /// Merges two live memories in one transaction; returns the seq of the one absorbed.
    async fn merge_pair(&self, a: i64, b: i64) -> Result<Option<i64>, StoreError> {
        let _writer = self.writer.lock().await;
        self.ensure_index_locked().await?;
        let result: Result<Option<(i64, Stamp)>, sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            type Row = (i64, String, f64, i64, i64, String, Option<String>, i64);
            let rows: Vec<Row> = on_tx!(&mut transaction, |conn| sqlx::query_as(
                "SELECT seq, id, importance, access_count, accessed_at, content, source, created_at FROM memories
                 WHERE seq IN ($1, $2) AND forgotten_at IS NULL",
            )
            .bind(a)
            .bind(b)
            .fetch_all(conn)
            .await)?;
            let [first, second] = rows.as_slice() else { return Ok(None) };
            // Alike words from two people, or about other names or numbers, are two memories
            // ("Nate: Bye Joanna!" and "Joanna: Bye Nate!").
            if !may_merge(&first.5, &second.5) {
                return Ok(None);
            }
            // Higher importance survives; on a tie, the older memory.
            let (survivor, loser) = if second.2 > first.2 || (second.2 == first.2 && second.0 < first.0) {
                (second, first)
            } else {
                (first, second)
            };
            let now = millis(self.now());
            on_tx!(&mut transaction, |conn| sqlx::query(
                "UPDATE memories SET importance = $1, access_count = $2, accessed_at = $3, updated_at = $4,
                                     created_at = $5, source = $6
                 WHERE seq = $7",
            )
            .bind(survivor.2.max(loser.2))
            .bind(survivor.3 + loser.3)
            .bind(survivor.4.max(loser.4))
            .bind(now)
            // The newer date and both sources: a later mention of an event keeps its date.
            .bind(survivor.7.max(loser.7))
            .bind(joined_sources(survivor.6.as_deref(), loser.6.as_deref()))
            .bind(survivor.0)
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
            // Move the loser's edges to the survivor; ones the survivor already has, or that
            // would point at itself, are dropped with the rest below.
            on_tx!(&mut transaction, |conn| sqlx::query(
                "UPDATE memory_edges SET source = $1 WHERE source = $2 AND target <> $1
                 AND NOT EXISTS (SELECT 1 FROM memory_edges kept
                                 WHERE kept.source = $1 AND kept.target = memory_edges.target
                                   AND kept.kind = memory_edges.kind)",
            )
            .bind(&survivor.1)
            .bind(&loser.1)
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
            on_tx!(&mut transaction, |conn| sqlx::query(
                "UPDATE memory_edges SET target = $1 WHERE target = $2 AND source <> $1
                 AND NOT EXISTS (SELECT 1 FROM memory_edges kept
                                 WHERE kept.target = $1 AND kept.source = memory_edges.source
                                   AND kept.kind = memory_edges.kind)",
            )
            .bind(&survivor.1)
            .bind(&loser.1)
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
            on_tx!(&mut transaction, |conn| sqlx::query("DELETE FROM memory_edges WHERE source = $1 OR target = $1")
                .bind(&loser.1)
                .execute(conn)
                .await
                .map(|done| done.rows_affected()))?;
            on_tx!(&mut transaction, |conn| {
                sqlx::query(
                "INSERT INTO memory_edges (source, target, kind, weight, created_at) VALUES ($1, $2, 'updates', 1.0, $3)
                 ON CONFLICT (source, target, kind) DO UPDATE SET weight = 1.0",
            )
            .bind(&survivor.1)
            .bind(&loser.1)
            .bind(now)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
            })?;
            on_tx!(&mut transaction, |conn| sqlx::query("UPDATE memories SET forgotten_at = $1 WHERE seq = $2")
                .bind(now)
                .bind(loser.0)
                .execute(conn)
                .await
                .map(|done| done.rows_affected()))?;
            let generation = transaction.bump_generation().await?;
            transaction.commit().await?;
            Ok(Some((loser.0, generation)))
        }
        .await;
        let Some((loser, generation)) = result.map_err(|error| store_error("merge memories", error))? else {
            return Ok(None);
        };
        self.apply_to_index(generation, |index| index.remove(loser));
        Ok(Some(loser))
    }

    /// Gives memories added since the previous pass a `related_to` edge (weight = similarity) to
    /// their most similar memories that are not near-duplicates, within what either side's
    /// readers could see together (shared memories, or the same scope).
    pub(crate) async fn link_related(
        &self,
        agent: &AgentId,
        options: &MaintenanceOptions,
        deadline: Instant,
    ) -> Result<(usize, bool), StoreError> {
        let watermark = self.meta_i64(LINK_WATERMARK).await?;
        let candidates = self.entries_after(agent, watermark);
        let mut linked = 0;
        let mut complete = true;
        for (handled, batch) in candidates.chunks(BATCH).enumerate() {
            if Instant::now() >= deadline || handled * BATCH >= options.max_items {
                complete = false;
                break;
            }
            let mut edges: Vec<(String, String, f32)> = Vec::new();
            {
                let index = &self.read_index().vectors;
                for entry in batch {
                    let Some(vector) = index.vector(entry.seq) else { continue };
                    let found = index.nearest(vector, NEIGHBOURS + 1, options.link_similarity, |other| {
                        other.seq != entry.seq
                            && other.agent == entry.agent
                            && (!other.private || other.scope_key == entry.scope_key)
                    });
                    for (other, score) in found {
                        if score < options.merge_similarity || other.kind != entry.kind {
                            edges.push((entry.id.to_string(), other.id.to_string(), score.clamp(0.0, 1.0)));
                        }
                    }
                }
            }
            let last = batch.last().map_or(watermark, |entry| entry.seq);
            let now = millis(self.now());
            let result: Result<usize, sqlx::Error> = async {
                let mut transaction = self.begin_write().await?;
                let mut written = 0;
                for (source, target, weight) in &edges {
                    let done = on_tx!(&mut transaction, |conn| sqlx::query(
                        "INSERT INTO memory_edges (source, target, kind, weight, created_at)
                         SELECT $1, $2, 'related_to', $3, $4
                         WHERE EXISTS (SELECT 1 FROM memories WHERE id = $1 AND forgotten_at IS NULL)
                           AND EXISTS (SELECT 1 FROM memories WHERE id = $2 AND forgotten_at IS NULL)
                         ON CONFLICT (source, target, kind) DO UPDATE SET weight = CASE WHEN excluded.weight > memory_edges.weight
                                                                   THEN excluded.weight ELSE memory_edges.weight END",
                    )
                    .bind(source)
                    .bind(target)
                    .bind(f64::from(*weight))
                    .bind(now)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected()))?;
                    written += usize::try_from(done).unwrap_or(0);
                }
                set_meta_in(&mut transaction, LINK_WATERMARK, last).await?;
                transaction.commit().await?;
                Ok(written)
            }
            .await;
            linked += result.map_err(|error| store_error("link related memories", error))?;
        }
        Ok((linked, complete))
    }

    /// Vector entries of `agent` with a sequence above `watermark`, oldest first.
    fn entries_after(&self, agent: &AgentId, watermark: i64) -> Vec<Entry> {
        let index = &self.read_index().vectors;
        let mut entries: Vec<Entry> = index
            .entries()
            .iter()
            .filter(|entry| entry.seq > watermark && *entry.agent == *agent.as_str())
            .cloned()
            .collect();
        entries.sort_by_key(|entry| entry.seq);
        entries
    }

    pub(crate) async fn meta_i64(&self, key: &str) -> Result<i64, StoreError> {
        let value: Option<i64> =
            on_db!(&self.db, |pool| sqlx::query_scalar("SELECT CAST(value AS BIGINT) FROM memory_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await)
            .map_err(|error| store_error(format!("read {key}"), error))?;
        Ok(value.unwrap_or(0))
    }

    pub(crate) async fn set_meta(&self, key: &str, value: impl ToString) -> Result<(), StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            set_meta_in(&mut transaction, key, value).await?;
            transaction.commit().await
        }
        .await;
        result.map_err(|error| store_error(format!("write {key}"), error))
    }
}

pub(crate) async fn set_meta_in(transaction: &mut Tx, key: &str, value: impl ToString) -> Result<(), sqlx::Error> {
    on_tx!(transaction, |conn| sqlx::query(
        "INSERT INTO memory_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value.to_string())
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(())
}

//! Hybrid recall: full-text, vector and graph-walk lists fused with Reciprocal Rank Fusion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::task::Poll;

use sqlx::{QueryBuilder, Sqlite};
use tracing::Instrument;

use spacebot_core::{MemoryId, RecallHit, RecallQuery, RelationKind, StoreError};

use crate::error::store_error;
use crate::memory::audience::Filter;
use crate::memory::rows::MemoryRow;
use crate::memory::{SqliteMemory, invalid, millis};

/// The `k` of Reciprocal Rank Fusion: a hit at rank `r` of a list adds `1 / (k + r)`.
pub const RRF_K: f32 = 60.0;

/// Candidates taken from each of the full-text and vector lists.
const PER_LIST: usize = 50;

/// Full-text matches ranked before the visibility filter is applied.
const FTS_CANDIDATES: usize = 500;

/// How many of the best direct hits seed the graph walk.
const GRAPH_SEEDS: usize = 5;

/// How far the walk goes from a seed.
const GRAPH_DEPTH: usize = 2;

/// The longest list of query words sent to the full-text index.
const MAX_QUERY_TERMS: usize = 32;

/// Words too common to say anything about relevance; matching them costs time at scale.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "do", "does", "for", "from", "has", "have", "he", "her",
    "his", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she", "so", "that", "the", "their",
    "them", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with",
    "you", "your",
];

/// Fuses ranked lists: each id scores `sum(1 / (k + rank))` over the lists it appears in
/// (once per list: a repeat within a list is ignored). Returns ids best first, ties broken by
/// id, each with its score and its 1-based rank per list.
pub fn reciprocal_rank_fusion(lists: &[Vec<MemoryId>], k: f32) -> Vec<(MemoryId, f32, Vec<Option<usize>>)> {
    let mut fused: HashMap<MemoryId, (f32, Vec<Option<usize>>)> = HashMap::new();
    for (list_index, list) in lists.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut rank = 0usize;
        for id in list {
            if !seen.insert(id) {
                continue;
            }
            rank += 1;
            let slot = fused.entry(id.clone()).or_insert_with(|| (0.0, vec![None; lists.len()]));
            slot.0 += 1.0 / (k + rank as f32);
            slot.1[list_index] = Some(rank);
        }
    }
    let mut fused: Vec<_> = fused.into_iter().map(|(id, (score, ranks))| (id, score, ranks)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    fused
}

/// The full-text query for free text: its distinct words, quoted (so no FTS5 syntax can be
/// injected), joined with OR; `None` when no word is left.
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let mut seen = HashSet::new();
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|word| !word.is_empty() && !STOP_WORDS.contains(&word.as_str()))
        .filter(|word| seen.insert(word.clone()))
        .take(MAX_QUERY_TERMS)
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// Runs two futures concurrently on the current task and returns both outputs.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut a_out, mut b_out) = (None, None);
    std::future::poll_fn(move |cx| {
        if a_out.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            a_out = Some(out);
        }
        if b_out.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            b_out = Some(out);
        }
        match (a_out.take(), b_out.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (a_out, b_out) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// How much a graph hit reached over `kind` counts, by the direction it was followed.
fn walk_factor(kind: RelationKind, forward: bool) -> f32 {
    match (kind, forward) {
        // From an old statement to the one that updates it: the newer one matters more.
        (RelationKind::Updates, false) => 1.5,
        (RelationKind::Updates, true) => 0.5,
        (RelationKind::CausedBy, _) => 1.2,
        (RelationKind::PartOf, _) => 0.8,
        _ => 1.0,
    }
}

/// Whether the walk continues through an edge of this kind.
fn walk_continues(kind: RelationKind) -> bool {
    matches!(kind, RelationKind::RelatedTo | RelationKind::PartOf)
}

impl SqliteMemory {
    pub(crate) async fn recall_hybrid(&self, query: RecallQuery) -> Result<Vec<RecallHit>, StoreError> {
        const OPERATION: &str = "recall memories";
        if query.text.trim().is_empty() {
            return Err(invalid(OPERATION, "the query is empty"));
        }
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter =
            self.filter(&query.agent, &query.visibility).instrument(tracing::trace_span!("recall.filter")).await?;
        filter.kinds = query.kinds.clone();
        filter.since = query.since.map(millis);
        filter.until = query.until.map(millis);

        // The full-text search waits on SQLite's thread and the vector scan runs on blocking
        // threads: run them side by side.
        let (text_list, vector_list) = join(
            self.text_list(&filter, &query.text).instrument(tracing::trace_span!("recall.fts")),
            self.vector_list(&filter, &query.text),
        )
        .await;
        let (text_list, vector_list) = (text_list?, vector_list?);
        let direct = reciprocal_rank_fusion(&[text_list.clone(), vector_list.clone()], RRF_K);
        let seeds: Vec<MemoryId> = direct.iter().take(GRAPH_SEEDS).map(|(id, _, _)| id.clone()).collect();
        let graph_list = self.graph_list(&filter, &seeds).instrument(tracing::trace_span!("recall.graph")).await?;
        let fused = reciprocal_rank_fusion(&[text_list, vector_list, graph_list], RRF_K);

        // Read the rows with the full filter: whatever a list produced, only what the reader may
        // see comes back. The first `limit` admitted ids in fused order are the hits.
        let ids: Vec<MemoryId> = fused.iter().map(|(id, _, _)| id.clone()).collect();
        let rows = crate::memory::rows::load_first_admitted(&self.pool, &filter, &ids, query.limit)
            .instrument(tracing::trace_span!("recall.rows"))
            .await
            .map_err(|error| store_error(OPERATION, error))?;
        let mut rows: HashMap<String, MemoryRow> = rows.into_iter().map(|row| (row.id.clone(), row)).collect();
        let mut hits = Vec::with_capacity(rows.len());
        for (id, score, ranks) in fused {
            let Some(row) = rows.remove(id.as_str()) else { continue };
            hits.push(RecallHit::new(row.into_memory(), score).with_ranks(ranks[0], ranks[1], ranks[2]));
        }
        if query.record_access && !hits.is_empty() {
            self.record_access(&hits).instrument(tracing::trace_span!("recall.access")).await?;
            let now = self.now();
            for hit in &mut hits {
                hit.memory.access_count += 1;
                hit.memory.accessed_at = now;
            }
        }
        Ok(hits)
    }

    async fn text_list(&self, filter: &Filter, text: &str) -> Result<Vec<MemoryId>, StoreError> {
        let Some(fts) = fts_query(text) else { return Ok(Vec::new()) };
        // The best FTS_CANDIDATES matches by BM25 first (FTS5 ranks them on its own), then the
        // filter: this bounds the join when the words are common. Rows the filter drops may
        // starve the list of a reader who sees few of the matches; the vector list covers them.
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT m.id FROM (SELECT rowid, rank FROM memories_fts WHERE memories_fts MATCH ",
        );
        query.push_bind(fts).push(" ORDER BY rank LIMIT ").push_bind(FTS_CANDIDATES as i64);
        query.push(") AS hits JOIN memories m ON m.seq = hits.rowid WHERE m.forgotten_at IS NULL");
        filter.push_sql_for(&mut query, false);
        query.push(" ORDER BY hits.rank, m.seq LIMIT ").push_bind(PER_LIST as i64);
        let ids: Vec<String> = query
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(|error| store_error("search the full-text index", error))?;
        Ok(ids.into_iter().map(MemoryId::from).collect())
    }

    async fn vector_list(&self, filter: &Filter, text: &str) -> Result<Vec<MemoryId>, StoreError> {
        self.ensure_index().instrument(tracing::trace_span!("recall.generation")).await?;
        if self.read_index().len() == 0 {
            return Ok(Vec::new());
        }
        let mut vectors =
            self.embedder.embed(&[text.to_owned()]).instrument(tracing::trace_span!("recall.embed")).await.map_err(
                |error| StoreError::new(format!("can't embed the query: {error}"), false).with_source(error),
            )?;
        let Some(mut vector) = vectors.pop() else { return Ok(Vec::new()) };
        crate::embed::normalize(&mut vector);
        let index = self.index.clone();
        let filter = filter.clone();
        // A full scan is milliseconds of CPU at 100,000 memories: keep it off the async workers.
        let found = tokio::task::spawn_blocking(move || {
            let index = index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            index.nearest_screened(&vector, PER_LIST, f32::NEG_INFINITY, |entry| filter.admits(entry))
        })
        .instrument(tracing::trace_span!("recall.vectors"))
        .await
        .map_err(|error| StoreError::new(format!("can't search the vectors: {error}"), false))?;
        Ok(found.into_iter().map(|(entry, _)| entry.id).collect())
    }

    /// Memories reached from the seeds over edges, best first: a neighbour scores
    /// `seed weight × edge weight × walk factor`, the walk goes `GRAPH_DEPTH` hops and continues
    /// only through `related_to` and `part_of`. Seeds themselves are not listed; each memory is
    /// listed once, at its best score. Only live memories the filter's audience may see are
    /// entered.
    async fn graph_list(&self, filter: &Filter, seeds: &[MemoryId]) -> Result<Vec<MemoryId>, StoreError> {
        if seeds.is_empty() {
            return Ok(Vec::new());
        }
        let mut best: BTreeMap<MemoryId, f32> = BTreeMap::new();
        let seed_set: HashSet<&MemoryId> = seeds.iter().collect();
        let mut frontier: Vec<(MemoryId, f32)> =
            seeds.iter().enumerate().map(|(rank, id)| (id.clone(), 1.0 / (rank as f32 + 1.0))).collect();
        for _ in 0..GRAPH_DEPTH {
            if frontier.is_empty() {
                break;
            }
            let weights: HashMap<MemoryId, f32> = frontier.iter().cloned().collect();
            let ids: Vec<&str> = frontier.iter().map(|(id, _)| id.as_str()).collect();
            let ids = serde_json::Value::from(ids).to_string();
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT e.source AS origin, e.target AS reached, e.kind, e.weight, 1 AS forward
                 FROM memory_edges e JOIN memories m ON m.id = e.target
                 WHERE m.forgotten_at IS NULL AND e.source IN (SELECT value FROM json_each(",
            );
            query.push_bind(ids.clone()).push("))");
            filter.push_audience_for_walk(&mut query);
            query.push(
                " UNION ALL SELECT e.target, e.source, e.kind, e.weight, 0
                 FROM memory_edges e JOIN memories m ON m.id = e.source
                 WHERE m.forgotten_at IS NULL AND e.target IN (SELECT value FROM json_each(",
            );
            query.push_bind(ids).push("))");
            filter.push_audience_for_walk(&mut query);
            let edges: Vec<(String, String, String, f64, i64)> = query
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(|error| store_error("walk the memory graph", error))?;
            let mut next: BTreeMap<MemoryId, f32> = BTreeMap::new();
            for (origin, reached, kind, weight, forward) in edges {
                let origin = MemoryId::from(origin);
                let reached = MemoryId::from(reached);
                let Some(&from) = weights.get(&origin) else { continue };
                let kind = RelationKind::from_label(&kind).unwrap_or(RelationKind::RelatedTo);
                let score = from * weight as f32 * walk_factor(kind, forward != 0);
                if seed_set.contains(&reached) {
                    continue;
                }
                let entry = best.entry(reached.clone()).or_insert(0.0);
                if score > *entry {
                    *entry = score;
                    if walk_continues(kind) {
                        let slot = next.entry(reached).or_insert(0.0);
                        *slot = slot.max(score);
                    }
                }
            }
            frontier = next.into_iter().collect();
        }
        let mut list: Vec<(MemoryId, f32)> = best.into_iter().collect();
        list.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(list.into_iter().take(PER_LIST).map(|(id, _)| id).collect())
    }

    async fn record_access(&self, hits: &[RecallHit]) -> Result<(), StoreError> {
        let ids: Vec<&str> = hits.iter().map(|hit| hit.memory.id.as_str()).collect();
        sqlx::query(
            "UPDATE memories SET access_count = access_count + 1, accessed_at = ?1
             WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(millis(self.now()))
        .bind(serde_json::Value::from(ids).to_string())
        .execute(&self.pool)
        .await
        .map_err(|error| store_error("record memory accesses", error))?;
        Ok(())
    }
}

impl Filter {
    /// The agent and audience conditions for the walk (kinds and period are applied to the
    /// results, not to the memories the walk passes through).
    fn push_audience_for_walk(&self, query: &mut QueryBuilder<Sqlite>) {
        query.push(" AND +m.agent = ").push_bind(self.agent.as_str().to_owned());
        self.push_audience(query);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[&str]) -> Vec<MemoryId> {
        values.iter().map(|value| MemoryId::from(*value)).collect()
    }

    #[test]
    fn fusion_scores_are_reciprocal_ranks_with_k_60() {
        let fused = reciprocal_rank_fusion(&[ids(&["a", "b"]), ids(&["b", "c"])], RRF_K);
        let b = fused.iter().find(|(id, _, _)| id.as_str() == "b").unwrap();
        assert!((b.1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(b.2, vec![Some(2), Some(1)]);
        assert_eq!(fused[0].0.as_str(), "b", "in two lists beats first in one");
        let single = reciprocal_rank_fusion(&[ids(&["x"])], RRF_K);
        assert!((single[0].1 - 1.0 / 61.0).abs() < 1e-7);
        assert!(reciprocal_rank_fusion(&[Vec::new(), Vec::new()], RRF_K).is_empty());
    }

    #[test]
    fn a_repeat_within_one_list_counts_once() {
        let fused = reciprocal_rank_fusion(&[ids(&["a", "a", "b"])], RRF_K);
        assert!((fused[0].1 - 1.0 / 61.0).abs() < 1e-7);
        assert_eq!(fused[1].2, vec![Some(2)], "b is second, not third");
    }

    #[test]
    fn fts_queries_quote_every_word_and_drop_stop_words() {
        assert_eq!(fts_query("What does Alice drink?").as_deref(), Some("\"alice\" OR \"drink\""));
        assert_eq!(fts_query("\"x\" OR NEAR(y)").as_deref(), Some("\"x\" OR \"near\" OR \"y\""));
        assert_eq!(fts_query("the a ?!"), None);
    }
}

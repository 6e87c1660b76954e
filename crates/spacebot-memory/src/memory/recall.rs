//! Hybrid recall: full-text, vector and graph-walk lists fused with Reciprocal Rank Fusion.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{QueryBuilder, Sqlite};
use tracing::Instrument;

use spacebot_core::{MemoryId, RecallHit, RecallQuery, RelationKind, StoreError};

use crate::error::store_error;
use crate::memory::audience::Filter;
use crate::memory::rows::MemoryRow;
use crate::memory::text::for_each_word;
use crate::memory::{SqliteMemory, invalid, millis};

/// The `k` of Reciprocal Rank Fusion: a hit at rank `r` of a list adds `1 / (k + r)`.
pub const RRF_K: f32 = 60.0;

/// Candidates taken from each of the full-text and vector lists.
const PER_LIST: usize = 50;

/// How many of the best direct hits seed the graph walk.
const GRAPH_SEEDS: usize = 5;

/// How far the walk goes from a seed.
const GRAPH_DEPTH: usize = 2;

/// The most distinct query words the full-text list ranks by.
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

/// The words of a query the full-text list ranks by: its distinct words as the index
/// tokenizes them, stop words left out, at most [`MAX_QUERY_TERMS`].
pub(crate) fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for_each_word(text, |word| {
        if terms.len() < MAX_QUERY_TERMS && !STOP_WORDS.contains(&word) && !terms.iter().any(|known| known == word) {
            terms.push(word.to_owned());
        }
    });
    terms
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

/// The ranked lists behind one recall, best first, each already limited to what the reader may
/// see: what the recall evaluation (`cargo xtask eval recall`) scores list by list.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RecallLists {
    /// By words (BM25).
    pub text: Vec<MemoryId>,
    /// By meaning (the embedder's vectors).
    pub vector: Vec<MemoryId>,
    /// Reached over edges from the best direct hits.
    pub graph: Vec<MemoryId>,
    /// The lists fused, as recall returns them, with each id's score and rank per list.
    pub fused: Vec<(MemoryId, f32, Vec<Option<usize>>)>,
}

impl SqliteMemory {
    /// The lists a recall of `query` fuses, and the fusion, without reading rows or recording
    /// accesses.
    ///
    /// # Errors
    ///
    /// As [`MemoryStore::recall`](spacebot_core::MemoryStore::recall).
    pub async fn recall_lists(&self, query: &RecallQuery) -> Result<RecallLists, StoreError> {
        if query.text.trim().is_empty() {
            return Err(invalid("recall memories", "the query is empty"));
        }
        Ok(self.ranked(query).await?.1)
    }

    /// The reader's filter and the lists.
    async fn ranked(&self, query: &RecallQuery) -> Result<(Filter, RecallLists), StoreError> {
        let mut filter =
            self.filter(&query.agent, &query.visibility).instrument(tracing::trace_span!("recall.filter")).await?;
        filter.kinds = query.kinds.clone();
        filter.since = query.since.map(millis);
        filter.until = query.until.map(millis);

        let (text, vector) = self.direct_lists(&filter, &query.text).await?;
        let direct = reciprocal_rank_fusion(&[text.clone(), vector.clone()], RRF_K);
        let seeds: Vec<MemoryId> = direct.iter().take(GRAPH_SEEDS).map(|(id, _, _)| id.clone()).collect();
        let graph = self.graph_list(&filter, &seeds).instrument(tracing::trace_span!("recall.graph")).await?;
        let fused = reciprocal_rank_fusion(&[text.clone(), vector.clone(), graph.clone()], RRF_K);
        Ok((filter, RecallLists { text, vector, graph, fused }))
    }

    pub(crate) async fn recall_hybrid(&self, query: RecallQuery) -> Result<Vec<RecallHit>, StoreError> {
        const OPERATION: &str = "recall memories";
        if query.text.trim().is_empty() {
            return Err(invalid(OPERATION, "the query is empty"));
        }
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let (filter, ranked) = self.ranked(&query).await?;
        let fused = ranked.fused;
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

    /// The full-text and vector lists, from the in-memory copies (`indexes.rs`), each
    /// filtered as it is ranked.
    async fn direct_lists(&self, filter: &Filter, text: &str) -> Result<(Vec<MemoryId>, Vec<MemoryId>), StoreError> {
        self.ensure_index().instrument(tracing::trace_span!("recall.generation")).await?;
        let terms = query_terms(text);
        let vector = if self.read_index().vectors.len() == 0 {
            None
        } else {
            self.embed_query(text).instrument(tracing::trace_span!("recall.embed")).await
        };
        let index = self.index.clone();
        let filter = filter.clone();
        // Milliseconds of CPU at 100,000 memories: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let index = index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let text_list = tracing::trace_span!("recall.text")
                .in_scope(|| index.text.search(&terms, PER_LIST, |entry| filter.admits(entry)));
            let vector_list = match vector {
                Some(vector) => tracing::trace_span!("recall.vectors").in_scope(|| {
                    index.vectors.nearest_screened(&vector, PER_LIST, f32::NEG_INFINITY, |entry| filter.admits(entry))
                }),
                None => Vec::new(),
            };
            (
                text_list.into_iter().map(|(id, _)| id).collect(),
                vector_list.into_iter().map(|(entry, _)| entry.id).collect(),
            )
        })
        .await
        .map_err(|error| StoreError::new(format!("can't search the memory index: {error}"), false))
    }

    /// The query's unit vector, or `None` when the embedder fails: a recall then ranks by
    /// words and the graph alone rather than fail (an embedding endpoint that is down must not
    /// silence the agent's memory); the failure is logged.
    async fn embed_query(&self, text: &str) -> Option<Vec<f32>> {
        match self.embedder.embed(&[text.to_owned()]).await {
            Ok(mut vectors) => match vectors.pop().filter(|vector| vector.len() == self.embedder.dimensions()) {
                Some(mut vector) => {
                    crate::embed::normalize(&mut vector);
                    Some(vector)
                }
                None => {
                    tracing::warn!(
                        embedder = self.embedder.model_id(),
                        dimensions = self.embedder.dimensions(),
                        "the embedder returned no vector of its dimensions for a recall query; recalling by words and graph only"
                    );
                    None
                }
            },
            Err(error) => {
                tracing::warn!(
                    embedder = self.embedder.model_id(),
                    %error,
                    "can't embed a recall query; recalling by words and graph only"
                );
                None
            }
        }
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
    fn query_terms_are_distinct_words_without_stop_words() {
        assert_eq!(query_terms("What does Alice drink? Alice's CAFÉ"), ["alice", "drink", "s", "cafe"]);
        assert_eq!(query_terms("\"x\" OR NEAR(y)"), ["x", "near", "y"]);
        assert!(query_terms("the a ?!").is_empty());
        let many: String = (0..40).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_terms(&many).len(), MAX_QUERY_TERMS);
    }
}

//! Hybrid recall. Up to five ranked lists, each filtered to what the reader may see as it is
//! ranked:
//! - words: BM25 over stemmed words, question words left out (`text.rs`);
//! - vectors: the embedder's nearest neighbours (`vectors.rs`);
//! - graph: memories reached over edges from the best direct hits;
//! - dated: words and vectors within a period the query names ("in March 2024", `when.rs`);
//! - hop: the names the best direct hits mention that the query does not ("my cousin Mira"),
//!   searched for by words, for questions that need two memories.
//!
//! They are fused by score (`fuse`), then the best candidates are reranked by what their content
//! says (`rerank_factor`): a conversational memory said by the person the query names (`Nate:
//! ...` for "what did Nate cook") counts double, and one that says little ("Bye Joanna!")
//! counts less than a statement. The weights are tuned on the recall evaluation (`cargo xtask
//! eval recall`).

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::QueryBuilder;
use tracing::Instrument;

use spacebot_core::{MemoryId, RecallHit, RecallQuery, RelationKind, StoreError};

use crate::error::store_error;
use crate::memory::audience::Filter;
use crate::memory::db::{Dialect, on_db};
use crate::memory::rows::MemoryRow;
use crate::memory::text::{for_each_word, stem};
use crate::memory::{MemoryGraph, invalid, millis};

/// Candidates taken from each of the full-text and vector lists.
const PER_LIST: usize = 50;

/// How many of the best fused candidates the reranker reads.
const RERANK_DEPTH: usize = 30;

/// Words of its own (see [`substance`]) at which a memory counts as a full statement in the
/// rerank: about one sentence that tells something ("I just got back from Lisbon! The tram ride
/// up the hill was the highlight" has nine).
const STATEMENT_WORDS: usize = 8;

/// How many of the best direct hits the second hop reads names from.
const HOP_SEEDS: usize = 3;

/// How many of the best direct hits seed the graph walk.
const GRAPH_SEEDS: usize = 5;

/// How far the walk goes from a seed.
const GRAPH_DEPTH: usize = 2;

/// The most distinct query words the full-text list ranks by.
const MAX_QUERY_TERMS: usize = 32;

/// Words too common to say anything about relevance; matching them costs time at scale.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "me", "my", "of", "on", "or", "our", "she", "should", "so", "some", "than", "that", "the", "their", "them",
    "then", "there", "they", "this", "to", "us", "was", "we", "were", "what", "when", "where", "which", "who", "whom",
    "whose", "why", "will", "with", "would", "you", "your",
];

/// Whether `word` (lowercased) is too common to say anything about relevance.
pub(crate) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// One ranked list to fuse, best first, with its scores and its weight.
struct Ranked<'a> {
    list: &'a [(MemoryId, f32)],
    weight: f32,
}

impl<'a> Ranked<'a> {
    fn new(list: &'a [(MemoryId, f32)], weight: f32) -> Self {
        Self { list, weight }
    }
}

/// How much each list counts in the fusion, and how much the person a query names counts in
/// the rerank: tuned on the recall evaluation's tuning half (`cargo xtask eval recall`, even
/// conversations) and checked on its held-out half; see docs/benchmarks.md.
#[derive(Debug, Clone, Copy)]
struct Weights {
    text: f32,
    vectors: f32,
    graph: f32,
    dated: f32,
    hop: f32,
    /// A memory said by the person the query names scores `1 + speaker` times as much.
    speaker: f32,
    /// A memory that makes a full statement scores `1 + substance` times as much as one that
    /// says nothing of its own, one in between in proportion (see [`substance`]).
    substance: f32,
}

const WEIGHTS: Weights =
    Weights { text: 1.0, vectors: 0.5, graph: 1.0, dated: 1.0, hop: 0.3, speaker: 1.0, substance: 1.0 };

/// Fuses scored lists: each list adds `weight × score / top score` for each id it holds (once:
/// a repeat within a list is ignored), so a list's first counts its full weight and the rest as
/// far below it as their scores are. Unlike Reciprocal Rank Fusion, which counts ranks alone, a
/// list whose best hit stands out keeps it first, and a weak list whose scores are all alike
/// can't pull a strong list's best down by agreeing on mediocre ones. Returns ids best first,
/// ties broken by id, each with its fused score and its 1-based rank per list.
fn fuse(lists: &[Ranked<'_>]) -> Vec<(MemoryId, f32, Vec<Option<usize>>)> {
    let mut fused: HashMap<MemoryId, (f32, Vec<Option<usize>>)> = HashMap::new();
    for (list_index, ranked) in lists.iter().enumerate() {
        let top = ranked.list.first().map_or(0.0, |(_, score)| *score);
        let mut seen = HashSet::new();
        let mut rank = 0usize;
        for (id, score) in ranked.list {
            if !seen.insert(id) {
                continue;
            }
            rank += 1;
            let part = if top > 0.0 { (score / top).max(0.0) } else { 0.0 };
            let slot = fused.entry(id.clone()).or_insert_with(|| (0.0, vec![None; lists.len()]));
            slot.0 += ranked.weight * part;
            slot.1[list_index] = Some(rank);
        }
    }
    let mut fused: Vec<_> = fused.into_iter().map(|(id, (score, ranks))| (id, score, ranks)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    fused
}

/// The words of a query the full-text list ranks by: its distinct words as the index
/// tokenizes and stems them, stop words left out, at most [`MAX_QUERY_TERMS`].
pub(crate) fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for_each_word(text, |word| {
        if terms.len() < MAX_QUERY_TERMS && !STOP_WORDS.contains(&word) {
            let word = stem(word);
            if !terms.iter().any(|known| *known == *word) {
                terms.push(word.into_owned());
            }
        }
    });
    terms
}

/// How much a memory says of its own, from 0 to 1: its words that are not stop words or single
/// letters, the speaker label left out, counted up to [`STATEMENT_WORDS`]. Pleasantries ("Bye
/// Joanna!", "Haha, that's so you.") say nearly nothing.
///
/// Why the rerank needs it: BM25 and cosine similarity both favour short texts, so when a
/// query shares no more than a name with the memories in reach ("which city did Nate visit in
/// May", answered by "I just got back from Lisbon!"), the shortest memories naming Nate come
/// first, and in a conversation those are its pleasantries. A memory is more likely to answer a
/// question the more it says (the observation behind pivoted length normalisation: scores
/// normalised by length retrieve short documents more often than they are relevant).
fn substance(content: &str) -> f32 {
    let mut words = 0usize;
    for_each_word(crate::memory::write::body(content), |word| {
        if word.chars().nth(1).is_some() && !is_stop_word(word) {
            words += 1;
        }
    });
    words.min(STATEMENT_WORDS) as f32 / STATEMENT_WORDS as f32
}

/// What the rerank multiplies a fused candidate's score by, from its content and the query's
/// words (lowercased, as `for_each_word` gives them): `1 + speaker` when the person the query
/// names said it, times `1 + substance` × what the content says ([`substance`]).
fn rerank_factor(content: &str, named: &[String], weights: Weights) -> f32 {
    let said_by_named = crate::memory::write::speaker_of(content).is_some_and(|speaker| {
        let mut all = true;
        for_each_word(speaker, |word| all &= named.iter().any(|known| known == word));
        all
    });
    let speaker = if said_by_named { 1.0 + weights.speaker } else { 1.0 };
    speaker * (1.0 + weights.substance * substance(content))
}

/// Multiplies each candidate's score by [`rerank_factor`] and sorts them again, best first (ties
/// by id); a candidate whose content is unknown keeps its score.
fn reorder(
    fused: &mut [(MemoryId, f32, Vec<Option<usize>>)],
    contents: &HashMap<String, String>,
    named: &[String],
    weights: Weights,
) {
    for (id, score, _) in fused.iter_mut() {
        if let Some(content) = contents.get(id.as_str()) {
            *score *= rerank_factor(content, named, weights);
        }
    }
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
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

impl MemoryGraph {
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

        let window = crate::memory::when::period_named(&query.text);
        let terms = query_terms(&query.text);
        self.ensure_index().instrument(tracing::trace_span!("recall.generation")).await?;
        let vector = if self.read_index().vectors.len() == 0 {
            None
        } else {
            self.embed_query(&query.text).instrument(tracing::trace_span!("recall.embed")).await
        };
        let dated = window.map(|(since, until)| {
            let mut dated = filter.clone();
            dated.since = Some(dated.since.map_or(since, |known| known.max(since)));
            dated.until = Some(dated.until.map_or(until, |known| known.min(until)));
            dated
        });
        let weights = WEIGHTS;
        let index = self.index.clone();
        let lists_filter = filter.clone();
        // Milliseconds of CPU at 100,000 memories: keep them off the async workers.
        let (text, vectors, dated) = tokio::task::spawn_blocking(move || {
            let index = index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let direct = |filter: &Filter| {
                let text = tracing::trace_span!("recall.text")
                    .in_scope(|| index.text.search(&terms, PER_LIST, |entry| filter.admits(entry)));
                let vectors = match &vector {
                    Some(vector) => tracing::trace_span!("recall.vectors").in_scope(|| {
                        index
                            .vectors
                            .nearest_screened(vector, PER_LIST, f32::NEG_INFINITY, |entry| filter.admits(entry))
                    }),
                    None => Vec::new(),
                };
                (
                    text.into_iter().map(|(id, score)| (id, score as f32)).collect::<Vec<_>>(),
                    vectors.into_iter().map(|(entry, score)| (entry.id, score)).collect::<Vec<_>>(),
                )
            };
            let (text, vectors) = direct(&lists_filter);
            // A period named in the query ("in March 2024"): what the words and vectors find
            // within it is a list of its own.
            let dated = dated.map(|filter| {
                let (text, vectors) = direct(&filter);
                fuse(&[Ranked::new(&text, weights.text), Ranked::new(&vectors, weights.vectors)])
                    .into_iter()
                    .map(|(id, score, _)| (id, score))
                    .collect::<Vec<_>>()
            });
            (text, vectors, dated.unwrap_or_default())
        })
        .await
        .map_err(|error| StoreError::new(format!("can't search the memory index: {error}"), false))?;

        let direct = fuse(&[Ranked::new(&text, weights.text), Ranked::new(&vectors, weights.vectors)]);
        let seeds: Vec<MemoryId> = direct.iter().take(GRAPH_SEEDS).map(|(id, _, _)| id.clone()).collect();
        let graph = self.graph_list(&filter, &seeds).instrument(tracing::trace_span!("recall.graph")).await?;
        let graph_scored: Vec<(MemoryId, f32)> =
            graph.iter().enumerate().map(|(rank, id)| (id.clone(), 1.0 / (rank as f32 + 1.0))).collect();
        let hop = self.hop_list(&filter, &query.text, &seeds).instrument(tracing::trace_span!("recall.hop")).await?;
        let fused = fuse(&[
            Ranked::new(&text, weights.text),
            Ranked::new(&vectors, weights.vectors),
            Ranked::new(&graph_scored, weights.graph),
            Ranked::new(&dated, weights.dated),
            Ranked::new(&hop, weights.hop),
        ]);
        let fused = self.rerank(fused, &query.text, weights).instrument(tracing::trace_span!("recall.rerank")).await?;
        let ids = |list: &[(MemoryId, f32)]| list.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
        Ok((filter, RecallLists { text: ids(&text), vector: ids(&vectors), graph, fused }))
    }

    /// The contents of `ids`, by id.
    async fn contents(&self, ids: &[MemoryId]) -> Result<HashMap<String, String>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(MemoryId::as_str).collect();
        let rows: Vec<(String, String)> = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT m.id, m.content FROM json_each($1) AS listed CROSS JOIN memories m WHERE m.id = listed.value",
        )
        .bind(serde_json::Value::from(ids).to_string())
        .fetch_all(pool)
        .await)
        .map_err(|error| store_error("read recalled memories", error))?;
        Ok(rows.into_iter().collect())
    }

    /// The second hop: the names and numbers the best direct hits mention that the query does
    /// not ("my cousin Mira is getting married" for "what is Nate baking for his cousin's
    /// wedding"), searched for by words with the query's own words, so a later turn that names
    /// only Mira ("Mira asked me to bake the cake") is found.
    async fn hop_list(
        &self,
        filter: &Filter,
        text: &str,
        seeds: &[MemoryId],
    ) -> Result<Vec<(MemoryId, f32)>, StoreError> {
        let seeds = &seeds[..seeds.len().min(HOP_SEEDS)];
        if seeds.is_empty() {
            return Ok(Vec::new());
        }
        let contents = self.contents(seeds).await?;
        // Who speaks in the seeds: their names say who, not what, and are no hop.
        let mut speakers: Vec<String> = Vec::new();
        for content in contents.values() {
            if let Some(speaker) = crate::memory::write::speaker_of(content) {
                for_each_word(speaker, |word| speakers.push(word.to_owned()));
            }
        }
        // A query that names its own particular thing ("when did Nate go to Kyoto") needs no hop.
        if crate::memory::write::particulars(text).iter().any(|name| !speakers.contains(name)) {
            return Ok(Vec::new());
        }
        let mut terms = query_terms(text);
        let asked = terms.len();
        for seed in seeds {
            let Some(content) = contents.get(seed.as_str()) else { continue };
            for name in crate::memory::write::particulars(content) {
                if !terms.contains(&name) && !speakers.contains(&name) && terms.len() < MAX_QUERY_TERMS {
                    terms.push(name);
                }
            }
        }
        if terms.len() == asked {
            return Ok(Vec::new());
        }
        let index = self.index.clone();
        let filter = filter.clone();
        let seeds: Vec<MemoryId> = seeds.to_vec();
        tokio::task::spawn_blocking(move || {
            let index = index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            index
                .text
                .search(&terms, PER_LIST, |entry| filter.admits(entry))
                .into_iter()
                .filter(|(id, _)| !seeds.contains(id))
                .map(|(id, score)| (id, score as f32))
                .collect()
        })
        .await
        .map_err(|error| StoreError::new(format!("can't search the memory index: {error}"), false))
    }

    /// Reorders the best fused candidates by what their content says (see [`rerank_factor`]): a
    /// conversational memory said by the person the query names (`Nate: ...` for "what did Nate
    /// cook") counts more than one said to them or about them, and a statement more than a
    /// pleasantry.
    async fn rerank(
        &self,
        mut fused: Vec<(MemoryId, f32, Vec<Option<usize>>)>,
        text: &str,
        weights: Weights,
    ) -> Result<Vec<(MemoryId, f32, Vec<Option<usize>>)>, StoreError> {
        let mut named: Vec<String> = Vec::new();
        for_each_word(text, |word| named.push(word.to_owned()));
        let depth = fused.len().min(RERANK_DEPTH);
        if depth < 2 {
            return Ok(fused);
        }
        let ids: Vec<MemoryId> = fused[..depth].iter().map(|(id, _, _)| id.clone()).collect();
        let contents = self.contents(&ids).await?;
        reorder(&mut fused[..depth], &contents, &named, weights);
        Ok(fused)
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
        let rows = crate::memory::rows::load_first_admitted(&self.db, &filter, &ids, query.limit)
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
            let edges: Vec<(String, String, String, f64, i64)> = on_db!(&self.db, |pool, Database| {
                let mut query = QueryBuilder::<Database>::new(
                    "SELECT e.source AS origin, e.target AS reached, e.kind, e.weight, CAST(1 AS BIGINT) AS forward
                     FROM memory_edges e JOIN memories m ON m.id = e.target
                     WHERE m.forgotten_at IS NULL AND e.source IN (SELECT value FROM json_each(",
                );
                query.push_bind(ids.as_str()).push("))");
                filter.push_audience_for_walk(&mut query);
                query.push(
                    " UNION ALL SELECT e.target, e.source, e.kind, e.weight, CAST(0 AS BIGINT)
                     FROM memory_edges e JOIN memories m ON m.id = e.source
                     WHERE m.forgotten_at IS NULL AND e.target IN (SELECT value FROM json_each(",
                );
                query.push_bind(ids.as_str()).push("))");
                filter.push_audience_for_walk(&mut query);
                query.build_query_as().fetch_all(pool).await
            })
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
        on_db!(&self.db, |pool| sqlx::query(
            "UPDATE memories SET access_count = access_count + 1, accessed_at = $1
             WHERE id IN (SELECT value FROM json_each($2))",
        )
        .bind(millis(self.now()))
        .bind(serde_json::Value::from(ids).to_string())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(|error| store_error("record memory accesses", error))?;
        Ok(())
    }
}

impl Filter {
    /// The agent and audience conditions for the walk (kinds and period are applied to the
    /// results, not to the memories the walk passes through).
    fn push_audience_for_walk<DB: Dialect>(&self, query: &mut QueryBuilder<DB>) {
        query.push(" AND ").push(DB::AGENT_NOT_INDEXED).push(" = ");
        DB::push_text(query, self.agent.as_str().to_owned());
        self.push_audience(query);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(values: &[(&str, f32)]) -> Vec<(MemoryId, f32)> {
        values.iter().map(|(id, score)| (MemoryId::from(*id), *score)).collect()
    }

    #[test]
    fn fusion_adds_each_lists_score_relative_to_its_best() {
        let words = scored(&[("a", 10.0), ("b", 5.0)]);
        let vectors = scored(&[("b", 0.8), ("c", 0.4)]);
        let fused = fuse(&[Ranked::new(&words, 1.0), Ranked::new(&vectors, 0.5)]);
        let score = |id: &str| fused.iter().find(|(found, _, _)| found.as_str() == id).unwrap().1;
        assert!((score("a") - 1.0).abs() < 1e-6);
        assert!((score("b") - (0.5 + 0.5)).abs() < 1e-6);
        assert!((score("c") - 0.25).abs() < 1e-6);
        let b = fused.iter().find(|(id, _, _)| id.as_str() == "b").unwrap();
        assert_eq!(b.2, vec![Some(2), Some(1)]);
        assert_eq!(fused[0].0.as_str(), "a", "a tie goes to the smaller id");
        assert!(fuse(&[Ranked::new(&[], 1.0)]).is_empty());
    }

    /// What equal-weight Reciprocal Rank Fusion got wrong: a weak list agreeing on a mediocre
    /// hit pulled it above the strong list's clear best.
    #[test]
    fn a_clear_best_stays_first_against_a_flat_weak_list() {
        let words = scored(&[("answer", 12.0), ("mediocre", 3.0)]);
        let vectors = scored(&[("noise", 0.31), ("mediocre", 0.30), ("answer", 0.05)]);
        let fused = fuse(&[Ranked::new(&words, WEIGHTS.text), Ranked::new(&vectors, WEIGHTS.vectors)]);
        assert_eq!(fused[0].0.as_str(), "answer");
    }

    #[test]
    fn a_repeat_within_one_list_counts_once_and_negative_scores_add_nothing() {
        let words = scored(&[("a", 2.0), ("a", 2.0), ("b", 1.0)]);
        let fused = fuse(&[Ranked::new(&words, 1.0)]);
        assert!((fused[0].1 - 1.0).abs() < 1e-6);
        assert_eq!(fused[1].2, vec![Some(2)], "b is second, not third");
        let vectors = scored(&[("x", 0.5), ("y", -0.2)]);
        let fused = fuse(&[Ranked::new(&vectors, 1.0)]);
        assert_eq!(fused[1].1, 0.0);
    }

    #[test]
    fn substance_counts_a_memorys_own_words_up_to_a_statement() {
        assert_eq!(substance("Nate: Haha, that's so you."), 1.0 / STATEMENT_WORDS as f32, "only `haha` counts");
        assert_eq!(substance("Joanna: I'm on it."), 0.0, "stop words and the letters of contractions say nothing");
        let said = "Nate: I just got back from Lisbon! The tram ride up the hill was the highlight.";
        assert_eq!(substance(said), 1.0, "nine words of its own, a full statement");
        assert!(
            substance("Nate: See you soon") > substance("Joanna Marsh: See you"),
            "the speaker label is not the memory's own words"
        );
        assert_eq!(substance("Lisbon"), 1.0 / STATEMENT_WORDS as f32, "a memory without a speaker counts whole");
    }

    /// What the substance prior is for: the query shares only a name with the memories in
    /// reach, so the fusion put the shortest ones naming Nate first.
    #[test]
    fn a_statement_outranks_a_pleasantry_that_fused_slightly_higher() {
        let contents: HashMap<String, String> = [
            ("bye", "Nate: Bye Joanna! Take care."),
            ("trip", "Nate: I just got back from Lisbon! The tram ride up the hill was the highlight."),
            ("other", "Joanna: I just got back from Kyoto! The bamboo forest was the highlight."),
        ]
        .into_iter()
        .map(|(id, content)| (id.to_owned(), content.to_owned()))
        .collect();
        let mut named = Vec::new();
        for_each_word("Which city did Nate visit in May 2023?", |word| named.push(word.to_owned()));
        let mut fused: Vec<(MemoryId, f32, Vec<Option<usize>>)> = [("bye", 1.2), ("other", 1.1), ("trip", 1.0)]
            .into_iter()
            .map(|(id, score)| (MemoryId::from(id), score, vec![None]))
            .collect();
        reorder(&mut fused, &contents, &named, WEIGHTS);
        let order: Vec<&str> = fused.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(order, ["trip", "bye", "other"], "scores: {fused:?}");
        let without = Weights { substance: 0.0, ..WEIGHTS };
        let mut fused: Vec<(MemoryId, f32, Vec<Option<usize>>)> = [("bye", 1.2), ("trip", 1.0)]
            .into_iter()
            .map(|(id, score)| (MemoryId::from(id), score, vec![None]))
            .collect();
        reorder(&mut fused, &contents, &named, without);
        assert_eq!(fused[0].0.as_str(), "bye", "the speaker alone does not tell them apart");
    }

    #[test]
    fn a_candidate_whose_content_is_unknown_keeps_its_score() {
        let mut fused = vec![(MemoryId::from("gone"), 0.7, vec![Some(1)])];
        reorder(&mut fused, &HashMap::new(), &[], WEIGHTS);
        assert_eq!(fused[0].1, 0.7);
    }

    #[test]
    fn query_terms_are_distinct_words_without_stop_words() {
        assert_eq!(query_terms("What does Alice drink? Alice's CAFÉ"), ["alice", "drink", "s", "cafe"]);
        assert_eq!(query_terms("How did Nate get painting lessons?"), ["nate", "get", "paint", "lesson"]);
        assert_eq!(query_terms("\"x\" OR NEAR(y)"), ["x", "near", "y"]);
        assert!(query_terms("the a ?!").is_empty());
        let many: String = (0..40).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_terms(&many).len(), MAX_QUERY_TERMS);
    }
}

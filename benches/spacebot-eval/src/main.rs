//! Spacebot's recall evaluation: `cargo xtask eval recall` runs
//! `cargo run --release -p spacebot-eval -- recall`.
//!
//! Every turn of every conversation of the data set (`data.rs`) is saved as one memory
//! (`Speaker: text`, dated with its session, sourced with its turn id) in a fresh store per
//! conversation; every question is then recalled as `memory search --limit 10` does. A question
//! is a hit at k when the turn that answers it is among the top k. The harness prints hit@1/5/10
//! per category and overall for each list alone (words, vectors, graph) and fused, for the tuning
//! half (even conversations), the held-out half (odd ones) and all, and the time per recall.
//! Figures go to `docs/benchmarks.md`; nothing gates on them except the test below on fusion.
//!
//! Options: `--embedder hashing|local` (local needs the `local-embeddings` feature and
//! `--model-dir DIR` or `SPACEBOT_TEST_EMBEDDING_MODEL_DIR`), `--conversations N` (the first N),
//! `--misses N` (print N missed questions per category with what came first, to study them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{NaiveTime, TimeZone, Utc};

use spacebot_core::{
    AgentId, Embedder, MemoryId, MemoryScope, MemoryStore, MemoryType, NewMemory, RecallQuery, Visibility,
};
use spacebot_memory::{HashingEmbedder, MemoryGraph};

mod data;

use crate::data::{Category, Conversation};

/// Memories saved per batch.
const BATCH: usize = 64;
/// The deepest k scored.
const DEPTH: usize = 10;
/// The cut-offs reported.
const KS: [usize; 3] = [1, 5, 10];

/// The ranked lists scored, in table order.
const LISTS: [&str; 4] = ["words", "vectors", "graph", "fused"];

struct Options {
    embedder: String,
    model_dir: Option<String>,
    conversations: usize,
    misses: usize,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((name, rest)) = args.split_first() else { bail!(usage()) };
    if name != "recall" {
        bail!(usage());
    }
    let options = parse(rest)?;
    let embedder = embedder(&options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(evaluate(&data::dataset()[..options.conversations], embedder, options.misses))?;
    print!("{}", report.markdown());
    Ok(())
}

fn usage() -> String {
    "usage: spacebot-eval recall [--embedder hashing|local] [--model-dir DIR] [--conversations N] [--misses N]"
        .to_owned()
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options =
        Options { embedder: "hashing".to_owned(), model_dir: None, conversations: data::CONVERSATIONS, misses: 0 };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value; {}", usage()));
        match flag.as_str() {
            "--embedder" => options.embedder = value()?.clone(),
            "--model-dir" => options.model_dir = Some(value()?.clone()),
            "--conversations" => {
                options.conversations = value()?.parse::<usize>().context("--conversations is a number")?;
                options.conversations = options.conversations.clamp(1, data::CONVERSATIONS);
            }
            "--misses" => options.misses = value()?.parse().context("--misses is a number")?,
            other => bail!("unknown option `{other}`; {}", usage()),
        }
    }
    Ok(options)
}

fn embedder(options: &Options) -> anyhow::Result<Arc<dyn Embedder>> {
    match options.embedder.as_str() {
        "hashing" => Ok(Arc::new(HashingEmbedder::default())),
        "local" => local_embedder(options),
        other => bail!("unknown embedder `{other}`: hashing or local"),
    }
}

#[cfg(feature = "local-embeddings")]
fn local_embedder(options: &Options) -> anyhow::Result<Arc<dyn Embedder>> {
    let dir = options.model_dir.clone().or_else(|| std::env::var("SPACEBOT_TEST_EMBEDDING_MODEL_DIR").ok()).context(
        "--embedder local needs --model-dir DIR or SPACEBOT_TEST_EMBEDDING_MODEL_DIR (scripts/fetch-models)",
    )?;
    Ok(Arc::new(spacebot_memory::LocalEmbedder::load(&dir)?))
}

#[cfg(not(feature = "local-embeddings"))]
fn local_embedder(_options: &Options) -> anyhow::Result<Arc<dyn Embedder>> {
    bail!("--embedder local needs the `local-embeddings` feature (`cargo xtask eval recall --embedder local`)")
}

/// Hits per (half, category, list) at each k, and question counts.
#[derive(Default)]
struct Report {
    /// (half, category label, list) → (questions, hits at each of `KS`).
    cells: BTreeMap<(&'static str, &'static str, &'static str), (usize, [usize; 3])>,
    times: Vec<Duration>,
    misses: Vec<String>,
    memories: usize,
    turns: usize,
}

impl Report {
    fn count(&mut self, half: &'static str, category: &'static str, list: &'static str, rank: Option<usize>) {
        for half in [half, "all"] {
            for category in [category, "overall"] {
                let cell = self.cells.entry((half, category, list)).or_default();
                cell.0 += 1;
                for (slot, k) in KS.iter().enumerate() {
                    if rank.is_some_and(|rank| rank <= *k) {
                        cell.1[slot] += 1;
                    }
                }
            }
        }
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let mut times = self.times.clone();
        times.sort();
        let percentile = |p: f64| {
            times.get(((times.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default().as_secs_f64()
                * 1e3
        };
        out.push_str(&format!(
            "{} turns stored as {} memories; {} recalls: p50 {:.2} ms, p95 {:.2} ms\n\n",
            self.turns,
            self.memories,
            times.len(),
            percentile(0.5),
            percentile(0.95)
        ));
        for half in ["tuning", "held-out", "all"] {
            out.push_str(&format!("**{half}**\n\n| category | questions | list | hit@1 | hit@5 | hit@10 |\n|---|---:|---|---:|---:|---:|\n"));
            let categories: Vec<&str> =
                Category::ALL.iter().map(|category| category.label()).chain(["overall"]).collect();
            for category in categories {
                for list in LISTS {
                    let Some((questions, hits)) = self.cells.get(&(half, category, list)) else { continue };
                    let rate = |hits: usize| hits as f64 / (*questions).max(1) as f64;
                    out.push_str(&format!(
                        "| {category} | {questions} | {list} | {:.3} | {:.3} | {:.3} |\n",
                        rate(hits[0]),
                        rate(hits[1]),
                        rate(hits[2])
                    ));
                }
            }
            out.push('\n');
        }
        for miss in &self.misses {
            out.push_str(miss);
            out.push('\n');
        }
        out
    }
}

async fn evaluate(
    conversations: &[Conversation],
    embedder: Arc<dyn Embedder>,
    misses: usize,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let agent = AgentId::from("eval");
    let mut shown: HashMap<Category, usize> = HashMap::new();
    for (index, conversation) in conversations.iter().enumerate() {
        let store = MemoryGraph::open_in_memory(embedder.clone()).await?;
        let memory_of = store_turns(&store, &agent, conversation).await?;
        report.turns += conversation.turns.len();
        report.memories += memory_of.values().collect::<std::collections::HashSet<_>>().len();
        let content: HashMap<&MemoryId, String> =
            conversation.turns.iter().filter_map(|turn| Some((memory_of.get(&turn.id)?, turn.content()))).collect();
        let half = if index % 2 == 0 { "tuning" } else { "held-out" };
        for question in &conversation.questions {
            let answer = memory_of.get(&question.evidence[0]).context("an evidence turn was not stored")?;
            let query = RecallQuery::new(agent.clone(), question.text.clone())
                .with_visibility(Visibility::Operator)
                .with_limit(DEPTH)
                .without_access_recording();
            let started = Instant::now();
            let hits = store.recall(query.clone()).await?;
            report.times.push(started.elapsed());
            let lists = store.recall_lists(&query).await?;
            let rank_in = |ids: &mut dyn Iterator<Item = &MemoryId>| {
                ids.take(DEPTH).position(|id| id == answer).map(|position| position + 1)
            };
            let category = question.category.label();
            report.count(half, category, "words", rank_in(&mut lists.text.iter()));
            report.count(half, category, "vectors", rank_in(&mut lists.vector.iter()));
            report.count(half, category, "graph", rank_in(&mut lists.graph.iter()));
            let fused_rank = rank_in(&mut hits.iter().map(|hit| &hit.memory.id));
            report.count(half, category, "fused", fused_rank);
            let seen = shown.entry(question.category).or_default();
            if fused_rank.is_none_or(|rank| rank > 5) && *seen < misses {
                *seen += 1;
                let top: Vec<String> =
                    hits.iter().take(3).map(|hit| content.get(&hit.memory.id).cloned().unwrap_or_default()).collect();
                report.misses.push(format!(
                    "- [{category}] {} → wanted `{}` (fused rank {fused_rank:?}, words {:?}, vectors {:?}); got: {}",
                    question.text,
                    content.get(answer).cloned().unwrap_or_default(),
                    rank_in(&mut lists.text.iter()),
                    rank_in(&mut lists.vector.iter()),
                    top.join(" | ")
                ));
            }
        }
        store.close().await;
    }
    Ok(report)
}

/// Saves every turn; returns each turn's memory (a near-duplicate turn maps to the memory it
/// merged into).
async fn store_turns(
    store: &MemoryGraph,
    agent: &AgentId,
    conversation: &Conversation,
) -> anyhow::Result<HashMap<String, MemoryId>> {
    let mut memory_of = HashMap::new();
    for batch in conversation.turns.chunks(BATCH) {
        let memories = batch
            .iter()
            .map(|turn| {
                let noon = Utc.from_utc_datetime(&turn.date.and_time(NaiveTime::MIN)) + chrono::Duration::hours(12);
                NewMemory::new(MemoryType::Observation, turn.content(), MemoryScope::agent(agent.clone()))
                    .with_source(turn.id.clone())
                    .with_created_at(noon)
            })
            .collect();
        let outcomes = store.save_batch(memories).await?;
        for (turn, outcome) in batch.iter().zip(outcomes) {
            memory_of.insert(turn.id.clone(), outcome.id);
        }
    }
    Ok(memory_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness on the first two conversations: fused recall is at least as good as the
    /// best single list at every k (deterministic: the hashing embedder and a seeded data set).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fusion_is_never_worse_than_the_best_list() {
        let report = evaluate(&data::dataset()[..2], Arc::new(HashingEmbedder::default()), 0).await.unwrap();
        let (questions, fused) = report.cells[&("all", "overall", "fused")];
        assert!(questions > 150, "{questions}");
        for list in ["words", "vectors"] {
            let (_, single) = report.cells[&("all", "overall", list)];
            for slot in 0..KS.len() {
                assert!(fused[slot] >= single[slot], "hit@{}: fused {fused:?} < {list} {single:?}", KS[slot]);
            }
        }
    }
}

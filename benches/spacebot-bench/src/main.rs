//! Spacebot benchmarks: `cargo xtask bench memory` runs
//! `cargo run --release -p spacebot-bench -- memory`.
//!
//! `memory` fills a memory file with synthetic memories (384-dimension vectors from the built-in
//! hashing embedder) in batches, measuring save throughput, then measures hybrid recall latency
//! (full text + vectors + graph walk, with the scope filter of a two-person conversation, access
//! recording on) and the knowledge render, at each size. It prints a Markdown table for
//! `docs/benchmarks.md`. Figures are for information; nothing gates on them.
//!
//! A second table per size breaks saves and recalls down by stage (see `stages.rs`): the mean
//! wall time per batch or per recall of each span `spacebot-memory` opens, with the rest of the
//! operation as "other".
//!
//! `draft` times a streamed reply's secret scrubbing as the reply grows (see `draft.rs`).
//!
//! `SPACEBOT_BENCH_POSTGRES=URL` runs the same on the PostgreSQL database at `URL`, which must be
//! empty (one size per database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use spacebot_core::{KnowledgeQuery, MemoryScope, MemoryStore, MemoryType, NewMemory, RecallQuery, Visibility};
use spacebot_memory::{HashingEmbedder, MemoryGraph, PgLog};

/// Memories per `save_batch` call.
const BATCH: usize = 500;
/// Recalls measured per size.
const QUERIES: usize = 300;

/// Words in the synthetic vocabulary.
const VOCABULARY: u64 = 20_000;
/// People owning private memories.
const PEOPLE: u64 = 50;

mod draft;
mod processes;
mod stages;

use crate::stages::{Stages, Totals};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [name, rest @ ..] = args.as_slice()
        && name == "processes"
    {
        return processes::run(rest);
    }
    if let [name, rest @ ..] = args.as_slice()
        && name == "draft"
    {
        return draft::run(rest);
    }
    let sizes: Vec<usize> = match args.as_slice() {
        [name] if name == "memory" => vec![10_000, 100_000],
        [name, sizes @ ..] if name == "memory" => sizes
            .iter()
            .map(|s| s.parse::<usize>().context("sizes are numbers of memories"))
            .collect::<Result<_, _>>()?,
        _ => bail!("usage: spacebot-bench memory [SIZE ...] | processes [CONVERSATIONS ...] | draft [PIECES ...]"),
    };
    let stages = Stages::install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for size in sizes {
            results.push(bench_memory(size, &stages).await?);
        }
        anyhow::Ok(results)
    })?;
    println!(
        "| memories | saves/s (batches of {BATCH}) | recall p50 | recall p99 | render p50 | render again p50 | recall after another writer | open | vectors in RAM | words in RAM |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in &results {
        println!("{}", result.row);
    }
    for result in &results {
        println!();
        print_stages(result);
    }
    Ok(())
}

/// One size's figures: the table row and the stage totals.
struct SizeResult {
    size: usize,
    row: String,
    batches: usize,
    saves: Totals,
    recalls: usize,
    recall_stages: Totals,
    /// Processor time per recall, all threads: steadier than wall time on a shared machine.
    recall_cpu: Duration,
}

/// The stage breakdown of one size, as a Markdown table: mean per batch and per recall.
fn print_stages(result: &SizeResult) {
    println!(
        "Stages at {} memories (mean wall time per batch of {BATCH} / per recall; calls per operation):",
        result.size
    );
    println!();
    println!("| stage | mean | calls | share |");
    println!("|---|---:|---:|---:|");
    for (totals, prefix, ops) in
        [(&result.saves, "save", result.batches), (&result.recall_stages, "recall", result.recalls)]
    {
        let stages = totals.per_op(prefix, ops);
        let total = stages.iter().find(|(name, _, _)| *name == prefix).map(|(_, mean, _)| *mean).unwrap_or_default();
        let mut inner = Duration::ZERO;
        for (name, mean, calls) in stages.iter().filter(|(name, _, _)| *name != prefix) {
            inner += *mean;
            println!("| {name} | {} | {calls:.1} | {:.0}% |", ms3(*mean), share(*mean, total));
        }
        let other = total.saturating_sub(inner);
        println!("| {prefix} (other) | {} | | {:.0}% |", ms3(other), share(other, total));
        println!("| **{prefix} (total)** | **{}** | | |", ms3(total));
    }
    println!("| recall, processor time (all threads) | {} | | |", ms3(result.recall_cpu));
}

/// User and system time of this process so far (Linux `/proc/self/stat`, in 10 ms ticks);
/// zero where that file is missing.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

fn share(part: Duration, total: Duration) -> f64 {
    if total.is_zero() { 0.0 } else { part.as_secs_f64() / total.as_secs_f64() * 100.0 }
}

fn ms3(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A word rank, log-uniform from rank 100 (Zipf's law with the hundred most common words,
    /// the stop words recall drops, left out): a few words are common, most are rare.
    fn word(&mut self) -> u64 {
        let (low, high) = (100f64.ln(), (VOCABULARY as f64).ln());
        (low + self.unit() * (high - low)).exp() as u64
    }

    fn sentence(&mut self, words: usize) -> String {
        (0..words).map(|_| format!("w{}", self.word())).collect::<Vec<_>>().join(" ")
    }
}

async fn bench_memory(size: usize, stages: &Stages) -> anyhow::Result<SizeResult> {
    let dir = tempfile::tempdir()?;
    // SPACEBOT_BENCH_KEEP=DIR keeps the database there, for inspection.
    let path = match std::env::var_os("SPACEBOT_BENCH_KEEP") {
        Some(keep) => std::path::PathBuf::from(keep).join(format!("memory-{size}.db")),
        None => dir.path().join("memory.db"),
    };
    // SPACEBOT_BENCH_REUSE=1 (with SPACEBOT_BENCH_KEEP) recalls from a file kept by an earlier
    // run instead of filling a new one, to compare recall of two builds on the same data.
    let reuse = std::env::var_os("SPACEBOT_BENCH_REUSE").is_some() && path.exists();
    let postgres = std::env::var("SPACEBOT_BENCH_POSTGRES").ok();
    let open_store = || async {
        let embedder = Arc::new(HashingEmbedder::new(384));
        anyhow::Ok(match &postgres {
            Some(url) => MemoryGraph::on_postgres(&PgLog::connect(url).await?, embedder).await?,
            None => MemoryGraph::open(&path, embedder).await?,
        })
    };
    let store = open_store().await?;
    if postgres.is_some() && store.vector_count() > 0 {
        bail!("the database SPACEBOT_BENCH_POSTGRES names already holds memories: give each size an empty one");
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ size as u64);

    stages.take();
    let started = Instant::now();
    let mut saved = 0;
    let mut batches = 0;
    while saved < size && !reuse {
        let batch: Vec<NewMemory> = (0..BATCH.min(size - saved))
            .map(|_| {
                let kind = MemoryType::ALL[(rng.next() % 8) as usize];
                let scope = if rng.next().is_multiple_of(10) {
                    MemoryScope::private_to("main", format!("person{}", rng.next() % PEOPLE))
                } else {
                    MemoryScope::agent("main")
                };
                let words = 8 + (rng.next() % 12) as usize;
                NewMemory::new(kind, rng.sentence(words), scope)
            })
            .collect();
        saved += batch.len();
        batches += 1;
        store.save_batch(batch).await?;
    }
    // A reused file was filled by an earlier run: no save rate to report.
    let save_rate =
        if reuse { "reused".to_owned() } else { format!("{:.0}", size as f64 / started.elapsed().as_secs_f64()) };
    let saves = stages.take();

    let visibility = Visibility::conversation("bench:group", ["person1", "person2"]);
    let queries = std::env::var("SPACEBOT_BENCH_QUERIES").ok().and_then(|q| q.parse().ok()).unwrap_or(QUERIES);
    let mut recalls = Vec::with_capacity(queries);
    let cpu_before = process_cpu();
    for _ in 0..queries {
        let query = RecallQuery::new("main", rng.sentence(4)).with_visibility(visibility.clone());
        let started = Instant::now();
        store.recall(query).await?;
        recalls.push(started.elapsed());
    }
    let recall_stages = stages.take();
    let recall_cpu = process_cpu().saturating_sub(cpu_before) / queries.max(1) as u32;
    // A render for each of 20 conversations (of the same two people), then 20 more of one of
    // them with the memory unchanged: the kept render.
    let mut renders = Vec::new();
    for i in 0..20 {
        let conversation = Visibility::conversation(format!("bench:group{i}"), ["person1", "person2"]);
        let started = Instant::now();
        store.render_knowledge(KnowledgeQuery::new("main", conversation)).await?;
        renders.push(started.elapsed());
    }
    let mut kept_renders = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        store.render_knowledge(KnowledgeQuery::new("main", visibility.clone())).await?;
        kept_renders.push(started.elapsed());
    }
    // Another process (a CLI command) saves into the same file; the next recall here catches
    // its copies up from the change log instead of reloading them.
    let other = open_store().await?;
    other.save(NewMemory::new(MemoryType::Fact, rng.sentence(12), MemoryScope::agent("main"))).await?;
    other.close().await;
    let started = Instant::now();
    store.recall(RecallQuery::new("main", rng.sentence(4)).with_visibility(visibility.clone())).await?;
    let after_other_writer = started.elapsed();
    store.close().await;
    // Opening a filled file loads the in-memory copies: what a restart or a CLI command pays.
    // Their size is read from this fresh load (a fill leaves spare capacity behind).
    let started = Instant::now();
    let store = open_store().await?;
    let open = started.elapsed();
    let footprint = store.index_footprint();
    store.close().await;
    let row = format!(
        "| {size} | {save_rate} | {} | {} | {} | {} | {} | {} | {:.0} MB | {:.0} MB |",
        ms(percentile(&mut recalls, 0.50)),
        ms(percentile(&mut recalls, 0.99)),
        ms(percentile(&mut renders, 0.50)),
        ms(percentile(&mut kept_renders, 0.50)),
        ms(after_other_writer),
        ms(open),
        footprint.vectors as f64 / 1e6,
        footprint.words as f64 / 1e6,
    );
    Ok(SizeResult { size, row, batches, saves, recalls: queries, recall_stages, recall_cpu })
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

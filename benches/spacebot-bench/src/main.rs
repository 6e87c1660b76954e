//! Spacebot benchmarks: `cargo xtask bench memory` runs
//! `cargo run --release -p spacebot-bench -- memory`.
//!
//! `memory` fills a memory file with synthetic memories (384-dimension vectors from the built-in
//! hashing embedder) in batches, measuring save throughput, then measures hybrid recall latency
//! (full text + vectors + graph walk, with the scope filter of a two-person conversation, access
//! recording on) and the knowledge render, at each size. It prints a Markdown table for
//! `docs/benchmarks.md`. Figures are for information; nothing gates on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use spacebot_core::{KnowledgeQuery, MemoryScope, MemoryStore, MemoryType, NewMemory, RecallQuery, Visibility};
use spacebot_memory::{HashingEmbedder, SqliteMemory};

/// Memories per `save_batch` call.
const BATCH: usize = 500;
/// Recalls measured per size.
const QUERIES: usize = 300;

/// Words in the synthetic vocabulary.
const VOCABULARY: u64 = 20_000;
/// People owning private memories.
const PEOPLE: u64 = 50;

mod processes;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [name, rest @ ..] = args.as_slice()
        && name == "processes"
    {
        return processes::run(rest);
    }
    let sizes: Vec<usize> = match args.as_slice() {
        [name] if name == "memory" => vec![10_000, 100_000],
        [name, sizes @ ..] if name == "memory" => sizes
            .iter()
            .map(|s| s.parse::<usize>().context("sizes are numbers of memories"))
            .collect::<Result<_, _>>()?,
        _ => bail!("usage: spacebot-bench memory [SIZE ...] | processes [CONVERSATIONS ...]"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for size in sizes {
            rows.push(bench_memory(size).await?);
        }
        anyhow::Ok(rows)
    })?;
    println!("| memories | saves/s (batches of {BATCH}) | recall p50 | recall p99 | render p50 | vectors in RAM |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
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

async fn bench_memory(size: usize) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    // SPACEBOT_BENCH_KEEP=DIR keeps the database there, for inspection.
    let path = match std::env::var_os("SPACEBOT_BENCH_KEEP") {
        Some(keep) => std::path::PathBuf::from(keep).join(format!("memory-{size}.db")),
        None => dir.path().join("memory.db"),
    };
    let store = SqliteMemory::open(&path, Arc::new(HashingEmbedder::new(384))).await?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ size as u64);

    let started = Instant::now();
    let mut saved = 0;
    while saved < size {
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
        store.save_batch(batch).await?;
    }
    let save_rate = size as f64 / started.elapsed().as_secs_f64();

    let visibility = Visibility::conversation("bench:group", ["person1", "person2"]);
    let queries = std::env::var("SPACEBOT_BENCH_QUERIES").ok().and_then(|q| q.parse().ok()).unwrap_or(QUERIES);
    let mut recalls = Vec::with_capacity(queries);
    for _ in 0..queries {
        let query = RecallQuery::new("main", rng.sentence(4)).with_visibility(visibility.clone());
        let started = Instant::now();
        store.recall(query).await?;
        recalls.push(started.elapsed());
    }
    let mut renders = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        store.render_knowledge(KnowledgeQuery::new("main", visibility.clone())).await?;
        renders.push(started.elapsed());
    }
    let vectors = store.vector_count();
    store.close().await;
    Ok(format!(
        "| {size} | {save_rate:.0} | {} | {} | {} | {:.0} MB |",
        ms(percentile(&mut recalls, 0.50)),
        ms(percentile(&mut recalls, 0.99)),
        ms(percentile(&mut renders, 0.50)),
        // f32 vectors plus their int8 copy.
        (vectors * 384 * 5) as f64 / 1e6
    ))
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

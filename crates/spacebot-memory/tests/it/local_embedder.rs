//! The local sentence-embedding model (cargo feature `local-embeddings`) on the real
//! all-MiniLM-L6-v2 files.
//!
//! These tests need the model: they read its directory from `SPACEBOT_TEST_EMBEDDING_MODEL_DIR`
//! (`export SPACEBOT_TEST_EMBEDDING_MODEL_DIR="$(scripts/fetch-models)"`; `.ci/run` does it) and
//! fail, saying so, when it is not set. They are compiled only with the feature, so the default
//! build never needs the files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use spacebot_core::{Embedder, MemoryStore, MemoryType, NewMemory, RecallQuery};
use spacebot_memory::{HashingEmbedder, LOCAL_MODEL_FILES, LocalEmbedder, LocalModelError, MemoryGraph, dot};

use crate::memory_support::shared;

/// The variable naming the model directory.
const MODEL_DIR_VAR: &str = "SPACEBOT_TEST_EMBEDDING_MODEL_DIR";

fn model_dir() -> PathBuf {
    match std::env::var_os(MODEL_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "{MODEL_DIR_VAR} is not set: the local-embeddings tests need the all-MiniLM-L6-v2 files; run \
             `export {MODEL_DIR_VAR}=\"$(scripts/fetch-models)\"` and test again"
        ),
    }
}

/// The model, loaded once per test process.
fn embedder() -> LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir();
            LocalEmbedder::load(&dir).unwrap_or_else(|error| {
                panic!("{error} (is {MODEL_DIR_VAR}={} what `scripts/fetch-models` printed?)", dir.display())
            })
        })
        .clone()
}

async fn embed(embedder: &LocalEmbedder, texts: &[&str]) -> Vec<Vec<f32>> {
    let texts: Vec<String> = texts.iter().map(|text| (*text).to_owned()).collect();
    embedder.embed(&texts).await.expect("the local model embeds")
}

#[tokio::test]
async fn vectors_have_384_unit_length_dimensions_and_a_local_model_id() {
    let embedder = embedder();
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_tokens(), 256, "sentence_bert_config.json's max_seq_length");
    let vectors = embed(&embedder, &["The cat sat on the mat.", ""]).await;
    assert_eq!(vectors.len(), 2);
    for vector in &vectors {
        assert_eq!(vector.len(), 384);
        assert!((dot(vector, vector) - 1.0).abs() < 1e-4, "norm² {}", dot(vector, vector));
    }
    let id = embedder.model_id();
    assert!(id.starts_with("local:bert:") && id.ends_with(":384"), "{id}");
    assert_ne!(id, HashingEmbedder::new(384).model_id());
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cat_is_closer_to_a_kitten_than_to_revenue() {
    let vectors = embed(
        &embedder(),
        &["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "Quarterly revenue grew by ten percent."],
    )
    .await;
    let kitten = dot(&vectors[0], &vectors[1]);
    let revenue = dot(&vectors[0], &vectors[2]);
    assert!(kitten > 0.5, "cat/kitten {kitten}");
    assert!(revenue < 0.2, "cat/revenue {revenue}");
    assert!(kitten - revenue > 0.4, "cat/kitten {kitten} vs cat/revenue {revenue}");
}

#[tokio::test]
async fn embedding_is_deterministic_and_the_model_id_stable_across_loads() {
    let first = embedder();
    let texts = ["Alice drinks green tea every morning.", "The deploy failed because the disk was full."];
    let once = embed(&first, &texts).await;
    let again = embed(&first, &texts).await;
    assert_eq!(once, again);

    let reloaded = LocalEmbedder::load(first.model_dir()).unwrap();
    assert_eq!(reloaded.model_id(), first.model_id());
    let fresh = embed(&reloaded, &texts).await;
    for (a, b) in once.iter().zip(&fresh) {
        assert!(max_difference(a, b) < 1e-6, "a reloaded model differs by {}", max_difference(a, b));
    }
}

/// The padding and pooling check: in a batch, short texts are padded to the longest one, and the
/// padding must not move their vectors.
#[tokio::test]
async fn a_batch_gives_each_text_the_vector_it_gets_alone() {
    let embedder = embedder();
    let long = "Deployment notes: ".to_owned() + &"the service restarts nightly and logs rotate hourly. ".repeat(60);
    let texts = [
        "Hi",
        "Alice is allergic to peanuts.",
        "",
        long.as_str(),
        "The weekly sync moved to Thursdays at 10:00 because the design team is in another time zone.",
        "Bob",
    ];
    let batch = embed(&embedder, &texts).await;
    assert_eq!(batch.len(), texts.len());
    for (text, in_batch) in texts.iter().zip(&batch) {
        let alone = embed(&embedder, &[text]).await;
        let difference = max_difference(in_batch, &alone[0]);
        assert!(difference < 1e-5, "{text:.40?}: batched and alone differ by {difference}");
    }
    // The long text was cut at the model's maximum rather than rejected, and still means something.
    assert!((dot(&batch[3], &batch[3]) - 1.0).abs() < 1e-4);
}

#[tokio::test]
async fn missing_and_corrupt_files_are_named() {
    let real = model_dir();
    let dir = tempfile::tempdir().unwrap();

    let error = LocalEmbedder::load(dir.path()).unwrap_err();
    assert!(matches!(error, LocalModelError::Missing { .. }), "{error}");
    assert!(error.to_string().contains("model.safetensors"), "{error}");
    assert!(error.to_string().contains(&dir.path().display().to_string()), "{error}");

    for file in LOCAL_MODEL_FILES {
        link(&real, dir.path(), file);
    }
    LocalEmbedder::load(dir.path()).unwrap();

    for (file, garbage) in [
        ("config.json", "{\"hidden_size\": \"big\"}"),
        ("tokenizer.json", "not a tokenizer"),
        ("model.safetensors", "\u{8}\0\0\0\0\0\0\0{}garbage"),
    ] {
        let path = dir.path().join(file);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, garbage).unwrap();
        let error = LocalEmbedder::load(dir.path()).unwrap_err();
        assert_eq!(error.path(), path, "{error}");
        if file != "tokenizer.json" {
            let error = LocalEmbedder::open(dir.path()).unwrap_err();
            assert_eq!(error.path(), path, "open checks {file} too: {error}");
        }
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        std::fs::remove_file(&path).unwrap();
        let error = LocalEmbedder::load(dir.path()).unwrap_err();
        assert!(
            matches!(&error, LocalModelError::Missing { path: missing } if *missing == path),
            "without {file}: {error}"
        );
        link(&real, dir.path(), file);
    }
}

#[tokio::test]
async fn open_reads_no_weights_and_the_first_text_loads_them_once() {
    let dir = model_dir();
    let opened = LocalEmbedder::open(&dir).unwrap();
    assert!(!opened.is_loaded(), "opening reads the config and samples, not the weights");
    // The id is what loading gives, and what it was before loading became lazy (the fetched
    // files of all-MiniLM-L6-v2), so memories embedded before are not reindexed.
    assert_eq!(opened.model_id(), embedder().model_id());
    assert_eq!(opened.model_id(), "local:bert:250262d9dd502a42:384");
    assert_eq!(opened.dimensions(), 384);

    // Clones share the model: texts embedded at once by several of them, before it is loaded,
    // wait for the one load and agree.
    let clones: Vec<LocalEmbedder> = (0..4).map(|_| opened.clone()).collect();
    let vectors = futures::future::join_all(clones.iter().map(|clone| embed(clone, &["the same text"]))).await;
    assert!(opened.is_loaded() && clones.iter().all(LocalEmbedder::is_loaded));
    for vector in &vectors {
        assert!(max_difference(&vector[0], &vectors[0][0]) < 1e-6);
    }
    let loaded = embed(&embedder(), &["the same text"]).await;
    assert!(max_difference(&vectors[0][0], &loaded[0]) < 1e-5, "lazy and eager loads embed alike");
}

#[tokio::test]
async fn a_broken_tokenizer_found_at_first_use_is_named() {
    let real = model_dir();
    let dir = tempfile::tempdir().unwrap();
    for file in LOCAL_MODEL_FILES {
        link(&real, dir.path(), file);
    }
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::remove_file(&tokenizer).unwrap();
    std::fs::write(&tokenizer, "not a tokenizer").unwrap();
    let opened = LocalEmbedder::open(dir.path()).expect("the tokenizer is read at first use");
    let error = opened.embed(&["hello".to_owned()]).await.unwrap_err();
    assert!(error.to_string().contains(&tokenizer.display().to_string()), "{error}");
    assert!(!opened.is_loaded());
}

/// End to end: a question that shares no word with the memory it should find is answered by the
/// vector side of recall, which the hashing embedder (lexical) can't do.
#[tokio::test]
async fn recall_finds_a_paraphrase_with_no_shared_words() {
    let answer = "Alice is allergic to peanuts.";
    let memories = [
        "The quarterly revenue report is due on Friday.",
        answer,
        "Bob prefers working from the Berlin office.",
        "The staging server restarts every night at two.",
        "Carol plays the violin in a string quartet.",
    ];
    let question = "Which foods make her sick?";

    let store = MemoryGraph::open_in_memory(Arc::new(embedder())).await.unwrap();
    for content in memories {
        store.save(NewMemory::new(MemoryType::Fact, content, shared())).await.unwrap();
    }
    let hits = store.recall(RecallQuery::new("main", question)).await.unwrap();
    let first = hits.first().expect("recall found something");
    assert_eq!(first.memory.content, answer, "{hits:#?}");
    assert_eq!(first.vector_rank, Some(1));
    assert_eq!(first.text_rank, None, "the question shares no word with the memory");

    let lexical = MemoryGraph::open_in_memory(Arc::new(HashingEmbedder::default())).await.unwrap();
    for content in memories {
        lexical.save(NewMemory::new(MemoryType::Fact, content, shared())).await.unwrap();
    }
    let hits = lexical.recall(RecallQuery::new("main", question)).await.unwrap();
    assert!(hits.first().is_none_or(|hit| hit.memory.content != answer), "the hashing embedder got lucky: {hits:#?}");
}

/// Thirty-two texts in one call come back as thirty-two distinct unit vectors; the test prints the
/// load time and the throughput, which `docs/memory.md` quotes from a release build:
/// `cargo nextest run --release -p spacebot-memory --features local-embeddings -E 'test(throughput)' --no-capture`.
#[tokio::test]
async fn a_full_batch_reports_load_time_and_throughput() {
    let dir = model_dir();
    let started = Instant::now();
    let embedder = LocalEmbedder::load(&dir).unwrap();
    let load = started.elapsed();
    let texts: Vec<String> = (0..32)
        .map(|i| format!("Memory {i}: the team agreed to ship release {i} after the review on day {}.", i * 7 % 31))
        .collect();
    embed(&embedder, &["warm up"]).await;
    let started = Instant::now();
    embed(&embedder, &[texts[0].as_str()]).await;
    let alone = started.elapsed();
    let started = Instant::now();
    let vectors = embedder.embed(&texts).await.unwrap();
    let took = started.elapsed();
    assert_eq!(vectors.len(), 32);
    for (i, vector) in vectors.iter().enumerate() {
        assert!((dot(vector, vector) - 1.0).abs() < 1e-4);
        for other in &vectors[..i] {
            assert!(dot(vector, other) < 0.9999, "texts {i} and another collapsed to one vector");
        }
    }
    eprintln!(
        "local embedder: load {:.0} ms; one text alone {:.1} ms; 32 texts in one call {:.0} ms, {:.0} texts/s, \
         {:.1} ms per text",
        load.as_secs_f64() * 1000.0,
        alone.as_secs_f64() * 1000.0,
        took.as_secs_f64() * 1000.0,
        32.0 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / 32.0
    );
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn link(from: &Path, to: &Path, file: &str) {
    std::os::unix::fs::symlink(from.join(file), to.join(file)).expect("symlink a model file");
}

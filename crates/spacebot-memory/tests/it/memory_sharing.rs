//! Two memory graphs on one database, each with its own in-memory copies: the daemon and the
//! CLI on one SQLite file, or two daemons of a fleet on one PostgreSQL database. Each follows
//! the other's writes through the generation and the change log.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use spacebot_core::{AgentId, MemoryStore, MemoryType, Visibility};
use spacebot_memory::HashingEmbedder;

use crate::memory_support::{contents, recall, save, shared};
use crate::support::{TestDb, on_both_backends};

/// Another process writing the same database (the CLI beside the daemon, another daemon of a
/// fleet) is seen by the next read.
async fn a_second_store_on_the_same_database_sees_saves_and_forgets<D: TestDb>(db: D) {
    let daemon = db.memory(Arc::new(HashingEmbedder::default())).await;
    let cli = db.memory(Arc::new(HashingEmbedder::default())).await;
    let id = save(&cli, MemoryType::Fact, "The printer is on the third floor", shared()).await;
    let hits = recall(&daemon, "where is the printer", Visibility::Shared).await;
    assert_eq!(contents(&hits), vec!["The printer is on the third floor"]);
    assert_eq!(hits[0].vector_rank, Some(1), "the daemon reloaded the new vector");
    assert_eq!(hits[0].text_rank, Some(1), "and the new memory's words");
    cli.forget(&AgentId::from("main"), &id).await.unwrap();
    assert!(recall(&daemon, "where is the printer", Visibility::Shared).await.is_empty());
    assert_eq!(daemon.vector_count(), 0);
}

/// Two stores on one database (the daemon and the CLI, two daemons), each saving, forgetting and recalling from
/// several tasks at once: afterwards both copies of the words and vectors match the file. Every
/// live memory is found by its own word in both lists of both stores; no forgotten one is.
async fn concurrent_writers_on_one_database_leave_both_copies_in_step<D: TestDb>(db: D) {
    let daemon = db.memory(Arc::new(HashingEmbedder::default())).await;
    let cli = db.memory(Arc::new(HashingEmbedder::default())).await;
    let agent = AgentId::from("main");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4usize {
        let store = if worker % 2 == 0 { daemon.clone() } else { cli.clone() };
        let agent = agent.clone();
        tasks.spawn(async move {
            let mut forgotten = Vec::new();
            for i in 0..25usize {
                let word = format!("token{worker}x{i}");
                let id =
                    save(&store, MemoryType::Fact, &format!("{word} is a memory of worker {worker}"), shared()).await;
                if i % 5 == 0 {
                    store.forget(&agent, &id).await.unwrap();
                    forgotten.push(word.clone());
                }
                recall(&store, &format!("worker {worker} memory"), Visibility::Shared).await;
            }
            forgotten
        });
    }
    let mut forgotten = Vec::new();
    while let Some(done) = tasks.join_next().await {
        forgotten.extend(done.unwrap());
    }
    assert_eq!(forgotten.len(), 20);
    for store in [&daemon, &cli] {
        for worker in 0..4 {
            for i in 0..25 {
                let word = format!("token{worker}x{i}");
                let hits = recall(store, &word, Visibility::Shared).await;
                if forgotten.contains(&word) {
                    assert!(hits.iter().all(|hit| !hit.memory.content.starts_with(&word)), "{word} was forgotten");
                } else {
                    let hit = hits.iter().find(|hit| hit.memory.content.starts_with(&word));
                    let hit = hit.unwrap_or_else(|| panic!("{word} is live but not recalled"));
                    assert_eq!(hit.text_rank, Some(1), "{word} by its words");
                    assert!(hit.vector_rank.is_some(), "{word} by its vector");
                }
            }
        }
        assert_eq!(store.vector_count(), 80);
    }
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_second_store_on_the_same_database_sees_saves_and_forgets,
    concurrent_writers_on_one_database_leave_both_copies_in_step,
);

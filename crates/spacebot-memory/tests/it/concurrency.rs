//! Many writers at once on one database, SQLite or PostgreSQL.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use spacebot_core::ConversationLog;

use crate::support::{LogStore, TestDb, agent, inbound, on_both_backends};

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    two_hundred_concurrent_inbound_messages_all_land
);

async fn two_hundred_concurrent_inbound_messages_all_land<D: TestDb>(db: D) {
    let store = db.open().await;

    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let message = inbound(&format!("agent-{}", n % 4), &format!("c{}", n % 10), &format!("m-{n}"), "hi");
                store.record_inbound(&message).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap(), "every message is new");
    }

    let recovered = store.unhandled().await.unwrap();
    assert_eq!(recovered.len(), 200);
    let mut per_agent = BTreeMap::new();
    for message in &recovered {
        *per_agent.entry(message.agent.clone().unwrap()).or_insert(0) += 1;
    }
    assert!(per_agent.values().all(|count| *count == 50), "{per_agent:?}");

    // Each (agent, conversation) pair got its five messages, in a consistent order.
    store.close().await;
    let store = db.open().await;
    let mut total = 0;
    for a in 0..4 {
        for c in 0..10 {
            let history = store.history(&agent(&format!("agent-{a}")), &format!("c{c}").into(), 100).await.unwrap();
            total += history.len();
        }
    }
    assert_eq!(total, 200);
}

//! Model usage on SQLite and PostgreSQL: calls add up in their row per day, agent, model and process kind, and
//! the rows survive a reopen.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use chrono::NaiveDate;
use spacebot_core::{AgentId, ProcessKind, UsageLedger, UsageRow};

use crate::support::{TestDb, on_both_backends};

on_both_backends!(calls_add_up_per_day_agent_model_and_process_and_survive_a_reopen);

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).expect("a day")
}

fn call(d: u32, agent: &str, process: ProcessKind, input: u64, output: u64) -> UsageRow {
    UsageRow::new(day(d), AgentId::new(agent), "main/gpt", process).with_counts(1, input, output)
}

async fn calls_add_up_per_day_agent_model_and_process_and_survive_a_reopen<D: TestDb>(db: D) {
    {
        let store = db.open().await;
        store.add_usage(&call(5, "main", ProcessKind::Channel, 100, 10)).await.unwrap();
        store.add_usage(&call(5, "main", ProcessKind::Channel, 50, 5)).await.unwrap();
        store.add_usage(&call(5, "main", ProcessKind::Worker, 7, 3)).await.unwrap();
        store.add_usage(&call(6, "main", ProcessKind::Channel, 1, 1)).await.unwrap();
        store.add_usage(&call(6, "ops", ProcessKind::Compactor, 2, 2)).await.unwrap();
    }
    let store = db.open().await;
    let all = store.usage(None).await.unwrap();
    let expected = vec![
        call(5, "main", ProcessKind::Channel, 150, 15).with_counts(2, 150, 15),
        call(5, "main", ProcessKind::Worker, 7, 3),
        call(6, "main", ProcessKind::Channel, 1, 1),
        call(6, "ops", ProcessKind::Compactor, 2, 2),
    ];
    assert_eq!(all, expected);
    let recent = store.usage(Some(day(6))).await.unwrap();
    assert_eq!(recent, expected[2..].to_vec());
    assert!(store.usage(Some(day(7))).await.unwrap().is_empty());
}

//! Helpers for the memory tests: stores with a controllable clock, scopes, raw SQL checks.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};

use spacebot_core::{MemoryId, MemoryScope, MemoryStore, MemoryType, NewMemory, RecallHit, RecallQuery, Visibility};
use spacebot_memory::{HashingEmbedder, MemoryGraph};

use crate::support::TestDb;

/// A clock tests move by hand.
#[derive(Clone)]
pub(crate) struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub(crate) fn new() -> Self {
        let start = Utc.with_ymd_and_hms(2025, 3, 14, 12, 0, 0).single().expect("valid time");
        Self(Arc::new(AtomicI64::new(start.timestamp_millis())))
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).expect("in range")
    }

    pub(crate) fn advance_days(&self, days: i64) {
        self.0.fetch_add(Duration::days(days).num_milliseconds(), Ordering::SeqCst);
    }

    pub(crate) fn clock(&self) -> spacebot_memory::Clock {
        let millis = self.0.clone();
        Arc::new(move || DateTime::from_timestamp_millis(millis.load(Ordering::SeqCst)).unwrap_or_default())
    }
}

/// The memory graph on the test's database, on the hashing embedder, with a manual clock.
pub(crate) async fn store<D: TestDb>(db: &D) -> (MemoryGraph, ManualClock) {
    let clock = ManualClock::new();
    let memory = db.memory(Arc::new(HashingEmbedder::default())).await.with_clock(clock.clock());
    (memory, clock)
}

/// A store on a file, for tests that open it twice or inject failures with a raw connection.
pub(crate) async fn file_store(path: &Path) -> MemoryGraph {
    MemoryGraph::open(path, Arc::new(HashingEmbedder::default())).await.expect("open")
}

pub(crate) fn shared() -> MemoryScope {
    MemoryScope::agent("main")
}

pub(crate) fn private(human: &str) -> MemoryScope {
    MemoryScope::private_to("main", human)
}

/// Saves a memory and returns its id.
pub(crate) async fn save(store: &MemoryGraph, kind: MemoryType, content: &str, scope: MemoryScope) -> MemoryId {
    store.save(NewMemory::new(kind, content, scope)).await.expect("save").id
}

/// Recalls without recording access.
pub(crate) async fn recall(store: &MemoryGraph, text: &str, visibility: Visibility) -> Vec<RecallHit> {
    store
        .recall(RecallQuery::new("main", text).with_visibility(visibility).with_limit(20).without_access_recording())
        .await
        .expect("recall")
}

pub(crate) fn contents(hits: &[RecallHit]) -> Vec<&str> {
    hits.iter().map(|hit| hit.memory.content.as_str()).collect()
}

/// Runs a scalar SQL query on a raw connection to the file.
pub(crate) async fn scalar(path: &Path, sql: &str) -> i64 {
    let mut connection = crate::support::raw_connection(path).await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut connection).await.expect("scalar query")
}

/// Runs a statement on a raw connection to the file.
pub(crate) async fn execute(path: &Path, sql: &str) {
    let mut connection = crate::support::raw_connection(path).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut connection).await.expect("statement");
}

/// Rows that no live memory owns: vectors of forgotten or deleted memories, edges to deleted
/// ones. A store without stale rows has none.
pub(crate) async fn orphans(path: &Path) -> i64 {
    scalar(
        path,
        "SELECT (SELECT COUNT(*) FROM memory_vectors v LEFT JOIN memories m ON m.seq = v.memory_seq
                 WHERE m.seq IS NULL OR m.forgotten_at IS NOT NULL)
              + (SELECT COUNT(*) FROM memory_edges e
                 WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = e.source)
                    OR NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = e.target))",
    )
    .await
}

/// How many rows the full-text index returns for a word.
pub(crate) async fn fts_hits(path: &Path, word: &str) -> i64 {
    scalar(path, &format!("SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH '\"{word}\"'")).await
}

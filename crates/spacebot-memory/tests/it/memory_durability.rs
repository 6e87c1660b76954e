//! One transaction per write: an injected failure at any step leaves nothing behind, no write
//! leaves a stale index or vector row, and a second process on the same file stays in step.

use spacebot_core::{
    AgentId, MaintenanceOptions, MemoryStore, MemoryType, NewEdge, NewMemory, RelationKind, SaveStatus, Visibility,
};

use crate::memory_support::{contents, execute, file_store, fts_hits, orphans, recall, save, scalar, shared};
use crate::support::temp_db;

/// A save that fails half-way (here: the vector insert, after the row and its index entry were
/// written) leaves no memory row, no index row, no edge; the same save then succeeds as new.
#[tokio::test]
async fn a_crash_in_the_middle_of_a_save_leaves_no_partial_state() {
    let (_dir, path) = temp_db();
    let store = file_store(&path).await;
    let target = save(&store, MemoryType::Fact, "Backups run nightly", shared()).await;
    execute(
        &path,
        "CREATE TRIGGER crash_vectors BEFORE INSERT ON memory_vectors BEGIN SELECT RAISE(ABORT, 'injected crash'); END",
    )
    .await;
    let memory = NewMemory::new(MemoryType::Fact, "Restores are tested monthly", shared())
        .with_edge(NewEdge::new(target.clone(), RelationKind::RelatedTo));
    let error = store.save(memory.clone()).await.unwrap_err();
    assert!(error.to_string().contains("injected crash"), "{error}");
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memories").await, 1);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memory_edges").await, 0);
    assert_eq!(fts_hits(&path, "restores").await, 0);
    assert_eq!(store.vector_count(), 1);

    execute(&path, "DROP TRIGGER crash_vectors").await;
    let outcome = store.save(memory).await.unwrap();
    assert_eq!(outcome.status, SaveStatus::Created, "the failed save left no hash behind");
    assert_eq!(fts_hits(&path, "restores").await, 1);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memory_edges").await, 1);
}

/// A batch is all or nothing: a failure on its third memory undoes the first two.
#[tokio::test]
async fn a_failure_late_in_a_batch_undoes_the_whole_batch() {
    let (_dir, path) = temp_db();
    let store = file_store(&path).await;
    execute(
        &path,
        "CREATE TRIGGER crash_third BEFORE INSERT ON memories WHEN new.content = 'third'
         BEGIN SELECT RAISE(ABORT, 'injected crash'); END",
    )
    .await;
    let batch = ["first", "second", "third"].map(|text| NewMemory::new(MemoryType::Fact, text, shared())).to_vec();
    assert!(store.save_batch(batch).await.is_err());
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memories").await, 0);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memory_vectors").await, 0);
    assert_eq!(fts_hits(&path, "first").await, 0);
    assert_eq!(store.vector_count(), 0);
}

/// Anchor defect: forgetting, merging and pruning left vector (and index) rows behind.
#[tokio::test]
async fn anchor_defect_no_write_leaves_a_stale_vector_or_index_row() {
    let (_dir, path) = temp_db();
    let clock = crate::memory_support::ManualClock::new();
    let store = file_store(&path).await.with_merge_similarity(2.0).with_clock(clock.clock());
    let agent = AgentId::from("main");
    let forgotten = save(&store, MemoryType::Fact, "The staging password rotates weekly", shared()).await;
    save(&store, MemoryType::Fact, "Kubernetes runs on three nodes", shared()).await;
    save(&store, MemoryType::Fact, "Kubernetes runs on three nodes.", shared()).await;
    store.forget(&agent, &forgotten).await.unwrap();
    assert_eq!(fts_hits(&path, "staging").await, 0, "forget removes the index row");
    assert_eq!(orphans(&path).await, 0);

    let report = store.maintain(&agent, MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.merged, 1);
    assert_eq!(orphans(&path).await, 0, "merge removes the absorbed memory's vector");
    assert_eq!(fts_hits(&path, "kubernetes").await, 1);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memory_vectors").await, 1);

    clock.advance_days(60);
    let report = store.maintain(&agent, MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.pruned, 2, "both forgotten memories are deleted after the retention");
    assert_eq!(orphans(&path).await, 0, "prune removes edges and vectors with the rows");
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memories").await, 1);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memory_edges").await, 0);
}

/// Reopening the file restores every vector, and a changed embedder is noticed and reindexed.
#[tokio::test]
async fn reopening_restores_vectors_and_a_new_embedder_triggers_a_reindex() {
    let (_dir, path) = temp_db();
    {
        let store = file_store(&path).await;
        save(&store, MemoryType::Fact, "Invoices go out on the 1st", shared()).await;
        save(&store, MemoryType::Fact, "Payroll runs on the 25th", shared()).await;
        store.close().await;
    }
    let store = file_store(&path).await;
    assert_eq!(store.vector_count(), 2);
    assert_eq!(store.pending_reindex().await.unwrap(), 0);
    store.close().await;

    let embedder = std::sync::Arc::new(spacebot_memory::HashingEmbedder::new(64));
    let store = spacebot_memory::MemoryGraph::open(&path, embedder).await.unwrap();
    assert_eq!(store.vector_count(), 0, "vectors of another model are not used");
    assert_eq!(store.pending_reindex().await.unwrap(), 2);
    let hits = recall(&store, "when does payroll run", Visibility::Shared).await;
    assert_eq!(contents(&hits), vec!["Payroll runs on the 25th"], "found by its words before the reindex");
    assert_eq!((hits[0].text_rank, hits[0].vector_rank), (Some(1), None));
    let mut seen = Vec::new();
    let done = store.reindex(1, &mut |done, total| seen.push((done, total))).await.unwrap();
    assert_eq!(done, 2);
    assert_eq!(seen, vec![(0, 2), (1, 2), (2, 2)]);
    assert_eq!(store.vector_count(), 2);
    assert_eq!(scalar(&path, "SELECT COUNT(*) FROM memory_vectors").await, 2, "old model's vectors dropped");
    assert_eq!(store.indexed_model().await.unwrap().as_deref(), Some("hashing-v1-64"));
    let hits = recall(&store, "when does payroll run", Visibility::Shared).await;
    assert_eq!(hits[0].vector_rank, Some(1));
}

/// Live rows whose per-type, per-visibility-class count (`memory_counts`, kept by triggers for
/// the render) disagrees with counting the memories themselves.
async fn count_drift(path: &std::path::Path) -> i64 {
    const RECOUNT: &str = "SELECT agent, kind,
            CASE WHEN private = 0 THEN 'shared'
                 WHEN human IS NOT NULL THEN 'human:' || human
                 ELSE 'conversation:' || IFNULL(conversation, '') END,
            COUNT(*)
       FROM memories WHERE forgotten_at IS NULL GROUP BY 1, 2, 3";
    const KEPT: &str = "SELECT agent, kind, class, live FROM memory_counts WHERE live != 0";
    scalar(
        path,
        &format!(
            "SELECT (SELECT COUNT(*) FROM ({KEPT} EXCEPT {RECOUNT})) + (SELECT COUNT(*) FROM ({RECOUNT} EXCEPT {KEPT}))"
        ),
    )
    .await
}

/// The render's counts follow every kind of write: saves, merges, forgets, identity links
/// (which move memories to a person) and deletes.
#[tokio::test]
async fn the_render_counts_follow_every_write() {
    let (_dir, path) = temp_db();
    let store = file_store(&path).await;
    let agent = AgentId::from("main");
    let fact = save(&store, MemoryType::Fact, "Backups run nightly at two", shared()).await;
    save(&store, MemoryType::Fact, "Backups run nightly at two", shared()).await;
    save(&store, MemoryType::Preference, "Likes short answers", crate::memory_support::private("discord:1")).await;
    save(&store, MemoryType::Preference, "Prefers tea", crate::memory_support::private("alice")).await;
    assert_eq!(count_drift(&path).await, 0);
    assert_eq!(scalar(&path, "SELECT SUM(live) FROM memory_counts").await, 3);

    store.link_identity(&agent, "discord:1", "alice").await.unwrap();
    assert_eq!(count_drift(&path).await, 0);
    assert!(store.forget(&agent, &fact).await.unwrap());
    assert_eq!(count_drift(&path).await, 0);
    assert_eq!(scalar(&path, "SELECT SUM(live) FROM memory_counts").await, 2);
    execute(&path, "DELETE FROM memories WHERE content = 'Prefers tea'").await;
    assert_eq!(count_drift(&path).await, 0);
    assert_eq!(scalar(&path, "SELECT SUM(live) FROM memory_counts").await, 1);
}

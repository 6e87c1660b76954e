//! Maintenance: decay, prune, merge, link, and their bounds.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use spacebot_core::{AgentId, MaintenanceOptions, MemoryStore, MemoryType, RelationKind};

use crate::memory_support::{save, shared, store};
use crate::support::{TestDb, on_both_backends};

fn agent() -> AgentId {
    AgentId::from("main")
}

/// Anchor defect: decay rewrote `updated_at`, so renders churned on every pass.
async fn anchor_defect_decay_never_rewrites_content_timestamps<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let id = save(&store, MemoryType::Fact, "The wiki moved to Notion", shared()).await;
    let before = store.get(&agent(), &id).await.unwrap().unwrap();
    clock.advance_days(40);
    let report = store.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.decayed, 1);
    let after = store.get(&agent(), &id).await.unwrap().unwrap();
    assert!(after.importance < before.importance);
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(after.created_at, before.created_at);
    // 40 days idle, 7 of them grace: 0.6 × 0.97^33.
    let expected = 0.6 * 0.97f64.powf(33.0);
    assert!((f64::from(after.importance) - expected).abs() < 1e-4, "{} vs {expected}", after.importance);
}

async fn decay_does_not_depend_on_how_often_it_runs<D: TestDb>(db: D) {
    let (often, often_clock) = store(&db).await;
    // A database of its own: the same content in one database would be one memory.
    let other = D::new().await;
    let (once, once_clock) = store(&other).await;
    let a = save(&often, MemoryType::Goal, "Reach 99.9% uptime", shared()).await;
    let b = save(&once, MemoryType::Goal, "Reach 99.9% uptime", shared()).await;
    for _ in 0..6 {
        often_clock.advance_days(5);
        often.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    }
    once_clock.advance_days(30);
    once.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    let a = often.get(&agent(), &a).await.unwrap().unwrap().importance;
    let b = once.get(&agent(), &b).await.unwrap().unwrap().importance;
    assert!((a - b).abs() < 1e-5, "six passes {a} vs one pass {b}");
}

async fn recently_recalled_and_identity_memories_do_not_decay<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let identity = save(&store, MemoryType::Identity, "I am Spacebot, the team's assistant", shared()).await;
    let used = save(&store, MemoryType::Fact, "Deploys need two approvals", shared()).await;
    clock.advance_days(20);
    store
        .recall(spacebot_core::RecallQuery::new("main", "deploy approvals").with_kinds([MemoryType::Fact]))
        .await
        .unwrap();
    clock.advance_days(3);
    store.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(store.get(&agent(), &identity).await.unwrap().unwrap().importance, 1.0);
    assert_eq!(
        store.get(&agent(), &used).await.unwrap().unwrap().importance,
        0.6,
        "recalled 3 days ago: in its grace period"
    );
}

async fn prune_deletes_faded_memories_but_never_identities<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let faded = save(&store, MemoryType::Observation, "Someone mentioned tabs once", shared()).await;
    let identity = store
        .save(spacebot_core::NewMemory::new(MemoryType::Identity, "Name: Spacebot", shared()).with_importance(0.05))
        .await
        .unwrap()
        .id;
    clock.advance_days(120);
    let report = store.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.pruned, 1);
    assert!(store.get(&agent(), &faded).await.unwrap().is_none());
    assert!(store.get(&agent(), &identity).await.unwrap().is_some());
}

async fn merge_absorbs_duplicates_within_a_type_and_moves_their_edges<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let store = store.with_merge_similarity(2.0);
    let keep = store
        .save(
            spacebot_core::NewMemory::new(MemoryType::Fact, "Redis holds the sessions", shared()).with_importance(0.9),
        )
        .await
        .unwrap()
        .id;
    let dup = save(&store, MemoryType::Fact, "Redis holds the sessions.", shared()).await;
    let other_type = save(&store, MemoryType::Decision, "Redis holds the sessions!", shared()).await;
    let elsewhere = save(&store, MemoryType::Event, "Redis was upgraded to 7.2", shared()).await;
    store
        .link(&agent(), spacebot_core::Edge::new(dup.clone(), elsewhere.clone(), RelationKind::CausedBy, 0.7))
        .await
        .unwrap();

    let report = store.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.merged, 1);
    assert!(store.get(&agent(), &dup).await.unwrap().unwrap().forgotten);
    assert!(
        !store.get(&agent(), &other_type).await.unwrap().unwrap().forgotten,
        "a decision is not merged into a fact"
    );
    let edges = store.edges(&agent(), &keep).await.unwrap();
    assert!(edges.iter().any(|e| e.target == elsewhere && e.kind == RelationKind::CausedBy), "{edges:?}");
    assert!(edges.iter().any(|e| e.target == dup && e.kind == RelationKind::Updates), "{edges:?}");
    assert_eq!(store.get(&agent(), &keep).await.unwrap().unwrap().importance, 0.9);
}

/// The maintenance merge follows the write merge's rules: never two people's words, and the
/// survivor keeps the newer date and both sources.
async fn merge_keeps_speakers_apart_and_the_newer_date_and_both_sources<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let store = store.with_merge_similarity(2.0);
    let save_from = |content: &'static str, source: &'static str, days: i64| {
        spacebot_core::NewMemory::new(MemoryType::Observation, content, shared())
            .with_source(source)
            .with_created_at(clock.now() + chrono::Duration::days(days))
    };
    let ids: Vec<_> = store
        .save_batch(vec![
            save_from("Joanna: Bye Nate!", "s1", 0),
            save_from("Nate: Bye Joanna!", "s1", 0),
            save_from("Nate: bye Joanna", "s7", 60),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|outcome| outcome.id)
        .collect();
    let report = store.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.merged, 1, "only Nate's two goodbyes merge");
    assert!(!store.get(&agent(), &ids[0]).await.unwrap().unwrap().forgotten, "Joanna's stays");
    let mut live = Vec::new();
    for id in &ids[1..] {
        live.extend(store.get(&agent(), id).await.unwrap().filter(|memory| !memory.forgotten));
    }
    let [survivor] = live.as_slice() else { panic!("one of Nate's survives: {live:?}") };
    assert_eq!(survivor.created_at, clock.now() + chrono::Duration::days(60));
    let mut sources: Vec<&str> = survivor.source.as_deref().unwrap_or_default().split("; ").collect();
    sources.sort_unstable();
    assert_eq!(sources, ["s1", "s7"]);
}

async fn linking_connects_related_memories_once<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let a = save(&store, MemoryType::Fact, "Postgres backups are stored in S3 bucket ops-backups", shared()).await;
    let b =
        save(&store, MemoryType::Decision, "Postgres backups stored in S3 bucket ops-backups daily", shared()).await;
    let mut options = MaintenanceOptions::default();
    options.link_similarity = 0.5;
    let report = store.maintain(&agent(), options.clone()).await.unwrap();
    assert!(report.linked >= 1, "{report:?}");
    let edges = store.edges(&agent(), &a).await.unwrap();
    assert!(edges.iter().any(|e| e.kind == RelationKind::RelatedTo && (e.source == b || e.target == b)), "{edges:?}");
    let again = store.maintain(&agent(), options).await.unwrap();
    assert_eq!(again.linked, 0, "already linked memories are not looked at again");
}

async fn a_pass_stops_when_its_time_budget_is_spent<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let id = save(&store, MemoryType::Fact, "Old news", shared()).await;
    clock.advance_days(60);
    let report =
        store.maintain(&agent(), MaintenanceOptions::default().with_time_budget(Duration::ZERO)).await.unwrap();
    assert!(!report.complete);
    assert_eq!(report.decayed, 0);
    assert_eq!(store.get(&agent(), &id).await.unwrap().unwrap().importance, 0.6);
    let report = store.maintain(&agent(), MaintenanceOptions::default()).await.unwrap();
    assert!(report.complete, "{report:?}");
}

async fn invalid_options_are_rejected<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let mut options = MaintenanceOptions::default();
    options.decay_per_day = 1.5;
    assert!(store.maintain(&agent(), options).await.is_err());
}

on_both_backends!(
    anchor_defect_decay_never_rewrites_content_timestamps,
    decay_does_not_depend_on_how_often_it_runs,
    recently_recalled_and_identity_memories_do_not_decay,
    prune_deletes_faded_memories_but_never_identities,
    merge_absorbs_duplicates_within_a_type_and_moves_their_edges,
    merge_keeps_speakers_apart_and_the_newer_date_and_both_sources,
    linking_connects_related_memories_once,
    a_pass_stops_when_its_time_budget_is_spent,
    invalid_options_are_rejected,
);

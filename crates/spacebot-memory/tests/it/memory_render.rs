//! The knowledge render: deterministic, byte-stable, counted, budgeted, scoped.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use spacebot_core::{AgentId, KnowledgeQuery, MaintenanceOptions, MemoryStore, MemoryType, NewMemory, Visibility};

use crate::memory_support::{private, save, shared, store};
use crate::support::{TestDb, on_both_backends};

fn query() -> KnowledgeQuery {
    KnowledgeQuery::new("main", Visibility::conversation("c1", ["alice"]))
}

async fn an_empty_store_renders_nothing<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    assert_eq!(store.render_knowledge(query()).await.unwrap(), "");
}

async fn the_render_lists_the_most_important_memories_per_type_with_counts<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    for (i, importance) in [0.2, 0.9, 0.5].iter().enumerate() {
        store
            .save(
                NewMemory::new(MemoryType::Fact, format!("Fact number {i} about servers"), shared())
                    .with_importance(*importance),
            )
            .await
            .unwrap();
    }
    save(&store, MemoryType::Identity, "I am the ops assistant", shared()).await;
    save(&store, MemoryType::Preference, "Likes short answers", private("alice")).await;
    let render = store.render_knowledge(query().with_per_type(2)).await.unwrap();
    assert_eq!(
        render,
        "## What I remember\n\
         \n### Identity (1 of 1)\n- I am the ops assistant (2025-03-14)\n\
         \n### Preferences (1 of 1)\n- [alice] Likes short answers (2025-03-14)\n\
         \n### Facts (2 of 3)\n- Fact number 1 about servers (2025-03-14)\n- Fact number 2 about servers (2025-03-14)\n"
    );
}

/// Anchor defect: decay rewrote the dates the render shows, so the prompt changed every hour.
async fn anchor_defect_the_render_is_byte_stable_across_reads_and_decay<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    save(&store, MemoryType::Fact, "The API is versioned by date", shared()).await;
    save(&store, MemoryType::Goal, "Ship the mobile app", shared()).await;
    let first = store.render_knowledge(query()).await.unwrap();
    assert_eq!(store.render_knowledge(query()).await.unwrap(), first);
    clock.advance_days(20);
    let report = store.maintain(&AgentId::from("main"), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.decayed, 2);
    assert_eq!(store.render_knowledge(query()).await.unwrap(), first);
}

async fn the_budget_cuts_whole_lines_and_never_leaves_an_empty_section<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    save(&store, MemoryType::Identity, "I am the ops assistant", shared()).await;
    for i in 0..5 {
        save(&store, MemoryType::Fact, &format!("Fact {i}: the build cache lives on the NAS"), shared()).await;
    }
    let full = store.render_knowledge(query()).await.unwrap();
    let budget = full.find("\n- Fact 2").unwrap() + 1;
    let cut = store.render_knowledge(query().with_max_chars(budget)).await.unwrap();
    assert!(cut.len() <= budget, "{} > {budget}", cut.len());
    assert!(cut.contains("### Facts (2 of 5)"), "{cut}");
    let tiny = store.render_knowledge(query().with_max_chars(60)).await.unwrap();
    assert!(!tiny.contains("### Facts"), "{tiny}");
}

/// The render byte for byte, as a snapshot (`tests/it/snapshots/`): every memory type, the
/// counts, importance order with creation time breaking ties, a private memory's person, cut and
/// multi-line entries, and the per-type limit. Prompt caching depends on these bytes; an intended
/// change is accepted by updating the snapshot (see `AGENTS.md`). The `<end>` marker keeps
/// trailing whitespace, which the snapshot comparison would otherwise ignore, in the comparison.
async fn the_render_matches_its_snapshot<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let long = format!("The deploy checklist: {}", "run the migrations, then restart the workers; ".repeat(6));
    let seeds: [(MemoryType, &str, f32); 12] = [
        (MemoryType::Identity, "I am the ops assistant of the infrastructure team", 0.9),
        (MemoryType::Preference, "Prefers answers in bullet points", 0.6),
        (MemoryType::Fact, "The build cache lives on the NAS", 0.5),
        (MemoryType::Fact, "Backups run nightly at 02:00 UTC\nand are kept for thirty days", 0.8),
        (MemoryType::Fact, &long, 0.5),
        (MemoryType::Fact, "The staging cluster has three nodes", 0.2),
        (MemoryType::Decision, "We moved the CI runners to the new rack", 0.7),
        (MemoryType::Goal, "Retire the oldest database server this quarter", 0.7),
        (MemoryType::Event, "The NAS was offline for two hours on Monday", 0.4),
        (MemoryType::Observation, "Disk alerts come in bursts after deploys", 0.3),
        (MemoryType::Todo, "Rotate the backup encryption key", 0.6),
        (MemoryType::Todo, "Write the runbook for the new rack", 0.6),
    ];
    for (kind, content, importance) in seeds {
        store.save(NewMemory::new(kind, content, shared()).with_importance(importance)).await.unwrap();
        clock.advance_days(1);
    }
    store
        .save(NewMemory::new(MemoryType::Preference, "Likes short answers", private("alice")).with_importance(0.9))
        .await
        .unwrap();
    store
        .save(NewMemory::new(MemoryType::Preference, "Bob's private note", private("bob")).with_importance(1.0))
        .await
        .unwrap();
    let render = store.render_knowledge(query().with_per_type(3)).await.unwrap();
    insta::assert_snapshot!("knowledge_render", format!("{render}<end>"));
}

/// A render is kept while nothing it shows changes, and every write that changes what it shows
/// is seen by the next one: a decay that reorders (one fact per type is shown, the most
/// important), a save by another store on the same database, a forget.
async fn a_kept_render_gives_way_to_every_change_it_shows<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let agent = AgentId::from("main");
    let mut top_fact = query();
    top_fact.per_type = 1;
    let fact = |content: &str, importance: f32| {
        NewMemory::new(MemoryType::Fact, content, shared()).with_importance(importance)
    };
    store.save(fact("The office opens at nine", 0.6)).await.unwrap();
    store.save(fact("Parking is behind the building", 0.5)).await.unwrap();
    let first = store.render_knowledge(top_fact.clone()).await.unwrap();
    assert!(first.contains("The office opens at nine") && !first.contains("Parking"), "{first}");
    assert_eq!(store.render_knowledge(top_fact.clone()).await.unwrap(), first);

    // Two months on, the parking fact is recalled (so it is not idle) and the other decays.
    clock.advance_days(60);
    let recalled = store
        .recall(spacebot_core::RecallQuery::new("main", "parking behind the building").with_limit(1))
        .await
        .unwrap();
    assert_eq!(recalled[0].memory.content, "Parking is behind the building");
    store.maintain(&agent, MaintenanceOptions::default()).await.unwrap();
    let decayed = store.render_knowledge(top_fact.clone()).await.unwrap();
    assert!(decayed.contains("Parking is behind the building") && !decayed.contains("opens at nine"), "{decayed}");

    let other = db.memory(std::sync::Arc::new(spacebot_memory::HashingEmbedder::default())).await;
    let urgent = other.save(fact("The fire drill is on Thursday", 0.9)).await.unwrap().id;
    let saved_elsewhere = store.render_knowledge(top_fact.clone()).await.unwrap();
    assert!(saved_elsewhere.contains("The fire drill is on Thursday"), "{saved_elsewhere}");

    assert!(store.forget(&agent, &urgent).await.unwrap());
    assert_eq!(store.render_knowledge(top_fact).await.unwrap(), decayed);
}

on_both_backends!(
    a_kept_render_gives_way_to_every_change_it_shows,
    an_empty_store_renders_nothing,
    the_render_lists_the_most_important_memories_per_type_with_counts,
    anchor_defect_the_render_is_byte_stable_across_reads_and_decay,
    the_budget_cuts_whole_lines_and_never_leaves_an_empty_section,
    the_render_matches_its_snapshot,
);

//! The knowledge render: deterministic, byte-stable, counted, budgeted, scoped.

use spacebot_core::{AgentId, KnowledgeQuery, MaintenanceOptions, MemoryStore, MemoryType, NewMemory, Visibility};

use crate::memory_support::{private, save, shared, store};

fn query() -> KnowledgeQuery {
    KnowledgeQuery::new("main", Visibility::conversation("c1", ["alice"]))
}

#[tokio::test]
async fn an_empty_store_renders_nothing() {
    let (store, _) = store().await;
    assert_eq!(store.render_knowledge(query()).await.unwrap(), "");
}

#[tokio::test]
async fn the_render_lists_the_most_important_memories_per_type_with_counts() {
    let (store, _) = store().await;
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
#[tokio::test]
async fn anchor_defect_the_render_is_byte_stable_across_reads_and_decay() {
    let (store, clock) = store().await;
    save(&store, MemoryType::Fact, "The API is versioned by date", shared()).await;
    save(&store, MemoryType::Goal, "Ship the mobile app", shared()).await;
    let first = store.render_knowledge(query()).await.unwrap();
    assert_eq!(store.render_knowledge(query()).await.unwrap(), first);
    clock.advance_days(20);
    let report = store.maintain(&AgentId::from("main"), MaintenanceOptions::default()).await.unwrap();
    assert_eq!(report.decayed, 2);
    assert_eq!(store.render_knowledge(query()).await.unwrap(), first);
}

#[tokio::test]
async fn the_budget_cuts_whole_lines_and_never_leaves_an_empty_section() {
    let (store, _) = store().await;
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

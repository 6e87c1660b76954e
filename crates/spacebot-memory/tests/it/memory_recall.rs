//! Recall: hybrid lists and fusion, filters, access counts, and scope isolation.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use spacebot_core::{
    AgentId, Edge, KnowledgeQuery, ListQuery, MemoryScope, MemoryStore, MemoryType, RecallQuery, RelationKind,
    Visibility,
};

use crate::memory_support::{contents, private, recall, save, shared, store};
use crate::support::{TestDb, on_both_backends};

async fn hybrid_recall_reports_the_rank_of_each_list<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    save(&store, MemoryType::Fact, "The deploy pipeline runs on Buildkite", shared()).await;
    save(&store, MemoryType::Fact, "Lunch is at noon on Thursdays", shared()).await;
    let hits = recall(&store, "which CI runs the deploy pipeline", Visibility::Shared).await;
    assert_eq!(hits[0].memory.content, "The deploy pipeline runs on Buildkite");
    assert_eq!(hits[0].text_rank, Some(1));
    assert_eq!(hits[0].vector_rank, Some(1));
    // First in both: the words' full weight (1) and the vectors' (0.5), times 1.5 in the rerank
    // for what it says (four words of its own, half a statement's eight).
    assert!((hits[0].score - 1.5 * 1.5).abs() < 1e-6, "{}", hits[0].score);
}

async fn the_graph_walk_brings_in_connected_memories<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let agent = AgentId::from("main");
    let outage = save(&store, MemoryType::Event, "Database outage on March 3rd", shared()).await;
    // Enough direct hits that the cause is not one of the walk's seeds.
    for day in 4..10 {
        save(&store, MemoryType::Event, &format!("Database outage drill on March {day}th"), shared()).await;
    }
    let cause = save(&store, MemoryType::Observation, "A migration locked the users table", shared()).await;
    store.link(&agent, Edge::new(outage, cause, RelationKind::CausedBy, 1.0)).await.unwrap();
    let hits = recall(&store, "database outage on March 3rd", Visibility::Shared).await;
    let cause_hit = hits.iter().find(|hit| hit.memory.content.starts_with("A migration")).expect("reached by the walk");
    assert_eq!(cause_hit.graph_rank, Some(1));
    assert_eq!(cause_hit.text_rank, None);
}

async fn type_and_time_filters_apply_inside_the_query<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    save(&store, MemoryType::Fact, "Grafana dashboards live in the ops repo", shared()).await;
    let start = clock.now();
    clock.advance_days(2);
    save(&store, MemoryType::Decision, "Grafana replaces the old dashboards", shared()).await;
    let decisions = store
        .recall(
            RecallQuery::new("main", "grafana dashboards")
                .with_kinds([MemoryType::Decision])
                .without_access_recording(),
        )
        .await
        .unwrap();
    assert_eq!(contents(&decisions), vec!["Grafana replaces the old dashboards"]);
    let early = store
        .recall(
            RecallQuery::new("main", "grafana dashboards")
                .with_period(None, Some(start + chrono::Duration::days(1)))
                .without_access_recording(),
        )
        .await
        .unwrap();
    assert_eq!(contents(&early), vec!["Grafana dashboards live in the ops repo"]);
}

async fn recall_counts_accesses_unless_told_not_to<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let agent = AgentId::from("main");
    let id = save(&store, MemoryType::Fact, "The VPN gateway is vpn.example.org", shared()).await;
    recall(&store, "VPN gateway", Visibility::Shared).await;
    assert_eq!(store.get(&agent, &id).await.unwrap().unwrap().access_count, 0);
    clock.advance_days(1);
    let hits = store.recall(RecallQuery::new("main", "VPN gateway")).await.unwrap();
    assert_eq!(hits[0].memory.access_count, 1);
    let stored = store.get(&agent, &id).await.unwrap().unwrap();
    assert_eq!(stored.access_count, 1);
    assert_eq!(stored.accessed_at, clock.now());
    assert!(stored.updated_at < stored.accessed_at, "an access is not an update");
}

async fn recall_rejects_an_empty_query<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    assert!(store.recall(RecallQuery::new("main", "  ")).await.is_err());
}

/// Two users in one group conversation each see their own private memories and the shared ones;
/// a third person's private memories never appear, whatever the query, the list or the render.
async fn scope_isolation_between_users_in_one_group_conversation<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    save(&store, MemoryType::Preference, "Alice's favourite coffee is a flat white", private("discord:alice")).await;
    save(&store, MemoryType::Preference, "Bob's favourite coffee is an espresso", private("discord:bob")).await;
    let carol =
        save(&store, MemoryType::Preference, "Carol's favourite coffee is a mocha", private("discord:carol")).await;
    save(&store, MemoryType::Fact, "The team coffee machine is on floor 2", shared()).await;
    let agent = AgentId::from("main");
    let other = save(&store, MemoryType::Fact, "Coffee beans are ordered monthly", shared()).await;
    // An edge into Carol's memory must not let the walk carry it into the group.
    store.link(&agent, Edge::new(other, carol, RelationKind::RelatedTo, 1.0)).await.unwrap();

    let group = Visibility::conversation("discord:general", ["discord:alice", "discord:bob"]);
    let hits = recall(&store, "favourite coffee mocha espresso flat white", group.clone()).await;
    let seen = contents(&hits);
    assert!(seen.contains(&"Alice's favourite coffee is a flat white"), "{seen:?}");
    assert!(seen.contains(&"Bob's favourite coffee is an espresso"), "{seen:?}");
    assert!(seen.contains(&"The team coffee machine is on floor 2"), "{seen:?}");
    assert!(!seen.iter().any(|content| content.contains("Carol")), "Carol's private memory leaked: {seen:?}");

    let listed = store.list(ListQuery::new("main").with_visibility(group.clone())).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert!(!listed.iter().any(|memory| memory.content.contains("Carol")));
    let render = store.render_knowledge(KnowledgeQuery::new("main", group)).await.unwrap();
    assert!(render.contains("flat white") && render.contains("espresso"), "{render}");
    assert!(!render.contains("Carol"), "{render}");

    let alice_alone =
        recall(&store, "favourite coffee espresso", Visibility::conversation("discord:dm-a", ["discord:alice"])).await;
    assert!(!contents(&alice_alone).iter().any(|content| content.contains("Bob")));
    let nobody = recall(&store, "favourite coffee", Visibility::Shared).await;
    assert!(nobody.iter().all(|hit| !hit.memory.scope.private), "{:?}", contents(&nobody));
    let operator = recall(&store, "favourite coffee", Visibility::Operator).await;
    assert!(contents(&operator).iter().any(|content| content.contains("Carol")));
}

async fn a_memory_private_to_a_conversation_stays_in_it<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    save(
        &store,
        MemoryType::Decision,
        "This channel uses British spelling",
        MemoryScope::private_to_conversation("main", "slack:C1"),
    )
    .await;
    let inside = recall(&store, "British spelling", Visibility::conversation("slack:C1", Vec::<String>::new())).await;
    assert_eq!(inside.len(), 1);
    let outside = recall(&store, "British spelling", Visibility::conversation("slack:C2", Vec::<String>::new())).await;
    assert!(outside.is_empty());
}

on_both_backends!(
    hybrid_recall_reports_the_rank_of_each_list,
    the_graph_walk_brings_in_connected_memories,
    type_and_time_filters_apply_inside_the_query,
    recall_counts_accesses_unless_told_not_to,
    recall_rejects_an_empty_query,
    scope_isolation_between_users_in_one_group_conversation,
    a_memory_private_to_a_conversation_stays_in_it,
);

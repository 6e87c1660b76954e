//! The model and writes: defaults, idempotency, write-time merges, edges, identities, validation.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use spacebot_core::{
    AgentId, Edge, ListQuery, MemoryStore, MemoryType, NewEdge, NewMemory, RelationKind, SaveStatus, Visibility,
};

use crate::memory_support::{contents, private, recall, save, shared, store};
use crate::support::{TestDb, on_both_backends};

async fn a_new_memory_has_its_type_default_and_equal_timestamps<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let id = save(&store, MemoryType::Decision, "We ship on Fridays", shared().with_conversation("c1")).await;
    let memory = store.get(&AgentId::from("main"), &id).await.unwrap().unwrap();
    assert_eq!(memory.kind, MemoryType::Decision);
    assert_eq!(memory.importance, 0.8);
    assert_eq!(memory.access_count, 0);
    assert!(!memory.forgotten);
    assert_eq!(memory.created_at, clock.now());
    assert_eq!(memory.updated_at, memory.created_at);
    assert_eq!(memory.accessed_at, memory.created_at);
    assert_eq!(memory.scope.conversation.as_ref().map(|c| c.as_str()), Some("c1"));
}

async fn saving_the_same_content_twice_is_idempotent<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let first = store.save(NewMemory::new(MemoryType::Fact, "The office is in Lyon", shared())).await.unwrap();
    let again = store.save(NewMemory::new(MemoryType::Fact, "The  office is in Lyon\n", shared())).await.unwrap();
    assert_eq!(first.status, SaveStatus::Created);
    assert_eq!(again.status, SaveStatus::Unchanged);
    assert_eq!(again.id, first.id);
    assert_eq!(store.list(ListQuery::new("main")).await.unwrap().len(), 1);
}

async fn a_near_duplicate_of_the_same_type_merges_and_keeps_the_higher_importance<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let first = save(&store, MemoryType::Preference, "Alice prefers green tea in the morning", shared()).await;
    let merged = store
        .save(
            NewMemory::new(MemoryType::Preference, "In the morning Alice prefers green tea.", shared())
                .with_importance(0.95),
        )
        .await
        .unwrap();
    assert_eq!(merged.status, SaveStatus::Merged);
    assert_eq!(merged.id, first);
    let memory = store.get(&AgentId::from("main"), &first).await.unwrap().unwrap();
    assert_eq!(memory.importance, 0.95);
    assert_eq!(memory.content, "Alice prefers green tea in the morning", "the existing text is kept");
}

/// A batch is inserted after its duplicates are resolved: a near-duplicate later in the same
/// batch merges into the row the batch creates, raising its importance before it is written.
async fn a_near_duplicate_within_one_batch_merges_into_the_memory_the_batch_creates<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let outcomes = store
        .save_batch(vec![
            NewMemory::new(MemoryType::Preference, "Alice prefers green tea in the morning", shared())
                .with_importance(0.5),
            NewMemory::new(MemoryType::Fact, "The office closes at six", shared()),
            NewMemory::new(MemoryType::Preference, "In the morning Alice prefers green tea.", shared())
                .with_importance(0.9),
        ])
        .await
        .unwrap();
    let statuses: Vec<SaveStatus> = outcomes.iter().map(|outcome| outcome.status).collect();
    assert_eq!(statuses, vec![SaveStatus::Created, SaveStatus::Created, SaveStatus::Merged]);
    assert_eq!(outcomes[2].id, outcomes[0].id);
    let memory = store.get(&AgentId::from("main"), &outcomes[0].id).await.unwrap().unwrap();
    assert_eq!(memory.importance, 0.9, "the merge raised the importance of the row written");
    assert_eq!(memory.content, "Alice prefers green tea in the morning");
    let hits = recall(&store, "green tea morning", Visibility::Shared).await;
    let found = contents(&hits);
    assert_eq!(found.iter().filter(|content| content.contains("green tea")).count(), 1, "one memory: {found:?}");
    assert_eq!(found[0], "Alice prefers green tea in the morning");
    assert_eq!(hits[0].vector_rank, Some(1), "its vector was stored under the row's sequence number");
}

/// Anchor defect: maintenance merged memories of different types (a preference into a fact).
async fn anchor_defect_near_duplicates_of_different_types_or_scopes_never_merge<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let fact = save(&store, MemoryType::Fact, "Alice prefers green tea in the morning", shared()).await;
    let preference = store
        .save(NewMemory::new(MemoryType::Preference, "Alice prefers green tea in the morning.", shared()))
        .await
        .unwrap();
    assert_eq!(preference.status, SaveStatus::Created);
    assert_ne!(preference.id, fact);
    let private_copy = store
        .save(NewMemory::new(MemoryType::Fact, "Alice prefers green tea in the morning!", private("alice")))
        .await
        .unwrap();
    assert_eq!(private_copy.status, SaveStatus::Created, "a private memory is not merged into a shared one");
    let same_text_private = store
        .save(NewMemory::new(MemoryType::Fact, "Alice prefers green tea in the morning", private("bob")))
        .await
        .unwrap();
    assert_eq!(same_text_private.status, SaveStatus::Created, "identical text in another scope is its own memory");
}

/// Found from outside: "Nate: Bye Joanna!" merged into "Joanna: Bye Nate!" (the same words,
/// cosine 1.0), so recall lost who said it.
async fn near_duplicates_said_by_different_people_never_merge<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let outcomes = store
        .save_batch(vec![
            NewMemory::new(MemoryType::Observation, "Joanna: Bye Nate!", shared()),
            NewMemory::new(MemoryType::Observation, "Nate: Bye Joanna!", shared()),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[1].status, SaveStatus::Created, "in one batch");
    let later = store.save(NewMemory::new(MemoryType::Observation, "Nate: Joanna, bye!", shared())).await.unwrap();
    assert_eq!(later.status, SaveStatus::Merged, "the same speaker's near-duplicate still merges");
    assert_eq!(later.id, outcomes[1].id);
    let joanna = store.save(NewMemory::new(MemoryType::Observation, "Joanna: Nate, bye!", shared())).await.unwrap();
    assert_eq!(joanna.id, outcomes[0].id, "and merges into its own speaker's memory");
}

/// Alike words about another name or number are another fact.
async fn near_duplicates_about_other_names_or_numbers_never_merge<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let lena = save(&store, MemoryType::Fact, "Lena asked me to paint the sign over the door", shared()).await;
    for other in ["Theo asked me to paint the sign over the door", "Lena asked me to paint the sign over the door 2"] {
        let outcome = store.save(NewMemory::new(MemoryType::Fact, other, shared())).await.unwrap();
        assert_eq!(outcome.status, SaveStatus::Created, "{other}");
        assert_ne!(outcome.id, lena);
    }
}

/// Found from outside: a later mention of an event merged into the earlier one and lost its
/// date. A merge keeps the newer date and both sources.
async fn a_merge_keeps_the_newer_date_and_both_sources<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let agent = AgentId::from("main");
    let first = store
        .save(NewMemory::new(MemoryType::Event, "Nate: we adopted a beagle puppy", shared()).with_source("chat#1"))
        .await
        .unwrap();
    let said = clock.now() + chrono::Duration::days(30);
    let again = store
        .save(
            NewMemory::new(MemoryType::Event, "Nate: We adopted a beagle puppy!", shared())
                .with_source("chat#9")
                .with_created_at(said),
        )
        .await
        .unwrap();
    assert_eq!((again.status, &again.id), (SaveStatus::Merged, &first.id));
    let memory = store.get(&agent, &first.id).await.unwrap().unwrap();
    assert_eq!(memory.created_at, said, "the newer date");
    assert_eq!(memory.source.as_deref(), Some("chat#1; chat#9"));
    // An older mention merged later keeps the newer date.
    store
        .save(
            NewMemory::new(MemoryType::Event, "Nate: we adopted a beagle puppy.", shared())
                .with_source("chat#0")
                .with_created_at(said - chrono::Duration::days(90)),
        )
        .await
        .unwrap();
    let memory = store.get(&agent, &first.id).await.unwrap().unwrap();
    assert_eq!(memory.created_at, said);
    assert_eq!(memory.source.as_deref(), Some("chat#1; chat#9; chat#0"));
}

/// An import of an old conversation dates each memory when it was said.
async fn a_memory_can_be_dated_when_it_was_said<D: TestDb>(db: D) {
    let (store, clock) = store(&db).await;
    let said = clock.now() - chrono::Duration::days(400);
    let outcome = store
        .save(NewMemory::new(MemoryType::Event, "Nate: I ran my first marathon", shared()).with_created_at(said))
        .await
        .unwrap();
    let memory = store.get(&AgentId::from("main"), &outcome.id).await.unwrap().unwrap();
    assert_eq!(memory.created_at, said);
    assert_eq!(memory.updated_at, clock.now());
}

async fn edges_are_created_on_save_and_unique_per_source_target_and_kind<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let agent = AgentId::from("main");
    let old = save(&store, MemoryType::Fact, "The standup is at 9:00", shared()).await;
    let new = store
        .save(
            NewMemory::new(MemoryType::Fact, "The standup moved to 10:30 from next week", shared())
                .with_edge(NewEdge::new(old.clone(), RelationKind::Updates))
                .with_edge(NewEdge::new("no-such-memory", RelationKind::Contradicts)),
        )
        .await
        .unwrap()
        .id;
    assert_eq!(
        store.edges(&agent, &new).await.unwrap(),
        vec![Edge::new(new.clone(), old.clone(), RelationKind::Updates, 1.0)]
    );
    store.link(&agent, Edge::new(new.clone(), old.clone(), RelationKind::Updates, 0.4)).await.unwrap();
    store.link(&agent, Edge::new(new.clone(), old.clone(), RelationKind::Contradicts, 0.9)).await.unwrap();
    let edges = store.edges(&agent, &old).await.unwrap();
    assert_eq!(edges.len(), 2, "{edges:?}");
    assert!(
        edges.contains(&Edge::new(new.clone(), old.clone(), RelationKind::Updates, 0.4)),
        "weight updated in place"
    );
    assert!(store.link(&agent, Edge::new(new.clone(), new.clone(), RelationKind::RelatedTo, 1.0)).await.is_err());
    assert!(store.link(&agent, Edge::new(new, "missing", RelationKind::RelatedTo, 1.0)).await.is_err());
}

async fn invalid_saves_are_rejected_with_a_reason<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let empty = store.save(NewMemory::new(MemoryType::Fact, "  \n", shared())).await.unwrap_err();
    assert!(empty.to_string().contains("empty"), "{empty}");
    let long = store.save(NewMemory::new(MemoryType::Fact, "x".repeat(50_001), shared())).await.unwrap_err();
    assert!(long.to_string().contains("50000"), "{long}");
    let mut nobody = shared();
    nobody.private = true;
    let nobody = store.save(NewMemory::new(MemoryType::Fact, "secret", nobody)).await.unwrap_err();
    assert!(nobody.to_string().contains("private"), "{nobody}");
    assert!(!nobody.is_transient());
}

async fn forgetting_is_soft_and_happens_once<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let agent = AgentId::from("main");
    let id = save(&store, MemoryType::Todo, "Renew the TLS certificate", shared()).await;
    assert!(store.forget(&agent, &id).await.unwrap());
    assert!(!store.forget(&agent, &id).await.unwrap(), "a second forget finds nothing live");
    assert!(store.get(&agent, &id).await.unwrap().unwrap().forgotten, "still readable by id");
    assert!(recall(&store, "TLS certificate", Visibility::Operator).await.is_empty());
    assert!(store.list(ListQuery::new("main")).await.unwrap().is_empty());
    assert_eq!(store.list(ListQuery::new("main").including_forgotten()).await.unwrap().len(), 1);
    let again = store.save(NewMemory::new(MemoryType::Todo, "Renew the TLS certificate", shared())).await.unwrap();
    assert_eq!(again.status, SaveStatus::Created, "forgotten content can be learned again");
}

async fn identity_anchors_map_several_platform_ids_to_one_person<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let agent = AgentId::from("main");
    let before = save(&store, MemoryType::Preference, "Prefers replies in French", private("discord:42")).await;
    store.link_identity(&agent, "discord:42", "alice").await.unwrap();
    store.link_identity(&agent, "slack:U7", "alice").await.unwrap();
    let after = save(&store, MemoryType::Fact, "Is allergic to peanuts", private("slack:U7")).await;
    assert_eq!(store.get(&agent, &before).await.unwrap().unwrap().scope.human.as_deref(), Some("alice"));
    assert_eq!(store.get(&agent, &after).await.unwrap().unwrap().scope.human.as_deref(), Some("alice"));

    let on_slack = recall(&store, "French replies peanuts", Visibility::conversation("slack:C1", ["slack:U7"])).await;
    assert_eq!(
        on_slack.len(),
        2,
        "both memories follow Alice to Slack: {:?}",
        crate::memory_support::contents(&on_slack)
    );
    let someone_else =
        recall(&store, "French replies peanuts", Visibility::conversation("slack:C1", ["slack:U8"])).await;
    assert!(someone_else.is_empty());
}

async fn a_batch_is_saved_with_one_embedding_call_and_dedupes_within_itself<D: TestDb>(db: D) {
    let (store, _) = store(&db).await;
    let batch = vec![
        NewMemory::new(MemoryType::Fact, "Servers run Debian", shared()),
        NewMemory::new(MemoryType::Fact, "Servers run Debian", shared()),
        NewMemory::new(MemoryType::Goal, "Cut the cloud bill by a third", shared()),
    ];
    let outcomes = store.save_batch(batch).await.unwrap();
    let statuses: Vec<SaveStatus> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses, vec![SaveStatus::Created, SaveStatus::Unchanged, SaveStatus::Created]);
    assert_eq!(outcomes[0].id, outcomes[1].id);
    assert_eq!(store.vector_count(), 2);
}

on_both_backends!(
    a_new_memory_has_its_type_default_and_equal_timestamps,
    saving_the_same_content_twice_is_idempotent,
    a_near_duplicate_of_the_same_type_merges_and_keeps_the_higher_importance,
    a_near_duplicate_within_one_batch_merges_into_the_memory_the_batch_creates,
    anchor_defect_near_duplicates_of_different_types_or_scopes_never_merge,
    near_duplicates_said_by_different_people_never_merge,
    near_duplicates_about_other_names_or_numbers_never_merge,
    a_merge_keeps_the_newer_date_and_both_sources,
    a_memory_can_be_dated_when_it_was_said,
    edges_are_created_on_save_and_unique_per_source_target_and_kind,
    invalid_saves_are_rejected_with_a_reason,
    forgetting_is_soft_and_happens_once,
    identity_anchors_map_several_platform_ids_to_one_person,
    a_batch_is_saved_with_one_embedding_call_and_dedupes_within_itself,
);

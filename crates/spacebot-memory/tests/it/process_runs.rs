//! Process runs: recorded at start, ended once, and the unfinished ones found again after the
//! database is reopened; what a run's conversation is owed kept until told, and runs found by the
//! message that started them (on SQLite, PostgreSQL and the in-memory log alike).

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use spacebot_core::{
    AgentId, ConversationId, InboundMessage, Owed, ProcessId, ProcessKind, ProcessRun, ProcessRuns, Sender,
    TerminalState,
};

use crate::support::{TestDb, on_both_backends};

on_both_backends!(
    runs_end_once_and_unfinished_ones_survive_a_reopen,
    outcomes_are_kept_until_told_and_runs_found_by_their_message
);

fn run(id: &str, kind: ProcessKind, origin: Option<InboundMessage>) -> ProcessRun {
    ProcessRun::new(
        ProcessId::new(id),
        AgentId::new("main"),
        ConversationId::new("c"),
        kind,
        format!("task {id}"),
        origin,
    )
}

async fn runs_end_once_and_unfinished_ones_survive_a_reopen<D: TestDb>(db: D) {
    let origin = InboundMessage::text("webhook", "c", Sender::new("ivan"), "summarise it").with_agent("main");
    {
        let store = db.open().await;
        store.started(&run("w1", ProcessKind::Worker, Some(origin.clone()))).await.unwrap();
        store.started(&run("b1", ProcessKind::Branch, None)).await.unwrap();
        store.started(&run("done", ProcessKind::Worker, None)).await.unwrap();
        // Recording a start twice changes nothing.
        store.started(&run("w1", ProcessKind::Worker, None)).await.unwrap();
        assert!(store.ended(&ProcessId::new("done"), TerminalState::Done, None).await.unwrap());
        assert!(
            !store.ended(&ProcessId::new("done"), TerminalState::Failed, None).await.unwrap(),
            "an end is recorded once"
        );
        assert!(!store.ended(&ProcessId::new("unknown"), TerminalState::Failed, None).await.unwrap());
    }
    let store = db.open().await;
    let unfinished = store.unfinished().await.unwrap();
    let ids: Vec<_> = unfinished.iter().map(|r| r.process.as_str().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"w1".to_owned()) && ids.contains(&"b1".to_owned()), "{ids:?}");
    let worker = unfinished.iter().find(|r| r.process.as_str() == "w1").unwrap();
    assert_eq!((worker.kind, worker.description.as_str()), (ProcessKind::Worker, "task w1"));
    assert_eq!(worker.origin.as_ref().map(|m| m.id.clone()), Some(origin.id.clone()), "the origin survives");
    assert!(store.ended(&ProcessId::new("w1"), TerminalState::Failed, None).await.unwrap());
    assert_eq!(store.unfinished().await.unwrap().len(), 1);
}

/// What a run's conversation is owed is kept with its end until told, and runs are found by the
/// message that started them; the same on any store.
async fn outcomes_hold(store: &dyn ProcessRuns) {
    let asked = InboundMessage::text("webhook", "c", Sender::new("ivan"), "count them").with_agent("main");
    let other = InboundMessage::text("webhook", "c", Sender::new("ivan"), "something else").with_agent("main");
    store.started(&run("r1", ProcessKind::Worker, Some(asked.clone()))).await.expect("the store answers");
    store.started(&run("r2", ProcessKind::Branch, Some(asked.clone()))).await.expect("the store answers");
    store.started(&run("r3", ProcessKind::Worker, Some(other.clone()))).await.expect("the store answers");
    store.started(&run("r4", ProcessKind::Worker, Some(other.clone()))).await.expect("the store answers");

    let result = Owed::Result("3 files".to_owned());
    assert!(store.ended(&ProcessId::new("r1"), TerminalState::Done, Some(&result)).await.expect("the store answers"));
    let notice = Owed::Notice("stopped by a shutdown".to_owned());
    assert!(
        store.ended(&ProcessId::new("r3"), TerminalState::Cancelled, Some(&notice)).await.expect("the store answers")
    );
    assert!(store.ended(&ProcessId::new("r4"), TerminalState::Cancelled, None).await.expect("the store answers"));
    // A later end (the registration's, after an early record) changes nothing.
    assert!(!store.ended(&ProcessId::new("r1"), TerminalState::Cancelled, None).await.expect("the store answers"));

    let owed = store.owed().await.expect("the store answers");
    let owed: Vec<_> = owed.iter().map(|r| (r.run.process.as_str(), r.state, r.owed.clone())).collect();
    assert_eq!(
        owed,
        vec![
            ("r1", Some(TerminalState::Done), Some(result.clone())),
            ("r3", Some(TerminalState::Cancelled), Some(notice.clone()))
        ]
    );
    let here = store.owed_in(&AgentId::new("main"), &ConversationId::new("c")).await.expect("the store answers");
    assert_eq!(here.len(), 2);
    assert!(
        store.owed_in(&AgentId::new("other"), &ConversationId::new("c")).await.expect("the store answers").is_empty()
    );

    store.told(&[ProcessId::new("r1"), ProcessId::new("unknown")]).await.expect("the store answers");
    let owed = store.owed().await.expect("the store answers");
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].run.process.as_str(), "r3");

    let found =
        store.started_for(&AgentId::new("main"), std::slice::from_ref(&asked.id)).await.expect("the store answers");
    let found: Vec<_> =
        found.iter().map(|r| (r.run.process.as_str(), r.state, r.result.as_deref(), r.owed.is_some())).collect();
    assert_eq!(
        found,
        vec![("r1", Some(TerminalState::Done), Some("3 files"), false), ("r2", None, None, false)],
        "told results keep their text"
    );
    assert!(
        store
            .started_for(&AgentId::new("other"), std::slice::from_ref(&asked.id))
            .await
            .expect("the store answers")
            .is_empty()
    );
    assert_eq!(
        store.started_for(&AgentId::new("main"), &[asked.id, other.id]).await.expect("the store answers").len(),
        4
    );
}

async fn outcomes_are_kept_until_told_and_runs_found_by_their_message<D: TestDb>(db: D) {
    {
        let store = db.open().await;
        outcomes_hold(&store).await;
    }
    // What is still owed survives a reopen (a restart).
    let store = db.open().await;
    let owed = store.owed().await.unwrap();
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].owed, Some(Owed::Notice("stopped by a shutdown".to_owned())));
    assert_eq!(owed[0].run.origin.as_ref().map(|m| m.content.text().to_owned()), Some("something else".to_owned()));
}

#[tokio::test]
async fn outcomes_are_kept_until_told_and_runs_found_by_their_message_in_memory() {
    outcomes_hold(&spacebot_testing::MemoryLog::new()).await;
}

//! Process runs on SQLite: recorded at start, ended once, and the unfinished ones found again
//! after the file is reopened.

use spacebot_core::{
    AgentId, ConversationId, InboundMessage, ProcessId, ProcessKind, ProcessRun, ProcessRuns, Sender, TerminalState,
};
use spacebot_memory::SqliteLog;

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

#[tokio::test]
async fn runs_end_once_and_unfinished_ones_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spacebot.db");
    let origin = InboundMessage::text("webhook", "c", Sender::new("ivan"), "summarise it").with_agent("main");
    {
        let store = SqliteLog::open(&path).await.unwrap();
        store.started(&run("w1", ProcessKind::Worker, Some(origin.clone()))).await.unwrap();
        store.started(&run("b1", ProcessKind::Branch, None)).await.unwrap();
        store.started(&run("done", ProcessKind::Worker, None)).await.unwrap();
        // Recording a start twice changes nothing.
        store.started(&run("w1", ProcessKind::Worker, None)).await.unwrap();
        assert!(store.ended(&ProcessId::new("done"), TerminalState::Done).await.unwrap());
        assert!(!store.ended(&ProcessId::new("done"), TerminalState::Failed).await.unwrap(), "an end is recorded once");
        assert!(!store.ended(&ProcessId::new("unknown"), TerminalState::Failed).await.unwrap());
    }
    let store = SqliteLog::open(&path).await.unwrap();
    let unfinished = store.unfinished().await.unwrap();
    let ids: Vec<_> = unfinished.iter().map(|r| r.process.as_str().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"w1".to_owned()) && ids.contains(&"b1".to_owned()), "{ids:?}");
    let worker = unfinished.iter().find(|r| r.process.as_str() == "w1").unwrap();
    assert_eq!((worker.kind, worker.description.as_str()), (ProcessKind::Worker, "task w1"));
    assert_eq!(worker.origin.as_ref().map(|m| m.id.clone()), Some(origin.id.clone()), "the origin survives");
    assert!(store.ended(&ProcessId::new("w1"), TerminalState::Failed).await.unwrap());
    assert_eq!(store.unfinished().await.unwrap().len(), 1);
}

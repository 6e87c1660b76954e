//! What a restarted daemon finds: unanswered messages to process again, and the history; on
//! SQLite and PostgreSQL.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use spacebot_core::ConversationLog;

use crate::support::{LogStore, TestDb, agent, ids, inbound, on_both_backends, reply_to, texts};

on_both_backends!(
    unanswered_messages_of_every_agent_come_back_after_a_restart,
    history_survives_a_restart,
    an_unreadable_inbound_row_does_not_block_recovery,
);

async fn unanswered_messages_of_every_agent_come_back_after_a_restart<D: TestDb>(db: D) {
    let answered = inbound("main", "c1", "a-1", "answered");
    let waiting_main = inbound("main", "c1", "a-2", "waiting in main").with_metadata("thread", serde_json::json!(7));
    let skipped = inbound("helper", "c9", "b-1", "skipped");
    let waiting_helper = inbound("helper", "c9", "b-2", "waiting in helper");
    let waiting_main_later = inbound("main", "c2", "a-3", "waiting in another conversation");
    {
        let store = db.open().await;
        for message in [&answered, &waiting_main, &skipped, &waiting_helper, &waiting_main_later] {
            assert!(store.record_inbound(message).await.unwrap());
        }
        store.record_reply(&reply_to(&answered, "done"), std::slice::from_ref(&answered.id)).await.unwrap();
        store.mark_handled(&agent("helper"), std::slice::from_ref(&skipped.id)).await.unwrap();
        // Dropped without `close`, as a crashing process would leave it.
    }

    let store = db.open().await;
    let recovered = store.unhandled().await.unwrap();
    assert_eq!(ids(&recovered), ["a-2", "b-2", "a-3"], "oldest first, across agents");
    // The full inbound message comes back, routing data and exact timestamp included.
    assert_eq!(recovered, vec![waiting_main, waiting_helper, waiting_main_later]);

    // Answering them after the restart empties the queue for good.
    for message in &recovered {
        store.record_reply(&reply_to(message, "sorry for the wait"), std::slice::from_ref(&message.id)).await.unwrap();
    }
    store.close().await;
    let store = db.open().await;
    assert!(store.unhandled().await.unwrap().is_empty());
}

async fn history_survives_a_restart<D: TestDb>(db: D) {
    let before = {
        let store = db.open().await;
        for n in 0..5 {
            let message = inbound("main", "c1", &format!("in-{n}"), &format!("q{n}"));
            store.record_inbound(&message).await.unwrap();
            store.record_reply(&reply_to(&message, &format!("a{n}")), std::slice::from_ref(&message.id)).await.unwrap();
        }
        let history = store.history(&agent("main"), &"c1".into(), 100).await.unwrap();
        store.close().await;
        history
    };
    assert_eq!(before.len(), 10);

    let store = db.open().await;
    assert_eq!(store.history(&agent("main"), &"c1".into(), 100).await.unwrap(), before);
    // Recording continues after the old messages, and the old ids are still known.
    assert!(!store.record_inbound(&inbound("main", "c1", "in-0", "q0")).await.unwrap());
    store.record_inbound(&inbound("main", "c1", "in-5", "q5")).await.unwrap();
    let last = store.history(&agent("main"), &"c1".into(), 2).await.unwrap();
    assert_eq!(texts(&last), ["a4", "q5"]);
}

async fn an_unreadable_inbound_row_does_not_block_recovery<D: TestDb>(db: D) {
    let store = db.open().await;
    let before = inbound("main", "c1", "ok-1", "fine");
    let damaged = inbound("main", "c1", "bad-1", "damaged");
    let after = inbound("other", "c2", "ok-2", "also fine");
    for message in [&before, &damaged, &after] {
        store.record_inbound(message).await.unwrap();
    }
    db.execute("UPDATE messages SET inbound_json = '{\"id\": 42, \"trailing' WHERE id = 'bad-1'").await;

    assert_eq!(store.unhandled().await.unwrap(), vec![before.clone(), after.clone()]);
    // It was set aside, not retried on every start, and it stays visible in the history.
    store.close().await;
    let store = db.open().await;
    assert_eq!(store.unhandled().await.unwrap(), vec![before, after]);
    let history = store.history(&agent("main"), &"c1".into(), 10).await.unwrap();
    assert_eq!(texts(&history), ["fine", "damaged"]);
}

//! The router: one engine task per conversation, in-order delivery, isolation between
//! conversations (liveness invariant 3), and restart after a failed conversation task.

use std::collections::BTreeSet;

use crate::support::{Parts, message};

/// What a person sees when the task handling their message died.
const NOTICE: &str = "⚠️ Something went wrong on my side while answering this; the error was logged.";

#[tokio::test(start_paused = true)]
async fn messages_of_one_conversation_reach_the_engine_in_order() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    let texts: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
    for text in &texts {
        handle.submit(message("chat:c1", text)).await.unwrap();
    }
    parts.adapter.until_delivered("echo: message 49").await;

    assert_eq!(parts.engine.seen_texts("chat:c1"), texts);
    let tasks: BTreeSet<_> = parts.engine.seen().iter().map(|s| s.task).collect();
    assert_eq!(tasks.len(), 1, "one conversation, one engine task");
    assert_eq!(parts.engine.tasks(), 1);
    let expected: Vec<String> = texts.iter().map(|t| format!("echo: {t}")).collect();
    assert_eq!(parts.adapter.delivered_texts(), expected);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn each_conversation_gets_its_own_engine_task() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    for (conversation, text) in [("chat:a", "a1"), ("chat:b", "b1"), ("chat:c", "c1"), ("chat:a", "a2")] {
        handle.submit(message(conversation, text)).await.unwrap();
    }
    parts.engine.until_seen(4).await;

    let task = |text: &str| parts.engine.seen_text(text).task;
    assert_eq!(task("a1"), task("a2"), "a conversation keeps its task");
    let distinct: BTreeSet<_> = [task("a1"), task("b1"), task("c1")].into_iter().collect();
    assert_eq!(distinct.len(), 3);
    assert_eq!(parts.engine.tasks(), 3);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_conversation_does_not_delay_another() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    handle.submit(message("chat:stuck", "hang")).await.unwrap();
    handle.submit(message("chat:stuck", "queued behind the hang")).await.unwrap();
    parts.engine.until_seen_text("hang").await;
    let started = tokio::time::Instant::now();

    for i in 0..5 {
        handle.submit(message("chat:free", &format!("hi {i}"))).await.unwrap();
    }
    parts.adapter.until_delivered("echo: hi 4").await;

    assert_eq!(started.elapsed(), std::time::Duration::ZERO, "the free conversation waited on a timer");
    assert_eq!(parts.engine.seen_texts("chat:stuck"), ["hang"], "turns of one conversation run one at a time");
    assert_eq!(parts.adapter.delivered_texts(), ["echo: hi 0", "echo: hi 1", "echo: hi 2", "echo: hi 3", "echo: hi 4"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicked_conversation_restarts_on_its_next_message_and_spares_the_others() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    handle.submit(message("chat:other", "before")).await.unwrap();
    parts.adapter.until_delivered("echo: before").await;
    handle.submit(message("chat:c1", "boom")).await.unwrap();
    parts.engine.until_seen_text("boom").await;
    // The message it died on is answered with a visible error, and the conversation is restarted
    // at once on what is left of its inbox.
    parts.adapter.until_delivered(NOTICE).await;
    assert_eq!(handle.status().await.unwrap().conversations, 2, "the conversation was not restarted");

    handle.submit(message("chat:c1", "again")).await.unwrap();
    handle.submit(message("chat:other", "after")).await.unwrap();
    parts.adapter.until_delivered("echo: again").await;
    parts.adapter.until_delivered("echo: after").await;

    let boom = parts.engine.seen_text("boom");
    let again = parts.engine.seen_text("again");
    assert_ne!(boom.task, again.task, "the next message runs in a fresh task");
    assert_eq!(parts.engine.seen_text("before").task, parts.engine.seen_text("after").task, "others keep theirs");
    assert_eq!(handle.status().await.unwrap().conversations, 2);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_routed_right_after_a_panic_starts_a_fresh_task() {
    // The router learns of the panic either when it reaps the task or when the inbox of the dead
    // task refuses the next message; this exercises the second path.
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    handle.submit(message("chat:c1", "boom")).await.unwrap();
    parts.engine.until_seen_text("boom").await;
    handle.submit(message("chat:c1", "again")).await.unwrap();

    parts.adapter.until_delivered("echo: again").await;
    assert_eq!(parts.engine.tasks(), 2);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_conversation_whose_task_died_is_still_counted_once() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    handle.submit(message("chat:c1", "boom")).await.unwrap();
    parts.adapter.until_delivered(NOTICE).await;

    assert_eq!(handle.status().await.unwrap().conversations, 1);
    assert_eq!(parts.engine.tasks(), 2, "restarted once");
    runtime.shutdown().await;
}

/// Liveness invariant 2 when an engine task dies mid-message: that message gets a visible error
/// (recorded, and marking it handled), and the messages queued behind it are answered by a fresh
/// task, in order, without waiting for a restart.
#[tokio::test(start_paused = true)]
async fn a_message_queued_behind_a_panicking_turn_is_still_answered() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    let boom = handle.submit(message("chat:c1", "boom")).await.unwrap();
    let queued = handle.submit(message("chat:c1", "queued")).await.unwrap();
    let after = handle.submit(message("chat:c1", "after")).await.unwrap();
    parts.adapter.until_delivered("echo: after").await;
    parts.log.until_handled(&boom).await;

    let texts = parts.adapter.delivered_texts();
    assert!(texts.iter().any(|t| t == NOTICE), "no visible error for the panic: {texts:?}");
    let queued_at = texts.iter().position(|t| t == "echo: queued").expect("queued answered");
    let after_at = texts.iter().position(|t| t == "echo: after").expect("after answered");
    assert!(queued_at < after_at, "order lost: {texts:?}");
    assert!(parts.log.is_handled(&queued) && parts.log.is_handled(&after));
    assert_eq!(parts.engine.tasks(), 2, "one replacement task, not one per message");
    runtime.shutdown().await;
}

/// A task that dies before taking any message is not restarted in a loop: what is queued is
/// answered with a visible error, and the next message starts a fresh task.
#[tokio::test(start_paused = true)]
async fn a_task_that_dies_before_taking_a_message_gets_its_queue_answered() {
    let parts = Parts::new();
    parts.engine.panic_at_start(1);
    let runtime = parts.start().await;
    let handle = runtime.handle();

    let first = handle.submit(message("chat:c1", "first")).await.unwrap();
    parts.log.until_handled(&first).await;
    let texts = parts.adapter.delivered_texts();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0], NOTICE);

    handle.submit(message("chat:c1", "second")).await.unwrap();
    parts.adapter.until_delivered("echo: second").await;
    assert_eq!(parts.engine.tasks(), 2);
    runtime.shutdown().await;
}

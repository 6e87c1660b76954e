//! Eviction of idle conversations: the router asks a conversation idle past the timeout, or the
//! least recently active ones beyond the cap, to end; the engine ends only when nothing is in
//! flight; a message racing the exit is answered by a new task on the same inbox, in order; a
//! conversation with a live process is never asked.

use std::time::Duration;

use spacebot_core::RuntimeSettings;

use crate::support::{Parts, message};

const IDLE: Duration = Duration::from_secs(60);

/// Eviction after `IDLE` only (checked every 15 s), no cap.
fn idle_only() -> RuntimeSettings {
    RuntimeSettings::default().with_idle_timeout(Some(IDLE)).with_max_live(None)
}

async fn live(runtime: &spacebot_core::Runtime) -> usize {
    runtime.handle().status().await.expect("status").conversations
}

#[tokio::test(start_paused = true)]
async fn an_idle_conversation_is_evicted_and_its_next_message_starts_a_new_task() {
    let parts = Parts::new();
    let runtime = parts.start_with(idle_only()).await;
    let handle = runtime.handle();

    handle.submit(message("chat:c1", "hello")).await.unwrap();
    parts.adapter.until_delivered("echo: hello").await;
    tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
    assert_eq!(live(&runtime).await, 1, "not idle long enough yet");
    assert!(parts.engine.evicted().is_empty());

    // Idle past the timeout, and one sweep later at most.
    tokio::time::sleep(Duration::from_secs(1) + IDLE / 4).await;
    parts.engine.until_evicted(1).await;
    tokio::task::yield_now().await;
    assert_eq!(live(&runtime).await, 0, "the evicted conversation is no longer live");
    assert_eq!(parts.engine.live(), 0, "its task ended");

    handle.submit(message("chat:c1", "again")).await.unwrap();
    parts.adapter.until_delivered("echo: again").await;
    assert_eq!(parts.engine.seen_text("hello").task, 0);
    assert_eq!(parts.engine.seen_text("again").task, 1, "a new task took the next message");
    assert_eq!(live(&runtime).await, 1);
    assert_eq!(parts.adapter.delivered_texts(), ["echo: hello", "echo: again"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn activity_keeps_a_conversation_live() {
    let parts = Parts::new();
    let runtime = parts.start_with(idle_only()).await;
    let handle = runtime.handle();

    for i in 0..10 {
        handle.submit(message("chat:c1", &format!("m{i}"))).await.unwrap();
        parts.adapter.until_delivered(&format!("echo: m{i}")).await;
        tokio::time::sleep(IDLE - Duration::from_secs(5)).await;
    }
    assert!(parts.engine.evicted().is_empty(), "never idle for {IDLE:?}");
    assert_eq!(parts.engine.tasks(), 1, "one task all along");
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn eviction_off_keeps_every_conversation() {
    let parts = Parts::new();
    let runtime = parts.start_with(RuntimeSettings::default().with_idle_timeout(None).with_max_live(None)).await;
    let handle = runtime.handle();
    for c in 0..20 {
        handle.submit(message(&format!("chat:c{c}"), "hi")).await.unwrap();
    }
    parts.engine.until_seen(20).await;
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(live(&runtime).await, 20);
    assert!(parts.engine.evicted().is_empty());
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_cap_evicts_the_least_recently_active_conversations_first() {
    let parts = Parts::new();
    let runtime = parts.start_with(RuntimeSettings::default().with_idle_timeout(None).with_max_live(Some(2))).await;
    let handle = runtime.handle();

    for (conversation, text) in [("chat:a", "a1"), ("chat:b", "b1"), ("chat:c", "c1")] {
        handle.submit(message(conversation, text)).await.unwrap();
        parts.adapter.until_delivered(&format!("echo: {text}")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    parts.engine.until_evicted(1).await;
    assert_eq!(parts.engine.evicted(), ["chat:a"], "a third conversation evicts the least recently active");

    // b speaks again, so c is now the least recently active.
    handle.submit(message("chat:b", "b2")).await.unwrap();
    parts.adapter.until_delivered("echo: b2").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.submit(message("chat:d", "d1")).await.unwrap();
    parts.adapter.until_delivered("echo: d1").await;
    parts.engine.until_evicted(2).await;
    assert_eq!(parts.engine.evicted(), ["chat:a", "chat:c"]);
    tokio::task::yield_now().await;
    assert_eq!(live(&runtime).await, 2);

    // The evicted conversation comes back on its next message (and pushes out the oldest).
    handle.submit(message("chat:a", "a2")).await.unwrap();
    parts.adapter.until_delivered("echo: a2").await;
    parts.engine.until_evicted(3).await;
    assert_eq!(parts.engine.evicted(), ["chat:a", "chat:c", "chat:b"]);
    assert_eq!(parts.engine.seen_texts("chat:a"), ["a1", "a2"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_racing_an_eviction_is_answered_in_order() {
    let parts = Parts::new();
    // The task takes a while to end after accepting the request: messages arrive meanwhile.
    parts.engine.exit_delay(Duration::from_secs(5));
    let runtime = parts.start_with(idle_only()).await;
    let handle = runtime.handle();

    handle.submit(message("chat:c1", "first")).await.unwrap();
    parts.adapter.until_delivered("echo: first").await;
    parts.engine.until_evicted(1).await;
    for text in ["raced 1", "raced 2", "raced 3"] {
        handle.submit(message("chat:c1", text)).await.unwrap();
    }
    parts.adapter.until_delivered("echo: raced 3").await;

    assert_eq!(parts.adapter.delivered_texts(), ["echo: first", "echo: raced 1", "echo: raced 2", "echo: raced 3"]);
    assert_eq!(parts.engine.seen_texts("chat:c1"), ["first", "raced 1", "raced 2", "raced 3"]);
    for text in ["raced 1", "raced 2", "raced 3"] {
        assert_eq!(parts.engine.seen_text(text).task, 1, "{text}: a new task on the same inbox");
        assert!(parts.log.is_handled(&parts.engine.seen_text(text).id));
    }
    assert_eq!(live(&runtime).await, 1);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_conversation_with_a_live_process_is_not_evicted() {
    let parts = Parts::new();
    let runtime =
        parts.start_with(RuntimeSettings::default().with_idle_timeout(Some(IDLE)).with_max_live(Some(0))).await;
    let handle = runtime.handle();

    // The engine would accept any request with an empty inbox: only the router keeps it alive.
    handle.submit(message("chat:busy", "work")).await.unwrap();
    parts.adapter.until_delivered("echo: work").await;
    assert_eq!(handle.processes().len(), 1);
    handle.submit(message("chat:quiet", "hi")).await.unwrap();
    parts.adapter.until_delivered("echo: hi").await;
    tokio::time::sleep(IDLE * 10).await;
    assert_eq!(parts.engine.evicted(), ["chat:quiet"], "idle, over the cap, but a process is live");
    assert_eq!(live(&runtime).await, 1);

    handle.submit(message("chat:busy", "done")).await.unwrap();
    parts.adapter.until_delivered("echo: done").await;
    assert!(handle.processes().is_empty());
    parts.engine.until_evicted(2).await;
    assert_eq!(parts.engine.evicted(), ["chat:quiet", "chat:busy"]);
    runtime.shutdown().await;
}

/// On real threads, without timers: a cap of 0 asks every other conversation to end whenever a
/// new one starts, so messages keep arriving at conversations whose task is deciding to end,
/// ending, or gone. Every message is answered exactly once, in order, and none gets the error
/// notice a task that gave up on its queue would leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_racing_evictions_on_real_threads_are_each_answered_once_in_order() {
    const CONVERSATIONS: usize = 8;
    const ROUNDS: usize = 200;
    let parts = Parts::new();
    let runtime = parts.start_with(RuntimeSettings::default().with_idle_timeout(None).with_max_live(Some(0))).await;
    let handle = runtime.handle();

    for round in 0..ROUNDS {
        for c in 0..CONVERSATIONS {
            handle.submit(message(&format!("chat:c{c}"), &format!("{c}-{round}"))).await.unwrap();
            tokio::task::yield_now().await;
        }
        if round == 0 {
            // Once the first conversations have left, every message to one of them starts it
            // anew and asks all the others to end.
            parts.engine.until_evicted(1).await;
        }
    }
    // Every message gets an answer or the error notice; then no notice may be among them.
    parts.adapter.until_delivered_count(CONVERSATIONS * ROUNDS).await;
    tokio::task::yield_now().await;

    let delivered = parts.adapter.delivered_texts();
    let notices = delivered.iter().filter(|text| !text.starts_with("echo: ")).count();
    assert_eq!(notices, 0, "messages that raced an eviction got the error notice");
    assert_eq!(delivered.len(), CONVERSATIONS * ROUNDS, "each message answered once");
    for c in 0..CONVERSATIONS {
        let expected: Vec<String> = (0..ROUNDS).map(|round| format!("{c}-{round}")).collect();
        assert_eq!(parts.engine.seen_texts(&format!("chat:c{c}")), expected, "conversation {c} in order");
        let answers: Vec<&String> = delivered.iter().filter(|text| text.starts_with(&format!("echo: {c}-"))).collect();
        let expected: Vec<String> = expected.iter().map(|text| format!("echo: {text}")).collect();
        assert_eq!(answers, expected.iter().collect::<Vec<_>>(), "conversation {c} answered in order");
    }
    assert!(!parts.engine.evicted().is_empty(), "the cap evicted conversations while messages arrived");
    runtime.shutdown().await;
}

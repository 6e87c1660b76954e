//! Adapter supervision: restarts with exponential backoff, inbound messages submitted with
//! their adapter key, streams that end are reconnected.

use std::time::Duration;

use spacebot_core::{Runtime, RuntimeSettings};

use crate::support::{EchoEngine, FakeAdapter, MemoryLog, Parts, message};

fn backoff(initial: Duration, max: Duration) -> RuntimeSettings {
    let mut settings = RuntimeSettings::default();
    settings.adapter_backoff = initial;
    settings.adapter_backoff_max = max;
    settings
}

fn gaps(adapter: &FakeAdapter) -> Vec<Duration> {
    adapter.start_times().windows(2).map(|pair| pair[1].duration_since(pair[0])).collect()
}

fn secs(values: &[u64]) -> Vec<Duration> {
    values.iter().copied().map(Duration::from_secs).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_start_is_retried_with_exponential_backoff() {
    let parts = Parts::new();
    parts.adapter.fail_starts(4);
    let runtime = parts.start_with(backoff(Duration::from_secs(1), Duration::from_secs(60))).await;

    parts.adapter.until_connected(1).await;

    assert_eq!(parts.adapter.start_calls(), 5);
    assert_eq!(gaps(&parts.adapter), secs(&[1, 2, 4, 8]));
    parts.adapter.push(message("chat:c1", "finally"));
    parts.adapter.until_delivered("echo: finally").await;
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_restart_backoff_is_capped() {
    let parts = Parts::new();
    parts.adapter.fail_starts(6);
    let runtime = parts.start_with(backoff(Duration::from_secs(1), Duration::from_secs(4))).await;

    parts.adapter.until_connected(1).await;

    assert_eq!(gaps(&parts.adapter), secs(&[1, 2, 4, 4, 4, 4]));
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn inbound_messages_are_submitted_with_the_adapter_key_filled_in() {
    let engine = EchoEngine::new();
    let log = MemoryLog::new();
    let adapter = FakeAdapter::new("chat:ops");
    let runtime = Runtime::builder()
        .engine(engine.clone())
        .log(log.clone())
        .adapter(adapter.clone())
        .agent("main")
        .start()
        .await
        .unwrap();
    adapter.until_connected(1).await;

    // The platform is `chat`; this adapter instance is `chat:ops`, and replies must go through it.
    adapter.push(message("chat:c1", "unkeyed").with_adapter(""));
    adapter.push(message("chat:c1", "keyed").with_adapter("chat:ops"));
    adapter.until_delivered("echo: unkeyed").await;
    adapter.until_delivered("echo: keyed").await;

    assert_eq!(engine.seen_text("unkeyed").adapter, "chat:ops");
    let recorded: Vec<_> = log.inbound().into_iter().map(|m| (m.content.text(), m.adapter, m.agent)).collect();
    assert_eq!(recorded[0].1, "chat:ops", "the log must know which adapter replies: {recorded:?}");
    assert_eq!(recorded[0].2.as_ref().map(|a| a.as_str()), Some("main"));
    assert!(adapter.attempts().iter().all(|a| a.target.adapter == "chat:ops"));
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_is_restarted() {
    let parts = Parts::new();
    let runtime = parts.start_with(backoff(Duration::from_secs(1), Duration::from_secs(60))).await;
    parts.adapter.until_connected(1).await;

    parts.adapter.push(message("chat:c1", "one"));
    parts.adapter.until_delivered("echo: one").await;
    let dropped = tokio::time::Instant::now();
    parts.adapter.disconnect();

    // A connection that carried messages is re-established at once.
    parts.adapter.until_connected(2).await;
    assert_eq!(dropped.elapsed(), Duration::ZERO);
    parts.adapter.push(message("chat:c1", "two"));
    parts.adapter.until_delivered("echo: two").await;

    // One that ended without carrying anything waits for the backoff, so a platform that keeps
    // closing the connection is not hammered.
    parts.adapter.disconnect();
    parts.adapter.until_connected(3).await;
    parts.adapter.disconnect();
    parts.adapter.until_connected(4).await;
    assert_eq!(gaps(&parts.adapter), secs(&[0, 0, 1]));
    parts.adapter.push(message("chat:c1", "three"));
    parts.adapter.until_delivered("echo: three").await;

    assert_eq!(parts.engine.seen_texts("chat:c1"), ["one", "two", "three"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_redelivered_after_a_reconnect_is_processed_once() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    parts.adapter.until_connected(1).await;

    parts.adapter.push(message("chat:c1", "hello").with_id("platform-1"));
    parts.adapter.until_delivered("echo: hello").await;
    parts.adapter.disconnect();
    parts.adapter.until_connected(2).await;
    parts.adapter.push(message("chat:c1", "hello").with_id("platform-1"));
    parts.adapter.push(message("chat:c1", "next"));
    parts.adapter.until_delivered("echo: next").await;

    assert_eq!(parts.engine.seen_texts("chat:c1"), ["hello", "next"]);
    runtime.shutdown().await;
}

/// A message the log could not record is not acknowledged: the runtime drops the stream (which
/// for Slack leaves the envelope unacknowledged), reconnects after a backoff, and the message the
/// platform redelivers is processed.
#[tokio::test(start_paused = true)]
async fn a_message_that_cannot_be_recorded_drops_the_connection_for_redelivery() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    parts.adapter.until_connected(1).await;
    parts.log.fail_records(1);

    let started = tokio::time::Instant::now();
    parts.adapter.push(message("chat:c1", "hello").with_id("platform-1"));
    parts.adapter.until_connected(2).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "reconnected without a backoff");
    assert!(parts.log.inbound().is_empty(), "nothing was recorded");

    parts.adapter.push(message("chat:c1", "hello").with_id("platform-1"));
    parts.adapter.until_delivered("echo: hello").await;
    assert_eq!(parts.engine.seen_texts("chat:c1"), ["hello"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn two_adapters_are_supervised_independently() {
    let parts = Parts::new();
    let broken = FakeAdapter::new("broken");
    broken.fail_starts(usize::MAX);
    let runtime = Runtime::builder()
        .engine(parts.engine.clone())
        .log(parts.log.clone())
        .adapter(broken.clone())
        .adapter(parts.adapter.clone())
        .agent("main")
        .start()
        .await
        .unwrap();

    parts.adapter.until_connected(1).await;
    parts.adapter.push(message("chat:c1", "hello"));
    parts.adapter.until_delivered("echo: hello").await;
    broken.until_start_calls(3).await;
    runtime.shutdown().await;
    assert_eq!(broken.shutdown_calls(), 1);
    assert_eq!(parts.adapter.shutdown_calls(), 1);
}

//! Shutdown (liveness invariant 4): stop accepting, let in-flight turns finish within the grace
//! period, cancel what is left, stop the adapters once, and leave no task running.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use spacebot_core::{Error, RuntimeSettings};

use crate::support::{Parts, SLOW_TURN, message};

const GRACE: Duration = Duration::from_secs(2);

fn settings() -> RuntimeSettings {
    RuntimeSettings::default().with_shutdown_grace(GRACE)
}

/// Shuts `runtime` down, failing the test (instead of hanging it) when that takes far too long.
async fn shut_down(runtime: spacebot_core::Runtime) {
    if tokio::time::timeout(GRACE * 10, runtime.shutdown()).await.is_err() {
        panic!("shutdown did not return within ten grace periods");
    }
}

/// Tasks alive on the test's tokio runtime (the test body itself is not a task).
fn alive_tasks() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn submit_after_shutdown_is_refused() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    let handle = runtime.handle();
    assert!(handle.is_accepting());

    shut_down(runtime).await;

    assert!(!handle.is_accepting());
    let result = handle.submit(message("chat:c1", "too late")).await;
    assert!(matches!(result, Err(Error::ShuttingDown)), "{result:?}");
    assert!(parts.log.inbound().is_empty(), "a refused message was recorded");
}

#[tokio::test(start_paused = true)]
async fn an_idle_runtime_shuts_down_at_once() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    parts.adapter.until_connected(1).await;
    // Conversations that exist but have nothing to do.
    runtime.handle().submit(message("chat:a", "hi")).await.unwrap();
    runtime.handle().submit(message("chat:b", "hi")).await.unwrap();
    parts.adapter.until_delivered("echo: hi").await;
    parts.engine.until_seen(2).await;
    assert_eq!(parts.engine.live(), 2);

    let started = Instant::now();
    shut_down(runtime).await;

    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(parts.engine.live(), 0, "an engine future outlived shutdown");
    assert_eq!(parts.adapter.shutdown_calls(), 1);
    assert!(!parts.adapter.stream_is_open(), "the inbound stream outlived shutdown");
    assert_eq!(alive_tasks(), 0, "a runtime task outlived shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_stuck_turn_is_cancelled_after_the_grace_period() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    let handle = runtime.handle();
    handle.submit(message("chat:stuck", "hang")).await.unwrap();
    handle.submit(message("chat:stuck", "queued")).await.unwrap();
    handle.submit(message("chat:idle", "hi")).await.unwrap();
    parts.engine.until_seen_text("hang").await;
    parts.adapter.until_delivered("echo: hi").await;

    let started = Instant::now();
    shut_down(runtime).await;
    let elapsed = started.elapsed();

    assert!(elapsed >= GRACE, "cancelled after {elapsed:?}, before the {GRACE:?} grace period");
    assert!(elapsed <= GRACE + Duration::from_millis(10), "shutdown took {elapsed:?} with a {GRACE:?} grace");
    assert_eq!(parts.engine.live(), 0, "the stuck engine future outlived shutdown");
    assert_eq!(parts.adapter.shutdown_calls(), 1);
    assert_eq!(alive_tasks(), 0, "a runtime task outlived shutdown");
    // What was not answered stays unhandled, for the next start.
    let unanswered: Vec<_> =
        parts.log.inbound().into_iter().filter(|m| !parts.log.is_handled(&m.id)).map(|m| m.content.text()).collect();
    assert_eq!(unanswered, ["hang", "queued"]);
}

#[tokio::test(start_paused = true)]
async fn a_turn_that_ends_within_the_grace_period_is_delivered_before_the_adapter_stops() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    let id = runtime.handle().submit(message("chat:c1", "slow")).await.unwrap();
    parts.engine.until_seen_text("slow").await;

    let started = Instant::now();
    shut_down(runtime).await;

    assert_eq!(started.elapsed(), SLOW_TURN, "shutdown waits for the turn, and no longer");
    assert_eq!(parts.adapter.sends_after_shutdown(), 0, "the turn's reply went to an adapter already shut down");
    assert_eq!(parts.adapter.delivered_texts(), ["echo: slow"]);
    assert!(parts.log.is_handled(&id));
    assert_eq!(parts.adapter.shutdown_calls(), 1);
    assert_eq!(parts.engine.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_engine_watching_the_shutdown_token_returns_at_once() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    runtime.handle().submit(message("chat:c1", "wait")).await.unwrap();
    parts.engine.until_seen_text("wait").await;

    let started = Instant::now();
    shut_down(runtime).await;

    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(parts.engine.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn adapters_that_never_connect_do_not_hold_up_shutdown() {
    for hang in [false, true] {
        let parts = Parts::new();
        if hang {
            parts.adapter.hang_starts();
        } else {
            parts.adapter.fail_starts(usize::MAX);
        }
        let runtime = parts.start_with(settings()).await;
        parts.adapter.until_start_calls(if hang { 1 } else { 2 }).await;

        let started = Instant::now();
        shut_down(runtime).await;

        assert_eq!(started.elapsed(), Duration::ZERO, "hang = {hang}");
        assert_eq!(parts.adapter.shutdown_calls(), 1);
        assert_eq!(alive_tasks(), 0, "hang = {hang}: a runtime task outlived shutdown");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_runtime_without_shutdown_stops_its_tasks() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    runtime.handle().submit(message("chat:c1", "hang")).await.unwrap();
    runtime.handle().submit(message("chat:c2", "hi")).await.unwrap();
    parts.engine.until_seen(2).await;

    drop(runtime);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }

    assert_eq!(parts.engine.live(), 0);
    assert_eq!(alive_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_wedged_log_write_does_not_hold_up_shutdown_beyond_the_grace_period() {
    let parts = Parts::new();
    let runtime = parts.start_with(settings()).await;
    parts.adapter.until_connected(1).await;
    parts.log.hang_records();
    // The adapter's supervisor is now stuck inside `submit`.
    parts.adapter.push(message("chat:c1", "never recorded"));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let finished = tokio::time::timeout(GRACE * 10, runtime.shutdown()).await;

    assert!(finished.is_ok(), "shutdown waited on the wedged write for {:?}", started.elapsed());
    assert!(started.elapsed() <= GRACE + Duration::from_millis(10), "shutdown took {:?}", started.elapsed());
    assert_eq!(parts.adapter.shutdown_calls(), 1);
    assert_eq!(alive_tasks(), 0, "a runtime task outlived shutdown");
}

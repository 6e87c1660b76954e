//! Reconnects, token checks, error kinds, rate limits, shutdown.

use std::time::{Duration, Instant};

use spacebot_core::{AdapterErrorKind, OutboundResponse};
use spacebot_testing::SlackMessage;

use super::*;

#[tokio::test]
async fn a_disconnect_request_reconnects_and_messages_keep_flowing() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(SlackMessage::new("C1", "U1", "before"));
    assert_eq!(next(&mut stream).await.content.text(), "before");
    fake.disconnect();
    fake.post(SlackMessage::new("C1", "U1", "after"));
    assert_eq!(next(&mut stream).await.content.text(), "after");
    assert!(fake.connections() >= 2, "a second Socket Mode connection was opened");
    shut(adapter).await;
}

#[tokio::test]
async fn a_dropped_socket_is_reconnected_after_the_configured_wait() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.drop_socket();
    fake.post(SlackMessage::new("C1", "U1", "after the outage"));
    assert_eq!(next(&mut stream).await.content.text(), "after the outage");
    shut(adapter).await;
}

#[tokio::test]
async fn rejected_tokens_fail_start_permanently() {
    let fake = FakeSlack::start().await;
    let adapter = SlackAdapter::new(settings(&fake));
    fake.fail_next("auth.test", "invalid_auth");
    let error = adapter.start().await.err().expect("a bad bot token fails start");
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");
    fake.fail_next("apps.connections.open", "invalid_auth");
    let error = adapter.start().await.err().expect("a bad app token fails start");
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");
    // Fixed tokens: the runtime's next start succeeds.
    let _stream = adapter.start().await.unwrap();
    shut(adapter).await;
}

#[tokio::test]
async fn send_errors_carry_a_kind_decided_by_code_and_status() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(SlackMessage::new("C1", "U1", "hi"));
    let message = next(&mut stream).await;
    fake.fail_next("chat.postMessage", "channel_not_found");
    let error = adapter.send(&message, OutboundResponse::text("a")).await.unwrap_err();
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");
    fake.fail_next_status("chat.postMessage", 503, None);
    let error = adapter.send(&message, OutboundResponse::text("b")).await.unwrap_err();
    assert_eq!(error.kind(), AdapterErrorKind::Transient, "{error}");
    shut(adapter).await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_not_failed() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(SlackMessage::new("C1", "U1", "hi"));
    let message = next(&mut stream).await;
    fake.fail_next_status("chat.postMessage", 429, Some(1));
    let started = Instant::now();
    adapter.send(&message, OutboundResponse::text("patient")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_eq!(fake.calls_to("chat.postMessage").len(), 2, "one limited attempt, one that went through");
    shut(adapter).await;
}

#[tokio::test]
async fn shutdown_closes_the_socket() {
    let (fake, adapter, _stream) = connected(|s| s).await;
    shut(adapter).await;
    let (envelope, _) = fake.post(SlackMessage::new("C1", "U1", "after shutdown"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fake.acked(&envelope), "nobody is listening any more");
}

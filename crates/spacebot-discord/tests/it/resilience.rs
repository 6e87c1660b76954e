//! Reconnects, error kinds, rate limits, shutdown.

use spacebot_core::{AdapterErrorKind, OutboundResponse};
use spacebot_testing::FakeMessage;

use super::*;

#[tokio::test]
async fn a_dropped_gateway_is_resumed_and_messages_keep_flowing() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "before"));
    assert_eq!(next(&mut stream).await.content.text(), "before");

    fake.drop_connection(4000);
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "after"));
    assert_eq!(next(&mut stream).await.content.text(), "after");
    let (identifies, resumes, connections) = fake.gateway_counts();
    assert_eq!((identifies, resumes), (1, 1), "one session, resumed once");
    assert_eq!(connections, 2);
    shut(adapter).await;
}

#[tokio::test]
async fn a_rejected_token_fails_start_permanently_and_a_later_start_recovers() {
    install_crypto();
    let fake = FakeDiscord::start().await;
    fake.add_channel(GUILD, CHANNEL);
    fake.reject_identify(4004);
    let adapter = DiscordAdapter::new(settings(&fake));
    let error = match adapter.start().await {
        Err(error) => error,
        Ok(_) => panic!("start must fail when the gateway rejects the token"),
    };
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");

    // The runtime calls start again after its backoff; by then the token is fixed.
    fake.reject_identify(0);
    let mut stream = adapter.start().await.unwrap();
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "back"));
    assert_eq!(next(&mut stream).await.content.text(), "back");
    shut(adapter).await;
}

#[tokio::test]
async fn an_ended_session_ends_the_stream_so_the_runtime_restarts_it() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.reject_identify(4004);
    // 4004 on a live session: the client gives up instead of resuming.
    fake.drop_connection(4004);
    let ended = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut stream)).await.expect("the stream ends");
    assert!(ended.is_none(), "got {ended:?}");
    shut(adapter).await;
}

#[tokio::test]
async fn send_errors_carry_a_kind_decided_by_status() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "hi"));
    let message = next(&mut stream).await;
    let path = format!("/channels/{CHANNEL}/messages");

    fake.fail_next(&path, 503, None);
    let error = adapter.send(&message, OutboundResponse::text("a")).await.unwrap_err();
    assert_eq!(error.kind(), AdapterErrorKind::Transient, "{error}");

    fake.fail_next(&path, 403, None);
    let error = adapter.send(&message, OutboundResponse::text("b")).await.unwrap_err();
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");

    let mut unknown = message.clone();
    unknown.metadata.remove("discord_channel_id");
    unknown.metadata.remove(spacebot_core::CHANNEL_KEY);
    let error = adapter.send(&unknown, OutboundResponse::text("c")).await.unwrap_err();
    assert_eq!(error.kind(), AdapterErrorKind::Permanent);
    shut(adapter).await;
}

#[tokio::test]
async fn rate_limited_sends_are_transient_so_the_outbox_retries_them() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "hi"));
    let message = next(&mut stream).await;
    fake.fail_next(&format!("/channels/{CHANNEL}/messages"), 429, Some(0.3));
    let error = adapter.send(&message, OutboundResponse::text("patient")).await.unwrap_err();
    assert_eq!(error.kind(), AdapterErrorKind::Transient, "{error}");
    adapter.send(&message, OutboundResponse::text("patient")).await.unwrap();
    assert_eq!(fake.messages_in(CHANNEL), vec!["patient", "patient"], "the fake records both attempts");
    shut(adapter).await;
}

#[tokio::test]
async fn health_check_asks_who_the_bot_is() {
    install_crypto();
    let fake = FakeDiscord::start().await;
    let adapter = DiscordAdapter::new(settings(&fake));
    adapter.health_check().await.unwrap();
    assert!(fake.requests().iter().any(|r| r.path == "/users/@me"));
    fake.fail_next("/users/@me", 401, None);
    assert_eq!(adapter.health_check().await.unwrap_err().kind(), AdapterErrorKind::Permanent);
}

#[tokio::test]
async fn shutdown_closes_the_stream() {
    let (_fake, adapter, mut stream) = connected(|s| s).await;
    shut(adapter).await;
    let ended = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut stream)).await.expect("the stream ends");
    assert!(ended.is_none());
}

/// Messages the intake still holds to order them when the session ends are handed in before
/// the stream ends, not dropped with it.
#[tokio::test]
async fn messages_held_for_ordering_when_the_session_ends_are_still_handed_in() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.reject_identify(4004);
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "last words"));
    fake.drop_connection(4004);
    let last = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut stream)).await.expect("a message or the end");
    assert_eq!(last.map(|message| message.content.text().to_owned()).as_deref(), Some("last words"));
    let ended = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut stream)).await.expect("the stream ends");
    assert!(ended.is_none(), "got {ended:?}");
    shut(adapter).await;
}

//! What the LineChat adapter does beyond the shared suite: error kinds the runtime's outbox acts
//! on, and what it refuses.

use example_custom_adapter::LineChatAdapter;
use example_custom_adapter::protocol::{BotLine, Room};
use futures::StreamExt;

use spacebot_core::{AdapterErrorKind, InboundMessage, MessagingAdapter, OutboundResponse};

use crate::server::LineChatServer;

/// A started adapter and one message alice said in `#general`.
async fn started(server: &LineChatServer) -> (LineChatAdapter, InboundMessage) {
    let adapter = LineChatAdapter::new(server.address(), "spacebot");
    let mut stream = adapter.start().await.expect("the adapter starts");
    server.post("#general", "alice", "hello");
    let message = stream.next().await.expect("alice's message arrives");
    (adapter, message)
}

#[tokio::test]
async fn busy_is_transient_and_every_other_refusal_is_permanent() {
    let server = LineChatServer::start().await;
    let (adapter, message) = started(&server).await;

    server.refuse_next("busy", "slow down");
    let error = adapter.send(&message, OutboundResponse::text("one")).await.expect_err("refused");
    assert_eq!(error.kind(), AdapterErrorKind::Transient, "{error}");

    server.refuse_next("forbidden", "you are muted");
    let error = adapter.send(&message, OutboundResponse::text("two")).await.expect_err("refused");
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");
    assert!(error.to_string().contains("forbidden: you are muted"), "{error}");

    adapter.send(&message, OutboundResponse::text("three")).await.expect("accepted again");
    let general = Room::Channel("#general".into());
    assert_eq!(server.commands().last(), Some(&BotLine::Say { room: general, text: "three".into() }));
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_start_error() {
    // A port that was just free: nothing listens there.
    let address = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").to_string()
    };
    let adapter = LineChatAdapter::new(address, "spacebot");
    let error = adapter.start().await.err().expect("nothing to connect to");
    assert_eq!(error.kind(), AdapterErrorKind::Transient, "the runtime keeps trying: {error}");
    assert!(adapter.health_check().await.is_err());
}

#[tokio::test]
async fn files_are_unsupported_and_foreign_messages_are_refused() {
    let server = LineChatServer::start().await;
    let (adapter, message) = started(&server).await;
    let file = OutboundResponse::File {
        filename: "a.txt".into(),
        mime_type: "text/plain".into(),
        data: b"hi".to_vec(),
        caption: None,
    };
    let error = adapter.send(&message, file).await.expect_err("no files on LineChat");
    assert_eq!(error.kind(), AdapterErrorKind::Unsupported);

    let foreign = InboundMessage::text("webhook", "webhook:c1", spacebot_core::Sender::new("bob"), "hi");
    let error = adapter.send(&foreign, OutboundResponse::text("hello")).await.expect_err("no room to answer in");
    assert_eq!(error.kind(), AdapterErrorKind::Permanent);
}

#[tokio::test]
async fn the_bots_own_messages_are_never_handed_in() {
    let server = LineChatServer::start().await;
    let adapter = LineChatAdapter::new(server.address(), "spacebot");
    let mut stream = adapter.start().await.expect("the adapter starts");
    server.post("#general", "spacebot", "an echo of my own");
    server.post("#general", "alice", "a real message");
    let first = stream.next().await.expect("a message");
    assert_eq!(first.content.text(), "a real message");
}

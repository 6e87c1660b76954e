//! Integration tests: the real slack-morphism client against `spacebot-testing`'s fake Slack.

mod conformance;
mod intake;
mod outbound;
mod resilience;

use std::time::Duration;

use futures::StreamExt;

use spacebot_core::{InboundMessage, InboundStream, MessagingAdapter};
use spacebot_slack::{SlackAdapter, SlackSettings};
use spacebot_testing::FakeSlack;

/// Bound for anything that crosses a real local socket.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn settings(fake: &FakeSlack) -> SlackSettings {
    SlackSettings::new("xoxb-fake", "xapp-fake")
        .with_api_url(fake.api_url())
        .with_reconnect_after(Duration::from_secs(1))
}

pub(crate) async fn connected(
    configure: impl FnOnce(SlackSettings) -> SlackSettings,
) -> (FakeSlack, SlackAdapter, InboundStream) {
    let fake = FakeSlack::start().await;
    let adapter = SlackAdapter::new(configure(settings(&fake)));
    let stream = adapter.start().await.expect("the adapter connects to the fake");
    fake.wait_for("a Socket Mode connection", WAIT, |f| f.connections() >= 1).await;
    (fake, adapter, stream)
}

pub(crate) async fn next(stream: &mut InboundStream) -> InboundMessage {
    tokio::time::timeout(WAIT, stream.next()).await.expect("an inbound message in time").expect("the stream is open")
}

pub(crate) async fn nothing_within(stream: &mut InboundStream, wait: Duration) {
    if let Ok(Some(message)) = tokio::time::timeout(wait, stream.next()).await {
        panic!("expected no inbound message, got {message:?}");
    }
}

pub(crate) async fn shut(adapter: SlackAdapter) {
    tokio::time::timeout(WAIT, adapter.shutdown()).await.expect("shutdown is bounded");
}

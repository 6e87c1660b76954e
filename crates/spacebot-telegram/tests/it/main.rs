//! Integration tests: the adapter's real Bot API client against `spacebot-testing`'s fake Bot API.

mod conformance;
mod intake;
mod outbound;

use std::time::Duration;

use futures::StreamExt;

use spacebot_core::{InboundMessage, InboundStream, MessagingAdapter};
use spacebot_telegram::{TelegramAdapter, TelegramSettings};
use spacebot_testing::FakeTelegram;
use spacebot_testing::fake_telegram::TOKEN;

/// Bound for anything that crosses a real local socket.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// The group the tests talk in (a forum supergroup).
pub(crate) const GROUP: i64 = -100_123;
/// The user who talks.
pub(crate) const USER: u64 = 7;

pub(crate) fn settings(fake: &FakeTelegram) -> TelegramSettings {
    TelegramSettings::new(TOKEN)
        .with_api_url(fake.api_url())
        .with_dm_users([USER.to_string()])
        .with_poll_timeout(Duration::from_secs(2))
}

pub(crate) async fn connected(
    configure: impl FnOnce(TelegramSettings) -> TelegramSettings,
) -> (FakeTelegram, TelegramAdapter, InboundStream) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeTelegram::start().await;
    let adapter = TelegramAdapter::new(configure(settings(&fake))).expect("the adapter builds");
    let stream = adapter.start().await.expect("the adapter connects to the fake");
    (fake, adapter, stream)
}

pub(crate) async fn next(stream: &mut InboundStream) -> InboundMessage {
    tokio::time::timeout(WAIT, stream.next()).await.expect("an inbound message in time").expect("the stream is open")
}

pub(crate) async fn shut(adapter: TelegramAdapter) {
    tokio::time::timeout(WAIT, adapter.shutdown()).await.expect("shutdown is bounded");
}

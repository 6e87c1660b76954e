//! Integration tests: the real serenity client against `spacebot-testing`'s fake Discord.

mod commands;
mod conformance;
mod intake;
mod outbound;
mod resilience;

use std::time::Duration;

use futures::StreamExt;

use spacebot_core::{InboundMessage, InboundStream, MessagingAdapter};
use spacebot_discord::{DiscordAdapter, DiscordSettings};
use spacebot_testing::FakeDiscord;

/// Bound for anything that crosses a real local socket.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
pub(crate) const GUILD: u64 = 1;
pub(crate) const CHANNEL: u64 = 10;

pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Settings pointed at the fake, with slash commands off unless a test wants them.
pub(crate) fn settings(fake: &FakeDiscord) -> DiscordSettings {
    DiscordSettings::new("fake-token").with_api_url(fake.api_url()).with_slash_commands(false)
}

/// A fake with one guild channel, and an adapter connected to it.
pub(crate) async fn connected(
    configure: impl FnOnce(DiscordSettings) -> DiscordSettings,
) -> (FakeDiscord, DiscordAdapter, InboundStream) {
    install_crypto();
    let fake = FakeDiscord::start().await;
    fake.add_channel(GUILD, CHANNEL);
    let adapter = DiscordAdapter::new(configure(settings(&fake)));
    let stream = adapter.start().await.expect("the adapter connects to the fake");
    (fake, adapter, stream)
}

pub(crate) async fn next(stream: &mut InboundStream) -> InboundMessage {
    tokio::time::timeout(WAIT, stream.next()).await.expect("an inbound message in time").expect("the stream is open")
}

/// Asserts that nothing arrives for a short while (messages the adapter must drop).
pub(crate) async fn nothing_within(stream: &mut InboundStream, wait: Duration) {
    if let Ok(Some(message)) = tokio::time::timeout(wait, stream.next()).await {
        panic!("expected no inbound message, got {message:?}");
    }
}

pub(crate) async fn shut(adapter: DiscordAdapter) {
    tokio::time::timeout(WAIT, adapter.shutdown()).await.expect("shutdown is bounded");
}

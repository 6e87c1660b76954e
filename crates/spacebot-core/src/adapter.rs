//! The messaging adapter contract: how a platform hands messages in and takes responses out.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use crate::error::AdapterError;
use crate::message::{InboundMessage, OutboundResponse};

/// The stream of messages an adapter receives.
pub type InboundStream = Pin<Box<dyn Stream<Item = InboundMessage> + Send>>;

/// A chat platform connection (Discord, Slack, a webhook, a terminal).
///
/// The runtime calls [`start`](Self::start) and reads the stream it returns; when the stream ends
/// or `start` fails, the runtime calls `start` again after a backoff, so an adapter reconnects by
/// ending its stream. Replies go out through [`send`](Self::send), always in the context of the
/// inbound message they answer, which carries the thread and routing metadata the adapter set.
#[async_trait]
pub trait MessagingAdapter: Send + Sync + 'static {
    /// The runtime key: `discord`, `discord:ops`, `webhook`. Inbound messages carry it in
    /// [`InboundMessage::adapter`] so replies find their way back.
    fn name(&self) -> &str;

    /// Connects and returns the inbound stream.
    async fn start(&self) -> Result<InboundStream, AdapterError>;

    /// Delivers a response in the context of `target`.
    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError>;

    /// Whether at most one runtime of a fleet may run this connection at a time: a platform
    /// that gives a bot one session (a Discord gateway shard, a Slack Socket Mode app, a Telegram
    /// poller or webhook, a mailbox read over IMAP). In a fleet the runtime then starts it only
    /// while it holds the connection's lease ([`Leases::acquire_connection`](crate::Leases::acquire_connection)),
    /// and stops it if the lease is lost. The default, `false`, suits connections every member
    /// may serve side by side (an HTTP endpoint behind a load balancer).
    fn exclusive(&self) -> bool {
        false
    }

    /// A cheap authenticated call that says whether the platform is usable.
    async fn health_check(&self) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Closes connections. Called once at shutdown.
    async fn shutdown(&self) {}
}

//! [`Leases`]: which runtime of a fleet runs a conversation.
//!
//! Several runtimes (daemons, on one machine or many) may share one log, a PostgreSQL database
//! say. A conversation must then be run by one of them at a time, or two would answer the same
//! message. Each runtime is a *member* of the fleet, and runs a conversation only while it holds
//! the conversation's *lease*: a row in the shared store naming the holder and when the lease
//! expires unless renewed. With [`RuntimeBuilder::leases`](crate::RuntimeBuilder::leases) set:
//!
//! - **Starting a conversation takes its lease.** The router asks for the lease before it starts
//!   a conversation's task (off its own loop, so it never waits on the store), and the task
//!   starts with every unhandled message of the conversation in the log, oldest first, wherever
//!   it was received. A message for a conversation another live member holds stays in the log,
//!   and that member is told to take it ([`Leases::hand_over`]).
//! - **Leases are renewed while the conversation is live**, every third of the lease time, all
//!   in one statement. One that is found lost (it expired and another member took it) ends the
//!   conversation's task at once, without answering: its messages are the new holder's. When
//!   renewing fails for two thirds of the lease time, every conversation ends, since the others
//!   may take them over from then on.
//! - **Conversations left behind are adopted.** At each renewal the runtime also reads the
//!   unhandled messages in conversations whose lease is free, expired or its own
//!   ([`Leases::claimable`]), so messages handed over arrive and a member that died (`kill -9`)
//!   loses its conversations to the others within the lease time plus a third.
//!
//! A lease is not released when its conversation is evicted for idleness: it lapses. Shutdown
//! releases every lease the member holds, so another member takes over at once.
//!
//! **Platform connections** that a platform gives a bot only once (a Discord gateway session, a
//! Slack Socket Mode app: [`MessagingAdapter::exclusive`](crate::MessagingAdapter::exclusive))
//! run under a lease of their own: the runtime starts such an adapter only once it holds the
//! connection's lease, tries for it every third of the lease time meanwhile, renews it as often
//! while the adapter runs, and stops the adapter when it is lost. Messages the holder receives
//! are recorded in the shared log like any other, so their conversations' leases decide who
//! answers; in practice the holder, which sees them first.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::StoreError;
use crate::ids::{AgentId, ConversationId};
use crate::message::InboundMessage;

/// Who holds a lease after an attempt to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// This member holds it (it was free, expired, or already this member's).
    Held,
    /// Another member holds a lease that has not expired.
    HeldBy(String),
}

/// One member of a fleet, as the shared store sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetMember {
    /// The member's name.
    pub member: String,
    /// Where its HTTP API listens, as it announced.
    pub address: Option<String>,
    /// How long ago it last renewed its leases, in milliseconds.
    pub seen_ms_ago: u64,
    /// How many conversation leases it holds that have not expired.
    pub conversations: u64,
    /// The platform connections it holds, by adapter name.
    pub connections: Vec<String>,
}

impl FleetMember {
    /// A member.
    pub fn new(
        member: impl Into<String>,
        address: Option<String>,
        seen_ms_ago: u64,
        conversations: u64,
        connections: Vec<String>,
    ) -> Self {
        Self { member: member.into(), address, seen_ms_ago, conversations, connections }
    }
}

/// The fleet as one member sees it, for `spacebot status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStatus {
    /// This runtime's member name.
    pub member: String,
    /// The lease time, in milliseconds.
    pub lease_ms: u64,
    /// The members seen within the last few lease times, this one included.
    pub members: Vec<FleetMember>,
}

impl FleetStatus {
    /// A status.
    pub fn new(member: impl Into<String>, lease: Duration, members: Vec<FleetMember>) -> Self {
        Self { member: member.into(), lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX), members }
    }
}

/// The leases of a fleet sharing one log, from one member's side (see the module docs).
///
/// Implementations keep the time in the shared store (the database's clock), so members on
/// machines whose clocks disagree still agree on when a lease expired.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// This member's name, unique in the fleet.
    fn member(&self) -> &str;

    /// How long a lease lasts unless renewed.
    fn lease_time(&self) -> Duration;

    /// Takes the lease of a conversation for this member if it is free or expired, or renews it
    /// if this member holds it. Atomic: of members racing for a free lease, one gets it.
    async fn acquire(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Claim, StoreError>;

    /// Renews the leases of these conversations, which this member believes it holds, and says
    /// it is alive. Returns those it no longer holds.
    async fn renew(
        &self,
        conversations: &[(AgentId, ConversationId)],
    ) -> Result<Vec<(AgentId, ConversationId)>, StoreError>;

    /// The unhandled inbound messages of the conversations this member may run now (their lease
    /// is free, expired or its own), oldest first.
    async fn claimable(&self) -> Result<Vec<InboundMessage>, StoreError>;

    /// Tells `holder` that a message of its conversation was recorded by another member.
    async fn hand_over(&self, agent: &AgentId, conversation: &ConversationId, holder: &str) -> Result<(), StoreError>;

    /// Returns when another member handed this one a message (or something else makes a look at
    /// [`claimable`](Self::claimable) worthwhile). Must be cancel-safe: it is raced against a
    /// timer. An implementation without signals never returns.
    async fn handed(&self);

    /// Takes the lease of the platform connection named `adapter` for this member if it is free
    /// or expired, or renews it if this member holds it (see
    /// [`MessagingAdapter::exclusive`](crate::MessagingAdapter::exclusive)).
    async fn acquire_connection(&self, adapter: &str) -> Result<Claim, StoreError>;

    /// Gives up the lease of a platform connection, if this member holds it.
    async fn release_connection(&self, adapter: &str) -> Result<(), StoreError>;

    /// Where the API of `member` is reached, as it announced when it joined (`None` when it
    /// announced nothing or is unknown).
    async fn address(&self, member: &str) -> Result<Option<String>, StoreError>;

    /// Gives up every lease this member holds, of conversations and connections, and says it left
    /// (at shutdown).
    async fn release_all(&self) -> Result<(), StoreError>;

    /// The members of the fleet.
    async fn status(&self) -> Result<FleetStatus, StoreError>;
}

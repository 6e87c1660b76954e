//! The runtime kernel: router, adapter supervision, event bus and shutdown.
//!
//! ```text
//!  adapters ──start()──▶ supervisor tasks ─┐
//!  HTTP / CLI ─────────── RuntimeHandle::submit ─▶ record in log ─▶ router actor
//!                                                                    │ one inbox per
//!                                                                    ▼ (agent, conversation)
//!                                            ConversationEngine::run_conversation tasks
//!                                                                    │
//!                                               Outbox ──send()──▶ adapters, events
//! ```
//!
//! The router is an actor: it alone owns the map of conversations, so nothing is locked, and it
//! never waits on a conversation (inboxes are unbounded; every message in them is already
//! durable in the log). Every task the runtime spawns is owned by a `JoinSet` that
//! [`Runtime::shutdown`] drains within the grace period and then aborts.
//!
//! Conversations are evicted when idle, so memory does not grow with every conversation ever
//! seen: the router notes each conversation's last activity (a message it routes, any runtime
//! event of the conversation: turns, replies, processes starting, reporting and ending) and
//! asks a conversation idle past [`RuntimeSettings::idle_timeout`], or the least recently
//! active ones beyond [`RuntimeSettings::max_live`], to end ([`ConversationInput::Evict`]). It
//! never asks one with a live process in the [`ProcessRegistry`]; the conversation itself
//! decides, and ends only when nothing is in flight (the router can't see a held burst or a
//! result waiting to be relayed). When its task returns, the entry is dropped, unless a message
//! raced the exit into the inbox: then a new task takes the same inbox, as after a crash.
//!
//! In a fleet (several runtimes on one shared log, [`RuntimeBuilder::leases`]) the router starts
//! a conversation only under its lease, and a task of the runtime keeps the leases: the module
//! `lease.rs` tells how.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::adapter::MessagingAdapter;
use crate::binding::{Binding, RESPONSE_MODE_KEY, matching_binding};
use crate::engine::{ControlCommand, ConversationContext, ConversationEngine, ConversationInput};
use crate::error::{AdapterError, Error, Result};
use crate::event::RuntimeEvent;
use crate::ids::{AgentId, ConversationId, MessageId, ProcessId};
use crate::inbox::{Inbox, InboxSender, inbox};
use crate::lease::{Claim, FleetStatus, Leases};
use crate::log::ConversationLog;
use crate::message::{InboundMessage, OutboundResponse, Role, StoredMessage};
use crate::outbox::{AdapterSet, DeliveryPolicy, Outbox};
use crate::scrub::Scrubber;
use crate::supervision::ProcessRegistry;

/// Tunables of the runtime.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeSettings {
    /// How long shutdown waits for in-flight turns before cancelling them.
    pub shutdown_grace: Duration,
    /// Delivery retries.
    pub delivery: DeliveryPolicy,
    /// First wait before restarting an adapter that failed; doubles up to `adapter_backoff_max`.
    pub adapter_backoff: Duration,
    /// Longest wait between adapter restarts.
    pub adapter_backoff_max: Duration,
    /// How long a conversation may go without activity (a message, a turn, a background process
    /// starting, reporting or ending) before its task is asked to end; its next message starts a
    /// new one, which reloads the history from the log. `None` never evicts for idleness.
    /// Checked every quarter of it (at least every 100 ms, at most every 30 s).
    pub idle_timeout: Option<Duration>,
    /// Most conversation tasks kept live: beyond it, the least recently active idle ones are
    /// asked to end first. A conversation that is busy when asked stays, so the count can exceed
    /// the cap while more are busy. `None`: no cap; `Some(0)` evicts every idle conversation.
    pub max_live: Option<usize>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            delivery: DeliveryPolicy::default(),
            adapter_backoff: Duration::from_secs(1),
            adapter_backoff_max: Duration::from_secs(60),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_live: Some(DEFAULT_MAX_LIVE),
        }
    }
}

/// How long a conversation stays live without activity, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How many conversations stay live at most, by default.
pub const DEFAULT_MAX_LIVE: usize = 10_000;
/// Bounds of the period at which the router looks for conversations to evict.
const MIN_SWEEP: Duration = Duration::from_millis(100);
const MAX_SWEEP: Duration = Duration::from_secs(30);

impl RuntimeSettings {
    /// Sets the shutdown grace period.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the delivery policy.
    pub fn with_delivery(mut self, delivery: DeliveryPolicy) -> Self {
        self.delivery = delivery;
        self
    }

    /// Sets how long a conversation may stay idle before it is evicted (`None`: never).
    pub fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets how many conversations stay live at most (`None`: no cap).
    pub fn with_max_live(mut self, max_live: Option<usize>) -> Self {
        self.max_live = max_live;
        self
    }

    /// How often the router looks for conversations to evict, if it evicts at all.
    fn sweep_period(&self) -> Option<Duration> {
        match (self.idle_timeout, self.max_live) {
            (Some(idle), _) => Some((idle / 4).clamp(MIN_SWEEP, MAX_SWEEP)),
            (None, Some(_)) => Some(MAX_SWEEP),
            (None, None) => None,
        }
    }
}

/// Builds a [`Runtime`] from trait objects.
#[derive(Default)]
pub struct RuntimeBuilder {
    engine: Option<Arc<dyn ConversationEngine>>,
    log: Option<Arc<dyn ConversationLog>>,
    adapters: Vec<Arc<dyn MessagingAdapter>>,
    agents: Vec<AgentId>,
    settings: RuntimeSettings,
    bindings: Vec<Binding>,
    leases: Option<Arc<dyn Leases>>,
    scrubber: Scrubber,
}

impl RuntimeBuilder {
    /// The engine that runs conversations.
    pub fn engine(mut self, engine: Arc<dyn ConversationEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The conversation log.
    pub fn log(mut self, log: Arc<dyn ConversationLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The scrubber every response, event and recorded outgoing message passes (by default one
    /// that masks credential-shaped tokens; give it the configured secrets too).
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// Adds an adapter.
    pub fn adapter(mut self, adapter: Arc<dyn MessagingAdapter>) -> Self {
        self.adapters.push(adapter);
        self
    }

    /// Adds a hosted agent; the first is the default for messages that name none.
    pub fn agent(mut self, agent: impl Into<AgentId>) -> Self {
        let agent = agent.into();
        if !self.agents.contains(&agent) {
            self.agents.push(agent);
        }
        self
    }

    /// Adds a binding (which agent answers where). Bindings are tried in the order added for
    /// messages that name no agent; the first match decides, else the default agent answers.
    pub fn binding(mut self, binding: Binding) -> Self {
        self.bindings.push(binding);
        self
    }

    /// Sets the tunables.
    pub fn settings(mut self, settings: RuntimeSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Makes this runtime a member of a fleet sharing its log: it runs a conversation only while
    /// it holds the conversation's lease (see [`Leases`]).
    pub fn leases(mut self, leases: Arc<dyn Leases>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Starts the runtime: recovers messages left unhandled by a previous run, starts the router
    /// and the adapters. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Runtime> {
        let engine = self.engine.ok_or(Error::Missing("a conversation engine"))?;
        let log = self.log.ok_or(Error::Missing("a conversation log"))?;
        if self.agents.is_empty() {
            return Err(Error::Missing("at least one agent"));
        }
        if let Some(binding) = self.bindings.iter().find(|b| !self.agents.contains(&b.agent)) {
            return Err(Error::UnknownAgent(binding.agent.clone()));
        }
        let (events, _) = broadcast::channel(1024);
        let adapters = Arc::new(AdapterSet::new(self.adapters));
        let outbox = Outbox::new(adapters.clone(), events.clone(), self.settings.delivery).with_scrubber(self.scrubber);
        let shutdown = CancellationToken::new();
        let (router_tx, router_rx) = mpsc::channel(1024);
        let processes = ProcessRegistry::new();
        // Process runs are recorded (and those a crash interrupted settled and reported) by one
        // task, when the log keeps them.
        let journal_stop = CancellationToken::new();
        let journal = log.process_runs().map(|runs| {
            let (changes, receiver) = mpsc::unbounded_channel();
            processes.set_journal(changes);
            tokio::spawn(crate::journal::keep_journal(
                runs,
                log.clone(),
                outbox.clone(),
                receiver,
                journal_stop.clone(),
                self.leases.clone(),
            ))
        });

        let sweep = self.settings.sweep_period().map(|period| {
            let mut sweep = tokio::time::interval_at(Instant::now() + period, period);
            sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
            sweep
        });
        let router = Router {
            commands: router_tx.downgrade(),
            leases: self.leases.clone(),
            acquiring: HashMap::new(),
            routed: 0,
            engine: engine.clone(),
            log: log.clone(),
            outbox: outbox.clone(),
            shutdown: shutdown.child_token(),
            grace: self.settings.shutdown_grace,
            conversations: HashMap::new(),
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
            running: HashMap::new(),
            processes: processes.clone(),
            activity: Some(events.subscribe()),
            idle_timeout: self.settings.idle_timeout,
            max_live: self.settings.max_live,
            sweep,
        };
        let router_task = tokio::spawn(router.run(router_rx));

        let handle = RuntimeHandle {
            inner: Arc::new(HandleInner {
                router: router_tx,
                log: log.clone(),
                events,
                agents: self.agents,
                accepting: AtomicBool::new(true),
                adapter_names: adapters.iter().map(|a| a.name().to_owned()).collect(),
                bindings: self.bindings,
                processes,
                engine,
                outbox,
                leases: self.leases.clone(),
            }),
        };

        // A fleet member takes the messages it may answer from its first look at the leases;
        // alone, the runtime answers every message left unhandled.
        let fleet_stop = CancellationToken::new();
        let fleet = match &self.leases {
            Some(leases) => {
                Some(tokio::spawn(keep_leases(leases.clone(), handle.inner.router.clone(), fleet_stop.clone())))
            }
            None => {
                let pending = log.unhandled().await?;
                if !pending.is_empty() {
                    tracing::info!(count = pending.len(), "resuming messages left unanswered by the previous run");
                }
                for message in pending {
                    handle.route(message).await?;
                }
                None
            }
        };
        // Results that ended before the last stop and were never relayed: their conversations
        // start now (those with a message to answer have) and relay them.
        if let Some(runs) = log.process_runs() {
            match runs.owed().await {
                Ok(owed) => {
                    let mut keys: Vec<ConversationKey> = Vec::new();
                    for recorded in owed.into_iter().filter(|r| matches!(r.owed, Some(crate::runs::Owed::Result(_)))) {
                        let key = (recorded.run.agent, recorded.run.conversation);
                        if handle.inner.agents.contains(&key.0) && !keys.contains(&key) {
                            keys.push(key);
                        }
                    }
                    if !keys.is_empty() {
                        tracing::info!(
                            conversations = keys.len(),
                            "relaying background results the previous run left untold"
                        );
                    }
                    for key in keys {
                        handle.inner.router.send(RouterCommand::Wake(key)).await.map_err(|_| Error::ShuttingDown)?;
                    }
                }
                Err(error) => tracing::error!(%error, "can't read the background results the previous run left untold"),
            }
        }

        let mut supervisors = JoinSet::new();
        for adapter in adapters.iter() {
            supervisors.spawn(supervise_adapter(
                adapter.clone(),
                handle.clone(),
                shutdown.child_token(),
                self.settings.adapter_backoff,
                self.settings.adapter_backoff_max,
            ));
        }

        Ok(Runtime {
            handle,
            shutdown,
            router_task,
            supervisors,
            adapters,
            grace: self.settings.shutdown_grace,
            journal,
            journal_stop,
            fleet,
            fleet_stop,
        })
    }
}

/// A running runtime. Dropping it without [`shutdown`](Self::shutdown) aborts its tasks.
pub struct Runtime {
    handle: RuntimeHandle,
    shutdown: CancellationToken,
    router_task: tokio::task::JoinHandle<()>,
    supervisors: JoinSet<()>,
    adapters: Arc<AdapterSet>,
    grace: Duration,
    /// Records process runs, when the log keeps them.
    journal: Option<tokio::task::JoinHandle<()>>,
    journal_stop: CancellationToken,
    /// Renews and adopts leases, in a fleet.
    fleet: Option<tokio::task::JoinHandle<()>>,
    fleet_stop: CancellationToken,
}

impl Runtime {
    /// A builder.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A cloneable handle for submitting messages and observing events.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Stops accepting messages, lets in-flight turns finish within the grace period (then
    /// cancels them), stops the adapters, and returns when no runtime task is left.
    ///
    /// Messages that were recorded but not yet answered stay unhandled in the log and are
    /// processed on the next start.
    pub async fn shutdown(mut self) {
        self.handle.inner.accepting.store(false, Ordering::SeqCst);
        self.shutdown.cancel();
        // No more inbound messages. A supervisor returns at once unless it is handing in a
        // message (a log write); that gets the grace period too, so a wedged write cannot hold
        // shutdown forever.
        let supervisors = &mut self.supervisors;
        let stopped =
            tokio::time::timeout(self.grace, async { while supervisors.join_next().await.is_some() {} }).await;
        if stopped.is_err() {
            tracing::warn!(grace = ?self.grace, "an adapter still handing in a message at the end of the grace period");
            self.supervisors.shutdown().await;
        }
        // In-flight turns finish (or are cancelled) while the adapters can still deliver their
        // replies and stop their typing indicators.
        if let Err(error) = (&mut self.router_task).await {
            tracing::error!(%error, "router task failed");
        }
        // No conversation runs here any more: hand the leases back so the fleet takes over now.
        self.fleet_stop.cancel();
        if let Some(fleet) = self.fleet.take()
            && let Err(error) = fleet.await
        {
            tracing::error!(%error, "lease task failed");
        }
        // Every process has ended with its conversation: record the last ends, then stop.
        self.journal_stop.cancel();
        if let Some(journal) = self.journal.take()
            && let Err(error) = journal.await
        {
            tracing::error!(%error, "process journal task failed");
        }
        let grace = self.grace;
        futures::future::join_all(self.adapters.iter().map(|adapter| async move {
            if tokio::time::timeout(grace, adapter.shutdown()).await.is_err() {
                tracing::warn!(adapter = adapter.name(), "adapter did not shut down in time");
            }
        }))
        .await;
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.router_task.abort();
        if let Some(journal) = &self.journal {
            journal.abort();
        }
        if let Some(fleet) = &self.fleet {
            fleet.abort();
        }
    }
}

/// A snapshot of the runtime for `spacebot status`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RuntimeStatus {
    /// Hosted agents.
    pub agents: Vec<AgentId>,
    /// Conversations with a live process.
    pub conversations: usize,
    /// Adapter runtime keys.
    pub adapters: Vec<String>,
    /// What the engine says an operator should know (a budget spent, a circuit breaker open).
    pub notices: Vec<String>,
    /// The fleet, when this runtime is a member of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// A cheap, cloneable handle to a running [`Runtime`].
#[derive(Clone)]
pub struct RuntimeHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    router: mpsc::Sender<RouterCommand>,
    log: Arc<dyn ConversationLog>,
    events: broadcast::Sender<RuntimeEvent>,
    agents: Vec<AgentId>,
    accepting: AtomicBool,
    adapter_names: Vec<String>,
    bindings: Vec<Binding>,
    processes: ProcessRegistry,
    engine: Arc<dyn ConversationEngine>,
    outbox: Outbox,
    leases: Option<Arc<dyn Leases>>,
}

impl RuntimeHandle {
    /// Records `message` durably, then routes it to its conversation.
    ///
    /// Returns once the message is in the log, so a caller can acknowledge the platform. A
    /// message whose id was already recorded is not processed again. The agent is the one the
    /// message names, else the one of the first matching [`Binding`], else the default (first)
    /// agent.
    pub async fn submit(&self, mut message: InboundMessage) -> Result<MessageId> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let agent = match message.agent.take() {
            Some(agent) if self.inner.agents.contains(&agent) => agent,
            Some(agent) => return Err(Error::UnknownAgent(agent)),
            // Bindings: the first that matches picks the agent, and may set the response mode.
            None => match matching_binding(&self.inner.bindings, &message) {
                Some(binding) => {
                    if let Some(mode) = binding.response_mode {
                        message.metadata.insert(RESPONSE_MODE_KEY.to_owned(), mode.as_str().into());
                    }
                    binding.agent.clone()
                }
                None => self.default_agent().clone(),
            },
        };
        message.agent = Some(agent);
        if message.adapter.is_empty() {
            message.adapter = message.source.clone();
        }
        let id = message.id.clone();
        if self.inner.log.record_inbound(&message).await? {
            if self.inner.leases.is_some() {
                self.route_earlier(&message).await?;
            }
            self.route(message).await?;
        } else {
            tracing::debug!(%id, "duplicate inbound message ignored");
        }
        Ok(id)
    }

    /// In a fleet, routes the unhandled messages of `message`'s conversation recorded before it
    /// (by other members, which hand them over in their own time), oldest first, so it can't
    /// overtake them; the router skips those it routed already.
    async fn route_earlier(&self, message: &InboundMessage) -> Result<()> {
        let Some(agent) = &message.agent else { return Ok(()) };
        match self.inner.log.unhandled_messages_in(agent, &message.conversation).await {
            Ok(unhandled) => {
                for earlier in unhandled.into_iter().take_while(|earlier| earlier.id != message.id) {
                    self.route(earlier).await?;
                }
            }
            // They still arrive, at the next look at the leases; only their order is at risk.
            Err(error) => tracing::warn!(%error, conversation = %message.conversation,
                "can't read the conversation's earlier messages; routing this one now"),
        }
        Ok(())
    }

    async fn route(&self, message: InboundMessage) -> Result<()> {
        self.inner.router.send(RouterCommand::Route(Box::new(message))).await.map_err(|_| Error::ShuttingDown)
    }

    /// Subscribes to runtime events.
    pub fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.inner.events.subscribe()
    }

    /// The hosted agents, default first.
    pub fn agents(&self) -> &[AgentId] {
        &self.inner.agents
    }

    /// The agent for messages that name none.
    pub fn default_agent(&self) -> &AgentId {
        // `RuntimeBuilder::start` refuses to build with no agent.
        &self.inner.agents[0]
    }

    /// Whether an agent is hosted here.
    pub fn has_agent(&self, agent: &AgentId) -> bool {
        self.inner.agents.contains(agent)
    }

    /// The conversation log.
    pub fn log(&self) -> &Arc<dyn ConversationLog> {
        &self.inner.log
    }

    /// Whether the runtime still accepts messages.
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }

    /// The live branches, workers and background tasks of every conversation.
    pub fn processes(&self) -> &ProcessRegistry {
        &self.inner.processes
    }

    /// Ends a conversation's task (for a supervisor, when a turn hangs past every limit): the
    /// message it was answering gets a visible error and the rest of its queue a fresh task,
    /// which reloads the history from the log; its processes end as cancelled. Returns `false`
    /// when the conversation has no task.
    ///
    /// The task ends at its next await: one blocking its thread ends only when the thread is
    /// released.
    pub async fn restart_conversation(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        reason: &str,
    ) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let command =
            RouterCommand::Restart { key: (agent.clone(), conversation.clone()), reason: reason.to_owned(), reply };
        self.inner.router.send(command).await.map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    /// Delivers `response` in the context of `target` through the adapter it names, as a
    /// conversation's own replies are (secrets masked, transient failures retried, the outcome
    /// published as an event). For harness messages outside any turn, such as a cron job's
    /// delivery to its target; recording it in the log is the caller's business.
    pub async fn deliver(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        self.inner.outbox.send(target, response).await
    }

    /// The scrubber everything outbound passes; whoever records a message it delivers through
    /// [`deliver`](Self::deliver) scrubs it with this one first, so the log holds what was sent.
    pub fn scrubber(&self) -> &Scrubber {
        self.inner.outbox.scrubber()
    }

    /// This runtime's member name, in a fleet.
    pub fn member(&self) -> Option<&str> {
        self.inner.leases.as_deref().map(Leases::member)
    }

    /// In a fleet, the member running a conversation when it is another one, with where its API
    /// is reached: a request that waits for the conversation's reply (the OpenAI endpoint) is
    /// sent there. Takes the conversation's lease for this runtime when it is free or expired,
    /// and then, as outside a fleet, answers `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the leases can't be read.
    pub async fn runner_elsewhere(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
    ) -> Result<Option<(String, Option<String>)>> {
        let Some(leases) = &self.inner.leases else { return Ok(None) };
        match leases.acquire(agent, conversation).await? {
            Claim::HeldBy(member) => {
                let address = leases.address(&member).await?;
                Ok(Some((member, address)))
            }
            _ => Ok(None),
        }
    }

    /// A status snapshot.
    pub async fn status(&self) -> Result<RuntimeStatus> {
        let (reply, answer) = oneshot::channel();
        self.inner.router.send(RouterCommand::Count(reply)).await.map_err(|_| Error::ShuttingDown)?;
        let conversations = answer.await.map_err(|_| Error::ShuttingDown)?;
        let mut notices = self.inner.engine.notices();
        let fleet = match &self.inner.leases {
            Some(leases) => match leases.status().await {
                Ok(fleet) => Some(fleet),
                Err(error) => {
                    notices.push(format!("can't read the fleet's members: {error}"));
                    None
                }
            },
            None => None,
        };
        Ok(RuntimeStatus {
            agents: self.inner.agents.clone(),
            conversations,
            adapters: self.inner.adapter_names.clone(),
            notices,
            fleet,
        })
    }
}

enum RouterCommand {
    Route(Box<InboundMessage>),
    Count(oneshot::Sender<usize>),
    Restart {
        key: ConversationKey,
        reason: String,
        reply: oneshot::Sender<bool>,
    },
    /// Starts a conversation with nothing to answer, unless it is live: it has results to relay.
    Wake(ConversationKey),
    /// What became of an attempt to take a conversation's lease.
    Leased {
        key: ConversationKey,
        outcome: LeaseOutcome,
    },
    /// The live conversations whose leases to renew, and the route count so far (for `Adopt`).
    Snapshot(oneshot::Sender<(Vec<ConversationKey>, u64)>),
    /// The unhandled messages this member may answer, read after the snapshot with route count
    /// `since`.
    Adopt {
        messages: Vec<InboundMessage>,
        since: u64,
    },
    /// Conversations whose leases another member holds now.
    Lost(Vec<ConversationKey>),
}

/// What became of an attempt to take a conversation's lease.
enum LeaseOutcome {
    /// Taken, with the conversation's unhandled messages, oldest first.
    Held(Vec<InboundMessage>),
    /// Another member holds it.
    HeldBy(String),
    Failed(crate::error::StoreError),
}

type ConversationKey = (AgentId, ConversationId);

/// What a task in the router's set was: a conversation (its key is in `task_keys`), or the
/// answer to a message whose conversation task died.
enum TaskKind {
    Conversation,
    Notice,
    /// Taking a lease, or telling its holder of a message.
    Lease,
}

/// The sentence a person sees when the conversation task handling their message died.
const TASK_FAILED_NOTICE: &str = "⚠️ Something went wrong on my side while answering this; the error was logged.";

/// A conversation with a task: its inbox, and what eviction needs to know of it.
struct Live {
    sender: InboxSender,
    /// The last message routed to it or runtime event about it.
    active_at: Instant,
    /// Asked to end, and no activity since: it is leaving, or it was busy and said no. Either
    /// way it is not asked again (nor counted against the cap) until its next activity.
    evict_pending: bool,
    /// Its current task was asked to end, so a clean return with messages queued means a message
    /// raced the exit (start a new task) rather than a task that gave up on its queue.
    evict_asked: bool,
    /// In a fleet: the messages routed to it, with the route count when each was, so one that
    /// [`RouterCommand::Adopt`] brings again is not answered twice.
    seen: HashMap<MessageId, u64>,
    /// In a fleet: its lease was lost, so its task was ended and ends without answering.
    lost: bool,
}

impl Live {
    fn new(sender: InboxSender) -> Self {
        Self {
            sender,
            active_at: Instant::now(),
            evict_pending: false,
            evict_asked: false,
            seen: HashMap::new(),
            lost: false,
        }
    }

    fn touch(&mut self) {
        self.active_at = Instant::now();
        self.evict_pending = false;
    }
}

struct Router {
    /// Its own inbox, for the tasks it starts to report back (weak: the router ends when every
    /// handle is gone).
    commands: mpsc::WeakSender<RouterCommand>,
    /// In a fleet: the leases conversations run under.
    leases: Option<Arc<dyn Leases>>,
    /// In a fleet: conversations whose lease is being taken, with what was routed to them
    /// meanwhile.
    acquiring: HashMap<ConversationKey, Vec<ConversationInput>>,
    /// How many messages were routed to live conversations (the stamp of `Live::seen`).
    routed: u64,
    engine: Arc<dyn ConversationEngine>,
    log: Arc<dyn ConversationLog>,
    outbox: Outbox,
    shutdown: CancellationToken,
    grace: Duration,
    conversations: HashMap<ConversationKey, Live>,
    tasks: JoinSet<TaskKind>,
    task_keys: HashMap<tokio::task::Id, ConversationKey>,
    /// The task of each conversation that has one, for [`RouterCommand::Restart`].
    running: HashMap<ConversationKey, tokio::task::AbortHandle>,
    processes: ProcessRegistry,
    /// Runtime events, read for each conversation's last activity; `None` once closed.
    activity: Option<broadcast::Receiver<RuntimeEvent>>,
    idle_timeout: Option<Duration>,
    max_live: Option<usize>,
    /// When to look for conversations to evict; `None` when nothing is ever evicted.
    sweep: Option<Interval>,
}

/// Waits for the next tick of `sweep`, or forever without one.
async fn next_sweep(sweep: Option<&mut Interval>) {
    match sweep {
        Some(sweep) => {
            sweep.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Waits for the next runtime event, or forever once the bus is closed.
async fn next_event(
    activity: Option<&mut broadcast::Receiver<RuntimeEvent>>,
) -> std::result::Result<RuntimeEvent, broadcast::error::RecvError> {
    match activity {
        Some(activity) => activity.recv().await,
        None => std::future::pending().await,
    }
}

/// The conversation an event is about, if any.
fn event_conversation(event: &RuntimeEvent) -> Option<ConversationKey> {
    match event {
        RuntimeEvent::MessageReceived { agent, conversation, .. }
        | RuntimeEvent::ResponseSent { agent, conversation, .. }
        | RuntimeEvent::DeliveryFailed { agent, conversation, .. }
        | RuntimeEvent::TurnStarted { agent, conversation }
        | RuntimeEvent::ReplyDelta { agent, conversation, .. }
        | RuntimeEvent::ReplyDiscarded { agent, conversation, .. }
        | RuntimeEvent::TurnFinished { agent, conversation, .. } => Some((agent.clone(), conversation.clone())),
        RuntimeEvent::Process(event) => Some((event.agent.clone(), event.conversation.clone())),
    }
}

impl Router {
    async fn run(mut self, mut commands: mpsc::Receiver<RouterCommand>) {
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(RouterCommand::Route(message)) => self.route(*message),
                    Some(RouterCommand::Count(reply)) => {
                        let _ = reply.send(self.conversations.len());
                    }
                    Some(RouterCommand::Restart { key, reason, reply }) => {
                        let _ = reply.send(self.restart(&key, &reason));
                    }
                    Some(RouterCommand::Wake(key)) => self.wake(key),
                    Some(RouterCommand::Leased { key, outcome }) => self.leased(key, outcome),
                    Some(RouterCommand::Snapshot(reply)) => {
                        let live = self.conversations.iter().filter(|(_, live)| !live.lost).map(|(key, _)| key.clone());
                        let _ = reply.send((live.collect(), self.routed));
                    }
                    Some(RouterCommand::Adopt { messages, since }) => self.adopt(messages, since),
                    Some(RouterCommand::Lost(keys)) => self.lost(&keys),
                    None => break,
                },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.reap(joined),
                event = next_event(self.activity.as_mut()) => self.on_event(event),
                () = next_sweep(self.sweep.as_mut()), if !self.conversations.is_empty() => self.sweep(),
            }
        }
        self.drain().await;
    }

    /// Notes the activity an event shows.
    fn on_event(&mut self, event: std::result::Result<RuntimeEvent, broadcast::error::RecvError>) {
        match event {
            Ok(event) => {
                if let Some(live) = event_conversation(&event).and_then(|key| self.conversations.get_mut(&key)) {
                    live.touch();
                }
            }
            // Events were missed: any conversation may have been active, so count all as active
            // now rather than evict one that is not idle.
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "router missed runtime events; counting every conversation as active");
                for live in self.conversations.values_mut() {
                    live.touch();
                }
            }
            Err(broadcast::error::RecvError::Closed) => self.activity = None,
        }
    }

    /// Asks conversations idle past the timeout, then those beyond the cap, to end.
    fn sweep(&mut self) {
        if let Some(idle) = self.idle_timeout {
            let now = Instant::now();
            let due: Vec<ConversationKey> = self
                .conversations
                .iter()
                .filter(|(_, live)| !live.evict_pending && now.saturating_duration_since(live.active_at) >= idle)
                .map(|(key, _)| key.clone())
                .collect();
            if !due.is_empty() {
                let busy = self.busy_conversations();
                for key in due.iter().filter(|key| !busy.contains(*key)) {
                    self.request_eviction(key);
                }
            }
        }
        self.enforce_cap(None);
    }

    /// Beyond `max_live` live conversations (not counting those asked to end already), asks the
    /// least recently active ones without a live process to end; never `spare`.
    fn enforce_cap(&mut self, spare: Option<&ConversationKey>) {
        let Some(cap) = self.max_live else { return };
        let leaving = self.conversations.values().filter(|live| live.evict_pending).count();
        let excess = (self.conversations.len() - leaving).saturating_sub(cap);
        if excess == 0 {
            return;
        }
        let busy = self.busy_conversations();
        let mut candidates: Vec<(Instant, &ConversationKey)> = self
            .conversations
            .iter()
            .filter(|(key, live)| !live.evict_pending && Some(*key) != spare && !busy.contains(*key))
            .map(|(key, live)| (live.active_at, key))
            .collect();
        if candidates.len() > excess {
            candidates.select_nth_unstable_by_key(excess - 1, |(active_at, _)| *active_at);
            candidates.truncate(excess);
        }
        let chosen: Vec<ConversationKey> = candidates.into_iter().map(|(_, key)| key.clone()).collect();
        for key in &chosen {
            self.request_eviction(key);
        }
    }

    /// The conversations with a live branch, worker or background task.
    fn busy_conversations(&self) -> std::collections::HashSet<ConversationKey> {
        self.processes.list().into_iter().map(|process| (process.agent, process.conversation)).collect()
    }

    fn request_eviction(&mut self, key: &ConversationKey) {
        let Some(live) = self.conversations.get_mut(key) else { return };
        tracing::debug!(agent = %key.0, conversation = %key.1, "asking an idle conversation to end");
        live.sender.request_eviction();
        live.evict_pending = true;
        live.evict_asked = true;
    }

    fn route(&mut self, message: InboundMessage) {
        let Some(agent) = message.agent.clone() else {
            tracing::error!(id = %message.id, "routed a message with no agent; dropped");
            return;
        };
        let key = (agent, message.conversation.clone());
        if self.leases.is_some() {
            if let Some(live) = self.conversations.get_mut(&key) {
                if live.seen.contains_key(&message.id) {
                    return;
                }
                live.seen.insert(message.id.clone(), self.routed);
                self.routed += 1;
            } else if let Some(queued) = self.acquiring.get_mut(&key) {
                if !queued.iter().any(|input| input.message().is_some_and(|m| m.id == message.id)) {
                    queued.push(input_for(message));
                }
                return;
            } else {
                self.acquiring.insert(key.clone(), vec![input_for(message)]);
                self.acquire(key);
                return;
            }
        }
        self.outbox.publish(RuntimeEvent::MessageReceived {
            agent: key.0.clone(),
            conversation: key.1.clone(),
            message_id: message.id.clone(),
        });
        let input = input_for(message);
        if let Some(live) = self.conversations.get_mut(&key) {
            live.sender.send(input);
            live.touch();
            return;
        }
        let (sender, inbox) = inbox();
        sender.send(input);
        self.spawn_conversation(key.clone(), inbox);
        self.conversations.insert(key.clone(), Live::new(sender));
        if self.max_live.is_some_and(|cap| self.conversations.len() > cap) {
            self.enforce_cap(Some(&key));
        }
    }

    /// Starts a conversation that is not live with an empty inbox (it has work of its own to
    /// resume, such as results to relay).
    fn wake(&mut self, key: ConversationKey) {
        if self.conversations.contains_key(&key) || self.acquiring.contains_key(&key) {
            return;
        }
        if self.leases.is_some() {
            self.acquiring.insert(key.clone(), Vec::new());
            self.acquire(key);
            return;
        }
        let (sender, inbox) = inbox();
        self.spawn_conversation(key.clone(), inbox);
        self.conversations.insert(key.clone(), Live::new(sender));
        if self.max_live.is_some_and(|cap| self.conversations.len() > cap) {
            self.enforce_cap(Some(&key));
        }
    }

    /// Takes the lease of `key` off the router's loop; the outcome comes back as
    /// [`RouterCommand::Leased`].
    fn acquire(&mut self, key: ConversationKey) {
        let (Some(leases), Some(commands)) = (self.leases.clone(), self.commands.upgrade()) else { return };
        let (log, outbox, processes) = (self.log.clone(), self.outbox.clone(), self.processes.clone());
        self.tasks.spawn(async move {
            let outcome = match leases.acquire(&key.0, &key.1).await {
                Ok(Claim::HeldBy(holder)) => LeaseOutcome::HeldBy(holder),
                Ok(_) => {
                    // What a member that ran it before left running is settled before it starts
                    // here (so nothing it starts can be taken for that).
                    if let Some(runs) = log.process_runs() {
                        let running: Vec<ProcessId> = processes
                            .list()
                            .into_iter()
                            .filter(|process| process.agent == key.0 && process.conversation == key.1)
                            .map(|process| process.process)
                            .collect();
                        crate::journal::settle_taken_over(&*runs, &*log, &outbox, &key.0, &key.1, &running).await;
                    }
                    match log.unhandled_messages_in(&key.0, &key.1).await {
                        Ok(messages) => LeaseOutcome::Held(messages),
                        Err(error) => LeaseOutcome::Failed(error),
                    }
                }
                Err(error) => LeaseOutcome::Failed(error),
            };
            // Fails only when the router is gone, and then nothing waits for it.
            let _ = commands.send(RouterCommand::Leased { key, outcome }).await;
            TaskKind::Lease
        });
    }

    /// Starts the conversation whose lease was taken, with its unhandled messages from the log
    /// and then whatever was routed to it meanwhile and is not among them; or leaves its messages
    /// to the holder.
    fn leased(&mut self, key: ConversationKey, outcome: LeaseOutcome) {
        let Some(queued) = self.acquiring.remove(&key) else { return };
        match outcome {
            LeaseOutcome::Held(messages) => {
                let (sender, inbox) = inbox();
                let mut live = Live::new(sender);
                let inputs = messages.into_iter().map(input_for).chain(queued);
                let mut count = 0_usize;
                for input in inputs {
                    count += 1;
                    if let Some(message) = input.message() {
                        if live.seen.contains_key(&message.id) {
                            continue;
                        }
                        live.seen.insert(message.id.clone(), self.routed);
                        self.routed += 1;
                        self.outbox.publish(RuntimeEvent::MessageReceived {
                            agent: key.0.clone(),
                            conversation: key.1.clone(),
                            message_id: message.id.clone(),
                        });
                    }
                    live.sender.send(input);
                }
                tracing::debug!(agent = %key.0, conversation = %key.1, queued = count, "took the conversation's lease");

                self.spawn_conversation(key.clone(), inbox);
                self.conversations.insert(key.clone(), live);
                if self.max_live.is_some_and(|cap| self.conversations.len() > cap) {
                    self.enforce_cap(Some(&key));
                }
            }
            LeaseOutcome::HeldBy(holder) => {
                tracing::debug!(agent = %key.0, conversation = %key.1, %holder,
                    "another member runs this conversation; its messages wait in the log for it");
                if queued.iter().any(|input| input.message().is_some())
                    && let Some(leases) = self.leases.clone()
                {
                    self.tasks.spawn(async move {
                        if let Err(error) = leases.hand_over(&key.0, &key.1, &holder).await {
                            tracing::warn!(%error, %holder, "can't tell the member running a conversation of its message; it finds it at its next look");
                        }
                        TaskKind::Lease
                    });
                }
            }
            LeaseOutcome::Failed(error) => {
                tracing::warn!(agent = %key.0, conversation = %key.1, %error,
                    "can't take the conversation's lease; its messages wait in the log and are tried again at the next look");
            }
        }
    }

    /// Routes the messages a look at the leases found, after forgetting the messages routed
    /// before that look which it found handled.
    fn adopt(&mut self, messages: Vec<InboundMessage>, since: u64) {
        let unhandled: HashSet<&MessageId> = messages.iter().map(|message| &message.id).collect();
        for live in self.conversations.values_mut() {
            live.seen.retain(|id, routed| *routed >= since || unhandled.contains(id));
        }
        for message in messages {
            self.route(message);
        }
    }

    /// Ends the tasks of conversations whose leases were lost, without answering their messages:
    /// they are the new holder's.
    fn lost(&mut self, keys: &[ConversationKey]) {
        for key in keys {
            let Some(live) = self.conversations.get_mut(key) else { continue };
            tracing::warn!(agent = %key.0, conversation = %key.1, "lost the conversation's lease; ending its task here");
            live.lost = true;
            live.sender.close();
            if let Some(task) = self.running.get(key) {
                task.abort();
            }
        }
    }

    fn spawn_conversation(&mut self, key: ConversationKey, inbox: Inbox) {
        let ctx = ConversationContext::new(
            key.0.clone(),
            key.1.clone(),
            self.outbox.clone(),
            self.log.clone(),
            self.shutdown.child_token(),
        )
        .with_processes(self.processes.clone());
        let future = self.engine.run_conversation(ctx, inbox);
        let handle = self.tasks.spawn(async move {
            future.await;
            TaskKind::Conversation
        });
        self.task_keys.insert(handle.id(), key.clone());
        self.running.insert(key, handle);
    }

    /// Aborts a conversation's task; [`Router::reap`] then answers and restarts as for any task
    /// that died.
    fn restart(&mut self, key: &ConversationKey, reason: &str) -> bool {
        let Some(task) = self.running.get(key) else { return false };
        tracing::error!(agent = %key.0, conversation = %key.1, reason, "ending a conversation's task");
        task.abort();
        true
    }

    fn reap(&mut self, joined: Result<(tokio::task::Id, TaskKind), tokio::task::JoinError>) {
        let (id, failure) = match joined {
            Ok((_, TaskKind::Notice | TaskKind::Lease)) => return,
            Ok((id, TaskKind::Conversation)) => (id, None),
            Err(error) => (error.id(), Some(error)),
        };
        let Some(key) = self.task_keys.remove(&id) else {
            if let Some(error) = failure {
                tracing::error!(%error, "a task answering a failed message failed");
            }
            return;
        };
        self.running.remove(&key);
        if self.conversations.get(&key).is_some_and(|live| live.lost) {
            self.conversations.remove(&key);
            return;
        }
        let Some(live) = self.conversations.get_mut(&key) else { return };
        let (inbox, in_progress) = live.sender.reopen();
        let evicted = std::mem::take(&mut live.evict_asked);
        live.evict_pending = false;
        match (failure, in_progress.is_empty()) {
            (None, true) if inbox.is_empty() => {
                // The conversation returned (evicted, or on its own) with nothing left: it is
                // gone until its next message, which starts a new task. No message can slip in
                // between: only this actor routes.
                if evicted {
                    tracing::debug!(agent = %key.0, conversation = %key.1, "idle conversation evicted");
                }
                self.conversations.remove(&key);
            }
            (None, true) if evicted => {
                // A message raced the eviction: it was routed after the conversation took the
                // request. It is queued in the inbox, so a new task answers it (and anything
                // behind it) in order, loading the history from the log.
                tracing::debug!(agent = %key.0, conversation = %key.1, queued = inbox.len(),
                    "a message arrived while an idle conversation was ending; starting a new task");
                self.spawn_conversation(key, inbox);
            }
            (failure, false) => {
                // It died on a message (or a burst it was gathering): those get a visible error,
                // the rest of the queue a fresh task. Each failure consumes the messages it
                // happened on, so a message that always fails cannot make this loop.
                let ids: Vec<_> = in_progress.iter().map(|message| message.id.to_string()).collect();
                tracing::error!(agent = %key.0, conversation = %key.1, messages = ?ids,
                    error = ?failure, "a conversation task ended in the middle of a message; restarting it");
                for message in in_progress {
                    self.answer_with_notice(message);
                }
                self.spawn_conversation(key, inbox);
            }
            (failure, true) => {
                // It died (or returned) without taking a message, so restarting it could fail the
                // same way forever: answer what is queued and let the next message try again.
                tracing::error!(agent = %key.0, conversation = %key.1, error = ?failure,
                    "a conversation task ended without taking its messages; answering them with an error");
                if let Some(live) = self.conversations.remove(&key) {
                    for message in live.sender.drain().into_iter().filter_map(ConversationInput::into_message) {
                        self.answer_with_notice(message);
                    }
                }
            }
        }
    }

    /// Records and delivers the error notice for a message its conversation task could not
    /// answer, so it is never left silent.
    fn answer_with_notice(&mut self, message: InboundMessage) {
        let log = self.log.clone();
        let outbox = self.outbox.clone();
        self.tasks.spawn(async move {
            if let Some(agent) = message.agent.clone() {
                let notice = StoredMessage::new(
                    agent,
                    message.conversation.clone(),
                    Role::System,
                    "spacebot",
                    TASK_FAILED_NOTICE,
                );
                if let Err(error) = log.record_reply(&notice, std::slice::from_ref(&message.id)).await {
                    tracing::error!(%error, "can't record the error notice");
                }
            }
            if let Err(error) = outbox.send(&message, OutboundResponse::text(TASK_FAILED_NOTICE)).await {
                tracing::error!(%error, "can't deliver the error notice");
            }
            TaskKind::Notice
        });
    }

    async fn drain(mut self) {
        // Closing the inboxes lets idle conversations return at once; what is still queued stays
        // unhandled in the log and is answered after the next start.
        for live in self.conversations.values() {
            live.sender.close();
        }
        let drained = tokio::time::timeout(self.grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                remaining = self.tasks.len(),
                grace = ?self.grace,
                "conversations still busy after the shutdown grace period; cancelling them"
            );
            self.tasks.shutdown().await;
        }
    }
}

/// Renews the lease of the connection `adapter`; `false` when it is lost (another member holds
/// it, or it could not be renewed for two thirds of the lease time, after which others may take
/// it), and the adapter must stop.
async fn renew_connection(leases: Option<&dyn Leases>, adapter: &str, renewed_at: &mut Instant) -> bool {
    let Some(leases) = leases else { return true };
    match leases.acquire_connection(adapter).await {
        Ok(Claim::Held) => {
            *renewed_at = Instant::now();
            true
        }
        Ok(Claim::HeldBy(holder)) => {
            tracing::warn!(adapter, %holder, "lost the connection's lease; stopping it here");
            false
        }
        Err(error) if renewed_at.elapsed() < leases.lease_time() * 2 / 3 => {
            tracing::warn!(adapter, %error, "can't renew the connection's lease; trying again");
            true
        }
        Err(error) => {
            tracing::error!(adapter, %error,
                "can't renew the connection's lease, which other members may take from now on; stopping it here");
            false
        }
    }
}

/// Waits until this member holds the lease of the connection `adapter`, trying every third of
/// the lease time; returns the timer to renew it by, or `None` at shutdown.
async fn hold_connection(leases: &dyn Leases, adapter: &str, shutdown: &CancellationToken) -> Option<Interval> {
    let period = (leases.lease_time() / 3).max(Duration::from_millis(10));
    let mut told = None;
    loop {
        match leases.acquire_connection(adapter).await {
            Ok(Claim::Held) => {
                tracing::info!(adapter, "holding the connection's lease; starting it here");
                let mut renewal = tokio::time::interval_at(Instant::now() + period, period);
                renewal.set_missed_tick_behavior(MissedTickBehavior::Delay);
                return Some(renewal);
            }
            Ok(Claim::HeldBy(holder)) => {
                if told.as_ref() != Some(&holder) {
                    tracing::info!(adapter, %holder, "another member runs this connection; taking over if it stops");
                    told = Some(holder);
                }
            }
            Err(error) => tracing::warn!(adapter, %error, "can't take the connection's lease; trying again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// The input a message is to its conversation: control commands are recognised here and travel
/// on the inbox's control lane, so the conversation sees them ahead of queued messages and while
/// a turn runs.
fn input_for(message: InboundMessage) -> ConversationInput {
    match ControlCommand::parse(&message) {
        Some(command) => ConversationInput::Control(command, message),
        None => ConversationInput::Message(message),
    }
}

/// A fleet member's lease keeping (see [`crate::lease`]): every third of the lease time it renews
/// the leases of the live conversations, ends those lost, and routes the messages it may answer;
/// it also looks when another member hands it a message. At the end (after the router, so no
/// conversation runs here) it gives every lease back.
async fn keep_leases(leases: Arc<dyn Leases>, router: mpsc::Sender<RouterCommand>, stop: CancellationToken) {
    let lease_time = leases.lease_time();
    let mut tick = tokio::time::interval((lease_time / 3).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut renewed_at = Instant::now();
    loop {
        let renew = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => true,
            () = leases.handed() => false,
        };
        let (reply, answer) = oneshot::channel();
        if router.send(RouterCommand::Snapshot(reply)).await.is_err() {
            break;
        }
        let Ok((live, since)) = answer.await else { break };
        if renew {
            match leases.renew(&live).await {
                Ok(lost) => {
                    renewed_at = Instant::now();
                    if !lost.is_empty() && router.send(RouterCommand::Lost(lost)).await.is_err() {
                        break;
                    }
                }
                Err(error) if renewed_at.elapsed() >= lease_time * 2 / 3 => {
                    tracing::error!(%error, conversations = live.len(),
                        "can't renew the leases, which other members may take from now on; ending every conversation here");
                    if router.send(RouterCommand::Lost(live)).await.is_err() {
                        break;
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "can't renew the leases; trying again");
                    continue;
                }
            }
        }
        match leases.claimable().await {
            Ok(messages) => {
                if router.send(RouterCommand::Adopt { messages, since }).await.is_err() {
                    break;
                }
            }
            Err(error) => tracing::warn!(%error, "can't read the messages waiting for this member"),
        }
    }
    if let Err(error) = leases.release_all().await {
        tracing::warn!(%error, "can't give the leases back; other members take them when they expire");
    }
}

async fn supervise_adapter(
    adapter: Arc<dyn MessagingAdapter>,
    handle: RuntimeHandle,
    shutdown: CancellationToken,
    initial_backoff: Duration,
    max_backoff: Duration,
) {
    let name = adapter.name().to_owned();
    // In a fleet, a connection the platform gives once runs only under its lease.
    let exclusive = handle.inner.leases.clone().filter(|_| adapter.exclusive());
    let mut backoff = initial_backoff;
    loop {
        let mut renewal = match &exclusive {
            Some(leases) => {
                let Some(renewal) = hold_connection(leases.as_ref(), &name, &shutdown).await else { return };
                Some(renewal)
            }
            None => None,
        };
        let mut renewed_at = Instant::now();
        let start = adapter.start();
        tokio::pin!(start);
        // The lease is renewed while the adapter connects too; lost meanwhile, the connecting
        // stops and the lease is waited for again.
        let started = loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                started = &mut start => break Some(started),
                _ = next_sweep(renewal.as_mut()) => {
                    if !renew_connection(exclusive.as_deref(), &name, &mut renewed_at).await {
                        break None;
                    }
                }
            }
        };
        let Some(started) = started else { continue };
        match started {
            Ok(mut stream) => {
                tracing::info!(adapter = %name, "adapter started");
                let mut received_any = false;
                let mut unrecorded = false;
                let mut lost_lease = false;
                loop {
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = stream.next() => next,
                        _ = next_sweep(renewal.as_mut()) => {
                            if renew_connection(exclusive.as_deref(), &name, &mut renewed_at).await {
                                continue;
                            }
                            // Ending the stream closes the connection, as for a reconnect.
                            lost_lease = true;
                            break;
                        }
                    };
                    let Some(mut message) = next else { break };
                    received_any = true;
                    if message.adapter.is_empty() {
                        message.adapter.clone_from(&name);
                    }
                    match handle.submit(message).await {
                        Ok(_) => backoff = initial_backoff,
                        Err(Error::ShuttingDown) => return,
                        Err(error @ Error::Store(_)) => {
                            // The message is not durable. Dropping the stream without reading on
                            // closes the connection before the adapter acknowledges the message,
                            // so a platform that redelivers (Slack) sends it again after the
                            // reconnect instead of losing it.
                            tracing::error!(adapter = %name, %error, retry_in = ?backoff,
                                "can't record an inbound message; reconnecting so the platform redelivers it");
                            unrecorded = true;
                            break;
                        }
                        // Refused for what it is (an unknown agent): no redelivery would help.
                        Err(error) => tracing::error!(adapter = %name, %error, "inbound message not accepted"),
                    }
                }
                drop(stream);
                if lost_lease {
                    continue;
                }
                tracing::warn!(adapter = %name, "adapter stream ended; restarting");
                if received_any && !unrecorded {
                    continue;
                }
            }
            Err(error) => {
                tracing::warn!(adapter = %name, %error, retry_in = ?backoff, "adapter failed to start");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

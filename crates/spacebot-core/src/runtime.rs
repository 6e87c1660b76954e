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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::adapter::MessagingAdapter;
use crate::engine::{AdapterSet, ConversationContext, ConversationEngine, ConversationInput, DeliveryPolicy, Outbox};
use crate::error::{Error, Result};
use crate::event::RuntimeEvent;
use crate::ids::{AgentId, ConversationId, MessageId};
use crate::message::InboundMessage;
use crate::store::ConversationLog;

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
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            delivery: DeliveryPolicy::default(),
            adapter_backoff: Duration::from_secs(1),
            adapter_backoff_max: Duration::from_secs(60),
        }
    }
}

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
}

/// Builds a [`Runtime`] from trait objects.
#[derive(Default)]
pub struct RuntimeBuilder {
    engine: Option<Arc<dyn ConversationEngine>>,
    log: Option<Arc<dyn ConversationLog>>,
    adapters: Vec<Arc<dyn MessagingAdapter>>,
    agents: Vec<AgentId>,
    settings: RuntimeSettings,
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

    /// Sets the tunables.
    pub fn settings(mut self, settings: RuntimeSettings) -> Self {
        self.settings = settings;
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
        let (events, _) = broadcast::channel(1024);
        let adapters = Arc::new(AdapterSet::new(self.adapters));
        let outbox = Outbox::new(adapters.clone(), events.clone(), self.settings.delivery);
        let shutdown = CancellationToken::new();
        let (router_tx, router_rx) = mpsc::channel(1024);

        let router = Router {
            engine,
            log: log.clone(),
            outbox,
            shutdown: shutdown.child_token(),
            grace: self.settings.shutdown_grace,
            conversations: HashMap::new(),
            tasks: JoinSet::new(),
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
            }),
        };

        let pending = log.unhandled().await?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming messages left unanswered by the previous run");
        }
        for message in pending {
            handle.route(message).await?;
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

        Ok(Runtime { handle, shutdown, router_task, supervisors, adapters, grace: self.settings.shutdown_grace })
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
        while self.supervisors.join_next().await.is_some() {}
        for adapter in self.adapters.iter() {
            if tokio::time::timeout(self.grace, adapter.shutdown()).await.is_err() {
                tracing::warn!(adapter = adapter.name(), "adapter did not shut down in time");
            }
        }
        if let Err(error) = (&mut self.router_task).await {
            tracing::error!(%error, "router task failed");
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.router_task.abort();
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
}

impl RuntimeHandle {
    /// Records `message` durably, then routes it to its conversation.
    ///
    /// Returns once the message is in the log, so a caller can acknowledge the platform. A
    /// message whose id was already recorded is not processed again. The agent is the one the
    /// message names, else the default (first) agent.
    pub async fn submit(&self, mut message: InboundMessage) -> Result<MessageId> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let agent = match message.agent.take() {
            Some(agent) if self.inner.agents.contains(&agent) => agent,
            Some(agent) => return Err(Error::UnknownAgent(agent)),
            None => self.default_agent().clone(),
        };
        message.agent = Some(agent);
        if message.adapter.is_empty() {
            message.adapter = message.source.clone();
        }
        let id = message.id.clone();
        if self.inner.log.record_inbound(&message).await? {
            self.route(message).await?;
        } else {
            tracing::debug!(%id, "duplicate inbound message ignored");
        }
        Ok(id)
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

    /// A status snapshot.
    pub async fn status(&self) -> Result<RuntimeStatus> {
        let (reply, answer) = oneshot::channel();
        self.inner.router.send(RouterCommand::Count(reply)).await.map_err(|_| Error::ShuttingDown)?;
        let conversations = answer.await.map_err(|_| Error::ShuttingDown)?;
        Ok(RuntimeStatus {
            agents: self.inner.agents.clone(),
            conversations,
            adapters: self.inner.adapter_names.clone(),
        })
    }
}

enum RouterCommand {
    Route(Box<InboundMessage>),
    Count(oneshot::Sender<usize>),
}

type ConversationKey = (AgentId, ConversationId);

struct Router {
    engine: Arc<dyn ConversationEngine>,
    log: Arc<dyn ConversationLog>,
    outbox: Outbox,
    shutdown: CancellationToken,
    grace: Duration,
    conversations: HashMap<ConversationKey, mpsc::UnboundedSender<ConversationInput>>,
    tasks: JoinSet<ConversationKey>,
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
                    None => break,
                },
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => self.reap(joined),
            }
        }
        self.drain().await;
    }

    fn route(&mut self, message: InboundMessage) {
        let Some(agent) = message.agent.clone() else {
            tracing::error!(id = %message.id, "routed a message with no agent; dropped");
            return;
        };
        let key = (agent, message.conversation.clone());
        let mut input = ConversationInput::Message(message);
        if let Some(inbox) = self.conversations.get(&key) {
            match inbox.send(input) {
                Ok(()) => return,
                // The conversation task ended (it failed); start a new one below.
                Err(mpsc::error::SendError(returned)) => input = returned,
            }
        }
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let ctx = ConversationContext::new(
            key.0.clone(),
            key.1.clone(),
            self.outbox.clone(),
            self.log.clone(),
            self.shutdown.child_token(),
        );
        let future = self.engine.run_conversation(ctx, inbox_rx);
        let task_key = key.clone();
        self.tasks.spawn(async move {
            future.await;
            task_key
        });
        // The receiver is alive: it was moved into the task just spawned.
        let _ = inbox_tx.send(input);
        self.conversations.insert(key, inbox_tx);
    }

    fn reap(&mut self, joined: Result<ConversationKey, tokio::task::JoinError>) {
        match joined {
            Ok(key) => {
                // A conversation that returned on its own is gone; the next message restarts it.
                if self.conversations.get(&key).is_some_and(|inbox| inbox.is_closed()) {
                    self.conversations.remove(&key);
                }
            }
            Err(error) => {
                tracing::error!(%error, "a conversation task failed; it restarts on the next message");
                self.conversations.retain(|_, inbox| !inbox.is_closed());
            }
        }
    }

    async fn drain(mut self) {
        // Closing the inboxes lets idle conversations return at once.
        self.conversations.clear();
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

async fn supervise_adapter(
    adapter: Arc<dyn MessagingAdapter>,
    handle: RuntimeHandle,
    shutdown: CancellationToken,
    initial_backoff: Duration,
    max_backoff: Duration,
) {
    let name = adapter.name().to_owned();
    let mut backoff = initial_backoff;
    loop {
        let started = tokio::select! {
            () = shutdown.cancelled() => return,
            started = adapter.start() => started,
        };
        match started {
            Ok(mut stream) => {
                tracing::info!(adapter = %name, "adapter started");
                let mut received_any = false;
                loop {
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = stream.next() => next,
                    };
                    let Some(mut message) = next else { break };
                    received_any = true;
                    backoff = initial_backoff;
                    if message.adapter.is_empty() {
                        message.adapter.clone_from(&name);
                    }
                    if let Err(error) = handle.submit(message).await {
                        tracing::error!(adapter = %name, %error, "inbound message not accepted");
                        if matches!(error, Error::ShuttingDown) {
                            return;
                        }
                    }
                }
                tracing::warn!(adapter = %name, "adapter stream ended; restarting");
                if received_any {
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

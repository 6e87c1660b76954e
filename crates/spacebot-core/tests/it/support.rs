//! Small in-process fakes of the traits the runtime is wired from: an in-memory conversation
//! log, a scriptable messaging adapter and a scriptable conversation engine.
//!
//! They live in the test binary on purpose: `spacebot-testing` depends on `spacebot-core`, so a
//! dev-dependency on it would compile a second copy of this crate.
//!
//! Every fake announces its changes on a [`Changes`] signal, so a test waits for "the third
//! reply was sent" instead of sleeping. Waits are bounded by [`WAIT`] of (paused) tokio time: a
//! test whose condition never comes true fails instead of hanging.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use spacebot_core::{
    AdapterError, AdapterErrorKind, AgentId, ConversationContext, ConversationEngine, ConversationId,
    ConversationInput, ConversationLog, InboundMessage, InboundStream, Inbox, Lifecycle, MessageId, MessagingAdapter,
    OutboundResponse, ProcessId, ProcessKind, ProcessRecord, Role, Runtime, RuntimeSettings, Sender, StoreError,
    StoredMessage, TerminalState,
};
use tokio_util::sync::CancellationToken;

/// How long (in tokio time, usually paused) a wait may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(600);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A "something changed" signal: fakes bump it, tests wait on a condition.
pub(crate) struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Changes {
    pub(crate) fn bump(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    /// Waits until `condition` holds, failing the test after [`WAIT`].
    pub(crate) async fn until(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let mut changed = self.0.subscribe();
        let wait = async {
            while !condition() {
                changed.changed().await.expect("the sender lives in self");
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            panic!("timed out waiting for {what}");
        }
    }
}

/// A text message from `alice` on the `chat` platform.
pub(crate) fn message(conversation: &str, text: &str) -> InboundMessage {
    InboundMessage::text("chat", conversation, Sender::new("alice"), text)
}

// ---------------------------------------------------------------------------------------------
// Conversation log

struct Inbound {
    message: InboundMessage,
    handled: bool,
}

#[derive(Default)]
struct LogState {
    hang_records: bool,
    failing_records: usize,
    inbound: Vec<Inbound>,
    messages: Vec<StoredMessage>,
}

/// An in-memory [`ConversationLog`].
#[derive(Default)]
pub(crate) struct MemoryLog {
    state: Mutex<LogState>,
    changes: Changes,
}

impl MemoryLog {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records `message` as a previous run would have: stored and unhandled.
    pub(crate) fn seed_unhandled(&self, message: InboundMessage) {
        let mut state = lock(&self.state);
        let agent = message.agent.clone().expect("seeded messages name their agent");
        state.messages.push(StoredMessage::from_inbound(agent, &message));
        state.inbound.push(Inbound { message, handled: false });
    }

    /// Records `message` and marks it handled, with a reply.
    pub(crate) fn seed_handled(&self, message: InboundMessage) {
        let agent = message.agent.clone().expect("seeded messages name their agent");
        let conversation = message.conversation.clone();
        self.seed_unhandled(message);
        let mut state = lock(&self.state);
        let reply = StoredMessage::new(agent, conversation, Role::Assistant, "main", "old reply");
        state.messages.push(reply);
        if let Some(last) = state.inbound.last_mut() {
            last.handled = true;
        }
    }

    /// The next `count` calls to `record_inbound` fail, as a full disk would.
    pub(crate) fn fail_records(&self, count: usize) {
        lock(&self.state).failing_records = count;
    }

    /// Every call to `record_inbound` from now on never returns, as a wedged database would.
    pub(crate) fn hang_records(&self) {
        lock(&self.state).hang_records = true;
    }

    /// Every recorded inbound message, in order.
    pub(crate) fn inbound(&self) -> Vec<InboundMessage> {
        lock(&self.state).inbound.iter().map(|entry| entry.message.clone()).collect()
    }

    /// Whether the inbound message with this id was marked handled.
    pub(crate) fn is_handled(&self, id: &MessageId) -> bool {
        lock(&self.state).inbound.iter().any(|entry| &entry.message.id == id && entry.handled)
    }

    /// Waits until the inbound message with this id is handled.
    pub(crate) async fn until_handled(&self, id: &MessageId) {
        self.changes.until(&format!("message {id} to be handled"), || self.is_handled(id)).await;
    }
}

#[async_trait]
impl ConversationLog for MemoryLog {
    async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError> {
        let Some(agent) = message.agent.clone() else {
            return Err(StoreError::new("inbound message without an agent", false));
        };
        if lock(&self.state).hang_records {
            std::future::pending::<()>().await;
        }
        let mut state = lock(&self.state);
        if state.failing_records > 0 {
            state.failing_records -= 1;
            return Err(StoreError::new("disk full", false));
        }
        let duplicate =
            state.inbound.iter().any(|entry| entry.message.id == message.id && entry.message.agent == message.agent);
        if duplicate {
            return Ok(false);
        }
        state.messages.push(StoredMessage::from_inbound(agent, message));
        state.inbound.push(Inbound { message: message.clone(), handled: false });
        drop(state);
        self.changes.bump();
        Ok(true)
    }

    async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        state.messages.push(message.clone());
        for entry in &mut state.inbound {
            if entry.message.agent.as_ref() == Some(&message.agent) && answers.contains(&entry.message.id) {
                entry.handled = true;
            }
        }
        drop(state);
        self.changes.bump();
        Ok(())
    }

    async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        for entry in &mut state.inbound {
            if entry.message.agent.as_ref() == Some(agent) && ids.contains(&entry.message.id) {
                entry.handled = true;
            }
        }
        drop(state);
        self.changes.bump();
        Ok(())
    }

    async fn history(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let state = lock(&self.state);
        let matching: Vec<_> =
            state.messages.iter().filter(|m| &m.agent == agent && &m.conversation == conversation).cloned().collect();
        let skip = matching.len().saturating_sub(limit);
        Ok(matching.into_iter().skip(skip).collect())
    }

    async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError> {
        Ok(lock(&self.state).inbound.iter().filter(|entry| !entry.handled).map(|entry| entry.message.clone()).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Messaging adapter

/// What one call to [`FakeAdapter::send`] does, when scripted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SendScript {
    /// Fails with this kind.
    Fail(AdapterErrorKind),
    /// Never answers.
    Hang,
}

/// One call to `send`.
#[derive(Debug, Clone)]
pub(crate) struct SendAttempt {
    pub(crate) at: Instant,
    pub(crate) target: InboundMessage,
    pub(crate) response: OutboundResponse,
    pub(crate) delivered: bool,
}

#[derive(Default)]
struct AdapterState {
    start_failures: usize,
    start_hangs: bool,
    start_times: Vec<Instant>,
    connection: Option<mpsc::UnboundedSender<InboundMessage>>,
    connections: usize,
    send_script: VecDeque<SendScript>,
    attempts: Vec<SendAttempt>,
    shutdown_calls: usize,
    sends_after_shutdown: usize,
    exclusive: bool,
}

/// A [`MessagingAdapter`] whose inbound stream the test feeds and whose sends it inspects.
pub(crate) struct FakeAdapter {
    name: String,
    state: Mutex<AdapterState>,
    changes: Changes,
}

impl FakeAdapter {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        Arc::new(Self { name: name.to_owned(), state: Mutex::default(), changes: Changes::default() })
    }

    /// Makes it a connection one fleet member runs at a time.
    pub(crate) fn make_exclusive(&self) {
        lock(&self.state).exclusive = true;
    }

    /// The next `count` calls to `start` fail with a transient error.
    pub(crate) fn fail_starts(&self, count: usize) {
        lock(&self.state).start_failures = count;
    }

    /// Every call to `start` from now on never returns.
    pub(crate) fn hang_starts(&self) {
        lock(&self.state).start_hangs = true;
    }

    /// Scripts the next calls to `send`, in order; unscripted calls deliver.
    pub(crate) fn script_sends(&self, script: impl IntoIterator<Item = SendScript>) {
        lock(&self.state).send_script.extend(script);
    }

    /// When each call to `start` happened.
    pub(crate) fn start_times(&self) -> Vec<Instant> {
        lock(&self.state).start_times.clone()
    }

    pub(crate) fn start_calls(&self) -> usize {
        lock(&self.state).start_times.len()
    }

    pub(crate) fn shutdown_calls(&self) -> usize {
        lock(&self.state).shutdown_calls
    }

    pub(crate) fn sends_after_shutdown(&self) -> usize {
        lock(&self.state).sends_after_shutdown
    }

    /// Every call to `send`.
    pub(crate) fn attempts(&self) -> Vec<SendAttempt> {
        lock(&self.state).attempts.clone()
    }

    /// The texts delivered, in order.
    pub(crate) fn delivered_texts(&self) -> Vec<String> {
        lock(&self.state)
            .attempts
            .iter()
            .filter(|a| a.delivered)
            .filter_map(|a| a.response.text_content().map(str::to_owned))
            .collect()
    }

    /// Waits until `count` successful starts have happened.
    pub(crate) async fn until_connected(&self, count: usize) {
        self.changes
            .until(&format!("{count} connections of {}", self.name), || lock(&self.state).connections >= count)
            .await;
    }

    /// Waits until `count` calls to `start` have happened.
    pub(crate) async fn until_start_calls(&self, count: usize) {
        self.changes.until(&format!("{count} start calls"), || self.start_calls() >= count).await;
    }

    /// Waits until a text containing `text` was delivered.
    pub(crate) async fn until_delivered(&self, text: &str) {
        self.changes.until(&format!("delivery of {text:?}"), || self.delivered_texts().iter().any(|t| t == text)).await;
    }

    /// Waits until `count` texts were delivered.
    pub(crate) async fn until_delivered_count(&self, count: usize) {
        self.changes.until(&format!("{count} deliveries"), || self.delivered_texts().len() >= count).await;
    }

    /// Whether the current connection's stream is still read by someone.
    pub(crate) fn stream_is_open(&self) -> bool {
        lock(&self.state).connection.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Hands a message to the runtime through the current connection.
    pub(crate) fn push(&self, message: InboundMessage) {
        let state = lock(&self.state);
        let connection = state.connection.as_ref().expect("the adapter is connected");
        connection.send(message).expect("the runtime reads the stream");
    }

    /// Ends the current inbound stream, as a dropped platform connection would.
    pub(crate) fn disconnect(&self) {
        lock(&self.state).connection = None;
    }
}

#[async_trait]
impl MessagingAdapter for FakeAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn exclusive(&self) -> bool {
        lock(&self.state).exclusive
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let hang = {
            let mut state = lock(&self.state);
            state.start_times.push(Instant::now());
            state.start_hangs
        };
        self.changes.bump();
        if hang {
            std::future::pending::<()>().await;
        }
        let mut state = lock(&self.state);
        if state.start_failures > 0 {
            state.start_failures -= 1;
            return Err(AdapterError::transient(&self.name, "injected start failure"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state.connection = Some(tx);
        state.connections += 1;
        drop(state);
        self.changes.bump();
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(Box::pin(stream))
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let (script, shut) = {
            let mut state = lock(&self.state);
            let script = state.send_script.pop_front();
            let shut = state.shutdown_calls > 0;
            if shut {
                state.sends_after_shutdown += 1;
            }
            let delivered = script.is_none() && !shut;
            state.attempts.push(SendAttempt { at: Instant::now(), target: target.clone(), response, delivered });
            (script, shut)
        };
        self.changes.bump();
        if shut {
            return Err(AdapterError::permanent(&self.name, "the adapter was shut down"));
        }
        match script {
            None => Ok(()),
            Some(SendScript::Fail(kind)) => Err(AdapterError::new(kind, &self.name, "injected send failure")),
            Some(SendScript::Hang) => std::future::pending().await,
        }
    }

    async fn shutdown(&self) {
        lock(&self.state).shutdown_calls += 1;
        self.changes.bump();
    }
}

// ---------------------------------------------------------------------------------------------
// Conversation engine

/// What the engine saw of one message.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Which `run_conversation` call (0-based) received it.
    pub(crate) task: usize,
    pub(crate) agent: AgentId,
    pub(crate) conversation: ConversationId,
    pub(crate) id: MessageId,
    pub(crate) text: String,
    pub(crate) adapter: String,
    /// Whether the log already held the message when the engine received it.
    pub(crate) in_log: bool,
}

/// A [`ConversationEngine`] that answers `echo: <text>` and can be told to misbehave on a text:
///
/// - `hang`: never finishes the turn, ignoring cancellation;
/// - `boom`: panics;
/// - `slow`: takes [`SLOW_TURN`] (ignoring cancellation), then answers;
/// - `wait`: waits for `ctx.shutdown`, then returns;
/// - `work`: registers a background process in the runtime's table, live until `done`.
///
/// It answers an eviction request the simple way: it ends whenever its inbox is empty (it knows
/// nothing of background work; the router must not ask while a process is live), after
/// [`EchoEngine::exit_delay`] and a yield, as a real engine's cleanup takes a moment.
///
/// Each engine future holds a guard counted in [`EchoEngine::live`], so a test can tell whether
/// every future was dropped.
#[derive(Default)]
pub(crate) struct EchoEngine {
    tasks: AtomicUsize,
    panics_at_start: AtomicUsize,
    live: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    changes: Arc<Changes>,
    exit_delay: Arc<Mutex<Duration>>,
    evicted: Arc<Mutex<Vec<ConversationId>>>,
}

/// How long a `slow` turn takes.
pub(crate) const SLOW_TURN: Duration = Duration::from_secs(1);

struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EchoEngine {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes the next `count` conversation futures panic before taking any message.
    pub(crate) fn panic_at_start(&self, count: usize) {
        self.panics_at_start.store(count, Ordering::SeqCst);
    }

    /// Makes a task that accepted an eviction take `delay` before it returns.
    pub(crate) fn exit_delay(&self, delay: Duration) {
        *lock(&self.exit_delay) = delay;
    }

    /// The conversations whose task accepted an eviction, in order.
    pub(crate) fn evicted(&self) -> Vec<String> {
        lock(&self.evicted).iter().map(ToString::to_string).collect()
    }

    /// Waits until `count` tasks accepted an eviction.
    pub(crate) async fn until_evicted(&self, count: usize) {
        self.changes.until(&format!("{count} evictions"), || lock(&self.evicted).len() >= count).await;
    }

    /// How many `run_conversation` futures exist (created and not yet dropped).
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// How many times `run_conversation` was called.
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.load(Ordering::SeqCst)
    }

    /// Every message received, in order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    /// The texts received in one conversation, in order.
    pub(crate) fn seen_texts(&self, conversation: &str) -> Vec<String> {
        self.seen().into_iter().filter(|s| s.conversation.as_str() == conversation).map(|s| s.text).collect()
    }

    /// The first message received with this text.
    pub(crate) fn seen_text(&self, text: &str) -> Seen {
        self.seen().into_iter().find(|s| s.text == text).unwrap_or_else(|| panic!("the engine never saw {text:?}"))
    }

    /// Waits until `count` messages were received.
    pub(crate) async fn until_seen(&self, count: usize) {
        self.changes.until(&format!("the engine to see {count} messages"), || lock(&self.seen).len() >= count).await;
    }

    /// Waits until a message with this text was received.
    pub(crate) async fn until_seen_text(&self, text: &str) {
        self.changes
            .until(&format!("the engine to see {text:?}"), || lock(&self.seen).iter().any(|s| s.text == text))
            .await;
    }
}

impl ConversationEngine for EchoEngine {
    fn run_conversation(&self, ctx: ConversationContext, mut inbox: Inbox) -> BoxFuture<'static, ()> {
        let task = self.tasks.fetch_add(1, Ordering::SeqCst);
        let panic_at_start =
            self.panics_at_start.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let guard = LiveGuard::new(self.live.clone());
        let seen = self.seen.clone();
        let changes = self.changes.clone();
        let exit_delay = self.exit_delay.clone();
        let evicted = self.evicted.clone();
        Box::pin(async move {
            let _guard = guard;
            assert!(!panic_at_start, "engine told to panic at start");
            let mut work = None;
            while let Some(input) = inbox.recv().await {
                let message = match input {
                    ConversationInput::Message(message) => message,
                    ConversationInput::Evict if inbox.is_empty() => {
                        lock(&evicted).push(ctx.conversation.clone());
                        changes.bump();
                        let delay = *lock(&exit_delay);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        tokio::task::yield_now().await;
                        return;
                    }
                    _ => continue,
                };
                let text = message.content.text();
                let history = ctx.log.history(&ctx.agent, &ctx.conversation, usize::MAX).await.expect("history");
                let in_log = history.iter().any(|stored| stored.id == message.id);
                lock(&seen).push(Seen {
                    task,
                    agent: ctx.agent.clone(),
                    conversation: ctx.conversation.clone(),
                    id: message.id.clone(),
                    text: text.clone(),
                    adapter: message.adapter.clone(),
                    in_log,
                });
                changes.bump();
                match text.as_str() {
                    "hang" => std::future::pending::<()>().await,
                    "boom" => panic!("the engine panicked on purpose"),
                    "slow" => tokio::time::sleep(SLOW_TURN).await,
                    "wait" => {
                        ctx.shutdown.cancelled().await;
                        return;
                    }
                    "work" => {
                        let lifecycle = Lifecycle::new();
                        let record = ProcessRecord::new(
                            ctx.agent.clone(),
                            ctx.conversation.clone(),
                            ProcessId::new(format!("work-{task}")),
                            ProcessKind::Worker,
                            lifecycle.clone(),
                            CancellationToken::new(),
                            ctx.outbox.clone(),
                        );
                        work = Some((ctx.processes.register(record), lifecycle));
                    }
                    "done" => {
                        if let Some((registration, lifecycle)) = work.take() {
                            let _ = lifecycle.settle(TerminalState::Done);
                            drop(registration);
                        }
                    }
                    _ => {}
                }
                let reply = format!("echo: {text}");
                // Delivery failures are the outbox's to report (as events); the turn still ends.
                let _ = ctx.outbox.send(&message, OutboundResponse::text(&reply)).await;
                let stored = StoredMessage::new(
                    ctx.agent.clone(),
                    ctx.conversation.clone(),
                    Role::Assistant,
                    ctx.agent.as_str(),
                    reply,
                );
                ctx.log.record_reply(&stored, std::slice::from_ref(&message.id)).await.expect("record reply");
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Wiring

/// The fakes a runtime is built from, kept so the test can inspect them.
pub(crate) struct Parts {
    pub(crate) engine: Arc<EchoEngine>,
    pub(crate) log: Arc<MemoryLog>,
    pub(crate) adapter: Arc<FakeAdapter>,
}

impl Parts {
    /// An echo engine, an empty log and an adapter named `chat`.
    pub(crate) fn new() -> Self {
        Self { engine: EchoEngine::new(), log: MemoryLog::new(), adapter: FakeAdapter::new("chat") }
    }

    /// A runtime hosting agent `main` with default settings.
    pub(crate) async fn start(&self) -> Runtime {
        self.start_with(RuntimeSettings::default()).await
    }

    /// A runtime hosting agent `main`.
    pub(crate) async fn start_with(&self, settings: RuntimeSettings) -> Runtime {
        Runtime::builder()
            .engine(self.engine.clone())
            .log(self.log.clone())
            .adapter(self.adapter.clone())
            .agent("main")
            .settings(settings)
            .start()
            .await
            .expect("the runtime starts")
    }
}

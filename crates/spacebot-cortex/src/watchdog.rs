//! The watchdog: finds processes and turns that outlived their bounds, and ends them.
//!
//! Timeouts are enforced first where the work runs: each branch, worker and compactor summary
//! races its own time limit inside the channel that owns it, and each turn runs under the turn
//! timeout. Something that is still running well past its limit (the limit plus a grace period)
//! escaped that bound: a task blocking its thread, an await outside any timeout (an adapter
//! call that never returns, say), a bug. The watchdog finds those and, when it
//! [enforces](Watchdog::enforce) through a [`RuntimeHandle`], ends them:
//!
//! - a hung **process** (a branch, worker or compactor run from the runtime's
//!   [`ProcessRegistry`](spacebot_core::ProcessRegistry), each held to the limit its
//!   channel gave it) is ended as `timed_out` with a reason: its terminal state is announced, its
//!   task aborted, and its channel drops it and relays the failure, like any other result;
//! - a hung **turn** ends its conversation's task: the message in progress gets a visible error,
//!   the queue behind it a fresh task that reloads the history from the log, and the
//!   conversation's processes end as cancelled.
//!
//! Each intervention is logged as an error and kept for [`Watchdog::interventions`]. What it
//! does not end (anything, when it only audits) is logged once and kept for
//! [`Watchdog::findings`] until it ends, so an operator sees a wedge instead of silence.
//!
//! It makes no model call and holds no lock across an await. A lagging event subscription loses
//! events: the watchdog then forgets the turns and unregistered processes it tracked from events
//! (it can no longer tell what ended) rather than act on stale ones; the registry needs no
//! events. A closed event bus ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use spacebot_agent::ChannelSettings;
use spacebot_core::{
    AgentId, ConversationId, ProcessChange, ProcessId, ProcessKind, RuntimeEvent, RuntimeHandle, TerminalState,
};

/// How long past its limit something may run before the watchdog acts on it.
const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// How many interventions [`Watchdog::interventions`] keeps (the newest).
const KEPT_INTERVENTIONS: usize = 100;

/// The limits the watchdog holds processes and turns to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchdogSettings {
    /// How often it checks.
    pub tick: Duration,
    /// Longest a branch may run (the largest `branch_timeout` of the agents).
    pub branch_limit: Duration,
    /// Longest a worker may run (the largest `worker_timeout`).
    pub worker_limit: Duration,
    /// Longest a compactor summary may run.
    pub compactor_limit: Duration,
    /// Longest a turn may run (the largest `turn_timeout`).
    pub turn_limit: Duration,
    /// Slack past each limit before a finding (the limits are enforced by timers that may fire
    /// late under load, and a cancelled process gets a grace period to end).
    pub grace: Duration,
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        Self::for_agents([&ChannelSettings::default()])
    }
}

impl WatchdogSettings {
    /// Limits covering every agent: for each kind, the largest of the agents' limits.
    pub fn for_agents<'a>(agents: impl IntoIterator<Item = &'a ChannelSettings>) -> Self {
        let mut settings = Self {
            tick: Duration::from_secs(30),
            branch_limit: Duration::ZERO,
            worker_limit: Duration::ZERO,
            compactor_limit: Duration::ZERO,
            turn_limit: Duration::ZERO,
            grace: DEFAULT_GRACE,
        };
        for agent in agents {
            settings.branch_limit = settings.branch_limit.max(agent.branch_timeout);
            settings.worker_limit = settings.worker_limit.max(agent.worker_timeout);
            settings.compactor_limit = settings.compactor_limit.max(agent.compaction.summary_timeout);
            settings.turn_limit = settings.turn_limit.max(agent.turn_timeout);
        }
        settings
    }

    /// Sets how often it checks.
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Sets the slack past each limit.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    fn limit(&self, kind: ProcessKind) -> Option<Duration> {
        match kind {
            ProcessKind::Branch => Some(self.branch_limit),
            ProcessKind::Worker => Some(self.worker_limit),
            ProcessKind::Compactor => Some(self.compactor_limit),
            _ => None,
        }
    }
}

/// Something that outlived its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// A branch, worker or compactor summary still running past its limit.
    Process {
        /// The agent.
        agent: AgentId,
        /// The conversation it belongs to.
        conversation: ConversationId,
        /// The process.
        process: ProcessId,
        /// Its kind.
        kind: ProcessKind,
        /// How long it had run when found.
        running_for: Duration,
    },
    /// A turn still going past the turn timeout.
    Turn {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// How long it had run when found.
        running_for: Duration,
    },
}

/// Something the watchdog ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Intervention {
    /// It ended a hung process as `timed_out`.
    EndedProcess {
        /// The agent.
        agent: AgentId,
        /// The conversation it belonged to.
        conversation: ConversationId,
        /// The process.
        process: ProcessId,
        /// Its kind.
        kind: ProcessKind,
        /// How long it had run.
        running_for: Duration,
    },
    /// It restarted a conversation whose turn hung.
    RestartedConversation {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// How long the turn had run.
        running_for: Duration,
    },
}

struct Tracked {
    agent: AgentId,
    conversation: ConversationId,
    kind: ProcessKind,
    since: Instant,
    reported: bool,
}

struct Turn {
    since: Instant,
    reported: bool,
}

/// What the watchdog knows, updated from events.
#[derive(Default)]
struct State {
    processes: HashMap<ProcessId, Tracked>,
    turns: HashMap<(AgentId, ConversationId), Turn>,
}

/// Audits process and turn lifetimes from the runtime's events; see the module documentation.
///
/// Cheap to clone; clones share what the watchdog found.
#[derive(Clone)]
pub struct Watchdog {
    settings: Arc<WatchdogSettings>,
    findings: Arc<Mutex<Vec<Finding>>>,
    interventions: Arc<Mutex<Vec<Intervention>>>,
    runtime: Option<RuntimeHandle>,
}

impl Watchdog {
    /// A watchdog holding processes and turns to these limits. It only reports until it is
    /// given a runtime to [`enforce`](Self::enforce) them in.
    pub fn new(settings: WatchdogSettings) -> Self {
        Self { settings: Arc::new(settings), findings: Arc::default(), interventions: Arc::default(), runtime: None }
    }

    /// Ends what outlives its bound in this runtime (see the module documentation).
    pub fn enforce(mut self, runtime: RuntimeHandle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// What is overdue now and was not ended: processes and turns past their limit.
    pub fn findings(&self) -> Vec<Finding> {
        self.findings.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What the watchdog ended, oldest first (the newest hundred).
    pub fn interventions(&self) -> Vec<Intervention> {
        self.interventions.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn intervened(&self, intervention: Intervention) {
        let mut interventions = self.interventions.lock().unwrap_or_else(PoisonError::into_inner);
        if interventions.len() == KEPT_INTERVENTIONS {
            interventions.remove(0);
        }
        interventions.push(intervention);
    }

    /// Watches `events` until `shutdown` is cancelled or the event bus closes. Spawn it and keep
    /// the handle; it returns promptly on cancellation.
    pub async fn run(self, mut events: broadcast::Receiver<RuntimeEvent>, shutdown: CancellationToken) {
        let mut state = State::default();
        let mut tick = tokio::time::interval(self.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                event = events.recv() => match event {
                    Ok(event) => self.observe(&mut state, event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "watchdog missed runtime events; forgetting what it tracked");
                        state = State::default();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    self.end_hung_processes(&mut state);
                    self.check(&mut state).await;
                }
            }
            self.publish(&state);
        }
    }

    fn observe(&self, state: &mut State, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Process(event) => match event.change {
                ProcessChange::Started { .. } => {
                    let tracked = Tracked {
                        agent: event.agent,
                        conversation: event.conversation,
                        kind: event.kind,
                        since: Instant::now(),
                        reported: false,
                    };
                    state.processes.insert(event.process, tracked);
                }
                ProcessChange::Finished { .. } => ended(state, &event.process),
                _ => {}
            },
            RuntimeEvent::TurnStarted { agent, conversation } => {
                state.turns.insert((agent, conversation), Turn { since: Instant::now(), reported: false });
            }
            RuntimeEvent::TurnFinished { agent, conversation, .. } => {
                state.turns.remove(&(agent, conversation));
            }
            _ => {}
        }
    }

    /// Ends registered processes past their own limit plus the grace period.
    fn end_hung_processes(&self, state: &mut State) {
        let Some(runtime) = &self.runtime else { return };
        for info in runtime.processes().list() {
            let Some(limit) = info.limit.or_else(|| self.settings.limit(info.kind)) else { continue };
            if info.running_for <= limit + self.settings.grace {
                continue;
            }
            let reason = format!(
                "ended by the cortex: still running {}s after its {}s limit (hung)",
                info.running_for.as_secs(),
                limit.as_secs()
            );
            if runtime.processes().end(&info.process, TerminalState::TimedOut, &reason) {
                tracing::error!(agent = %info.agent, conversation = %info.conversation, process = %info.process,
                    kind = %info.kind, running_for = ?info.running_for, ?limit, "ended a hung process");
                state.processes.remove(&info.process);
                self.intervened(Intervention::EndedProcess {
                    agent: info.agent,
                    conversation: info.conversation,
                    process: info.process,
                    kind: info.kind,
                    running_for: info.running_for,
                });
            }
        }
    }

    async fn check(&self, state: &mut State) {
        let now = Instant::now();
        for (id, tracked) in &mut state.processes {
            let Some(limit) = self.settings.limit(tracked.kind) else { continue };
            let running_for = now.saturating_duration_since(tracked.since);
            if !tracked.reported && running_for > limit + self.settings.grace {
                tracked.reported = true;
                tracing::error!(agent = %tracked.agent, conversation = %tracked.conversation, process = %id,
                    kind = %tracked.kind, ?running_for, ?limit, "a process is running past its time limit");
            }
        }
        let mut hung = Vec::new();
        for ((agent, conversation), turn) in &mut state.turns {
            let running_for = now.saturating_duration_since(turn.since);
            if !turn.reported && running_for > self.settings.turn_limit + self.settings.grace {
                turn.reported = true;
                tracing::error!(%agent, %conversation, ?running_for, limit = ?self.settings.turn_limit,
                    "a turn is running past the turn timeout");
                hung.push((agent.clone(), conversation.clone(), running_for));
            }
        }
        let Some(runtime) = &self.runtime else { return };
        for (agent, conversation, running_for) in hung {
            let reason = format!("its turn was still running {}s after it started (hung)", running_for.as_secs());
            match runtime.restart_conversation(&agent, &conversation, &reason).await {
                Ok(true) => {
                    state.turns.remove(&(agent.clone(), conversation.clone()));
                    self.intervened(Intervention::RestartedConversation { agent, conversation, running_for });
                }
                Ok(false) => {
                    // No task: the turn's end event was lost; nothing runs to end.
                    state.turns.remove(&(agent, conversation));
                }
                Err(error) => tracing::warn!(%agent, %conversation, %error, "can't restart a hung conversation"),
            }
        }
    }

    /// Refreshes the shared findings from the state.
    fn publish(&self, state: &State) {
        let now = Instant::now();
        let mut findings: Vec<Finding> = state
            .processes
            .iter()
            .filter(|(_, tracked)| tracked.reported)
            .map(|(id, tracked)| Finding::Process {
                agent: tracked.agent.clone(),
                conversation: tracked.conversation.clone(),
                process: id.clone(),
                kind: tracked.kind,
                running_for: now.saturating_duration_since(tracked.since),
            })
            .collect();
        findings.extend(state.turns.iter().filter(|(_, turn)| turn.reported).map(|((agent, conversation), turn)| {
            Finding::Turn {
                agent: agent.clone(),
                conversation: conversation.clone(),
                running_for: now.saturating_duration_since(turn.since),
            }
        }));
        *self.findings.lock().unwrap_or_else(PoisonError::into_inner) = findings;
    }
}

/// Forgets a process that ended, noting when it had been reported as overdue.
fn ended(state: &mut State, process: &ProcessId) {
    if state.processes.remove(process).is_some_and(|tracked| tracked.reported) {
        tracing::warn!(%process, "an overdue process ended after all");
    }
}

#[cfg(test)]
mod tests {
    use spacebot_core::{Lifecycle, ProcessEvent, TerminalState, TurnOutcome};

    use super::*;

    fn settings() -> WatchdogSettings {
        let mut settings =
            WatchdogSettings::default().with_tick(Duration::from_secs(1)).with_grace(Duration::from_secs(5));
        settings.worker_limit = Duration::from_secs(60);
        settings.turn_limit = Duration::from_secs(30);
        settings
    }

    fn process(id: &str, change: ProcessChange) -> RuntimeEvent {
        RuntimeEvent::Process(ProcessEvent::new(
            AgentId::new("main"),
            ConversationId::new("c"),
            ProcessId::new(id),
            ProcessKind::Worker,
            change,
        ))
    }

    fn finished(id: &str) -> RuntimeEvent {
        let terminal = Lifecycle::new().settle(TerminalState::Done).expect("a fresh lifecycle settles");
        process(id, ProcessChange::finished(&terminal, "done"))
    }

    struct Running {
        watchdog: Watchdog,
        events: broadcast::Sender<RuntimeEvent>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start() -> Running {
        let (events, receiver) = broadcast::channel(16);
        let watchdog = Watchdog::new(settings());
        let stop = CancellationToken::new();
        let task = tokio::spawn(watchdog.clone().run(receiver, stop.clone()));
        Running { watchdog, events, stop, task }
    }

    async fn wait(seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_process_past_its_limit_is_reported_until_it_ends() {
        let r = start();
        r.events.send(process("late", ProcessChange::Started { description: "x".into() })).unwrap();
        r.events.send(process("prompt", ProcessChange::Started { description: "y".into() })).unwrap();
        wait(30).await;
        r.events.send(finished("prompt")).unwrap();
        wait(34).await;
        assert!(r.watchdog.findings().is_empty(), "within limit and grace: {:?}", r.watchdog.findings());
        wait(3).await;
        let findings = r.watchdog.findings();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(matches!(&findings[0], Finding::Process { process, .. } if process.as_str() == "late"), "{findings:?}");
        r.events.send(finished("late")).unwrap();
        wait(1).await;
        assert!(r.watchdog.findings().is_empty(), "{:?}", r.watchdog.findings());
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_past_the_turn_timeout_is_reported() {
        let r = start();
        let (agent, conversation) = (AgentId::new("main"), ConversationId::new("c"));
        r.events.send(RuntimeEvent::TurnStarted { agent: agent.clone(), conversation: conversation.clone() }).unwrap();
        wait(20).await;
        r.events
            .send(RuntimeEvent::TurnFinished {
                agent: agent.clone(),
                conversation: conversation.clone(),
                outcome: TurnOutcome::Replied,
            })
            .unwrap();
        r.events.send(RuntimeEvent::TurnStarted { agent, conversation }).unwrap();
        wait(30).await;
        assert!(r.watchdog.findings().is_empty(), "the second turn is within its limit");
        wait(10).await;
        assert!(matches!(r.watchdog.findings().as_slice(), [Finding::Turn { .. }]), "{:?}", r.watchdog.findings());
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_watchdog_forgets_instead_of_reporting_falsely_and_a_closed_bus_ends_it() {
        let r = start();
        r.events.send(process("p", ProcessChange::Started { description: "x".into() })).unwrap();
        wait(1).await;
        // More events than the channel holds, while the watchdog is not polled: it lags.
        for i in 0..40 {
            r.events.send(process(&format!("q{i}"), ProcessChange::Status { text: "s".into() })).unwrap();
        }
        wait(120).await;
        assert!(r.watchdog.findings().is_empty(), "{:?}", r.watchdog.findings());
        drop(r.events);
        tokio::time::timeout(Duration::from_secs(1), r.task).await.expect("ends when the bus closes").unwrap();
    }
}

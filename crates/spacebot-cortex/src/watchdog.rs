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
//! Its limits are plain values ([`WatchdogSettings`]): a process is held to the limit its
//! registry record carries (the one its channel enforces), a turn to its agent's turn timeout.
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

use spacebot_core::{
    AgentId, ConversationId, ProcessChange, ProcessId, ProcessInfo, ProcessKind, RuntimeEvent, RuntimeHandle,
    TerminalState,
};

/// How long past its limit something may run before the watchdog acts on it.
const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// The limits used when nothing more specific is known; they match the channel engine's defaults
/// (a daemon passes its agents' own).
const DEFAULT_TURN_LIMIT: Duration = Duration::from_secs(600);
const DEFAULT_BRANCH_LIMIT: Duration = Duration::from_secs(600);
const DEFAULT_WORKER_LIMIT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_COMPACTOR_LIMIT: Duration = Duration::from_secs(120);
/// How many interventions [`Watchdog::interventions`] keeps (the newest).
const KEPT_INTERVENTIONS: usize = 100;

/// The limits the watchdog holds processes and turns to, as plain values.
///
/// A process registered with the runtime's [`ProcessRegistry`](spacebot_core::ProcessRegistry)
/// is held to the limit its record carries; the per-kind limits here cover processes without one
/// (and every process of a watchdog that only audits, which reads no registry).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchdogSettings {
    /// How often it checks.
    pub tick: Duration,
    /// Longest a branch without a limit of its own may run.
    pub branch_limit: Duration,
    /// Longest a worker without a limit of its own may run.
    pub worker_limit: Duration,
    /// Longest a compactor summary without a limit of its own may run.
    pub compactor_limit: Duration,
    /// Longest a turn may run, for agents not in `agent_turn_limits`.
    pub turn_limit: Duration,
    /// Longest a turn of each agent may run (its turn timeout).
    pub agent_turn_limits: HashMap<AgentId, Duration>,
    /// Slack past each limit before a finding (the limits are enforced by timers that may fire
    /// late under load, and a cancelled process gets a grace period to end).
    pub grace: Duration,
}

impl Default for WatchdogSettings {
    /// Checks every 30 s, a minute of grace, and the channel engine's default limits: turns and
    /// branches 10 min, workers 30 min, compactor summaries 2 min.
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(30),
            branch_limit: DEFAULT_BRANCH_LIMIT,
            worker_limit: DEFAULT_WORKER_LIMIT,
            compactor_limit: DEFAULT_COMPACTOR_LIMIT,
            turn_limit: DEFAULT_TURN_LIMIT,
            agent_turn_limits: HashMap::new(),
            grace: DEFAULT_GRACE,
        }
    }
}

impl WatchdogSettings {
    /// Holds the turns of `agent` to `limit` (its turn timeout).
    pub fn with_turn_limit(mut self, agent: impl Into<AgentId>, limit: Duration) -> Self {
        self.agent_turn_limits.insert(agent.into(), limit);
        self
    }

    /// Sets the limits of branches, workers and compactor summaries that carry none of their own.
    pub fn with_process_limits(mut self, branch: Duration, worker: Duration, compactor: Duration) -> Self {
        self.branch_limit = branch;
        self.worker_limit = worker;
        self.compactor_limit = compactor;
        self
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

    /// The turn limit of `agent`.
    fn turn_limit(&self, agent: &AgentId) -> Duration {
        self.agent_turn_limits.get(agent).copied().unwrap_or(self.turn_limit)
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
                    let registered = self.runtime.as_ref().map(|runtime| runtime.processes().list()).unwrap_or_default();
                    self.end_hung_processes(&mut state, &registered);
                    self.check(&mut state, &registered).await;
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
    fn end_hung_processes(&self, state: &mut State, registered: &[ProcessInfo]) {
        let Some(runtime) = &self.runtime else { return };
        for info in registered.iter().cloned() {
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

    async fn check(&self, state: &mut State, registered: &[ProcessInfo]) {
        let now = Instant::now();
        for (id, tracked) in &mut state.processes {
            // A registered process is held to its own limit, as when it is ended.
            let own = registered.iter().find(|info| &info.process == id).and_then(|info| info.limit);
            let Some(limit) = own.or_else(|| self.settings.limit(tracked.kind)) else { continue };
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
            let limit = self.settings.turn_limit(agent);
            if !turn.reported && running_for > limit + self.settings.grace {
                turn.reported = true;
                tracing::error!(%agent, %conversation, ?running_for, ?limit, "a turn is running past the turn timeout");
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
                message: None,
                usage: spacebot_core::Usage::default(),
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
    async fn each_agent_s_turns_are_held_to_its_own_limit() {
        let (events, receiver) = broadcast::channel(16);
        // `main` falls back to the 30 s default of `settings()`; `slow` has two minutes.
        let watchdog = Watchdog::new(settings().with_turn_limit("slow", Duration::from_secs(120)));
        let stop = CancellationToken::new();
        let task = tokio::spawn(watchdog.clone().run(receiver, stop.clone()));
        for agent in ["main", "slow"] {
            events
                .send(RuntimeEvent::TurnStarted { agent: AgentId::new(agent), conversation: ConversationId::new("c") })
                .unwrap();
        }
        wait(40).await;
        let overdue = |findings: Vec<Finding>| -> Vec<String> {
            findings
                .into_iter()
                .filter_map(|finding| match finding {
                    Finding::Turn { agent, .. } => Some(agent.to_string()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(overdue(watchdog.findings()), ["main"], "only main is past its limit and grace");
        wait(90).await;
        let mut both = overdue(watchdog.findings());
        both.sort();
        assert_eq!(both, ["main", "slow"], "slow too, past its own 120 s and the grace");
        stop.cancel();
        task.await.unwrap();
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

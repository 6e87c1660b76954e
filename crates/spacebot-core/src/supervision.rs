//! The runtime-wide table of live processes, through which a supervisor (the cortex) can see
//! every branch, worker and compactor task and end one that hangs.
//!
//! A channel registers each process it starts and keeps the returned [`Registration`] for as
//! long as the process is in its table. The registration is a guard with two duties:
//!
//! - **Ending from outside.** [`ProcessRegistry::end`] makes the process's terminal transition
//!   (through its shared [`Lifecycle`], so it races the process's own end and exactly one wins),
//!   announces it, cancels the process's token, aborts its task, and tells the owning channel on
//!   its notification queue, so the channel drops it from its status block at once even when the
//!   task itself is stuck on a blocked thread and only dies later.
//! - **Ending with its owner.** Dropping a registration whose process is still running (its
//!   channel's task panicked or was aborted, so the process's own task was aborted with it)
//!   settles it as cancelled and announces that, so no process ever goes without a terminal
//!   state, even one whose owner died first.
//!
//! The table is a plain map behind a `std` mutex, held only for map operations, never across an
//! await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::RuntimeEvent;
use crate::ids::{AgentId, ConversationId, ProcessId};
use crate::journal::RunChange;
use crate::message::InboundMessage;
use crate::outbox::Outbox;
use crate::process::{Lifecycle, ProcessChange, ProcessEvent, ProcessKind, TerminalState};
use crate::runs::{Owed, ProcessRun};

/// The summary announced for a process whose channel ended before it did.
pub const OWNER_ENDED: &str = "ended with its conversation's task";

/// A process's registration: what the registry needs to show and, if need be, end it.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProcessRecord {
    /// The agent.
    pub agent: AgentId,
    /// The conversation that owns it.
    pub conversation: ConversationId,
    /// The process.
    pub process: ProcessId,
    /// Its kind.
    pub kind: ProcessKind,
    /// Its task or description.
    pub description: String,
    /// The wall-clock limit its owner enforces, if any.
    pub limit: Option<Duration>,
    /// Its lifecycle, shared with the process and its owner.
    pub lifecycle: Lifecycle,
    /// Cancels it cooperatively.
    pub cancel: CancellationToken,
    /// Where its end is announced.
    pub outbox: Outbox,
    /// Where its owner hears that a supervisor ended it.
    pub notify: Option<mpsc::UnboundedSender<SupervisorEnd>>,
    /// The message whose turn started it, if any.
    pub origin: Option<Arc<InboundMessage>>,
}

impl ProcessRecord {
    /// A record of a running process.
    pub fn new(
        agent: AgentId,
        conversation: ConversationId,
        process: ProcessId,
        kind: ProcessKind,
        lifecycle: Lifecycle,
        cancel: CancellationToken,
        outbox: Outbox,
    ) -> Self {
        Self {
            agent,
            conversation,
            process,
            kind,
            description: String::new(),
            limit: None,
            lifecycle,
            cancel,
            outbox,
            notify: None,
            origin: None,
        }
    }

    /// Sets the message whose turn started it (a restart that interrupts it is reported there).
    pub fn with_origin(mut self, origin: Arc<InboundMessage>) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Sets its description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the token that cancels it cooperatively.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Sets the wall-clock limit its owner enforces.
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets the queue on which its owner hears that a supervisor ended it.
    pub fn with_notify(mut self, notify: mpsc::UnboundedSender<SupervisorEnd>) -> Self {
        self.notify = Some(notify);
        self
    }

    fn announce(&self, state: TerminalState, summary: &str) -> bool {
        let Some(terminal) = self.lifecycle.settle(state) else { return false };
        self.outbox.publish(RuntimeEvent::Process(ProcessEvent::new(
            self.agent.clone(),
            self.conversation.clone(),
            self.process.clone(),
            self.kind,
            ProcessChange::finished(&terminal, summary),
        )));
        true
    }
}

/// A supervisor ended one of a channel's processes: its terminal state is made and announced;
/// the channel drops it from its table and relays `reason` as its result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupervisorEnd {
    /// The process.
    pub process: ProcessId,
    /// The state it ended in.
    pub state: TerminalState,
    /// Why.
    pub reason: String,
}

/// A live process as a supervisor sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// The agent.
    pub agent: AgentId,
    /// The conversation that owns it.
    pub conversation: ConversationId,
    /// The process.
    pub process: ProcessId,
    /// Its kind.
    pub kind: ProcessKind,
    /// Its task or description.
    pub description: String,
    /// The wall-clock limit its owner enforces, if any.
    pub limit: Option<Duration>,
    /// How long it has run.
    pub running_for: Duration,
}

struct Registered {
    record: ProcessRecord,
    started: Instant,
    task: Option<AbortHandle>,
    /// What its conversation is owed when it ends, recorded with the end.
    owed: Option<Owed>,
    /// Set when this registration's guard is gone, so a late guard of a reused id can't remove
    /// its successor.
    key: u64,
}

#[derive(Default)]
struct Table {
    live: HashMap<ProcessId, Registered>,
    next_key: u64,
    /// Where starts and ends are recorded durably, when the runtime keeps process runs.
    journal: Option<mpsc::UnboundedSender<RunChange>>,
}

/// The runtime's table of live processes; see the module documentation. Cheap to clone; clones
/// share the table.
#[derive(Clone, Default)]
pub struct ProcessRegistry {
    table: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for ProcessRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRegistry").field("live", &self.lock().live.len()).finish()
    }
}

impl ProcessRegistry {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports every start and end to `journal` from now on.
    pub(crate) fn set_journal(&self, journal: mpsc::UnboundedSender<RunChange>) {
        self.lock().journal = Some(journal);
    }

    /// Registers a running process. Keep the registration while the process is in your table;
    /// dropping it unregisters the process (and ends it as cancelled if it is still running).
    pub fn register(&self, record: ProcessRecord) -> Registration {
        let process = record.process.clone();
        let mut table = self.lock();
        table.next_key += 1;
        let key = table.next_key;
        if let Some(journal) = &table.journal {
            let run = ProcessRun::new(
                process.clone(),
                record.agent.clone(),
                record.conversation.clone(),
                record.kind,
                record.description.clone(),
                record.origin.as_deref().cloned(),
            );
            let _ = journal.send(RunChange::Started(Box::new(run)));
        }
        let registered = Registered { record, started: Instant::now(), task: None, owed: None, key };
        if let Some(previous) = table.live.insert(process.clone(), registered) {
            tracing::warn!(process = %previous.record.process, "a process id was registered twice; the newer one wins");
        }
        Registration { registry: self.clone(), process, key }
    }

    /// The live processes, oldest first.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let now = Instant::now();
        let table = self.lock();
        let mut live: Vec<_> = table.live.values().collect();
        live.sort_by_key(|registered| (registered.started, registered.key));
        live.into_iter()
            .map(|registered| {
                let record = &registered.record;
                ProcessInfo {
                    agent: record.agent.clone(),
                    conversation: record.conversation.clone(),
                    process: record.process.clone(),
                    kind: record.kind,
                    description: record.description.clone(),
                    limit: record.limit,
                    running_for: now.saturating_duration_since(registered.started),
                }
            })
            .collect()
    }

    /// How many processes are live.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether no process is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a process's end (and what its conversation is owed about it) at once, before its
    /// owner drops its registration: for an end its owner will only get to later (it reaps its
    /// processes between turns), so a crash meanwhile does not lose it. The end its registration
    /// records later is then ignored (an end is recorded once).
    pub fn record_end(&self, process: &ProcessId, state: TerminalState, owed: Option<Owed>) {
        let journal = self.lock().journal.clone();
        if let Some(journal) = journal {
            // The journal is gone only once the runtime stopped; nothing is recorded then anyway.
            let _ = journal.send(RunChange::Ended(process.clone(), state, owed));
        }
    }

    /// Ends a live process from outside: makes its terminal transition to `state` (unless it
    /// ended meanwhile), announces it with `reason`, cancels it, aborts its task and tells its
    /// owner. Returns `false` when it is not live or ended on its own first.
    pub fn end(&self, process: &ProcessId, state: TerminalState, reason: &str) -> bool {
        let (record, task) = {
            let mut table = self.lock();
            let Some(registered) = table.live.get_mut(process) else { return false };
            (registered.record.clone(), registered.task.take())
        };
        if !record.announce(state, reason) {
            return false;
        }
        tracing::warn!(agent = %record.agent, conversation = %record.conversation, %process, kind = %record.kind,
            reason, "a supervisor ended a process");
        record.cancel.cancel();
        if let Some(task) = task {
            task.abort();
        }
        if let Some(notify) = &record.notify {
            // The owner may be gone already; then its guard ends the registration.
            let _ = notify.send(SupervisorEnd { process: process.clone(), state, reason: reason.to_owned() });
        }
        true
    }
}

/// A process's place in the [`ProcessRegistry`]; see the module documentation.
#[must_use = "dropping the registration unregisters the process at once"]
pub struct Registration {
    registry: ProcessRegistry,
    process: ProcessId,
    key: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("process", &self.process).finish()
    }
}

impl Registration {
    /// Records the task running the process, so a supervisor can abort it.
    pub fn set_task(&self, task: AbortHandle) {
        let mut table = self.registry.lock();
        if let Some(registered) = table.live.get_mut(&self.process).filter(|r| r.key == self.key) {
            registered.task = Some(task);
        }
    }
}

impl Registration {
    /// Sets what the process's conversation is owed about its end (its result to relay, or a
    /// notice), recorded durably with the end when this registration is dropped, so a restart
    /// before the conversation is told still tells it. Mark it told through
    /// [`ProcessRuns::told`](crate::ProcessRuns::told) once it is.
    pub fn set_owed(&self, owed: Owed) {
        let mut table = self.registry.lock();
        if let Some(registered) = table.live.get_mut(&self.process).filter(|r| r.key == self.key) {
            registered.owed = Some(owed);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (removed, journal) = {
            let mut table = self.registry.lock();
            let removed = match table.live.get(&self.process) {
                Some(registered) if registered.key == self.key => table.live.remove(&self.process),
                _ => None,
            };
            (removed, table.journal.clone())
        };
        let Some(registered) = removed else { return };
        if registered.record.announce(TerminalState::Cancelled, OWNER_ENDED) {
            tracing::warn!(process = %self.process, "a process outlived its owner's table; ended as cancelled");
            registered.record.cancel.cancel();
        }
        if let (Some(journal), Some(state)) = (journal, registered.record.lifecycle.terminal()) {
            let _ = journal.send(RunChange::Ended(self.process.clone(), state, registered.owed));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;

    fn outbox() -> (Outbox, broadcast::Receiver<RuntimeEvent>) {
        let (events, receiver) = broadcast::channel(16);
        (Outbox::new(Arc::default(), events, crate::outbox::DeliveryPolicy::default()), receiver)
    }

    fn record(id: &str, outbox: &Outbox) -> ProcessRecord {
        ProcessRecord::new(
            AgentId::new("main"),
            ConversationId::new("c"),
            ProcessId::new(id),
            ProcessKind::Worker,
            Lifecycle::new(),
            CancellationToken::new(),
            outbox.clone(),
        )
    }

    fn finished(receiver: &mut broadcast::Receiver<RuntimeEvent>) -> Vec<(String, TerminalState, String)> {
        let mut out = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            if let RuntimeEvent::Process(ProcessEvent {
                process,
                change: ProcessChange::Finished { state, summary },
                ..
            }) = event
            {
                out.push((process.to_string(), state, summary));
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn end_settles_announces_cancels_aborts_and_notifies_once() {
        let (outbox, mut events) = outbox();
        let registry = ProcessRegistry::new();
        let (notify, mut ends) = mpsc::unbounded_channel();
        let record = record("w1", &outbox).with_limit(Duration::from_secs(5)).with_notify(notify);
        let (lifecycle, cancel) = (record.lifecycle.clone(), record.cancel.clone());
        let registration = registry.register(record);
        let task = tokio::spawn(std::future::pending::<()>());
        registration.set_task(task.abort_handle());
        tokio::time::advance(Duration::from_secs(7)).await;
        let listed = registry.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].running_for, Duration::from_secs(7));

        assert!(registry.end(&ProcessId::new("w1"), TerminalState::TimedOut, "hung"));
        assert!(!registry.end(&ProcessId::new("w1"), TerminalState::Failed, "again"), "one terminal state");
        assert_eq!(lifecycle.terminal(), Some(TerminalState::TimedOut));
        assert!(cancel.is_cancelled());
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert_eq!(
            ends.try_recv().expect("owner told"),
            SupervisorEnd { process: ProcessId::new("w1"), state: TerminalState::TimedOut, reason: "hung".into() }
        );
        drop(registration);
        assert!(registry.is_empty());
        assert_eq!(finished(&mut events), vec![("w1".into(), TerminalState::TimedOut, "hung".into())]);
    }

    #[tokio::test]
    async fn a_process_that_ended_first_is_not_ended_again() {
        let (outbox, mut events) = outbox();
        let registry = ProcessRegistry::new();
        let record = record("w2", &outbox);
        let lifecycle = record.lifecycle.clone();
        let registration = registry.register(record);
        let _done = lifecycle.settle(TerminalState::Done).expect("first");
        assert!(!registry.end(&ProcessId::new("w2"), TerminalState::TimedOut, "late"));
        drop(registration);
        assert!(finished(&mut events).is_empty(), "the process announces its own end, the registry nothing");
        assert!(registry.is_empty());
    }

    #[tokio::test]
    async fn dropping_a_running_registration_ends_it_as_cancelled() {
        let (outbox, mut events) = outbox();
        let registry = ProcessRegistry::new();
        let record = record("w3", &outbox);
        let (lifecycle, cancel) = (record.lifecycle.clone(), record.cancel.clone());
        drop(registry.register(record));
        assert_eq!(lifecycle.terminal(), Some(TerminalState::Cancelled));
        assert!(cancel.is_cancelled());
        assert_eq!(finished(&mut events), vec![("w3".into(), TerminalState::Cancelled, OWNER_ENDED.into())]);
        assert!(registry.is_empty());
    }

    #[tokio::test]
    async fn a_stale_registration_does_not_remove_its_successor() {
        let (outbox, _events) = outbox();
        let registry = ProcessRegistry::new();
        let first = registry.register(record("same", &outbox));
        let second = registry.register(record("same", &outbox));
        drop(first);
        assert_eq!(registry.len(), 1, "the newer registration stays");
        drop(second);
        assert!(registry.is_empty());
    }
}

//! The branches and workers a channel owns: the table it keeps of them, the task wrapper that
//! gives each exactly one terminal state, and the status block the model sees.
//!
//! Ownership: every process is a task in the channel's `JoinSet`, so the channel reaps each one
//! (and learns its outcome) exactly once, and shutdown can wait for or abort all of them. The
//! channel never awaits a process; it polls the set in its idle loop. A process talks back through
//! an unbounded report queue (status, idle, interim results), which never blocks it.
//!
//! Terminal states: the wrapper in [`supervise`] races the process body against its cancel token
//! and its wall-clock limit, then makes the [`Lifecycle`] transition. Whoever wins that transition
//! (the wrapper, or the channel when a task panicked or had to be aborted) announces the end;
//! nobody else can.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use spacebot_core::{
    AgentId, ConversationId, InboundMessage, Lifecycle, Outbox, Owed, ProcessChange, ProcessEvent, ProcessId,
    ProcessKind, ProcessRecord, ProcessRegistry, Registration, RuntimeEvent, SupervisorEnd, Terminal, TerminalState,
};

/// Longest result text kept for the status block and events.
pub(crate) const RESULT_PREVIEW_BYTES: usize = 500;
/// Longest status text a worker can set.
pub(crate) const STATUS_BYTES: usize = 256;

/// Something a process tells its channel.
#[derive(Debug)]
pub(crate) enum Report {
    /// Progress text for the status block.
    Status { id: ProcessId, text: String },
    /// An interactive worker finished a task and waits for a follow-up; `result` is relayed.
    Idle { id: ProcessId, result: String, success: bool },
    /// A branch delegates a task to a new worker with this id.
    Delegate { branch: ProcessId, worker: ProcessId, task: String },
}

/// What a process task returns to the channel's `JoinSet`.
pub(crate) struct ProcessExit {
    pub(crate) id: ProcessId,
    /// `Some` when this task made the terminal transition (so the channel must record it);
    /// `None` when someone else already had.
    pub(crate) terminal: Option<Terminal>,
    pub(crate) result: String,
}

/// Channels into a running worker.
pub(crate) struct WorkerLinks {
    /// Follow-ups, for interactive workers.
    pub(crate) follow_ups: Option<mpsc::UnboundedSender<String>>,
    /// Context injected into the running task.
    pub(crate) context: mpsc::UnboundedSender<String>,
}

/// One live process in the channel's table.
pub(crate) struct Entry {
    pub(crate) kind: ProcessKind,
    pub(crate) description: String,
    pub(crate) status: String,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) cancel: CancellationToken,
    /// Why it was cancelled, when the channel cancelled it.
    pub(crate) cancel_reason: Option<String>,
    /// Whether its completion is relayed (not when stopped by `/stop` or shutdown, or when a
    /// branch delegated its work to a worker).
    pub(crate) relay: bool,
    /// The message whose turn started it; relays are delivered in its context.
    pub(crate) origin: Arc<InboundMessage>,
    pub(crate) worker: Option<WorkerLinks>,
    pub(crate) idle: bool,
    /// Interim results an interactive worker has reported so far.
    pub(crate) results: u32,
    /// Stopped because its channel is ending (shutdown): its conversation is told after the
    /// restart instead of now.
    pub(crate) stopping: bool,
}

/// A finished piece of background work waiting to be relayed.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) id: ProcessId,
    pub(crate) kind: ProcessKind,
    /// The terminal state, or `None` for an interim result of an interactive worker.
    pub(crate) state: Option<TerminalState>,
    pub(crate) success: bool,
    pub(crate) result: String,
    pub(crate) origin: Arc<InboundMessage>,
    /// Distinguishes successive results of one interactive worker, for deduplication.
    pub(crate) sequence: u32,
}

impl Completion {
    /// `done`, `failed`, ... or `result` for an interim result.
    pub(crate) fn label(&self) -> &'static str {
        match self.state {
            Some(state) => state.as_str(),
            None if self.success => "result",
            None => "failed",
        }
    }
}

/// Everything a process task needs to announce itself.
#[derive(Clone)]
pub(crate) struct Announcer {
    pub(crate) agent: AgentId,
    pub(crate) conversation: ConversationId,
    pub(crate) outbox: Outbox,
    /// Where a process's own end is recorded as soon as it is reached.
    pub(crate) registry: ProcessRegistry,
}

impl Announcer {
    pub(crate) fn publish(&self, id: &ProcessId, kind: ProcessKind, change: ProcessChange) {
        self.outbox.publish(RuntimeEvent::Process(ProcessEvent::new(
            self.agent.clone(),
            self.conversation.clone(),
            id.clone(),
            kind,
            change,
        )));
    }

    /// Announces the end the caller won the right to announce.
    pub(crate) fn finished(&self, id: &ProcessId, kind: ProcessKind, terminal: &Terminal, result: &str) {
        self.publish(id, kind, ProcessChange::finished(terminal, preview(result, RESULT_PREVIEW_BYTES)));
    }
}

/// Runs a process body under its cancel token and time limit and makes its terminal transition.
/// With `record_result`, an end the body reached itself is recorded durably at once with its
/// result as owed to the conversation (the channel reaps the process only between turns, and a
/// crash meanwhile must not lose a finished result).
///
/// Never panics outward: a panicking body ends `failed`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn supervise<F>(
    id: ProcessId,
    kind: ProcessKind,
    lifecycle: Lifecycle,
    cancel: CancellationToken,
    limit: Duration,
    announcer: Announcer,
    record_result: bool,
    body: F,
) -> ProcessExit
where
    F: Future<Output = (TerminalState, String)>,
{
    let body = AssertUnwindSafe(body).catch_unwind();
    let (state, result, own) = tokio::select! {
        biased;
        () = cancel.cancelled() => (TerminalState::Cancelled, "cancelled".to_owned(), false),
        () = tokio::time::sleep(limit) => {
            (TerminalState::TimedOut, format!("ran past its time limit of {}", human_duration(limit)), false)
        }
        outcome = body => match outcome {
            Ok((state, result)) => (state, result, true),
            Err(_panic) => (TerminalState::Failed, "failed with an internal error (it panicked)".to_owned(), true),
        },
    };
    let terminal = lifecycle.settle(state);
    if let Some(terminal) = &terminal {
        announcer.finished(&id, kind, terminal, &result);
        // A branch that handed its task to a worker has nothing to tell; the worker will.
        let delegated = kind == ProcessKind::Branch && result.starts_with(crate::branch::DELEGATED_PREFIX);
        if record_result && own && !delegated {
            let owed = Owed::Result(announcer.outbox.scrubber().scrub_owned(result.clone()));
            announcer.registry.record_end(&id, state, Some(owed));
        }
    }
    ProcessExit { id, terminal, result }
}

/// The channel's table of live processes and the tasks running them.
pub(crate) struct Processes {
    pub(crate) entries: BTreeMap<ProcessId, Entry>,
    pub(crate) tasks: JoinSet<ProcessExit>,
    pub(crate) task_ids: std::collections::HashMap<tokio::task::Id, ProcessId>,
    pub(crate) reports_tx: mpsc::UnboundedSender<Report>,
    pub(crate) reports: mpsc::UnboundedReceiver<Report>,
    /// The runtime's process table, where each live process is registered so the cortex can
    /// see it and end it if it hangs.
    registry: ProcessRegistry,
    /// Each live process's place in `registry`; dropped with its entry (and, if the channel
    /// dies first, ending the process as cancelled).
    registrations: std::collections::HashMap<ProcessId, Registration>,
    ends_tx: mpsc::UnboundedSender<SupervisorEnd>,
    /// Processes a supervisor ended: already settled and announced, to drop from the table.
    pub(crate) ends: mpsc::UnboundedReceiver<SupervisorEnd>,
}

impl Processes {
    pub(crate) fn new(registry: ProcessRegistry) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (ends_tx, ends) = mpsc::unbounded_channel();
        Self {
            entries: BTreeMap::new(),
            tasks: JoinSet::new(),
            task_ids: std::collections::HashMap::new(),
            reports_tx,
            reports,
            registry,
            registrations: std::collections::HashMap::new(),
            ends_tx,
            ends,
        }
    }

    pub(crate) fn count(&self, kind: ProcessKind) -> usize {
        self.entries.values().filter(|e| e.kind == kind).count()
    }

    /// The live worker doing the same task, if any (compared without case and extra spaces).
    pub(crate) fn duplicate_worker(&self, task: &str) -> Option<&ProcessId> {
        let wanted = normalize(task);
        self.entries
            .iter()
            .find(|(_, e)| e.kind == ProcessKind::Worker && normalize(&e.description) == wanted)
            .map(|(id, _)| id)
    }

    /// Finds a live process by its full id or a unique prefix of it.
    pub(crate) fn find(&self, id: &str) -> Option<ProcessId> {
        let id = id.trim().trim_start_matches("worker:").trim_start_matches("branch:");
        if id.is_empty() {
            return None;
        }
        let exact = ProcessId::new(id);
        if self.entries.contains_key(&exact) {
            return Some(exact);
        }
        let mut matches = self.entries.keys().filter(|key| key.as_str().starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    }

    /// Adds a process and spawns its task.
    pub(crate) fn spawn<F>(&mut self, id: ProcessId, entry: Entry, task: F, announcer: &Announcer, limit: Duration)
    where
        F: Future<Output = ProcessExit> + Send + 'static,
    {
        let record = self.record(announcer, &id, entry.kind, &entry.lifecycle, &entry.description, limit);
        let registration =
            self.registry.register(record.with_cancel(entry.cancel.clone()).with_origin(entry.origin.clone()));
        let handle = self.tasks.spawn(task);
        self.task_ids.insert(handle.id(), id.clone());
        registration.set_task(handle);
        self.registrations.insert(id.clone(), registration);
        self.entries.insert(id, entry);
    }

    /// Registers background work the channel runs outside this table (a compactor summary, a
    /// chronicle cut or rollup) with the runtime's registry, so the cortex sees it, can end it,
    /// and it ends as cancelled if the channel dies first. Keep the registration with the job.
    pub(crate) fn register_background(
        &self,
        announcer: &Announcer,
        id: &ProcessId,
        lifecycle: &Lifecycle,
        description: &str,
        limit: Duration,
        task: tokio::task::AbortHandle,
    ) -> Registration {
        let record = self.record(announcer, id, ProcessKind::Compactor, lifecycle, description, limit);
        let registration = self.registry.register(record);
        registration.set_task(task);
        registration
    }

    fn record(
        &self,
        announcer: &Announcer,
        id: &ProcessId,
        kind: ProcessKind,
        lifecycle: &Lifecycle,
        description: &str,
        limit: Duration,
    ) -> ProcessRecord {
        ProcessRecord::new(
            announcer.agent.clone(),
            announcer.conversation.clone(),
            id.clone(),
            kind,
            lifecycle.clone(),
            CancellationToken::new(),
            announcer.outbox.clone(),
        )
        .with_description(preview(description, STATUS_BYTES))
        .with_limit(limit)
        .with_notify(self.ends_tx.clone())
    }

    /// Sets what the process's conversation is owed about its end, recorded durably with the end
    /// when the process is removed.
    pub(crate) fn set_owed(&self, id: &ProcessId, owed: Owed) {
        if let Some(registration) = self.registrations.get(id) {
            registration.set_owed(owed);
        }
    }

    /// Takes a process out of the table (and the runtime's registry) once it has ended.
    pub(crate) fn remove(&mut self, id: &ProcessId) -> Option<Entry> {
        self.registrations.remove(id);
        self.entries.remove(id)
    }

    /// Cancels one process with a reason. Returns `false` if it is not live.
    pub(crate) fn cancel(&mut self, id: &ProcessId, reason: &str, relay: bool) -> bool {
        let Some(entry) = self.entries.get_mut(id) else { return false };
        if entry.cancel_reason.is_none() {
            entry.cancel_reason = Some(reason.to_owned());
        }
        entry.relay &= relay;
        // Closing the follow-up queue lets an idle interactive worker notice at once.
        if let Some(worker) = &mut entry.worker {
            worker.follow_ups = None;
        }
        entry.cancel.cancel();
        true
    }

    /// Renders the status block: active workers with their latest status, active branches, and
    /// results not relayed yet. Deterministic: the same state renders the same bytes, and it
    /// holds no clock time.
    pub(crate) fn status_block(&self, pending: &VecDeque<Completion>) -> String {
        let mut out = String::new();
        let workers: Vec<_> = self.entries.iter().filter(|(_, e)| e.kind == ProcessKind::Worker).collect();
        let branches: Vec<_> = self.entries.iter().filter(|(_, e)| e.kind == ProcessKind::Branch).collect();
        if workers.is_empty() && branches.is_empty() && pending.is_empty() {
            return out;
        }
        out.push_str("## Background work\n");
        if !workers.is_empty() {
            out.push_str("\nActive workers:\n");
            for (id, entry) in workers {
                let mode = match (&entry.worker, entry.idle) {
                    (Some(WorkerLinks { follow_ups: Some(_), .. }), true) => " (interactive, idle: accepts follow-ups)",
                    (Some(WorkerLinks { follow_ups: Some(_), .. }), false) => " (interactive)",
                    _ => "",
                };
                out.push_str(&format!(
                    "- [worker {id}] {}{mode}: {}\n",
                    one_line(&entry.description, 200),
                    entry.status
                ));
            }
        }
        if !branches.is_empty() {
            out.push_str("\nActive branches:\n");
            for (id, entry) in branches {
                out.push_str(&format!("- [branch {id}] {}\n", one_line(&entry.description, 200)));
            }
        }
        if !pending.is_empty() {
            out.push_str("\nCompleted, not yet relayed:\n");
            for done in pending {
                out.push_str(&format!(
                    "- [{} {}] {}: {}\n",
                    done.kind,
                    done.id,
                    done.label(),
                    one_line(&done.result, RESULT_PREVIEW_BYTES)
                ));
            }
        }
        out
    }
}

fn normalize(task: &str) -> String {
    task.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// `text` on one line, cut at `max` bytes on a character boundary with an ellipsis.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    preview(&text.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// `text` cut at `max` bytes on a character boundary, with an ellipsis when cut.
pub(crate) fn preview(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A duration as people say it: `30 minutes`, `90 seconds`.
pub(crate) fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 120 && secs.is_multiple_of(60) {
        format!("{} minutes", secs / 60)
    } else if secs == 1 {
        "1 second".to_owned()
    } else if secs == 0 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{secs} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_cut_on_character_boundaries() {
        assert_eq!(preview("héllo", 2), "h…");
        assert_eq!(preview("hello", 10), "hello");
        assert_eq!(one_line("a\n  b", 10), "a b");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human_duration(Duration::from_millis(500)), "500 ms");
    }
}

//! Processes a conversation runs besides its channel (branches, workers, the compactor), their
//! lifecycle events, and the one terminal transition each of them makes.
//!
//! Liveness rests on one rule: a process reaches exactly one terminal state, whatever races
//! (its own completion, a cancel, its timeout, a supervisor, shutdown). [`Lifecycle`] makes that
//! rule structural: the terminal transition is a single compare-and-swap, and only the caller
//! that wins it gets a [`Terminal`], the token an engine needs to record and announce the end.
//! Everybody else learns that the process already ended and does nothing.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ConversationId, ProcessId};

/// What kind of process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProcessKind {
    /// The conversation's own process.
    Channel,
    /// A fork of the channel's context that thinks and returns a conclusion.
    Branch,
    /// A process that does a task with task tools.
    Worker,
    /// Keeps a channel's context within budget.
    Compactor,
}

impl ProcessKind {
    /// The kind as written in events and prompts: `channel`, `branch`, `worker`, `compactor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Channel => "channel",
            Self::Branch => "branch",
            Self::Worker => "worker",
            Self::Compactor => "compactor",
        }
    }
}

impl fmt::Display for ProcessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TerminalState {
    /// It finished its work.
    Done,
    /// It could not finish (a model error, a tool error, no declared outcome, a panic).
    Failed,
    /// Someone cancelled it (the channel, a person, shutdown).
    Cancelled,
    /// It ran past its time limit.
    TimedOut,
}

impl TerminalState {
    /// The state as written in events and prompts: `done`, `failed`, `cancelled`, `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// Whether the process did its work.
    pub fn is_success(self) -> bool {
        self == Self::Done
    }

    fn code(self) -> u8 {
        match self {
            Self::Done => 1,
            Self::Failed => 2,
            Self::Cancelled => 3,
            Self::TimedOut => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Done),
            2 => Some(Self::Failed),
            3 => Some(Self::Cancelled),
            4 => Some(Self::TimedOut),
            _ => None,
        }
    }
}

impl fmt::Display for TerminalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lifecycle of one process: running until exactly one terminal transition.
///
/// Cheap to clone; clones share the state, so the process, its owner and a supervisor can each
/// try to end it and exactly one succeeds.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    state: Arc<AtomicU8>,
}

/// Proof that the holder made a process's terminal transition: only [`Lifecycle::settle`] makes
/// one, and only once per lifecycle. Record and announce the end with it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "the winner of the terminal transition must record and announce it"]
pub struct Terminal {
    state: TerminalState,
}

impl Terminal {
    /// The terminal state that was reached.
    pub fn state(&self) -> TerminalState {
        self.state
    }
}

impl Lifecycle {
    /// A running process.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the process in `state` if it has not ended yet.
    ///
    /// Exactly one call per lifecycle returns `Some`, whatever the interleaving; every later (or
    /// losing) call returns `None` and must not record or announce anything.
    pub fn settle(&self, state: TerminalState) -> Option<Terminal> {
        self.state
            .compare_exchange(0, state.code(), Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Terminal { state })
    }

    /// The terminal state, once reached.
    pub fn terminal(&self) -> Option<TerminalState> {
        TerminalState::from_code(self.state.load(Ordering::Acquire))
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.terminal().is_none()
    }
}

/// Something that happened to a process, published as [`RuntimeEvent::Process`].
///
/// [`RuntimeEvent::Process`]: crate::RuntimeEvent::Process
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProcessEvent {
    /// The agent.
    pub agent: AgentId,
    /// The conversation the process belongs to.
    pub conversation: ConversationId,
    /// The process.
    pub process: ProcessId,
    /// Its kind.
    pub kind: ProcessKind,
    /// What happened.
    pub change: ProcessChange,
}

impl ProcessEvent {
    /// An event.
    pub fn new(
        agent: AgentId,
        conversation: ConversationId,
        process: ProcessId,
        kind: ProcessKind,
        change: ProcessChange,
    ) -> Self {
        Self { agent, conversation, process, kind, change }
    }
}

/// A process lifecycle change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProcessChange {
    /// It started.
    Started {
        /// Its task or description.
        description: String,
    },
    /// It reported progress.
    Status {
        /// The status text.
        text: String,
    },
    /// It ended. Published once per process, by the winner of its terminal transition.
    Finished {
        /// How it ended.
        state: TerminalState,
        /// Its result or the reason it ended, shortened for observers.
        summary: String,
    },
}

impl ProcessChange {
    /// The end of a process, built from the proof that the caller ended it.
    pub fn finished(terminal: &Terminal, summary: impl Into<String>) -> Self {
        Self::Finished { state: terminal.state(), summary: summary.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_settle_wins() {
        let lifecycle = Lifecycle::new();
        assert!(lifecycle.is_running());
        let first = lifecycle.settle(TerminalState::Done);
        assert_eq!(first.map(|t| t.state()), Some(TerminalState::Done));
        assert!(lifecycle.settle(TerminalState::Cancelled).is_none());
        assert!(lifecycle.clone().settle(TerminalState::TimedOut).is_none());
        assert_eq!(lifecycle.terminal(), Some(TerminalState::Done));
    }

    #[test]
    fn racing_threads_produce_one_terminal_state() {
        for _ in 0..200 {
            let lifecycle = Lifecycle::new();
            let states =
                [TerminalState::Done, TerminalState::Failed, TerminalState::Cancelled, TerminalState::TimedOut];
            let winners: Vec<TerminalState> = std::thread::scope(|scope| {
                let handles: Vec<_> = states
                    .iter()
                    .map(|state| {
                        let lifecycle = lifecycle.clone();
                        scope.spawn(move || lifecycle.settle(*state).map(|t| t.state()))
                    })
                    .collect();
                handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(winners.len(), 1, "{winners:?}");
            assert_eq!(lifecycle.terminal(), Some(winners[0]));
        }
    }

    #[test]
    fn events_serialize_with_their_change() {
        let lifecycle = Lifecycle::new();
        let terminal = lifecycle.settle(TerminalState::TimedOut).unwrap();
        let event = ProcessEvent::new(
            AgentId::new("main"),
            ConversationId::new("c"),
            ProcessId::new("p1"),
            ProcessKind::Worker,
            ProcessChange::finished(&terminal, "ran past 30 minutes"),
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "worker");
        assert_eq!(json["change"]["change"], "finished");
        assert_eq!(json["change"]["state"], "timed_out");
    }
}

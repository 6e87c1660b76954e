//! Durable records of process runs, so that a branch or worker cut short by a crash still gets
//! its one terminal state, recorded, and the person who asked for it hears about it.
//!
//! The runtime keeps the journal: every process registered in its [`ProcessRegistry`] is
//! recorded when it starts and when its registration ends (with the terminal state it reached),
//! by one task that writes in order and drains what is queued at shutdown. A run still without
//! an end when the runtime next starts was interrupted: it is recorded as `failed` (once: the
//! end is a conditional update) and, for a worker or branch started for someone's message, the
//! conversation gets a visible notice saying what was lost.
//!
//! [`ProcessRegistry`]: crate::ProcessRegistry

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::Outbox;
use crate::error::StoreError;
use crate::ids::{AgentId, ConversationId, ProcessId};
use crate::message::{InboundMessage, OutboundResponse, Role, StoredMessage};
use crate::process::{ProcessKind, TerminalState};
use crate::store::ConversationLog;

/// One run of a process, as recorded when it started.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessRun {
    /// The process.
    pub process: ProcessId,
    /// The agent.
    pub agent: AgentId,
    /// The conversation that owns it.
    pub conversation: ConversationId,
    /// Its kind.
    pub kind: ProcessKind,
    /// Its task or description.
    pub description: String,
    /// The message whose turn started it, to answer in that context if it is interrupted.
    pub origin: Option<InboundMessage>,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

impl ProcessRun {
    /// A run starting now.
    pub fn new(
        process: ProcessId,
        agent: AgentId,
        conversation: ConversationId,
        kind: ProcessKind,
        description: impl Into<String>,
        origin: Option<InboundMessage>,
    ) -> Self {
        Self { process, agent, conversation, kind, description: description.into(), origin, started_at: Utc::now() }
    }
}

/// Where process runs are recorded; a [`ConversationLog`] that keeps them hands one out from
/// [`ConversationLog::process_runs`].
#[async_trait]
pub trait ProcessRuns: Send + Sync + 'static {
    /// Records a run that started.
    async fn started(&self, run: &ProcessRun) -> Result<(), StoreError>;

    /// Records how a run ended, unless its end is recorded already. Returns whether this call
    /// recorded it.
    async fn ended(&self, process: &ProcessId, state: TerminalState) -> Result<bool, StoreError>;

    /// Runs recorded as started and never as ended, oldest first.
    async fn unfinished(&self) -> Result<Vec<ProcessRun>, StoreError>;
}

/// A change the registry reports to the journal.
#[derive(Debug)]
pub(crate) enum RunChange {
    Started(Box<ProcessRun>),
    Ended(ProcessId, TerminalState),
}

/// The notice a conversation gets for a worker or branch interrupted by a restart.
pub(crate) fn interrupted_notice(run: &ProcessRun) -> String {
    let what = match run.kind {
        ProcessKind::Branch => "Some background thinking",
        _ => "A background task",
    };
    format!(
        "⚠️ {what} was interrupted by a restart before it finished: \u{201c}{}\u{201d}. Ask again if you still need it.",
        run.description
    )
}

/// The journal task: first settles the runs an earlier run of the daemon left unfinished, then
/// records changes in order until `stop`, and then what is still queued.
pub(crate) async fn keep_journal(
    runs: std::sync::Arc<dyn ProcessRuns>,
    log: std::sync::Arc<dyn ConversationLog>,
    outbox: Outbox,
    mut changes: mpsc::UnboundedReceiver<RunChange>,
    stop: CancellationToken,
) {
    settle_interrupted(&*runs, &*log, &outbox).await;
    loop {
        let change = tokio::select! {
            biased;
            change = changes.recv() => change,
            () = stop.cancelled() => break,
        };
        let Some(change) = change else { return };
        record(&*runs, change).await;
    }
    changes.close();
    while let Some(change) = changes.recv().await {
        record(&*runs, change).await;
    }
}

async fn record(runs: &dyn ProcessRuns, change: RunChange) {
    let result = match &change {
        RunChange::Started(run) => runs.started(run).await,
        RunChange::Ended(process, state) => runs.ended(process, *state).await.map(|_| ()),
    };
    if let Err(error) = result {
        tracing::error!(?change, %error, "can't record a process run");
    }
}

async fn settle_interrupted(runs: &dyn ProcessRuns, log: &dyn ConversationLog, outbox: &Outbox) {
    let unfinished = match runs.unfinished().await {
        Ok(unfinished) => unfinished,
        Err(error) => {
            tracing::error!(%error, "can't read the process runs the last run left unfinished");
            return;
        }
    };
    if !unfinished.is_empty() {
        tracing::warn!(
            count = unfinished.len(),
            "processes were interrupted by the last stop; recording them as failed"
        );
    }
    for run in unfinished {
        match runs.ended(&run.process, TerminalState::Failed).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::error!(process = %run.process, %error, "can't record an interrupted process run");
                continue;
            }
        }
        let Some(origin) =
            run.origin.as_ref().filter(|_| matches!(run.kind, ProcessKind::Worker | ProcessKind::Branch))
        else {
            continue;
        };
        let text = interrupted_notice(&run);
        let notice =
            StoredMessage::new(run.agent.clone(), run.conversation.clone(), Role::System, "spacebot", text.as_str());
        if let Err(error) = log.record_reply(&notice, &[]).await {
            tracing::error!(process = %run.process, %error, "can't record the notice of an interrupted process");
        }
        if let Err(error) = outbox.send(origin, OutboundResponse::text(text)).await {
            tracing::warn!(process = %run.process, %error, "can't deliver the notice of an interrupted process");
        }
    }
}

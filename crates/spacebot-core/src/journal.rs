//! The run journal: the runtime task that records process runs in [`ProcessRuns`].
//!
//! Every process registered in the runtime's [`ProcessRegistry`] is recorded when it starts and
//! when its registration ends (with the terminal state it reached), by one task that writes in
//! order and drains what is queued at shutdown. A run still without an end when the runtime next
//! starts was interrupted: it is recorded as `failed` (once: the end is a conditional update)
//! and, for a worker or branch started for someone's message, the conversation gets a visible
//! notice saying what was lost. Notices a run ended owing its conversation (a shutdown stopped
//! it before it finished) and that a stop or crash kept from being sent are sent then too, and
//! marked told; results owed are relayed by the conversation itself (the runtime wakes it).
//!
//! In a fleet the runs table is shared: a member settles (and sends the notices of) only the runs
//! of conversations it may run, those whose lease it takes because it is free, expired or its
//! own. The runs of conversations a live member holds are that member's. And when a member starts
//! a conversation under its lease, the conversation's runs still unfinished that this member is
//! not running were cut short by the member that ran it before (which died, or lost the lease):
//! they are settled then ([`settle_taken_over`]).
//!
//! [`ProcessRegistry`]: crate::ProcessRegistry

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ids::{AgentId, ConversationId, ProcessId};
use crate::lease::{Claim, Leases};
use crate::log::ConversationLog;
use crate::message::{OutboundResponse, Role, StoredMessage};
use crate::outbox::Outbox;
use crate::process::{ProcessKind, TerminalState};
use crate::runs::{Owed, ProcessRun, ProcessRuns};

/// A change the registry reports to the journal.
#[derive(Debug)]
pub(crate) enum RunChange {
    Started(Box<ProcessRun>),
    Ended(ProcessId, TerminalState, Option<Owed>),
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
    runs: Arc<dyn ProcessRuns>,
    log: Arc<dyn ConversationLog>,
    outbox: Outbox,
    mut changes: mpsc::UnboundedReceiver<RunChange>,
    stop: CancellationToken,
    leases: Option<Arc<dyn Leases>>,
) {
    let leases = leases.as_deref();
    settle_interrupted(&*runs, &*log, &outbox, leases).await;
    send_owed_notices(&*runs, &*log, &outbox, leases).await;
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
        RunChange::Ended(process, state, owed) => runs.ended(process, *state, owed.as_ref()).await.map(|_| ()),
    };
    if let Err(error) = result {
        tracing::error!(?change, %error, "can't record a process run");
    }
}

/// Whether this runtime may settle the runs of a conversation: always alone; in a fleet, when it
/// takes the conversation's lease.
async fn mine(leases: Option<&dyn Leases>, agent: &AgentId, conversation: &ConversationId) -> bool {
    let Some(leases) = leases else { return true };
    match leases.acquire(agent, conversation).await {
        Ok(Claim::HeldBy(holder)) => {
            tracing::debug!(%agent, %conversation, %holder, "its runs are the live member's that runs it");
            false
        }
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%agent, %conversation, %error, "can't take the conversation's lease; leaving its runs");
            false
        }
    }
}

async fn settle_interrupted(
    runs: &dyn ProcessRuns,
    log: &dyn ConversationLog,
    outbox: &Outbox,
    leases: Option<&dyn Leases>,
) {
    let mut unfinished = match runs.unfinished().await {
        Ok(unfinished) => unfinished,
        Err(error) => {
            tracing::error!(%error, "can't read the process runs the last run left unfinished");
            return;
        }
    };
    if leases.is_some() {
        let mut kept = Vec::with_capacity(unfinished.len());
        for run in unfinished {
            if mine(leases, &run.agent, &run.conversation).await {
                kept.push(run);
            }
        }
        unfinished = kept;
    }
    if !unfinished.is_empty() {
        tracing::warn!(
            count = unfinished.len(),
            "processes were interrupted by the last stop; recording them as failed"
        );
    }
    for run in unfinished {
        settle(runs, log, outbox, run).await;
    }
}

/// Settles the unfinished runs of a conversation this member just took under its lease that it
/// is not running itself (`running`: the processes of its registry), as [`settle_interrupted`]
/// does at start.
pub(crate) async fn settle_taken_over(
    runs: &dyn ProcessRuns,
    log: &dyn ConversationLog,
    outbox: &Outbox,
    agent: &AgentId,
    conversation: &ConversationId,
    running: &[ProcessId],
) {
    let unfinished = match runs.unfinished().await {
        Ok(unfinished) => unfinished,
        Err(error) => {
            tracing::error!(%error, %conversation, "can't read the process runs of a conversation taken over");
            return;
        }
    };
    for run in unfinished {
        if &run.agent != agent || &run.conversation != conversation || running.contains(&run.process) {
            continue;
        }
        tracing::warn!(process = %run.process, %conversation,
            "a process of a conversation taken over from another member was cut short; recording it as failed");
        settle(runs, log, outbox, run).await;
    }
}

/// Records an interrupted run as failed (once) and tells its conversation, for a worker or branch
/// started for someone's message.
async fn settle(runs: &dyn ProcessRuns, log: &dyn ConversationLog, outbox: &Outbox, run: ProcessRun) {
    match runs.ended(&run.process, TerminalState::Failed, None).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::error!(process = %run.process, %error, "can't record an interrupted process run");
            return;
        }
    }
    let Some(origin) = run.origin.as_ref().filter(|_| matches!(run.kind, ProcessKind::Worker | ProcessKind::Branch))
    else {
        return;
    };
    tell(log, outbox, &run, origin, interrupted_notice(&run)).await;
}

/// Sends the notices runs ended owing their conversations, and marks each told once sent (or
/// recorded: a notice the platform refused is in the conversation's log, and is not retried).
async fn send_owed_notices(
    runs: &dyn ProcessRuns,
    log: &dyn ConversationLog,
    outbox: &Outbox,
    leases: Option<&dyn Leases>,
) {
    let owed = match runs.owed().await {
        Ok(owed) => owed,
        Err(error) => {
            tracing::error!(%error, "can't read what ended processes still owe their conversations");
            return;
        }
    };
    for recorded in owed {
        let Some(Owed::Notice(text)) = &recorded.owed else { continue };
        if !mine(leases, &recorded.run.agent, &recorded.run.conversation).await {
            continue;
        }
        if let Some(origin) = &recorded.run.origin {
            tell(log, outbox, &recorded.run, origin, text.clone()).await;
        }
        if let Err(error) = runs.told(std::slice::from_ref(&recorded.run.process)).await {
            tracing::error!(process = %recorded.run.process, %error, "can't mark a process notice as sent");
        }
    }
}

/// Records a harness notice about `run` in its conversation and sends it in `origin`'s context.
async fn tell(
    log: &dyn ConversationLog,
    outbox: &Outbox,
    run: &ProcessRun,
    origin: &crate::message::InboundMessage,
    text: String,
) {
    let text = outbox.scrubber().scrub_owned(text);
    let notice =
        StoredMessage::new(run.agent.clone(), run.conversation.clone(), Role::System, "spacebot", text.as_str());
    if let Err(error) = log.record_reply(&notice, &[]).await {
        tracing::error!(process = %run.process, %error, "can't record a notice about a process");
    }
    if let Err(error) = outbox.send(origin, OutboundResponse::text(text)).await {
        tracing::warn!(process = %run.process, %error, "can't deliver a notice about a process");
    }
}

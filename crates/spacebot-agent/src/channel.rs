//! The channel: one task per conversation, owning its history, one turn at a time, never
//! waiting on the branches and workers it starts.
//!
//! Its idle loop ([`Channel::run`]) waits on everything at once: shutdown, reports from its
//! processes, processes ending (its `JoinSet`), background context work ending, the inbox, and
//! two timers (the end of a message burst, the relay of background results). A turn runs inside
//! that loop, so messages arriving meanwhile queue in the inbox in order; control commands do not
//! wait: the turn is raced against the inbox's control lane, so `/stop` ends it and `/status` is
//! answered while it runs.
//!
//! The behaviour is split by concern, each file an `impl Channel` block over the state defined
//! here:
//! - `turn.rs`: messages, bursts, control commands, and the turn itself (model calls, the
//!   channel tools, reply / skip / visible error);
//! - `delegation.rs`: branches and workers, their reports and ends, and the relay of results;
//! - `compaction.rs`: the rolling compactor (background summaries, truncation);
//! - `chronicle.rs`: chronicle-mode checkpoints, rollups and the emergency cut;
//! - `restart.rs`: results left untold by the last run, and work a replayed turn started before.
//!
//! After each turn the channel measures its context and compacts it without waiting for a
//! summary; [`ContextState`] holds everything that work touches.

mod chronicle;
mod compaction;
mod delegation;
mod draft;
mod restart;
mod turn;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use spacebot_core::{
    ChatMessage, Checkpoint, Chronicle, ControlCommand, ConversationContext, ConversationInput, InboundMessage, Inbox,
    KnowledgeQuery, MessageId, ProcessId, ProcessKind, ProcessRuns, ResponseMode, Role, RuntimeEvent, StoredMessage,
    TurnOutcome, Usage,
};

use crate::context::chronicle::JobOutcome;
use crate::context::compactor::{self, Boundary, Slot};
use crate::engine::AgentProfile;
use crate::memory_tools::MemoryToolContext;
use crate::processes::{Announcer, Completion, Processes};
use crate::prompt::logged_envelope;
use chronicle::ChronicleJob;
use compaction::Compaction;
use turn::Burst;

/// The sender label of messages the harness itself writes.
const HARNESS_SENDER: &str = "spacebot";
/// Sequence number of a process's terminal completion (interim results count up from 1).
const FINAL_SEQUENCE: u32 = u32::MAX;

/// One message of the channel's context, with the log ids of the inbound messages it came from.
struct HistoryEntry {
    /// Increases along the history; a summary takes the number of the first message it replaces.
    seq: u64,
    /// Estimated tokens of `message`.
    tokens: usize,
    inbound: Vec<MessageId>,
    message: ChatMessage,
}

pub(crate) struct Channel {
    ctx: ConversationContext,
    profile: Arc<AgentProfile>,
    /// What the model sees and the work that keeps it within the window.
    context: ContextState,
    procs: Processes,
    announcer: Announcer,
    /// Results waiting for a relay turn, oldest first.
    pending: VecDeque<Completion>,
    /// When the pending results are relayed.
    relay_at: Option<Instant>,
    /// Relay turns since the last real user message.
    relays_since_user: u32,
    paused: bool,
    /// The response mode set here with `/active`, `/mention-only` or `/quiet` (kept in the log's
    /// conversation settings), over the binding's and the agent's.
    mode: Option<ResponseMode>,
    burst: Option<Burst>,
    /// The message of the latest user turn: where delegated work reports if its branch is gone.
    last_origin: Option<Arc<InboundMessage>>,
    /// Tool calls of the turn in progress and their results, complete pairs only; they join the
    /// history when the turn ends.
    turn_calls: Vec<ChatMessage>,
    /// The identity files' render, read again at each turn.
    identity: String,
    /// The tokens the current turn's model calls used so far.
    turn_usage: Usage,
    /// A reply preview was published since the last reply (see `draft`).
    draft_shown: bool,
    /// Who has spoken here, in the history loaded at start and since (`source:sender`, the
    /// platform ids memory scopes use), sorted so the render and the tools see them in a stable
    /// order.
    participants: BTreeSet<String>,
    /// The record of process runs, when the log keeps one.
    runs: Option<Arc<dyn ProcessRuns>>,
    /// Processes whose final result the conversation was told, to mark so in `runs`.
    told_ids: Vec<ProcessId>,
    /// Messages unanswered when this channel started (a turn answering one may be a replay).
    replayable: HashSet<MessageId>,
    /// Runs the current turn started or accounted for, so an earlier run is matched once.
    turn_claimed: HashSet<ProcessId>,
}

/// The channel's context: the history the model sees, what it weighs, and the compaction or
/// chronicle work on it. Only the channel task touches it.
struct ContextState {
    history: VecDeque<HistoryEntry>,
    /// The `seq` the next history entry gets.
    next_seq: u64,
    /// The provider's token count over our estimate for the latest request (at least 1).
    calibration: f64,
    /// The latest knowledge render of the agent's memory for this conversation (empty without
    /// memory or memories).
    knowledge: String,
    /// Changes whenever the history's head changes other than by a checkpoint's trim
    /// (truncation, `/new`, a rolling summary), so a cut planned before is discarded.
    head_epoch: u64,
    /// The background summary in flight, if any, and the task computing it.
    compaction: Option<Compaction>,
    /// Summary tasks, each returning the id of its compaction with its outcome (a task aborted
    /// after it finished may still deliver, and must not be taken for a later compaction's).
    summaries: JoinSet<(ProcessId, Result<String, String>)>,
    /// When the last summary failed (background summaries wait `retry_delay` after it).
    summary_failed_at: Option<Instant>,
    /// The chronicle kept beside the conversation log, when the store keeps one.
    chronicle: Option<Arc<dyn Chronicle>>,
    /// Every checkpoint of this conversation (both levels, in commit order), as read at start
    /// and committed since; only this channel commits them.
    checkpoints: Vec<Checkpoint>,
    /// The "Session Chronicle" render of `checkpoints` (empty without any), redone when they change.
    chronicle_view: String,
    /// Points where the history and the log are known to line up: `(live_end, durable)` says
    /// the history entries numbered below `live_end` come from logged messages up to `durable`.
    /// Recorded after each turn in chronicle mode (and per message loaded at start).
    boundaries: VecDeque<(u64, u64)>,
    /// The chronicle job in flight, if any, and the tasks running it.
    chronicle_job: Option<ChronicleJob>,
    chronicle_jobs: JoinSet<(ProcessId, JobOutcome)>,
    /// Chronicle maintenance waits for the idle loop (set where it can't be awaited).
    chronicle_due: bool,
    /// When the last chronicle job failed (new ones wait `retry_delay`).
    chronicle_failed_at: Option<Instant>,
}

impl ContextState {
    pub(super) fn new(chronicle: Option<Arc<dyn Chronicle>>) -> Self {
        Self {
            history: VecDeque::new(),
            next_seq: 0,
            calibration: 1.0,
            knowledge: String::new(),
            head_epoch: 0,
            compaction: None,
            summaries: JoinSet::new(),
            summary_failed_at: None,
            chronicle,
            checkpoints: Vec::new(),
            chronicle_view: String::new(),
            boundaries: VecDeque::new(),
            chronicle_job: None,
            chronicle_jobs: JoinSet::new(),
            chronicle_due: false,
            chronicle_failed_at: None,
        }
    }

    /// A history entry for `message`, numbered next.
    pub(super) fn entry(&mut self, inbound: Vec<MessageId>, message: ChatMessage) -> HistoryEntry {
        let seq = self.next_seq;
        self.next_seq += 1;
        HistoryEntry { seq, tokens: compactor::tokens(message.char_len()), inbound, message }
    }

    pub(super) fn push(&mut self, inbound: Vec<MessageId>, message: ChatMessage) {
        let entry = self.entry(inbound, message);
        self.history.push_back(entry);
    }

    /// The messages the model sees, oldest first.
    pub(super) fn messages(&self) -> impl Iterator<Item = ChatMessage> + '_ {
        self.history.iter().map(|entry| entry.message.clone())
    }

    /// The history as the compactor weighs it.
    pub(super) fn slots(&self) -> Vec<Slot> {
        self.history.iter().map(|entry| Slot { tokens: entry.tokens, boundary: Boundary::of(&entry.message) }).collect()
    }
}

impl Channel {
    pub(crate) fn new(ctx: ConversationContext, profile: Arc<AgentProfile>) -> Self {
        let announcer = Announcer {
            agent: ctx.agent.clone(),
            conversation: ctx.conversation.clone(),
            outbox: ctx.outbox.clone(),
            registry: ctx.processes.clone(),
        };
        let procs = Processes::new(ctx.processes.clone());
        let context = ContextState::new(ctx.log.chronicle());
        let runs = ctx.log.process_runs();
        Self {
            ctx,
            profile,
            context,
            procs,
            announcer,
            pending: VecDeque::new(),
            relay_at: None,
            relays_since_user: 0,
            paused: false,
            mode: None,
            burst: None,
            last_origin: None,
            turn_calls: Vec::new(),
            identity: String::new(),
            turn_usage: Usage::default(),
            draft_shown: false,
            participants: BTreeSet::new(),
            runs,
            told_ids: Vec::new(),
            replayable: HashSet::new(),
            turn_claimed: HashSet::new(),
        }
    }

    /// Runs until the inbox closes or the runtime shuts down, then cancels its branches and
    /// workers and waits (within `cancel_grace`) until each has reached a terminal state. A turn
    /// in progress when shutdown begins is finished (the runtime cancels it if it outlasts the
    /// grace period). Also returns when the runtime asks it to go and it [is idle](Self::is_idle);
    /// the next message starts a new channel that reloads the history from the log.
    pub(crate) async fn run(mut self, mut inbox: Inbox) {
        self.load_history().await;
        self.load_mode().await;
        self.resume_owed().await;
        loop {
            self.flush_told().await;
            self.maintain_chronicle().await;
            let burst_at = self.burst.as_ref().map(|burst| burst.deadline);
            let relay_at = self.relay_at;
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                () = self.ctx.shutdown.cancelled() => break,
                Some(report) = self.procs.reports.recv() => self.on_report(report),
                Some(end) = self.procs.ends.recv() => self.on_supervisor_end(end),
                Some(joined) = self.procs.tasks.join_next_with_id(), if !self.procs.tasks.is_empty() => {
                    self.on_exit(joined);
                }
                Some(joined) = self.context.summaries.join_next(), if !self.context.summaries.is_empty() => self.on_summary(joined),
                Some(joined) = self.context.chronicle_jobs.join_next(), if !self.context.chronicle_jobs.is_empty() => {
                    self.on_chronicle_job(joined).await;
                }
                input = inbox.recv() => match input {
                    Some(ConversationInput::Control(command, message)) => self.control(command, &message, false).await,
                    Some(ConversationInput::Message(message)) => self.accept(message, &inbox).await,
                    Some(ConversationInput::Evict) if self.is_idle(&inbox) => {
                        tracing::debug!(agent = %self.ctx.agent, conversation = %self.ctx.conversation,
                            "idle; the channel ends until the next message");
                        break;
                    }
                    Some(other) => tracing::debug!(?other, "channel ignores this input"),
                    None => break,
                },
                () = tokio::time::sleep_until(burst_at.unwrap_or(far)), if burst_at.is_some() => {
                    self.flush_burst(&inbox).await;
                }
                () = tokio::time::sleep_until(relay_at.unwrap_or(far)), if relay_at.is_some() => {
                    self.relay(&inbox).await;
                }
            }
        }
        self.stop_processes().await;
        self.cancel_compaction("the conversation ended");
        self.cancel_chronicle_job("the conversation ended");
        while self.context.summaries.join_next().await.is_some() {}
        while self.context.chronicle_jobs.join_next().await.is_some() {}
    }

    /// Whether the channel may end now and a later one start from the log, as after a restart,
    /// with no work lost: no message queued or held in a burst, no branch, worker or background
    /// context work (nor a report or end of one waiting), no result waiting for a relay turn, and
    /// not paused (a pause lives only here). Called between turns, so no turn is running. What
    /// the log does not keep (tool calls and their results, a rolling summary) is dropped, as a
    /// restart drops it.
    fn is_idle(&self, inbox: &Inbox) -> bool {
        inbox.is_empty()
            && self.burst.is_none()
            && self.pending.is_empty()
            && self.relay_at.is_none()
            && self.procs.entries.is_empty()
            && self.procs.tasks.is_empty()
            && self.procs.reports.is_empty()
            && self.procs.ends.is_empty()
            && self.context.compaction.is_none()
            && self.context.summaries.is_empty()
            && self.context.chronicle_job.is_none()
            && self.context.chronicle_jobs.is_empty()
            && !self.context.chronicle_due
            && !self.paused
            && self.told_ids.is_empty()
    }

    /// Loads the checkpoints (in any mode: the view shows them) and the history: in chronicle
    /// mode only the messages after the newest checkpoint, else the last `history_limit`.
    pub(super) async fn load_history(&mut self) {
        let (agent, conversation) = (self.ctx.agent.clone(), self.ctx.conversation.clone());
        if let Some(chronicle) = self.context.chronicle.clone() {
            match chronicle.checkpoints(&agent, &conversation).await {
                Ok(checkpoints) => {
                    self.context.set_checkpoints(checkpoints, &self.profile.settings.compaction.chronicle)
                }
                Err(error) => tracing::warn!(%agent, %conversation, %error,
                    "can't read the conversation's checkpoints; starting without them"),
            }
        }
        let limit = self.profile.settings.history_limit;
        let loaded: Vec<(Option<u64>, StoredMessage)> = match self.chronicle_mode() {
            Some(chronicle) => {
                match chronicle.latest_after(&agent, &conversation, self.context.covered_to(), limit).await {
                    Ok(messages) => messages.into_iter().map(|logged| (Some(logged.seq), logged.message)).collect(),
                    Err(error) => {
                        tracing::warn!(%agent, %conversation, %error, "can't load conversation history; starting with none");
                        return;
                    }
                }
            }
            None => match self.ctx.log.history(&agent, &conversation, limit).await {
                Ok(messages) => messages.into_iter().map(|message| (None, message)).collect(),
                Err(error) => {
                    tracing::warn!(%agent, %conversation, %error, "can't load conversation history; starting with none");
                    return;
                }
            },
        };
        // Messages not answered yet (recovered at start, or recorded just before this channel
        // started) are on their way through the inbox and join the context as they are answered,
        // in order. Loading them here would show the first turn later messages before its own.
        // Read after the history: nothing else answers this conversation meanwhile.
        let pending = self.pending_ids().await;
        self.set_replayable(&pending);
        // `/new` set everything before it aside; the log keeps the command, so that holds after a
        // restart too.
        let fresh_start =
            loaded.iter().rposition(|(_, stored)| stored.role == Role::User && starts_fresh(&stored.text));
        let loaded = loaded.into_iter().skip(fresh_start.map_or(0, |at| at + 1));
        for (seq, stored) in loaded {
            // Who spoke before a restart still takes part: their private memories stay visible.
            if let Some(participant) = &stored.participant {
                self.participants.insert(participant.clone());
            }
            let (inbound, message) = match stored.role {
                Role::User if pending.contains(&stored.id) => continue,
                Role::User => {
                    let text = logged_envelope(&stored);
                    (vec![stored.id], ChatMessage::user(text))
                }
                Role::Assistant => (Vec::new(), ChatMessage::assistant(stored.text)),
                // Harness notices are for people, not context for the model.
                _ => continue,
            };
            self.context.push(inbound, message);
            if let Some(seq) = seq {
                self.context.note_boundary(seq);
            }
        }
        // A long history loaded into a smaller window is brought within it before the first turn.
        self.maintain_context();
        self.maintain_chronicle().await;
    }

    /// The ids of this conversation's messages that are recorded but not yet answered.
    pub(super) async fn pending_ids(&self) -> HashSet<MessageId> {
        match self.ctx.log.unhandled_in(&self.ctx.agent, &self.ctx.conversation).await {
            Ok(ids) => ids.into_iter().collect(),
            Err(error) => {
                // `user_turn` still moves each answered message to the end of the context.
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't read unanswered messages; loaded history may include them");
                HashSet::new()
            }
        }
    }

    /// What `/status` says.
    pub(super) fn status_report(&self, busy: bool) -> String {
        let state = match (self.paused, busy) {
            (true, _) => "paused",
            (false, true) => "answering a message",
            (false, false) => "idle",
        };
        let mut text = format!(
            "Status: {state}. {} worker(s), {} branch(es) running.",
            self.procs.count(ProcessKind::Worker),
            self.procs.count(ProcessKind::Branch)
        );
        let block = self.procs.status_block(&self.pending);
        if !block.is_empty() {
            text.push_str("\n\n");
            text.push_str(block.trim_end());
        }
        text
    }

    /// Announces how a turn ended: the message it answered, if any, and what its model calls
    /// used (reset for the next turn).
    pub(super) fn publish_turn(&mut self, outcome: TurnOutcome, message: Option<&InboundMessage>) {
        self.ctx.outbox.publish(RuntimeEvent::TurnFinished {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            outcome,
            message: message.map(|message| message.id.clone()),
            usage: std::mem::take(&mut self.turn_usage),
        });
    }

    /// The system prompt: the agent's prompt, its identity files, the knowledge render, the
    /// session chronicle, then the status block. Byte-identical between turns while no identity
    /// file or memory the conversation may see changes, no checkpoint is committed, and no process
    /// starts, reports or ends.
    pub(super) fn system_prompt(&self) -> String {
        let mut prompt = self.profile.system_prompt.clone();
        for part in [self.identity.as_str(), self.context.knowledge.trim_end(), self.context.chronicle_view.as_str()] {
            if !part.is_empty() {
                prompt.push_str("\n\n");
                prompt.push_str(part);
            }
        }
        let block = self.procs.status_block(&self.pending);
        if !block.is_empty() {
            prompt.push_str("\n\n");
            prompt.push_str(block.trim_end());
        }
        prompt
    }

    /// The memory tools' view of this conversation: its agent, id and participants.
    pub(super) fn memory_context(&self) -> MemoryToolContext {
        MemoryToolContext::new(self.ctx.agent.clone(), self.ctx.conversation.clone(), self.participants.iter().cloned())
    }

    /// Renders what the agent remembers that this conversation may see. A store that fails
    /// keeps the previous render (logged), so a memory outage never fails a turn.
    pub(super) async fn refresh_knowledge(&mut self) {
        let Some(memory) = self.profile.memory.clone() else { return };
        let context = self.memory_context();
        let visibility = spacebot_core::Visibility::conversation(context.conversation, context.participants);
        match memory.render_knowledge(KnowledgeQuery::new(context.agent, visibility)).await {
            Ok(render) => self.context.knowledge = render,
            Err(error) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't render the agent's memory; the prompt keeps the previous render");
            }
        }
    }
}

/// Whether a logged message is the `/new` command (its text as the log stores commands).
fn starts_fresh(text: &str) -> bool {
    let word = text.split_whitespace().next().unwrap_or_default();
    word.strip_prefix('/').and_then(ControlCommand::from_name) == Some(ControlCommand::New)
}

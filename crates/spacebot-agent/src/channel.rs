//! The channel: one task per conversation, owning its history, one turn at a time, never
//! waiting on the branches and workers it starts.
//!
//! Its idle loop waits on six things at once: shutdown, reports from its processes, processes
//! ending (its `JoinSet`), a background summary ending, the inbox, and two timers (the end of a
//! message burst, the relay of background results). After each turn it measures its context and
//! compacts it (`compactor.rs`; in chronicle mode, `chronicle.rs`) without waiting for a summary.
//! A turn runs inside that loop, so messages arriving meanwhile queue in the inbox in order; control commands do not wait: the turn is raced against the inbox's control
//! lane, so `/stop` ends it and `/status` is answered while it runs.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use spacebot_core::{
    ChatMessage, ChatRequest, Checkpoint, CheckpointKind, Chronicle, ControlCommand, ConversationContext,
    ConversationInput, InboundMessage, Inbox, KnowledgeQuery, LlmError, LlmErrorKind, MessageId, OutboundResponse,
    ProcessChange, ProcessId, ProcessKind, Registration, Role, RuntimeEvent, StatusUpdate, StoredMessage,
    SupervisorEnd, TerminalState, TurnOutcome,
};

use crate::branch::{BranchTask, DELEGATED_PREFIX};
use crate::chronicle::{self, BranchChronicleTool, CHRONICLE_TOOL, CutJob, JobOutcome, RollupJob};
use crate::compactor::{self, Action, Boundary, Slot};
use crate::engine::AgentProfile;
use crate::memory_tools::{MemoryToolContext, memory_tools};
use crate::processes::{
    Announcer, Completion, Entry, ProcessExit, Processes, Report, WorkerLinks, one_line, supervise,
};
use crate::prompt::{batch_envelope, envelope, relay_message};
use crate::tools::{
    BRANCH_TOOL, BranchArgs, CANCEL_TOOL, CancelArgs, REACT_TOOL, REPLY_TOOL, ROUTE_TOOL, ReactArgs, RouteArgs,
    SKIP_TOOL, SPAWN_WORKER_TOOL, SpawnWorkerArgs, channel_tools, fallback_refusal, parse_args, parse_reply,
};
use crate::worker::WorkerTask;

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

/// A background summary in flight: its process id and the span of history it covers.
struct Compaction {
    id: ProcessId,
    lifecycle: spacebot_core::Lifecycle,
    /// Its place in the runtime's process registry (ends it as cancelled if dropped unsettled).
    _registration: Registration,
    /// The `seq` of the last message of the span (which starts at the head of the history).
    last: u64,
    messages: usize,
    tokens: usize,
}

/// A chronicle job in flight: a checkpoint cut or a rollup.
struct ChronicleJob {
    id: ProcessId,
    lifecycle: spacebot_core::Lifecycle,
    /// Its place in the runtime's process registry (ends it as cancelled if dropped unsettled).
    _registration: Registration,
    /// [`CheckpointKind::Rollup`] for a rollup.
    kind: CheckpointKind,
    /// `Channel::head_epoch` when it started: a cut is discarded if the history's head changed.
    epoch: u64,
    /// `Channel::next_seq` when it started: history entries from there on stay whatever it covers.
    live_end: u64,
}

/// Why a turn ended without a reply or skip. Each becomes an error the user can see.
#[derive(Debug)]
enum TurnFailure {
    NoModel,
    Model(LlmError),
    Budget(usize),
    Timeout(Duration),
    Panicked,
    Stopped,
}

/// What started a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TurnKind {
    /// One or more messages from people.
    User,
    /// Background results to relay.
    Relay,
}

/// One turn's input.
struct TurnInput {
    kind: TurnKind,
    /// Responses are delivered in the context of this message.
    target: Arc<InboundMessage>,
    /// The inbound messages the turn answers (marked handled by its reply, skip or error).
    answers: Vec<MessageId>,
    /// What the model sees as the user message.
    text: String,
}

/// Messages of a group conversation waiting to be answered together.
struct Burst {
    messages: Vec<InboundMessage>,
    first: Instant,
    deadline: Instant,
}

pub(crate) struct Channel {
    ctx: ConversationContext,
    profile: Arc<AgentProfile>,
    history: VecDeque<HistoryEntry>,
    procs: Processes,
    announcer: Announcer,
    /// Results waiting for a relay turn, oldest first.
    pending: VecDeque<Completion>,
    /// When the pending results are relayed.
    relay_at: Option<Instant>,
    /// Relay turns since the last real user message.
    relays_since_user: u32,
    paused: bool,
    burst: Option<Burst>,
    /// The message of the latest user turn: where delegated work reports if its branch is gone.
    last_origin: Option<Arc<InboundMessage>>,
    /// The `seq` the next history entry gets.
    next_seq: u64,
    /// Tool calls of the turn in progress and their results, complete pairs only; they join the
    /// history when the turn ends.
    turn_calls: Vec<ChatMessage>,
    /// The background summary in flight, if any, and the task computing it.
    compaction: Option<Compaction>,
    /// Summary tasks, each returning the id of its compaction with its outcome (a task aborted
    /// after it finished may still deliver, and must not be taken for a later compaction's).
    summaries: JoinSet<(ProcessId, Result<String, String>)>,
    /// When the last summary failed (background summaries wait `retry_delay` after it).
    summary_failed_at: Option<Instant>,
    /// The provider's token count over our estimate for the latest request (at least 1).
    calibration: f64,
    /// Who has spoken here, in the history loaded at start and since (`source:sender`, the
    /// platform ids memory scopes use), sorted so the render and the tools see them in a stable
    /// order.
    participants: BTreeSet<String>,
    /// The latest knowledge render of the agent's memory for this conversation (empty without
    /// memory or memories).
    knowledge: String,
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
    /// Changes whenever the history's head changes other than by a checkpoint's trim
    /// (truncation, `/new`, a rolling summary), so a cut planned before is discarded.
    head_epoch: u64,
    /// The chronicle job in flight, if any, and the tasks running it.
    chronicle_job: Option<ChronicleJob>,
    chronicle_jobs: JoinSet<(ProcessId, JobOutcome)>,
    /// Chronicle maintenance waits for the idle loop (set where it can't be awaited).
    chronicle_due: bool,
    /// When the last chronicle job failed (new ones wait `retry_delay`).
    chronicle_failed_at: Option<Instant>,
}

impl Channel {
    pub(crate) fn new(ctx: ConversationContext, profile: Arc<AgentProfile>) -> Self {
        let announcer =
            Announcer { agent: ctx.agent.clone(), conversation: ctx.conversation.clone(), outbox: ctx.outbox.clone() };
        let procs = Processes::new(ctx.processes.clone());
        Self {
            ctx,
            profile,
            history: VecDeque::new(),
            procs,
            announcer,
            pending: VecDeque::new(),
            relay_at: None,
            relays_since_user: 0,
            paused: false,
            burst: None,
            last_origin: None,
            next_seq: 0,
            turn_calls: Vec::new(),
            compaction: None,
            summaries: JoinSet::new(),
            summary_failed_at: None,
            calibration: 1.0,
            participants: BTreeSet::new(),
            knowledge: String::new(),
            chronicle: None,
            checkpoints: Vec::new(),
            chronicle_view: String::new(),
            boundaries: VecDeque::new(),
            head_epoch: 0,
            chronicle_job: None,
            chronicle_jobs: JoinSet::new(),
            chronicle_due: false,
            chronicle_failed_at: None,
        }
        .with_chronicle()
    }

    fn with_chronicle(mut self) -> Self {
        self.chronicle = self.ctx.log.chronicle();
        self
    }

    /// A history entry for `message`, numbered next.
    fn entry(&mut self, inbound: Vec<MessageId>, message: ChatMessage) -> HistoryEntry {
        let seq = self.next_seq;
        self.next_seq += 1;
        HistoryEntry { seq, tokens: compactor::tokens(message.char_len()), inbound, message }
    }

    fn push_history(&mut self, inbound: Vec<MessageId>, message: ChatMessage) {
        let entry = self.entry(inbound, message);
        self.history.push_back(entry);
    }

    /// Runs until the inbox closes or the runtime shuts down, then cancels its branches and
    /// workers and waits (within `cancel_grace`) until each has reached a terminal state. A turn
    /// in progress when shutdown begins is finished (the runtime cancels it if it outlasts the
    /// grace period).
    pub(crate) async fn run(mut self, mut inbox: Inbox) {
        self.load_history().await;
        loop {
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
                Some(joined) = self.summaries.join_next(), if !self.summaries.is_empty() => self.on_summary(joined),
                Some(joined) = self.chronicle_jobs.join_next(), if !self.chronicle_jobs.is_empty() => {
                    self.on_chronicle_job(joined).await;
                }
                input = inbox.recv() => match input {
                    Some(ConversationInput::Control(command, message)) => self.control(command, &message, false).await,
                    Some(ConversationInput::Message(message)) => self.accept(message, &inbox).await,
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
        while self.summaries.join_next().await.is_some() {}
        while self.chronicle_jobs.join_next().await.is_some() {}
    }

    /// Loads the checkpoints (in any mode: the view shows them) and the history: in chronicle
    /// mode only the messages after the newest checkpoint, else the last `history_limit`.
    async fn load_history(&mut self) {
        let (agent, conversation) = (self.ctx.agent.clone(), self.ctx.conversation.clone());
        if let Some(chronicle) = self.chronicle.clone() {
            match chronicle.checkpoints(&agent, &conversation).await {
                Ok(checkpoints) => self.set_checkpoints(checkpoints),
                Err(error) => tracing::warn!(%agent, %conversation, %error,
                    "can't read the conversation's checkpoints; starting without them"),
            }
        }
        let limit = self.profile.settings.history_limit;
        let loaded: Vec<(Option<u64>, StoredMessage)> = match self.chronicle_mode() {
            Some(chronicle) => match chronicle.latest_after(&agent, &conversation, self.covered_to(), limit).await {
                Ok(messages) => messages.into_iter().map(|logged| (Some(logged.seq), logged.message)).collect(),
                Err(error) => {
                    tracing::warn!(%agent, %conversation, %error, "can't load conversation history; starting with none");
                    return;
                }
            },
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
                Role::User => (
                    vec![stored.id],
                    ChatMessage::user(format!(
                        "[{} | {}] {}",
                        stored.created_at.format("%Y-%m-%d %H:%M UTC"),
                        stored.sender,
                        stored.text
                    )),
                ),
                Role::Assistant => (Vec::new(), ChatMessage::assistant(stored.text)),
                // Harness notices are for people, not context for the model.
                _ => continue,
            };
            self.push_history(inbound, message);
            if let Some(seq) = seq {
                self.note_boundary(seq);
            }
        }
        // A long history loaded into a smaller window is brought within it before the first turn.
        self.maintain_context();
        self.maintain_chronicle().await;
    }

    /// The ids of this conversation's messages that are recorded but not yet answered.
    async fn pending_ids(&self) -> HashSet<MessageId> {
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

    // ---------------------------------------------------------------------------------------
    // Messages, bursts and control commands

    async fn accept(&mut self, message: InboundMessage, inbox: &Inbox) {
        if self.paused {
            // An explicit skip by the harness: recorded as handled, nothing sent.
            if let Err(error) = self.ctx.log.mark_handled(&self.ctx.agent, std::slice::from_ref(&message.id)).await {
                tracing::error!(agent = %self.ctx.agent, %error, "can't mark a message handled while paused");
            }
            self.publish_turn(TurnOutcome::Skipped);
            return;
        }
        let coalesce = self.profile.settings.coalesce.filter(|_| !message.direct);
        if let Some(settings) = coalesce {
            let now = Instant::now();
            match &mut self.burst {
                Some(burst) => {
                    burst.messages.push(message);
                    burst.deadline = (now + settings.debounce).min(burst.first + settings.max_wait);
                }
                None => {
                    self.burst = Some(Burst { messages: vec![message], first: now, deadline: now + settings.debounce })
                }
            }
            // The burst's messages stay in progress together, so if this task dies, each is
            // answered with a visible error rather than only the last.
            inbox.set_holding(true);
            return;
        }
        self.flush_burst(inbox).await;
        self.user_turn(vec![message], inbox).await;
    }

    async fn flush_burst(&mut self, inbox: &Inbox) {
        inbox.set_holding(false);
        if let Some(burst) = self.burst.take() {
            self.user_turn(burst.messages, inbox).await;
        }
    }

    async fn user_turn(&mut self, messages: Vec<InboundMessage>, inbox: &Inbox) {
        let Some(last) = messages.last() else { return };
        let target = Arc::new(last.clone());
        let answers: Vec<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
        for message in &messages {
            self.participants.insert(message.participant());
        }
        // A message the loaded history kept (when the log could not say what was unanswered) is
        // answered now, so it moves to the end of the context.
        self.history.retain(|entry| !entry.inbound.iter().any(|id| answers.contains(id)));
        let text = match messages.as_slice() {
            [one] => envelope(one),
            many => batch_envelope(many),
        };
        self.relays_since_user = 0;
        self.last_origin = Some(target.clone());
        self.run_turn(TurnInput { kind: TurnKind::User, target, answers, text }, inbox).await;
    }

    /// Carries out a control command between turns (or after the turn it interrupted) and
    /// answers it.
    async fn control(&mut self, command: ControlCommand, message: &InboundMessage, interrupted_turn: bool) {
        let text = match command {
            ControlCommand::Status => self.status_report(false),
            ControlCommand::Stop => {
                let cancelled = self.stop_all("stopped with /stop");
                let turn = if interrupted_turn { "the reply in progress and " } else { "" };
                format!("Stopped {turn}{cancelled} background process(es).")
            }
            ControlCommand::Pause => {
                self.paused = true;
                "Paused: I won't answer messages here until someone sends /resume.".to_owned()
            }
            ControlCommand::Resume => {
                self.paused = false;
                "Resumed: I'm answering messages again.".to_owned()
            }
            ControlCommand::New => {
                self.cancel_compaction("the context was cleared with /new");
                self.history.clear();
                // A checkpoint cut in flight is discarded when it arrives (the head moved).
                self.head_epoch += 1;
                self.boundaries.clear();
                self.pending.clear();
                self.relay_at = None;
                "Starting fresh: I've set aside the earlier messages of this conversation.".to_owned()
            }
            _ => format!("The command /{} is not supported here.", command.name()),
        };
        answer_command(&self.ctx, message, text).await;
    }

    /// What `/status` says.
    fn status_report(&self, busy: bool) -> String {
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

    /// Cancels every process without relaying their ends, and drops unrelayed results.
    fn stop_all(&mut self, reason: &str) -> usize {
        let ids: Vec<ProcessId> = self.procs.entries.keys().cloned().collect();
        for id in &ids {
            self.procs.cancel(id, reason, false);
        }
        self.pending.clear();
        self.relay_at = None;
        ids.len()
    }

    // ---------------------------------------------------------------------------------------
    // Turns

    /// Runs one turn with typing indicators, a time limit, panic containment, and the control
    /// lane watched throughout. Always ends in a reply, a skip or a visible error.
    async fn run_turn(&mut self, input: TurnInput, inbox: &Inbox) {
        self.ctx.outbox.publish(RuntimeEvent::TurnStarted {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
        });
        self.status(&input.target, StatusUpdate::Typing).await;
        let limit = self.profile.settings.turn_timeout;
        let ctx = self.ctx.clone();
        let status_now = self.status_report(true);
        let mut deferred: Vec<(ControlCommand, InboundMessage)> = Vec::new();
        let result = {
            let turn = AssertUnwindSafe(tokio::time::timeout(limit, self.turn(&input))).catch_unwind();
            tokio::pin!(turn);
            loop {
                tokio::select! {
                    biased;
                    result = &mut turn => break Some(result),
                    control = inbox.recv_control() => {
                        let ConversationInput::Control(command, message) = control else { continue };
                        match command {
                            ControlCommand::Status => answer_command(&ctx, &message, status_now.clone()).await,
                            ControlCommand::Stop => {
                                deferred.push((command, message));
                                break None;
                            }
                            _ => deferred.push((command, message)),
                        }
                    }
                }
            }
        };
        let stopped = result.is_none();
        let outcome = match result {
            Some(Ok(Ok(Ok(outcome)))) => outcome,
            Some(Ok(Ok(Err(failure)))) => self.fail(&input, failure).await,
            Some(Ok(Err(_elapsed))) => self.fail(&input, TurnFailure::Timeout(limit)).await,
            Some(Err(_panic)) => self.fail(&input, TurnFailure::Panicked).await,
            None => self.fail(&input, TurnFailure::Stopped).await,
        };
        self.status(&input.target, StatusUpdate::StopTyping).await;
        self.maintain_context();
        self.maintain_chronicle().await;
        self.publish_turn(outcome);
        for (command, message) in deferred {
            self.control(command, &message, stopped).await;
        }
    }

    fn publish_turn(&self, outcome: TurnOutcome) {
        self.ctx.outbox.publish(RuntimeEvent::TurnFinished {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            outcome,
        });
    }

    /// The system prompt: the agent's prompt, the knowledge render, the session chronicle, then
    /// the status block. Byte-identical between turns while no memory the conversation may see
    /// changes, no checkpoint is committed, and no process starts, reports or ends.
    fn system_prompt(&self) -> String {
        let mut prompt = self.profile.system_prompt.clone();
        for part in [self.knowledge.trim_end(), self.chronicle_view.as_str()] {
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
    fn memory_context(&self) -> MemoryToolContext {
        MemoryToolContext::new(self.ctx.agent.clone(), self.ctx.conversation.clone(), self.participants.iter().cloned())
    }

    /// Renders what the agent remembers that this conversation may see. A store that fails
    /// keeps the previous render (logged), so a memory outage never fails a turn.
    async fn refresh_knowledge(&mut self) {
        let Some(memory) = self.profile.memory.clone() else { return };
        let context = self.memory_context();
        let visibility = spacebot_core::Visibility::conversation(context.conversation, context.participants);
        match memory.render_knowledge(KnowledgeQuery::new(context.agent, visibility)).await {
            Ok(render) => self.knowledge = render,
            Err(error) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't render the agent's memory; the prompt keeps the previous render");
            }
        }
    }

    async fn turn(&mut self, input: &TurnInput) -> Result<TurnOutcome, TurnFailure> {
        self.turn_calls.clear();
        let model = self.profile.model.clone().ok_or(TurnFailure::NoModel)?;
        self.drain_reports();
        self.refresh_knowledge().await;
        let system = self.system_prompt();
        let user = ChatMessage::user(input.text.clone());
        let mut turn = vec![user.clone()];
        let budget = match input.kind {
            TurnKind::User => self.profile.settings.max_model_calls_per_turn,
            TurnKind::Relay => self.profile.settings.max_model_calls_per_relay,
        };

        let with_chronicle = self.chronicle_tools_on();
        for _ in 0..budget {
            let messages = self.history.iter().map(|entry| entry.message.clone()).chain(turn.iter().cloned()).collect();
            let request = ChatRequest::new(system.clone(), messages).with_tools(channel_tools(with_chronicle));
            let estimated = request_tokens(&request, with_chronicle);
            let response = model.complete(request).await.map_err(TurnFailure::Model)?;
            if let Some(calibration) = compactor::calibration(response.usage.input_tokens, estimated) {
                self.calibration = calibration;
            }

            if response.tool_calls.is_empty() {
                let text = response.content.trim();
                let nudge = if text.is_empty() {
                    "Your answer was empty. Call `reply` with a message, or `skip`.".to_owned()
                } else if let Some(reason) = fallback_refusal(text) {
                    tracing::warn!(agent = %self.ctx.agent, reason, "plain-text answer not sent");
                    format!("That answer was not sent because {reason}. Call `reply` with your message, or `skip`.")
                } else {
                    self.reply(input, user, text.to_owned()).await;
                    return Ok(TurnOutcome::Replied);
                };
                turn.push(ChatMessage::assistant(response.content.clone()));
                turn.push(ChatMessage::user(format!("[harness] {nudge}")));
                continue;
            }

            turn.push(ChatMessage::assistant_with_calls(response.content.clone(), response.tool_calls.clone()));
            // The calls of this response that ran, and their results: what the history keeps of it.
            let mut done: Vec<spacebot_core::ToolCall> = Vec::new();
            let mut results: Vec<ChatMessage> = Vec::new();
            for call in &response.tool_calls {
                let result = match call.name.as_str() {
                    REPLY_TOOL => match parse_reply(&call.arguments) {
                        Ok(text) => {
                            self.keep_calls(&response.content, done, results);
                            self.reply(input, user, text).await;
                            return Ok(TurnOutcome::Replied);
                        }
                        Err(error) => error,
                    },
                    SKIP_TOOL => {
                        self.keep_calls(&response.content, done, results);
                        self.skip(input, user).await;
                        return Ok(TurnOutcome::Skipped);
                    }
                    REACT_TOOL => self.react(input, &call.arguments).await,
                    BRANCH_TOOL => self.branch_tool(input, &call.arguments, &user),
                    SPAWN_WORKER_TOOL => self.spawn_worker_tool(input, &call.arguments),
                    ROUTE_TOOL => self.route_tool(&call.arguments),
                    CANCEL_TOOL => self.cancel_tool(&call.arguments),
                    CHRONICLE_TOOL if with_chronicle => chronicle::channel_call(&self.checkpoints, &call.arguments),
                    other => format!(
                        "There is no tool named `{other}`. The tools are `reply`, `skip`, `react`, `branch`, \
                         `spawn_worker`, `route` and `cancel`."
                    ),
                };
                let result = ChatMessage::tool_result(call.id.clone(), call.name.clone(), result);
                turn.push(result.clone());
                done.push(call.clone());
                results.push(result);
            }
            self.keep_calls(&response.content, done, results);
        }
        Err(TurnFailure::Budget(budget))
    }

    /// Notes tool calls that ran in this turn, with their results, for the history.
    fn keep_calls(&mut self, content: &str, calls: Vec<spacebot_core::ToolCall>, results: Vec<ChatMessage>) {
        if calls.is_empty() {
            return;
        }
        self.turn_calls.push(ChatMessage::assistant_with_calls(content, calls));
        self.turn_calls.extend(results);
    }

    /// Records the reply with the messages it answers, then delivers it. Recording first means a
    /// crash between the two loses the delivery rather than sending the reply twice.
    async fn reply(&mut self, input: &TurnInput, user: ChatMessage, text: String) {
        let stored = StoredMessage::new(
            self.ctx.agent.clone(),
            self.ctx.conversation.clone(),
            Role::Assistant,
            self.ctx.agent.as_str(),
            text.clone(),
        );
        if let Err(error) = self.ctx.log.record_reply(&stored, &input.answers).await {
            tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't record the reply; sending it anyway");
        }
        self.remember(input, user, Some(ChatMessage::assistant(text.clone())));
        self.deliver(&input.target, OutboundResponse::text(text)).await;
    }

    async fn skip(&mut self, input: &TurnInput, user: ChatMessage) {
        if !input.answers.is_empty()
            && let Err(error) = self.ctx.log.mark_handled(&self.ctx.agent, &input.answers).await
        {
            tracing::error!(agent = %self.ctx.agent, %error, "can't mark a skipped message handled");
        }
        self.remember(input, user, None);
    }

    async fn react(&mut self, input: &TurnInput, arguments: &serde_json::Value) -> String {
        match parse_args::<ReactArgs>(REACT_TOOL, arguments) {
            Ok(args) if !args.emoji.trim().is_empty() => {
                match self.ctx.outbox.send(&input.target, OutboundResponse::Reaction { emoji: args.emoji }).await {
                    Ok(()) => "Reacted. Now `reply` or `skip`.".to_owned(),
                    Err(error) => format!("The reaction could not be sent ({error}). Now `reply` or `skip`."),
                }
            }
            Ok(_) => "`react` needs an `emoji`.".to_owned(),
            Err(error) => error,
        }
    }

    /// Tells the user the turn failed, so no message goes unanswered.
    async fn fail(&mut self, input: &TurnInput, failure: TurnFailure) -> TurnOutcome {
        tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, ?failure, "turn failed");
        let text = format!("⚠️ {}", describe(&failure, &self.ctx.agent));
        let stored = StoredMessage::new(
            self.ctx.agent.clone(),
            self.ctx.conversation.clone(),
            Role::System,
            HARNESS_SENDER,
            text.clone(),
        );
        if let Err(error) = self.ctx.log.record_reply(&stored, &input.answers).await {
            tracing::error!(agent = %self.ctx.agent, %error, "can't record the error notice");
        }
        // The tool calls that ran stay in the context (a worker it started is still running).
        self.remember(input, ChatMessage::user(input.text.clone()), None);
        self.deliver(&input.target, OutboundResponse::text(text)).await;
        TurnOutcome::Failed
    }

    /// Adds the turn to the history: the user message, the tool calls that ran with their
    /// results, and the answer.
    fn remember(&mut self, input: &TurnInput, user: ChatMessage, answer: Option<ChatMessage>) {
        self.push_history(input.answers.clone(), user);
        for message in std::mem::take(&mut self.turn_calls) {
            self.push_history(Vec::new(), message);
        }
        if let Some(answer) = answer {
            self.push_history(Vec::new(), answer);
        }
    }

    async fn deliver(&self, target: &InboundMessage, response: OutboundResponse) {
        if let Err(error) = self.ctx.outbox.send(target, response).await {
            tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't deliver a response");
        }
    }

    async fn status(&self, message: &InboundMessage, status: StatusUpdate) {
        // A missed typing indicator is cosmetic; the outbox already logged it as an event.
        let _ = self.ctx.outbox.send(message, OutboundResponse::Status { status }).await;
    }

    // ---------------------------------------------------------------------------------------
    // Branches and workers

    /// The tools of a new branch: the agent's branch tools, then the memory tools bound to this
    /// conversation as it stands (its participants so far).
    fn branch_tools(&self) -> Vec<std::sync::Arc<dyn spacebot_core::Tool>> {
        let mut tools = self.profile.branch_tools.clone();
        if let Some(memory) = &self.profile.memory {
            tools.extend(memory_tools(memory.clone(), self.memory_context()));
        }
        if let Some(chronicle) = self.chronicle.clone().filter(|_| self.chronicle_tools_on()) {
            tools.push(Arc::new(BranchChronicleTool {
                chronicle,
                agent: self.ctx.agent.clone(),
                conversation: self.ctx.conversation.clone(),
            }));
        }
        tools
    }

    fn branch_tool(&mut self, input: &TurnInput, arguments: &serde_json::Value, user: &ChatMessage) -> String {
        let args = match parse_args::<BranchArgs>(BRANCH_TOOL, arguments) {
            Ok(args) if !args.task.trim().is_empty() => args,
            Ok(_) => return "`branch` needs a non-empty `task`.".to_owned(),
            Err(error) => return error,
        };
        let settings = &self.profile.settings;
        if self.procs.count(ProcessKind::Branch) >= settings.max_branches {
            return format!(
                "Not started: {} branches are already running, the limit. Wait for one to finish or cancel one.",
                settings.max_branches
            );
        }
        let Some(model) = self.profile.model_for(ProcessKind::Branch) else {
            return "Not started: no model is configured for branches.".to_owned();
        };
        let id = ProcessId::generate();
        let fork: Vec<ChatMessage> =
            self.history.iter().map(|entry| entry.message.clone()).chain([user.clone()]).collect();
        let task = BranchTask {
            id: id.clone(),
            task: args.task.clone(),
            fork,
            model,
            tools: self.branch_tools(),
            budget: settings.branch_model_calls,
            reports: self.procs.reports_tx.clone(),
        };
        let lifecycle = spacebot_core::Lifecycle::new();
        let cancel = self.ctx.shutdown.child_token();
        self.announcer.publish(&id, ProcessKind::Branch, ProcessChange::Started { description: args.task.clone() });
        let future = supervise(
            id.clone(),
            ProcessKind::Branch,
            lifecycle.clone(),
            cancel.clone(),
            settings.branch_timeout,
            self.announcer.clone(),
            task.run(),
        );
        let entry = Entry {
            kind: ProcessKind::Branch,
            description: args.task,
            status: "thinking".to_owned(),
            lifecycle,
            cancel,
            cancel_reason: None,
            relay: true,
            origin: input.target.clone(),
            worker: None,
            idle: false,
            results: 0,
        };
        self.procs.spawn(id.clone(), entry, future, &self.announcer, settings.branch_timeout);
        format!("Branch {id} started; its conclusion will arrive as a background result. Tell the user if useful.")
    }

    fn spawn_worker_tool(&mut self, input: &TurnInput, arguments: &serde_json::Value) -> String {
        let args = match parse_args::<SpawnWorkerArgs>(SPAWN_WORKER_TOOL, arguments) {
            Ok(args) if !args.task.trim().is_empty() => args,
            Ok(_) => return "`spawn_worker` needs a non-empty `task`.".to_owned(),
            Err(error) => return error,
        };
        match self.spawn_worker(ProcessId::generate(), args.task, args.interactive, input.target.clone()) {
            Ok(id) => format!(
                "Worker {id} started{}; its outcome will arrive as a background result. Tell the user it is on it.",
                if args.interactive { " (interactive: send follow-ups with `route`)" } else { "" }
            ),
            Err(reason) => format!("Not started: {reason}"),
        }
    }

    /// Starts a worker, unless the limit is reached or a live worker does the same task.
    fn spawn_worker(
        &mut self,
        id: ProcessId,
        task: String,
        interactive: bool,
        origin: Arc<InboundMessage>,
    ) -> Result<ProcessId, String> {
        let settings = &self.profile.settings;
        if let Some(existing) = self.procs.duplicate_worker(&task) {
            return Err(format!("worker {existing} is already doing this task."));
        }
        if self.procs.count(ProcessKind::Worker) >= settings.max_workers {
            return Err(format!(
                "{} workers are already running, the limit. Wait for one to finish or cancel one.",
                settings.max_workers
            ));
        }
        let model = self.profile.model_for(ProcessKind::Worker).ok_or("no model is configured for workers.")?;
        let tools = self.profile.worker_tools()?;
        let (context_tx, context_rx) = tokio::sync::mpsc::unbounded_channel();
        let (follow_ups, follow_ups_rx) = if interactive {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let worker = WorkerTask {
            id: id.clone(),
            task: task.clone(),
            model,
            tools,
            budget: settings.worker_model_calls,
            reports: self.procs.reports_tx.clone(),
            follow_ups: follow_ups_rx,
            context: context_rx,
            announcer: self.announcer.clone(),
        };
        let lifecycle = spacebot_core::Lifecycle::new();
        let cancel = self.ctx.shutdown.child_token();
        self.announcer.publish(&id, ProcessKind::Worker, ProcessChange::Started { description: task.clone() });
        let future = supervise(
            id.clone(),
            ProcessKind::Worker,
            lifecycle.clone(),
            cancel.clone(),
            settings.worker_timeout,
            self.announcer.clone(),
            worker.run(),
        );
        let entry = Entry {
            kind: ProcessKind::Worker,
            description: task,
            status: "starting".to_owned(),
            lifecycle,
            cancel,
            cancel_reason: None,
            relay: true,
            origin,
            worker: Some(WorkerLinks { follow_ups, context: context_tx }),
            idle: false,
            results: 0,
        };
        self.procs.spawn(id.clone(), entry, future, &self.announcer, settings.worker_timeout);
        Ok(id)
    }

    fn route_tool(&mut self, arguments: &serde_json::Value) -> String {
        let args = match parse_args::<RouteArgs>(ROUTE_TOOL, arguments) {
            Ok(args) => args,
            Err(error) => return error,
        };
        let Some(id) = self.procs.find(&args.worker_id) else {
            return format!("No active worker has the id `{}`; it may have finished.", args.worker_id);
        };
        let Some(entry) = self.procs.entries.get_mut(&id) else { return "That worker just finished.".to_owned() };
        let Some(links) = &entry.worker else {
            return format!("`{id}` is a branch; only workers accept messages.");
        };
        match (&links.follow_ups, entry.idle) {
            (Some(follow_ups), true) => {
                if follow_ups.send(args.message).is_err() {
                    return "That worker just finished.".to_owned();
                }
                entry.idle = false;
                entry.status = "working on a follow-up".to_owned();
                format!("Sent to worker {id} as a follow-up; its answer will arrive as a background result.")
            }
            _ => {
                if links.context.send(args.message).is_err() {
                    return "That worker just finished.".to_owned();
                }
                format!("Passed to worker {id}; it will see it before its next step.")
            }
        }
    }

    fn cancel_tool(&mut self, arguments: &serde_json::Value) -> String {
        let args = match parse_args::<CancelArgs>(CANCEL_TOOL, arguments) {
            Ok(args) => args,
            Err(error) => return error,
        };
        let Some(id) = self.procs.find(&args.process_id) else {
            return format!("No active branch or worker has the id `{}`; it may have finished.", args.process_id);
        };
        let reason = args.reason.unwrap_or_else(|| "cancelled by the agent".to_owned());
        self.procs.cancel(&id, &reason, true);
        format!("Cancelling {id}; its end will arrive as a background result.")
    }

    /// Applies the reports processes sent since the last look.
    fn drain_reports(&mut self) {
        while let Ok(report) = self.procs.reports.try_recv() {
            self.on_report(report);
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Status { id, text } => {
                if let Some(entry) = self.procs.entries.get_mut(&id) {
                    entry.status = text;
                }
            }
            Report::Idle { id, result, success } => {
                let Some(entry) = self.procs.entries.get_mut(&id) else { return };
                entry.idle = true;
                entry.status = "idle".to_owned();
                entry.results += 1;
                let completion = Completion {
                    id: id.clone(),
                    kind: entry.kind,
                    state: None,
                    success,
                    result,
                    origin: entry.origin.clone(),
                    sequence: entry.results,
                };
                if entry.relay {
                    self.queue_completion(completion);
                }
            }
            Report::Delegate { branch, worker, task } => {
                let origin =
                    self.procs.entries.get(&branch).map(|e| e.origin.clone()).or_else(|| self.last_origin.clone());
                let Some(origin) = origin else { return };
                if let Err(reason) = self.spawn_worker(worker, task, false, origin.clone()) {
                    self.queue_completion(Completion {
                        id: branch,
                        kind: ProcessKind::Branch,
                        state: Some(TerminalState::Failed),
                        success: false,
                        result: format!("tried to delegate its task to a worker, but {reason}"),
                        origin,
                        sequence: FINAL_SEQUENCE - 1,
                    });
                }
            }
        }
    }

    /// Reaps one process task: removes it from the table and queues its result for relay.
    fn on_exit(&mut self, joined: Result<(tokio::task::Id, ProcessExit), JoinError>) {
        let (id, terminal, result) = match joined {
            Ok((task_id, exit)) => {
                self.procs.task_ids.remove(&task_id);
                (exit.id, exit.terminal.map(|t| t.state()), exit.result)
            }
            Err(error) => {
                // Aborted at shutdown (after its cancel grace) or, despite the wrapper, panicked.
                let Some(id) = self.procs.task_ids.remove(&error.id()) else { return };
                let state = if error.is_cancelled() { TerminalState::Cancelled } else { TerminalState::Failed };
                let Some(entry) = self.procs.entries.get(&id) else { return };
                let reason = if error.is_cancelled() { "aborted" } else { "failed with an internal error" };
                let terminal = entry.lifecycle.settle(state);
                if let Some(terminal) = &terminal {
                    self.announcer.finished(&id, entry.kind, terminal, reason);
                }
                (id, terminal.map(|t| t.state()), reason.to_owned())
            }
        };
        let Some(entry) = self.procs.remove(&id) else { return };
        let Some(state) = terminal.or_else(|| entry.lifecycle.terminal()) else { return };
        let result = match (state, &entry.cancel_reason) {
            (TerminalState::Cancelled, Some(reason)) => format!("cancelled: {reason}"),
            _ => result,
        };
        let delegated = entry.kind == ProcessKind::Branch && result.starts_with(DELEGATED_PREFIX);
        if !entry.relay || delegated {
            return;
        }
        // An interactive worker let go after its last result has nothing new to say.
        if entry.results > 0 && state == TerminalState::Done {
            return;
        }
        self.queue_completion(Completion {
            id,
            kind: entry.kind,
            state: Some(state),
            success: state.is_success(),
            result,
            origin: entry.origin,
            sequence: FINAL_SEQUENCE,
        });
    }

    /// A supervisor (the cortex) ended a process that outlived its limits: it is settled and
    /// announced already; drop it from the table and relay the failure. Its task was aborted and
    /// is reaped (as unknown) whenever it actually stops.
    fn on_supervisor_end(&mut self, end: SupervisorEnd) {
        // Background context work: settled already; drop the job so its result is ignored.
        if self.compaction.as_ref().is_some_and(|job| job.id == end.process) {
            self.compaction = None;
            self.summaries.abort_all();
            self.summary_failed_at = Some(Instant::now());
            return;
        }
        if self.chronicle_job.as_ref().is_some_and(|job| job.id == end.process) {
            self.chronicle_job = None;
            self.chronicle_jobs.abort_all();
            self.chronicle_failed_at = Some(Instant::now());
            return;
        }
        let Some(entry) = self.procs.remove(&end.process) else { return };
        if !entry.relay {
            return;
        }
        self.queue_completion(Completion {
            id: end.process,
            kind: entry.kind,
            state: Some(end.state),
            success: false,
            result: end.reason,
            origin: entry.origin,
            sequence: FINAL_SEQUENCE,
        });
    }

    /// Queues a result for the next relay turn, or, past the relay cap, notes it in history.
    fn queue_completion(&mut self, completion: Completion) {
        if self.pending.iter().any(|p| p.id == completion.id && p.sequence == completion.sequence) {
            tracing::debug!(process = %completion.id, "duplicate completion ignored");
            return;
        }
        if self.relays_since_user >= self.profile.settings.max_relays_per_message || self.paused {
            self.note_silently(&completion);
            return;
        }
        self.pending.push_back(completion);
        if self.relay_at.is_none() {
            self.relay_at = Some(Instant::now() + self.profile.settings.relay_window);
        }
    }

    fn note_silently(&mut self, completion: &Completion) {
        let note = ChatMessage::assistant(format!(
            "[background {} {} {}]: {}",
            completion.kind,
            completion.id,
            completion.label(),
            one_line(&completion.result, 2000)
        ));
        self.push_history(Vec::new(), note);
        self.maintain_context();
    }

    /// Starts the relay turn for the results gathered in the merge window.
    async fn relay(&mut self, inbox: &Inbox) {
        self.relay_at = None;
        let results: Vec<Completion> = self.pending.drain(..).collect();
        let Some(first) = results.first() else { return };
        if self.relays_since_user >= self.profile.settings.max_relays_per_message || self.paused {
            for completion in &results {
                self.note_silently(completion);
            }
            return;
        }
        self.relays_since_user += 1;
        let target = first.origin.clone();
        let text = relay_message(&results);
        self.run_turn(TurnInput { kind: TurnKind::Relay, target, answers: Vec::new(), text }, inbox).await;
    }

    // ---------------------------------------------------------------------------------------
    // The chronicle (see `chronicle.rs`)

    /// The chronicle, when this channel compacts in chronicle mode and its log keeps one.
    fn chronicle_mode(&self) -> Option<Arc<dyn Chronicle>> {
        let mode = self.profile.settings.compaction.mode;
        self.chronicle.clone().filter(|_| mode == chronicle::CompactionMode::Chronicle)
    }

    /// Whether the model gets the `chronicle` tool: in chronicle mode, or once checkpoints exist.
    fn chronicle_tools_on(&self) -> bool {
        self.chronicle.is_some() && (self.chronicle_mode().is_some() || !self.checkpoints.is_empty())
    }

    /// The last logged message the level-0 checkpoints cover (0: none).
    fn covered_to(&self) -> u64 {
        self.checkpoints.iter().filter(|c| c.level == 0).map(|c| c.covers_to_seq).max().unwrap_or(0)
    }

    fn set_checkpoints(&mut self, checkpoints: Vec<Checkpoint>) {
        self.checkpoints = checkpoints;
        self.chronicle_view = chronicle::render_view(&self.checkpoints, &self.profile.settings.compaction.chronicle);
    }

    /// Adds a committed checkpoint (marking a rollup's sources) and renders the view again.
    fn add_checkpoint(&mut self, checkpoint: Checkpoint) {
        let mut checkpoints = std::mem::take(&mut self.checkpoints);
        if let Some((first, last)) = checkpoint.rolls_up {
            for source in checkpoints.iter_mut().filter(|c| c.level == 0 && (first..=last).contains(&c.seq)) {
                source.rolled_up_into = Some(checkpoint.seq);
            }
        }
        checkpoints.push(checkpoint);
        self.set_checkpoints(checkpoints);
    }

    /// Notes that the history so far comes from logged messages up to `durable`.
    fn note_boundary(&mut self, durable: u64) {
        let live_end = self.next_seq;
        if let Some(last) = self.boundaries.back_mut()
            && last.1 == durable
        {
            last.0 = live_end;
            return;
        }
        self.boundaries.push_back((live_end, durable));
    }

    /// Forgets boundaries no trim can use any more: before the history's head, or covered
    /// already (the newest covered one stays, it is where a trim may go).
    fn prune_boundaries(&mut self) {
        let head = self.history.front().map_or(self.next_seq, |entry| entry.seq);
        let covered = self.covered_to();
        while self.boundaries.len() > 1
            && self.boundaries.get(1).is_some_and(|&(live_end, durable)| live_end <= head || durable <= covered)
        {
            self.boundaries.pop_front();
        }
    }

    fn history_slots(&self) -> Vec<Slot> {
        self.history.iter().map(|entry| Slot { tokens: entry.tokens, boundary: Boundary::of(&entry.message) }).collect()
    }

    /// Drops from the history what the checkpoints cover, up to `live_end` (entries added since a
    /// cut started stay), keeping `min_keep` messages and every tool call with its results.
    /// Returns how many messages went.
    fn trim_covered(&mut self, live_end: u64) -> usize {
        let covered = self.covered_to();
        let Some(limit) = self.boundaries.iter().rev().find(|&&(_, durable)| durable <= covered).map(|&(end, _)| end)
        else {
            return 0;
        };
        let limit = limit.min(live_end);
        let count = self.history.iter().take_while(|entry| entry.seq < limit).count();
        let keep = self.profile.settings.compaction.chronicle.min_keep;
        let Some(end) = compactor::safe_end(&self.history_slots(), count, keep) else { return 0 };
        self.history.drain(..end);
        self.prune_boundaries();
        end
    }

    /// Chronicle maintenance, when due: notes where the history and the log line up, truncates at
    /// the emergency threshold (recording the span it drops), else cuts a checkpoint or starts a
    /// rollup in the background when one is called for.
    async fn maintain_chronicle(&mut self) {
        if !std::mem::take(&mut self.chronicle_due) {
            return;
        }
        let Some(chronicle) = self.chronicle_mode() else { return };
        let profile = self.profile.clone();
        let Some(model) = profile.model.as_ref() else { return };
        let (agent, conversation) = (self.ctx.agent.clone(), self.ctx.conversation.clone());
        let covered = self.covered_to();
        let tail = match chronicle.tail(&agent, &conversation, covered).await {
            Ok(tail) => tail,
            Err(error) => {
                tracing::warn!(%agent, %conversation, %error, "can't count the messages after the last checkpoint");
                return;
            }
        };
        if let Some(newest) = tail.newest {
            self.note_boundary(newest);
        }
        let settings = &profile.settings.compaction;
        let window = model.context_window();
        let slots = self.history_slots();
        let fixed = compactor::tokens(self.system_prompt().len()) + channel_tool_tokens(self.chronicle_tools_on());
        // Planned as if a summary were in flight: only the emergency truncation can come of it.
        let plan = compactor::plan(&slots, fixed, window, self.calibration, settings, true);
        if plan.usage >= settings.emergency {
            let keep = settings.chronicle.min_keep;
            if let Some(end) = compactor::cut_keeping(&slots, settings.emergency_share, keep) {
                self.chronicle_emergency(&chronicle, end, plan.usage, window).await;
                return;
            }
        }
        let resting = self.chronicle_failed_at.is_some_and(|at| at.elapsed() < settings.retry_delay);
        if self.chronicle_job.is_some() || resting {
            return;
        }
        let live: usize = slots.iter().map(|slot| slot.tokens).sum();
        let pressure = chronicle::Pressure {
            uncovered: tail.count,
            has_checkpoints: self.checkpoints.iter().any(|c| c.level == 0),
            usage: plan.usage,
            live_tokens: (live as f64 * self.calibration.max(1.0)).ceil() as usize,
            window,
        };
        match chronicle::trigger(settings, pressure) {
            Some(kind) => self.start_cut(chronicle, kind, tail.count, plan.usage, window),
            None => self.start_rollup(),
        }
    }

    /// Starts cutting a checkpoint of the uncovered messages in the background.
    fn start_cut(
        &mut self,
        chronicle: Arc<dyn Chronicle>,
        kind: CheckpointKind,
        uncovered: u64,
        usage: f64,
        window: usize,
    ) {
        let Some(model) = self.profile.model_for(ProcessKind::Compactor) else { return };
        let settings = self.profile.settings.compaction.clone();
        let messages = uncovered.min(settings.chronicle.max_messages_per_checkpoint as u64);
        let description = format!(
            "cutting a{} {kind} checkpoint of {messages} logged messages in the background: the context is at \
             {:.0}% of {window} tokens, {uncovered} messages are not in a checkpoint yet",
            if kind == CheckpointKind::Interval { "n" } else { "" },
            usage * 100.0
        );
        let id = ProcessId::generate();
        tracing::info!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %kind, uncovered, usage,
            "cutting a chronicle checkpoint");
        let what = description.clone();
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        let level0: Vec<&Checkpoint> = self.checkpoints.iter().filter(|c| c.level == 0).collect();
        let narrative =
            level0[level0.len().saturating_sub(chronicle::NARRATIVE)..].iter().map(|c| (*c).clone()).collect();
        let job = CutJob {
            chronicle,
            log: self.ctx.log.clone(),
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            kind,
            after: self.covered_to(),
            narrative,
            model,
            settings,
        };
        self.spawn_chronicle_job(id, &what, kind, job.run());
    }

    /// Runs a chronicle job as the channel's one background chronicle task, registered with the
    /// runtime's process registry.
    fn spawn_chronicle_job(
        &mut self,
        id: ProcessId,
        description: &str,
        kind: CheckpointKind,
        job: impl Future<Output = JobOutcome> + Send + 'static,
    ) {
        let task_id = id.clone();
        let task = self.chronicle_jobs.spawn(async move { (task_id, job.await) });
        let lifecycle = spacebot_core::Lifecycle::new();
        let limit = self.profile.settings.compaction.summary_timeout;
        let registration = self.procs.register_background(&self.announcer, &id, &lifecycle, description, limit, task);
        self.chronicle_job = Some(ChronicleJob {
            id,
            lifecycle,
            _registration: registration,
            kind,
            epoch: self.head_epoch,
            live_end: self.next_seq,
        });
    }

    /// Starts a rollup in the background when enough checkpoints wait for one.
    fn start_rollup(&mut self) {
        let settings = self.profile.settings.compaction.clone();
        let Some(sources) = chronicle::rollup_sources(&self.checkpoints, &settings.chronicle) else { return };
        let Some(model) = self.profile.model_for(ProcessKind::Compactor) else { return };
        let (Some(first), Some(last)) = (sources.first().map(|c| c.seq), sources.last().map(|c| c.seq)) else { return };
        let id = ProcessId::generate();
        let description =
            format!("rolling up checkpoints #{first}-#{last} ({} checkpoints) in the background", sources.len());
        let what = description.clone();
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        let job = RollupJob {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            sources,
            model,
            settings,
        };
        self.spawn_chronicle_job(id, &what, CheckpointKind::Rollup, job.run());
    }

    /// A chronicle job ended: commit what it drafted (a cut only if the history's head is where
    /// it was), then trim what the checkpoints now cover.
    async fn on_chronicle_job(&mut self, joined: Result<(ProcessId, JobOutcome), JoinError>) {
        let current = self.chronicle_job.as_ref().map(|job| job.id.clone());
        let outcome = match joined {
            Ok((id, outcome)) if Some(&id) == current.as_ref() => outcome,
            // A task aborted after it finished: its job was already settled as cancelled.
            Ok(_) => return,
            Err(error) if error.is_cancelled() => return,
            Err(_) if !self.chronicle_jobs.is_empty() => return,
            Err(_) => JobOutcome::Nothing("the chronicle task failed with an internal error".to_owned()),
        };
        let (Some(job), Some(chronicle)) = (self.chronicle_job.take(), self.chronicle.clone()) else { return };
        let (state, summary) = match outcome {
            JobOutcome::Nothing(reason) => {
                self.chronicle_failed_at = Some(Instant::now());
                (TerminalState::Failed, reason)
            }
            JobOutcome::Cut(_) if job.epoch != self.head_epoch => (
                TerminalState::Cancelled,
                "discarded: the history changed (truncation or /new) while the checkpoint was written".to_owned(),
            ),
            JobOutcome::Cut(draft) => match chronicle.commit(draft).await {
                Ok(checkpoint) => {
                    let text = format!(
                        "committed {} checkpoint #{} \"{}\" covering {} logged messages{}",
                        checkpoint.kind,
                        checkpoint.seq,
                        checkpoint.title,
                        checkpoint.message_count,
                        if checkpoint.unsummarized { " (unsummarized: the summary failed)" } else { "" }
                    );
                    self.add_checkpoint(checkpoint);
                    let trimmed = self.trim_covered(job.live_end);
                    self.chronicle_failed_at = None;
                    (TerminalState::Done, format!("{text}; {trimmed} messages left the live context"))
                }
                Err(error) if error.is_superseded() => (TerminalState::Cancelled, format!("discarded: {error}")),
                Err(error) => {
                    self.chronicle_failed_at = Some(Instant::now());
                    (TerminalState::Failed, format!("can't commit the checkpoint: {error}"))
                }
            },
            JobOutcome::Rollup(draft) => match chronicle.commit_rollup(draft).await {
                Ok(rollup) => {
                    let text = format!(
                        "committed rollup #{} \"{}\" of checkpoints #{}",
                        rollup.seq,
                        rollup.title,
                        rollup.rolls_up.map(|(first, last)| format!("{first}-#{last}")).unwrap_or_default()
                    );
                    self.add_checkpoint(rollup);
                    (TerminalState::Done, text)
                }
                Err(error) if error.is_superseded() => (TerminalState::Cancelled, format!("discarded: {error}")),
                Err(error) => {
                    self.chronicle_failed_at = Some(Instant::now());
                    (TerminalState::Failed, format!("can't commit the rollup: {error}"))
                }
            },
        };
        if state != TerminalState::Done {
            tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, kind = %job.kind, %summary,
                "chronicle job committed nothing");
        }
        if let Some(terminal) = job.lifecycle.settle(state) {
            self.announcer.finished(&job.id, ProcessKind::Compactor, &terminal, &summary);
        }
        // More may be due: the next span of a long log, or a rollup.
        self.chronicle_due = true;
    }

    /// The emergency: drops `history[..end]` at once and records the logged messages among them
    /// that no checkpoint covers as an unsummarized emergency checkpoint (no model call).
    async fn chronicle_emergency(&mut self, chronicle: &Arc<dyn Chronicle>, end: usize, usage: f64, window: usize) {
        self.cancel_chronicle_job("the context was truncated first");
        self.head_epoch += 1;
        let id = ProcessId::generate();
        let removed: Vec<HistoryEntry> = self.history.drain(..end).collect();
        let tokens: usize = removed.iter().map(|entry| entry.tokens).sum();
        let description = format!(
            "truncating the oldest {} messages (~{tokens} tokens) at once and recording them as an emergency \
             checkpoint: the context is at {:.0}% of {window} tokens",
            removed.len(),
            usage * 100.0
        );
        tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, messages = removed.len(),
            tokens, usage, "context nearly full; truncating the oldest history into an emergency checkpoint");
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        // The logged messages among those removed end where the last boundary before the cut says.
        let cut_at = self.history.front().map_or(self.next_seq, |entry| entry.seq);
        let durable_end =
            self.boundaries.iter().rev().find(|&&(live_end, _)| live_end <= cut_at).map(|&(_, durable)| durable);
        let covered = self.covered_to();
        let recorded = match durable_end {
            Some(until) if until > covered => self.commit_emergency(chronicle, covered, until).await.map(Some),
            Some(_) => Ok(None),
            None => Err("no logged message was among them".to_owned()),
        };
        let summary = match recorded {
            Ok(Some(checkpoint)) => {
                let text = format!(
                    "removed {} messages; emergency checkpoint #{} records the {} logged messages among them",
                    removed.len(),
                    checkpoint.seq,
                    checkpoint.message_count
                );
                self.add_checkpoint(checkpoint);
                text
            }
            Ok(None) => format!("removed {} messages, all in checkpoints already", removed.len()),
            Err(reason) => {
                // Without a checkpoint, a marker says that something went.
                let marker = compactor::truncation_marker(removed.len());
                let mut entry = self.entry(Vec::new(), marker);
                entry.seq = removed.first().map_or(entry.seq, |first| first.seq);
                self.history.push_front(entry);
                format!("removed {} messages; no checkpoint records them: {reason}", removed.len())
            }
        };
        self.prune_boundaries();
        let lifecycle = spacebot_core::Lifecycle::new();
        if let Some(terminal) = lifecycle.settle(TerminalState::Done) {
            self.announcer.finished(&id, ProcessKind::Compactor, &terminal, &summary);
        }
    }

    /// Commits the emergency checkpoint of the answered logged messages after `covered` up to
    /// `until`.
    async fn commit_emergency(
        &self,
        chronicle: &Arc<dyn Chronicle>,
        covered: u64,
        until: u64,
    ) -> Result<Checkpoint, String> {
        let limit = self.profile.settings.compaction.chronicle.max_messages_per_checkpoint;
        let (agent, conversation) = (&self.ctx.agent, &self.ctx.conversation);
        let mut messages =
            chronicle::answered_after(chronicle, &self.ctx.log, agent, conversation, covered, limit).await?;
        messages.retain(|logged| logged.seq <= until);
        let notice = chronicle::unsummarized_notice(
            messages.len(),
            "they were dropped at once to keep the context within the model's window",
        );
        let title = format!("Unsummarized: {}", chronicle::span_title(&messages));
        let draft = spacebot_core::NewCheckpoint::over(CheckpointKind::Emergency, &messages, title, notice)
            .ok_or_else(|| "no answered logged message was among them".to_owned())?
            .unsummarized();
        chronicle.commit(draft).await.map_err(|error| error.to_string())
    }

    /// Cancels the chronicle job in flight, if any, committing nothing.
    fn cancel_chronicle_job(&mut self, reason: &str) {
        let Some(job) = self.chronicle_job.take() else { return };
        self.chronicle_jobs.abort_all();
        if let Some(terminal) = job.lifecycle.settle(TerminalState::Cancelled) {
            self.announcer.finished(&job.id, ProcessKind::Compactor, &terminal, reason);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Compaction (see `compactor.rs`)

    /// Measures the context and compacts it if it is too full: a background summary at the
    /// lower thresholds, an immediate truncation at the emergency one.
    fn maintain_context(&mut self) {
        if self.chronicle_mode().is_some() {
            // Chronicle maintenance reads the log; it runs where the channel can await it.
            self.chronicle_due = true;
            return;
        }
        let profile = self.profile.clone();
        let Some(model) = profile.model.as_ref() else { return };
        let window = model.context_window();
        let settings = &profile.settings.compaction;
        let slots: Vec<Slot> = self
            .history
            .iter()
            .map(|entry| Slot { tokens: entry.tokens, boundary: Boundary::of(&entry.message) })
            .collect();
        let fixed = compactor::tokens(self.system_prompt().len()) + channel_tool_tokens(self.chronicle_tools_on());
        let plan = compactor::plan(&slots, fixed, window, self.calibration, settings, self.compaction.is_some());
        match plan.action {
            Action::Keep => {}
            Action::Truncate { end } => self.truncate(end, plan.usage, window),
            Action::Summarize { end } => {
                let resting = self.summary_failed_at.is_some_and(|at| at.elapsed() < settings.retry_delay);
                if !resting {
                    self.start_summary(end, plan.usage, window);
                }
            }
        }
    }

    /// Removes `history[..end]` at once and leaves a marker; cancels a summary in flight.
    fn truncate(&mut self, end: usize, usage: f64, window: usize) {
        self.cancel_compaction("the context was truncated first");
        self.head_epoch += 1;
        let id = ProcessId::generate();
        let removed: Vec<HistoryEntry> = self.history.drain(..end).collect();
        let tokens: usize = removed.iter().map(|entry| entry.tokens).sum();
        let description = format!(
            "truncating the oldest {} messages (~{tokens} tokens) at once: the context is at {:.0}% of {window} tokens",
            removed.len(),
            usage * 100.0
        );
        tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, messages = removed.len(),
            tokens, usage, "context nearly full; truncating the oldest history");
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        let marker = compactor::truncation_marker(removed.len());
        let mut entry = self.entry(Vec::new(), marker);
        // The marker stands where the removed messages were.
        entry.seq = removed.first().map_or(entry.seq, |first| first.seq);
        self.history.push_front(entry);
        let lifecycle = spacebot_core::Lifecycle::new();
        if let Some(terminal) = lifecycle.settle(TerminalState::Done) {
            self.announcer.finished(
                &id,
                ProcessKind::Compactor,
                &terminal,
                &format!("removed {} messages", removed.len()),
            );
        }
    }

    /// Starts the background summary of `history[..end]`.
    fn start_summary(&mut self, end: usize, usage: f64, window: usize) {
        let Some(model) = self.profile.model_for(ProcessKind::Compactor) else { return };
        let Some(last) = self.history.get(end.saturating_sub(1)).map(|entry| entry.seq) else { return };
        let span = self.history.range(..end);
        let tokens: usize = span.clone().map(|entry| entry.tokens).sum();
        let transcript = compactor::transcript(span.map(|entry| &entry.message));
        let id = ProcessId::generate();
        let description = format!(
            "summarising the oldest {end} messages (~{tokens} tokens) in the background: the context is at {:.0}% of \
             {window} tokens",
            usage * 100.0
        );
        tracing::info!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, messages = end, tokens, usage,
            "starting a background summary");
        let what = description.clone();
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        let settings = self.profile.settings.compaction.clone();
        let limit = settings.summary_timeout;
        let task_id = id.clone();
        let task =
            self.summaries.spawn(async move { (task_id, compactor::summarize(model, transcript, settings).await) });
        let lifecycle = spacebot_core::Lifecycle::new();
        let registration = self.procs.register_background(&self.announcer, &id, &lifecycle, &what, limit, task);
        self.compaction = Some(Compaction { id, lifecycle, _registration: registration, last, messages: end, tokens });
    }

    /// A summary task ended: on success its summary replaces the span it covers (messages added
    /// since stay); on failure the history stays as it is.
    fn on_summary(&mut self, joined: Result<(ProcessId, Result<String, String>), JoinError>) {
        let current = self.compaction.as_ref().map(|compaction| compaction.id.clone());
        let outcome = match joined {
            Ok((id, outcome)) if Some(&id) == current.as_ref() => outcome,
            // A task aborted after it finished: its compaction was already settled as cancelled.
            Ok(_) => return,
            // Aborted tasks belong to compactions already settled as cancelled.
            Err(error) if error.is_cancelled() => return,
            // A panicked task is the current compaction's only if no other task is left.
            Err(_) if !self.summaries.is_empty() => return,
            Err(_) => Err("the summary task failed with an internal error".to_owned()),
        };
        let Some(compaction) = self.compaction.take() else { return };
        let covered = self.history.iter().take_while(|entry| entry.seq <= compaction.last).count();
        let outcome = outcome.and_then(|summary| {
            let message = compactor::summary_message(compaction.messages, &summary);
            let tokens = compactor::tokens(message.char_len());
            if tokens >= compaction.tokens {
                return Err(format!("the summary (~{tokens} tokens) was no shorter than what it summarised"));
            }
            if covered == 0 || self.history.get(covered).is_some_and(|e| Boundary::of(&e.message) == Boundary::Inside) {
                return Err("the summarised messages changed meanwhile".to_owned());
            }
            Ok(message)
        });
        let (state, summary) = match outcome {
            Ok(message) => {
                let first = self.history.front().map_or(0, |entry| entry.seq);
                self.history.drain(..covered);
                self.head_epoch += 1;
                let mut entry = self.entry(Vec::new(), message);
                entry.seq = first;
                let text = format!(
                    "replaced {covered} messages (~{} tokens) with a summary (~{} tokens)",
                    compaction.tokens, entry.tokens
                );
                self.history.push_front(entry);
                self.summary_failed_at = None;
                (TerminalState::Done, text)
            }
            Err(reason) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %reason,
                    "background summary failed; the history stays as it is");
                self.summary_failed_at = Some(Instant::now());
                (TerminalState::Failed, reason)
            }
        };
        if let Some(terminal) = compaction.lifecycle.settle(state) {
            self.announcer.finished(&compaction.id, ProcessKind::Compactor, &terminal, &summary);
        }
    }

    /// Cancels the summary in flight, if any, leaving the history as it is.
    fn cancel_compaction(&mut self, reason: &str) {
        let Some(compaction) = self.compaction.take() else { return };
        self.summaries.abort_all();
        if let Some(terminal) = compaction.lifecycle.settle(TerminalState::Cancelled) {
            self.announcer.finished(&compaction.id, ProcessKind::Compactor, &terminal, reason);
        }
    }

    /// Cancels every process and waits until each has ended, aborting what outlives the grace.
    async fn stop_processes(&mut self) {
        let ids: Vec<ProcessId> = self.procs.entries.keys().cloned().collect();
        for id in &ids {
            self.procs.cancel(id, "shutting down", false);
        }
        let until = Instant::now() + self.profile.settings.cancel_grace;
        while !self.procs.tasks.is_empty() {
            match tokio::time::timeout_at(until, self.procs.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => self.on_exit(joined),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation,
                        remaining = self.procs.tasks.len(), "processes ignored cancellation; aborting them");
                    self.procs.tasks.abort_all();
                    while let Some(joined) = self.procs.tasks.join_next_with_id().await {
                        self.on_exit(joined);
                    }
                }
            }
        }
    }
}

/// Estimated tokens of a whole request: what the compactor weighs against the provider's count.
fn request_tokens(request: &ChatRequest, with_chronicle: bool) -> usize {
    let chars = request.system.len() + request.messages.iter().map(ChatMessage::char_len).sum::<usize>();
    compactor::tokens(chars) + channel_tool_tokens(with_chronicle)
}

/// Estimated tokens of the channel's tool definitions (the same in every request, with or
/// without `chronicle`).
fn channel_tool_tokens(with_chronicle: bool) -> usize {
    static TOKENS: OnceLock<usize> = OnceLock::new();
    static WITH_CHRONICLE: OnceLock<usize> = OnceLock::new();
    let count = || {
        let chars: usize = channel_tools(with_chronicle)
            .iter()
            .map(|tool| tool.name.len() + tool.description.len() + tool.parameters.to_string().len())
            .sum();
        compactor::tokens(chars)
    };
    *if with_chronicle { WITH_CHRONICLE.get_or_init(count) } else { TOKENS.get_or_init(count) }
}

/// Records and delivers the answer to a control command.
async fn answer_command(ctx: &ConversationContext, message: &InboundMessage, text: String) {
    let stored = StoredMessage::new(ctx.agent.clone(), ctx.conversation.clone(), Role::System, HARNESS_SENDER, &text);
    if let Err(error) = ctx.log.record_reply(&stored, std::slice::from_ref(&message.id)).await {
        tracing::error!(agent = %ctx.agent, %error, "can't record the answer to a command");
    }
    if let Err(error) = ctx.outbox.send(message, OutboundResponse::text(text)).await {
        tracing::error!(agent = %ctx.agent, %error, "can't deliver the answer to a command");
    }
}

/// The sentence a person sees when a turn fails.
fn describe(failure: &TurnFailure, agent: &spacebot_core::AgentId) -> String {
    match failure {
        TurnFailure::NoModel => format!(
            "Agent '{agent}' has no model configured, so it can't answer. \
             Set `llm.models.channel` in the config and restart."
        ),
        TurnFailure::Model(error) => {
            let reason = match error.kind() {
                LlmErrorKind::RateLimited => "the model provider is rate-limiting requests",
                LlmErrorKind::ServerError => "the model provider had a server error",
                LlmErrorKind::Timeout => "the model provider did not answer in time",
                LlmErrorKind::Unreachable => "the model provider can't be reached",
                LlmErrorKind::Auth => "the model provider rejected the credentials",
                LlmErrorKind::InvalidResponse => "the model provider sent an answer that could not be read",
                LlmErrorKind::NotConfigured => "no model is configured",
                _ => "the model request failed",
            };
            format!("I couldn't answer that: {reason}. Please try again in a moment.")
        }
        TurnFailure::Budget(calls) => {
            format!("I couldn't finish answering: the model made {calls} calls without sending a reply.")
        }
        TurnFailure::Timeout(limit) => {
            format!("I couldn't answer in time: the turn ran past its {}-second limit.", limit.as_secs())
        }
        TurnFailure::Panicked => "Something went wrong on my side while answering; the error was logged.".to_owned(),
        TurnFailure::Stopped => "Stopped with /stop before I finished answering.".to_owned(),
    }
}

/// Whether a logged message is the `/new` command (its text as the log stores commands).
fn starts_fresh(text: &str) -> bool {
    let word = text.split_whitespace().next().unwrap_or_default();
    word.strip_prefix('/').and_then(ControlCommand::from_name) == Some(ControlCommand::New)
}

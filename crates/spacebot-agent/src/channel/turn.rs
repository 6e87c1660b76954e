//! Messages, bursts and control commands, and the turn: model calls with the channel tools until
//! a reply, a skip or a visible error.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use spacebot_core::{
    ChatMessage, ChatRequest, ControlCommand, ConversationContext, ConversationInput, ImagePart, InboundMessage, Inbox,
    LlmError, LlmErrorKind, MessageId, OutboundResponse, ProcessId, RESPONSE_MODE_KEY, ResponseMode, Role,
    RuntimeEvent, StatusUpdate, StoreError, StoredMessage, TurnOutcome,
};

use crate::context::chronicle;
use crate::context::compactor;
use crate::prompt::{batch_envelope, envelope};
use crate::task_tools::{FileSender, SendFileArgs};
use crate::tools::{ChannelCall, ChannelToolSet, ReactArgs, channel_tools, fallback_refusal, run_cron_tool};

use super::compaction::request_tokens;
use super::{Channel, HARNESS_SENDER};

/// Why a turn ended without a reply or skip. Each becomes an error the user can see.
#[derive(Debug)]
pub(super) enum TurnFailure {
    NoModel,
    Model(LlmError),
    Budget(usize),
    Timeout(Duration),
    Panicked,
    Stopped,
    /// The reply could not be recorded, so it was not sent.
    NotRecorded(StoreError),
}

/// What started a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TurnKind {
    /// One or more messages from people.
    User,
    /// Background results to relay.
    Relay,
}

/// One turn's input.
pub(super) struct TurnInput {
    pub(super) kind: TurnKind,
    /// Responses are delivered in the context of this message.
    pub(super) target: Arc<InboundMessage>,
    /// The inbound messages the turn answers (marked handled by its reply, skip or error).
    pub(super) answers: Vec<MessageId>,
    /// What the model sees as the user message.
    pub(super) text: String,
    /// The images shown with it (a vision-capable model's only).
    pub(super) images: Vec<ImagePart>,
}

/// Messages of a group conversation waiting to be answered together.
pub(super) struct Burst {
    pub(super) messages: Vec<InboundMessage>,
    pub(super) first: Instant,
    pub(super) deadline: Instant,
}

impl Channel {
    // ---------------------------------------------------------------------------------------
    // Messages, bursts and control commands

    pub(super) async fn accept(&mut self, message: InboundMessage, inbox: &Inbox) {
        if self.paused {
            // An explicit skip by the harness: recorded as handled, nothing sent.
            let (log, agent) = (&self.ctx.log, &self.ctx.agent);
            if let Err(error) = durably("a skip", || log.mark_handled(agent, std::slice::from_ref(&message.id))).await {
                tracing::error!(agent = %self.ctx.agent, %error, "can't mark a message handled while paused");
            }
            self.publish_turn(TurnOutcome::Skipped, Some(&message));
            return;
        }
        let bound =
            message.metadata.get(RESPONSE_MODE_KEY).and_then(serde_json::Value::as_str).and_then(ResponseMode::parse);
        let mode = self.mode.or(bound).unwrap_or(self.profile.settings.response_mode);
        if !mode.answers(&message) {
            self.observe(message).await;
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

    /// Takes a message the response mode doesn't answer as context: it joins the history the
    /// next answer sees, and is marked handled without a reply.
    async fn observe(&mut self, message: InboundMessage) {
        self.participants.insert(message.participant());
        let (images, notes) = crate::prompt::images(std::slice::from_ref(&message), self.profile.vision);
        let text = crate::prompt::with_notes(envelope(&message), &notes);
        self.context.push(vec![message.id.clone()], ChatMessage::user_with_images(text, images));
        let (log, agent) = (&self.ctx.log, &self.ctx.agent);
        if let Err(error) =
            durably("a message kept as context", || log.mark_handled(agent, std::slice::from_ref(&message.id))).await
        {
            tracing::error!(agent = %self.ctx.agent, %error, "can't mark a message kept as context handled");
        }
        self.publish_turn(TurnOutcome::Skipped, Some(&message));
    }

    pub(super) async fn flush_burst(&mut self, inbox: &Inbox) {
        inbox.set_holding(false);
        if let Some(burst) = self.burst.take() {
            self.user_turn(burst.messages, inbox).await;
        }
    }

    pub(super) async fn user_turn(&mut self, messages: Vec<InboundMessage>, inbox: &Inbox) {
        let Some(last) = messages.last() else { return };
        let target = Arc::new(last.clone());
        let answers: Vec<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
        for message in &messages {
            self.participants.insert(message.participant());
        }
        // A message the loaded history kept (when the log could not say what was unanswered) is
        // answered now, so it moves to the end of the context.
        self.context.history.retain(|entry| !entry.inbound.iter().any(|id| answers.contains(id)));
        let text = match messages.as_slice() {
            [one] => envelope(one),
            many => batch_envelope(many),
        };
        let (images, notes) = crate::prompt::images(&messages, self.profile.vision);
        let text = crate::prompt::with_notes(text, &notes);
        self.relays_since_user = 0;
        self.last_origin = Some(target.clone());
        self.run_turn(TurnInput { kind: TurnKind::User, target, answers: answers.clone(), text, images }, inbox).await;
        self.answered(&answers);
    }

    /// Carries out a control command between turns (or after the turn it interrupted) and
    /// answers it.
    pub(super) async fn control(&mut self, command: ControlCommand, message: &InboundMessage, interrupted_turn: bool) {
        if command != ControlCommand::Status && !may_control(&self.profile.settings.admins, message) {
            let refusal = format!("Only an admin of this agent can use /{} here.", command.name());
            answer_command(&self.ctx, message, refusal).await;
            return;
        }
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
                self.context.history.clear();
                // A checkpoint cut in flight is discarded when it arrives (the head moved).
                self.context.head_epoch += 1;
                self.context.boundaries.clear();
                self.forget_pending();
                self.relay_at = None;
                "Starting fresh: I've set aside the earlier messages of this conversation.".to_owned()
            }
            ControlCommand::Active => self.set_mode(ResponseMode::Active).await,
            ControlCommand::MentionOnly => self.set_mode(ResponseMode::MentionOnly).await,
            ControlCommand::Quiet => self.set_mode(ResponseMode::Observe).await,
            _ => format!("The command /{} is not supported here.", command.name()),
        };
        answer_command(&self.ctx, message, text).await;
    }

    /// Reads the response mode a command set here before, if any.
    pub(super) async fn load_mode(&mut self) {
        match self.ctx.log.conversation_setting(&self.ctx.agent, &self.ctx.conversation, MODE_SETTING).await {
            Ok(value) => self.mode = value.as_deref().and_then(ResponseMode::parse),
            Err(error) => tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't read this conversation's response mode; using the binding's or the agent's"),
        }
    }

    /// Sets (and keeps) this conversation's response mode; what the answer says.
    async fn set_mode(&mut self, mode: ResponseMode) -> String {
        self.mode = Some(mode);
        let what = match mode {
            ResponseMode::Active => "I'll answer every message here.",
            ResponseMode::MentionOnly => {
                "I'll answer here only when mentioned, replied to, or in a direct message; I still read the rest."
            }
            _ => "I'll stay quiet here and only read along, until someone sends /active or /mention-only.",
        };
        let (log, agent, conversation) = (&self.ctx.log, &self.ctx.agent, &self.ctx.conversation);
        match log.set_conversation_setting(agent, conversation, MODE_SETTING, mode.as_str()).await {
            Ok(true) => what.to_owned(),
            Ok(false) => format!("{what} (This store keeps no settings: it lasts until the conversation goes idle.)"),
            Err(error) => {
                tracing::error!(agent = %agent, conversation = %conversation, %error, "can't keep the response mode");
                format!("{what} (It couldn't be saved, so it lasts until the conversation goes idle.)")
            }
        }
    }

    /// Cancels every process without relaying their ends, and drops unrelayed results.
    pub(super) fn stop_all(&mut self, reason: &str) -> usize {
        let ids: Vec<ProcessId> = self.procs.entries.keys().cloned().collect();
        for id in &ids {
            self.procs.cancel(id, reason, false);
        }
        self.forget_pending();
        self.relay_at = None;
        ids.len()
    }

    // ---------------------------------------------------------------------------------------
    // Turns

    /// Runs one turn with typing indicators, a time limit, panic containment, and the control
    /// lane watched throughout. Always ends in a reply, a skip or a visible error.
    pub(super) async fn run_turn(&mut self, input: TurnInput, inbox: &Inbox) {
        self.ctx.outbox.publish(RuntimeEvent::TurnStarted {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
        });
        self.status(&input.target, StatusUpdate::Typing).await;
        let limit = self.profile.settings.turn_timeout;
        let ctx = self.ctx.clone();
        let status_now = self.status_report(true);
        let admins = self.profile.settings.admins.clone();
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
                            ControlCommand::Stop if may_control(&admins, &message) => {
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
        // A preview left by a turn that ends without a reply (a skip, a failure, /stop), taken
        // back before an error notice goes out.
        self.discard_draft((input.kind == TurnKind::User).then_some(&input.target.id));
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
        let answered = (input.kind == TurnKind::User).then_some(&*input.target);
        self.publish_turn(outcome, answered);
        for (command, message) in deferred {
            self.control(command, &message, stopped).await;
        }
    }

    pub(super) async fn turn(&mut self, input: &TurnInput) -> Result<TurnOutcome, TurnFailure> {
        self.turn_calls.clear();
        self.turn_claimed.clear();
        let model = self.profile.model.clone().ok_or(TurnFailure::NoModel)?;
        self.drain_reports();
        if let Some(identity) = &self.profile.identity {
            self.identity = identity.render();
        }
        self.refresh_knowledge().await;
        let system = self.system_prompt();
        let user = ChatMessage::user_with_images(input.text.clone(), input.images.clone());
        let mut turn = vec![user.clone()];
        let budget = match input.kind {
            TurnKind::User => self.profile.settings.max_model_calls_per_turn,
            TurnKind::Relay => self.profile.settings.max_model_calls_per_relay,
        };

        let tools = self.tool_set();
        let answering = (input.kind == TurnKind::User).then(|| input.target.id.clone());
        for _ in 0..budget {
            // What the last call previewed was not a reply (it would have ended the turn).
            self.discard_draft(answering.as_ref());
            let messages = self.context.messages().chain(turn.iter().cloned()).collect();
            let request = ChatRequest::new(system.clone(), messages).with_tools(channel_tools(tools));
            let estimated = request_tokens(&request, tools);
            let response =
                self.streamed_call(&*model, request, answering.as_ref()).await.map_err(TurnFailure::Model)?;
            self.turn_usage.input_tokens += response.usage.input_tokens;
            self.turn_usage.output_tokens += response.usage.output_tokens;
            if let Some(calibration) = compactor::calibration(response.usage.input_tokens, estimated) {
                self.context.calibration = calibration;
            }

            if response.tool_calls.is_empty() {
                let text = response.content.trim();
                let nudge = if text.is_empty() {
                    "Your answer was empty. Call `reply` with a message, or `skip`.".to_owned()
                } else if let Some(reason) = fallback_refusal(text, self.ctx.outbox.scrubber()) {
                    tracing::warn!(agent = %self.ctx.agent, reason, "plain-text answer not sent");
                    format!("That answer was not sent because {reason}. Call `reply` with your message, or `skip`.")
                } else {
                    self.reply(input, user, text.to_owned()).await?;
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
                let result = match ChannelCall::parse(call, tools) {
                    Err(error) => error,
                    Ok(ChannelCall::Reply(text)) => {
                        self.keep_calls(&response.content, done, results);
                        self.reply(input, user, text).await?;
                        return Ok(TurnOutcome::Replied);
                    }
                    Ok(ChannelCall::Skip(reason)) => {
                        tracing::debug!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, ?reason,
                            "the model skipped");
                        self.keep_calls(&response.content, done, results);
                        self.skip(input, user).await;
                        return Ok(TurnOutcome::Skipped);
                    }
                    Ok(ChannelCall::React(args)) => self.react(input, args).await,
                    Ok(ChannelCall::Branch(args)) => {
                        match self.earlier_run(input, spacebot_core::ProcessKind::Branch, &args.task).await {
                            Some(earlier) => earlier,
                            None => self.branch_tool(input, args, &user),
                        }
                    }
                    Ok(ChannelCall::SpawnWorker(args)) => {
                        match self.earlier_run(input, spacebot_core::ProcessKind::Worker, &args.task).await {
                            Some(earlier) => earlier,
                            None => self.spawn_worker_tool(input, args),
                        }
                    }
                    Ok(ChannelCall::Route(args)) => self.route_tool(args),
                    Ok(ChannelCall::Cancel(args)) => self.cancel_tool(args),
                    Ok(ChannelCall::Chronicle(args)) => chronicle::channel_call(&self.context.checkpoints, args),
                    Ok(ChannelCall::Cron(args)) => match self.profile.cron.clone() {
                        Some(service) => {
                            let may_change = may_control(&self.profile.settings.admins, &input.target);
                            let (agent, conversation) = (&self.ctx.agent, &self.ctx.conversation);
                            run_cron_tool(&*service, agent, conversation, &input.target, may_change, args).await
                        }
                        None => "There is no tool named `cron`.".to_owned(),
                    },
                    Ok(ChannelCall::SendFile(args)) => self.send_file(input, args).await,
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
    pub(super) fn keep_calls(&mut self, content: &str, calls: Vec<spacebot_core::ToolCall>, results: Vec<ChatMessage>) {
        if calls.is_empty() {
            return;
        }
        self.turn_calls.push(ChatMessage::assistant_with_calls(content, calls));
        self.turn_calls.extend(results);
    }

    /// Records the reply with the messages it answers, then delivers it. Recording first means a
    /// crash between the two loses the delivery rather than sending the reply twice.
    /// Records the reply with the messages it answers, then delivers it. Only a recorded reply
    /// is sent: one the log refuses (after retries while it says a retry may help) fails the
    /// turn with a visible notice instead, so the message is answered once, now or after a
    /// restart, never twice.
    pub(super) async fn reply(
        &mut self,
        input: &TurnInput,
        user: ChatMessage,
        text: String,
    ) -> Result<(), TurnFailure> {
        // What is recorded, remembered and sent is the same text, secrets masked.
        let text = self.ctx.outbox.scrubber().scrub_owned(text);
        let stored = StoredMessage::new(
            self.ctx.agent.clone(),
            self.ctx.conversation.clone(),
            Role::Assistant,
            self.ctx.agent.as_str(),
            text.clone(),
        );
        let (log, answers) = (&self.ctx.log, input.answers.as_slice());
        durably("the reply", || log.record_reply(&stored, answers)).await.map_err(TurnFailure::NotRecorded)?;
        // The reply completes its preview.
        self.draft_shown = false;
        self.remember(input, user, Some(ChatMessage::assistant(text.clone())));
        self.deliver(&input.target, OutboundResponse::text(text)).await;
        Ok(())
    }

    /// Marks the messages handled without an answer. If the log refuses, they stay unhandled and
    /// are processed again after a restart; nothing was sent, so nothing is sent twice.
    pub(super) async fn skip(&mut self, input: &TurnInput, user: ChatMessage) {
        let (log, agent) = (&self.ctx.log, &self.ctx.agent);
        if !input.answers.is_empty()
            && let Err(error) = durably("a skip", || log.mark_handled(agent, &input.answers)).await
        {
            tracing::error!(agent = %self.ctx.agent, %error, "can't mark a skipped message handled");
        }
        self.remember(input, user, None);
    }

    pub(super) async fn react(&mut self, input: &TurnInput, args: ReactArgs) -> String {
        match self.ctx.outbox.send(&input.target, OutboundResponse::Reaction { emoji: args.emoji }).await {
            Ok(()) => "Reacted. Now `reply` or `skip`.".to_owned(),
            Err(error) => format!("The reaction could not be sent ({error}). Now `reply` or `skip`."),
        }
    }

    /// Uploads a workspace file to the conversation; the turn goes on.
    pub(super) async fn send_file(&self, input: &TurnInput, args: SendFileArgs) -> String {
        let Some(files) = self.file_sender(input.target.clone()) else {
            return "There is no tool named `send_file`.".to_owned();
        };
        match files.send(args).await {
            Ok(sent) => format!("{sent} Now `reply` or `skip`."),
            Err(error) => format!("error: {error}. Now `reply` or `skip`."),
        }
    }

    /// What sends workspace files in the context of `target`, when the agent has a workspace.
    pub(super) fn file_sender(&self, target: Arc<InboundMessage>) -> Option<FileSender> {
        let settings = &self.profile.task_tools;
        let workspace = settings.workspace.clone()?;
        Some(FileSender::new(workspace, settings.max_send_bytes, self.ctx.outbox.clone(), target))
    }

    /// The optional tools this channel offers now.
    pub(super) fn tool_set(&self) -> ChannelToolSet {
        ChannelToolSet {
            chronicle: self.chronicle_tools_on(),
            cron: self.profile.cron.is_some(),
            files: self.profile.task_tools.workspace.is_some(),
        }
    }

    /// Tells the user the turn failed, so no message goes unanswered.
    pub(super) async fn fail(&mut self, input: &TurnInput, failure: TurnFailure) -> TurnOutcome {
        tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, ?failure, "turn failed");
        let text = self.ctx.outbox.scrubber().scrub_owned(format!("⚠️ {}", describe(&failure, &self.ctx.agent)));
        let stored = StoredMessage::new(
            self.ctx.agent.clone(),
            self.ctx.conversation.clone(),
            Role::System,
            HARNESS_SENDER,
            text.clone(),
        );
        let (log, answers) = (&self.ctx.log, input.answers.as_slice());
        if let Err(error) = durably("an error notice", || log.record_reply(&stored, answers)).await {
            // Delivered all the same: the message stays unhandled and is answered after a
            // restart, and this notice is not an answer.
            tracing::error!(agent = %self.ctx.agent, %error, "can't record the error notice");
        }
        // The tool calls that ran stay in the context (a worker it started is still running).
        self.remember(input, ChatMessage::user_with_images(input.text.clone(), input.images.clone()), None);
        self.deliver(&input.target, OutboundResponse::text(text)).await;
        TurnOutcome::Failed
    }

    /// Adds the turn to the history: the user message, the tool calls that ran with their
    /// results, and the answer.
    pub(super) fn remember(&mut self, input: &TurnInput, user: ChatMessage, answer: Option<ChatMessage>) {
        self.context.push(input.answers.clone(), user);
        for message in std::mem::take(&mut self.turn_calls) {
            self.context.push(Vec::new(), message);
        }
        if let Some(answer) = answer {
            self.context.push(Vec::new(), answer);
        }
    }

    pub(super) async fn deliver(&self, target: &InboundMessage, response: OutboundResponse) {
        if let Err(error) = self.ctx.outbox.send(target, response).await {
            tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't deliver a response");
        }
    }

    pub(super) async fn status(&self, message: &InboundMessage, status: StatusUpdate) {
        // A missed typing indicator is cosmetic; the outbox already logged it as an event.
        let _ = self.ctx.outbox.send(message, OutboundResponse::Status { status }).await;
    }
}

/// Records and delivers the answer to a control command.
pub(super) async fn answer_command(ctx: &ConversationContext, message: &InboundMessage, text: String) {
    // A status report quotes workers' own words, which may hold a secret.
    let text = ctx.outbox.scrubber().scrub_owned(text);
    let stored = StoredMessage::new(ctx.agent.clone(), ctx.conversation.clone(), Role::System, HARNESS_SENDER, &text);
    if let Err(error) =
        durably("a command's answer", || ctx.log.record_reply(&stored, std::slice::from_ref(&message.id))).await
    {
        tracing::error!(agent = %ctx.agent, %error, "can't record the answer to a command");
    }
    if let Err(error) = ctx.outbox.send(message, OutboundResponse::text(text)).await {
        tracing::error!(agent = %ctx.agent, %error, "can't deliver the answer to a command");
    }
}

/// The conversation setting that holds the response mode set with `/active`, `/mention-only`
/// or `/quiet`.
const MODE_SETTING: &str = "response_mode";

/// Whether `message`'s sender may use the control commands that change the conversation: anyone
/// when `admins` is empty, else the participants it lists.
fn may_control(admins: &[String], message: &InboundMessage) -> bool {
    admins.is_empty() || admins.contains(&message.participant())
}

/// The sentence a person sees when a turn fails.
pub(super) fn describe(failure: &TurnFailure, agent: &spacebot_core::AgentId) -> String {
    match failure {
        TurnFailure::NoModel => format!(
            "Agent '{agent}' has no model configured, so it can't answer. \
             Set `llm.models.channel` in the config and restart."
        ),
        TurnFailure::Model(error) => {
            // What went wrong, and what the person can do about it: asking again helps only when
            // the failure may pass (a busy, slow or unreachable provider); a refused key or request
            // needs whoever runs the daemon, and its log names the provider and its reason.
            const AGAIN: &str = "Please try again in a moment.";
            const OPERATOR: &str = "Asking again won't help until whoever runs the daemon fixes it; \
                                    the daemon's log says which provider and why.";
            let (reason, advice) = match error.kind() {
                LlmErrorKind::RateLimited => ("the model provider is rate-limiting requests", AGAIN),
                LlmErrorKind::ServerError => ("the model provider had a server error", AGAIN),
                LlmErrorKind::Timeout => ("the model provider did not answer in time", AGAIN),
                LlmErrorKind::Unreachable => ("the model provider can't be reached", AGAIN),
                LlmErrorKind::InvalidResponse => ("the model provider sent an answer that could not be read", AGAIN),
                LlmErrorKind::Untrusted => {
                    ("the model provider's TLS certificate isn't trusted, so nothing was sent to it", OPERATOR)
                }
                LlmErrorKind::Auth => ("the model provider refused the daemon's API key", OPERATOR),
                LlmErrorKind::InvalidRequest => ("the model provider refused the request as invalid", OPERATOR),
                LlmErrorKind::NotConfigured => ("no model is configured", OPERATOR),
                kind if kind.is_transient() => ("the model request failed", AGAIN),
                _ => ("the model request failed", OPERATOR),
            };
            format!("I couldn't answer that: {reason}. {advice}")
        }
        TurnFailure::Budget(calls) => {
            format!("I couldn't finish answering: the model made {calls} calls without sending a reply.")
        }
        TurnFailure::Timeout(limit) => {
            format!("I couldn't answer in time: the turn ran past its {}-second limit.", limit.as_secs())
        }
        TurnFailure::Panicked => "Something went wrong on my side while answering; the error was logged.".to_owned(),
        TurnFailure::Stopped => "Stopped with /stop before I finished answering.".to_owned(),
        TurnFailure::NotRecorded(error) => format!(
            "I wrote an answer but couldn't save it to the conversation log ({}), so I didn't send it and you won't \
             get it twice. Please ask again in a moment.",
            if error.is_transient() { "it stayed busy" } else { "it failed" }
        ),
    }
}

/// Waits before each retry of a log write refused as transient (a busy database): three more
/// attempts within about five seconds, well inside a turn's time limit.
const STORE_RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(4)];

/// Runs a log write (`what` names it for the logs), retrying while the log says a retry may help.
pub(super) async fn durably<F, Fut>(what: &str, mut write: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let mut delays = STORE_RETRY_DELAYS.iter();
    loop {
        match write().await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() => {
                let Some(delay) = delays.next() else { return Err(error) };
                tracing::warn!(%error, retry_in = ?delay, "can't record {what} yet; retrying");
                tokio::time::sleep(*delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

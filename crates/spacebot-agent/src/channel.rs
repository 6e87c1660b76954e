//! The channel: one task per conversation, owning its history, one turn per message.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use spacebot_core::{
    ChatMessage, ChatRequest, ConversationContext, ConversationInput, InboundMessage, Inbox, LlmError, LlmErrorKind,
    MessageId, OutboundResponse, Role, RuntimeEvent, StatusUpdate, StoredMessage, TurnOutcome,
};

use crate::engine::AgentProfile;
use crate::prompt::envelope;
use crate::tools::{REPLY_TOOL, SKIP_TOOL, channel_tools, fallback_refusal, parse_reply};

/// The sender label of messages the harness itself writes.
const HARNESS_SENDER: &str = "spacebot";

/// One message of the channel's context, with the log id of the inbound message it came from.
struct Entry {
    inbound: Option<MessageId>,
    message: ChatMessage,
}

/// Why a turn ended without a reply or skip. Each becomes an error the user can see.
#[derive(Debug)]
enum TurnFailure {
    NoModel,
    Model(LlmError),
    Budget(usize),
    Timeout(Duration),
    Panicked,
}

pub(crate) struct Channel {
    ctx: ConversationContext,
    profile: Arc<AgentProfile>,
    history: VecDeque<Entry>,
}

impl Channel {
    pub(crate) fn new(ctx: ConversationContext, profile: Arc<AgentProfile>) -> Self {
        Self { ctx, profile, history: VecDeque::new() }
    }

    /// Runs until the inbox closes or the runtime shuts down. A turn in progress when shutdown
    /// begins is finished (the runtime cancels it if it outlasts the grace period).
    pub(crate) async fn run(mut self, mut inbox: Inbox) {
        self.load_history().await;
        loop {
            let input = tokio::select! {
                biased;
                () = self.ctx.shutdown.cancelled() => break,
                input = inbox.recv() => input,
            };
            match input {
                Some(ConversationInput::Message(message)) => self.handle(message).await,
                Some(other) => tracing::debug!(?other, "channel ignores this input"),
                None => break,
            }
        }
    }

    async fn load_history(&mut self) {
        let limit = self.profile.settings.history_limit;
        let messages = match self.ctx.log.history(&self.ctx.agent, &self.ctx.conversation, limit).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't load conversation history; starting with none");
                return;
            }
        };
        // Messages not answered yet (recovered at start, or recorded just before this channel
        // started) are on their way through the inbox and join the context as they are answered,
        // in order. Loading them here would show the first turn later messages before its own.
        // Read after the history: nothing else answers this conversation meanwhile.
        let pending = self.pending_ids().await;
        for stored in messages {
            let entry = match stored.role {
                Role::User if pending.contains(&stored.id) => continue,
                Role::User => Entry {
                    message: ChatMessage::user(format!(
                        "[{} | {}] {}",
                        stored.created_at.format("%Y-%m-%d %H:%M UTC"),
                        stored.sender,
                        stored.text
                    )),
                    inbound: Some(stored.id),
                },
                Role::Assistant => Entry { inbound: None, message: ChatMessage::assistant(stored.text) },
                // Harness notices are for people, not context for the model.
                _ => continue,
            };
            self.history.push_back(entry);
        }
    }

    /// The ids of this conversation's messages that are recorded but not yet answered.
    async fn pending_ids(&self) -> HashSet<MessageId> {
        match self.ctx.log.unhandled_in(&self.ctx.agent, &self.ctx.conversation).await {
            Ok(ids) => ids.into_iter().collect(),
            Err(error) => {
                // `handle` still moves each answered message to the end of the context.
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't read unanswered messages; loaded history may include them");
                HashSet::new()
            }
        }
    }

    async fn handle(&mut self, message: InboundMessage) {
        // A message the loaded history kept (when the log could not say what was unanswered) is
        // answered now, so it moves to the end of the context.
        self.history.retain(|entry| entry.inbound.as_ref() != Some(&message.id));

        self.status(&message, StatusUpdate::Typing).await;
        let limit = self.profile.settings.turn_timeout;
        let result = AssertUnwindSafe(tokio::time::timeout(limit, self.turn(&message))).catch_unwind().await;
        let outcome = match result {
            Ok(Ok(Ok(outcome))) => outcome,
            Ok(Ok(Err(failure))) => self.fail(&message, failure).await,
            Ok(Err(_elapsed)) => self.fail(&message, TurnFailure::Timeout(limit)).await,
            Err(_panic) => self.fail(&message, TurnFailure::Panicked).await,
        };
        self.status(&message, StatusUpdate::StopTyping).await;
        self.ctx.outbox.publish(RuntimeEvent::TurnFinished {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            outcome,
        });
    }

    async fn turn(&mut self, message: &InboundMessage) -> Result<TurnOutcome, TurnFailure> {
        let model = self.profile.model.clone().ok_or(TurnFailure::NoModel)?;
        let user = ChatMessage::user(envelope(message));
        let mut turn = vec![user.clone()];
        let budget = self.profile.settings.max_model_calls_per_turn;

        for _ in 0..budget {
            let messages = self.history.iter().map(|entry| entry.message.clone()).chain(turn.iter().cloned()).collect();
            let request = ChatRequest::new(self.profile.system_prompt.clone(), messages).with_tools(channel_tools());
            let response = model.complete(request).await.map_err(TurnFailure::Model)?;

            if response.tool_calls.is_empty() {
                let text = response.content.trim();
                let nudge = if text.is_empty() {
                    "Your answer was empty. Call `reply` with a message, or `skip`.".to_owned()
                } else if let Some(reason) = fallback_refusal(text) {
                    tracing::warn!(agent = %self.ctx.agent, reason, "plain-text answer not sent");
                    format!("That answer was not sent because {reason}. Call `reply` with your message, or `skip`.")
                } else {
                    self.reply(message, user, text.to_owned()).await;
                    return Ok(TurnOutcome::Replied);
                };
                turn.push(ChatMessage::assistant(response.content.clone()));
                turn.push(ChatMessage::user(format!("[harness] {nudge}")));
                continue;
            }

            turn.push(ChatMessage::assistant_with_calls(response.content.clone(), response.tool_calls.clone()));
            for call in &response.tool_calls {
                let result = match call.name.as_str() {
                    REPLY_TOOL => match parse_reply(&call.arguments) {
                        Ok(text) => {
                            self.reply(message, user, text).await;
                            return Ok(TurnOutcome::Replied);
                        }
                        Err(error) => error,
                    },
                    SKIP_TOOL => {
                        self.skip(message, user).await;
                        return Ok(TurnOutcome::Skipped);
                    }
                    other => format!("There is no tool named `{other}`. The tools are `reply` and `skip`."),
                };
                turn.push(ChatMessage::tool_result(call.id.clone(), call.name.clone(), result));
            }
        }
        Err(TurnFailure::Budget(budget))
    }

    /// Records the reply with the message it answers, then delivers it. Recording first means a
    /// crash between the two loses the delivery rather than sending the reply twice.
    async fn reply(&mut self, message: &InboundMessage, user: ChatMessage, text: String) {
        let stored = StoredMessage::new(
            self.ctx.agent.clone(),
            self.ctx.conversation.clone(),
            Role::Assistant,
            self.ctx.agent.as_str(),
            text.clone(),
        );
        if let Err(error) = self.ctx.log.record_reply(&stored, std::slice::from_ref(&message.id)).await {
            tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't record the reply; sending it anyway");
        }
        self.remember(message, user, Some(ChatMessage::assistant(text.clone())));
        self.deliver(message, OutboundResponse::text(text)).await;
    }

    async fn skip(&mut self, message: &InboundMessage, user: ChatMessage) {
        if let Err(error) = self.ctx.log.mark_handled(&self.ctx.agent, std::slice::from_ref(&message.id)).await {
            tracing::error!(agent = %self.ctx.agent, %error, "can't mark a skipped message handled");
        }
        self.remember(message, user, None);
    }

    /// Tells the user the turn failed, so no message goes unanswered.
    async fn fail(&mut self, message: &InboundMessage, failure: TurnFailure) -> TurnOutcome {
        tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, ?failure, "turn failed");
        let text = format!("⚠️ {}", describe(&failure, &self.ctx.agent));
        let stored = StoredMessage::new(
            self.ctx.agent.clone(),
            self.ctx.conversation.clone(),
            Role::System,
            HARNESS_SENDER,
            text.clone(),
        );
        if let Err(error) = self.ctx.log.record_reply(&stored, std::slice::from_ref(&message.id)).await {
            tracing::error!(agent = %self.ctx.agent, %error, "can't record the error notice");
        }
        self.remember(message, ChatMessage::user(envelope(message)), None);
        self.deliver(message, OutboundResponse::text(text)).await;
        TurnOutcome::Failed
    }

    fn remember(&mut self, message: &InboundMessage, user: ChatMessage, answer: Option<ChatMessage>) {
        self.history.push_back(Entry { inbound: Some(message.id.clone()), message: user });
        if let Some(answer) = answer {
            self.history.push_back(Entry { inbound: None, message: answer });
        }
        while self.history.len() > self.profile.settings.history_limit {
            self.history.pop_front();
        }
    }

    async fn deliver(&self, message: &InboundMessage, response: OutboundResponse) {
        if let Err(error) = self.ctx.outbox.send(message, response).await {
            tracing::error!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't deliver a response");
        }
    }

    async fn status(&self, message: &InboundMessage, status: StatusUpdate) {
        // A missed typing indicator is cosmetic; the outbox already logged it as an event.
        let _ = self.ctx.outbox.send(message, OutboundResponse::Status { status }).await;
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
    }
}

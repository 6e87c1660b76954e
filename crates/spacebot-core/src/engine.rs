//! The conversation engine contract: what runs a conversation once the router has found it.
//!
//! The runtime owns routing, persistence of inbound messages, delivery and shutdown; an engine
//! (the channel process of `spacebot-agent`, or your own) owns what happens inside one
//! conversation. The runtime spawns one [`ConversationEngine::run_conversation`] future per
//! `(agent, conversation)` and feeds it inputs in arrival order.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::ids::{AgentId, ConversationId};
use crate::inbox::Inbox;
use crate::log::ConversationLog;
use crate::message::InboundMessage;
use crate::outbox::Outbox;
use crate::supervision::ProcessRegistry;

/// An input to a conversation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConversationInput {
    /// A recorded inbound message to answer.
    Message(InboundMessage),
    /// A control command, delivered ahead of queued messages and even while a turn runs
    /// ([`Inbox::recv_control`]). The message carrying it is recorded and must be answered.
    Control(ControlCommand, InboundMessage),
    /// The runtime would like to evict this conversation (it has been idle for a while, or too
    /// many conversations are live): return from
    /// [`run_conversation`](ConversationEngine::run_conversation) if, and only if, nothing is in
    /// flight: no turn running, nothing queued ([`Inbox::is_empty`]), no message held, no
    /// background work, no result waiting to be told. Otherwise ignore it; the runtime asks again
    /// after the conversation's next activity.
    ///
    /// Everything a conversation keeps must be recoverable from the log, because the next
    /// message starts a new task that loads it from there. [`Inbox::recv`] delivers this only
    /// when nothing is queued, and a message routed after it withdraws it. An engine that ignores
    /// it is never evicted.
    Evict,
}

impl ConversationInput {
    /// The inbound message this input carries, if it carries one ([`Evict`](Self::Evict) does
    /// not).
    pub fn message(&self) -> Option<&InboundMessage> {
        match self {
            Self::Message(message) | Self::Control(_, message) => Some(message),
            Self::Evict => None,
        }
    }

    /// The inbound message this input carries, taken out of it.
    pub fn into_message(self) -> Option<InboundMessage> {
        match self {
            Self::Message(message) | Self::Control(_, message) => Some(message),
            Self::Evict => None,
        }
    }
}

/// A command people give the harness itself rather than the agent: `/status`, `/stop`,
/// `/pause`, `/resume`, `/new`. The router recognises them and hands them to the conversation
/// on a lane of their own, so they take effect even in the middle of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlCommand {
    /// Report what the conversation is doing.
    Status,
    /// Stop the turn in progress and cancel every branch and worker.
    Stop,
    /// Stop answering messages until `/resume`.
    Pause,
    /// Answer messages again.
    Resume,
    /// Start over with an empty context.
    New,
    /// Answer every message here (`/active`).
    Active,
    /// Answer here only when mentioned, replied to, or in a DM (`/mention-only`).
    MentionOnly,
    /// Answer nothing here, only keep the messages as context (`/quiet`).
    Quiet,
}

/// Whether `word` is a mention as adapters hand them in: `@name` (rendered) or `<@id>` (raw).
fn is_mention(word: &str) -> bool {
    (word.len() > 1 && word.starts_with('@')) || (word.starts_with("<@") && word.ends_with('>'))
}

impl ControlCommand {
    /// The command a message carries: a [`MessageContent::Command`] or text whose first word is
    /// one of the command names with a slash. In a message that mentions the bot, a leading
    /// mention is passed over (`@spacebot /pause`, `<@U123> /pause`): in a server or workspace
    /// where several bots listen, that is how a command is addressed to one.
    ///
    /// [`MessageContent::Command`]: crate::MessageContent::Command
    pub fn parse(message: &InboundMessage) -> Option<Self> {
        let name = match &message.content {
            crate::message::MessageContent::Command { name, .. } => name.trim_start_matches('/').to_owned(),
            crate::message::MessageContent::Text { text } => {
                let mut words = text.split_whitespace();
                let mut first = words.next()?;
                if message.mentions_bot() && is_mention(first) {
                    first = words.next()?;
                }
                first.strip_prefix('/')?.to_owned()
            }
            _ => return None,
        };
        Self::from_name(&name)
    }

    /// The command with this name (without the slash), case-insensitive.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "status" => Some(Self::Status),
            "stop" => Some(Self::Stop),
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "new" => Some(Self::New),
            "active" => Some(Self::Active),
            "mention-only" | "mention_only" => Some(Self::MentionOnly),
            "quiet" => Some(Self::Quiet),
            _ => None,
        }
    }

    /// The command's name without the slash.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::New => "new",
            Self::Active => "active",
            Self::MentionOnly => "mention-only",
            Self::Quiet => "quiet",
        }
    }
}

/// Everything a conversation needs from the runtime.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConversationContext {
    /// The agent.
    pub agent: AgentId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Delivers responses through the adapter each message came from.
    pub outbox: Outbox,
    /// The conversation log.
    pub log: Arc<dyn ConversationLog>,
    /// Cancelled when the runtime shuts down: finish or abandon the current turn and return.
    pub shutdown: CancellationToken,
    /// The runtime's table of live processes: register each branch, worker and background task
    /// here so a supervisor can see it and end it if it hangs. [`ConversationContext::new`] gives
    /// a private table; the runtime sets its shared one.
    pub processes: ProcessRegistry,
}

impl ConversationContext {
    /// A context; the runtime builds these, tests and custom runtimes may too.
    pub fn new(
        agent: AgentId,
        conversation: ConversationId,
        outbox: Outbox,
        log: Arc<dyn ConversationLog>,
        shutdown: CancellationToken,
    ) -> Self {
        Self { agent, conversation, outbox, log, shutdown, processes: ProcessRegistry::new() }
    }

    /// Sets the process table a supervisor watches.
    pub fn with_processes(mut self, processes: ProcessRegistry) -> Self {
        self.processes = processes;
        self
    }
}

/// Runs conversations. Implemented by `spacebot-agent`'s channel engine.
pub trait ConversationEngine: Send + Sync + 'static {
    /// Runs one conversation until `inbox` closes, `ctx.shutdown` is cancelled, or it accepts a
    /// [`ConversationInput::Evict`] because it is idle.
    ///
    /// Every message received must end in a reply, an explicit skip or a visible error, and be
    /// marked handled in the log. Messages are handled one at a time: the one last returned by
    /// [`Inbox::recv`] is in progress until the next `recv`. If the task dies, the runtime answers
    /// the message in progress with a visible error and runs a new task on the rest of the inbox.
    /// If it returns after an eviction request and a message arrived meanwhile, the runtime runs
    /// a new task on the same inbox, so the message is answered, in order.
    fn run_conversation(&self, ctx: ConversationContext, inbox: Inbox) -> BoxFuture<'static, ()>;

    /// Conditions an operator should know about right now, one sentence each (a budget spent, a
    /// circuit breaker open), for `status`. The default has none.
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MENTIONS_BOT_KEY, Sender};

    fn command(text: &str, mentions_bot: bool) -> Option<ControlCommand> {
        let message = InboundMessage::text("discord", "discord:c1", Sender::new("u1"), text)
            .with_metadata(MENTIONS_BOT_KEY, serde_json::json!(mentions_bot));
        ControlCommand::parse(&message)
    }

    #[test]
    fn a_command_addressed_to_the_bot_by_a_leading_mention_is_a_command() {
        assert_eq!(command("/pause", false), Some(ControlCommand::Pause));
        assert_eq!(command("@spacebot /pause", true), Some(ControlCommand::Pause));
        assert_eq!(command("<@UBOT> /Stop now", true), Some(ControlCommand::Stop));
        assert_eq!(command("<@!42>   /mention-only", true), Some(ControlCommand::MentionOnly));
        // Only a leading mention, only in a message to the bot, only a known command.
        assert_eq!(command("@spacebot /pause", false), None);
        assert_eq!(command("hey @spacebot /pause", true), None);
        assert_eq!(command("@spacebot please /pause", true), None);
        assert_eq!(command("@spacebot /dance", true), None);
        assert_eq!(command("@ /pause", true), None);
        assert_eq!(command("@spacebot", true), None);
    }
}

//! Events the runtime publishes for observers (the SSE endpoint, metrics, tests).

use serde::Serialize;

use crate::ids::{AgentId, ConversationId, MessageId};
use crate::llm::Usage;
use crate::message::OutboundResponse;
use crate::process::ProcessEvent;

/// Something that happened in the runtime.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuntimeEvent {
    /// An inbound message was recorded and routed to its conversation.
    MessageReceived {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        message_id: MessageId,
    },
    /// A response was handed to an adapter.
    ResponseSent {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// The adapter runtime key.
        adapter: String,
        /// The response.
        response: OutboundResponse,
    },
    /// A response could not be delivered after retries.
    DeliveryFailed {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// The adapter runtime key.
        adapter: String,
        /// Why.
        error: String,
    },
    /// A conversation started a turn (answering people, or relaying background results).
    TurnStarted {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
    },
    /// More of a reply being written, as the model writes it (the text of a `reply` call, or the
    /// plain text of a model that answers in text). The reply itself follows as
    /// [`ResponseSent`](Self::ResponseSent) with the whole text; deltas are for showing it as it
    /// comes, and a reader that misses some loses nothing but the preview.
    ///
    /// Deltas arrive with secrets already masked: text that might be the start of a secret is
    /// held back until what follows shows it is not.
    ReplyDelta {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// The message the turn answers (the last of a burst); `None` in a relay turn.
        message: Option<MessageId>,
        /// The next piece of the reply.
        text: String,
        /// The text may still turn out not to be the reply: the model wrote plain text and may
        /// go on to call tools instead. A reader that can't take text back (an OpenAI stream)
        /// holds tentative text until the reply confirms it.
        tentative: bool,
    },
    /// The reply previewed by [`ReplyDelta`](Self::ReplyDelta)s since the last reply will not be
    /// sent: the model went on to call tools, or its text was refused, or the turn failed.
    ReplyDiscarded {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// The message the turn answers, as in its deltas.
        message: Option<MessageId>,
    },
    /// A conversation finished processing a turn.
    TurnFinished {
        /// The agent.
        agent: AgentId,
        /// The conversation.
        conversation: ConversationId,
        /// How it ended: `replied`, `skipped` or `failed`.
        outcome: TurnOutcome,
        /// The message the turn answered (the last of a burst), if it answered one (a relay
        /// turn answers none).
        message: Option<MessageId>,
        /// The tokens the turn's model calls used.
        usage: Usage,
    },
    /// A branch, worker or compactor started, reported progress, or ended.
    Process(ProcessEvent),
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TurnOutcome {
    /// The agent replied.
    Replied,
    /// The agent chose not to reply.
    Skipped,
    /// The turn failed and the user was shown an error.
    Failed,
}

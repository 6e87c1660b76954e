//! Who a memory belongs to ([`MemoryScope`]) and who may see it ([`Visibility`]).

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ConversationId};

/// Who a memory belongs to and who may see it.
///
/// A *shared* memory (`private == false`) is visible in every conversation of its agent;
/// `conversation` and `human` then only say where it came from and whom it concerns. A *private*
/// memory is visible only where its person takes part (`human`), or, with no person, only in its
/// own conversation. Stores enforce this in the query that reads memories, never in a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryScope {
    /// The owning agent.
    pub agent: AgentId,
    /// The conversation it came from, if any.
    pub conversation: Option<ConversationId>,
    /// The person it is about or came from: a person id, or a platform id (`discord:123`) that
    /// a store maps to the person through its identity anchors.
    pub human: Option<String>,
    /// Whether only `human` (or, without one, `conversation`) may see it.
    pub private: bool,
}

impl MemoryScope {
    /// A shared, agent-wide scope.
    pub fn agent(agent: impl Into<AgentId>) -> Self {
        Self { agent: agent.into(), conversation: None, human: None, private: false }
    }

    /// A memory private to one person: visible only in conversations they take part in.
    pub fn private_to(agent: impl Into<AgentId>, human: impl Into<String>) -> Self {
        Self { agent: agent.into(), conversation: None, human: Some(human.into()), private: true }
    }

    /// A memory private to one conversation.
    pub fn private_to_conversation(agent: impl Into<AgentId>, conversation: impl Into<ConversationId>) -> Self {
        Self { agent: agent.into(), conversation: Some(conversation.into()), human: None, private: true }
    }

    /// Records the conversation the memory came from.
    pub fn with_conversation(mut self, conversation: impl Into<ConversationId>) -> Self {
        self.conversation = Some(conversation.into());
        self
    }

    /// Records the person the memory is about (visibility is unchanged).
    pub fn with_human(mut self, human: impl Into<String>) -> Self {
        self.human = Some(human.into());
        self
    }
}

/// Whose memories a read may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Visibility {
    /// Shared memories only.
    Shared,
    /// What one conversation may see: shared memories, memories private to one of its
    /// participants (platform ids or person ids), and memories private to the conversation.
    /// Never another person's private memories.
    Conversation {
        /// The conversation reading.
        conversation: ConversationId,
        /// Who takes part in it.
        participants: Vec<String>,
    },
    /// Everything, private memories included: for the operator's command line, never for a model.
    Operator,
}

impl Visibility {
    /// What `conversation`, with these participants, may see.
    pub fn conversation(
        conversation: impl Into<ConversationId>,
        participants: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::Conversation {
            conversation: conversation.into(),
            participants: participants.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_say_who_may_see() {
        let private = MemoryScope::private_to("main", "discord:1");
        assert!(private.private);
        assert_eq!(private.human.as_deref(), Some("discord:1"));
        let shared = MemoryScope::agent("main").with_human("discord:1");
        assert!(!shared.private);
    }
}

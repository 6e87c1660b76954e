//! Who a memory belongs to ([`MemoryScope`]) and who may see it ([`Visibility`]).
//!
//! [`Visibility::admits`] is the privacy rule, written once. The default
//! [`MemoryStore::get_visible`](crate::MemoryStore::get_visible) applies it, and a store that
//! filters in its own query language (SQL in `spacebot-memory`) keeps that query in agreement
//! with it, checked by a test over generated cases. A store that maps platform ids to people
//! resolves a visibility first ([`Visibility::with_participants`]) and asks the same function.

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

    /// The parts of this scope [`Visibility::admits`] reads.
    pub fn view(&self) -> ScopeView<'_> {
        ScopeView::new(self.private, self.human.as_deref(), self.conversation.as_ref().map(ConversationId::as_str))
    }
}

/// The parts of a memory's scope that decide who may see it, borrowed, so a store can ask
/// [`Visibility::admits`] about a row or an index entry without building a [`MemoryScope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeView<'a> {
    /// Whether the memory is private.
    pub private: bool,
    /// The person it is about or came from, as stored.
    pub human: Option<&'a str>,
    /// The conversation it came from.
    pub conversation: Option<&'a str>,
}

impl<'a> ScopeView<'a> {
    /// A view of a scope: whether it is private, its person and its conversation.
    pub fn new(private: bool, human: Option<&'a str>, conversation: Option<&'a str>) -> Self {
        Self { private, human, conversation }
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

    /// Whether a reader with this visibility may see a memory with this scope (forgotten or not
    /// is the caller's business). Shared memories are visible to every reader; a private memory
    /// to the operator, and in a conversation only when its person takes part or, with no person,
    /// when it is that conversation's own. This is the one statement of the rule: stores apply it
    /// or keep their queries in agreement with it.
    pub fn admits(&self, scope: ScopeView<'_>) -> bool {
        match self {
            Self::Operator => true,
            Self::Shared => !scope.private,
            Self::Conversation { conversation, participants } => {
                !scope.private
                    || match scope.human {
                        Some(human) => participants.iter().any(|participant| participant == human),
                        None => scope.conversation == Some(conversation.as_str()),
                    }
            }
        }
    }

    /// Adds people who take part, for a store that maps the participants' platform ids to people
    /// (identity links): the resolved visibility admits the memories of those people too. Names
    /// already present are not added twice; other visibilities are returned unchanged.
    pub fn with_participants(mut self, more: impl IntoIterator<Item = impl Into<String>>) -> Self {
        if let Self::Conversation { participants, .. } = &mut self {
            for person in more {
                let person = person.into();
                if !participants.contains(&person) {
                    participants.push(person);
                }
            }
        }
        self
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

    #[test]
    fn admits_shows_private_memories_only_to_their_person_or_conversation() {
        let alices = MemoryScope::private_to("main", "discord:alice").with_conversation("c2");
        let c1s = MemoryScope::private_to_conversation("main", "c1");
        let shared = MemoryScope::agent("main").with_human("discord:bob");
        let with_alice = Visibility::conversation("c1", ["discord:alice"]);
        let with_bob = Visibility::conversation("c1", ["discord:bob"]);
        let elsewhere = Visibility::conversation("c2", ["discord:bob"]);
        assert!(with_alice.admits(alices.view()), "her own memory follows her to c1");
        assert!(!with_bob.admits(alices.view()), "not to a conversation without her");
        assert!(!elsewhere.admits(alices.view()), "not even where it came from");
        assert!(with_bob.admits(c1s.view()) && !elsewhere.admits(c1s.view()), "a conversation's own, there only");
        for visibility in [&with_alice, &with_bob, &elsewhere, &Visibility::Shared, &Visibility::Operator] {
            assert!(visibility.admits(shared.view()), "{visibility:?} sees shared memories");
        }
        assert!(!Visibility::Shared.admits(alices.view()) && !Visibility::Shared.admits(c1s.view()));
        assert!(Visibility::Operator.admits(alices.view()) && Visibility::Operator.admits(c1s.view()));
    }

    #[test]
    fn resolved_participants_admit_the_people_they_map_to_once() {
        let persons = MemoryScope::private_to("main", "alice");
        let visibility = Visibility::conversation("c1", ["discord:alice"]);
        assert!(!visibility.admits(persons.view()));
        let resolved = visibility.with_participants(["alice", "discord:alice"]);
        assert!(resolved.admits(persons.view()));
        assert_eq!(resolved, Visibility::conversation("c1", ["discord:alice", "alice"]));
        assert_eq!(Visibility::Shared.with_participants(["alice"]), Visibility::Shared);
    }
}

//! An in-memory [`ConversationLog`] for tests that need no database (dev-only, like this crate).

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;

use spacebot_core::{AgentId, ConversationId, ConversationLog, InboundMessage, MessageId, StoreError, StoredMessage};

/// A conversation log kept in memory, with the same semantics as the SQLite one.
#[derive(Default)]
pub struct MemoryLog {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    messages: Vec<StoredMessage>,
    inbound: Vec<InboundMessage>,
    handled: HashSet<(AgentId, MessageId)>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored message, in order.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.lock().messages.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has already failed; keep the data.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ConversationLog for MemoryLog {
    async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError> {
        let agent = message.agent.clone().ok_or_else(|| StoreError::new("inbound message has no agent", false))?;
        let mut state = self.lock();
        if state.inbound.iter().any(|m| m.id == message.id && m.agent.as_ref() == Some(&agent)) {
            return Ok(false);
        }
        state.inbound.push(message.clone());
        state.messages.push(StoredMessage::from_inbound(agent, message));
        Ok(true)
    }

    async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.messages.push(message.clone());
        for id in answers {
            state.handled.insert((message.agent.clone(), id.clone()));
        }
        Ok(())
    }

    async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for id in ids {
            state.handled.insert((agent.clone(), id.clone()));
        }
        Ok(())
    }

    async fn history(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let state = self.lock();
        let matching: Vec<_> =
            state.messages.iter().filter(|m| &m.agent == agent && &m.conversation == conversation).cloned().collect();
        let skip = matching.len().saturating_sub(limit);
        Ok(matching.into_iter().skip(skip).collect())
    }

    async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError> {
        let state = self.lock();
        Ok(state
            .inbound
            .iter()
            .filter(|m| m.agent.as_ref().is_some_and(|agent| !state.handled.contains(&(agent.clone(), m.id.clone()))))
            .cloned()
            .collect())
    }
}

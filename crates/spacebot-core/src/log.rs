//! The conversation log: the durable record of every conversation, and what keeps liveness
//! across restarts (inbound messages recorded before they are processed, replies recorded with
//! the handled marks of the messages they answer).

use std::sync::Arc;

use async_trait::async_trait;

use crate::chronicle::Chronicle;
use crate::cron::CronStore;
use crate::error::StoreError;
use crate::ids::{AgentId, ConversationId, MessageId};
use crate::message::{InboundMessage, StoredMessage};
use crate::runs::ProcessRuns;

/// The durable record of every conversation.
///
/// Inbound messages are recorded before they are processed (and before a platform is
/// acknowledged where it allows), replies as they are sent. An inbound message stays *unhandled*
/// until the turn that answers it records its reply or skip, so a crash mid-turn leaves it to be
/// processed again on restart, and a reply recorded with its handled marks is never sent twice.
#[async_trait]
pub trait ConversationLog: Send + Sync + 'static {
    /// Records an inbound message (its `agent` must be set). Returns `false` when a message with
    /// the same id was already recorded for that agent, so redelivered platform events are
    /// processed once.
    async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError>;

    /// Records an outbound message and marks `answers` handled, in one transaction.
    async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError>;

    /// Marks inbound messages handled without a reply (the agent skipped them).
    async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError>;

    /// The last `limit` messages of a conversation, oldest first.
    async fn history(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Inbound messages recorded but not yet handled, oldest first, for recovery at start.
    async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError>;

    /// The ids of one conversation's unhandled inbound messages, oldest first.
    ///
    /// A conversation starting up reads this to tell answered history from messages still on
    /// their way to it. The default filters [`unhandled`](Self::unhandled); a store with an index
    /// should answer from it, since this runs whenever a conversation starts.
    async fn unhandled_in(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Vec<MessageId>, StoreError> {
        Ok(self
            .unhandled()
            .await?
            .into_iter()
            .filter(|m| m.agent.as_ref() == Some(agent) && &m.conversation == conversation)
            .map(|m| m.id)
            .collect())
    }

    /// One conversation's unhandled inbound messages, oldest first: what a fleet member that
    /// takes the conversation over answers first. The default filters
    /// [`unhandled`](Self::unhandled).
    async fn unhandled_messages_in(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
    ) -> Result<Vec<InboundMessage>, StoreError> {
        Ok(self
            .unhandled()
            .await?
            .into_iter()
            .filter(|m| m.agent.as_ref() == Some(agent) && &m.conversation == conversation)
            .collect())
    }

    /// A setting kept for one conversation (its response mode, say), `None` when it was never
    /// set. The default keeps none.
    async fn conversation_setting(
        &self,
        _agent: &AgentId,
        _conversation: &ConversationId,
        _key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Keeps `value` as a setting of one conversation, replacing what was there. Returns `false`
    /// when the store keeps no settings (the default), so the caller can say it won't outlive
    /// the conversation's task.
    async fn set_conversation_setting(
        &self,
        _agent: &AgentId,
        _conversation: &ConversationId,
        _key: &str,
        _value: &str,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The checkpoints kept beside this log, if the store keeps any (chronicle compaction needs
    /// them). The default has none; a store with a chronicle returns a handle to it over the same
    /// data, so checkpoint spans and log sequence numbers always agree.
    fn chronicle(&self) -> Option<Arc<dyn Chronicle>> {
        None
    }

    /// The record of process runs kept beside this log, if the store keeps one; with it, a
    /// worker or branch cut short by a crash is recorded as failed at the next start and its
    /// conversation told. The default keeps none.
    fn process_runs(&self) -> Option<Arc<dyn ProcessRuns>> {
        None
    }

    /// The cron jobs and their runs kept beside this log, if the store keeps them; without
    /// them the daemon runs no cron jobs. The default keeps none.
    fn cron_store(&self) -> Option<Arc<dyn CronStore>> {
        None
    }
}

//! An in-memory [`ConversationLog`] with its [`Chronicle`] and [`ProcessRuns`], for tests that
//! need no database (dev-only, like this crate).
//!
//! Clones share the same data (the chronicle handle the log hands out is such a clone), and
//! messages are numbered over all conversations, as in the SQLite store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use spacebot_core::{
    AgentId, Checkpoint, CheckpointKind, Chronicle, ChronicleError, ConversationId, ConversationLog, InboundMessage,
    LogTail, LoggedMessage, MessageId, NewCheckpoint, NewRollup, Owed, ProcessId, ProcessRun, ProcessRuns, RecordedRun,
    Role, StoreError, StoredMessage, TerminalState,
};

/// A conversation log kept in memory, with the same semantics as the SQLite one.
#[derive(Default, Clone)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Every message with its sequence number (1, 2, ... over all conversations).
    messages: Vec<LoggedMessage>,
    inbound: Vec<InboundMessage>,
    handled: HashSet<(AgentId, MessageId)>,
    checkpoints: Vec<Checkpoint>,
    /// Failures `record_reply` will return, in order, for messages of the role given.
    reply_faults: Vec<ReplyFault>,
    /// Failures `mark_handled` will return, in order: whether each is transient.
    mark_faults: Vec<bool>,
    /// Process runs in the order started.
    runs: Vec<RecordedRun>,
    /// Conversation settings by agent, conversation and key.
    settings: HashMap<(AgentId, ConversationId, String), String>,
}

/// One failure `record_reply` returns (see [`MemoryLog::fail_replies`]).
#[derive(Debug, Clone, Copy)]
struct ReplyFault {
    role: Role,
    transient: bool,
}

impl State {
    fn push(&mut self, message: StoredMessage) {
        let seq = self.messages.len() as u64 + 1;
        self.messages.push(LoggedMessage::new(seq, message));
    }

    fn of<'a>(
        &'a self,
        agent: &'a AgentId,
        conversation: &'a ConversationId,
    ) -> impl DoubleEndedIterator<Item = &'a LoggedMessage> + 'a {
        self.messages.iter().filter(move |m| &m.message.agent == agent && &m.message.conversation == conversation)
    }

    fn checkpoints_of<'a>(
        &'a self,
        agent: &'a AgentId,
        conversation: &'a ConversationId,
    ) -> impl Iterator<Item = &'a Checkpoint> + 'a {
        self.checkpoints.iter().filter(move |c| &c.agent == agent && &c.conversation == conversation)
    }

    fn next_checkpoint(&self, agent: &AgentId, conversation: &ConversationId) -> u64 {
        self.checkpoints_of(agent, conversation).map(|c| c.seq).max().unwrap_or(0) + 1
    }

    fn covered_to(&self, agent: &AgentId, conversation: &ConversationId) -> u64 {
        self.checkpoints_of(agent, conversation).filter(|c| c.level == 0).map(|c| c.covers_to_seq).max().unwrap_or(0)
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored message, in order.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.lock().messages.iter().map(|m| m.message.clone()).collect()
    }

    /// Every stored message with its sequence number, in order.
    pub fn logged(&self) -> Vec<LoggedMessage> {
        self.lock().messages.clone()
    }

    /// Every checkpoint of every conversation, in commit order.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.lock().checkpoints.clone()
    }

    /// Makes the next `count` calls of `record_reply` for a message of `role` fail without
    /// recording anything, as a busy (`transient`) or broken database would. Other roles record
    /// normally meanwhile.
    pub fn fail_replies(&self, role: Role, count: usize, transient: bool) {
        self.lock().reply_faults.extend(std::iter::repeat_n(ReplyFault { role, transient }, count));
    }

    /// Makes the next `count` calls of `mark_handled` fail without marking anything.
    pub fn fail_marks(&self, count: usize, transient: bool) {
        self.lock().mark_faults.extend(std::iter::repeat_n(transient, count));
    }

    /// Every process run recorded, in the order started.
    pub fn runs(&self) -> Vec<RecordedRun> {
        self.lock().runs.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has already failed; keep the data.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ConversationLog for MemoryLog {
    async fn conversation_setting(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.lock().settings.get(&(agent.clone(), conversation.clone(), key.to_owned())).cloned())
    }

    async fn set_conversation_setting(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.lock().settings.insert((agent.clone(), conversation.clone(), key.to_owned()), value.to_owned());
        Ok(true)
    }

    async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError> {
        let agent = message.agent.clone().ok_or_else(|| StoreError::new("inbound message has no agent", false))?;
        let mut state = self.lock();
        if state.inbound.iter().any(|m| m.id == message.id && m.agent.as_ref() == Some(&agent)) {
            return Ok(false);
        }
        state.inbound.push(message.clone());
        state.push(StoredMessage::from_inbound(agent, message));
        Ok(true)
    }

    async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(at) = state.reply_faults.iter().position(|fault| fault.role == message.role) {
            let fault = state.reply_faults.remove(at);
            let kind = if fault.transient { "database is locked" } else { "disk I/O error" };
            return Err(StoreError::new(
                format!("can't record the {} message: {kind}", message.role.as_str()),
                fault.transient,
            ));
        }
        state.push(message.clone());
        for id in answers {
            state.handled.insert((message.agent.clone(), id.clone()));
        }
        Ok(())
    }

    async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.mark_faults.is_empty() {
            let transient = state.mark_faults.remove(0);
            return Err(StoreError::new("can't mark messages handled: database is locked", transient));
        }
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
        let matching: Vec<_> = state.of(agent, conversation).map(|m| m.message.clone()).collect();
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

    fn chronicle(&self) -> Option<Arc<dyn Chronicle>> {
        Some(Arc::new(self.clone()))
    }

    fn process_runs(&self) -> Option<Arc<dyn ProcessRuns>> {
        Some(Arc::new(self.clone()))
    }
}

fn ordered(mut runs: Vec<RecordedRun>) -> Vec<RecordedRun> {
    runs.sort_by(|a, b| (a.run.started_at, &a.run.process).cmp(&(b.run.started_at, &b.run.process)));
    runs
}

#[async_trait]
impl ProcessRuns for MemoryLog {
    async fn started(&self, run: &ProcessRun) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.runs.iter().any(|recorded| recorded.run.process == run.process) {
            state.runs.push(RecordedRun::new(run.clone()));
        }
        Ok(())
    }

    async fn ended(&self, process: &ProcessId, end: TerminalState, owed: Option<&Owed>) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(recorded) = state.runs.iter_mut().find(|r| &r.run.process == process && r.state.is_none()) else {
            return Ok(false);
        };
        recorded.state = Some(end);
        recorded.result = owed.map(|owed| owed.text().to_owned());
        recorded.owed = owed.cloned();
        Ok(true)
    }

    async fn unfinished(&self) -> Result<Vec<ProcessRun>, StoreError> {
        let runs = self.lock().runs.iter().filter(|r| r.state.is_none()).cloned().collect();
        Ok(ordered(runs).into_iter().map(|recorded| recorded.run).collect())
    }

    async fn owed(&self) -> Result<Vec<RecordedRun>, StoreError> {
        Ok(ordered(self.lock().runs.iter().filter(|r| r.owed.is_some()).cloned().collect()))
    }

    async fn told(&self, processes: &[ProcessId]) -> Result<(), StoreError> {
        for recorded in self.lock().runs.iter_mut().filter(|r| processes.contains(&r.run.process)) {
            recorded.owed = None;
        }
        Ok(())
    }

    async fn started_for(&self, agent: &AgentId, messages: &[MessageId]) -> Result<Vec<RecordedRun>, StoreError> {
        let state = self.lock();
        let found = state
            .runs
            .iter()
            .filter(|r| &r.run.agent == agent && r.run.origin.as_ref().is_some_and(|o| messages.contains(&o.id)))
            .cloned()
            .collect();
        Ok(ordered(found))
    }
}

#[async_trait]
impl Chronicle for MemoryLog {
    async fn checkpoints(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(self.lock().checkpoints_of(agent, conversation).cloned().collect())
    }

    async fn checkpoint(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.lock().checkpoints_of(agent, conversation).find(|c| c.seq == seq).cloned())
    }

    async fn commit(&self, new: NewCheckpoint) -> Result<Checkpoint, ChronicleError> {
        if new.kind == CheckpointKind::Rollup || new.covers.0 > new.covers.1 {
            return Err(StoreError::new("a level-0 checkpoint needs a span and a kind other than rollup", false).into());
        }
        let mut state = self.lock();
        let (agent, conversation) = (&new.agent, &new.conversation);
        let previous = state.covered_to(agent, conversation);
        let first = state.of(agent, conversation).map(|m| m.seq).find(|&seq| seq > previous);
        if first != Some(new.covers.0) {
            return Err(ChronicleError::Superseded(format!(
                "the span starts at {}, but the first message after {previous} is {first:?}",
                new.covers.0
            )));
        }
        if !state.of(agent, conversation).any(|m| m.seq == new.covers.1) {
            return Err(ChronicleError::Superseded(format!("the span ends at {}, which is no message", new.covers.1)));
        }
        let mut checkpoint =
            Checkpoint::new(agent.clone(), conversation.clone(), state.next_checkpoint(agent, conversation), new.kind);
        checkpoint.title = new.title;
        checkpoint.token_estimate = new.summary.len().div_ceil(4) as u64;
        checkpoint.summary = new.summary;
        checkpoint.unsummarized = new.unsummarized;
        (checkpoint.covers_from_seq, checkpoint.covers_to_seq) = new.covers;
        (checkpoint.covers_from_at, checkpoint.covers_to_at) = new.covers_at;
        checkpoint.message_count = new.message_count.max(1);
        checkpoint.model = new.model;
        checkpoint.created_at = std::time::SystemTime::now().into();
        state.checkpoints.push(checkpoint.clone());
        Ok(checkpoint)
    }

    async fn commit_rollup(&self, rollup: NewRollup) -> Result<Checkpoint, ChronicleError> {
        let mut state = self.lock();
        let (agent, conversation) = (&rollup.agent, &rollup.conversation);
        let (first, last) = rollup.sources;
        // The level-0 checkpoints numbered first..=last; rollups numbered among them are not sources.
        let sources: Vec<Checkpoint> = state
            .checkpoints_of(agent, conversation)
            .filter(|c| c.level == 0 && (first..=last).contains(&c.seq))
            .cloned()
            .collect();
        let usable = sources.iter().all(|c| c.rolled_up_into.is_none());
        let (Some(head), Some(tail)) = (sources.first(), sources.last()) else {
            return Err(ChronicleError::Superseded(format!("checkpoints {first}..{last} do not exist")));
        };
        if first >= last || head.seq != first || tail.seq != last || !usable {
            return Err(ChronicleError::Superseded(format!("checkpoints {first}..{last} can't be rolled up")));
        }
        let seq = state.next_checkpoint(agent, conversation);
        let mut checkpoint = Checkpoint::new(agent.clone(), conversation.clone(), seq, CheckpointKind::Rollup);
        checkpoint.title = rollup.title;
        checkpoint.token_estimate = rollup.summary.len().div_ceil(4) as u64;
        checkpoint.summary = rollup.summary;
        (checkpoint.covers_from_seq, checkpoint.covers_from_at) = (head.covers_from_seq, head.covers_from_at);
        (checkpoint.covers_to_seq, checkpoint.covers_to_at) = (tail.covers_to_seq, tail.covers_to_at);
        checkpoint.message_count = sources.iter().map(|c| c.message_count).sum();
        checkpoint.model = rollup.model;
        checkpoint.rolls_up = Some((first, last));
        checkpoint.created_at = std::time::SystemTime::now().into();
        for source in state.checkpoints.iter_mut() {
            if &source.agent == agent
                && &source.conversation == conversation
                && source.level == 0
                && (first..=last).contains(&source.seq)
            {
                source.rolled_up_into = Some(seq);
            }
        }
        state.checkpoints.push(checkpoint.clone());
        Ok(checkpoint)
    }

    async fn messages_after(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedMessage>, StoreError> {
        Ok(self.lock().of(agent, conversation).filter(|m| m.seq > after).take(limit).cloned().collect())
    }

    async fn latest_after(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedMessage>, StoreError> {
        let state = self.lock();
        let mut latest: Vec<LoggedMessage> =
            state.of(agent, conversation).rev().filter(|m| m.seq > after).take(limit).cloned().collect();
        latest.reverse();
        Ok(latest)
    }

    async fn tail(&self, agent: &AgentId, conversation: &ConversationId, after: u64) -> Result<LogTail, StoreError> {
        let state = self.lock();
        let seqs: Vec<u64> = state.of(agent, conversation).map(|m| m.seq).filter(|&seq| seq > after).collect();
        Ok(LogTail::new(seqs.len() as u64, seqs.last().copied()))
    }
}

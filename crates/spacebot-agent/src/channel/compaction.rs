//! Rolling compaction (see `context/compactor.rs`): background summaries of the oldest history
//! and the emergency truncation.

use std::sync::OnceLock;

use tokio::task::JoinError;
use tokio::time::Instant;

use spacebot_core::{ChatMessage, ChatRequest, ProcessChange, ProcessId, ProcessKind, Registration, TerminalState};

use crate::context::compactor::{self, Action, Boundary};
use crate::tools::{ChannelToolSet, channel_tools};

use super::{Channel, HistoryEntry};

/// A background summary in flight: its process id and the span of history it covers.
pub(super) struct Compaction {
    pub(super) id: ProcessId,
    pub(super) lifecycle: spacebot_core::Lifecycle,
    /// Its place in the runtime's process registry (ends it as cancelled if dropped unsettled).
    pub(super) _registration: Registration,
    /// The `seq` of the last message of the span (which starts at the head of the history).
    pub(super) last: u64,
    pub(super) messages: usize,
    pub(super) tokens: usize,
}

impl Channel {
    // ---------------------------------------------------------------------------------------
    // Compaction (see `compactor.rs`)

    /// Measures the context and compacts it if it is too full: a background summary at the
    /// lower thresholds, an immediate truncation at the emergency one.
    pub(super) fn maintain_context(&mut self) {
        if self.chronicle_mode().is_some() {
            // Chronicle maintenance reads the log; it runs where the channel can await it.
            self.context.chronicle_due = true;
            return;
        }
        let profile = self.profile.clone();
        let Some(model) = profile.model.as_ref() else { return };
        let window = model.context_window();
        let settings = &profile.settings.compaction;
        let slots = self.context.slots();
        let fixed = compactor::tokens(self.system_prompt().len()) + channel_tool_tokens(self.tool_set());
        let plan = compactor::plan(
            &slots,
            fixed,
            window,
            self.context.calibration,
            settings,
            self.context.compaction.is_some(),
        );
        match plan.action {
            Action::Keep => {}
            Action::Truncate { end } => self.truncate(end, plan.usage, window),
            Action::Summarize { end } => {
                let resting = self.context.summary_failed_at.is_some_and(|at| at.elapsed() < settings.retry_delay);
                if !resting {
                    self.start_summary(end, plan.usage, window);
                }
            }
        }
    }

    /// Removes `history[..end]` at once and leaves a marker; cancels a summary in flight.
    pub(super) fn truncate(&mut self, end: usize, usage: f64, window: usize) {
        self.cancel_compaction("the context was truncated first");
        self.context.head_epoch += 1;
        let id = ProcessId::generate();
        let removed: Vec<HistoryEntry> = self.context.history.drain(..end).collect();
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
        let mut entry = self.context.entry(Vec::new(), marker);
        // The marker stands where the removed messages were.
        entry.seq = removed.first().map_or(entry.seq, |first| first.seq);
        self.context.history.push_front(entry);
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
    pub(super) fn start_summary(&mut self, end: usize, usage: f64, window: usize) {
        let Some(model) = self.profile.model_for(ProcessKind::Compactor) else { return };
        let Some(last) = self.context.history.get(end.saturating_sub(1)).map(|entry| entry.seq) else { return };
        let span = self.context.history.range(..end);
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
        let budget = self.profile.background.clone();
        let task = self
            .context
            .summaries
            .spawn(async move { (task_id, compactor::summarize(model, budget, transcript, settings).await) });
        let lifecycle = spacebot_core::Lifecycle::new();
        let registration = self.procs.register_background(&self.announcer, &id, &lifecycle, &what, limit, task);
        self.context.compaction =
            Some(Compaction { id, lifecycle, _registration: registration, last, messages: end, tokens });
    }

    /// A summary task ended: on success its summary replaces the span it covers (messages added
    /// since stay); on failure the history stays as it is.
    pub(super) fn on_summary(&mut self, joined: Result<(ProcessId, Result<String, String>), JoinError>) {
        let current = self.context.compaction.as_ref().map(|compaction| compaction.id.clone());
        let outcome = match joined {
            Ok((id, outcome)) if Some(&id) == current.as_ref() => outcome,
            // A task aborted after it finished: its compaction was already settled as cancelled.
            Ok(_) => return,
            // Aborted tasks belong to compactions already settled as cancelled.
            Err(error) if error.is_cancelled() => return,
            // A panicked task is the current compaction's only if no other task is left.
            Err(_) if !self.context.summaries.is_empty() => return,
            Err(_) => Err("the summary task failed with an internal error".to_owned()),
        };
        let Some(compaction) = self.context.compaction.take() else { return };
        let covered = self.context.history.iter().take_while(|entry| entry.seq <= compaction.last).count();
        let outcome = outcome.and_then(|summary| {
            let message = compactor::summary_message(compaction.messages, &summary);
            let tokens = compactor::tokens(message.char_len());
            if tokens >= compaction.tokens {
                return Err(format!("the summary (~{tokens} tokens) was no shorter than what it summarised"));
            }
            if covered == 0
                || self.context.history.get(covered).is_some_and(|e| Boundary::of(&e.message) == Boundary::Inside)
            {
                return Err("the summarised messages changed meanwhile".to_owned());
            }
            Ok(message)
        });
        let (state, summary) = match outcome {
            Ok(message) => {
                let first = self.context.history.front().map_or(0, |entry| entry.seq);
                self.context.history.drain(..covered);
                self.context.head_epoch += 1;
                let mut entry = self.context.entry(Vec::new(), message);
                entry.seq = first;
                let text = format!(
                    "replaced {covered} messages (~{} tokens) with a summary (~{} tokens)",
                    compaction.tokens, entry.tokens
                );
                self.context.history.push_front(entry);
                self.context.summary_failed_at = None;
                (TerminalState::Done, text)
            }
            Err(reason) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %reason,
                    "background summary failed; the history stays as it is");
                self.context.summary_failed_at = Some(Instant::now());
                (TerminalState::Failed, reason)
            }
        };
        if let Some(terminal) = compaction.lifecycle.settle(state) {
            self.announcer.finished(&compaction.id, ProcessKind::Compactor, &terminal, &summary);
        }
    }

    /// Cancels the summary in flight, if any, leaving the history as it is.
    pub(super) fn cancel_compaction(&mut self, reason: &str) {
        let Some(compaction) = self.context.compaction.take() else { return };
        self.context.summaries.abort_all();
        if let Some(terminal) = compaction.lifecycle.settle(TerminalState::Cancelled) {
            self.announcer.finished(&compaction.id, ProcessKind::Compactor, &terminal, reason);
        }
    }
}

/// Estimated tokens of a whole request: what the compactor weighs against the provider's count.
pub(super) fn request_tokens(request: &ChatRequest, tools: ChannelToolSet) -> usize {
    let chars = request.system.len() + request.messages.iter().map(ChatMessage::char_len).sum::<usize>();
    compactor::tokens(chars) + channel_tool_tokens(tools)
}

/// Estimated tokens of the channel's tool definitions (the same in every request of one set).
pub(super) fn channel_tool_tokens(tools: ChannelToolSet) -> usize {
    static TOKENS: [OnceLock<usize>; ChannelToolSet::COUNT] = [const { OnceLock::new() }; ChannelToolSet::COUNT];
    let count = || {
        let chars: usize = channel_tools(tools)
            .iter()
            .map(|tool| tool.name.len() + tool.description.len() + tool.parameters.to_string().len())
            .sum();
        compactor::tokens(chars)
    };
    *TOKENS[tools.index()].get_or_init(count)
}

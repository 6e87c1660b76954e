//! Chronicle-mode context upkeep (see `context/chronicle.rs`): cutting checkpoints and rollups
//! in the background, committing them, trimming what they cover, and the emergency cut.

use std::sync::Arc;

use tokio::task::JoinError;
use tokio::time::Instant;

use spacebot_core::{
    Checkpoint, CheckpointKind, Chronicle, ProcessChange, ProcessId, ProcessKind, Registration, TerminalState,
};

use crate::context::chronicle::{self, ChronicleSettings, CutJob, JobOutcome, RollupJob};
use crate::context::compactor;

use super::compaction::channel_tool_tokens;
use super::{Channel, ContextState, HistoryEntry};

/// A chronicle job in flight: a checkpoint cut or a rollup.
pub(super) struct ChronicleJob {
    pub(super) id: ProcessId,
    pub(super) lifecycle: spacebot_core::Lifecycle,
    /// Its place in the runtime's process registry (ends it as cancelled if dropped unsettled).
    pub(super) _registration: Registration,
    /// [`CheckpointKind::Rollup`] for a rollup.
    pub(super) kind: CheckpointKind,
    /// `Channel::head_epoch` when it started: a cut is discarded if the history's head changed.
    pub(super) epoch: u64,
    /// `Channel::next_seq` when it started: history entries from there on stay whatever it covers.
    pub(super) live_end: u64,
}

impl Channel {
    // ---------------------------------------------------------------------------------------
    // The chronicle (see `chronicle.rs`)

    /// The chronicle, when this channel compacts in chronicle mode and its log keeps one.
    pub(super) fn chronicle_mode(&self) -> Option<Arc<dyn Chronicle>> {
        let mode = self.profile.settings.compaction.mode;
        self.context.chronicle.clone().filter(|_| mode == chronicle::CompactionMode::Chronicle)
    }

    /// Whether the model gets the `chronicle` tool: in chronicle mode, or once checkpoints exist.
    pub(super) fn chronicle_tools_on(&self) -> bool {
        self.context.chronicle.is_some() && (self.chronicle_mode().is_some() || !self.context.checkpoints.is_empty())
    }

    /// Drops from the history what the checkpoints cover, up to `live_end` (entries added since a
    /// cut started stay), keeping `min_keep` messages and every tool call with its results.
    /// Returns how many messages went.
    pub(super) fn trim_covered(&mut self, live_end: u64) -> usize {
        let covered = self.context.covered_to();
        let Some(limit) =
            self.context.boundaries.iter().rev().find(|&&(_, durable)| durable <= covered).map(|&(end, _)| end)
        else {
            return 0;
        };
        let limit = limit.min(live_end);
        let count = self.context.history.iter().take_while(|entry| entry.seq < limit).count();
        let keep = self.profile.settings.compaction.chronicle.min_keep;
        let Some(end) = compactor::safe_end(&self.context.slots(), count, keep) else { return 0 };
        self.context.history.drain(..end);
        self.context.prune_boundaries();
        end
    }

    /// Chronicle maintenance, when due: notes where the history and the log line up, truncates at
    /// the emergency threshold (recording the span it drops), else cuts a checkpoint or starts a
    /// rollup in the background when one is called for.
    pub(super) async fn maintain_chronicle(&mut self) {
        if !std::mem::take(&mut self.context.chronicle_due) {
            return;
        }
        let Some(chronicle) = self.chronicle_mode() else { return };
        let profile = self.profile.clone();
        let Some(model) = profile.model.as_ref() else { return };
        let (agent, conversation) = (self.ctx.agent.clone(), self.ctx.conversation.clone());
        let covered = self.context.covered_to();
        let tail = match chronicle.tail(&agent, &conversation, covered).await {
            Ok(tail) => tail,
            Err(error) => {
                tracing::warn!(%agent, %conversation, %error, "can't count the messages after the last checkpoint");
                return;
            }
        };
        if let Some(newest) = tail.newest {
            self.context.note_boundary(newest);
        }
        let settings = &profile.settings.compaction;
        let window = model.context_window();
        let slots = self.context.slots();
        let fixed = compactor::tokens(self.system_prompt().len()) + channel_tool_tokens(self.tool_set());
        // Planned as if a summary were in flight: only the emergency truncation can come of it.
        let plan = compactor::plan(&slots, fixed, window, self.context.calibration, settings, true);
        if plan.usage >= settings.emergency {
            let keep = settings.chronicle.min_keep;
            if let Some(end) = compactor::cut_keeping(&slots, settings.emergency_share, keep) {
                self.chronicle_emergency(&chronicle, end, plan.usage, window).await;
                return;
            }
        }
        let resting = self.context.chronicle_failed_at.is_some_and(|at| at.elapsed() < settings.retry_delay);
        if self.context.chronicle_job.is_some() || resting {
            return;
        }
        let live: usize = slots.iter().map(|slot| slot.tokens).sum();
        let pressure = chronicle::Pressure {
            uncovered: tail.count,
            has_checkpoints: self.context.checkpoints.iter().any(|c| c.level == 0),
            usage: plan.usage,
            live_tokens: (live as f64 * self.context.calibration.max(1.0)).ceil() as usize,
            window,
        };
        match chronicle::trigger(settings, pressure) {
            Some(kind) => self.start_cut(chronicle, kind, tail.count, plan.usage, window),
            None => self.start_rollup(),
        }
    }

    /// Starts cutting a checkpoint of the uncovered messages in the background.
    pub(super) fn start_cut(
        &mut self,
        chronicle: Arc<dyn Chronicle>,
        kind: CheckpointKind,
        uncovered: u64,
        usage: f64,
        window: usize,
    ) {
        let Some(model) = self.profile.model_for(ProcessKind::Compactor) else { return };
        let settings = self.profile.settings.compaction.clone();
        let messages = uncovered.min(settings.chronicle.max_messages_per_checkpoint as u64);
        let description = format!(
            "cutting a{} {kind} checkpoint of {messages} logged messages in the background: the context is at \
             {:.0}% of {window} tokens, {uncovered} messages are not in a checkpoint yet",
            if kind == CheckpointKind::Interval { "n" } else { "" },
            usage * 100.0
        );
        let id = ProcessId::generate();
        tracing::info!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %kind, uncovered, usage,
            "cutting a chronicle checkpoint");
        let what = description.clone();
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        let level0: Vec<&Checkpoint> = self.context.checkpoints.iter().filter(|c| c.level == 0).collect();
        let narrative =
            level0[level0.len().saturating_sub(chronicle::NARRATIVE)..].iter().map(|c| (*c).clone()).collect();
        let job = CutJob {
            chronicle,
            log: self.ctx.log.clone(),
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            kind,
            after: self.context.covered_to(),
            narrative,
            model,
            budget: self.profile.background.clone(),
            settings,
        };
        self.spawn_chronicle_job(id, &what, kind, job.run());
    }

    /// Runs a chronicle job as the channel's one background chronicle task, registered with the
    /// runtime's process registry.
    pub(super) fn spawn_chronicle_job(
        &mut self,
        id: ProcessId,
        description: &str,
        kind: CheckpointKind,
        job: impl Future<Output = JobOutcome> + Send + 'static,
    ) {
        let task_id = id.clone();
        let task = self.context.chronicle_jobs.spawn(async move { (task_id, job.await) });
        let lifecycle = spacebot_core::Lifecycle::new();
        let limit = self.profile.settings.compaction.summary_timeout;
        let registration = self.procs.register_background(&self.announcer, &id, &lifecycle, description, limit, task);
        self.context.chronicle_job = Some(ChronicleJob {
            id,
            lifecycle,
            _registration: registration,
            kind,
            epoch: self.context.head_epoch,
            live_end: self.context.next_seq,
        });
    }

    /// Starts a rollup in the background when enough checkpoints wait for one.
    pub(super) fn start_rollup(&mut self) {
        let settings = self.profile.settings.compaction.clone();
        let Some(sources) = chronicle::rollup_sources(&self.context.checkpoints, &settings.chronicle) else { return };
        let Some(model) = self.profile.model_for(ProcessKind::Compactor) else { return };
        let (Some(first), Some(last)) = (sources.first().map(|c| c.seq), sources.last().map(|c| c.seq)) else { return };
        let id = ProcessId::generate();
        let description =
            format!("rolling up checkpoints #{first}-#{last} ({} checkpoints) in the background", sources.len());
        let what = description.clone();
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        let job = RollupJob {
            agent: self.ctx.agent.clone(),
            conversation: self.ctx.conversation.clone(),
            sources,
            model,
            budget: self.profile.background.clone(),
            settings,
        };
        self.spawn_chronicle_job(id, &what, CheckpointKind::Rollup, job.run());
    }

    /// A chronicle job ended: commit what it drafted (a cut only if the history's head is where
    /// it was), then trim what the checkpoints now cover.
    pub(super) async fn on_chronicle_job(&mut self, joined: Result<(ProcessId, JobOutcome), JoinError>) {
        let current = self.context.chronicle_job.as_ref().map(|job| job.id.clone());
        let outcome = match joined {
            Ok((id, outcome)) if Some(&id) == current.as_ref() => outcome,
            // A task aborted after it finished: its job was already settled as cancelled.
            Ok(_) => return,
            Err(error) if error.is_cancelled() => return,
            Err(_) if !self.context.chronicle_jobs.is_empty() => return,
            Err(_) => JobOutcome::Nothing("the chronicle task failed with an internal error".to_owned()),
        };
        let (Some(job), Some(chronicle)) = (self.context.chronicle_job.take(), self.context.chronicle.clone()) else {
            return;
        };
        let (state, summary) = match outcome {
            JobOutcome::Nothing(reason) => {
                self.context.chronicle_failed_at = Some(Instant::now());
                (TerminalState::Failed, reason)
            }
            JobOutcome::Cut(_) if job.epoch != self.context.head_epoch => (
                TerminalState::Cancelled,
                "discarded: the history changed (truncation or /new) while the checkpoint was written".to_owned(),
            ),
            JobOutcome::Cut(draft) => match chronicle.commit(draft).await {
                Ok(checkpoint) => {
                    let text = format!(
                        "committed {} checkpoint #{} \"{}\" covering {} logged messages{}",
                        checkpoint.kind,
                        checkpoint.seq,
                        checkpoint.title,
                        checkpoint.message_count,
                        if checkpoint.unsummarized { " (unsummarized: the summary failed)" } else { "" }
                    );
                    self.context.add_checkpoint(checkpoint, &self.profile.settings.compaction.chronicle);
                    let trimmed = self.trim_covered(job.live_end);
                    self.context.chronicle_failed_at = None;
                    (TerminalState::Done, format!("{text}; {trimmed} messages left the live context"))
                }
                Err(error) if error.is_superseded() => {
                    self.superseded(&chronicle).await;
                    (TerminalState::Cancelled, format!("discarded: {error}"))
                }
                Err(error) => {
                    self.context.chronicle_failed_at = Some(Instant::now());
                    (TerminalState::Failed, format!("can't commit the checkpoint: {error}"))
                }
            },
            JobOutcome::Rollup(draft) => match chronicle.commit_rollup(draft).await {
                Ok(rollup) => {
                    let text = format!(
                        "committed rollup #{} \"{}\" of checkpoints #{}",
                        rollup.seq,
                        rollup.title,
                        rollup.rolls_up.map(|(first, last)| format!("{first}-#{last}")).unwrap_or_default()
                    );
                    self.context.add_checkpoint(rollup, &self.profile.settings.compaction.chronicle);
                    (TerminalState::Done, text)
                }
                Err(error) if error.is_superseded() => {
                    self.superseded(&chronicle).await;
                    (TerminalState::Cancelled, format!("discarded: {error}"))
                }
                Err(error) => {
                    self.context.chronicle_failed_at = Some(Instant::now());
                    (TerminalState::Failed, format!("can't commit the rollup: {error}"))
                }
            },
        };
        if state != TerminalState::Done {
            tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, kind = %job.kind, %summary,
                "chronicle job committed nothing");
        }
        if let Some(terminal) = job.lifecycle.settle(state) {
            self.announcer.finished(&job.id, ProcessKind::Compactor, &terminal, &summary);
        }
        // More may be due: the next span of a long log, or a rollup.
        self.context.chronicle_due = true;
    }

    /// The store refused a commit as superseded: this channel's view of the checkpoints is not the
    /// store's. Reads them again, and waits the retry delay before the next job, like after a
    /// failure: a refusal that repeats must cost one job per delay, never a loop.
    async fn superseded(&mut self, chronicle: &Arc<dyn Chronicle>) {
        self.context.chronicle_failed_at = Some(Instant::now());
        // The summary it carried was paid for and thrown away: that counts against the breaker.
        self.profile.background.record(false, "a chronicle commit was refused as superseded");
        match chronicle.checkpoints(&self.ctx.agent, &self.ctx.conversation).await {
            Ok(checkpoints) => {
                self.context.set_checkpoints(checkpoints, &self.profile.settings.compaction.chronicle);
                self.context.prune_boundaries();
            }
            Err(error) => tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't read the conversation's checkpoints again after a refused commit"),
        }
    }

    /// The emergency: drops `history[..end]` at once and records the logged messages among them
    /// that no checkpoint covers as an unsummarized emergency checkpoint (no model call).
    pub(super) async fn chronicle_emergency(
        &mut self,
        chronicle: &Arc<dyn Chronicle>,
        end: usize,
        usage: f64,
        window: usize,
    ) {
        self.cancel_chronicle_job("the context was truncated first");
        self.context.head_epoch += 1;
        let id = ProcessId::generate();
        let removed: Vec<HistoryEntry> = self.context.history.drain(..end).collect();
        let tokens: usize = removed.iter().map(|entry| entry.tokens).sum();
        let description = format!(
            "truncating the oldest {} messages (~{tokens} tokens) at once and recording them as an emergency \
             checkpoint: the context is at {:.0}% of {window} tokens",
            removed.len(),
            usage * 100.0
        );
        tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, messages = removed.len(),
            tokens, usage, "context nearly full; truncating the oldest history into an emergency checkpoint");
        self.announcer.publish(&id, ProcessKind::Compactor, ProcessChange::Started { description });
        // The logged messages among those removed end where the last boundary before the cut says.
        let cut_at = self.context.history.front().map_or(self.context.next_seq, |entry| entry.seq);
        let durable_end = self
            .context
            .boundaries
            .iter()
            .rev()
            .find(|&&(live_end, _)| live_end <= cut_at)
            .map(|&(_, durable)| durable);
        let covered = self.context.covered_to();
        let recorded = match durable_end {
            Some(until) if until > covered => self.commit_emergency(chronicle, covered, until).await.map(Some),
            Some(_) => Ok(None),
            None => Err("no logged message was among them".to_owned()),
        };
        let summary = match recorded {
            Ok(Some(checkpoint)) => {
                let text = format!(
                    "removed {} messages; emergency checkpoint #{} records the {} logged messages among them",
                    removed.len(),
                    checkpoint.seq,
                    checkpoint.message_count
                );
                self.context.add_checkpoint(checkpoint, &self.profile.settings.compaction.chronicle);
                text
            }
            Ok(None) => format!("removed {} messages, all in checkpoints already", removed.len()),
            Err(reason) => {
                // Without a checkpoint, a marker says that something went.
                let marker = compactor::truncation_marker(removed.len());
                let mut entry = self.context.entry(Vec::new(), marker);
                entry.seq = removed.first().map_or(entry.seq, |first| first.seq);
                self.context.history.push_front(entry);
                format!("removed {} messages; no checkpoint records them: {reason}", removed.len())
            }
        };
        self.context.prune_boundaries();
        let lifecycle = spacebot_core::Lifecycle::new();
        if let Some(terminal) = lifecycle.settle(TerminalState::Done) {
            self.announcer.finished(&id, ProcessKind::Compactor, &terminal, &summary);
        }
    }

    /// Commits the emergency checkpoint of the answered logged messages after `covered` up to
    /// `until`.
    pub(super) async fn commit_emergency(
        &self,
        chronicle: &Arc<dyn Chronicle>,
        covered: u64,
        until: u64,
    ) -> Result<Checkpoint, String> {
        let limit = self.profile.settings.compaction.chronicle.max_messages_per_checkpoint;
        let (agent, conversation) = (&self.ctx.agent, &self.ctx.conversation);
        let mut messages =
            chronicle::answered_after(chronicle, &self.ctx.log, agent, conversation, covered, limit).await?;
        messages.retain(|logged| logged.seq <= until);
        let notice = chronicle::unsummarized_notice(
            messages.len(),
            "they were dropped at once to keep the context within the model's window",
        );
        let title = format!("Unsummarized: {}", chronicle::span_title(&messages));
        let draft = spacebot_core::NewCheckpoint::over(CheckpointKind::Emergency, &messages, title, notice)
            .ok_or_else(|| "no answered logged message was among them".to_owned())?
            .unsummarized();
        chronicle.commit(draft).await.map_err(|error| error.to_string())
    }

    /// Cancels the chronicle job in flight, if any, committing nothing.
    pub(super) fn cancel_chronicle_job(&mut self, reason: &str) {
        let Some(job) = self.context.chronicle_job.take() else { return };
        self.context.chronicle_jobs.abort_all();
        if let Some(terminal) = job.lifecycle.settle(TerminalState::Cancelled) {
            self.announcer.finished(&job.id, ProcessKind::Compactor, &terminal, reason);
        }
    }
}

/// The chronicle part of the context state: what the checkpoints cover and where the history
/// lines up with the log.
impl ContextState {
    /// The last logged message the level-0 checkpoints cover (0: none).
    pub(super) fn covered_to(&self) -> u64 {
        self.checkpoints.iter().filter(|c| c.level == 0).map(|c| c.covers_to_seq).max().unwrap_or(0)
    }

    pub(super) fn set_checkpoints(&mut self, checkpoints: Vec<Checkpoint>, settings: &ChronicleSettings) {
        self.checkpoints = checkpoints;
        self.chronicle_view = chronicle::render_view(&self.checkpoints, settings);
    }

    /// Adds a committed checkpoint (marking a rollup's sources) and renders the view again.
    pub(super) fn add_checkpoint(&mut self, checkpoint: Checkpoint, settings: &ChronicleSettings) {
        let mut checkpoints = std::mem::take(&mut self.checkpoints);
        if let Some((first, last)) = checkpoint.rolls_up {
            for source in checkpoints.iter_mut().filter(|c| c.level == 0 && (first..=last).contains(&c.seq)) {
                source.rolled_up_into = Some(checkpoint.seq);
            }
        }
        checkpoints.push(checkpoint);
        self.set_checkpoints(checkpoints, settings);
    }

    /// Notes that the history so far comes from logged messages up to `durable`.
    pub(super) fn note_boundary(&mut self, durable: u64) {
        let live_end = self.next_seq;
        if let Some(last) = self.boundaries.back_mut()
            && last.1 == durable
        {
            last.0 = live_end;
            return;
        }
        self.boundaries.push_back((live_end, durable));
    }

    /// Forgets boundaries no trim can use any more: before the history's head, or covered
    /// already (the newest covered one stays, it is where a trim may go).
    pub(super) fn prune_boundaries(&mut self) {
        let head = self.history.front().map_or(self.next_seq, |entry| entry.seq);
        let covered = self.covered_to();
        while self.boundaries.len() > 1
            && self.boundaries.get(1).is_some_and(|&(live_end, durable)| live_end <= head || durable <= covered)
        {
            self.boundaries.pop_front();
        }
    }
}

//! Branches and workers: starting them from the channel tools, their reports and ends, and
//! the relay turns that tell people what they found.

use std::sync::Arc;

use tokio::task::JoinError;
use tokio::time::Instant;

use spacebot_core::{
    ChatMessage, InboundMessage, Inbox, Owed, ProcessChange, ProcessId, ProcessKind, SupervisorEnd, TerminalState,
};

use crate::branch::{BranchTask, DELEGATED_PREFIX};
use crate::context::chronicle::BranchChronicleTool;
use crate::memory_tools::memory_tools;
use crate::processes::{Completion, Entry, ProcessExit, Report, WorkerLinks, one_line, supervise};
use crate::prompt::relay_message;
use crate::tools::{BranchArgs, CancelArgs, RouteArgs, SpawnWorkerArgs};
use crate::worker::WorkerTask;

use super::restart::stopped_notice;
use super::turn::{TurnInput, TurnKind};
use super::{Channel, FINAL_SEQUENCE};

impl Channel {
    // ---------------------------------------------------------------------------------------
    // Branches and workers

    /// The tools of a new branch: the agent's branch tools, then the memory tools bound to this
    /// conversation as it stands (its participants so far) and to the person whose message the
    /// turn answers, when it answers one person's.
    pub(super) fn branch_tools(&self, input: &TurnInput) -> Vec<std::sync::Arc<dyn spacebot_core::Tool>> {
        let mut tools = self.profile.branch_tools.clone();
        if let Some(memory) = &self.profile.memory {
            let mut context = self.memory_context();
            if input.kind == TurnKind::User && input.answers.len() == 1 {
                context = context.with_speaker(input.target.participant());
            }
            tools.extend(memory_tools(memory.clone(), context));
        }
        if let Some(chronicle) = self.context.chronicle.clone().filter(|_| self.chronicle_tools_on()) {
            tools.push(Arc::new(BranchChronicleTool {
                chronicle,
                agent: self.ctx.agent.clone(),
                conversation: self.ctx.conversation.clone(),
            }));
        }
        tools
    }

    pub(super) fn branch_tool(&mut self, input: &TurnInput, args: BranchArgs, user: &ChatMessage) -> String {
        let settings = &self.profile.settings;
        if self.procs.count(ProcessKind::Branch) >= settings.max_branches {
            return format!(
                "Not started: {} branches are already running, the limit. Wait for one to finish or cancel one.",
                settings.max_branches
            );
        }
        let Some(model) = self.profile.model_for(ProcessKind::Branch) else {
            return "Not started: no model is configured for branches.".to_owned();
        };
        let id = ProcessId::generate();
        // Only the channel's model is known to see images; a branch may run on another.
        let fork: Vec<ChatMessage> =
            self.context.messages().chain([user.clone()]).map(ChatMessage::without_images).collect();
        let task = BranchTask {
            id: id.clone(),
            task: args.task.clone(),
            fork,
            model,
            tools: self.branch_tools(input),
            scrubber: self.ctx.outbox.scrubber().clone(),
            budget: settings.branch_model_calls,
            reports: self.procs.reports_tx.clone(),
        };
        let lifecycle = spacebot_core::Lifecycle::new();
        let cancel = self.ctx.shutdown.child_token();
        self.announcer.publish(&id, ProcessKind::Branch, ProcessChange::Started { description: args.task.clone() });
        let future = supervise(
            id.clone(),
            ProcessKind::Branch,
            lifecycle.clone(),
            cancel.clone(),
            settings.branch_timeout,
            self.announcer.clone(),
            true,
            task.run(),
        );
        let entry = Entry {
            kind: ProcessKind::Branch,
            description: args.task,
            status: "thinking".to_owned(),
            lifecycle,
            cancel,
            cancel_reason: None,
            relay: true,
            origin: input.target.clone(),
            worker: None,
            idle: false,
            results: 0,
            stopping: false,
        };
        self.procs.spawn(id.clone(), entry, future, &self.announcer, settings.branch_timeout);
        self.turn_claimed.insert(id.clone());
        format!("Branch {id} started; its conclusion will arrive as a background result. Tell the user if useful.")
    }

    pub(super) fn spawn_worker_tool(&mut self, input: &TurnInput, args: SpawnWorkerArgs) -> String {
        match self.spawn_worker(ProcessId::generate(), args.task, args.interactive, input.target.clone()) {
            Ok(id) => format!(
                "Worker {id} started{}; its outcome will arrive as a background result. Tell the user it is on it.",
                if args.interactive { " (interactive: send follow-ups with `route`)" } else { "" }
            ),
            Err(reason) => format!("Not started: {reason}"),
        }
    }

    /// Starts a worker, unless the limit is reached or a live worker does the same task.
    pub(super) fn spawn_worker(
        &mut self,
        id: ProcessId,
        task: String,
        interactive: bool,
        origin: Arc<InboundMessage>,
    ) -> Result<ProcessId, String> {
        let settings = &self.profile.settings;
        if let Some(existing) = self.procs.duplicate_worker(&task) {
            return Err(format!("worker {existing} is already doing this task."));
        }
        if self.procs.count(ProcessKind::Worker) >= settings.max_workers {
            return Err(format!(
                "{} workers are already running, the limit. Wait for one to finish or cancel one.",
                settings.max_workers
            ));
        }
        let model = self.profile.model_for(ProcessKind::Worker).ok_or("no model is configured for workers.")?;
        let mut tools = self.profile.worker_tools()?;
        // Files a worker sends go to the conversation of the message that started it.
        if let Some(files) = self.file_sender(origin.clone())
            && !tools.iter().any(|tool| tool.name() == crate::task_tools::SEND_FILE_TOOL)
        {
            tools.push(Arc::new(crate::task_tools::SendFile(files)));
        }
        let (context_tx, context_rx) = tokio::sync::mpsc::unbounded_channel();
        let (follow_ups, follow_ups_rx) = if interactive {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let worker = WorkerTask {
            id: id.clone(),
            task: task.clone(),
            model,
            tools,
            scrubber: self.ctx.outbox.scrubber().clone(),
            budget: settings.worker_model_calls,
            reports: self.procs.reports_tx.clone(),
            follow_ups: follow_ups_rx,
            context: context_rx,
            announcer: self.announcer.clone(),
        };
        let lifecycle = spacebot_core::Lifecycle::new();
        let cancel = self.ctx.shutdown.child_token();
        self.announcer.publish(&id, ProcessKind::Worker, ProcessChange::Started { description: task.clone() });
        let future = supervise(
            id.clone(),
            ProcessKind::Worker,
            lifecycle.clone(),
            cancel.clone(),
            settings.worker_timeout,
            self.announcer.clone(),
            !interactive,
            worker.run(),
        );
        let entry = Entry {
            kind: ProcessKind::Worker,
            description: task,
            status: "starting".to_owned(),
            lifecycle,
            cancel,
            cancel_reason: None,
            relay: true,
            origin,
            worker: Some(WorkerLinks { follow_ups, context: context_tx }),
            idle: false,
            results: 0,
            stopping: false,
        };
        self.procs.spawn(id.clone(), entry, future, &self.announcer, settings.worker_timeout);
        self.turn_claimed.insert(id.clone());
        Ok(id)
    }

    pub(super) fn route_tool(&mut self, args: RouteArgs) -> String {
        let Some(id) = self.procs.find(&args.worker_id) else {
            return format!("No active worker has the id `{}`; it may have finished.", args.worker_id);
        };
        let Some(entry) = self.procs.entries.get_mut(&id) else { return "That worker just finished.".to_owned() };
        let Some(links) = &entry.worker else {
            return format!("`{id}` is a branch; only workers accept messages.");
        };
        match (&links.follow_ups, entry.idle) {
            (Some(follow_ups), true) => {
                if follow_ups.send(args.message).is_err() {
                    return "That worker just finished.".to_owned();
                }
                entry.idle = false;
                entry.status = "working on a follow-up".to_owned();
                format!("Sent to worker {id} as a follow-up; its answer will arrive as a background result.")
            }
            _ => {
                if links.context.send(args.message).is_err() {
                    return "That worker just finished.".to_owned();
                }
                format!("Passed to worker {id}; it will see it before its next step.")
            }
        }
    }

    pub(super) fn cancel_tool(&mut self, args: CancelArgs) -> String {
        let Some(id) = self.procs.find(&args.process_id) else {
            return format!("No active branch or worker has the id `{}`; it may have finished.", args.process_id);
        };
        let reason = args.reason.unwrap_or_else(|| "cancelled by the agent".to_owned());
        self.procs.cancel(&id, &reason, true);
        format!("Cancelling {id}; its end will arrive as a background result.")
    }

    /// Applies the reports processes sent since the last look.
    pub(super) fn drain_reports(&mut self) {
        while let Ok(report) = self.procs.reports.try_recv() {
            self.on_report(report);
        }
    }

    pub(super) fn on_report(&mut self, report: Report) {
        match report {
            Report::Status { id, text } => {
                if let Some(entry) = self.procs.entries.get_mut(&id) {
                    entry.status = text;
                }
            }
            Report::Idle { id, result, success } => {
                let Some(entry) = self.procs.entries.get_mut(&id) else { return };
                entry.idle = true;
                entry.status = "idle".to_owned();
                entry.results += 1;
                let completion = Completion {
                    id: id.clone(),
                    kind: entry.kind,
                    state: None,
                    success,
                    result,
                    origin: entry.origin.clone(),
                    sequence: entry.results,
                };
                if entry.relay {
                    self.queue_completion(completion);
                }
            }
            Report::Delegate { branch, worker, task } => {
                let origin =
                    self.procs.entries.get(&branch).map(|e| e.origin.clone()).or_else(|| self.last_origin.clone());
                let Some(origin) = origin else { return };
                if let Err(reason) = self.spawn_worker(worker, task, false, origin.clone()) {
                    self.queue_completion(Completion {
                        id: branch,
                        kind: ProcessKind::Branch,
                        state: Some(TerminalState::Failed),
                        success: false,
                        result: format!("tried to delegate its task to a worker, but {reason}"),
                        origin,
                        sequence: FINAL_SEQUENCE - 1,
                    });
                }
            }
        }
    }

    /// Reaps one process task: removes it from the table and queues its result for relay.
    pub(super) fn on_exit(&mut self, joined: Result<(tokio::task::Id, ProcessExit), JoinError>) {
        let (id, terminal, result) = match joined {
            Ok((task_id, exit)) => {
                self.procs.task_ids.remove(&task_id);
                (exit.id, exit.terminal.map(|t| t.state()), exit.result)
            }
            Err(error) => {
                // Aborted at shutdown (after its cancel grace) or, despite the wrapper, panicked.
                let Some(id) = self.procs.task_ids.remove(&error.id()) else { return };
                let state = if error.is_cancelled() { TerminalState::Cancelled } else { TerminalState::Failed };
                let Some(entry) = self.procs.entries.get(&id) else { return };
                let reason = if error.is_cancelled() { "aborted" } else { "failed with an internal error" };
                let terminal = entry.lifecycle.settle(state);
                if let Some(terminal) = &terminal {
                    self.announcer.finished(&id, entry.kind, terminal, reason);
                }
                (id, terminal.map(|t| t.state()), reason.to_owned())
            }
        };
        let Some(entry) = self.procs.entries.get(&id) else { return };
        let Some(state) = terminal.or_else(|| entry.lifecycle.terminal()) else {
            self.procs.remove(&id);
            return;
        };
        let result = match (state, &entry.cancel_reason) {
            (TerminalState::Cancelled, Some(reason)) => format!("cancelled: {reason}"),
            _ => result,
        };
        let delegated = entry.kind == ProcessKind::Branch && result.starts_with(DELEGATED_PREFIX);
        // An interactive worker let go after its last result has nothing new to say.
        let said_all = entry.results > 0 && state == TerminalState::Done;
        let relay = entry.relay && !delegated && !said_all;
        // What the conversation is owed is recorded with the end, so a restart before it is told
        // still tells it: the result, or (stopped by a shutdown) a notice after the restart.
        let owed = if relay || (entry.stopping && !delegated && !said_all && state == TerminalState::Done) {
            Some(Owed::Result(self.ctx.outbox.scrubber().scrub_owned(result.clone())))
        } else if entry.stopping && !delegated && !said_all {
            Some(Owed::Notice(stopped_notice(entry.kind, &entry.description)))
        } else {
            None
        };
        if let Some(owed) = owed {
            self.procs.set_owed(&id, owed);
        }
        let Some(entry) = self.procs.remove(&id) else { return };
        if !relay {
            return;
        }
        self.queue_completion(Completion {
            id,
            kind: entry.kind,
            state: Some(state),
            success: state.is_success(),
            result,
            origin: entry.origin,
            sequence: FINAL_SEQUENCE,
        });
    }

    /// A supervisor (the cortex) ended a process that outlived its limits: it is settled and
    /// announced already; drop it from the table and relay the failure. Its task was aborted and
    /// is reaped (as unknown) whenever it actually stops.
    pub(super) fn on_supervisor_end(&mut self, end: SupervisorEnd) {
        // Background context work: settled already; drop the job so its result is ignored.
        if self.context.compaction.as_ref().is_some_and(|job| job.id == end.process) {
            self.context.compaction = None;
            self.context.summaries.abort_all();
            self.context.summary_failed_at = Some(Instant::now());
            return;
        }
        if self.context.chronicle_job.as_ref().is_some_and(|job| job.id == end.process) {
            self.context.chronicle_job = None;
            self.context.chronicle_jobs.abort_all();
            self.context.chronicle_failed_at = Some(Instant::now());
            return;
        }
        if self.procs.entries.get(&end.process).is_some_and(|entry| entry.relay) {
            let owed = Owed::Result(self.ctx.outbox.scrubber().scrub_owned(end.reason.clone()));
            self.procs.set_owed(&end.process, owed);
        }
        let Some(entry) = self.procs.remove(&end.process) else { return };
        if !entry.relay {
            return;
        }
        self.queue_completion(Completion {
            id: end.process,
            kind: entry.kind,
            state: Some(end.state),
            success: false,
            result: end.reason,
            origin: entry.origin,
            sequence: FINAL_SEQUENCE,
        });
    }

    /// Queues a result for the next relay turn, or, past the relay cap, notes it in history.
    pub(super) fn queue_completion(&mut self, completion: Completion) {
        if self.pending.iter().any(|p| p.id == completion.id && p.sequence == completion.sequence) {
            tracing::debug!(process = %completion.id, "duplicate completion ignored");
            return;
        }
        if self.relays_since_user >= self.profile.settings.max_relays_per_message || self.paused {
            self.note_silently(&completion);
            return;
        }
        self.pending.push_back(completion);
        if self.relay_at.is_none() {
            self.relay_at = Some(Instant::now() + self.profile.settings.relay_window);
        }
    }

    pub(super) fn note_silently(&mut self, completion: &Completion) {
        self.told(completion);
        let note = ChatMessage::assistant(format!(
            "[background {} {} {}]: {}",
            completion.kind,
            completion.id,
            completion.label(),
            one_line(&completion.result, 2000)
        ));
        self.context.push(Vec::new(), note);
        self.maintain_context();
    }

    /// Starts the relay turn for the results gathered in the merge window.
    pub(super) async fn relay(&mut self, inbox: &Inbox) {
        self.relay_at = None;
        let results: Vec<Completion> = self.pending.drain(..).collect();
        let Some(first) = results.first() else { return };
        if self.relays_since_user >= self.profile.settings.max_relays_per_message || self.paused {
            for completion in &results {
                self.note_silently(completion);
            }
            return;
        }
        self.relays_since_user += 1;
        let target = first.origin.clone();
        let text = relay_message(&results);
        self.run_turn(
            TurnInput { kind: TurnKind::Relay, target, answers: Vec::new(), text, images: Vec::new() },
            inbox,
        )
        .await;
        // Told once the relay turn is over (replied, skipped or failed visibly); a crash before
        // this line relays them again after the restart rather than never.
        for completion in &results {
            self.told(completion);
        }
        self.flush_told().await;
    }

    /// Cancels every process and waits until each has ended, aborting what outlives the grace.
    pub(super) async fn stop_processes(&mut self) {
        let ids: Vec<ProcessId> = self.procs.entries.keys().cloned().collect();
        for id in &ids {
            self.procs.cancel(id, "shutting down", false);
            if let Some(entry) = self.procs.entries.get_mut(id) {
                entry.stopping = true;
            }
        }
        let until = Instant::now() + self.profile.settings.cancel_grace;
        while !self.procs.tasks.is_empty() {
            match tokio::time::timeout_at(until, self.procs.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => self.on_exit(joined),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation,
                        remaining = self.procs.tasks.len(), "processes ignored cancellation; aborting them");
                    self.procs.tasks.abort_all();
                    while let Some(joined) = self.procs.tasks.join_next_with_id().await {
                        self.on_exit(joined);
                    }
                }
            }
        }
    }
}

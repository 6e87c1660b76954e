//! The worker: does one task with task tools, reports progress with `set_status`, and must
//! declare an outcome. An interactive worker then waits for follow-ups sent with `route`.
//!
//! The body here returns how the work ended; [`supervise`](crate::processes::supervise) wraps it
//! with the cancel token and the wall-clock limit and makes the one terminal transition.

use std::sync::Arc;

use tokio::sync::mpsc;

use spacebot_core::{
    ChatMessage, ChatRequest, LanguageModel, ProcessChange, ProcessId, ProcessKind, TerminalState, Tool, ToolSpec,
};

use crate::processes::{Announcer, Report, STATUS_BYTES, one_line, preview};
use crate::prompt;
use crate::tools::{WorkerCall, run_tool, set_status_tool};

/// Text-only answers without a declared outcome tolerated in a row before the worker fails.
const MAX_NUDGES: usize = 2;

/// A worker about to run.
pub(crate) struct WorkerTask {
    pub(crate) id: ProcessId,
    pub(crate) task: String,
    pub(crate) model: Arc<dyn LanguageModel>,
    pub(crate) tools: Vec<Arc<dyn Tool>>,
    /// Masks secrets in tool output before the model reads it.
    pub(crate) scrubber: spacebot_core::Scrubber,
    pub(crate) budget: usize,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
    pub(crate) follow_ups: Option<mpsc::UnboundedReceiver<String>>,
    pub(crate) context: mpsc::UnboundedReceiver<String>,
    pub(crate) announcer: Announcer,
}

/// How one task (the first, or a follow-up) ended.
struct Outcome {
    success: bool,
    text: String,
}

impl WorkerTask {
    /// Works the task, then the follow-ups of an interactive worker, until an outcome ends it.
    pub(crate) async fn run(mut self) -> (TerminalState, String) {
        let specs: Arc<[ToolSpec]> = self.tools.iter().map(|tool| tool.spec()).chain([set_status_tool()]).collect();
        let system = prompt::worker_system_prompt(self.follow_ups.is_some());
        let mut history = vec![ChatMessage::user(self.task.clone())];
        loop {
            let outcome = match self.work(&system, &specs, &mut history).await {
                Ok(outcome) => outcome,
                Err(reason) => return (TerminalState::Failed, reason),
            };
            let Some(follow_ups) = self.follow_ups.as_mut() else {
                let state = if outcome.success { TerminalState::Done } else { TerminalState::Failed };
                return (state, outcome.text);
            };
            // An interactive worker relays each result and stays for follow-ups.
            let _ = self.reports.send(Report::Idle {
                id: self.id.clone(),
                result: outcome.text.clone(),
                success: outcome.success,
            });
            self.announcer.publish(&self.id, ProcessKind::Worker, ProcessChange::Status { text: "idle".to_owned() });
            match follow_ups.recv().await {
                Some(follow_up) => history.push(ChatMessage::user(format!("[follow-up] {follow_up}"))),
                // The channel let it go: its last result was already relayed.
                None => return (TerminalState::Done, outcome.text),
            }
        }
    }

    /// One task: model calls and tool calls until `set_status` declares an outcome.
    async fn work(
        &mut self,
        system: &str,
        specs: &Arc<[ToolSpec]>,
        history: &mut Vec<ChatMessage>,
    ) -> Result<Outcome, String> {
        let mut nudges = 0;
        for _ in 0..self.budget {
            while let Ok(context) = self.context.try_recv() {
                history.push(ChatMessage::user(format!("[context from the conversation] {context}")));
            }
            let request = ChatRequest::new(system.to_owned(), history.clone()).with_tools(specs.clone());
            let response =
                self.model.complete(request).await.map_err(|error| format!("the model request failed: {error}"))?;
            if response.tool_calls.is_empty() {
                nudges += 1;
                if nudges > MAX_NUDGES {
                    return Err(format!(
                        "ended without declaring an outcome; its last words: {}",
                        preview(response.content.trim(), 300)
                    ));
                }
                history.push(ChatMessage::assistant(response.content));
                history.push(ChatMessage::user(
                    "[harness] Finish by calling `set_status` with kind `done` and the result, or kind `failed` \
                     and the reason."
                        .to_owned(),
                ));
                continue;
            }
            nudges = 0;
            history.push(ChatMessage::assistant_with_calls(response.content.clone(), response.tool_calls.clone()));
            for call in &response.tool_calls {
                let result = match WorkerCall::parse(call) {
                    WorkerCall::Progress(status) => {
                        let text = one_line(&status, STATUS_BYTES);
                        let _ = self.reports.send(Report::Status { id: self.id.clone(), text: text.clone() });
                        self.announcer.publish(&self.id, ProcessKind::Worker, ProcessChange::Status { text });
                        "status updated".to_owned()
                    }
                    WorkerCall::Outcome { success, text } => {
                        history.push(ChatMessage::tool_result(&call.id, &call.name, "outcome recorded"));
                        return Ok(Outcome { success, text });
                    }
                    WorkerCall::Invalid(error) => error,
                    WorkerCall::Tool => run_tool(&self.tools, call, &self.scrubber).await,
                };
                history.push(ChatMessage::tool_result(&call.id, &call.name, result));
            }
        }
        Err(format!("used its budget of {} model calls without declaring an outcome", self.budget))
    }
}

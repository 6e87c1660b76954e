//! The branch: a fork of the channel's context that thinks and returns a conclusion.
//!
//! It works on its own copy of the history (the channel keeps answering meanwhile), may call the
//! tools it was given (memory tools, say), and may delegate one task to a worker, which ends the
//! branch: the worker is started by the channel, which owns it, and its outcome is relayed from
//! there, so the branch's own conclusion ("delegated") is not relayed.

use std::sync::Arc;

use tokio::sync::mpsc;

use spacebot_core::{ChatMessage, ChatRequest, LanguageModel, ProcessId, TerminalState, Tool, ToolSpec};

use crate::processes::{Report, preview};
use crate::prompt;
use crate::tools::{BranchCall, branch_spawn_worker_tool, run_tool};

/// The conclusion text of a branch that delegated its work (the channel recognises it).
pub(crate) const DELEGATED_PREFIX: &str = "Delegated to worker ";

/// A branch about to run.
pub(crate) struct BranchTask {
    pub(crate) id: ProcessId,
    pub(crate) task: String,
    pub(crate) fork: Vec<ChatMessage>,
    pub(crate) model: Arc<dyn LanguageModel>,
    pub(crate) tools: Vec<Arc<dyn Tool>>,
    /// Masks secrets in tool output before the model reads it.
    pub(crate) scrubber: spacebot_core::Scrubber,
    pub(crate) budget: usize,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
}

impl BranchTask {
    /// Thinks until the model answers with a conclusion (plain text) or delegates.
    pub(crate) async fn run(self) -> (TerminalState, String) {
        let specs: Arc<[ToolSpec]> =
            self.tools.iter().map(|tool| tool.spec()).chain([branch_spawn_worker_tool()]).collect();
        let mut history = self.fork;
        history.push(ChatMessage::user(format!(
            "[branch] You are a branch of this conversation: think this through and answer with your \
             conclusion as plain text (nobody sees it but the conversation's agent). Task: {}",
            self.task
        )));
        let mut last_text = String::new();
        for _ in 0..self.budget {
            let request = ChatRequest::new(prompt::BRANCH_SYSTEM_PROMPT, history.clone()).with_tools(specs.clone());
            let response = match self.model.complete(request).await {
                Ok(response) => response,
                Err(error) => return (TerminalState::Failed, format!("the model request failed: {error}")),
            };
            if response.tool_calls.is_empty() {
                let text = response.content.trim();
                if text.is_empty() {
                    history.push(ChatMessage::assistant(""));
                    history.push(ChatMessage::user("[harness] Answer with your conclusion as plain text."));
                    continue;
                }
                return (TerminalState::Done, text.to_owned());
            }
            if !response.content.trim().is_empty() {
                last_text = response.content.trim().to_owned();
            }
            history.push(ChatMessage::assistant_with_calls(response.content.clone(), response.tool_calls.clone()));
            for call in &response.tool_calls {
                let result = match BranchCall::parse(call) {
                    BranchCall::SpawnWorker(task) => {
                        let worker = ProcessId::generate();
                        let _ = self.reports.send(Report::Delegate {
                            branch: self.id.clone(),
                            worker: worker.clone(),
                            task: task.clone(),
                        });
                        return (TerminalState::Done, format!("{DELEGATED_PREFIX}{worker}: {task}"));
                    }
                    BranchCall::Invalid(error) => error,
                    BranchCall::Tool => run_tool(&self.tools, call, &self.scrubber).await,
                };
                history.push(ChatMessage::tool_result(&call.id, &call.name, result));
            }
        }
        let mut reason = format!("used its budget of {} model calls without a conclusion", self.budget);
        if !last_text.is_empty() {
            reason.push_str(&format!("; its last thought: {}", preview(&last_text, 300)));
        }
        (TerminalState::Failed, reason)
    }
}

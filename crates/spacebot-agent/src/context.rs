//! What a channel's model sees, kept within its window: the rolling compactor
//! ([`compactor`]: background summaries and truncation of the live history) and the chronicle
//! ([`chronicle`]: durable checkpoints of the log, for long sessions), and the one summary call
//! both make to the compactor model.
//!
//! The channel owns the state and decides when to act (`channel/compaction.rs`,
//! `channel/chronicle.rs`); the functions here plan cuts, render views and run the background
//! summaries, and hold no state of their own.

pub(crate) mod chronicle;
pub(crate) mod compactor;

use std::sync::Arc;

use spacebot_core::{ChatMessage, ChatRequest, LanguageModel};

use compactor::CompactionSettings;

use crate::budget::BackgroundBudget;

/// One summary call to the compactor model within the compaction time limit and output bound:
/// `instructions` as the system prompt, `text` as the one user message. Returns the trimmed
/// answer, or why there is none as a sentence (for the process event and the logs).
///
/// The call is made only if the agent's [`BackgroundBudget`] allows it, and its outcome is
/// recorded there, so a loop of background work is stopped by the budget whatever started it.
pub(crate) async fn summarize(
    model: &Arc<dyn LanguageModel>,
    budget: &BackgroundBudget,
    instructions: &str,
    text: String,
    settings: &CompactionSettings,
) -> Result<String, String> {
    budget.acquire().map_err(|refusal| format!("no summary was asked for: {refusal}"))?;
    let outcome = call(model, instructions, text, settings).await;
    budget.record(outcome.is_ok(), outcome.as_ref().err().map_or("", String::as_str));
    outcome
}

async fn call(
    model: &Arc<dyn LanguageModel>,
    instructions: &str,
    text: String,
    settings: &CompactionSettings,
) -> Result<String, String> {
    let request =
        ChatRequest::new(instructions, vec![ChatMessage::user(text)]).with_max_tokens(settings.summary_max_tokens);
    match tokio::time::timeout(settings.summary_timeout, model.complete(request)).await {
        Ok(Ok(response)) if !response.content.trim().is_empty() => Ok(response.content.trim().to_owned()),
        Ok(Ok(_)) => Err("the compactor model answered with an empty summary".to_owned()),
        Ok(Err(error)) => Err(format!("the compactor model failed: {error}")),
        Err(_) => {
            Err(format!("the compactor model did not answer within {} seconds", settings.summary_timeout.as_secs()))
        }
    }
}

//! The compactor: keeps a channel's context inside its model's window without pausing the channel.
//!
//! It is not a process of its own. After each turn the channel measures its context (system
//! prompt, tool definitions and history, in estimated tokens) against the model's window and asks
//! [`plan`] what to do:
//!
//! - at 80% it starts a *background summary* of the oldest 30% of the history (at 85%, of the
//!   oldest half). The summary is one call to the compactor model, run as a task the channel
//!   owns; the channel keeps answering meanwhile, and the model keeps seeing the full history
//!   until the summary arrives and replaces exactly the span it covers (messages added meanwhile
//!   stay). A failed summary changes nothing.
//! - at 95% it *truncates* the oldest half at once, with no model call, leaving a marker that
//!   says what happened. This also cancels a summary in flight, whose span it would overlap.
//!
//! One compaction per channel at a time. Shares are measured in estimated tokens, not messages,
//! so a few long messages count for what they weigh. A cut never separates an assistant's tool
//! calls from their results: it lands before a user message (a turn boundary) when one is near
//! enough, and never before a tool result.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use spacebot_core::{ChatMessage, LanguageModel};

use super::chronicle::{ChronicleSettings, CompactionMode};
use crate::budget::BackgroundBudget;
use crate::processes::preview;

/// Messages a cut always leaves in place, newest last.
pub(crate) const MIN_KEEP: usize = 2;
/// Longest tool result (and tool-call arguments) quoted in a summary's transcript.
const TRANSCRIPT_TOOL_BYTES: usize = 1000;
/// Longest message quoted in a summary's transcript.
const TRANSCRIPT_MESSAGE_BYTES: usize = 8000;
/// How far the provider's own token count may scale our estimate up (never down).
const MAX_CALIBRATION: f64 = 4.0;

/// When and how much a channel compacts its context.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CompactionSettings {
    /// Share of the context window at which a background summary starts.
    pub background: f64,
    /// Share at which the background summary covers `aggressive_share` instead.
    pub aggressive: f64,
    /// Share at which the oldest history is truncated at once, without a model call.
    pub emergency: f64,
    /// Share of the history (in tokens) a background summary covers.
    pub background_share: f64,
    /// Share of the history a summary started at the aggressive threshold covers.
    pub aggressive_share: f64,
    /// Share of the history an emergency truncation removes.
    pub emergency_share: f64,
    /// Time limit of one summary call.
    pub summary_timeout: Duration,
    /// Output token bound of one summary call.
    pub summary_max_tokens: u32,
    /// After a failed summary, no new background summary starts for this long (truncation
    /// still happens), so a broken compactor model costs one call, not one per turn.
    pub retry_delay: Duration,
    /// Rolling summaries (the default) or chronicle checkpoints.
    pub mode: CompactionMode,
    /// The chronicle's intervals, rollups and view (used in chronicle mode; the view is shown
    /// whenever a conversation has checkpoints).
    pub chronicle: ChronicleSettings,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        Self {
            background: 0.80,
            aggressive: 0.85,
            emergency: 0.95,
            background_share: 0.30,
            aggressive_share: 0.50,
            emergency_share: 0.50,
            summary_timeout: Duration::from_secs(120),
            summary_max_tokens: 1500,
            retry_delay: Duration::from_secs(60),
            mode: CompactionMode::Rolling,
            chronicle: ChronicleSettings::default(),
        }
    }
}

impl CompactionSettings {
    /// Sets the three thresholds (shares of the context window), kept in increasing order.
    pub fn with_thresholds(mut self, background: f64, aggressive: f64, emergency: f64) -> Self {
        self.background = background;
        self.aggressive = aggressive.max(background);
        self.emergency = emergency.max(self.aggressive);
        self
    }

    /// Sets the time limit of one summary call.
    pub fn with_summary_timeout(mut self, timeout: Duration) -> Self {
        self.summary_timeout = timeout;
        self
    }

    /// Sets the compaction mode.
    pub fn with_mode(mut self, mode: CompactionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the chronicle's intervals, rollups and view.
    pub fn with_chronicle(mut self, chronicle: ChronicleSettings) -> Self {
        self.chronicle = chronicle;
        self
    }

    /// Sets the shares of the history a background, aggressive and emergency compaction cover.
    pub fn with_shares(mut self, background: f64, aggressive: f64, emergency: f64) -> Self {
        self.background_share = background;
        self.aggressive_share = aggressive;
        self.emergency_share = emergency;
        self
    }

    /// Sets how long background summaries pause after one failed.
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }
}

/// Estimated tokens of a text of `bytes` bytes: four per token, rounded up.
pub(crate) fn tokens(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

/// Where a cut may fall, judged by the message that would follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// A user message: a turn starts here. The best place for a cut.
    Turn,
    /// An assistant message: allowed (its calls and their results stay together after it).
    Safe,
    /// A tool result: never cut here, its call is before it.
    Inside,
}

impl Boundary {
    pub(crate) fn of(message: &ChatMessage) -> Self {
        match message {
            ChatMessage::User { .. } => Self::Turn,
            ChatMessage::ToolResult { .. } => Self::Inside,
            _ => Self::Safe,
        }
    }
}

/// What the planner needs to know of one history message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) tokens: usize,
    pub(crate) boundary: Boundary,
}

/// What to do about the context now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing.
    Keep,
    /// Summarise `history[..end]` in the background.
    Summarize { end: usize },
    /// Remove `history[..end]` now and leave a marker.
    Truncate { end: usize },
}

/// The measured context and the action it calls for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// Estimated tokens in use.
    pub(crate) used: usize,
    /// `used` as a share of the window.
    pub(crate) usage: f64,
    pub(crate) action: Action,
}

/// Measures the context and decides. `fixed` is the estimated tokens of what compaction cannot
/// shrink (system prompt, tool definitions); `scale` (≥ 1) corrects the estimate with what the
/// provider last reported; `summarizing` says a summary is already in flight (then only an
/// emergency truncation may happen).
pub(crate) fn plan(
    history: &[Slot],
    fixed: usize,
    window: usize,
    scale: f64,
    settings: &CompactionSettings,
    summarizing: bool,
) -> Plan {
    let estimate = fixed + history.iter().map(|slot| slot.tokens).sum::<usize>();
    // Token counts are far below 2^52, so the conversions are exact.
    let used = (estimate as f64 * scale.clamp(1.0, MAX_CALIBRATION)).ceil() as usize;
    let usage = used as f64 / window.max(1) as f64;
    let action = if usage >= settings.emergency {
        cut(history, settings.emergency_share).map_or(Action::Keep, |end| Action::Truncate { end })
    } else if summarizing {
        Action::Keep
    } else if usage >= settings.aggressive {
        cut(history, settings.aggressive_share).map_or(Action::Keep, |end| Action::Summarize { end })
    } else if usage >= settings.background {
        cut(history, settings.background_share).map_or(Action::Keep, |end| Action::Summarize { end })
    } else {
        Action::Keep
    };
    Plan { used, usage, action }
}

/// Where to end a span holding about `share` of the history's tokens: at the first turn
/// boundary that reaches the share; else at the first other safe boundary that does; else as
/// deep as a safe boundary allows. Always leaves [`MIN_KEEP`] messages; `None` when no cut is
/// possible.
pub(crate) fn cut(history: &[Slot], share: f64) -> Option<usize> {
    cut_keeping(history, share, MIN_KEEP)
}

/// [`cut`], leaving at least `keep` messages.
pub(crate) fn cut_keeping(history: &[Slot], share: f64, keep: usize) -> Option<usize> {
    let total: usize = history.iter().map(|slot| slot.tokens).sum();
    let target = ((total as f64 * share).ceil() as usize).max(1);
    let last = history.len().checked_sub(keep.max(1))?;
    let (mut safe_past_target, mut deepest) = (None, None);
    let mut covered = 0;
    for end in 1..=last {
        covered += history[end - 1].tokens;
        let reached = covered >= target;
        match history[end].boundary {
            Boundary::Turn if reached => return Some(end),
            Boundary::Inside => continue,
            Boundary::Safe if reached => {
                safe_past_target.get_or_insert(end);
            }
            _ => {}
        }
        if !reached {
            deepest = Some(end);
        }
    }
    safe_past_target.or(deepest)
}

/// The deepest cut at or before `end` that leaves `keep` messages and does not land on a tool
/// result (so a call stays with its results): `history[..cut]` may go. `None` when there is none.
pub(crate) fn safe_end(history: &[Slot], end: usize, keep: usize) -> Option<usize> {
    let mut end = end.min(history.len().checked_sub(keep)?);
    while end > 0 && history.get(end).is_some_and(|slot| slot.boundary == Boundary::Inside) {
        end -= 1;
    }
    (end > 0).then_some(end)
}

/// The provider's token count for a request over our estimate of it, when it reported one.
pub(crate) fn calibration(reported_input_tokens: u64, estimated: usize) -> Option<f64> {
    if reported_input_tokens == 0 || estimated == 0 {
        return None;
    }
    Some((reported_input_tokens as f64 / estimated as f64).clamp(1.0, MAX_CALIBRATION))
}

/// The summariser's instructions.
const SUMMARY_PROMPT: &str = "You condense the earlier part of a chat conversation so that an AI agent \
     can carry on with it without the original messages. Write what the agent needs to know: who \
     the people are and what each said that still matters, questions still open, decisions and \
     commitments (including promises the agent made), background work started and its results, \
     preferences and the mood of the conversation. Keep names, numbers, dates and ids exactly. \
     Leave out greetings and small talk. Answer with the summary only, in plain prose or short \
     bullet points, at most about 400 words.";

/// The user message that carries a summary in the history.
pub(crate) fn summary_message(messages: usize, summary: &str) -> ChatMessage {
    ChatMessage::user(format!("[summary of {messages} earlier messages of this conversation]\n{summary}"))
}

/// The marker left where an emergency truncation removed messages.
pub(crate) fn truncation_marker(messages: usize) -> ChatMessage {
    ChatMessage::user(format!(
        "[{messages} earlier messages of this conversation were removed to stay within the model's \
         context window; if something from before matters, ask the people here]"
    ))
}

/// The span as a plain transcript for the summariser.
pub(crate) fn transcript<'a>(messages: impl IntoIterator<Item = &'a ChatMessage>) -> String {
    let mut out = String::new();
    for message in messages {
        // Writing to a String cannot fail.
        let _ = match message {
            ChatMessage::User { content, .. } => {
                writeln!(out, "User: {}", preview(content, TRANSCRIPT_MESSAGE_BYTES))
            }
            ChatMessage::Assistant { content, tool_calls } => {
                if !content.trim().is_empty() {
                    let _ = writeln!(out, "Assistant: {}", preview(content, TRANSCRIPT_MESSAGE_BYTES));
                }
                for call in tool_calls {
                    let _ = writeln!(
                        out,
                        "[Assistant called {}] {}",
                        call.name,
                        preview(&call.arguments.to_string(), TRANSCRIPT_TOOL_BYTES)
                    );
                }
                Ok(())
            }
            ChatMessage::ToolResult { name, content, .. } => {
                writeln!(out, "[{name} returned] {}", preview(content, TRANSCRIPT_TOOL_BYTES))
            }
            _ => Ok(()),
        };
    }
    out
}

/// One summary call: the transcript in, the summary text out, within `settings`' time limit.
/// Errors are sentences for the process event.
pub(crate) async fn summarize(
    model: Arc<dyn LanguageModel>,
    budget: Arc<BackgroundBudget>,
    transcript: String,
    settings: CompactionSettings,
) -> Result<String, String> {
    let text = format!("Summarise this conversation so far:\n\n{transcript}");
    super::summarize(&model, &budget, SUMMARY_PROMPT, text, &settings).await
}

#[cfg(test)]
mod tests {
    use spacebot_core::ToolCall;

    use super::*;

    fn slots(spec: &str, tokens: usize) -> Vec<Slot> {
        spec.chars()
            .map(|c| Slot {
                tokens,
                boundary: match c {
                    'u' => Boundary::Turn,
                    't' => Boundary::Inside,
                    _ => Boundary::Safe,
                },
            })
            .collect()
    }

    fn settings() -> CompactionSettings {
        CompactionSettings::default()
    }

    #[test]
    fn thresholds_pick_the_action_and_its_share() {
        // Ten exchanges of 10-token messages: 200 tokens of history, no fixed part.
        let history = slots(&"ua".repeat(10), 10);
        let at = |window: usize| plan(&history, 0, window, 1.0, &settings(), false);
        // 200 / 251 = 79.7%: nothing.
        assert_eq!(at(251).action, Action::Keep);
        // 200 / 250 = 80%: the oldest 30% (60 tokens = 6 messages, ending before a user message).
        assert_eq!(at(250).action, Action::Summarize { end: 6 });
        // 200 / 235 = 85.1%: half.
        assert_eq!(at(235).action, Action::Summarize { end: 10 });
        // 200 / 210 = 95.2%: truncate half at once.
        assert_eq!(at(210).action, Action::Truncate { end: 10 });
        assert!((at(250).usage - 0.8).abs() < 1e-9);
    }

    #[test]
    fn a_summary_in_flight_blocks_another_but_not_truncation() {
        let history = slots(&"ua".repeat(10), 10);
        assert_eq!(plan(&history, 0, 240, 1.0, &settings(), true).action, Action::Keep);
        assert_eq!(plan(&history, 0, 200, 1.0, &settings(), true).action, Action::Truncate { end: 10 });
    }

    #[test]
    fn the_fixed_part_and_the_calibration_count() {
        let history = slots("uaua", 10);
        // 40 of history alone is 40% of 100; with 40 fixed, 80%.
        assert_eq!(plan(&history, 0, 100, 1.0, &settings(), false).action, Action::Keep);
        assert!(matches!(plan(&history, 40, 100, 1.0, &settings(), false).action, Action::Summarize { .. }));
        // The provider counting twice our estimate doubles the usage; a lower count is ignored.
        assert!(matches!(plan(&history, 0, 100, 2.0, &settings(), false).action, Action::Summarize { .. }));
        assert_eq!(plan(&history, 0, 100, 0.5, &settings(), false).action, Action::Keep);
        assert_eq!(calibration(300, 100), Some(3.0));
        assert_eq!(calibration(50, 100), Some(1.0));
        assert_eq!(calibration(0, 100), None);
    }

    #[test]
    fn cuts_never_land_on_a_tool_result() {
        // user, assistant with calls, two results, assistant, user, ...
        let history = slots("uattauattauatta", 10);
        for share in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0] {
            let end = cut(&history, share).expect("a cut exists");
            assert_ne!(history[end].boundary, Boundary::Inside, "share {share}: cut at {end}");
            assert!(end >= 1 && end <= history.len() - MIN_KEEP, "share {share}: cut at {end}");
        }
        // 30% of 150 tokens is 45: the first turn boundary past it is index 5.
        assert_eq!(cut(&history, 0.3), Some(5));
    }

    #[test]
    fn a_turn_boundary_is_preferred_then_any_safe_one_then_the_deepest() {
        // No user message after the first: the first assistant message past the target.
        assert_eq!(cut(&slots("uatatatata", 10), 0.3), Some(3));
        // Only tool results after the start: no cut at all.
        assert_eq!(cut(&slots("utttt", 10), 0.5), None);
        // Too short to leave two messages.
        assert_eq!(cut(&slots("ua", 10), 0.5), None);
        // The target is past every boundary: the deepest one.
        assert_eq!(cut(&slots("uauatt", 10), 0.99), Some(3));
    }

    #[test]
    fn safe_ends_step_back_from_tool_results_and_keep_the_newest() {
        let history = slots("uattauaua", 10);
        assert_eq!(safe_end(&history, 3, 4), Some(1));
        assert_eq!(safe_end(&history, 4, 4), Some(4));
        assert_eq!(safe_end(&history, 9, 4), Some(5));
        assert_eq!(safe_end(&history, 0, 4), None);
        assert_eq!(safe_end(&slots("uaua", 10), 4, 4), None);
    }

    #[test]
    fn a_long_message_counts_for_its_weight() {
        let mut history = slots("uauaua", 10);
        history[0].tokens = 1000;
        // The first message alone is over half the history.
        assert_eq!(cut(&history, 0.5), Some(2));
    }

    #[test]
    fn transcripts_show_calls_and_results_compactly() {
        let messages = vec![
            ChatMessage::user("[time | alice] hi"),
            ChatMessage::assistant_with_calls(
                "",
                vec![ToolCall::new("c1", "spawn_worker", serde_json::json!({"task": "x"}))],
            ),
            ChatMessage::tool_result("c1", "spawn_worker", "y".repeat(5000)),
            ChatMessage::assistant("on it"),
        ];
        let text = transcript(&messages);
        assert!(
            text.starts_with("User: [time | alice] hi\n[Assistant called spawn_worker] {\"task\":\"x\"}\n"),
            "{text}"
        );
        assert!(text.contains("[spawn_worker returned] yyy"), "{text}");
        assert!(text.len() < 1200, "tool results are cut: {}", text.len());
        assert!(text.ends_with("Assistant: on it\n"), "{text}");
    }
}

//! The chronicler: chronicle-mode compaction, the long-session alternative to rolling summaries.
//!
//! Instead of summarising its live history, a channel in chronicle mode cuts *checkpoints* of
//! its durable log ([`spacebot_core::Chronicle`]): after each turn it counts the logged messages
//! no checkpoint covers yet and, when enough accumulated ([`trigger`]), runs one background task
//! that reads them (at most [`ChronicleSettings::max_messages_per_checkpoint`]), asks the
//! compactor model for a titled summary, and hands the draft back. The channel commits it
//! (the store's compare-and-set keeps the spans contiguous) and only then drops the covered
//! messages from its live history. Every so often a run of checkpoints is summarised again into
//! a rollup. The model sees the checkpoints through the "Session Chronicle" section of the
//! system prompt ([`render_view`]), rendered from durable state alone so that it is the same
//! after a restart, and opens them with the `chronicle` tool.
//!
//! Failure policy: a summary that fails (model error, timeout, empty answer) still commits, as an
//! *unsummarized* checkpoint whose text says so, so coverage stays gap-free and the context can
//! still shrink; its messages remain in the log, and a branch can read them (`expand`). A rollup
//! that fails commits nothing and is retried after the compaction retry delay.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{
    AgentId, Checkpoint, CheckpointKind, Chronicle, ConversationId, ConversationLog, LanguageModel, LoggedMessage,
    NewCheckpoint, NewRollup, Role, ToolError, ToolSpec, TypedTool,
};

use super::compactor::{self, CompactionSettings};
use crate::budget::BackgroundBudget;
use crate::processes::{one_line, preview};
use crate::prompt::{TIME_FORMAT, stamped};

/// The tool that lists and opens checkpoints (and, for branches, reads their messages).
pub const CHRONICLE_TOOL: &str = "chronicle";

/// Checkpoints `list` shows when not told how many.
const LIST_DEFAULT: usize = 20;
/// Most checkpoints one `list` shows.
const LIST_MAX: usize = 50;
/// Most raw messages one `expand` returns.
const EXPAND_MAX: usize = 100;
/// Previous checkpoints a cut shows the summariser as narrative.
pub(crate) const NARRATIVE: usize = 3;
/// Longest title kept.
const TITLE_BYTES: usize = 120;
/// Longest summary an entry of the view shows in full (longer ones are cut).
const ENTRY_SUMMARY_BYTES: usize = 1200;
/// Longest message quoted in a cut's transcript.
const TRANSCRIPT_MESSAGE_BYTES: usize = 4000;

/// Which compaction a channel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CompactionMode {
    /// Background summaries of the live history and truncation (the default).
    #[default]
    Rolling,
    /// Durable checkpoints of the log, with rollups; for long sessions.
    Chronicle,
}

impl CompactionMode {
    /// `rolling` or `chronicle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::Chronicle => "chronicle",
        }
    }
}

/// When a chronicle-mode channel cuts checkpoints and rolls them up, and how its view is shown.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChronicleSettings {
    /// A checkpoint is cut once this many logged messages are uncovered.
    pub interval_messages: usize,
    /// ... or once the live history reaches this share of the context window.
    pub interval_token_fraction: f64,
    /// Most messages one checkpoint covers (a long log without checkpoints is cut from its
    /// oldest messages, this many at a time).
    pub max_messages_per_checkpoint: usize,
    /// A rollup starts once this many level-0 checkpoints are not rolled up.
    pub rollup_threshold: usize,
    /// How many of the oldest ones a rollup summarises.
    pub rollup_batch: usize,
    /// Messages a trim always leaves in the live history.
    pub min_keep: usize,
    /// Token budget of the "Session Chronicle" section of the system prompt.
    pub view_budget_tokens: usize,
    /// Entries the view shows besides the recent ones.
    pub view_older: usize,
    /// The newest entries the view shows.
    pub view_recent: usize,
}

impl Default for ChronicleSettings {
    fn default() -> Self {
        Self {
            interval_messages: 40,
            interval_token_fraction: 0.12,
            max_messages_per_checkpoint: 400,
            rollup_threshold: 12,
            rollup_batch: 8,
            min_keep: 4,
            view_budget_tokens: 2000,
            view_older: 12,
            view_recent: 8,
        }
    }
}

impl ChronicleSettings {
    /// Sets the interval: a checkpoint every `messages` logged messages, or when the live history
    /// reaches `token_fraction` of the window.
    pub fn with_interval(mut self, messages: usize, token_fraction: f64) -> Self {
        self.interval_messages = messages.max(1);
        self.interval_token_fraction = token_fraction;
        self
    }

    /// Sets when rollups start (`threshold` un-rolled checkpoints) and how many they cover.
    pub fn with_rollups(mut self, threshold: usize, batch: usize) -> Self {
        self.rollup_batch = batch.max(2);
        self.rollup_threshold = threshold.max(self.rollup_batch);
        self
    }

    /// Sets the most messages one checkpoint covers.
    pub fn with_max_messages_per_checkpoint(mut self, messages: usize) -> Self {
        self.max_messages_per_checkpoint = messages.max(1);
        self
    }
}

/// What the channel knows when it asks whether to cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pressure {
    /// Logged messages after the newest checkpoint.
    pub(crate) uncovered: u64,
    /// Whether the conversation has any checkpoint.
    pub(crate) has_checkpoints: bool,
    /// The context's share of the window.
    pub(crate) usage: f64,
    /// Estimated tokens of the live history.
    pub(crate) live_tokens: usize,
    pub(crate) window: usize,
}

/// The checkpoint to cut now, if any (the emergency case is the caller's, before this).
pub(crate) fn trigger(settings: &CompactionSettings, at: Pressure) -> Option<CheckpointKind> {
    let chronicle = &settings.chronicle;
    if at.uncovered == 0 {
        None
    } else if !at.has_checkpoints && at.uncovered > chronicle.max_messages_per_checkpoint as u64 {
        Some(CheckpointKind::Bootstrap)
    } else if at.usage >= settings.background {
        Some(CheckpointKind::Pressure)
    } else if at.uncovered >= chronicle.interval_messages as u64
        || at.live_tokens as f64 >= chronicle.interval_token_fraction * at.window as f64
    {
        Some(CheckpointKind::Interval)
    } else {
        None
    }
}

/// The oldest `batch` level-0 checkpoints not rolled up, when at least `threshold` wait.
pub(crate) fn rollup_sources(checkpoints: &[Checkpoint], settings: &ChronicleSettings) -> Option<Vec<Checkpoint>> {
    let waiting: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.level == 0 && c.rolled_up_into.is_none()).collect();
    if waiting.len() < settings.rollup_threshold {
        return None;
    }
    Some(waiting.into_iter().take(settings.rollup_batch).cloned().collect())
}

// -------------------------------------------------------------------------------------------
// Background jobs

/// A checkpoint cut in the background: what to read and how to summarise it.
pub(crate) struct CutJob {
    pub(crate) chronicle: Arc<dyn Chronicle>,
    pub(crate) log: Arc<dyn ConversationLog>,
    pub(crate) agent: AgentId,
    pub(crate) conversation: ConversationId,
    pub(crate) kind: CheckpointKind,
    /// The last log sequence number already covered.
    pub(crate) after: u64,
    /// The newest checkpoints, oldest first, shown as narrative.
    pub(crate) narrative: Vec<Checkpoint>,
    pub(crate) model: Arc<dyn LanguageModel>,
    pub(crate) budget: Arc<BackgroundBudget>,
    pub(crate) settings: CompactionSettings,
}

/// What a finished job hands back to its channel.
pub(crate) enum JobOutcome {
    /// A checkpoint to commit.
    Cut(NewCheckpoint),
    /// A rollup to commit.
    Rollup(NewRollup),
    /// Nothing to commit, and why (for the process event).
    Nothing(String),
}

impl CutJob {
    /// Reads the uncovered messages (stopping before the first one not answered yet, which is
    /// still on its way through the channel) and drafts their checkpoint.
    pub(crate) async fn run(self) -> JobOutcome {
        let limit = self.settings.chronicle.max_messages_per_checkpoint;
        let read = answered_after(&self.chronicle, &self.log, &self.agent, &self.conversation, self.after, limit);
        let messages = match read.await {
            Ok(messages) => messages,
            Err(reason) => return JobOutcome::Nothing(reason),
        };
        if messages.is_empty() {
            return JobOutcome::Nothing("no answered messages to cover yet".to_owned());
        }
        let fallback = span_title(&messages);
        let text = format!("{}Messages to summarise:\n\n{}", narrative(&self.narrative), transcript(&messages));
        let model = self.model.name().to_owned();
        let Some(draft) = NewCheckpoint::over(self.kind, &messages, "", "") else {
            return JobOutcome::Nothing("no messages to cover".to_owned());
        };
        let draft = match super::summarize(&self.model, &self.budget, CUT_PROMPT, text, &self.settings).await {
            Ok(answer) => {
                let (title, summary) = parse_answer(&answer, &fallback);
                let mut draft = draft.with_model(model);
                draft.title = title;
                draft.summary = summary;
                draft
            }
            Err(reason) => {
                let mut draft = draft.unsummarized();
                draft.title = format!("Unsummarized: {fallback}");
                draft.summary = unsummarized_notice(messages.len(), &reason);
                draft
            }
        };
        JobOutcome::Cut(draft)
    }
}

/// The first `limit` logged messages of a conversation after `after`, ending before the first
/// one not answered yet (it is still on its way through the channel, so it belongs to a later
/// span). Errors are sentences.
pub(crate) async fn answered_after(
    chronicle: &Arc<dyn Chronicle>,
    log: &Arc<dyn ConversationLog>,
    agent: &AgentId,
    conversation: &ConversationId,
    after: u64,
    limit: usize,
) -> Result<Vec<LoggedMessage>, String> {
    let mut messages = chronicle
        .messages_after(agent, conversation, after, limit)
        .await
        .map_err(|error| format!("can't read the messages to cover: {error}"))?;
    let pending: HashSet<_> = log
        .unhandled_in(agent, conversation)
        .await
        .map_err(|error| format!("can't read which messages are answered: {error}"))?
        .into_iter()
        .collect();
    if let Some(first_pending) = messages.iter().position(|m| pending.contains(&m.message.id)) {
        messages.truncate(first_pending);
    }
    Ok(messages)
}

/// A rollup drafted in the background.
pub(crate) struct RollupJob {
    pub(crate) agent: AgentId,
    pub(crate) conversation: ConversationId,
    pub(crate) sources: Vec<Checkpoint>,
    pub(crate) model: Arc<dyn LanguageModel>,
    pub(crate) budget: Arc<BackgroundBudget>,
    pub(crate) settings: CompactionSettings,
}

impl RollupJob {
    pub(crate) async fn run(self) -> JobOutcome {
        let (Some(first), Some(last)) = (self.sources.first(), self.sources.last()) else {
            return JobOutcome::Nothing("no checkpoints to roll up".to_owned());
        };
        let mut text = String::from("Checkpoints to merge, oldest first:\n");
        for checkpoint in &self.sources {
            // Writing to a String cannot fail.
            let _ = write!(text, "\n{}\n{}\n", entry_heading(checkpoint), checkpoint.summary.trim());
        }
        match super::summarize(&self.model, &self.budget, ROLLUP_PROMPT, text, &self.settings).await {
            Ok(answer) => {
                let fallback = format!(
                    "{} to {}",
                    first.covers_from_at.format(TIME_FORMAT),
                    last.covers_to_at.format(TIME_FORMAT)
                );
                let (title, summary) = parse_answer(&answer, &fallback);
                JobOutcome::Rollup(
                    NewRollup::new(self.agent, self.conversation, (first.seq, last.seq), title, summary)
                        .with_model(self.model.name()),
                )
            }
            Err(reason) => JobOutcome::Nothing(reason),
        }
    }
}

/// The instructions of a cut.
const CUT_PROMPT: &str = "You write the chronicle of a long chat conversation between people and an AI \
     agent: one entry per stretch of messages, so the agent can carry on later without them. Answer \
     with a first line `TITLE: ` followed by a short title (under ten words) naming what this stretch \
     was about, then 2 to 5 short paragraphs: who took part and what each wanted, what was decided or \
     promised (including by the agent), questions still open, work started and its results, \
     preferences and mood. Keep names, numbers, dates and ids exactly. Leave out greetings and small \
     talk. Earlier entries are given for context only: do not repeat them.";

/// The instructions of a rollup.
const ROLLUP_PROMPT: &str = "You condense several consecutive entries of a chat conversation's chronicle \
     into one entry that replaces them. Answer with a first line `TITLE: ` followed by a short title \
     (under ten words), then 2 to 5 short paragraphs keeping what still matters: people, decisions, \
     commitments, open questions, results. Keep names, numbers, dates and ids exactly.";

/// The previous checkpoints, as context for the summariser.
fn narrative(checkpoints: &[Checkpoint]) -> String {
    if checkpoints.is_empty() {
        return String::new();
    }
    let mut text = String::from("Earlier chronicle entries (context only):\n");
    for checkpoint in checkpoints {
        let _ = write!(text, "\n{}\n{}\n", entry_heading(checkpoint), preview(checkpoint.summary.trim(), 2000));
    }
    text.push_str("\n---\n\n");
    text
}

/// Logged messages as a transcript: `[time | sender] text`, notices marked as such.
fn transcript(messages: &[LoggedMessage]) -> String {
    let mut out = String::new();
    for logged in messages {
        let message = &logged.message;
        let who = match message.role {
            Role::System => "notice".to_owned(),
            _ => message.sender.clone(),
        };
        let _ =
            writeln!(out, "{}", stamped(message.created_at, &who, &preview(&message.text, TRANSCRIPT_MESSAGE_BYTES)));
    }
    out
}

/// The title and summary of a model's answer: a `TITLE:` line (else `fallback`), then the text.
pub(crate) fn parse_answer(answer: &str, fallback: &str) -> (String, String) {
    let trimmed = answer.trim();
    let (first, rest) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
    let heading = first.trim().trim_start_matches(['#', '*', ' ']);
    let title = heading
        .get(..6)
        .filter(|prefix| prefix.eq_ignore_ascii_case("title:"))
        .map(|_| heading[6..].trim().trim_matches('*').trim());
    match title {
        Some(title) if !title.is_empty() => {
            let summary = rest.trim();
            let summary = if summary.is_empty() { title } else { summary };
            (preview(&one_line(title, TITLE_BYTES), TITLE_BYTES), summary.to_owned())
        }
        _ => (fallback.to_owned(), trimmed.to_owned()),
    }
}

/// The title of a span with no better one: its time range.
pub(crate) fn span_title(messages: &[LoggedMessage]) -> String {
    match (messages.first(), messages.last()) {
        (Some(first), Some(last)) => {
            format!("{} messages, {}", messages.len(), time_range(first.message.created_at, last.message.created_at))
        }
        _ => "no messages".to_owned(),
    }
}

/// The text of a checkpoint that could not be summarised.
pub(crate) fn unsummarized_notice(messages: usize, reason: &str) -> String {
    format!(
        "[unsummarized] These {messages} messages were not summarised ({reason}). They are still in the \
         conversation log: if something from this stretch matters, ask a branch to `expand` this checkpoint."
    )
}

// -------------------------------------------------------------------------------------------
// The prompt view

/// `2026-01-02 10:00 UTC to 11:30 UTC`, or with the second date when it differs.
fn time_range(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    if from.date_naive() == to.date_naive() {
        format!("{} to {}", from.format(TIME_FORMAT), to.format("%H:%M UTC"))
    } else {
        format!("{} to {}", from.format(TIME_FORMAT), to.format(TIME_FORMAT))
    }
}

/// `#7 Title (2026-01-02 10:00 UTC to 11:30 UTC, 40 messages)`, with the kind when notable.
fn entry_heading(checkpoint: &Checkpoint) -> String {
    let mut notes = vec![
        time_range(checkpoint.covers_from_at, checkpoint.covers_to_at),
        format!("{} messages", checkpoint.message_count),
    ];
    if let Some((first, last)) = checkpoint.rolls_up {
        notes.push(format!("rollup of #{first}-#{last}"));
    }
    if checkpoint.unsummarized {
        notes.push("unsummarized".to_owned());
    }
    format!("#{} {} ({})", checkpoint.seq, checkpoint.title, notes.join(", "))
}

/// The "Session Chronicle" section of the system prompt, or nothing without checkpoints.
///
/// A pure function of the checkpoints (no clock, no live state), so the same durable state
/// renders the same bytes, before and after a restart. The entries are the rollups and the
/// level-0 checkpoints no rollup covers, at most `view_older + view_recent` of the newest, in
/// order. Over the token budget, the oldest entries are collapsed to their heading one by one,
/// then dropped; the header always stays.
pub(crate) fn render_view(checkpoints: &[Checkpoint], settings: &ChronicleSettings) -> String {
    let level0: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.level == 0).collect();
    let (Some(first), Some(last)) =
        (level0.iter().map(|c| c.covers_from_at).min(), level0.iter().map(|c| c.covers_to_at).max())
    else {
        return String::new();
    };
    let mut entries: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.is_current()).collect();
    entries.sort_by_key(|c| (c.covers_from_seq, c.seq));
    let shown = entries.len().min(settings.view_older + settings.view_recent);
    let mut entries: Vec<&Checkpoint> = entries.split_off(entries.len() - shown);
    let total: u64 = level0.iter().map(|c| c.message_count).sum();
    let unsummarized = level0.iter().filter(|c| c.unsummarized).count();
    let header = |shown: usize| {
        format!(
            "## Session Chronicle\n\nEarlier parts of this conversation, as checkpoints: {} in {} checkpoint(s) \
             covering {total} messages ({shown} shown, {unsummarized} unsummarized). Call `{CHRONICLE_TOOL}` to \
             list checkpoints or open one in full; a branch can also read a checkpoint's original messages.\n",
            time_range(first, last),
            level0.len(),
        )
    };
    let full =
        |c: &Checkpoint| format!("\n### {}\n{}\n", entry_heading(c), preview(c.summary.trim(), ENTRY_SUMMARY_BYTES));
    let collapsed = |c: &Checkpoint| format!("\n- {}\n", entry_heading(c));
    let budget = settings.view_budget_tokens;
    let mut collapsed_count = 0;
    loop {
        let mut view = header(entries.len());
        for (index, checkpoint) in entries.iter().enumerate() {
            view.push_str(&if index < collapsed_count { collapsed(checkpoint) } else { full(checkpoint) });
        }
        if compactor::tokens(view.len()) <= budget || entries.is_empty() {
            return view.trim_end().to_owned();
        }
        if collapsed_count < entries.len() {
            collapsed_count += 1;
        } else {
            entries.remove(0);
            collapsed_count -= 1;
        }
    }
}

// -------------------------------------------------------------------------------------------
// The tool

/// Arguments of `chronicle`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChronicleArgs {
    #[serde(default = "list_action")]
    action: String,
    #[serde(default, alias = "checkpoint", alias = "id")]
    seq: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<u64>,
}

fn list_action() -> String {
    "list".to_owned()
}

/// The `chronicle` tool: `list` and `open` for the channel, `expand` too for branches.
pub(crate) fn chronicle_tool_spec(expand: bool) -> ToolSpec {
    let (description, actions) = if expand {
        (
            "Look through this conversation's chronicle (checkpoints summarising its older messages): `list` \
             checkpoints (newest first), `open` one to read its full summary, or `expand` one to read its original \
             messages (up to 100; pass `after` with the last message number to read on).",
            json!(["list", "open", "expand"]),
        )
    } else {
        (
            "Look through this conversation's chronicle (checkpoints summarising its older messages): `list` \
             checkpoints (newest first) or `open` one to read its full summary. To read a checkpoint's original \
             messages, ask a branch.",
            json!(["list", "open"]),
        )
    };
    let mut properties = json!({
        "action": { "type": "string", "enum": actions },
        "seq": { "type": "integer", "description": "The checkpoint number, for `open` and `expand`." },
        "limit": { "type": "integer", "description": "How many to show (list: default 20, at most 50)." }
    });
    if expand && let Some(map) = properties.as_object_mut() {
        map.insert(
            "after".to_owned(),
            json!({ "type": "integer", "description": "For `expand`: continue after this message number." }),
        );
    }
    ToolSpec::new(
        CHRONICLE_TOOL,
        description,
        json!({ "type": "object", "properties": properties, "required": ["action"] }),
    )
}

/// `list`: the newest checkpoints first, one line each.
fn list(checkpoints: &[Checkpoint], limit: Option<usize>) -> String {
    if checkpoints.is_empty() {
        return "This conversation has no checkpoints yet.".to_owned();
    }
    let limit = limit.unwrap_or(LIST_DEFAULT).clamp(1, LIST_MAX);
    let mut out = format!("{} checkpoint(s), newest first:\n", checkpoints.len());
    for checkpoint in checkpoints.iter().rev().take(limit) {
        let rolled = checkpoint.rolled_up_into.map(|into| format!(", in rollup #{into}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "- #{} level {} {}: {} ({}, {} messages{rolled})",
            checkpoint.seq,
            checkpoint.level,
            checkpoint.kind,
            checkpoint.title,
            time_range(checkpoint.covers_from_at, checkpoint.covers_to_at),
            checkpoint.message_count
        );
    }
    if checkpoints.len() > limit {
        let _ = writeln!(out, "({} older not shown)", checkpoints.len() - limit);
    }
    out
}

/// `open`: one checkpoint in full.
fn open(checkpoint: &Checkpoint) -> String {
    format!(
        "{}\nkind: {}, level {}\n\n{}",
        entry_heading(checkpoint),
        checkpoint.kind,
        checkpoint.level,
        checkpoint.summary
    )
}

/// The channel's `chronicle` call, answered from the checkpoints it keeps (no store read).
pub(crate) fn channel_call(checkpoints: &[Checkpoint], args: ChronicleArgs) -> String {
    match args.action.as_str() {
        "list" => list(checkpoints, args.limit),
        "open" => match args.seq.and_then(|seq| checkpoints.iter().find(|c| c.seq == seq)) {
            Some(checkpoint) => open(checkpoint),
            None => "`open` needs the `seq` of an existing checkpoint; `list` shows them.".to_owned(),
        },
        "expand" => "Only a branch can read a checkpoint's original messages: start one with `branch`.".to_owned(),
        other => format!("Unknown action `{other}`: use `list` or `open`."),
    }
}

/// The branches' `chronicle` tool, reading the store.
pub(crate) struct BranchChronicleTool {
    pub(crate) chronicle: Arc<dyn Chronicle>,
    pub(crate) agent: AgentId,
    pub(crate) conversation: ConversationId,
}

#[async_trait]
impl TypedTool for BranchChronicleTool {
    const NAME: &'static str = CHRONICLE_TOOL;
    type Args = ChronicleArgs;

    fn description(&self) -> String {
        chronicle_tool_spec(true).description
    }

    fn parameters(&self) -> serde_json::Value {
        chronicle_tool_spec(true).parameters
    }

    async fn run(&self, args: ChronicleArgs) -> Result<String, ToolError> {
        let failed = |error: spacebot_core::StoreError| ToolError::Failed(error.to_string());
        if args.action == "list" {
            let checkpoints = self.chronicle.checkpoints(&self.agent, &self.conversation).await.map_err(failed)?;
            return Ok(list(&checkpoints, args.limit));
        }
        if args.action != "open" && args.action != "expand" {
            return Err(ToolError::InvalidArguments(format!(
                "unknown action `{}`: use `list`, `open` or `expand`",
                args.action
            )));
        }
        let Some(seq) = args.seq else {
            return Err(ToolError::InvalidArguments(format!("`{}` needs the checkpoint's `seq`", args.action)));
        };
        let Some(checkpoint) = self.chronicle.checkpoint(&self.agent, &self.conversation, seq).await.map_err(failed)?
        else {
            return Err(ToolError::InvalidArguments(format!("there is no checkpoint #{seq}; `list` shows them")));
        };
        if args.action == "open" {
            return Ok(open(&checkpoint));
        }
        let after = args.after.unwrap_or(0).max(checkpoint.covers_from_seq.saturating_sub(1));
        let limit = args.limit.unwrap_or(EXPAND_MAX).clamp(1, EXPAND_MAX);
        let messages = self
            .chronicle
            .messages_after(&self.agent, &self.conversation, after, limit)
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|m| m.seq <= checkpoint.covers_to_seq)
            .collect::<Vec<_>>();
        if messages.is_empty() {
            return Ok(format!("Checkpoint #{seq} has no messages after {after}."));
        }
        let mut out = format!("Messages of checkpoint #{seq} ({}):\n", entry_heading(&checkpoint));
        for logged in &messages {
            let _ = writeln!(
                out,
                "[{} | {} | {}] {}",
                logged.seq,
                logged.message.created_at.format(TIME_FORMAT),
                logged.message.sender,
                logged.message.text
            );
        }
        if let Some(last) = messages.last().filter(|last| last.seq < checkpoint.covers_to_seq) {
            let _ = writeln!(out, "(more: call `expand` again with `after` = {})", last.seq);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn checkpoint(seq: u64, from: u64, to: u64, summary_bytes: usize) -> Checkpoint {
        let mut c = Checkpoint::new(AgentId::new("a"), ConversationId::new("c"), seq, CheckpointKind::Interval);
        let at = |n: u64| Utc.timestamp_opt(1_700_000_000 + n as i64 * 60, 0).single().expect("valid time");
        c.title = format!("part {seq}");
        c.summary = "s".repeat(summary_bytes);
        (c.covers_from_seq, c.covers_to_seq) = (from, to);
        (c.covers_from_at, c.covers_to_at) = (at(from), at(to));
        c.message_count = to - from + 1;
        c
    }

    fn settings() -> CompactionSettings {
        CompactionSettings::default()
    }

    fn args(arguments: serde_json::Value) -> ChronicleArgs {
        spacebot_core::parse_tool_args(CHRONICLE_TOOL, &arguments).expect("valid arguments")
    }

    #[test]
    fn triggers_follow_the_thresholds() {
        let at = |uncovered, has_checkpoints, usage, live_tokens| Pressure {
            uncovered,
            has_checkpoints,
            usage,
            live_tokens,
            window: 10_000,
        };
        assert_eq!(trigger(&settings(), at(0, true, 0.99, 0)), None);
        assert_eq!(trigger(&settings(), at(39, true, 0.1, 100)), None);
        assert_eq!(trigger(&settings(), at(40, true, 0.1, 100)), Some(CheckpointKind::Interval));
        assert_eq!(trigger(&settings(), at(5, true, 0.1, 1200)), Some(CheckpointKind::Interval));
        assert_eq!(trigger(&settings(), at(5, true, 0.8, 100)), Some(CheckpointKind::Pressure));
        assert_eq!(trigger(&settings(), at(401, false, 0.1, 100)), Some(CheckpointKind::Bootstrap));
        assert_eq!(trigger(&settings(), at(401, true, 0.1, 100)), Some(CheckpointKind::Interval));
    }

    #[test]
    fn rollups_take_the_oldest_batch_once_the_threshold_is_reached() {
        let mut checkpoints: Vec<Checkpoint> = (1..=11).map(|n| checkpoint(n, n * 10, n * 10 + 9, 10)).collect();
        assert!(rollup_sources(&checkpoints, &ChronicleSettings::default()).is_none());
        checkpoints.push(checkpoint(12, 120, 129, 10));
        let sources = rollup_sources(&checkpoints, &ChronicleSettings::default()).expect("12 wait");
        assert_eq!(sources.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn answers_give_a_title_line_and_the_paragraphs() {
        assert_eq!(
            parse_answer("TITLE: Trip planning\n\nAlice wants to go.\n\nBob agrees.", "x"),
            ("Trip planning".to_owned(), "Alice wants to go.\n\nBob agrees.".to_owned())
        );
        assert_eq!(parse_answer("**Title:** Budget\nNumbers.", "x").0, "Budget");
        assert_eq!(parse_answer("Just text.", "fallback"), ("fallback".to_owned(), "Just text.".to_owned()));
    }

    #[test]
    fn the_view_keeps_within_its_budget_collapsing_then_dropping_the_oldest() {
        let settings = ChronicleSettings::default();
        let checkpoints: Vec<Checkpoint> = (1..=30).map(|n| checkpoint(n, n * 10, n * 10 + 9, 1000)).collect();
        let view = render_view(&checkpoints, &settings);
        assert!(compactor::tokens(view.len()) <= settings.view_budget_tokens, "{} tokens", view.len() / 4);
        assert!(view.starts_with("## Session Chronicle"), "{view}");
        assert!(view.contains("30 checkpoint(s) covering 300 messages"), "{view}");
        // The newest entry is shown in full, the oldest of the 20 collapsed, older ones not shown.
        assert!(view.contains("### #30 part 30"), "{view}");
        assert!(!view.contains("#10 part 10 ("), "{view}");
        assert!(view.contains("- #11 part 11") || !view.contains("#11 part 11"), "{view}");
        assert_eq!(render_view(&checkpoints, &settings), view, "the same state renders the same bytes");
        assert_eq!(render_view(&[], &settings), "");
        // Huge summaries: only the header and what fits remain.
        let tiny = ChronicleSettings { view_budget_tokens: 100, ..ChronicleSettings::default() };
        let view = render_view(&checkpoints, &tiny);
        assert!(view.starts_with("## Session Chronicle") && !view.contains("###"), "{view}");
    }

    #[test]
    fn rollups_stand_in_for_their_sources() {
        let mut checkpoints: Vec<Checkpoint> = (1..=3).map(|n| checkpoint(n, n * 10, n * 10 + 9, 10)).collect();
        let mut rollup = checkpoint(4, 10, 29, 10);
        rollup.kind = CheckpointKind::Rollup;
        rollup.level = 1;
        rollup.rolls_up = Some((1, 2));
        checkpoints[0].rolled_up_into = Some(4);
        checkpoints[1].rolled_up_into = Some(4);
        checkpoints.push(rollup);
        let view = render_view(&checkpoints, &ChronicleSettings::default());
        assert!(view.contains("### #4 part 4") && view.contains("rollup of #1-#2"), "{view}");
        assert!(!view.contains("### #1 ") && view.contains("### #3 part 3"), "{view}");
        assert!(view.contains("3 checkpoint(s) covering 30 messages (2 shown"), "{view}");
    }

    #[test]
    fn the_channel_tool_lists_newest_first_and_opens_one() {
        let checkpoints: Vec<Checkpoint> = (1..=60).map(|n| checkpoint(n, n * 10, n * 10 + 9, 10)).collect();
        let listed = channel_call(&checkpoints, args(json!({ "action": "list" })));
        assert!(listed.contains("- #60 ") && listed.contains("- #41 ") && !listed.contains("- #40 "), "{listed}");
        let many = channel_call(&checkpoints, args(json!({ "action": "list", "limit": 500 })));
        assert_eq!(many.lines().filter(|line| line.starts_with("- #")).count(), LIST_MAX);
        let opened = channel_call(&checkpoints, args(json!({ "action": "open", "seq": 7 })));
        assert!(opened.starts_with("#7 part 7") && opened.ends_with("ssssssssss"), "{opened}");
        assert!(channel_call(&checkpoints, args(json!({ "action": "open", "seq": 99 }))).contains("existing"));
        assert!(channel_call(&checkpoints, args(json!({ "action": "expand", "seq": 1 }))).contains("branch"));
    }
}

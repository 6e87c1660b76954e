//! The compactor: background summaries at 80% and 85% of the context window, truncation at 95%,
//! one compaction at a time, a channel that keeps answering meanwhile, summaries that keep the
//! messages added while they ran, failures that change nothing, and cuts that never separate a
//! tool call from its result.
//!
//! The channel model reports a context window the test can change, so each test builds some
//! history with a large window, then sets the window so that the context after the next turn is
//! at exactly the share it wants. The context is measured the way the channel measures it: four
//! bytes per token of the system prompt, the tool definitions and each history message.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use spacebot_agent::{CompactionSettings, REACT_TOOL, REPLY_TOOL};
use spacebot_core::{
    ChatMessage, ChatRequest, InboundMessage, LlmErrorKind, ProcessChange, ProcessEvent, ProcessKind, TerminalState,
};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{
    CONV, Harness, Windowed, WindowedAgent, envelope, idle, start, tool_results, user, windowed_agent,
};

/// The reply every channel turn ends with.
const OK: &str = "ok";
/// A window large enough that nothing is compacted.
const LARGE: usize = 10_000_000;

fn tokens(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

/// Estimated tokens of a request's system prompt and tools: the part compaction can't shrink.
fn fixed_tokens(request: &ChatRequest) -> usize {
    let tools: usize =
        request.tools.iter().map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len()).sum();
    tokens(request.system.len()) + tokens(tools)
}

/// Estimated tokens of each message.
fn message_tokens(messages: &[ChatMessage]) -> Vec<usize> {
    messages.iter().map(|m| tokens(m.char_len())).collect()
}

/// The text of the `i`th test message: about 100 tokens, numbered so transcripts can be checked.
fn text(i: usize) -> String {
    format!("message {i:02} {}", "x".repeat(380))
}

struct Setup {
    channel: Arc<ScriptedModel>,
    compactor: Arc<ScriptedModel>,
    model: Arc<Windowed>,
    h: Harness,
    said: usize,
}

async fn setup(settings: CompactionSettings) -> Setup {
    let WindowedAgent { channel, compactor, model, profile } = windowed_agent(settings, OK, LARGE);
    let h = start(profile, Arc::new(MemoryLog::new())).await;
    Setup { channel, compactor, model, h, said: 0 }
}

impl Setup {
    /// The channel's history after the last turn: its last request's messages and the reply.
    fn history(&self) -> Vec<ChatMessage> {
        let mut messages = self.channel.last_request().expect("a turn ran").messages;
        messages.push(ChatMessage::assistant(OK));
        messages
    }

    /// The context after the last turn, in estimated tokens.
    fn context(&self) -> usize {
        let request = self.channel.last_request().expect("a turn ran");
        fixed_tokens(&request) + message_tokens(&self.history()).iter().sum::<usize>()
    }

    /// Says the next test message and waits for its turn. With `usage`, first sets the window
    /// so that the context after the turn is at that share of it (at least, and less than 0.1
    /// percentage points above).
    async fn turn(&mut self, usage: Option<f64>) -> InboundMessage {
        let message = self.h.say(CONV, &text(self.said));
        self.said += 1;
        let window = match usage {
            Some(share) => {
                let after = self.context() + tokens(envelope(&message).len()) + tokens(OK.len());
                (after as f64 / share).floor() as usize
            }
            None => LARGE,
        };
        self.model.window.store(window, Ordering::SeqCst);
        self.h.wait_turns(1).await;
        message
    }

    async fn turns(&mut self, count: usize) {
        for _ in 0..count {
            self.turn(None).await;
        }
    }

    fn compactions(&mut self) -> Vec<ProcessEvent> {
        self.h.process_events().into_iter().filter(|e| e.kind == ProcessKind::Compactor).collect()
    }

    fn started(&mut self) -> Vec<String> {
        self.compactions()
            .into_iter()
            .filter_map(|e| match e.change {
                ProcessChange::Started { description } => Some(description),
                _ => None,
            })
            .collect()
    }

    fn finished(&mut self) -> Vec<(TerminalState, String)> {
        self.compactions()
            .into_iter()
            .filter_map(|e| match e.change {
                ProcessChange::Finished { state, summary } => Some((state, summary)),
                _ => None,
            })
            .collect()
    }
}

/// Where a cut covering `share` of `history`'s tokens ends: the first user message reached
/// once the share is covered (the histories here have turn boundaries every two messages).
fn expected_cut(history: &[ChatMessage], share: f64) -> usize {
    let sizes = message_tokens(history);
    let target = (sizes.iter().sum::<usize>() as f64 * share).ceil() as usize;
    let mut covered = 0;
    for (end, size) in sizes.iter().enumerate() {
        if covered >= target && matches!(history[end], ChatMessage::User { .. }) {
            return end;
        }
        covered += size;
    }
    panic!("no cut for {share}")
}

/// The number in "the oldest N messages" of a compactor's description.
fn span_of(description: &str) -> usize {
    let rest = description.split("the oldest ").nth(1).unwrap_or_else(|| panic!("{description}"));
    rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{description}"))
}

/// Every tool result follows the assistant message that made its call (with only other results
/// between them), and every call has its result.
fn assert_pairs_intact(request: &ChatRequest) {
    let messages = &request.messages;
    let mut open: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message {
            ChatMessage::ToolResult { call_id, .. } => {
                let position = open.iter().position(|id| id == call_id);
                assert!(position.is_some(), "message {i}: result {call_id} without its call: {messages:#?}");
                open.retain(|id| id != call_id);
            }
            other => {
                assert!(open.is_empty(), "message {i}: calls {open:?} left without results: {messages:#?}");
                if let ChatMessage::Assistant { tool_calls, .. } = other {
                    open = tool_calls.iter().map(|call| call.id.clone()).collect();
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn below_80_percent_nothing_happens_and_at_80_the_oldest_30_percent_is_summarised() {
    let mut s = setup(CompactionSettings::default()).await;
    s.compactor.respond_with(|_| ScriptedTurn::hang());
    s.turns(10).await;
    s.turn(Some(0.79)).await;
    idle().await;
    assert!(s.compactions().is_empty(), "nothing below 80%: {:#?}", s.compactions());
    assert_eq!(s.compactor.request_count(), 0);

    s.turn(Some(0.80)).await;
    idle().await;
    let started = s.started();
    assert_eq!(started.len(), 1, "{started:#?}");
    assert!(started[0].contains("at 80% of"), "{}", started[0]);
    let history = s.history();
    let end = expected_cut(&history, 0.3);
    assert_eq!(span_of(&started[0]), end, "{}", started[0]);
    assert_eq!(end, 8, "24 messages of ~100 tokens: 30% ends after four exchanges");

    assert_eq!(s.compactor.request_count(), 1);
    let summary_request = s.compactor.last_request().expect("a summary request");
    assert!(summary_request.tools.is_empty(), "the summariser gets no tools");
    let transcript = serde_json::to_string(&summary_request.messages).expect("json");
    assert!(transcript.contains("message 00") && transcript.contains("message 03"), "{transcript}");
    assert!(!transcript.contains("message 04"), "only the span is summarised: {transcript}");
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_85_percent_the_summary_covers_the_oldest_half() {
    let mut s = setup(CompactionSettings::default()).await;
    s.compactor.respond_with(|_| ScriptedTurn::hang());
    s.turns(11).await;
    s.turn(Some(0.86)).await;
    idle().await;
    let started = s.started();
    assert_eq!(started.len(), 1, "{started:#?}");
    assert_eq!(span_of(&started[0]), expected_cut(&s.history(), 0.5), "{}", started[0]);
    assert_eq!(span_of(&started[0]), 12);
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_95_percent_the_oldest_half_is_truncated_at_once_with_a_marker() {
    let mut s = setup(CompactionSettings::default()).await;
    s.compactor.respond_with(|_| ScriptedTurn::text("never asked"));
    s.turns(11).await;
    s.turn(Some(0.96)).await;
    let history = s.history();
    let end = expected_cut(&history, 0.5);
    assert_eq!(end, 12);

    let started = s.started();
    assert_eq!(started.len(), 1, "{started:#?}");
    assert!(started[0].starts_with("truncating the oldest 12 messages"), "{}", started[0]);
    assert_eq!(s.finished(), vec![(TerminalState::Done, "removed 12 messages".to_owned())]);
    idle().await;
    assert_eq!(s.compactor.request_count(), 0, "truncation makes no model call");

    let next = s.turn(None).await;
    let request = s.channel.last_request().expect("request");
    let ChatMessage::User { content: marker, .. } = &request.messages[0] else { panic!("{:#?}", request.messages) };
    assert!(marker.starts_with("[12 earlier messages of this conversation were removed"), "{marker}");
    let mut expected = vec![request.messages[0].clone()];
    expected.extend(history[end..].iter().cloned());
    expected.push(user(&next));
    assert_eq!(request.messages, expected);
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_channel_answers_while_a_summary_runs_and_the_summary_keeps_later_messages() {
    let mut s = setup(CompactionSettings::default()).await;
    s.compactor.push(ScriptedTurn::text("SUMMARY: people said numbered things.").delay(Duration::from_secs(60)));
    s.turns(11).await;
    s.turn(Some(0.81)).await;
    let before = s.history();
    let end = expected_cut(&before, 0.3);
    assert_eq!(s.started().len(), 1);

    // The summary takes a minute; the channel answers at once meanwhile, with the full history.
    let asked = Instant::now();
    let meanwhile = s.turn(None).await;
    assert!(asked.elapsed() < Duration::from_secs(1), "the reply waited {:?} for the summary", asked.elapsed());
    let mut full = before.clone();
    full.push(user(&meanwhile));
    assert_eq!(s.channel.last_request().expect("request").messages, full, "nothing is removed before the summary");
    assert!(s.finished().is_empty(), "the summary is still running");

    tokio::time::sleep(Duration::from_secs(60)).await;
    idle().await;
    let finished = s.finished();
    assert_eq!(finished.len(), 1, "{finished:#?}");
    assert_eq!(finished[0].0, TerminalState::Done, "{finished:#?}");

    let after = s.turn(None).await;
    let request = s.channel.last_request().expect("request");
    let mut expected = vec![ChatMessage::user(format!(
        "[summary of {end} earlier messages of this conversation]\nSUMMARY: people said numbered things."
    ))];
    expected.extend(before[end..].iter().cloned());
    expected.extend([user(&meanwhile), ChatMessage::assistant(OK), user(&after)]);
    assert_eq!(request.messages, expected);
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_compaction_at_a_time_and_truncation_cancels_a_summary_in_flight() {
    let mut s = setup(CompactionSettings::default()).await;
    s.compactor.respond_with(|_| ScriptedTurn::hang());
    s.turns(10).await;
    s.turn(Some(0.80)).await;
    s.turn(Some(0.84)).await;
    s.turn(Some(0.90)).await;
    idle().await;
    assert_eq!(s.started().len(), 1, "{:#?}", s.started());
    assert_eq!(s.compactor.request_count(), 1, "one summary at a time");

    s.turn(Some(0.97)).await;
    let started = s.started();
    assert_eq!(started.len(), 2, "{started:#?}");
    assert!(started[1].starts_with("truncating"), "{}", started[1]);
    let finished = s.finished();
    assert_eq!(finished.len(), 2, "{finished:#?}");
    assert_eq!(finished[0].0, TerminalState::Cancelled, "the summary is cancelled: {finished:#?}");
    assert_eq!(finished[1].0, TerminalState::Done, "{finished:#?}");
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_summary_leaves_the_history_intact_and_waits_before_retrying() {
    let settings = CompactionSettings::default().with_retry_delay(Duration::from_secs(60));
    let mut s = setup(settings).await;
    s.compactor.respond_with(|_| ScriptedTurn::error(LlmErrorKind::ServerError));
    s.turns(10).await;
    s.turn(Some(0.82)).await;
    idle().await;
    let finished = s.finished();
    assert_eq!(finished.len(), 1, "{finished:#?}");
    assert_eq!(finished[0].0, TerminalState::Failed);
    assert!(finished[0].1.contains("compactor model failed"), "{}", finished[0].1);

    let before = s.history();
    let next = s.turn(Some(0.83)).await;
    let mut expected = before;
    expected.push(user(&next));
    assert_eq!(s.channel.last_request().expect("request").messages, expected, "nothing was removed");
    assert_eq!(s.started().len(), 1, "no new attempt within the retry delay");

    tokio::time::sleep(Duration::from_secs(60)).await;
    s.turn(Some(0.84)).await;
    idle().await;
    assert_eq!(s.started().len(), 2, "a new attempt after the retry delay");
    assert_eq!(s.compactor.request_count(), 2);
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cuts_never_separate_a_tool_call_from_its_result() {
    let mut s = setup(CompactionSettings::default().with_retry_delay(Duration::ZERO)).await;
    // Each turn: two reactions in one response (a call with two results), then the reply.
    s.channel.respond_with(|request| {
        if tool_results(request).is_empty() {
            ScriptedTurn::tool_calls(vec![
                (REACT_TOOL.to_owned(), json!({ "emoji": "👍" })),
                (REACT_TOOL.to_owned(), json!({ "emoji": "👀" })),
            ])
        } else {
            ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": OK }))
        }
    });
    s.compactor.respond_with(|request| {
        let delay = Duration::from_secs(request.messages.len() as u64 % 3);
        ScriptedTurn::text("short summary").delay(delay)
    });
    // Shares of the window the context is pushed to (roughly: the estimate of a turn's tool
    // traffic here is generous).
    let shares = [None, Some(0.81), None, Some(0.9), Some(0.5), Some(1.0), None, Some(0.86), Some(1.2)];
    for round in 0..60 {
        let share = shares[round % shares.len()];
        let message = s.h.say(CONV, &text(round));
        let window = match share {
            Some(share) => {
                let request = s.channel.last_request();
                let now = request.as_ref().map_or(0, |r| {
                    fixed_tokens(r) + message_tokens(&r.messages).iter().sum::<usize>() + tokens(OK.len())
                });
                ((now + tokens(envelope(&message).len()) + 60) as f64 / share) as usize
            }
            None => LARGE,
        };
        s.model.window.store(window.max(1), Ordering::SeqCst);
        s.h.wait_turns(1).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let requests = s.channel.requests();
    for request in &requests {
        assert_pairs_intact(request);
    }
    let started = s.started();
    assert!(started.iter().any(|d| d.starts_with("truncating")), "{started:#?}");
    assert!(started.iter().any(|d| d.starts_with("summarising")), "{started:#?}");
    let summarised = requests.iter().any(
        |r| matches!(r.messages.first(), Some(ChatMessage::User { content, .. }) if content.starts_with("[summary of")),
    );
    assert!(summarised, "some summary was applied");
    let tool_messages = requests
        .last()
        .map_or(0, |r| r.messages.iter().filter(|m| matches!(m, ChatMessage::ToolResult { .. })).count());
    assert!(tool_messages > 0, "tool calls and results stay in the history");
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_cut_inside_one_long_turn_falls_before_a_call_never_before_its_result() {
    let mut s = setup(CompactionSettings::default()).await;
    s.turn(None).await;
    // One turn of twelve tool calls with long arguments: over half the history, so the cut must
    // fall inside it.
    let lookup = || ScriptedTurn::tool_call("lookup", json!({ "query": "y".repeat(800) }));
    s.channel.push_all((0..12).map(|_| lookup()));
    s.channel.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": OK })));
    s.h.say(CONV, &text(1));
    s.model.window.store(1000, Ordering::SeqCst);
    s.h.wait_turns(1).await;
    assert!(s.started().iter().any(|d| d.starts_with("truncating")), "{:#?}", s.started());

    s.turn(None).await;
    let request = s.channel.last_request().expect("request");
    assert_pairs_intact(&request);
    assert!(
        matches!(&request.messages[1], ChatMessage::Assistant { tool_calls, .. } if !tool_calls.is_empty()),
        "the cut fell inside the long turn, before a call: {:#?}",
        request.messages
    );
    s.h.shutdown().await;
}

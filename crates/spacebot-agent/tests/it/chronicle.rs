//! Chronicle mode: durable checkpoints of the conversation log cut in the background (the
//! channel keeps answering), contiguous and never overlapping, committed by compare-and-set,
//! discarded when the history's head moved, emergency checkpoints without a model call, rollups,
//! the "Session Chronicle" view (within budget, byte-stable, the same after a restart), the
//! restart that reloads only what no checkpoint covers, and the `chronicle` tool.
//!
//! Every test runs over a `MemoryLog` (the agent crate never links a database); the SQLite
//! store's side of the contract is tested in `spacebot-memory`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use spacebot_agent::{
    AgentProfile, BRANCH_TOOL, CHRONICLE_TOOL, ChronicleSettings, CompactionMode, CompactionSettings,
};
use spacebot_core::{
    ChatMessage, ChatRequest, Checkpoint, CheckpointKind, ConversationLog, LlmErrorKind, LoggedMessage, NewCheckpoint,
    ProcessChange, ProcessKind, TerminalState,
};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{
    AGENT, CONV, Harness, Windowed, WindowedAgent, envelope, idle, start, tool_names, tool_results, windowed_agent,
};

/// The reply every channel turn ends with.
const OK: &str = "ok";
/// A window large enough that only message counts trigger checkpoints.
const LARGE: usize = 10_000_000;

/// The text of the `i`th test message: about 100 tokens, numbered.
fn text(i: usize) -> String {
    format!("message {i:02} {}", "x".repeat(380))
}

/// A compactor answer with a title.
fn summary(title: &str) -> ScriptedTurn {
    ScriptedTurn::text(format!("TITLE: {title}\n\nAlice sent numbered messages and the agent said ok."))
}

struct Setup {
    channel: Arc<ScriptedModel>,
    compactor: Arc<ScriptedModel>,
    model: Arc<Windowed>,
    profile: AgentProfile,
    log: Arc<MemoryLog>,
    h: Harness,
    said: usize,
}

fn chronicle_settings(chronicle: ChronicleSettings) -> CompactionSettings {
    CompactionSettings::default().with_mode(CompactionMode::Chronicle).with_chronicle(chronicle)
}

async fn setup(settings: CompactionSettings) -> Setup {
    let WindowedAgent { channel, compactor, model, profile } = windowed_agent(settings, OK, LARGE);
    let log = Arc::new(MemoryLog::new());
    let h = start(profile.clone(), log.clone()).await;
    Setup { channel, compactor, model, profile, log, h, said: 0 }
}

impl Setup {
    /// Says the next test message and waits for its turn.
    async fn turn(&mut self) {
        self.h.say(CONV, &text(self.said));
        self.said += 1;
        self.h.wait_turns(1).await;
    }

    async fn turns(&mut self, count: usize) {
        for _ in 0..count {
            self.turn().await;
        }
    }

    /// The conversation's logged messages, with their numbers.
    fn logged(&self) -> Vec<LoggedMessage> {
        self.log.logged().into_iter().filter(|m| m.message.conversation.as_str() == CONV).collect()
    }

    fn checkpoints(&self) -> Vec<Checkpoint> {
        self.log.checkpoints()
    }

    fn last_request(&self) -> ChatRequest {
        self.channel.last_request().expect("a turn ran")
    }

    fn compactor_events(&mut self) -> Vec<ProcessChange> {
        self.h.process_events().into_iter().filter(|e| e.kind == ProcessKind::Compactor).map(|e| e.change).collect()
    }

    fn finished(&mut self) -> Vec<(TerminalState, String)> {
        self.compactor_events()
            .into_iter()
            .filter_map(|change| match change {
                ProcessChange::Finished { state, summary } => Some((state, summary)),
                _ => None,
            })
            .collect()
    }
}

/// The "Session Chronicle" section of a system prompt ("" without one).
fn view(system: &str) -> &str {
    system.find("## Session Chronicle").map_or("", |start| {
        let rest = &system[start..];
        rest.find("\n\n## Background").map_or(rest, |end| &rest[..end])
    })
}

/// Level-0 checkpoints cover the log without gap or overlap, from its first message.
fn assert_contiguous(checkpoints: &[Checkpoint], logged: &[LoggedMessage]) {
    let mut level0: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.level == 0).collect();
    level0.sort_by_key(|c| c.covers_from_seq);
    let mut expected_from = logged.first().map(|m| m.seq);
    for checkpoint in level0 {
        assert_eq!(
            Some(checkpoint.covers_from_seq),
            expected_from,
            "a gap or overlap at #{}: {checkpoints:#?}",
            checkpoint.seq
        );
        let covered =
            logged.iter().filter(|m| (checkpoint.covers_from_seq..=checkpoint.covers_to_seq).contains(&m.seq)).count()
                as u64;
        assert_eq!(covered, checkpoint.message_count, "#{}", checkpoint.seq);
        expected_from = logged.iter().map(|m| m.seq).find(|&seq| seq > checkpoint.covers_to_seq);
    }
}

#[tokio::test(start_paused = true)]
async fn forty_logged_messages_become_a_checkpoint_while_the_channel_keeps_answering() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default())).await;
    s.compactor.push(summary("The first forty").delay(Duration::from_secs(30)));
    s.turns(19).await;
    idle().await;
    assert_eq!(s.compactor.request_count(), 0, "38 messages: no checkpoint yet");
    s.turn().await;
    idle().await;
    assert_eq!(s.compactor.request_count(), 1, "the 40th message starts a cut");
    let request = s.compactor.last_request().expect("a summary request");
    assert!(request.tools.is_empty(), "the summariser gets no tools");
    let transcript = serde_json::to_string(&request.messages).expect("json");
    assert!(transcript.contains("message 00") && transcript.contains("message 19"), "{transcript}");

    // The summary takes 30 seconds; the channel answers meanwhile, seeing the whole history.
    s.turn().await;
    assert!(s.checkpoints().is_empty(), "nothing is committed before the summary arrives");
    assert_eq!(s.last_request().messages.len(), 41, "the 40 messages and the new one");

    tokio::time::sleep(Duration::from_secs(30)).await;
    idle().await;
    let checkpoints = s.checkpoints();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:#?}");
    let checkpoint = &checkpoints[0];
    let logged = s.logged();
    assert_eq!((checkpoint.level, checkpoint.kind), (0, CheckpointKind::Interval));
    assert_eq!((checkpoint.covers_from_seq, checkpoint.covers_to_seq), (logged[0].seq, logged[39].seq));
    assert_eq!(checkpoint.message_count, 40);
    assert_eq!(checkpoint.title, "The first forty");
    assert!(!checkpoint.unsummarized);
    assert_eq!(checkpoint.model.as_deref(), Some("scripted/compactor"));
    let finished = s.finished();
    assert_eq!(finished.len(), 1, "{finished:#?}");
    assert_eq!(finished[0].0, TerminalState::Done);
    assert!(finished[0].1.contains("checkpoint #1"), "{}", finished[0].1);

    // The covered messages left the live history: four stay (the last covered exchange and
    // the one answered during the summary), then the new message.
    s.turn().await;
    let request = s.last_request();
    assert_eq!(request.messages.len(), 5, "{:#?}", request.messages);
    assert_eq!(request.messages[0], ChatMessage::user(envelope_text(&s, 19)));
    let shown = view(&request.system);
    assert!(shown.contains("1 checkpoint(s) covering 40 messages") && shown.contains("#1 The first forty"), "{shown}");
    assert!(tool_names(&request).contains(&CHRONICLE_TOOL.to_owned()));
    s.h.shutdown().await;
}

/// The envelope the log-based history would carry for test message `i` (same sender and minute
/// as when it was sent, since the clock is paused).
fn envelope_text(s: &Setup, i: usize) -> String {
    let wanted = text(i);
    let logged = s.logged();
    let message = logged.iter().find(|m| m.message.text == wanted).expect("the message is logged");
    format!("[{} | {}] {}", message.message.created_at.format("%Y-%m-%d %H:%M UTC"), message.message.sender, wanted)
}

#[tokio::test(start_paused = true)]
async fn consecutive_checkpoints_are_contiguous_and_never_overlap() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default().with_interval(10, 0.12))).await;
    s.compactor.respond_with(|_| summary("a stretch"));
    s.turns(23).await;
    idle().await;
    let checkpoints = s.checkpoints();
    assert_eq!(checkpoints.len(), 4, "{checkpoints:#?}");
    assert!(checkpoints.iter().all(|c| c.message_count == 10 && c.level == 0));
    assert_contiguous(&checkpoints, &s.logged());
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_commit_that_does_not_follow_the_last_checkpoint_is_rejected() {
    let log = MemoryLog::new();
    // Six messages in one conversation, straight into the log.
    for i in 0..6 {
        let message = spacebot_core::StoredMessage::new(
            AGENT.into(),
            CONV.into(),
            spacebot_core::Role::Assistant,
            AGENT,
            format!("m{i}"),
        );
        log.record_reply(&message, &[]).await.expect("recorded");
    }
    let chronicle = log.chronicle().expect("the memory log keeps a chronicle");
    let logged = log.logged();
    let span = |from: usize, to: usize| {
        NewCheckpoint::over(CheckpointKind::Interval, &logged[from..=to], "t", "s").expect("a span")
    };
    chronicle.commit(span(0, 2)).await.expect("the first span starts at the first message");
    let overlap = chronicle.commit(span(1, 4)).await.expect_err("overlaps the first");
    assert!(overlap.is_superseded(), "{overlap}");
    let gap = chronicle.commit(span(4, 5)).await.expect_err("leaves message 3 out");
    assert!(gap.is_superseded(), "{gap}");
    let next = chronicle.commit(span(3, 5)).await.expect("follows the first");
    assert_eq!((next.seq, next.covers_from_seq, next.covers_to_seq), (2, logged[3].seq, logged[5].seq));
    let again = chronicle.commit(span(3, 5)).await.expect_err("committed already");
    assert!(again.is_superseded());
    assert_eq!(chronicle.covered_to(&AGENT.into(), &CONV.into()).await.expect("read"), logged[5].seq);
}

#[tokio::test(start_paused = true)]
async fn a_cut_whose_history_head_changed_meanwhile_is_discarded() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default().with_interval(10, 0.12))).await;
    s.compactor
        .push_all([summary("stale").delay(Duration::from_secs(30)), summary("fresh").delay(Duration::from_secs(60))]);
    s.turns(5).await;
    idle().await;
    assert_eq!(s.compactor.request_count(), 1, "ten messages start a cut");

    // `/new` clears the history while the summary is written.
    s.h.say(CONV, "/new");
    idle().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    idle().await;
    assert!(s.checkpoints().is_empty(), "the stale cut committed nothing: {:#?}", s.checkpoints());
    let finished = s.finished();
    assert_eq!(finished.len(), 1, "{finished:#?}");
    assert_eq!(finished[0].0, TerminalState::Cancelled);
    assert!(finished[0].1.contains("discarded"), "{}", finished[0].1);

    // The history the model sees is what `/new` left, not trimmed any further.
    s.turn().await;
    assert_eq!(s.last_request().messages.len(), 1, "{:#?}", s.last_request().messages);
    tokio::time::sleep(Duration::from_secs(60)).await;
    idle().await;
    // The next cut starts over from the first uncovered message.
    let checkpoints = s.checkpoints();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:#?}");
    assert_contiguous(&checkpoints, &s.logged());
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_emergency_truncation_records_only_the_dropped_span_without_a_model_call() {
    let never = ChronicleSettings::default().with_interval(10_000, 1.0);
    let mut s = setup(chronicle_settings(never)).await;
    s.compactor.respond_with(|_| summary("never asked"));
    s.turns(6).await;
    // After the seventh turn the context fills 96% of the window.
    let request = s.last_request();
    let tokens = |bytes: usize| bytes.div_ceil(4);
    let tools: usize =
        request.tools.iter().map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len()).sum();
    let context = tokens(request.system.len())
        + tokens(tools)
        + request.messages.iter().map(|m| tokens(m.char_len())).sum::<usize>()
        + tokens(OK.len())
        + tokens(envelope_len(&s))
        + tokens(OK.len());
    s.model.window.store((context as f64 / 0.96) as usize, Ordering::SeqCst);
    s.turn().await;
    assert_eq!(s.compactor.request_count(), 0, "no model call");

    let checkpoints = s.checkpoints();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:#?}");
    let checkpoint = &checkpoints[0];
    assert_eq!(checkpoint.kind, CheckpointKind::Emergency);
    assert!(checkpoint.unsummarized && checkpoint.summary.contains("[unsummarized]"), "{checkpoint:#?}");
    assert_eq!(checkpoint.model, None);

    // It covers exactly what left the live history: everything before the first kept message.
    s.model.window.store(LARGE, Ordering::SeqCst);
    s.turn().await;
    let kept = s.last_request().messages;
    let logged = s.logged();
    let ChatMessage::User { content, .. } = &kept[0] else { panic!("the history starts with a user turn: {kept:#?}") };
    let first_kept = logged.iter().find(|m| content.ends_with(&m.message.text)).expect("a logged message");
    let previous = logged.iter().rev().find(|m| m.seq < first_kept.seq).expect("something was dropped");
    assert_eq!((checkpoint.covers_from_seq, checkpoint.covers_to_seq), (logged[0].seq, previous.seq));
    assert!(checkpoint.message_count >= 2 && checkpoint.message_count < 14, "{checkpoint:#?}");
    assert!(s.finished().iter().any(|(_, summary)| summary.contains("emergency checkpoint #1")));
    s.h.shutdown().await;
}

/// Bytes of the envelope of a test message (they all have the same length).
fn envelope_len(s: &Setup) -> usize {
    envelope_text(s, 0).len()
}

#[tokio::test(start_paused = true)]
async fn twelve_checkpoints_roll_up_the_oldest_eight_and_the_view_stays_in_budget() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default().with_interval(2, 0.12))).await;
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = counter.clone();
    s.compactor.respond_with(move |_| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        ScriptedTurn::text(format!("TITLE: stretch {n}\n\n{}", "A long account of what happened. ".repeat(60)))
    });
    s.turns(16).await;
    idle().await;
    let checkpoints = s.checkpoints();
    let rollups: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.level == 1).collect();
    assert_eq!(rollups.len(), 1, "{checkpoints:#?}");
    let rollup = rollups[0];
    assert_eq!((rollup.kind, rollup.rolls_up), (CheckpointKind::Rollup, Some((1, 8))));
    let sources: Vec<&Checkpoint> = checkpoints.iter().filter(|c| (1..=8).contains(&c.seq)).collect();
    assert!(sources.iter().all(|c| c.level == 0 && c.rolled_up_into == Some(rollup.seq)), "{sources:#?}");
    assert_eq!(rollup.covers_from_seq, sources[0].covers_from_seq);
    assert_eq!(rollup.covers_to_seq, sources[7].covers_to_seq);
    assert_eq!(rollup.message_count, sources.iter().map(|c| c.message_count).sum::<u64>());
    assert!(checkpoints.iter().filter(|c| c.level == 0 && c.seq > 8).all(|c| c.rolled_up_into.is_none()));
    assert_contiguous(&checkpoints, &s.logged());

    s.turn().await;
    let system = s.last_request().system;
    let shown = view(&system);
    assert!(shown.len().div_ceil(4) <= 2000, "{} tokens: {shown}", shown.len().div_ceil(4));
    assert!(shown.contains("rollup of #1-#8"), "{shown}");
    assert!(!shown.contains("\n### #1 ") && !shown.contains("\n- #1 "), "a rollup stands in for its sources: {shown}");
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_view_is_byte_stable_and_a_restart_renders_it_again_over_only_the_uncovered_messages() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default().with_interval(10, 0.12))).await;
    s.compactor.respond_with(|_| summary("first ten"));
    s.turns(5).await;
    idle().await;
    assert_eq!(s.checkpoints().len(), 1);
    s.turns(3).await;
    let requests = s.channel.requests();
    let last_three: Vec<&ChatRequest> = requests.iter().rev().take(3).collect();
    assert!(view(&last_three[0].system).contains("#1 first ten"), "{}", last_three[0].system);
    assert!(last_three.iter().all(|r| r.system == last_three[0].system), "no new checkpoint: the prompt stays");
    let before = last_three[0].system.clone();
    let covered = s.checkpoints()[0].covers_to_seq;
    let uncovered: Vec<String> = s.logged().into_iter().filter(|m| m.seq > covered).map(|m| m.message.text).collect();
    assert_eq!(uncovered.len(), 6);

    // Restart: a new runtime over the same log.
    let Setup { channel, profile, log, h, .. } = s;
    h.shutdown().await;
    let mut h = start(profile, log).await;
    let message = h.say(CONV, "after the restart");
    h.wait_turns(1).await;
    let request = channel.last_request().expect("a turn ran");
    assert_eq!(request.system, before, "the same view after a restart");
    assert_eq!(request.messages.len(), uncovered.len() + 1, "{:#?}", request.messages);
    for (message, text) in request.messages.iter().zip(&uncovered) {
        let content = match message {
            ChatMessage::User { content, .. } | ChatMessage::Assistant { content, .. } => content,
            other => panic!("unexpected {other:?}"),
        };
        assert!(content.ends_with(text.as_str()), "{content} vs {text}");
    }
    assert_eq!(request.messages.last(), Some(&ChatMessage::user(envelope(&message))));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_chronicle_tool_lists_and_opens_and_a_branch_can_expand() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default().with_interval(4, 0.12))).await;
    s.compactor.respond_with(|_| summary("greetings"));
    s.turns(2).await;
    idle().await;
    assert_eq!(s.checkpoints().len(), 1);

    s.channel.push_all([
        ScriptedTurn::tool_call(CHRONICLE_TOOL, json!({ "action": "list" })),
        ScriptedTurn::tool_call(CHRONICLE_TOOL, json!({ "action": "open", "seq": 1 })),
        ScriptedTurn::tool_call(CHRONICLE_TOOL, json!({ "action": "expand", "seq": 1 })),
    ]);
    s.turn().await;
    let results = tool_results(&s.last_request());
    assert_eq!(results.len(), 3, "{results:#?}");
    assert!(results[0].contains("- #1 level 0 interval: greetings"), "{}", results[0]);
    assert!(results[1].starts_with("#1 greetings") && results[1].contains("Alice sent numbered"), "{}", results[1]);
    assert!(results[2].contains("branch"), "the channel never reads raw messages: {}", results[2]);

    // A branch can read the checkpoint's original messages.
    let branch = Arc::new(ScriptedModel::new().with_name("scripted/branch"));
    branch.push_all([
        ScriptedTurn::tool_call(CHRONICLE_TOOL, json!({ "action": "expand", "seq": 1 })),
        ScriptedTurn::text("the first message was number 00"),
    ]);
    let Setup { channel, profile, log, h, .. } = s;
    h.shutdown().await;
    let profile = profile.with_process_model(ProcessKind::Branch, branch.clone());
    let mut h = start(profile, log).await;
    channel.push(ScriptedTurn::tool_call(BRANCH_TOOL, json!({ "task": "what was said first?" })));
    h.say(CONV, "what did I say first?");
    h.wait_turns(2).await;
    let requests = branch.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(tool_names(&requests[0]).contains(&CHRONICLE_TOOL.to_owned()));
    let expanded = tool_results(&requests[1]).join("\n");
    assert!(expanded.contains("Messages of checkpoint #1"), "{expanded}");
    assert!(expanded.contains(&text(0)) && expanded.contains(&text(1)), "{expanded}");
    assert_eq!(expanded.lines().filter(|line| line.starts_with('[')).count(), 4, "{expanded}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_summary_still_commits_an_unsummarized_checkpoint() {
    let mut s = setup(chronicle_settings(ChronicleSettings::default().with_interval(10, 0.12))).await;
    s.compactor.push(ScriptedTurn::error(LlmErrorKind::ServerError));
    s.turns(5).await;
    idle().await;
    let checkpoints = s.checkpoints();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:#?}");
    let checkpoint = &checkpoints[0];
    assert!(checkpoint.unsummarized, "{checkpoint:#?}");
    assert!(checkpoint.title.starts_with("Unsummarized: 10 messages"), "{}", checkpoint.title);
    assert!(
        checkpoint.summary.contains("[unsummarized]") && checkpoint.summary.contains("failed"),
        "{}",
        checkpoint.summary
    );
    assert_eq!(checkpoint.message_count, 10);
    s.turn().await;
    assert!(view(&s.last_request().system).contains("1 unsummarized"), "{}", s.last_request().system);
    assert_eq!(s.last_request().messages.len(), 5, "the covered messages still left the context");
    s.h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rolling_mode_cuts_no_checkpoints() {
    let mut s = setup(CompactionSettings::default()).await;
    s.compactor.respond_with(|_| summary("never"));
    s.turns(25).await;
    idle().await;
    assert!(s.checkpoints().is_empty());
    assert_eq!(s.compactor.request_count(), 0);
    assert!(!tool_names(&s.last_request()).contains(&CHRONICLE_TOOL.to_owned()));
    assert_eq!(view(&s.last_request().system), "");
    s.h.shutdown().await;
}

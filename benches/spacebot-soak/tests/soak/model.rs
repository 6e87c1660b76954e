//! The fake model's behaviour: a responder for `FakeLlmServer` that plays every role the daemon
//! asks it to (channel turns, relay turns, workers, branches saving memories, compaction), with
//! seeded delays, and reports each call so the harness can kill the daemon in the middle of it.
//!
//! Everything the model writes carries the token of what it answers, so the stored log can be
//! checked: a user message `#m1_2# ...` is answered `ack #m1_2#`; `work` asks for a worker whose
//! task and result carry `#w1_2#`; `remember` asks for a branch that saves a memory carrying
//! `#b1_2#`; a relay turn answers `relayed` followed by the tokens of the results it relays.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use spacebot_testing::{FakeReply, RecordedRequest};
use tokio::sync::mpsc;

use crate::rng::Rng;

/// What a model call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// A channel turn answering a user message (its first call).
    Turn,
    /// A channel turn's later call, after a tool result.
    TurnFollowUp,
    /// A relay turn: background results to pass on.
    Relay,
    /// A worker's call.
    Worker,
    /// A branch's first call, answered with `memory_save`.
    MemorySave,
    /// A branch's call after its save.
    BranchEnd,
    /// A compaction summary (rolling summary, chronicle cut or rollup).
    Compaction,
    /// Anything else.
    Other,
}

/// Model calls of the kinds a stop aims at, counted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) compaction: u64,
    pub(crate) memory_saves: u64,
    pub(crate) workers: u64,
    pub(crate) relays: u64,
}

/// One call, as the harness hears of it: its kind and how long its answer is delayed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heard {
    pub(crate) call: Call,
    pub(crate) delay: Duration,
}

/// The responder's state: the delays' generator and where calls are reported.
pub(crate) struct Behaviour {
    rng: Mutex<Rng>,
    /// Calls per kind: compaction, memory saves, workers, relays.
    counts: Mutex<Counts>,
    calls: mpsc::UnboundedSender<Heard>,
}

impl Behaviour {
    pub(crate) fn new(rng: Rng) -> (Arc<Self>, mpsc::UnboundedReceiver<Heard>) {
        let (calls, heard) = mpsc::unbounded_channel();
        (Arc::new(Self { rng: Mutex::new(rng), counts: Mutex::default(), calls }), heard)
    }

    /// The calls answered so far, by kind.
    pub(crate) fn counts(&self) -> Counts {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request.
    pub(crate) fn respond(&self, request: &RecordedRequest) -> FakeReply {
        let (call, reply) = classify(request);
        let (low, high) = match call {
            Call::Turn => (10, 250),
            Call::TurnFollowUp | Call::BranchEnd | Call::Other => (5, 60),
            Call::Relay => (10, 150),
            Call::Worker => (50, 400),
            Call::MemorySave => (20, 150),
            Call::Compaction => (50, 400),
        };
        {
            let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            match call {
                Call::Compaction => counts.compaction += 1,
                Call::MemorySave => counts.memory_saves += 1,
                Call::Worker => counts.workers += 1,
                Call::Relay => counts.relays += 1,
                _ => {}
            }
        }
        let millis = self.rng.lock().unwrap_or_else(PoisonError::into_inner).range(low, high);
        let delay = Duration::from_millis(millis);
        // The harness may have stopped listening (between trials); the answer goes out anyway.
        let _ = self.calls.send(Heard { call, delay });
        reply.delay(delay)
    }
}

/// The tokens (`#m1_2#`, `#w1_2#`, ...) in a text, in order, each once.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('#') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('#') else { break };
        let inner = &after[..end];
        let well_formed = inner.len() >= 4
            && inner.starts_with(['m', 'w', 'b'])
            && inner[1..].chars().all(|c| c.is_ascii_digit() || c == '_')
            && inner.contains('_');
        if well_formed {
            let token = format!("#{inner}#");
            if !found.contains(&token) {
                found.push(token);
            }
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    found
}

/// The first token of a kind (`m`, `w`, `b`) in a text.
fn token_of(text: &str, kind: char) -> Option<String> {
    tokens(text).into_iter().find(|token| token[1..].starts_with(kind))
}

/// `#m1_2#` as `#w1_2#` (or `#b1_2#`).
pub(crate) fn retag(token: &str, kind: char) -> String {
    format!("#{kind}{}", &token[2..])
}

fn classify(request: &RecordedRequest) -> (Call, FakeReply) {
    let tools = request.tool_names();
    let has = |name: &str| tools.iter().any(|tool| tool == name);
    let last_is_tool = request.messages().last().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool");
    let text = request.last_user_text().unwrap_or_default();
    if has("set_status") {
        let token = token_of(&text, 'w').unwrap_or_else(|| "#w0_0#".to_owned());
        let reply = FakeReply::tool_call("set_status", json!({"status": format!("result {token}"), "kind": "done"}));
        return (Call::Worker, reply);
    }
    if has("memory_save") && !has("reply") {
        let token = token_of(&text, 'b').unwrap_or_else(|| "#b0_0#".to_owned());
        if last_is_tool {
            return (Call::BranchEnd, FakeReply::text(format!("Saved {token}.")));
        }
        let arguments = json!({"content": format!("soak memory {token}"), "memory_type": "fact", "importance": 0.5});
        return (Call::MemorySave, FakeReply::tool_call("memory_save", arguments));
    }
    if !has("reply") {
        let system = request.system_text().unwrap_or_default();
        if system.contains("chronicle") || system.contains("condense") || system.contains("summar") {
            return (Call::Compaction, FakeReply::text("TITLE: a soak span\nPeople asked things; the agent answered."));
        }
        return (Call::Other, FakeReply::text("ok"));
    }
    if text.starts_with("[background results]") {
        let relayed: Vec<String> = tokens(&text).into_iter().filter(|t| !t.starts_with("#m")).collect();
        let reply = FakeReply::tool_call("reply", json!({"content": format!("relayed {}", relayed.join(" "))}));
        return (Call::Relay, reply);
    }
    let Some(message) = token_of(&text, 'm') else {
        return (Call::Other, FakeReply::tool_call("reply", json!({"content": "a message without a token"})));
    };
    let ack = FakeReply::tool_call("reply", json!({"content": format!("ack {message}")}));
    if last_is_tool {
        return (Call::TurnFollowUp, ack);
    }
    if text.contains("work:") {
        let task = format!("task {}", retag(&message, 'w'));
        return (Call::Turn, FakeReply::tool_call("spawn_worker", json!({"task": task})));
    }
    if text.contains("remember:") {
        let task = format!("remember {}", retag(&message, 'b'));
        return (Call::Turn, FakeReply::tool_call("branch", json!({"task": task})));
    }
    (Call::Turn, ack)
}

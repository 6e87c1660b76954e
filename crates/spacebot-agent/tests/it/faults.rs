//! The seeded fault harness: many randomized scenarios on the paused clock, each checking the
//! liveness invariants whatever goes wrong.
//!
//! A scenario is a fresh runtime (its own current-thread tokio runtime, clock paused) with
//! scripted models that answer at random (seeded): replies, skips, plain text, unknown tools,
//! workers, branches, cancels, model errors, hangs and delays; adapter sends that fail; messages
//! in direct and group conversations at random times; `/stop` and `/status` at random times.
//! Cancels and completions are both scheduled on whole seconds, so they race. A supervisor
//! (standing in for the cortex) ends random live processes through the runtime's registry and
//! restarts random conversations' tasks, at random whole seconds too. Afterwards:
//!
//! 1. every process that started announced exactly one terminal state, and nothing else did;
//! 2. every inbound message was answered with a reply, a skip or a visible error (handled in
//!    the log);
//! 3. after shutdown no task is left on the runtime;
//! 4. no request the channel made separates a tool call from its result (the channel model's
//!    context window is small, so the compactor summarises and truncates all the time, with a
//!    compactor model that fails, hangs and dawdles too).
//!
//! A failure names its seed; `FAULT_SEED=<n>` reruns that scenario alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use spacebot_agent::{
    AgentProfile, BRANCH_TOOL, CANCEL_TOOL, ChannelEngine, ChannelSettings, REPLY_TOOL, SET_STATUS_TOOL, SKIP_TOOL,
    SPAWN_WORKER_TOOL,
};
use spacebot_core::{
    AdapterErrorKind, ChatMessage, ChatRequest, ConversationLog, InboundMessage, LlmErrorKind, ProcessChange,
    ProcessKind, Runtime, RuntimeEvent, Sender,
};
use spacebot_testing::{CapturingAdapter, MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{ADAPTER, AGENT, first_user_text, last_user_raw};

/// Scenarios per run of the test.
const SCENARIOS: u64 = 1000;

/// A small deterministic generator (splitmix64): enough randomness, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn seconds(&mut self, max: u64) -> Duration {
        Duration::from_secs(self.below(max + 1))
    }
}

type SharedRng = Arc<Mutex<Rng>>;

fn draw<T>(rng: &SharedRng, f: impl FnOnce(&mut Rng) -> T) -> T {
    f(&mut rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// The id of a live process listed in a request's status block, if any.
fn some_listed_id(request: &ChatRequest, pick: u64) -> Option<String> {
    let ids: Vec<String> = request
        .system
        .match_indices("- [")
        .filter_map(|(i, _)| {
            let rest = &request.system[i + 3..];
            let rest = rest.strip_prefix("worker ").or_else(|| rest.strip_prefix("branch "))?;
            Some(rest.split(']').next()?.to_owned())
        })
        .collect();
    if ids.is_empty() { None } else { Some(ids[(pick as usize) % ids.len()].clone()) }
}

fn channel_turn(rng: &SharedRng, request: &ChatRequest) -> ScriptedTurn {
    let (roll, delay, task, pick) = draw(rng, |r| (r.below(100), r.seconds(3), r.below(4), r.next()));
    let turn = match roll {
        0..=34 => ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": "an answer" })),
        35..=42 => ScriptedTurn::tool_call(SKIP_TOOL, json!({})),
        43..=50 => ScriptedTurn::text("plain text answer"),
        51..=62 => ScriptedTurn::tool_call(
            SPAWN_WORKER_TOOL,
            json!({ "task": format!("task {task}"), "interactive": pick % 5 == 0 }),
        ),
        63..=70 => ScriptedTurn::tool_call(BRANCH_TOOL, json!({ "task": format!("idea {task}") })),
        71..=78 => match some_listed_id(request, pick) {
            Some(id) => ScriptedTurn::tool_call(CANCEL_TOOL, json!({ "process_id": id })),
            None => ScriptedTurn::tool_call("route", json!({ "worker_id": "nobody", "message": "hi" })),
        },
        79..=86 => ScriptedTurn::error(
            [LlmErrorKind::ServerError, LlmErrorKind::RateLimited, LlmErrorKind::Timeout][(pick % 3) as usize],
        ),
        87..=89 => ScriptedTurn::hang(),
        _ => ScriptedTurn::tool_call("no_such_tool", json!({})),
    };
    turn.delay(delay)
}

fn worker_turn(rng: &SharedRng, request: &ChatRequest) -> ScriptedTurn {
    let (roll, delay) = draw(rng, |r| (r.below(100), r.seconds(6)));
    let _ = first_user_text(request);
    let turn = match roll {
        0..=34 => ScriptedTurn::tool_call(SET_STATUS_TOOL, json!({ "status": "finished", "kind": "done" })),
        35..=44 => ScriptedTurn::tool_call(SET_STATUS_TOOL, json!({ "status": "could not", "kind": "failed" })),
        45..=64 => ScriptedTurn::tool_call(SET_STATUS_TOOL, json!({ "status": "working", "kind": "progress" })),
        65..=74 => ScriptedTurn::error(LlmErrorKind::ServerError),
        75..=79 => ScriptedTurn::hang(),
        80..=89 => ScriptedTurn::text("words without an outcome"),
        _ => ScriptedTurn::tool_call("file_read", json!({ "path": "x" })),
    };
    turn.delay(delay)
}

fn branch_turn(rng: &SharedRng, request: &ChatRequest) -> ScriptedTurn {
    let (roll, delay) = draw(rng, |r| (r.below(100), r.seconds(6)));
    let _ = last_user_raw(request);
    let turn = match roll {
        0..=49 => ScriptedTurn::text("a conclusion"),
        50..=64 => ScriptedTurn::tool_call(SPAWN_WORKER_TOOL, json!({ "task": "delegated task" })),
        65..=79 => ScriptedTurn::error(LlmErrorKind::ServerError),
        80..=84 => ScriptedTurn::hang(),
        _ => ScriptedTurn::tool_call("memory_recall", json!({ "query": "x" })),
    };
    turn.delay(delay)
}

fn compactor_turn(rng: &SharedRng, _request: &ChatRequest) -> ScriptedTurn {
    let (roll, delay) = draw(rng, |r| (r.below(100), r.seconds(10)));
    let turn = match roll {
        0..=59 => ScriptedTurn::text("a short summary"),
        60..=79 => ScriptedTurn::error(LlmErrorKind::ServerError),
        80..=89 => ScriptedTurn::hang(),
        _ => ScriptedTurn::text(""),
    };
    turn.delay(delay)
}

/// The channel model's context window: small enough that most turns compact.
const SMALL_WINDOW: usize = 1100;

/// Whether every tool result of a request directly follows the call it answers.
fn pairs_intact(request: &ChatRequest) -> bool {
    let mut open: Vec<&str> = Vec::new();
    for message in &request.messages {
        match message {
            ChatMessage::ToolResult { call_id, .. } => {
                let Some(at) = open.iter().position(|id| id == call_id) else { return false };
                open.remove(at);
            }
            other => {
                if !open.is_empty() {
                    return false;
                }
                if let ChatMessage::Assistant { tool_calls, .. } = other {
                    open = tool_calls.iter().map(|call| call.id.as_str()).collect();
                }
            }
        }
    }
    open.is_empty()
}

fn model(rng: &SharedRng, name: &str, answer: fn(&SharedRng, &ChatRequest) -> ScriptedTurn) -> Arc<ScriptedModel> {
    let window = if name == "fault/channel" { SMALL_WINDOW } else { 128_000 };
    let model = Arc::new(ScriptedModel::new().with_name(name).with_context_window(window));
    let rng = rng.clone();
    model.respond_with(move |request| answer(&rng, request));
    model
}

/// What one scenario did, for the failure message.
#[derive(Debug, Default)]
struct Tally {
    messages: usize,
    processes: usize,
    compactions: usize,
    interventions: usize,
}

/// Ends random live processes (as the cortex does a hung one) and restarts random
/// conversations' tasks (as it does when a turn hangs), at random seconds. Returns how many
/// times it intervened.
async fn supervise(handle: spacebot_core::RuntimeHandle, rng: SharedRng) -> usize {
    let mut interventions = 0;
    for _ in 0..draw(&rng, |r| r.below(4)) {
        tokio::time::sleep(draw(&rng, |r| r.seconds(20))).await;
        let (restart, pick) = draw(&rng, |r| (r.chance(30), r.next()));
        if restart {
            let conversation = spacebot_core::ConversationId::new(format!("{ADAPTER}:c{}", pick % 2));
            let agent = spacebot_core::AgentId::new(AGENT);
            interventions +=
                usize::from(matches!(handle.restart_conversation(&agent, &conversation, "chaos").await, Ok(true)));
        } else {
            let live = handle.processes().list();
            if let Some(info) = live.get((pick % live.len().max(1) as u64) as usize) {
                let state = spacebot_core::TerminalState::TimedOut;
                interventions += usize::from(handle.processes().end(&info.process, state, "ended by the supervisor"));
            }
        }
    }
    interventions
}

async fn scenario(seed: u64) -> Result<Tally, String> {
    let rng: SharedRng = Arc::new(Mutex::new(Rng(seed)));
    let settings = ChannelSettings::default()
        .with_turn_timeout(Duration::from_secs(20))
        .with_worker_limits(6, Duration::from_secs(25))
        .with_branch_limits(4, Duration::from_secs(25));
    let channel = model(&rng, "fault/channel", channel_turn);
    let profile = AgentProfile::new(AGENT)
        .with_model(channel.clone())
        .with_process_model(ProcessKind::Compactor, model(&rng, "fault/compactor", compactor_turn))
        .with_process_model(ProcessKind::Worker, model(&rng, "fault/worker", worker_turn))
        .with_process_model(ProcessKind::Branch, model(&rng, "fault/branch", branch_turn))
        .with_settings(settings);
    let log = Arc::new(MemoryLog::new());
    let adapter = Arc::new(CapturingAdapter::new(ADAPTER));
    let failures = draw(&rng, |r| r.below(4) as usize);
    let kind = if draw(&rng, |r| r.chance(50)) { AdapterErrorKind::Transient } else { AdapterErrorKind::Permanent };
    adapter.fail_next(failures, kind);
    let runtime = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new([profile])))
        .log(log.clone())
        .adapter(adapter.clone())
        .agent(AGENT)
        .start()
        .await
        .map_err(|error| format!("runtime did not start: {error}"))?;
    let mut events = runtime.handle().subscribe();

    let mut tally = Tally::default();
    let supervisor = supervise(runtime.handle(), rng.clone());
    let count = draw(&rng, |r| 1 + r.below(5));
    let mut interventions = 0;
    let inject = async {
        for _ in 0..count {
            let (wait, conversation, direct, command) =
                draw(&rng, |r| (r.seconds(8), r.below(2), r.chance(60), r.below(100)));
            tokio::time::sleep(wait).await;
            let text = match command {
                0..=7 => "/stop",
                8..=12 => "/status",
                _ => "hello",
            };
            let message = InboundMessage::text(ADAPTER, format!("{ADAPTER}:c{conversation}"), Sender::new("u"), text)
                .with_direct(direct);
            adapter.inject(message);
            tally.messages += 1;
        }
    };
    tokio::join!(inject, async { interventions = supervisor.await });
    tally.interventions = interventions;
    // Long enough for every turn, relay and process to end on its own (limits are 20-25 s,
    // relays at most 3 per message).
    tokio::time::sleep(Duration::from_secs(600)).await;

    let unhandled = log.unhandled().await.map_err(|error| error.to_string())?;
    if !unhandled.is_empty() {
        return Err(format!("{} message(s) got no reply, skip or visible error: {unhandled:#?}", unhandled.len()));
    }
    runtime.shutdown().await;

    let mut started: HashMap<String, usize> = HashMap::new();
    let mut kinds: HashMap<String, ProcessKind> = HashMap::new();
    let mut finished: HashMap<String, usize> = HashMap::new();
    let mut compactions = 0;
    loop {
        match events.try_recv() {
            Ok(RuntimeEvent::Process(event)) => match event.change {
                ProcessChange::Started { .. } => {
                    compactions += usize::from(event.kind == ProcessKind::Compactor);
                    *started.entry(event.process.to_string()).or_default() += 1;
                    kinds.insert(event.process.to_string(), event.kind);
                }
                ProcessChange::Finished { .. } => *finished.entry(event.process.to_string()).or_default() += 1,
                _ => {}
            },
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => return Err(format!("lost {n} events")),
            Err(_) => break,
        }
    }
    tally.processes = started.len();
    for (id, count) in &started {
        match finished.get(id) {
            Some(1) if *count == 1 => {}
            other => {
                let kind = kinds.get(id).map_or("?", |kind| kind.as_str());
                return Err(format!("{kind} {id}: started {count} time(s), finished {other:?} time(s)"));
            }
        }
    }
    if let Some(id) = finished.keys().find(|id| !started.contains_key(*id)) {
        return Err(format!("process {id} finished without starting"));
    }
    if let Some(request) = channel.requests().iter().find(|request| !pairs_intact(request)) {
        return Err(format!("a request separated a tool call from its result: {:#?}", request.messages));
    }
    tally.compactions = compactions;
    Ok(tally)
}

fn run_seed(seed: u64) -> Result<Tally, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|error| error.to_string())?;
    let tally = runtime.block_on(scenario(seed))?;
    let alive = runtime.metrics().num_alive_tasks();
    if alive != 0 {
        return Err(format!("{alive} task(s) outlived shutdown"));
    }
    Ok(tally)
}

#[test]
fn liveness_holds_across_a_thousand_seeded_fault_scenarios() {
    let seeds: Vec<u64> = match std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..SCENARIOS).collect(),
    };
    let (mut messages, mut processes, mut compactions, mut interventions) = (0, 0, 0, 0);
    for seed in &seeds {
        match run_seed(*seed) {
            Ok(tally) => {
                messages += tally.messages;
                processes += tally.processes;
                compactions += tally.compactions;
                interventions += tally.interventions;
            }
            Err(error) => {
                panic!("fault scenario {seed} broke a liveness invariant (rerun with FAULT_SEED={seed}): {error}")
            }
        }
    }
    if seeds.len() as u64 == SCENARIOS {
        // The harness must actually exercise processes, or it proves little.
        assert!(processes > 1000, "only {processes} processes started across {messages} messages");
        assert!(compactions > 300, "only {compactions} compactions across {messages} messages");
        assert!(interventions > 300, "only {interventions} supervisor interventions");
    }
}

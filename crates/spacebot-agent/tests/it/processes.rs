//! Branches and workers: started by the channel's tools, run concurrently, never awaited, each
//! ending in exactly one terminal state whose result is relayed in a merged relay turn.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use spacebot_agent::{
    AgentProfile, BRANCH_TOOL, CANCEL_TOOL, ChannelSettings, REPLY_TOOL, ROUTE_TOOL, SET_STATUS_TOOL, SPAWN_WORKER_TOOL,
};
use spacebot_core::{ChatRequest, ConversationLog, LlmErrorKind, ProcessKind, Role, TerminalState, TurnOutcome};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{AGENT, CONV, Harness, first_user_text, idle, last_user_raw, start, tool_results};

pub(crate) fn reply(text: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": text }))
}

pub(crate) fn spawn(task: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(SPAWN_WORKER_TOOL, json!({ "task": task }))
}

pub(crate) fn done(result: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(SET_STATUS_TOOL, json!({ "status": result, "kind": "done" }))
}

fn progress(text: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(SET_STATUS_TOOL, json!({ "status": text, "kind": "progress" }))
}

/// One scripted model per process type.
pub(crate) struct Models {
    pub(crate) channel: Arc<ScriptedModel>,
    pub(crate) worker: Arc<ScriptedModel>,
    pub(crate) branch: Arc<ScriptedModel>,
}

impl Models {
    pub(crate) fn new() -> Self {
        Self {
            channel: Arc::new(ScriptedModel::new().with_name("scripted/channel")),
            worker: Arc::new(ScriptedModel::new().with_name("scripted/worker")),
            branch: Arc::new(ScriptedModel::new().with_name("scripted/branch")),
        }
    }

    pub(crate) fn profile(&self, settings: ChannelSettings) -> AgentProfile {
        AgentProfile::new(AGENT)
            .with_model(self.channel.clone())
            .with_process_model(ProcessKind::Worker, self.worker.clone())
            .with_process_model(ProcessKind::Branch, self.branch.clone())
            .with_settings(settings)
    }
}

/// The id of the first worker (or branch) listed in a request's status block.
fn listed_id(request: &ChatRequest, kind: &str) -> String {
    let marker = format!("[{kind} ");
    let start = request
        .system
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no {kind}: {}", request.system));
    request.system[start..].split(']').next().unwrap_or_default().to_owned()
}

async fn started(settings: ChannelSettings) -> (Models, Harness, Arc<MemoryLog>) {
    let models = Models::new();
    let log = Arc::new(MemoryLog::new());
    let h = start(models.profile(settings), log.clone()).await;
    (models, h, log)
}

#[tokio::test(start_paused = true)]
async fn a_worker_runs_in_the_background_and_its_result_is_relayed() {
    let (m, mut h, log) = started(ChannelSettings::default()).await;
    m.channel.push_all([spawn("count the files"), reply("On it."), reply("There are 3 files.")]);
    m.worker.push(done("3 files").delay(Duration::from_secs(60)));

    let question = h.say(CONV, "how many files?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let replied_at = Instant::now();
    assert_eq!(h.adapter.texts_for(CONV), vec!["On it."]);

    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied], "the relay turn");
    let waited = replied_at.elapsed();
    assert!(waited >= Duration::from_secs(60) && waited < Duration::from_secs(61), "{waited:?}");
    assert_eq!(h.adapter.texts_for(CONV), vec!["On it.", "There are 3 files."]);

    let requests = m.channel.requests();
    assert_eq!(requests.len(), 3);
    let spawned = tool_results(&requests[1]);
    assert!(spawned[0].starts_with("Worker ") && spawned[0].contains("started"), "{spawned:?}");
    let relay = last_user_raw(&requests[2]);
    assert!(relay.starts_with("[background results]") && relay.contains("done: 3 files"), "{relay}");
    assert_eq!(first_user_text(&m.worker.requests()[0]), "count the files");
    let worker_tools: Vec<_> = m.worker.requests()[0].tools.iter().map(|t| t.name.clone()).collect();
    assert!(worker_tools.contains(&SET_STATUS_TOOL.to_owned()), "{worker_tools:?}");

    // One start and one end for the worker, and the relay went to the question's context.
    let started = h.started();
    assert_eq!(started.len(), 1);
    assert_eq!(
        h.finished().iter().map(|f| (&f.0, f.1, f.2)).collect::<Vec<_>>(),
        vec![(&started[0].0, ProcessKind::Worker, TerminalState::Done)]
    );
    assert!(h.responses_to(&question).iter().any(|r| r.text_content() == Some("There are 3 files.")));
    let answers: Vec<_> = log.messages().into_iter().filter(|m| m.role == Role::Assistant).map(|m| m.text).collect();
    assert_eq!(answers, vec!["On it.", "There are 3 files."]);
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_channel_answers_as_fast_with_five_busy_workers_as_when_idle() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    let model_time = Duration::from_millis(200);
    m.channel.push(reply("pong 1").delay(model_time));
    let spawns = (1..=5).map(|i| (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": format!("job {i}") }))).collect();
    m.channel.push_all([ScriptedTurn::tool_calls(spawns), reply("started")]);
    m.channel.push(reply("pong 2").delay(model_time));

    let sent = Instant::now();
    h.say(CONV, "ping");
    h.wait_texts(CONV, 1).await;
    let idle_latency = sent.elapsed();

    h.say(CONV, "start five jobs");
    h.wait_texts(CONV, 2).await;
    idle().await;
    assert_eq!(m.worker.request_count(), 5, "five workers are busy");

    let sent = Instant::now();
    h.say(CONV, "ping again");
    assert_eq!(h.wait_texts(CONV, 3).await[2], "pong 2");
    let busy_latency = sent.elapsed();
    assert_eq!(idle_latency, model_time, "idle: only the model's time");
    assert!(busy_latency <= idle_latency + idle_latency / 10, "busy {busy_latency:?} vs idle {idle_latency:?}");
    assert!(h.finished().is_empty(), "the workers are still running");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_worker_limit_and_duplicate_tasks_are_refused() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    let tasks = ["task one", "task two", "task three", "task four", "task five", "  Task   ONE ", "task six"];
    let spawns = tasks.iter().map(|t| (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": t }))).collect();
    m.channel.push_all([ScriptedTurn::tool_calls(spawns), reply("ok")]);

    h.say(CONV, "do everything");
    h.wait_turns(1).await;
    let results = tool_results(&m.channel.requests()[1]);
    assert_eq!(results.len(), 7);
    assert!(results[..5].iter().all(|r| r.starts_with("Worker ")), "{results:#?}");
    assert!(results[5].contains("already doing this task"), "{}", results[5]);
    assert!(results[6].contains("5 workers are already running"), "{}", results[6]);
    idle().await;
    assert_eq!(m.worker.request_count(), 5);
    assert_eq!(h.started().len(), 5);

    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_status_block_lists_workers_and_the_prompt_is_byte_stable_otherwise() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.channel.push_all([reply("a"), reply("b"), spawn("watch the logs"), reply("watching"), reply("c"), reply("d")]);
    m.worker.push_all([progress("halfway there"), ScriptedTurn::hang()]);

    for text in ["one", "two", "three", "four", "five"] {
        h.say(CONV, text);
        h.wait_turns(1).await;
        idle().await;
    }
    let requests = m.channel.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(requests[0].system, requests[1].system, "nothing changed between the first two turns");
    assert!(
        !requests[0].system.contains("UTC") && !requests[0].system.contains("## Background"),
        "{}",
        requests[0].system
    );
    let id = listed_id(&requests[4], "worker");
    assert!(
        requests[4].system.contains(&format!("[worker {id}] watch the logs: halfway there")),
        "{}",
        requests[4].system
    );
    assert_eq!(requests[4].system, requests[5].system, "nothing changed between the last two turns");
    assert!(last_user_raw(&requests[5]).contains("UTC"), "the time lives in the envelope");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn completions_within_the_window_are_relayed_together_and_failures_as_failures() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|request| match first_user_text(request).as_str() {
        "fast" => done("fast result").delay(Duration::from_secs(10)),
        "broken" => ScriptedTurn::error(LlmErrorKind::ServerError).delay(Duration::from_millis(10_200)),
        _ => done("slow result").delay(Duration::from_secs(30)),
    });
    let spawns =
        ["fast", "broken", "slow"].iter().map(|t| (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": t }))).collect();
    m.channel.push_all([ScriptedTurn::tool_calls(spawns), reply("started"), reply("relay 1"), reply("relay 2")]);

    let started_at = Instant::now();
    h.say(CONV, "go");
    assert_eq!(h.wait_turns(3).await, vec![TurnOutcome::Replied; 3]);
    let requests = m.channel.requests();
    assert_eq!(requests.len(), 4, "one relay for the two close completions, one for the late one");
    let first = last_user_raw(&requests[2]);
    assert!(first.contains("done: fast result") && first.contains("failed: the model request failed"), "{first}");
    assert!(!first.contains("slow result"), "{first}");
    let second = last_user_raw(&requests[3]);
    assert!(second.contains("done: slow result") && !second.contains("fast result"), "{second}");
    assert!(started_at.elapsed() >= Duration::from_secs(30));
    let mut states: Vec<_> = h.finished().into_iter().map(|f| f.2).collect();
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, vec![TerminalState::Done, TerminalState::Done, TerminalState::Failed]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_most_three_relays_per_user_message_then_results_go_to_history_silently() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|request| {
        let task = first_user_text(request);
        let n: u64 = task.trim_start_matches("job ").parse().unwrap_or(1);
        done(&format!("result {n}")).delay(Duration::from_secs(10 * n))
    });
    let spawns = (1..=4).map(|i| (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": format!("job {i}") }))).collect();
    m.channel.push_all([ScriptedTurn::tool_calls(spawns), reply("started")]);
    m.channel.push_all([reply("r1"), reply("r2"), reply("r3"), reply("hello again")]);

    h.say(CONV, "four jobs");
    assert_eq!(h.wait_turns(4).await.len(), 4, "the turn and three relays");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(m.channel.request_count(), 5, "the fourth result started no turn");
    assert_eq!(h.finished().len(), 4);

    h.say(CONV, "anything else?");
    h.wait_turns(1).await;
    let last = m.channel.last_request().expect("a request");
    let history = serde_json::to_string(&last.messages).expect("json");
    assert!(history.contains("done]: result 4"), "the silent result is in history: {history}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_past_its_wall_clock_limit_times_out_and_is_relayed() {
    let settings = ChannelSettings::default().with_worker_limits(25, Duration::from_secs(60));
    let (m, mut h, _log) = started(settings).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.channel.push_all([spawn("hang forever"), reply("ok"), reply("it timed out, sorry")]);

    h.say(CONV, "go");
    assert_eq!(h.wait_turns(2).await.len(), 2);
    let finished = h.finished();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].2, TerminalState::TimedOut);
    assert!(finished[0].3.contains("60 seconds"), "{}", finished[0].3);
    let relay = last_user_raw(&m.channel.requests()[2]);
    assert!(relay.contains("timed_out: ran past its time limit of 60 seconds"), "{relay}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_must_declare_an_outcome_within_its_budget() {
    let settings = ChannelSettings::default().with_worker_limits(4, Duration::from_secs(600));
    let (m, mut h, _log) = started(settings).await;
    m.worker.respond_with(|request| match first_user_text(request).as_str() {
        "chatty" => ScriptedTurn::text("I think it's done?"),
        _ => progress("still going"),
    });
    let spawns = ["chatty", "endless"].iter().map(|t| (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": t }))).collect();
    m.channel.push_all([ScriptedTurn::tool_calls(spawns), reply("ok"), reply("both failed")]);

    h.say(CONV, "go");
    assert_eq!(h.wait_turns(2).await.len(), 2);
    let finished = h.finished();
    assert_eq!(finished.len(), 2);
    assert!(finished.iter().all(|f| f.2 == TerminalState::Failed), "{finished:?}");
    let relay = last_user_raw(&m.channel.requests()[2]);
    assert!(relay.contains("ended without declaring an outcome"), "{relay}");
    assert!(relay.contains("budget of 4 model calls"), "{relay}");
    let nudged = m.worker.requests().iter().filter(|r| first_user_text(r) == "chatty").count();
    assert_eq!(nudged, 3, "two nudges, then the worker fails");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_a_worker_once_and_the_end_is_relayed() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.channel.push_all([spawn("a long job"), reply("started")]);
    m.channel.respond_with(|request| {
        let last = last_user_raw(request);
        if last.contains("[background results]") {
            reply("cancelled as asked")
        } else if tool_results(request).iter().any(|r| r.starts_with("Cancelling")) {
            reply("cancelling")
        } else {
            ScriptedTurn::tool_call(
                CANCEL_TOOL,
                json!({ "process_id": listed_id(request, "worker"), "reason": "user changed their mind" }),
            )
        }
    });

    h.say(CONV, "start it");
    h.wait_turns(1).await;
    h.say(CONV, "never mind, cancel it");
    assert_eq!(h.wait_turns(2).await.len(), 2);
    let finished = h.finished();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].2, TerminalState::Cancelled);
    let relay = last_user_raw(&m.channel.last_request().expect("relay"));
    assert!(relay.contains("cancelled: user changed their mind"), "{relay}");
    assert_eq!(h.adapter.texts_for(CONV), vec!["started", "cancelling", "cancelled as asked"]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn route_sends_follow_ups_to_an_idle_interactive_worker_and_context_to_a_running_one() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|request| {
        let last = last_user_raw(request);
        if last.starts_with("[follow-up]") {
            done(&format!("answer to {}", last.trim_start_matches("[follow-up] ")))
        } else if first_user_text(request) == "be my calculator" {
            done("calculator ready")
        } else if last.starts_with("[context from the conversation]") {
            done("used metric units")
        } else {
            progress("measuring").delay(Duration::from_secs(30))
        }
    });
    m.channel
        .push(ScriptedTurn::tool_call(SPAWN_WORKER_TOOL, json!({"task": "be my calculator", "interactive": true})));
    m.channel.push_all([reply("ready soon"), reply("the calculator is ready")]);
    m.channel.respond_with(|request| {
        let last = last_user_raw(request);
        let results = tool_results(request);
        if last.contains("[background results]") {
            reply("relayed")
        } else if !results.is_empty() && !results.last().is_some_and(|r| r.starts_with("Worker ")) {
            reply("sent")
        } else if last.contains("2+2") {
            ScriptedTurn::tool_call(ROUTE_TOOL, json!({"worker_id": listed_id(request, "worker"), "message": "2+2"}))
        } else if last.contains("measure") && results.is_empty() {
            ScriptedTurn::tool_call(SPAWN_WORKER_TOOL, json!({"task": "measure the room"}))
        } else if last.contains("metric") {
            // The second listed worker is the measuring one.
            let second = request
                .system
                .match_indices("[worker ")
                .nth(1)
                .map(|(i, _)| &request.system[i + 8..])
                .expect("two workers");
            let id = second.split(']').next().expect("id").to_owned();
            ScriptedTurn::tool_call(ROUTE_TOOL, json!({"worker_id": id, "message": "use metric units"}))
        } else {
            reply("ok")
        }
    });

    h.say(CONV, "I need a calculator");
    assert_eq!(h.wait_turns(2).await.len(), 2, "the turn and the relay of the first result");
    h.say(CONV, "what is 2+2?");
    assert_eq!(h.wait_turns(2).await.len(), 2, "the turn and the relay of the follow-up's answer");
    let relay = last_user_raw(&m.channel.last_request().expect("relay"));
    assert!(relay.contains("result: answer to 2+2"), "{relay}");
    assert!(h.finished().is_empty(), "the interactive worker stays");

    h.say(CONV, "please measure the room");
    h.wait_turns(1).await;
    idle().await;
    h.say(CONV, "use metric");
    h.wait_turns(1).await;
    assert_eq!(h.wait_turns(1).await.len(), 1, "the relay of the measurement");
    let measuring: Vec<_> =
        m.worker.requests().into_iter().filter(|r| first_user_text(r) == "measure the room").collect();
    assert_eq!(measuring.len(), 2);
    assert_eq!(last_user_raw(&measuring[1]), "[context from the conversation] use metric units");
    let relay = last_user_raw(&m.channel.last_request().expect("relay"));
    assert!(relay.contains("done: used metric units"), "{relay}");

    // Unknown workers are an error for the model, not a crash.
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_branch_forks_the_history_and_its_conclusion_is_relayed() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.channel.push_all([
        reply("Hi Ada!"),
        ScriptedTurn::tool_call(BRANCH_TOOL, json!({"task": "what is notable about the name"})),
        reply("Let me think."),
        reply("Fun fact: Ada Lovelace was the first programmer."),
    ]);
    m.branch.push(ScriptedTurn::text("Ada Lovelace was the first programmer.").delay(Duration::from_secs(5)));

    let first = h.say(CONV, "my name is Ada");
    h.wait_turns(1).await;
    h.say(CONV, "anything notable about my name?");
    assert_eq!(h.wait_turns(2).await.len(), 2);

    let fork = &m.branch.requests()[0];
    let fork_text = serde_json::to_string(&fork.messages).expect("json");
    assert!(fork_text.contains(&first.content.text()) && fork_text.contains("Hi Ada!"), "{fork_text}");
    assert!(last_user_raw(fork).contains("Task: what is notable about the name"), "{fork_text}");
    let relay = last_user_raw(&m.channel.requests()[3]);
    assert!(relay.contains("[branch ") && relay.contains("done: Ada Lovelace was the first programmer."), "{relay}");
    let finished = h.finished();
    assert_eq!(finished.len(), 1);
    assert_eq!((finished[0].1, finished[0].2), (ProcessKind::Branch, TerminalState::Done));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_most_five_branches_run_per_channel() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.branch.respond_with(|_| ScriptedTurn::hang());
    let branches = (1..=6).map(|i| (BRANCH_TOOL.to_owned(), json!({ "task": format!("idea {i}") }))).collect();
    m.channel.push_all([ScriptedTurn::tool_calls(branches), reply("thinking")]);

    h.say(CONV, "think hard");
    h.wait_turns(1).await;
    let results = tool_results(&m.channel.requests()[1]);
    assert!(results[..5].iter().all(|r| r.starts_with("Branch ")), "{results:#?}");
    assert!(results[5].contains("5 branches are already running"), "{}", results[5]);
    idle().await;
    assert_eq!(m.branch.request_count(), 5);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_branch_may_delegate_to_one_worker_whose_outcome_is_relayed() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.channel.push_all([
        ScriptedTurn::tool_call(BRANCH_TOOL, json!({"task": "figure out the build"})),
        reply("looking into it"),
        reply("the build passes"),
    ]);
    m.branch.push(ScriptedTurn::tool_call(SPAWN_WORKER_TOOL, json!({"task": "run the build"})));
    m.worker.push(done("build passed").delay(Duration::from_secs(20)));

    h.say(CONV, "does the build pass?");
    assert_eq!(h.wait_turns(2).await.len(), 2);
    assert_eq!(first_user_text(&m.worker.requests()[0]), "run the build");
    let relay = last_user_raw(&m.channel.requests()[2]);
    assert!(relay.contains("[worker ") && relay.contains("done: build passed"), "{relay}");
    assert!(!relay.contains("[branch "), "the delegating branch's conclusion is not relayed: {relay}");
    let kinds: Vec<_> = h.finished().into_iter().map(|f| (f.1, f.2)).collect();
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.contains(&(ProcessKind::Branch, TerminalState::Done))
            && kinds.contains(&(ProcessKind::Worker, TerminalState::Done))
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(m.channel.request_count(), 3, "one relay only");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_every_process_and_each_ends_exactly_once() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.branch.respond_with(|_| ScriptedTurn::hang());
    let calls = vec![
        (SPAWN_WORKER_TOOL.to_owned(), json!({"task": "a"})),
        (SPAWN_WORKER_TOOL.to_owned(), json!({"task": "b"})),
        (BRANCH_TOOL.to_owned(), json!({"task": "c"})),
    ];
    m.channel.push_all([ScriptedTurn::tool_calls(calls), reply("busy")]);
    h.say(CONV, "go");
    h.wait_turns(1).await;
    idle().await;
    let started = h.started();
    assert_eq!(started.len(), 3);

    let mut events = h.runtime.handle().subscribe();
    h.runtime.shutdown().await;
    let mut finished = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let spacebot_core::RuntimeEvent::Process(event) = event
            && let spacebot_core::ProcessChange::Finished { state, .. } = event.change
        {
            finished.push((event.process, state));
        }
    }
    finished.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<_> = started.into_iter().map(|(id, _)| (id, TerminalState::Cancelled)).collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(finished, expected, "each process ends cancelled, exactly once");
}

#[tokio::test(start_paused = true)]
async fn route_and_cancel_with_unknown_or_wrong_ids_tell_the_model_and_change_nothing() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.branch.respond_with(|_| ScriptedTurn::hang());
    m.channel.push(ScriptedTurn::tool_call(BRANCH_TOOL, json!({"task": "think"})));
    m.channel.respond_with(|request| {
        let done = tool_results(request).len();
        match done {
            1 => ScriptedTurn::tool_call(ROUTE_TOOL, json!({"worker_id": "nobody", "message": "hi"})),
            2 => ScriptedTurn::tool_call(CANCEL_TOOL, json!({"process_id": "nobody"})),
            // The branch's id, from "Branch <id> started": a branch takes no messages.
            3 => {
                let started = tool_results(request).first().cloned().unwrap_or_default();
                let id = started.split_whitespace().nth(1).unwrap_or_default().to_owned();
                ScriptedTurn::tool_call(ROUTE_TOOL, json!({"worker_id": id, "message": "hi"}))
            }
            4 => ScriptedTurn::tool_call(CANCEL_TOOL, json!({"process_id": ""})),
            _ => reply("done"),
        }
    });

    h.say(CONV, "go");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let results = tool_results(&m.channel.last_request().expect("request"));
    assert_eq!(results.len(), 5, "{results:#?}");
    assert!(results[1].contains("No active worker has the id `nobody`"), "{}", results[1]);
    assert!(results[2].contains("No active branch or worker has the id `nobody`"), "{}", results[2]);
    assert!(results[3].contains("is a branch; only workers accept messages"), "{}", results[3]);
    assert!(results[4].contains("No active branch or worker has the id ``"), "{}", results[4]);
    assert!(h.finished().is_empty(), "nothing was cancelled: {:#?}", h.finished());
    assert_eq!(h.started().len(), 1, "the branch runs on");
    h.shutdown().await;
}

/// A tool source (the daemon's MCP servers) whose set changes while the agent runs.
struct ChangingTools(std::sync::Mutex<Vec<Arc<dyn spacebot_core::Tool>>>);

impl spacebot_agent::ToolSource for ChangingTools {
    fn tools(&self) -> Vec<Arc<dyn spacebot_core::Tool>> {
        self.0.lock().map(|tools| tools.clone()).unwrap_or_default()
    }
}

/// A tool whose name is fixed when it is made.
struct Named(&'static str);

#[async_trait::async_trait]
impl spacebot_core::Tool for Named {
    fn name(&self) -> &str {
        self.0
    }

    fn spec(&self) -> spacebot_core::ToolSpec {
        spacebot_core::ToolSpec::new(self.0, "from the source", json!({ "type": "object" }))
    }

    async fn call(&self, _arguments: serde_json::Value) -> Result<String, spacebot_core::ToolError> {
        Ok(format!("{} ran", self.0))
    }
}

/// Each worker gets the tools its source offers when it starts (a server that connected since
/// the last one adds its tools), callable like any other; a name already taken is left out.
#[tokio::test(start_paused = true)]
async fn workers_get_the_tools_their_source_offers_when_each_starts() {
    let models = Models::new();
    let source = Arc::new(ChangingTools(std::sync::Mutex::new(Vec::new())));
    let profile = models.profile(ChannelSettings::default()).with_tool_source(source.clone());
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;
    models.channel.push_all([spawn("first"), reply("On it."), reply("first done")]);
    models.worker.push(done("nothing to call"));
    h.say(CONV, "first");
    assert_eq!(h.wait_turns(2).await, vec![TurnOutcome::Replied; 2]);

    source
        .0
        .lock()
        .unwrap()
        .extend([Arc::new(Named("files_read")) as Arc<dyn spacebot_core::Tool>, Arc::new(Named(SET_STATUS_TOOL))]);
    models.channel.push_all([spawn("second"), reply("On it."), reply("second done")]);
    models.worker.push_all([ScriptedTurn::tool_call("files_read", json!({})), done("read it")]);
    h.say(CONV, "second");
    assert_eq!(h.wait_turns(2).await, vec![TurnOutcome::Replied; 2]);

    let requests = models.worker.requests();
    let names = |request: &ChatRequest| request.tools.iter().map(|tool| tool.name.clone()).collect::<Vec<_>>();
    assert!(!names(&requests[0]).contains(&"files_read".to_owned()), "{:?}", names(&requests[0]));
    let second = names(&requests[1]);
    assert!(second.contains(&"files_read".to_owned()), "{second:?}");
    assert_eq!(second.iter().filter(|name| *name == SET_STATUS_TOOL).count(), 1, "{second:?}");
    assert_eq!(tool_results(&requests[2]), ["files_read ran"]);
    h.shutdown().await;
}

//! Background work across a restart: a result that ended but was never relayed is relayed after
//! the restart, once; a turn replayed after a crash does not start its branch or worker again;
//! a worker a graceful shutdown stopped is reported after the restart.
//!
//! A crash is simulated by dropping the runtime (every task aborted, nothing drained) and
//! starting a new one over the same log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use spacebot_agent::{BRANCH_TOOL, ChannelSettings};
use spacebot_core::{ConversationLog, ProcessKind, TerminalState};
use spacebot_testing::{MemoryLog, ScriptedTurn};

use crate::processes::{Models, done, reply, spawn};
use crate::support::{CONV, Harness, idle, last_user_raw, start, tool_results};

async fn started(models: &Models, log: &Arc<MemoryLog>) -> Harness {
    start(models.profile(ChannelSettings::default()), log.clone()).await
}

#[tokio::test(start_paused = true)]
async fn a_result_that_ended_before_a_crash_is_relayed_after_the_restart_once() {
    let log = Arc::new(MemoryLog::new());
    let m = Models::new();
    let mut h = started(&m, &log).await;
    // The relay turn's model call never answers: the daemon dies in it.
    m.channel.push_all([
        spawn("count the files"),
        reply("On it."),
        reply("never sent").delay(Duration::from_secs(3600)),
    ]);
    m.worker.push(done("3 files").delay(Duration::from_secs(60)));
    h.say(CONV, "how many files?");
    h.wait_turns(1).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(m.channel.request_count(), 3, "the relay turn is in flight");
    let runs = log.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, Some(TerminalState::Done));
    assert!(runs[0].owed.is_some(), "the result is owed until relayed: {runs:?}");
    drop(h);
    idle().await;
    assert_eq!(log.messages().len(), 2, "the question and the first answer only");

    // The restart relays it without anyone asking.
    let m = Models::new();
    m.channel.push(reply("There are 3 files."));
    let h = started(&m, &log).await;
    assert_eq!(h.wait_texts(CONV, 1).await, vec!["There are 3 files."]);
    idle().await;
    let requests = m.channel.requests();
    assert_eq!(requests.len(), 1);
    let relay = last_user_raw(&requests[0]);
    assert!(relay.starts_with("[background results]") && relay.contains("done: 3 files"), "{relay}");
    assert!(log.runs()[0].owed.is_none(), "told");
    h.shutdown().await;

    // Once: the next start relays nothing.
    let m = Models::new();
    let h = started(&m, &log).await;
    idle().await;
    assert_eq!(m.channel.request_count(), 0);
    assert!(h.adapter.texts_for(CONV).is_empty(), "{:?}", h.adapter.texts_for(CONV));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_replayed_turn_does_not_start_its_worker_again_and_says_what_became_of_it() {
    let log = Arc::new(MemoryLog::new());
    let m = Models::new();
    let h = started(&m, &log).await;
    // The worker finishes at once; the turn that started it dies before its reply.
    m.channel.push_all([spawn("count the files"), reply("never sent").delay(Duration::from_secs(3600))]);
    m.worker.push(done("3 files"));
    let question = h.say(CONV, "how many files?");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(m.worker.request_count(), 1);
    assert_eq!(log.unhandled().await.expect("unhandled").len(), 1, "the turn did not finish");
    drop(h);
    idle().await;

    // The restart answers the message again; the model asks for the same worker.
    let m = Models::new();
    m.channel.push_all([spawn("count the files"), reply("On it."), reply("There are 3 files.")]);
    let h = started(&m, &log).await;
    assert_eq!(h.wait_texts(CONV, 2).await, vec!["On it.", "There are 3 files."]);
    idle().await;
    assert_eq!(m.worker.request_count(), 0, "the worker did not run twice");
    assert_eq!(log.runs().len(), 1, "one worker run recorded: {:?}", log.runs());
    let requests = m.channel.requests();
    let said = tool_results(&requests[1]);
    assert!(
        said[0].starts_with("Not started again") && said[0].contains("its result will arrive as a background result"),
        "{said:?}"
    );
    assert!(last_user_raw(&requests[2]).contains("done: 3 files"), "the result is relayed");
    assert!(h.responses_to(&question).iter().any(|r| r.text_content() == Some("On it.")));
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_replayed_turn_does_not_start_a_branch_a_crash_interrupted() {
    let log = Arc::new(MemoryLog::new());
    let m = Models::new();
    let h = started(&m, &log).await;
    let think = ScriptedTurn::tool_call(BRANCH_TOOL, json!({ "task": "weigh the options" }));
    m.channel.push_all([think.clone(), reply("never sent").delay(Duration::from_secs(3600))]);
    m.branch.respond_with(|_| ScriptedTurn::hang());
    h.say(CONV, "what should we do?");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(m.branch.request_count(), 1);
    drop(h);
    idle().await;

    let m = Models::new();
    m.channel.push_all([think, reply("Let me think again if you like.")]);
    let h = started(&m, &log).await;
    let texts = h.wait_texts(CONV, 2).await;
    idle().await;
    assert!(texts.iter().any(|t| t.contains("interrupted by a restart")), "the crash notice: {texts:?}");
    assert!(texts.contains(&"Let me think again if you like.".to_owned()), "{texts:?}");
    assert_eq!(m.branch.request_count(), 0, "the branch did not run twice");
    let said = tool_results(&m.channel.requests()[1]);
    assert!(said[0].starts_with("Not started again") && said[0].contains("interrupted"), "{said:?}");
    let runs = log.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].run.kind, runs[0].state), (ProcessKind::Branch, Some(TerminalState::Failed)));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_a_shutdown_stopped_is_reported_after_the_restart_once() {
    let log = Arc::new(MemoryLog::new());
    let m = Models::new();
    let h = started(&m, &log).await;
    m.channel.push_all([spawn("index the archive"), reply("On it.")]);
    m.worker.respond_with(|_| ScriptedTurn::hang());
    let question = h.say(CONV, "index the archive please");
    assert_eq!(h.wait_texts(CONV, 1).await, vec!["On it."]);
    idle().await;
    h.shutdown().await;
    let runs = log.runs();
    assert_eq!(runs[0].state, Some(TerminalState::Cancelled));

    let m = Models::new();
    let h = started(&m, &log).await;
    idle().await;
    let texts = h.adapter.texts_for(CONV);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("stopped by a shutdown") && texts[0].contains("index the archive"), "{texts:?}");
    assert!(h.responses_to(&question).iter().any(|r| r.text_content() == Some(texts[0].as_str())));
    assert_eq!(m.channel.request_count(), 0, "a notice, not a model turn");
    h.shutdown().await;

    let m = Models::new();
    let h = started(&m, &log).await;
    idle().await;
    assert!(h.adapter.texts_for(CONV).is_empty(), "told once: {:?}", h.adapter.texts_for(CONV));
    h.shutdown().await;
}

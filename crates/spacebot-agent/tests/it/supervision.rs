//! The channel under a supervisor: processes are in the runtime's registry while they live, a
//! supervisor that ends one is obeyed (one terminal state, the failure relayed, the status block
//! updated at once), and a conversation task that is ended leaves no process without a terminal
//! state and no message without an answer.

use std::time::Duration;

use spacebot_agent::ChannelSettings;
use spacebot_core::{OWNER_ENDED, ProcessKind, TerminalState};
use spacebot_testing::{MemoryLog, ScriptedTurn};

use crate::processes::{Models, reply, spawn};
use crate::support::{AGENT, CONV, idle, last_user_raw, start};

#[tokio::test(start_paused = true)]
async fn a_supervisor_ending_a_worker_is_obeyed_once_and_relayed_as_a_failure() {
    let m = Models::new();
    let log = std::sync::Arc::new(MemoryLog::new());
    let mut h = start(m.profile(ChannelSettings::default()), log).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.channel.push_all([spawn("crawl the site"), reply("On it.")]);
    m.channel.push(reply("The crawl was stopped: it hung."));

    h.say(CONV, "crawl it");
    h.wait_texts(CONV, 1).await;
    idle().await;
    let registry = h.runtime.handle().processes().clone();
    let live = registry.list();
    assert_eq!(live.len(), 1, "the worker is registered while it runs");
    assert_eq!(
        (live[0].kind, live[0].agent.as_str(), live[0].conversation.as_str()),
        (ProcessKind::Worker, AGENT, CONV)
    );
    assert_eq!(live[0].limit, Some(ChannelSettings::default().worker_timeout));
    let worker = live[0].process.clone();

    assert!(registry.end(&worker, TerminalState::TimedOut, "ended by the supervisor (hung)"));
    assert!(!registry.end(&worker, TerminalState::Failed, "twice"), "a process ends once");
    assert_eq!(h.wait_texts(CONV, 2).await[1], "The crawl was stopped: it hung.");
    let request = &m.channel.requests()[2];
    let relay = last_user_raw(request);
    assert!(relay.contains("timed_out") && relay.contains("ended by the supervisor (hung)"), "{relay}");
    assert!(!request.system.contains("Active workers"), "the status block no longer lists it: {}", request.system);

    idle().await;
    assert!(registry.is_empty(), "ended processes leave the registry");
    assert_eq!(
        h.finished().into_iter().map(|f| (f.0, f.2, f.3)).collect::<Vec<_>>(),
        vec![(worker, TerminalState::TimedOut, "ended by the supervisor (hung)".to_owned())],
        "exactly one terminal state, the supervisor's"
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_conversation_ends_its_processes_and_answers_what_it_held() {
    let m = Models::new();
    let log = std::sync::Arc::new(MemoryLog::new());
    let mut h = start(m.profile(ChannelSettings::default()), log.clone()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.channel.push_all([spawn("watch the logs"), reply("Watching.")]);
    // The next turn hangs (its model never answers, and the turn timeout is far away).
    m.channel.push(ScriptedTurn::hang());

    h.say(CONV, "watch them");
    h.wait_texts(CONV, 1).await;
    let stuck = h.say(CONV, "anything yet?");
    idle().await;
    assert_eq!(h.runtime.handle().processes().len(), 1);

    let handle = h.runtime.handle();
    let (agent, conversation) = (spacebot_core::AgentId::new(AGENT), spacebot_core::ConversationId::new(CONV));
    assert!(handle.restart_conversation(&agent, &conversation, "test").await.expect("runtime up"));
    idle().await;

    // The message the task held got a visible error; the worker ended with its owner.
    let texts = h.wait_texts(CONV, 2).await;
    assert!(texts[1].contains("Something went wrong"), "{texts:?}");
    assert!(h.responses_to(&stuck).iter().any(|r| r.text_content().is_some_and(|t| t.contains("went wrong"))));
    let finished = h.finished();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(
        (finished[0].1, finished[0].2, finished[0].3.as_str()),
        (ProcessKind::Worker, TerminalState::Cancelled, OWNER_ENDED)
    );
    assert!(h.runtime.handle().processes().is_empty());

    // A fresh task answers the next message.
    m.channel.push(reply("Back."));
    h.say(CONV, "hello?");
    assert_eq!(h.wait_texts(CONV, 3).await[2], "Back.");
    assert!(spacebot_core::ConversationLog::unhandled(&*log).await.expect("unhandled").is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.shutdown().await;
}

//! Control commands (`/status`, `/stop`, `/pause`, `/resume`, `/new`), even in the middle of a
//! turn, and burst coalescing in group conversations.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use spacebot_agent::ChannelSettings;
use spacebot_core::{ConversationLog, InboundMessage, MessageContent, Role, TerminalState, TurnOutcome};
use spacebot_testing::{MemoryLog, ScriptedTurn};

use crate::processes::{Models, reply, spawn};
use crate::support::{CONV, Harness, idle, last_user_raw, start, stop_typing, typing};

async fn started(settings: ChannelSettings) -> (Models, Harness, Arc<MemoryLog>) {
    let models = Models::new();
    let log = Arc::new(MemoryLog::new());
    let h = start(models.profile(settings), log.clone()).await;
    (models, h, log)
}

/// Texts sent in answer to `message`.
fn answers(h: &Harness, message: &InboundMessage) -> Vec<String> {
    h.responses_to(message).iter().filter_map(|r| r.text_content().map(str::to_owned)).collect()
}

#[tokio::test(start_paused = true)]
async fn status_is_answered_without_a_model_call_and_marks_the_command_handled() {
    let (m, mut h, log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.channel.push_all([spawn("index the docs"), reply("indexing")]);
    h.say(CONV, "index the docs please");
    h.wait_turns(1).await;
    idle().await;

    let status = h.say(CONV, "/status");
    idle().await;
    let text = answers(&h, &status);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].starts_with("Status: idle. 1 worker(s), 0 branch(es) running."), "{}", text[0]);
    assert!(text[0].contains("index the docs: starting"), "{}", text[0]);
    assert_eq!(m.channel.request_count(), 2, "no model call for a command");
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    let notice = log.messages().into_iter().last().expect("stored");
    assert_eq!((notice.role, notice.sender.as_str()), (Role::System, "spacebot"));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn commands_act_in_the_middle_of_a_turn_and_stop_ends_it_and_its_workers() {
    let (m, mut h, log) = started(ChannelSettings::default()).await;
    m.worker.respond_with(|_| ScriptedTurn::hang());
    m.channel.push_all([spawn("crunch numbers"), reply("crunching"), ScriptedTurn::hang()]);
    h.say(CONV, "crunch");
    h.wait_turns(1).await;
    let stuck = h.say(CONV, "and also this");
    idle().await;
    assert_eq!(m.channel.request_count(), 3, "the second turn waits on the model");

    // `/status` is answered while the turn runs, and the turn goes on.
    let status = h.runtime.handle().submit(command("status")).await.expect("accepted");
    idle().await;
    let sent: Vec<String> = h
        .adapter
        .sent()
        .into_iter()
        .filter(|(t, _)| t.id == status)
        .filter_map(|(_, r)| r.text_content().map(str::to_owned))
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("Status: answering a message."), "{}", sent[0]);
    assert_eq!(h.responses_to(&stuck), vec![typing()], "the turn is still running");

    // `/stop` ends the turn with a visible notice and cancels the worker, whose end is not relayed.
    let stop = command("stop");
    h.adapter.inject(stop.clone());
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Failed]);
    idle().await;
    let stuck_answers = h.responses_to(&stuck);
    assert_eq!(stuck_answers.last(), Some(&stop_typing()));
    assert!(answers(&h, &stuck)[0].contains("Stopped with /stop"), "{stuck_answers:?}");
    assert_eq!(answers(&h, &stop), vec!["Stopped the reply in progress and 1 background process(es).".to_owned()]);
    let finished = h.finished();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].2, TerminalState::Cancelled);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(m.channel.request_count(), 3, "a stopped worker is not relayed");
    assert!(log.unhandled().await.expect("unhandled").is_empty());
    h.shutdown().await;
}

fn command(name: &str) -> InboundMessage {
    InboundMessage::text(crate::support::ADAPTER, CONV, spacebot_core::Sender::new("alice"), "")
        .with_content(MessageContent::Command { name: name.to_owned(), args: String::new() })
        .with_direct(true)
}

#[tokio::test(start_paused = true)]
async fn pause_skips_messages_until_resume_and_new_forgets_the_context() {
    let (m, mut h, log) = started(ChannelSettings::default()).await;
    m.channel.push_all([reply("first"), reply("after resume"), reply("fresh")]);
    h.say(CONV, "hello");
    h.wait_turns(1).await;

    let pause = h.say(CONV, "/pause");
    idle().await;
    assert!(answers(&h, &pause)[0].starts_with("Paused"), "{:?}", answers(&h, &pause));
    let ignored = h.say(CONV, "are you there?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Skipped]);
    assert!(h.responses_to(&ignored).is_empty(), "nothing is sent while paused");
    assert_eq!(m.channel.request_count(), 1);

    h.say(CONV, "/resume");
    h.say(CONV, "back?");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    assert_eq!(m.channel.request_count(), 2);

    h.say(CONV, "/new");
    let fresh = h.say(CONV, "let's start over");
    h.wait_turns(1).await;
    let last = m.channel.last_request().expect("request");
    assert_eq!(last.messages.len(), 1, "a new context holds only the new message: {:#?}", last.messages);
    assert_eq!(last_user_raw(&last), crate::support::envelope(&fresh));
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "commands and skipped messages are handled");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_group_burst_is_answered_in_one_turn_with_sender_labels() {
    let (m, mut h, log) = started(ChannelSettings::default()).await;
    m.channel.push(reply("hello all"));
    let first_at = Instant::now();
    h.say_in_group(CONV, "alice", "hi bot");
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.say_in_group(CONV, "bob", "hey");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let last = h.say_in_group(CONV, "carol", "yo");
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let waited = first_at.elapsed();
    assert_eq!(waited, Duration::from_millis(3000), "the last message plus the 1.5 s debounce");
    assert_eq!(m.channel.request_count(), 1);
    let text = last_user_raw(&m.channel.requests()[0]);
    assert!(text.starts_with("[3 messages arrived together"), "{text}");
    for (sender, said) in [("alice", "hi bot"), ("bob", "hey"), ("carol", "yo")] {
        assert!(text.contains(&format!("| {sender}] {said}")), "{text}");
    }
    let users: Vec<_> = log.messages().into_iter().filter(|m| m.role == Role::User).collect();
    assert_eq!(users.len(), 3, "each message is stored on its own");
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "the reply answers all three");
    assert_eq!(h.responses_to(&last).len(), 3, "typing, reply, stop typing go to the last message");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_never_waits_past_the_maximum_and_direct_messages_never_wait() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.channel.respond_with(|_| reply("ok"));
    let first_at = Instant::now();
    for i in 0..6 {
        h.say_in_group(CONV, "alice", &format!("message {i}"));
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(h.wait_turns(2).await.len(), 2);
    let requests = m.channel.requests();
    assert!(last_user_raw(&requests[0]).starts_with("[5 messages arrived together"), "{}", last_user_raw(&requests[0]));
    assert!(last_user_raw(&requests[1]).ends_with("message 5"), "{}", last_user_raw(&requests[1]));
    assert!(first_at.elapsed() < Duration::from_secs(8));

    let sent = Instant::now();
    h.say("test:dm", "direct question");
    h.wait_turns(1).await;
    assert!(sent.elapsed() < Duration::from_millis(100), "direct messages are not coalesced: {:?}", sent.elapsed());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn commands_bypass_a_pending_burst() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    m.channel.push(reply("answer to the burst"));
    h.say_in_group(CONV, "alice", "hello");
    let status = h.say_in_group(CONV, "bob", "/status");
    idle().await;
    assert!(answers(&h, &status)[0].starts_with("Status:"), "answered at once");
    assert_eq!(m.channel.request_count(), 0, "the burst is still waiting");
    h.wait_turns(1).await;
    assert!(!last_user_raw(&m.channel.requests()[0]).contains("/status"));
    h.shutdown().await;
}

//! Response modes and command authority: `mention_only` answers mentions and direct messages and
//! keeps the rest as context; `observe` answers nothing; a binding's mode (carried on the message)
//! wins over the agent's; with `admins` set, only they may change the conversation.

use std::sync::Arc;

use spacebot_agent::ChannelSettings;
use spacebot_core::{
    ConversationLog, InboundMessage, MENTIONS_BOT_KEY, RESPONSE_MODE_KEY, ResponseMode, Sender, TurnOutcome,
};
use spacebot_testing::MemoryLog;

use crate::processes::{Models, reply};
use crate::support::{ADAPTER, Harness, idle, start};

const GROUP: &str = "group";

fn group_message(sender: &str, text: &str, mentioned: bool) -> InboundMessage {
    InboundMessage::text(ADAPTER, GROUP, Sender::new(sender), text).with_metadata(MENTIONS_BOT_KEY, mentioned.into())
}

async fn started(settings: ChannelSettings) -> (Models, Harness, Arc<MemoryLog>) {
    let models = Models::new();
    let log = Arc::new(MemoryLog::new());
    let h = start(models.profile(settings.with_coalesce(None)), log.clone()).await;
    (models, h, log)
}

#[tokio::test(start_paused = true)]
async fn mention_only_answers_mentions_and_keeps_the_rest_as_context() {
    let (m, mut h, log) = started(ChannelSettings::default().with_response_mode(ResponseMode::MentionOnly)).await;
    m.channel.push(reply("the deploy is at noon"));
    h.inject(group_message("bob", "the deploy moved to noon", false));
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Skipped]);
    idle().await;
    assert_eq!(m.channel.request_count(), 0, "no model call for a message that doesn't mention the agent");
    assert!(log.unhandled().await.expect("unhandled").is_empty(), "kept as context, handled");

    h.inject(group_message("alice", "@bot when is the deploy?", true));
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    let request = &m.channel.requests()[0];
    let seen = format!("{:?}", request.messages);
    assert!(seen.contains("the deploy moved to noon"), "the unanswered message is context: {seen}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn observe_answers_nothing_and_a_bindings_mode_wins_over_the_agents() {
    let (m, mut h, _log) = started(ChannelSettings::default()).await;
    let observed = group_message("bob", "@bot hello?", true).with_metadata(RESPONSE_MODE_KEY, "observe".into());
    h.inject(observed);
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Skipped]);
    idle().await;
    assert_eq!(m.channel.request_count(), 0);
    assert!(h.texts(GROUP).is_empty(), "nothing sent");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn only_admins_change_the_conversation_and_everyone_may_ask_the_status() {
    let settings = ChannelSettings::default().with_admins(["test:carol".to_owned()]);
    let (m, mut h, _log) = started(settings).await;
    let pause = h.inject(group_message("mallory", "/pause", false));
    idle().await;
    let refused = h.texts_to(&pause);
    assert_eq!(refused, vec!["Only an admin of this agent can use /pause here.".to_owned()]);
    let status = h.inject(group_message("mallory", "/status", false));
    idle().await;
    assert!(h.texts_to(&status)[0].starts_with("Status:"), "{:?}", h.texts_to(&status));

    // Not paused: the next message is answered.
    m.channel.push(reply("still here"));
    h.inject(group_message("mallory", "hello", false));
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);

    let pause = h.inject(group_message("carol", "/pause", false));
    idle().await;
    assert!(h.texts_to(&pause)[0].starts_with("Paused"), "{:?}", h.texts_to(&pause));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_mode_switched_in_the_conversation_is_kept_across_a_restart() {
    let (m, mut h, log) = started(ChannelSettings::default()).await;
    let quiet = h.inject(group_message("carol", "/mention-only", false));
    idle().await;
    assert!(h.texts_to(&quiet)[0].starts_with("I'll answer here only when mentioned"), "{:?}", h.texts_to(&quiet));
    h.inject(group_message("bob", "lunch at one?", false));
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Skipped]);
    idle().await;
    assert_eq!(m.channel.request_count(), 0);
    h.shutdown().await;

    // A new runtime on the same log: the conversation's mode is still mention_only.
    let models = Models::new();
    let mut h = start(models.profile(ChannelSettings::default().with_coalesce(None)), log.clone()).await;
    h.inject(group_message("bob", "anyone?", false));
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Skipped]);
    idle().await;
    assert_eq!(models.channel.request_count(), 0, "still mention-only after the restart");
    models.channel.push(reply("here"));
    let active = h.inject(group_message("carol", "/active", false));
    idle().await;
    assert!(h.texts_to(&active)[0].starts_with("I'll answer every message"), "{:?}", h.texts_to(&active));
    h.inject(group_message("bob", "anyone now?", false));
    assert_eq!(h.wait_turns(1).await, vec![TurnOutcome::Replied]);
    h.shutdown().await;
}

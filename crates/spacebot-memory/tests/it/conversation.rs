//! Recording, answering and reading back conversations, on SQLite and PostgreSQL.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use spacebot_core::{
    AgentId, Attachment, ConversationId, ConversationLog, InboundMessage, MessageContent, Role, Sender, StoredMessage,
};

use crate::support::{TestDb, agent, inbound, message_ids, millis, on_both_backends, precise_time, reply_to, texts};

on_both_backends!(
    an_inbound_message_and_its_reply_round_trip,
    history_is_the_last_messages_oldest_first,
    history_follows_recording_order_not_platform_timestamps,
    recording_the_same_inbound_message_twice_is_a_no_op,
    an_inbound_message_without_an_agent_is_refused,
    a_reply_marks_exactly_its_answers_handled,
    a_reply_and_its_handled_marks_commit_together,
    skipped_messages_are_marked_handled_for_their_agent_only,
    conversation_settings_are_kept_per_conversation_and_survive_a_reopen,
    a_message_carrying_nul_characters_is_recorded,
);

/// A NUL from the network (PostgreSQL's text can't hold one) is kept as U+FFFD in the text, and
/// the message itself, as recovery reads it back, is unchanged.
async fn a_message_carrying_nul_characters_is_recorded<D: TestDb>(db: D) {
    let store = db.open().await;
    let message = inbound("main", "webhook:c1", "nul-1", "before\0after");
    assert!(store.record_inbound(&message).await.unwrap());
    assert_eq!(store.unhandled().await.unwrap(), vec![message.clone()]);
    let reply = reply_to(&message, "a reply with a \0 too");
    store.record_reply(&reply, std::slice::from_ref(&message.id)).await.unwrap();
    let history = store.history(&agent("main"), &ConversationId::from("webhook:c1"), 10).await.unwrap();
    assert_eq!(texts(&history), ["before\u{FFFD}after", "a reply with a \u{FFFD} too"]);
}

async fn an_inbound_message_and_its_reply_round_trip<D: TestDb>(db: D) {
    let store = db.open().await;
    let message = inbound("main", "webhook:c1", "in-1", "hello")
        .with_content(MessageContent::Media {
            text: Some("look at this".into()),
            attachments: vec![Attachment::new("cat.png", "https://files.example/cat.png")],
        })
        .with_timestamp(precise_time(1))
        .with_metadata("thread", serde_json::json!("t-7"))
        .with_direct(true);
    assert!(store.record_inbound(&message).await.unwrap());
    assert_eq!(store.unhandled().await.unwrap(), vec![message.clone()]);

    let reply = reply_to(&message, "a cat!").with_created_at(precise_time(2));
    store.record_reply(&reply, std::slice::from_ref(&message.id)).await.unwrap();

    let history = store.history(&agent("main"), &ConversationId::from("webhook:c1"), 10).await.unwrap();
    let expected_inbound =
        StoredMessage::from_inbound(agent("main"), &message).with_created_at(millis(precise_time(1)));
    let expected_reply = reply.clone().with_created_at(millis(precise_time(2)));
    assert_eq!(history, vec![expected_inbound, expected_reply]);
    assert_eq!(history[0].role, Role::User);
    assert_eq!(history[0].sender, "Alice");
    // The participant id survives the message being answered: a restarted channel scopes memory by it.
    assert_eq!(history[0].participant.as_deref(), Some(message.participant().as_str()));
    assert_eq!(history[1].participant, None);
    assert_eq!(history[0].text, "look at this\n[attachment: cat.png <https://files.example/cat.png>]");
    assert!(store.unhandled().await.unwrap().is_empty(), "the reply answered the message");
}

async fn history_is_the_last_messages_oldest_first<D: TestDb>(db: D) {
    let store = db.open().await;
    for n in 0..10 {
        let message = inbound("main", "c1", &format!("in-{n}"), &format!("question {n}"));
        store.record_inbound(&message).await.unwrap();
        store
            .record_reply(&reply_to(&message, &format!("answer {n}")), std::slice::from_ref(&message.id))
            .await
            .unwrap();
    }
    // Noise in another conversation and under another agent with the same conversation id.
    store.record_inbound(&inbound("main", "c2", "other-conversation", "elsewhere")).await.unwrap();
    store.record_inbound(&inbound("helper", "c1", "other-agent", "someone else's")).await.unwrap();

    let c1 = ConversationId::from("c1");
    let last = store.history(&agent("main"), &c1, 3).await.unwrap();
    assert_eq!(texts(&last), ["answer 8", "question 9", "answer 9"]);

    let all = store.history(&agent("main"), &c1, 1000).await.unwrap();
    assert_eq!(all.len(), 20);
    assert_eq!(all.first().map(|m| m.text.as_str()), Some("question 0"));
    assert_eq!(all.last().map(|m| m.text.as_str()), Some("answer 9"));
    assert!(all.iter().all(|m| m.agent.as_str() == "main" && m.conversation == c1));

    assert!(store.history(&agent("main"), &c1, 0).await.unwrap().is_empty());
    assert!(store.history(&agent("main"), &c1, usize::MAX).await.unwrap().len() == 20);
    assert!(store.history(&agent("nobody"), &c1, 10).await.unwrap().is_empty());
    let helper = store.history(&agent("helper"), &c1, 10).await.unwrap();
    assert_eq!(texts(&helper), ["someone else's"]);
}

async fn history_follows_recording_order_not_platform_timestamps<D: TestDb>(db: D) {
    let store = db.open().await;
    let late_clock = inbound("main", "c1", "first", "recorded first").with_timestamp(precise_time(50));
    let early_clock = inbound("main", "c1", "second", "recorded second").with_timestamp(precise_time(10));
    store.record_inbound(&late_clock).await.unwrap();
    store.record_inbound(&early_clock).await.unwrap();

    let history = store.history(&agent("main"), &"c1".into(), 10).await.unwrap();
    assert_eq!(texts(&history), ["recorded first", "recorded second"]);
    assert_eq!(history[1].created_at, millis(precise_time(10)));
}

async fn recording_the_same_inbound_message_twice_is_a_no_op<D: TestDb>(db: D) {
    let store = db.open().await;
    let message = inbound("main", "c1", "platform-42", "hello");
    assert!(store.record_inbound(&message).await.unwrap());
    assert!(!store.record_inbound(&message).await.unwrap(), "a redelivery is reported as a duplicate");

    // Even with different content, the id decides.
    let redelivered = message.clone().with_content(MessageContent::Text { text: "edited".into() });
    assert!(!store.record_inbound(&redelivered).await.unwrap());
    let history = store.history(&agent("main"), &"c1".into(), 10).await.unwrap();
    assert_eq!(texts(&history), ["hello"]);

    // A redelivery after the answer does not make the message unhandled again.
    store.mark_handled(&agent("main"), std::slice::from_ref(&message.id)).await.unwrap();
    assert!(!store.record_inbound(&message).await.unwrap());
    assert!(store.unhandled().await.unwrap().is_empty());

    // The same platform id under another agent is another message.
    assert!(store.record_inbound(&message.clone().with_agent("helper")).await.unwrap());
}

async fn an_inbound_message_without_an_agent_is_refused<D: TestDb>(db: D) {
    let store = db.open().await;
    let message = InboundMessage::text("webhook", "c1", Sender::new("u-1"), "hello").with_id("no-agent");
    let error = store.record_inbound(&message).await.unwrap_err();
    assert!(!error.is_transient());
    assert!(error.to_string().contains("no-agent"), "{error}");
    assert!(store.unhandled().await.unwrap().is_empty());
}

async fn a_reply_marks_exactly_its_answers_handled<D: TestDb>(db: D) {
    let store = db.open().await;
    let first = inbound("main", "c1", "in-1", "one");
    let second = inbound("main", "c1", "in-2", "two");
    let third = inbound("main", "c1", "in-3", "three");
    for message in [&first, &second, &third] {
        store.record_inbound(message).await.unwrap();
    }
    // One reply to a coalesced burst answers two messages; the third is still waiting.
    store.record_reply(&reply_to(&first, "one and two"), &[first.id.clone(), second.id.clone()]).await.unwrap();
    let waiting = store.unhandled().await.unwrap();
    assert_eq!(waiting, vec![third.clone()]);

    // A reply that answers nothing (a relay turn) leaves the marks alone.
    store.record_reply(&reply_to(&first, "by the way"), &[]).await.unwrap();
    assert_eq!(store.unhandled().await.unwrap(), vec![third]);
}

async fn a_reply_and_its_handled_marks_commit_together<D: TestDb>(db: D) {
    let store = db.open().await;
    let message = inbound("main", "c1", "in-1", "hello");
    store.record_inbound(&message).await.unwrap();

    // Make the second half of the transaction (the handled mark) fail.
    db.execute(D::REFUSE_HANDLED).await;

    let reply = reply_to(&message, "hi!");
    let error = store.record_reply(&reply, std::slice::from_ref(&message.id)).await.unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert!(error.to_string().contains(reply.id.as_str()), "the error names the reply: {error}");
    assert!(!error.is_transient());
    let history = store.history(&agent("main"), &"c1".into(), 10).await.unwrap();
    assert_eq!(texts(&history), ["hello"], "the reply was rolled back with the failed mark");
    assert_eq!(store.unhandled().await.unwrap(), vec![message.clone()]);

    // Once the failure is gone, retrying the same reply records it once and marks the message.
    db.execute(D::ALLOW_HANDLED).await;
    store.record_reply(&reply, std::slice::from_ref(&message.id)).await.unwrap();
    store.record_reply(&reply, std::slice::from_ref(&message.id)).await.unwrap();
    let history = store.history(&agent("main"), &"c1".into(), 10).await.unwrap();
    assert_eq!(texts(&history), ["hello", "hi!"]);
    assert!(store.unhandled().await.unwrap().is_empty());
}

async fn skipped_messages_are_marked_handled_for_their_agent_only<D: TestDb>(db: D) {
    let store = db.open().await;
    let main_message = inbound("main", "c1", "shared-id", "to main");
    let helper_message = main_message.clone().with_agent("helper");
    store.record_inbound(&main_message).await.unwrap();
    store.record_inbound(&helper_message).await.unwrap();

    store.mark_handled(&agent("main"), &message_ids(&["shared-id", "unknown-id"])).await.unwrap();
    store.mark_handled(&agent("main"), &[]).await.unwrap();
    assert_eq!(store.unhandled().await.unwrap(), vec![helper_message]);

    store.mark_handled(&agent("helper"), &message_ids(&["shared-id"])).await.unwrap();
    store.mark_handled(&agent("helper"), &message_ids(&["shared-id"])).await.unwrap();
    assert!(store.unhandled().await.unwrap().is_empty());
}

async fn conversation_settings_are_kept_per_conversation_and_survive_a_reopen<D: TestDb>(db: D) {
    let (agent, here, there) = (AgentId::new("main"), ConversationId::new("c1"), ConversationId::new("c2"));
    {
        let log = db.open().await;
        assert_eq!(log.conversation_setting(&agent, &here, "response_mode").await.expect("read"), None);
        assert!(log.set_conversation_setting(&agent, &here, "response_mode", "observe").await.expect("keep"));
        assert!(log.set_conversation_setting(&agent, &here, "response_mode", "mention_only").await.expect("keep"));
    }
    let log = db.open().await;
    assert_eq!(
        log.conversation_setting(&agent, &here, "response_mode").await.expect("read").as_deref(),
        Some("mention_only")
    );
    assert_eq!(log.conversation_setting(&agent, &there, "response_mode").await.expect("read"), None);
}

//! Outbound: mrkdwn-aware splitting, threads, reactions, typing.

use serde_json::json;

use spacebot_core::{AdapterErrorKind, OutboundResponse, StatusUpdate};
use spacebot_testing::SlackMessage;

use super::*;

#[tokio::test]
async fn long_replies_are_split_without_breaking_words_code_or_links() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(SlackMessage::new("C1", "U1", "explain"));
    let message = next(&mut stream).await;
    let link = "<https://example.com/docs|the documentation with a long label>";
    let code: String = (0..60).map(|i| format!("step_{i}();\n")).collect();
    let reply = format!("{} {link} {}\n```\n{code}```\n{}", "word ".repeat(700), "more ".repeat(30), "end ".repeat(10));
    adapter.send(&message, OutboundResponse::text(reply.clone())).await.unwrap();

    let posts = fake.calls_to("chat.postMessage");
    assert!(posts.len() >= 2, "{} posts", posts.len());
    let texts: Vec<String> = posts.iter().map(|p| p.body["text"].as_str().unwrap_or_default().to_owned()).collect();
    for (i, text) in texts.iter().enumerate() {
        assert!(text.chars().count() <= spacebot_slack::MESSAGE_LIMIT, "part {i} too long");
        assert_eq!(text.lines().filter(|l| l.starts_with("```")).count() % 2, 0, "part {i} leaves a block open");
        assert_eq!(posts[i].body["channel"], json!("C1"));
        assert!(posts[i].body.get("thread_ts").is_none(), "a top-level message gets a top-level reply");
    }
    assert!(texts.iter().any(|t| t.contains(link)), "the link was cut");
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace().filter(|w| !w.starts_with("```")).map(str::to_owned).collect()
    };
    let sent: Vec<String> = texts.iter().flat_map(|t| words(t)).collect();
    assert_eq!(sent, words(&reply));
    shut(adapter).await;
}

#[tokio::test]
async fn replies_to_a_thread_stay_in_it_and_thread_replies_start_one() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let (_, root) = fake.post(SlackMessage::new("C1", "U1", "root"));
    let top = next(&mut stream).await;
    fake.post(SlackMessage::new("C1", "U1", "reply").in_thread(&root));
    let in_thread = next(&mut stream).await;

    adapter.send(&in_thread, OutboundResponse::text("in the thread")).await.unwrap();
    adapter
        .send(&top, OutboundResponse::ThreadReply { thread_name: "ignored".into(), text: "new thread".into() })
        .await
        .unwrap();
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts[0].body["thread_ts"], json!(root));
    assert_eq!(posts[1].body["thread_ts"], json!(root), "a thread reply threads under the message");
    shut(adapter).await;
}

#[tokio::test]
async fn reactions_use_shortcodes_on_the_message() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let (_, ts) = fake.post(SlackMessage::new("C1", "U1", "nice"));
    let message = next(&mut stream).await;
    adapter.send(&message, OutboundResponse::Reaction { emoji: "👍".into() }).await.unwrap();
    let reaction = &fake.calls_to("reactions.add")[0];
    assert_eq!(reaction.body["name"], json!("+1"));
    assert_eq!(reaction.body["timestamp"], json!(ts));
    assert_eq!(reaction.body["channel"], json!("C1"));
    let unknown = adapter.send(&message, OutboundResponse::Reaction { emoji: "🦀".into() }).await.unwrap_err();
    assert_eq!(unknown.kind(), AdapterErrorKind::Permanent);
    shut(adapter).await;
}

#[tokio::test]
async fn typing_shows_as_the_thread_status_and_is_silent_elsewhere() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let (_, root) = fake.post(SlackMessage::new("C1", "U1", "root"));
    let top = next(&mut stream).await;
    fake.post(SlackMessage::new("C1", "U1", "reply").in_thread(&root));
    let in_thread = next(&mut stream).await;

    adapter.send(&top, OutboundResponse::Status { status: StatusUpdate::Typing }).await.unwrap();
    assert!(fake.calls_to("assistant.threads.setStatus").is_empty());
    adapter.send(&in_thread, OutboundResponse::Status { status: StatusUpdate::Typing }).await.unwrap();
    adapter.send(&in_thread, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await.unwrap();
    let statuses = fake.calls_to("assistant.threads.setStatus");
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0].body["thread_ts"], json!(root));
    assert_ne!(statuses[0].body["status"], json!(""));
    assert_eq!(statuses[1].body["status"], json!(""));
    shut(adapter).await;
}

#[tokio::test]
async fn a_made_up_target_naming_only_its_channel_is_answered_there() {
    // What a cron job's delivery looks like: no platform message, just the channel.
    let (fake, adapter, _stream) = connected(|s| s).await;
    let target = spacebot_core::InboundMessage::text("slack", "slack:C1", spacebot_core::Sender::new("cron"), "")
        .with_adapter("slack")
        .with_metadata(spacebot_core::CHANNEL_KEY, json!("C1"));
    adapter.send(&target, OutboundResponse::text("scheduled news")).await.unwrap();
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(
        (posts[0].body["channel"].clone(), posts[0].body["text"].clone()),
        (json!("C1"), json!("scheduled news"))
    );
}

//! Outbound: split replies, thread replies, reactions, typing, files.

use serde_json::json;

use spacebot_core::{OutboundResponse, StatusUpdate};
use spacebot_testing::FakeMessage;

use super::*;

#[tokio::test]
async fn long_replies_are_split_at_the_limit_without_breaking_words_or_code() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "explain"));
    let message = next(&mut stream).await;

    let code: String = (0..150).map(|i| format!("    let value_{i} = compute({i});\n")).collect();
    let reply = format!("{}\n\n```rust\n{code}```\n{}", "Some words here. ".repeat(60), "And the end. ".repeat(40));
    adapter.send(&message, OutboundResponse::text(reply.clone())).await.unwrap();

    let parts = fake.messages_in(CHANNEL);
    assert!(parts.len() >= 4, "{} parts", parts.len());
    for (i, part) in parts.iter().enumerate() {
        let chars = part.chars().count();
        assert!(chars <= spacebot_discord::MESSAGE_LIMIT, "part {i} has {chars} characters");
        let fences = part.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences % 2, 0, "part {i} leaves a code block open: {part}");
    }
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace().filter(|w| !w.starts_with("```")).map(str::to_owned).collect()
    };
    let sent: Vec<String> = parts.iter().flat_map(|p| words(p)).collect();
    assert_eq!(sent, words(&reply), "every word arrives once, in order, unbroken");
    shut(adapter).await;
}

#[tokio::test]
async fn replies_in_a_thread_stay_in_the_thread() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.add_thread(GUILD, 99, CHANNEL);
    fake.post(FakeMessage::guild(GUILD, 99, 7, "in a thread"));
    let message = next(&mut stream).await;
    adapter.send(&message, OutboundResponse::text("answer")).await.unwrap();
    assert_eq!(fake.messages_in(99), vec!["answer"]);
    assert!(fake.messages_in(CHANNEL).is_empty());
    shut(adapter).await;
}

#[tokio::test]
async fn thread_replies_start_a_thread_on_the_message() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let id = fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "long question"));
    let message = next(&mut stream).await;
    adapter
        .send(&message, OutboundResponse::ThreadReply { thread_name: "Details".into(), text: "in here".into() })
        .await
        .unwrap();
    let requests = fake.requests();
    let created = requests
        .iter()
        .find(|r| r.method == "POST" && r.path == format!("/channels/{CHANNEL}/messages/{id}/threads"))
        .expect("a thread was started from the message");
    assert_eq!(created.body["name"], json!("Details"));
    let posted = requests.iter().find(|r| r.method == "POST" && r.body["content"] == json!("in here")).unwrap();
    assert_ne!(posted.path, format!("/channels/{CHANNEL}/messages"), "the reply went to the new thread");
    shut(adapter).await;
}

#[tokio::test]
async fn reactions_go_on_the_message() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let id = fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "nice"));
    let message = next(&mut stream).await;
    adapter.send(&message, OutboundResponse::Reaction { emoji: "👍".into() }).await.unwrap();
    let requests = fake.requests();
    let reaction = requests.iter().find(|r| r.method == "PUT" && r.path.contains("/reactions/")).unwrap();
    assert!(reaction.path.starts_with(&format!("/channels/{CHANNEL}/messages/{id}/reactions/")), "{}", reaction.path);
    assert!(reaction.path.ends_with("/@me"));
    shut(adapter).await;
}

#[tokio::test]
async fn typing_shows_while_a_turn_runs_and_stops_with_the_reply() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "think"));
    let message = next(&mut stream).await;
    adapter.send(&message, OutboundResponse::Status { status: StatusUpdate::Typing }).await.unwrap();
    let typing_path = format!("/channels/{CHANNEL}/typing");
    fake.wait_for("a typing indicator", WAIT, |r| r.iter().any(|r| r.path == typing_path)).await;
    adapter.send(&message, OutboundResponse::text("done")).await.unwrap();
    adapter.send(&message, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await.unwrap();
    assert_eq!(fake.messages_in(CHANNEL), vec!["done"]);
    shut(adapter).await;
}

#[tokio::test]
async fn files_are_uploaded() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "send the file"));
    let message = next(&mut stream).await;
    let file = OutboundResponse::File {
        filename: "notes.txt".into(),
        mime_type: "text/plain".into(),
        data: b"hello".to_vec(),
        caption: Some("here".into()),
    };
    adapter.send(&message, file).await.unwrap();
    let path = format!("/channels/{CHANNEL}/messages");
    assert!(fake.requests().iter().any(|r| r.method == "POST" && r.path == path));
    shut(adapter).await;
}

#[tokio::test]
async fn a_made_up_target_naming_only_its_channel_is_answered_there() {
    // What a cron job's delivery looks like: no platform message, just the channel.
    let (fake, adapter, _stream) = connected(|s| s).await;
    let target = spacebot_core::InboundMessage::text("discord", "discord:10", spacebot_core::Sender::new("cron"), "")
        .with_adapter("discord")
        .with_metadata(spacebot_core::CHANNEL_KEY, json!(CHANNEL.to_string()));
    adapter.send(&target, OutboundResponse::text("scheduled news")).await.unwrap();
    assert_eq!(fake.messages_in(CHANNEL), ["scheduled news"]);
}

//! Slash commands: registration and translation into inbound commands.

use serde_json::json;

use spacebot_core::{MessageContent, OutboundResponse};

use super::*;

#[tokio::test]
async fn control_commands_are_registered_once() {
    let (fake, adapter, _stream) = connected(|s| s.with_slash_commands(true)).await;
    let names: Vec<String> =
        fake.registered_commands().iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(names, vec!["status", "stop", "pause", "resume", "new"]);
    // A reconnect with the same set reads, but does not rewrite.
    shut(adapter).await;
    let adapter = DiscordAdapter::new(settings(&fake).with_slash_commands(true));
    let _stream = adapter.start().await.unwrap();
    let puts = fake.requests().iter().filter(|r| r.method == "PUT" && r.path.ends_with("/commands")).count();
    assert_eq!(puts, 1);
    shut(adapter).await;
}

#[tokio::test]
async fn a_slash_command_becomes_an_inbound_command_answered_in_place() {
    let (fake, adapter, mut stream) = connected(|s| s.with_slash_commands(true)).await;
    let id = fake.slash_command(Some(GUILD), CHANNEL, 7, "pause", Some("lunch"));
    let message = next(&mut stream).await;
    assert_eq!(message.content, MessageContent::Command { name: "pause".into(), args: "lunch".into() });
    assert_eq!(message.conversation.as_str(), "discord:1:10");
    let callback = fake
        .wait_for("the deferred answer", WAIT, |r| r.iter().any(|r| r.path.ends_with("/callback")))
        .await
        .into_iter()
        .find(|r| r.path.ends_with("/callback"))
        .unwrap();
    assert_eq!(callback.path, format!("/interactions/{id}/token-{id}/callback"));
    assert_eq!(callback.body["type"], json!(5), "deferred");

    adapter.send(&message, OutboundResponse::text("paused")).await.unwrap();
    let edit = fake.requests().into_iter().find(|r| r.method == "PATCH").expect("the placeholder is replaced");
    assert!(edit.path.ends_with(&format!("/token-{id}/messages/@original")), "{}", edit.path);
    assert_eq!(edit.body["content"], json!("paused"));
    assert!(fake.messages_in(CHANNEL).is_empty());
    // A second reply can't edit again; it goes to the channel.
    adapter.send(&message, OutboundResponse::text("still paused")).await.unwrap();
    assert_eq!(fake.messages_in(CHANNEL), vec!["still paused"]);
    shut(adapter).await;
}

#[tokio::test]
async fn commands_outside_the_allow_lists_are_refused_and_not_handed_in() {
    let (fake, adapter, mut stream) = connected(|s| s.with_slash_commands(true).with_channels([CHANNEL])).await;
    fake.add_channel(GUILD, 11);
    fake.slash_command(Some(GUILD), 11, 7, "stop", None);
    let requests = fake.wait_for("the refusal", WAIT, |r| r.iter().any(|r| r.path.ends_with("/callback"))).await;
    let refusal = requests.iter().find(|r| r.path.ends_with("/callback")).unwrap();
    assert_eq!(refusal.body["type"], json!(4));
    nothing_within(&mut stream, std::time::Duration::from_millis(200)).await;
    shut(adapter).await;
}

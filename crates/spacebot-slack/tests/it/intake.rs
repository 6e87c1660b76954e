//! Socket Mode intake: channels, threads, DMs, filters, commands, acknowledgement after take.

use std::time::Duration;

use serde_json::json;

use spacebot_core::{GUILD_KEY, MessageContent};
use spacebot_testing::SlackMessage;

use super::*;

#[tokio::test]
async fn channel_thread_and_dm_messages_become_distinct_conversations() {
    let (fake, adapter, mut stream) = connected(|s| s.with_dm_users(["U1"])).await;
    let (_, root) = fake.post(SlackMessage::new("C1", "U1", "top level"));
    let top = next(&mut stream).await;
    assert_eq!(top.conversation.as_str(), "slack:T1:C1");
    assert_eq!(top.content.text(), "top level");
    assert_eq!(top.sender.id, "U1");
    assert_eq!(top.adapter, "slack");
    assert_eq!(top.metadata[GUILD_KEY], json!("T1"));

    fake.post(SlackMessage::new("C1", "U1", "in the thread").in_thread(&root));
    let thread = next(&mut stream).await;
    assert_eq!(thread.conversation.as_str(), format!("slack:T1:C1:{root}"));

    fake.post(SlackMessage::new("D1", "U1", "privately"));
    let dm = next(&mut stream).await;
    assert!(dm.direct);
    assert_eq!(dm.conversation.as_str(), "slack:T1:D1");
    shut(adapter).await;
}

#[tokio::test]
async fn own_bot_edited_and_unlisted_messages_are_dropped_but_acknowledged() {
    let (fake, adapter, mut stream) = connected(|s| s.with_workspaces(["T1"]).with_channels(["C1"])).await;
    let dropped = [
        fake.post(SlackMessage::new("C1", spacebot_testing::fake_slack::BOT_USER, "my echo")).0,
        fake.post(SlackMessage::new("C1", "U2", "beep").from_bot("B2")).0,
        fake.post(SlackMessage::new("C1", "U1", "edited").with_subtype("message_changed")).0,
        fake.post(SlackMessage::new("C2", "U1", "other channel")).0,
        fake.post(SlackMessage::new("C1", "U1", "other team").in_team("T2")).0,
        fake.post(SlackMessage::new("D1", "U1", "unlisted DM")).0,
    ];
    fake.post(SlackMessage::new("C1", "U1", "the one that counts"));
    assert_eq!(next(&mut stream).await.content.text(), "the one that counts");
    nothing_within(&mut stream, Duration::from_millis(200)).await;
    for envelope in dropped {
        assert!(fake.acked(&envelope), "{envelope} is not for us, so it is acknowledged at once");
    }
    shut(adapter).await;
}

#[tokio::test]
async fn an_envelope_is_acknowledged_only_after_the_runtime_took_its_message() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let (first, _) = fake.post(SlackMessage::new("C1", "U1", "one"));
    let message = next(&mut stream).await;
    assert_eq!(message.content.text(), "one");
    // The runtime has the message but has not asked for the next one (it is still recording).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!fake.acked(&first), "acknowledged before the runtime was done with it");

    // Asking for the next message means the previous one was recorded.
    let (second, _) = fake.post(SlackMessage::new("C1", "U1", "two"));
    assert_eq!(next(&mut stream).await.content.text(), "two");
    fake.wait_for("the first ack", WAIT, |f| f.acked(&first)).await;
    assert!(!fake.acked(&second));
    shut(adapter).await;
}

#[tokio::test]
async fn an_envelope_whose_message_was_never_taken_stays_unacknowledged() {
    let (fake, adapter, stream) = connected(|s| s).await;
    drop(stream);
    let (envelope, _) = fake.post(SlackMessage::new("C1", "U1", "lost in transit"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fake.acked(&envelope), "Slack must redeliver a message nobody recorded");
    shut(adapter).await;
}

#[tokio::test]
async fn slash_commands_become_inbound_commands() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.slash_command("C1", "U1", "/pause", "lunch break");
    let direct = next(&mut stream).await;
    assert_eq!(direct.content, MessageContent::Command { name: "pause".into(), args: "lunch break".into() });
    assert_eq!(direct.conversation.as_str(), "slack:T1:C1");

    fake.slash_command("C1", "U1", "/spacebot", "stop now");
    let umbrella = next(&mut stream).await;
    assert_eq!(umbrella.content, MessageContent::Command { name: "stop".into(), args: "now".into() });
    shut(adapter).await;
}

#[tokio::test]
async fn mentions_are_flagged() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(SlackMessage::new("C1", "U1", "<@UBOT> help"));
    assert_eq!(next(&mut stream).await.metadata["mentions_bot"], json!(true));
    shut(adapter).await;
}

/// A burst of messages in one channel reaches the runtime in the order Slack sent it (the
/// Discord adapter needed an intake that reorders for this; Socket Mode hands events over one
/// at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_runtime_in_order() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    for i in 0..200 {
        fake.post(SlackMessage::new("C1", "U1", format!("{i}")));
    }
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.push(next(&mut stream).await.content.text().parse::<usize>().unwrap());
    }
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    shut(adapter).await;
}

#[tokio::test]
async fn shared_images_are_fetched_with_the_bot_token_and_others_say_why_not() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let png = vec![0x89, b'P', b'N', b'G', 4, 5, 6];
    let url = fake.add_file("cat.png", "image/png", png.clone());
    let big = fake.add_file("huge.jpg", "image/jpeg", vec![0; 5 * 1024 * 1024 / 4 * 3 + 1]);
    let gone = format!("{}/files/gone.png", fake.api_url().trim_end_matches("/api"));
    fake.post(
        SlackMessage::new("C1", "U1", "look")
            .with_file("cat.png", &url, "image/png")
            .with_file("huge.jpg", &big, "image/jpeg")
            .with_file("gone.png", &gone, "image/png")
            .with_file("notes.txt", &url, "text/plain"),
    );
    let message = next(&mut stream).await;
    let MessageContent::Media { attachments, .. } = &message.content else { panic!("media: {message:?}") };
    assert_eq!(attachments[0].data.as_deref(), Some(png.as_slice()), "{:?}", attachments[0]);
    let too_large = attachments[1].skipped.as_deref().unwrap_or_default();
    assert_eq!(too_large, "it is larger than the 3.8 MB limit");
    let missing = attachments[2].skipped.as_deref().unwrap_or_default();
    assert!(missing.starts_with("it could not be downloaded") && missing.contains("404"), "{missing}");
    assert!(
        attachments[3].data.is_none() && attachments[3].skipped.is_none(),
        "a file that is no image stays a reference"
    );
    let downloads = fake.file_downloads();
    assert_eq!(downloads.len(), 3, "{downloads:#?}");
    assert!(downloads.iter().all(|(_, auth)| auth.as_deref() == Some("Bearer xoxb-fake")), "{downloads:#?}");
    shut(adapter).await;
}

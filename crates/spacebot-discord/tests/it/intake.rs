//! Gateway intake: guild messages, threads, DMs, mentions, attachments, allow-lists.

use std::time::Duration;

use serde_json::json;

use spacebot_core::{GUILD_KEY, MessageContent, PARENT_CHANNEL_KEY};
use spacebot_testing::FakeMessage;
use spacebot_testing::fake_discord::BOT_USER_ID;

use super::*;

#[tokio::test]
async fn identifies_with_the_token_and_the_message_intents() {
    let (fake, adapter, _stream) = connected(|s| s).await;
    let identify = &fake.identifies()[0];
    let token = identify["token"].as_str().unwrap();
    assert!(token.ends_with("fake-token"), "identify carried {token}");
    let intents = identify["intents"].as_u64().unwrap();
    // GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT
    assert_eq!(intents & 37377, 37377, "intents {intents}");
    shut(adapter).await;
}

#[tokio::test]
async fn guild_messages_threads_and_dms_become_distinct_conversations() {
    let (fake, adapter, mut stream) = connected(|s| s.with_dm_users(["7"])).await;
    fake.add_thread(GUILD, 99, CHANNEL);

    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "in the channel").by("alice"));
    let channel = next(&mut stream).await;
    assert_eq!(channel.conversation.as_str(), "discord:1:10");
    assert_eq!(channel.content.text(), "in the channel");
    assert_eq!(channel.sender.id, "7");
    assert_eq!(channel.adapter, "discord");
    assert_eq!(channel.metadata[GUILD_KEY], json!("1"));
    assert!(!channel.direct);

    fake.post(FakeMessage::guild(GUILD, 99, 7, "in the thread"));
    let thread = next(&mut stream).await;
    assert_eq!(thread.conversation.as_str(), "discord:1:99");
    assert_eq!(thread.metadata[PARENT_CHANNEL_KEY], json!("10"));

    fake.post(FakeMessage::direct(55, 7, "privately"));
    let dm = next(&mut stream).await;
    assert_eq!(dm.conversation.as_str(), "discord:dm:7");
    assert!(dm.direct);
    shut(adapter).await;
}

#[tokio::test]
async fn own_messages_bots_and_unlisted_places_are_dropped() {
    let (fake, adapter, mut stream) = connected(|s| s.with_guilds([GUILD]).with_channels([CHANNEL])).await;
    fake.add_channel(2, 20);
    fake.add_channel(GUILD, 11);
    fake.post(FakeMessage::guild(GUILD, CHANNEL, BOT_USER_ID, "my own echo"));
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 8, "beep").from_a_bot());
    fake.post(FakeMessage::guild(2, 20, 7, "other guild"));
    fake.post(FakeMessage::guild(GUILD, 11, 7, "other channel"));
    fake.post(FakeMessage::direct(55, 7, "unlisted DM"));
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "the one that counts"));
    let only = next(&mut stream).await;
    assert_eq!(only.content.text(), "the one that counts");
    nothing_within(&mut stream, Duration::from_millis(200)).await;
    shut(adapter).await;
}

#[tokio::test]
async fn mentions_and_replies_to_the_bot_are_flagged() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "hello").mentioning_bot());
    let mention = next(&mut stream).await;
    assert_eq!(mention.content.text(), "@spacebot hello");
    assert_eq!(mention.metadata["mentions_bot"], json!(true));

    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "about that").replying_to_bot());
    assert_eq!(next(&mut stream).await.metadata["mentions_bot"], json!(true));

    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "just chatting"));
    assert_eq!(next(&mut stream).await.metadata["mentions_bot"], json!(false));
    shut(adapter).await;
}

#[tokio::test]
async fn attachments_are_received_as_references() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.post(FakeMessage::guild(GUILD, CHANNEL, 7, "see this").with_attachment(
        "report.pdf",
        "https://cdn.example/report.pdf",
        "application/pdf",
        2048,
    ));
    let message = next(&mut stream).await;
    let MessageContent::Media { text, attachments } = message.content else { panic!("not media: {message:?}") };
    assert_eq!(text.as_deref(), Some("see this"));
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].filename, "report.pdf");
    assert_eq!(attachments[0].url, "https://cdn.example/report.pdf");
    shut(adapter).await;
}

/// Serenity runs each event's handler in a task of its own, and a burst's tasks start in no
/// fixed order: before the intake put them back in order, 192 of these 200 arrived out of place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_runtime_in_order_in_each_conversation() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    fake.add_thread(GUILD, 99, CHANNEL);
    for i in 0..200 {
        let channel = if i % 2 == 0 { CHANNEL } else { 99 };
        fake.post(FakeMessage::guild(GUILD, channel, 7, format!("{i}")));
    }
    let mut by_conversation: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for _ in 0..200 {
        let message = next(&mut stream).await;
        let number = message.content.text().parse().unwrap();
        by_conversation.entry(message.conversation.as_str().to_owned()).or_default().push(number);
    }
    let expected = |parity: usize| (0..200).filter(|i| i % 2 == parity).collect::<Vec<usize>>();
    assert_eq!(by_conversation["discord:1:10"], expected(0));
    assert_eq!(by_conversation["discord:1:99"], expected(1));
    shut(adapter).await;
}

#[tokio::test]
async fn image_attachments_are_fetched_within_the_cap_and_others_say_why_not() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let url = fake.add_file("cat.png", "image/png", png.clone());
    let missing = format!("{}/files/gone.png", fake.api_url());
    fake.post(
        FakeMessage::guild(GUILD, CHANNEL, 7, "look")
            .with_attachment("cat.png", &url, "image/png", png.len() as u64)
            .with_attachment("huge.jpg", &url, "image/jpeg", 6 * 1024 * 1024)
            .with_attachment("gone.png", &missing, "image/png", 10)
            .with_attachment("notes.txt", &url, "text/plain", 5),
    );
    let message = next(&mut stream).await;
    let MessageContent::Media { attachments, .. } = &message.content else { panic!("media: {message:?}") };
    assert_eq!(attachments[0].data.as_deref(), Some(png.as_slice()), "{:?}", attachments[0]);
    assert_eq!(attachments[1].skipped.as_deref(), Some("it is 6.0 MB, over the 3.8 MB limit"));
    let gone = attachments[2].skipped.as_deref().unwrap_or_default();
    assert!(gone.starts_with("it could not be downloaded") && gone.contains("404"), "{gone}");
    assert!(
        attachments[3].data.is_none() && attachments[3].skipped.is_none(),
        "a file that is no image stays a reference"
    );
    let fetched: Vec<String> =
        fake.requests().into_iter().filter(|r| r.path.starts_with("/files/")).map(|r| r.path).collect();
    assert_eq!(fetched, vec!["/files/cat.png", "/files/gone.png"], "the oversized one was never asked for");
    shut(adapter).await;
}

//! Updates in: commands, mentions, filters, and resuming after a restart without replaying or
//! skipping an update.

use serde_json::json;

use spacebot_core::MessageContent;
use spacebot_testing::TelegramMessage;
use spacebot_testing::fake_telegram::BOT_USERNAME;

use super::*;

#[tokio::test]
async fn commands_mentions_and_replies_arrive_marked_and_others_bots_commands_do_not() {
    let (fake, adapter, mut stream) = connected(|s| s).await;

    fake.push(TelegramMessage::group(GROUP, USER, "/pause@other_bot"));
    fake.push(TelegramMessage::group(GROUP, USER, "/Pause@spacebot_test_bot now"));
    let command = next(&mut stream).await;
    assert_eq!(command.content, MessageContent::Command { name: "pause".into(), args: "now".into() });
    assert!(command.mentions_bot(), "a command to the bot addresses it");
    assert_eq!(command.adapter, "telegram");
    assert_eq!(command.source, "telegram");
    assert_eq!(command.sender.id, USER.to_string());

    fake.push(TelegramMessage::group(GROUP, USER, &format!("hey @{BOT_USERNAME} look")));
    let mention = next(&mut stream).await;
    assert!(mention.mentions_bot());
    fake.push(TelegramMessage::group(GROUP, USER, "to the room"));
    assert!(!next(&mut stream).await.mentions_bot());
    fake.push(TelegramMessage::group(GROUP, USER, "about your answer").replying_to_bot());
    assert!(next(&mut stream).await.mentions_bot(), "a reply to the bot addresses it");

    // Edits, other bots, and strangers in private are not handed in.
    fake.push(TelegramMessage::group(GROUP, USER, "to the room, edited").edited());
    fake.push(TelegramMessage::group(GROUP, 99, "beep").from_bot());
    fake.push(TelegramMessage::private(99, "let me in"));
    fake.push(TelegramMessage::private(USER, "a private hello").with_document("DOC9", "notes.txt", "text/plain", 12));
    let private = next(&mut stream).await;
    assert!(private.direct);
    assert_eq!(private.conversation.as_str(), format!("telegram:{USER}"));
    let MessageContent::Media { text, attachments } = &private.content else { panic!("{:?}", private.content) };
    assert_eq!(text.as_deref(), Some("a private hello"));
    assert_eq!(attachments[0].url, "telegram:file:DOC9");
    assert_eq!(attachments[0].filename, "notes.txt");
    assert!(!format!("{private:?}").contains(TOKEN), "the token never travels with a message");

    let polls = fake.calls_to("getUpdates");
    assert!(polls.iter().all(|p| p.body["allowed_updates"] == json!(["message"])), "only messages are asked for");
    shut(adapter).await;
}

#[tokio::test]
async fn a_restart_resumes_after_the_last_update_taken_without_replaying_or_skipping() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let first = fake.push(TelegramMessage::group(GROUP, USER, "one"));
    fake.push(TelegramMessage::group(GROUP, USER, "two"));
    fake.push(TelegramMessage::group(GROUP, USER, "three"));
    assert_eq!(next(&mut stream).await.content.text(), "one");
    // Reading "two" means "one" was taken; "two" itself is still the runtime's to record.
    assert_eq!(next(&mut stream).await.content.text(), "two");
    drop(stream);
    shut(adapter).await;
    assert_eq!(fake.confirmed(), first, "shutdown confirmed exactly what was taken");

    // A new process: the adapter starts with no offset of its own, as after a crash.
    let adapter = TelegramAdapter::new(settings(&fake)).expect("the adapter builds");
    let mut stream = adapter.start().await.expect("connects");
    assert_eq!(next(&mut stream).await.content.text(), "two", "the update not taken is delivered again");
    assert_eq!(next(&mut stream).await.content.text(), "three");
    fake.push(TelegramMessage::group(GROUP, USER, "four"));
    assert_eq!(next(&mut stream).await.content.text(), "four");
    shut(adapter).await;
}

#[tokio::test]
async fn a_revoked_token_fails_start_permanently_and_the_health_check_says_so() {
    let (fake, adapter, stream) = connected(|s| s).await;
    drop(stream);
    fake.set_token("4242:another-token");
    let error = adapter.start().await.err().expect("start fails");
    assert_eq!(error.kind(), spacebot_core::AdapterErrorKind::Permanent, "{error}");
    assert!(error.to_string().contains("401"), "{error}");
    assert!(adapter.health_check().await.is_err());
    assert!(!error.to_string().contains("test-token"), "the token is not in the error: {error}");
}

#[tokio::test]
async fn webhook_mode_registers_the_url_and_answers_a_delivery_once_the_message_is_taken() {
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address")
    };
    let url = format!("http://{listen}/telegram/hook");
    let webhook = spacebot_telegram::WebhookSettings::new(url.clone(), listen, "hook-secret-1");
    let (fake, adapter, mut stream) = connected(|s| s.with_webhook(webhook)).await;
    assert_eq!(fake.webhook(), Some((url.clone(), Some("hook-secret-1".to_owned()))));

    let update = json!({"update_id": 5, "message": {
        "message_id": 3, "date": 1_700_000_000,
        "chat": {"id": USER, "type": "private", "first_name": "Alice"},
        "from": {"id": USER, "is_bot": false, "first_name": "Alice"},
        "text": "by webhook"
    }});
    let http = reqwest::Client::new();
    let refused = http.post(&url).json(&update).send().await.expect("the listener answers");
    assert_eq!(refused.status().as_u16(), 401, "no secret, no delivery");

    let delivery = tokio::spawn({
        let (http, url, update) = (http.clone(), url.clone(), update.clone());
        async move {
            let response = http.post(&url).header("X-Telegram-Bot-Api-Secret-Token", "hook-secret-1").json(&update);
            response.send().await.map(|r| r.status().as_u16())
        }
    });
    let message = next(&mut stream).await;
    assert_eq!(message.content.text(), "by webhook");
    assert!(message.direct);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!delivery.is_finished(), "the delivery waits until the runtime took the message");
    let mut following = Box::pin(stream.next());
    let _ = tokio::time::timeout(Duration::from_millis(100), &mut following).await;
    let status = tokio::time::timeout(WAIT, delivery).await.expect("answered").expect("joined").expect("sent");
    assert_eq!(status, 200);
    assert!(fake.calls_to("getUpdates").is_empty(), "no polling in webhook mode");
    shut(adapter).await;
}

#[tokio::test]
async fn images_are_fetched_for_vision_and_one_too_large_carries_the_reason() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let jpeg: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    fake.add_file("PHOTO1", "photos/file_1.jpg", jpeg.clone());
    fake.push(TelegramMessage::private(USER, "what is this?").with_photo("PHOTO1", 800, 600, jpeg.len() as u64));
    let message = next(&mut stream).await;
    let MessageContent::Media { attachments, .. } = &message.content else { panic!("{:?}", message.content) };
    assert_eq!(attachments[0].data.as_deref(), Some(jpeg.as_slice()), "the photo's bytes, for a vision model");
    assert_eq!(attachments[0].url, "telegram:file:PHOTO1", "the reference stays, without the token");

    fake.push(TelegramMessage::private(USER, "and this?").with_photo("HUGE", 9000, 9000, 50 << 20));
    let message = next(&mut stream).await;
    let MessageContent::Media { attachments, .. } = &message.content else { panic!("{:?}", message.content) };
    assert!(attachments[0].data.is_none());
    let reason = attachments[0].skipped.clone().unwrap_or_default();
    assert!(reason.contains("over the") && !reason.contains(TOKEN), "{reason}");
    shut(adapter).await;
}

#[tokio::test]
async fn the_control_commands_fill_the_menu_once() {
    let (fake, adapter, stream) = connected(|s| s).await;
    let menu = fake.commands();
    let names: Vec<&str> = menu.iter().map(|(command, _)| command.as_str()).collect();
    assert_eq!(names, ["status", "stop", "pause", "resume", "new", "active", "mention_only", "quiet"]);
    for (command, _) in &menu {
        let typed = spacebot_core::InboundMessage::text("telegram", "telegram:1", spacebot_core::Sender::new("7"), "")
            .with_content(MessageContent::Command { name: command.clone(), args: String::new() });
        assert!(spacebot_core::ControlCommand::parse(&typed).is_some(), "/{command} from the menu is a command");
    }
    drop(stream);
    let _ = adapter.start().await.expect("restarts");
    assert_eq!(fake.calls_to("setMyCommands").len(), 1, "an unchanged menu is not rewritten");
    shut(adapter).await;
}

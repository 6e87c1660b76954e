//! Responses out: formatting that never gets a message refused, rate limits, reactions, files
//! and thread replies where Telegram has no threads.

use serde_json::json;

use spacebot_core::{AdapterErrorKind, MessagingAdapter, OutboundResponse, StatusUpdate};
use spacebot_testing::TelegramMessage;

use super::*;

async fn group_message(fake: &FakeTelegram, stream: &mut InboundStream) -> InboundMessage {
    fake.push(TelegramMessage::group(GROUP, USER, "hello"));
    next(stream).await
}

#[tokio::test]
async fn model_markdown_arrives_formatted_and_stray_characters_arrive_as_written() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let message = group_message(&fake, &mut stream).await;
    let text = "snake_case_name, 2*3*4, a <b> tag & **bold** and `a_b<c>`";
    adapter.send(&message, OutboundResponse::text(text)).await.expect("sent");
    let sent = fake.sent();
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(sent[0].text, "snake_case_name, 2*3*4, a <b> tag & bold and a_b<c>", "raw: {}", sent[0].raw);
    assert_eq!(sent[0].chat_id, GROUP);
    assert_eq!(sent[0].thread_id, None);

    // Were the HTML ever refused, the text still goes out, plain.
    fake.fail_next("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start tag", None);
    adapter.send(&message, OutboundResponse::text("still **here**")).await.expect("sent as plain text");
    let last = fake.sent().pop().expect("a message");
    assert_eq!((last.text.as_str(), last.parse_mode), ("still **here**", None));
    shut(adapter).await;
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_for_as_long_as_telegram_says() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let message = group_message(&fake, &mut stream).await;
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", Some(1));
    adapter.send(&message, OutboundResponse::text("patient")).await.expect("sent after the wait");
    let calls = fake.calls_to("sendMessage");
    assert_eq!(calls.len(), 2, "the refused call and the retry");
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before retry_after");
    assert_eq!(fake.sent().len(), 1);
    shut(adapter).await;
}

#[tokio::test]
async fn reactions_use_telegrams_set_and_say_when_an_emoji_is_not_in_it() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let message = group_message(&fake, &mut stream).await;
    adapter.send(&message, OutboundResponse::Reaction { emoji: "❤️".into() }).await.expect("reacted");
    assert_eq!(fake.reactions()[0].emoji, vec!["❤".to_owned()]);
    assert_eq!(fake.reactions()[0].message_id, message.metadata["telegram_message_id"].as_i64().unwrap_or(0) as i32);
    let error = adapter.send(&message, OutboundResponse::Reaction { emoji: "🦀".into() }).await.expect_err("refused");
    assert_eq!(error.kind(), AdapterErrorKind::Permanent);
    assert!(error.to_string().contains("🦀"), "{error}");
    shut(adapter).await;
}

#[tokio::test]
async fn typing_repeats_until_stopped_and_a_reply_stops_it() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let message = group_message(&fake, &mut stream).await;
    adapter.send(&message, OutboundResponse::Status { status: StatusUpdate::Typing }).await.expect("typing");
    fake.wait_for("a typing action", WAIT, |f| !f.chat_actions().is_empty()).await;
    assert_eq!(fake.chat_actions()[0], (GROUP, None, "typing".to_owned()));
    adapter.send(&message, OutboundResponse::text("done")).await.expect("sent");
    let count = fake.chat_actions().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.chat_actions().len(), count, "no typing after the reply");
    shut(adapter).await;
}

#[tokio::test]
async fn a_long_caption_follows_the_file_and_thread_replies_fall_back_to_replies() {
    let (fake, adapter, mut stream) = connected(|s| s).await;
    let message = group_message(&fake, &mut stream).await;
    let caption = "word ".repeat(400);
    let file = OutboundResponse::File {
        filename: "report.csv".into(),
        mime_type: "text/csv".into(),
        data: b"a,b\n1,2\n".to_vec(),
        caption: Some(caption.clone()),
    };
    adapter.send(&message, file).await.expect("uploaded");
    let document = &fake.documents()[0];
    assert_eq!((document.filename.as_str(), document.bytes.as_slice()), ("report.csv", b"a,b\n1,2\n".as_slice()));
    assert_eq!(document.content_type.as_deref(), Some("text/csv"));
    assert_eq!(document.caption, None, "a caption over 1,024 characters can't ride along");
    assert_eq!(fake.sent().last().map(|m| m.text.clone()), Some(caption.trim_end().to_owned()));

    // A group that is not a forum has no topics: the thread reply answers the message itself.
    fake.push_raw(json!({"message": {
        "message_id": 50, "date": 1_700_000_000,
        "chat": {"id": -555, "type": "group", "title": "plain group"},
        "from": {"id": USER, "is_bot": false, "first_name": "Alice"},
        "text": "in a plain group"
    }}));
    let plain = next(&mut stream).await;
    let reply = OutboundResponse::ThreadReply { thread_name: "t".into(), text: "threaded".into() };
    adapter.send(&plain, reply).await.expect("sent");
    let sent = fake.sent().pop().expect("a message");
    assert_eq!((sent.chat_id, sent.reply_to, sent.thread_id), (-555, Some(50), None));
    assert!(fake.topics().is_empty());
    shut(adapter).await;
}

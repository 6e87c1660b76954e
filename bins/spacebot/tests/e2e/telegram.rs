//! Telegram end to end: the real binary, the fake model, and the fake Bot API the real client
//! talks to. A message in and the model's reply out, then a `kill -9` while a turn runs, with the
//! update still unconfirmed: after the restart Telegram delivers it again and it is answered
//! exactly once.

use std::time::Duration;

use serde_json::{Value, json};

use spacebot_testing::fake_telegram::TOKEN;
use spacebot_testing::{FakeLlmServer, FakeReply, FakeTelegram, TelegramMessage};

use crate::daemon::{Daemon, Home, PATIENCE, openai_config};

const USER: u64 = 7;

async fn stored(daemon: &Daemon, conversation: &str) -> Vec<Value> {
    let url = format!("{}/api/agents/main/conversations/{conversation}/messages", daemon.base);
    reqwest::get(url).await.expect("messages request").json::<Vec<Value>>().await.unwrap_or_default()
}

fn sent_count(telegram: &FakeTelegram, text: &str) -> usize {
    telegram.sent().iter().filter(|m| m.text == text).count()
}

#[tokio::test]
async fn a_telegram_message_is_answered_and_one_cut_by_a_crash_is_answered_exactly_once() {
    let model = FakeLlmServer::start().await;
    let telegram = FakeTelegram::start().await;
    let config = format!(
        "{}\n[messaging.telegram]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\ndm_users = [{USER}]\npoll_timeout_secs = 2\n",
        openai_config(&model.openai_base_url()),
        telegram.api_url()
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Hello from **Spacebot**, snake_case and all."})));
    telegram.push(TelegramMessage::private(USER, "hi"));
    telegram.wait_for("the reply", PATIENCE, |f| sent_count(f, "Hello from Spacebot, snake_case and all.") == 1).await;
    assert!(telegram.chat_actions().iter().any(|(chat, _, action)| *chat == USER as i64 && action == "typing"));
    let reply = telegram.sent().pop().expect("the reply");
    assert_eq!(reply.parse_mode.as_deref(), Some("HTML"), "sent as HTML: {}", reply.raw);

    // The model is still thinking when the daemon dies, and the poll that would confirm the
    // update failed, so Telegram still holds it.
    let asked = model.request_count();
    model.push(FakeReply::hang());
    telegram.fail_next("getUpdates", 502, "Bad Gateway", None);
    let update = telegram.push(TelegramMessage::private(USER, "remember this"));
    let deadline = std::time::Instant::now() + PATIENCE;
    while model.request_count() == asked {
        assert!(std::time::Instant::now() < deadline, "the model was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(telegram.confirmed() < update, "the update is not confirmed when the daemon dies");
    daemon.crash().await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Noted once."})));
    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("resuming messages left unanswered", PATIENCE).await;
    telegram.wait_for("the answer after the restart", PATIENCE, |f| sent_count(f, "Noted once.") == 1).await;
    telegram.wait_for("the redelivered update confirmed", PATIENCE, |f| f.confirmed() >= update).await;

    // One more turn drains whatever was still queued; the cut message was answered once.
    model.push(FakeReply::tool_call("reply", json!({"content": "Third."})));
    telegram.push(TelegramMessage::private(USER, "third"));
    telegram.wait_for("the third answer", PATIENCE, |f| sent_count(f, "Third.") == 1).await;
    assert_eq!(sent_count(&telegram, "Noted once."), 1, "answered exactly once: {:#?}", telegram.sent());
    let log = stored(&daemon, &format!("telegram:{USER}")).await;
    let said: Vec<&str> = log.iter().filter(|m| m["role"] == "user").filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(said, ["hi", "remember this", "third"], "each message recorded once: {log:#?}");
    assert_eq!(model.request_count(), asked + 3, "the hung call, the resumed turn, the third turn");
    let (status, logs) = daemon.stop().await;
    assert!(status.success(), "clean exit; logs:\n{}", logs.join("\n"));
}

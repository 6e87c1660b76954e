//! The shared adapter conformance suite, run against the fake Bot API.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use spacebot_testing::TelegramMessage;
use spacebot_testing::conformance::{self, Action, Place};
use spacebot_testing::fake_telegram::parse_html;

use super::*;

/// The forum topic the suite's thread messages are in.
const TOPIC: i32 = 9;

struct Harness {
    fake: FakeTelegram,
}

fn place(body: &Value) -> Place {
    let chat = body["chat_id"].as_i64().or_else(|| body["chat_id"].as_str().and_then(|s| s.parse().ok()));
    let topic = !body["message_thread_id"].is_null();
    match chat {
        Some(chat) if chat == USER as i64 => Place::Direct,
        _ if topic => Place::Thread,
        _ => Place::Channel,
    }
}

#[async_trait]
impl conformance::Platform for Harness {
    fn message_limit(&self) -> usize {
        spacebot_telegram::MESSAGE_LIMIT
    }

    async fn user_says(&self, place: Place, text: &str) {
        let message = match place {
            Place::Channel => TelegramMessage::group(GROUP, USER, text),
            Place::Thread => TelegramMessage::group(GROUP, USER, text).in_topic(TOPIC),
            Place::Direct => TelegramMessage::private(USER, text),
        };
        self.fake.push(message);
    }

    /// What a user sees: message text with its HTML parsed, as Telegram shows it.
    fn actions(&self) -> Vec<Action> {
        let mut documents = self.fake.documents().into_iter();
        self.fake
            .calls()
            .into_iter()
            .filter_map(|call| match call.method.as_str() {
                "sendMessage" => {
                    let raw = call.body["text"].as_str().unwrap_or_default();
                    let text = match call.body["parse_mode"].as_str() {
                        Some("HTML") => parse_html(raw).unwrap_or_else(|e| format!("<unparseable: {e}>")),
                        _ => raw.to_owned(),
                    };
                    Some(Action::Message { place: place(&call.body), text })
                }
                "setMessageReaction" => {
                    Some(Action::Reaction { emoji: call.body["reaction"][0]["emoji"].as_str()?.to_owned() })
                }
                "sendChatAction" => Some(Action::Typing { place: place(&call.body) }),
                "sendDocument" => {
                    let document = documents.next()?;
                    Some(Action::File {
                        place: place(&call.body),
                        filename: document.filename,
                        caption: document.caption,
                        bytes: document.bytes,
                    })
                }
                _ => None,
            })
            .collect()
    }

    async fn drop_connection(&self) {
        self.fake.drop_polls();
    }
}

#[tokio::test]
async fn the_telegram_adapter_passes_the_conformance_suite() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeTelegram::start().await;
    let adapter = Arc::new(TelegramAdapter::new(settings(&fake)).expect("the adapter builds"));
    conformance::run(adapter, &Harness { fake }).await;
}

//! The shared adapter conformance suite, run against the fake Discord.

use std::sync::Arc;

use async_trait::async_trait;

use spacebot_testing::FakeMessage;
use spacebot_testing::conformance::{self, Action, Place};

use super::*;

const THREAD: u64 = 99;
const DM_CHANNEL: u64 = 55;
const USER: u64 = 7;

struct Harness {
    fake: FakeDiscord,
}

#[async_trait]
impl conformance::Platform for Harness {
    fn message_limit(&self) -> usize {
        spacebot_discord::MESSAGE_LIMIT
    }

    async fn user_says(&self, place: Place, text: &str) {
        let message = match place {
            Place::Channel => FakeMessage::guild(GUILD, CHANNEL, USER, text),
            Place::Thread => FakeMessage::guild(GUILD, THREAD, USER, text),
            Place::Direct => FakeMessage::direct(DM_CHANNEL, USER, text),
        };
        self.fake.post(message);
    }

    fn actions(&self) -> Vec<Action> {
        let place = |channel: u64| match channel {
            CHANNEL => Place::Channel,
            DM_CHANNEL => Place::Direct,
            // The thread the test set up, or one the adapter started.
            _ => Place::Thread,
        };
        self.fake
            .requests()
            .into_iter()
            .filter_map(|request| {
                let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
                let channel = |s: &str| s.parse::<u64>().ok();
                match (request.method.as_str(), segments.as_slice()) {
                    ("POST", ["channels", c, "messages"]) => {
                        let text = request.body["content"].as_str().unwrap_or_default().to_owned();
                        Some(match request.files.first() {
                            Some(file) => Action::File {
                                place: place(channel(c)?),
                                filename: file.filename.clone(),
                                caption: (!text.is_empty()).then_some(text),
                                bytes: file.bytes.clone(),
                            },
                            None => Action::Message { place: place(channel(c)?), text },
                        })
                    }
                    ("PUT", ["channels", _, "messages", _, "reactions", emoji, "@me"]) => {
                        Some(Action::Reaction { emoji: (*emoji).to_owned() })
                    }
                    ("POST", ["channels", c, "typing"]) => Some(Action::Typing { place: place(channel(c)?) }),
                    _ => None,
                }
            })
            .collect()
    }

    async fn drop_connection(&self) {
        self.fake.drop_connection(4000);
    }
}

#[tokio::test]
async fn the_discord_adapter_passes_the_conformance_suite() {
    install_crypto();
    let fake = FakeDiscord::start().await;
    fake.add_channel(GUILD, CHANNEL);
    fake.add_thread(GUILD, THREAD, CHANNEL);
    let adapter = Arc::new(DiscordAdapter::new(settings(&fake).with_dm_users([USER.to_string()])));
    conformance::run(adapter, &Harness { fake }).await;
}

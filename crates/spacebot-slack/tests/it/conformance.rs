//! The shared adapter conformance suite, run against the fake Slack.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use spacebot_testing::SlackMessage;
use spacebot_testing::conformance::{self, Action, Place};

use super::*;

const CHANNEL: &str = "C1";
const DM: &str = "D1";
const USER: &str = "U1";

struct Harness {
    fake: FakeSlack,
    /// The `ts` of the thread root the suite's thread messages reply under.
    root: Mutex<Option<String>>,
}

#[async_trait]
impl conformance::Platform for Harness {
    fn message_limit(&self) -> usize {
        spacebot_slack::MESSAGE_LIMIT
    }

    async fn user_says(&self, place: Place, text: &str) {
        match place {
            Place::Channel => {
                let (_, ts) = self.fake.post(SlackMessage::new(CHANNEL, USER, text));
                self.root.lock().expect("the root lock is never poisoned").get_or_insert(ts);
            }
            Place::Thread => {
                let root = self
                    .root
                    .lock()
                    .expect("the root lock is never poisoned")
                    .clone()
                    .unwrap_or_else(|| "1.0".to_owned());
                self.fake.post(SlackMessage::new(CHANNEL, USER, text).in_thread(&root));
            }
            Place::Direct => {
                self.fake.post(SlackMessage::new(DM, USER, text));
            }
        }
    }

    fn actions(&self) -> Vec<Action> {
        self.fake
            .calls()
            .into_iter()
            .filter_map(|call| {
                let in_thread = call.body.get("thread_ts").is_some_and(|t| !t.is_null());
                let place = match call.body["channel"].as_str().or(call.body["channel_id"].as_str()) {
                    Some(DM) => Place::Direct,
                    _ if in_thread => Place::Thread,
                    _ => Place::Channel,
                };
                match call.method.as_str() {
                    "chat.postMessage" => {
                        Some(Action::Message { place, text: call.body["text"].as_str().unwrap_or_default().to_owned() })
                    }
                    "reactions.add" => Some(Action::Reaction { emoji: call.body["name"].as_str()?.to_owned() }),
                    "files.completeUploadExternal" => {
                        let id = call.body["files"][0]["id"].as_str()?;
                        let upload = self.fake.uploads().into_iter().find(|upload| upload.file_id == id)?;
                        Some(Action::File {
                            place,
                            filename: upload.filename,
                            caption: upload.initial_comment,
                            bytes: upload.bytes,
                        })
                    }
                    "assistant.threads.setStatus" if call.body["status"] != serde_json::json!("") => {
                        Some(Action::Typing { place })
                    }
                    _ => None,
                }
            })
            .collect()
    }

    async fn drop_connection(&self) {
        self.fake.drop_socket();
    }

    fn shows_typing_in(&self, place: Place) -> bool {
        place == Place::Thread
    }
}

#[tokio::test]
async fn the_slack_adapter_passes_the_conformance_suite() {
    let fake = FakeSlack::start().await;
    let adapter = Arc::new(SlackAdapter::new(settings(&fake).with_dm_users([USER])));
    conformance::run(adapter, &Harness { fake, root: Mutex::new(None) }).await;
}

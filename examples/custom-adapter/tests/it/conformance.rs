//! The shared adapter conformance suite, run against a LineChat server.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use example_custom_adapter::protocol::{BotLine, Room};
use example_custom_adapter::{LineChatAdapter, MESSAGE_LIMIT};

use spacebot_testing::conformance::{self, Action, Place};

use crate::server::LineChatServer;

/// The suite's view of LineChat: `#general`, threads under its messages, and DMs with alice.
struct Harness {
    server: LineChatServer,
    /// The message the suite's thread messages hang under.
    root: Mutex<Option<String>>,
}

fn place(room: &Room) -> Place {
    match room {
        Room::Channel(_) => Place::Channel,
        Room::Thread { .. } => Place::Thread,
        Room::Direct(_) => Place::Direct,
    }
}

#[async_trait]
impl conformance::Platform for Harness {
    fn message_limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn user_says(&self, place: Place, text: &str) {
        match place {
            Place::Channel => {
                let id = self.server.post("#general", "alice", text);
                self.root.lock().expect("the root lock is never poisoned").get_or_insert(id);
            }
            Place::Thread => {
                let root = self.root.lock().expect("the root lock is never poisoned").clone();
                let root = root.expect("the suite speaks in the channel before the thread");
                self.server.post(&format!("#general/{root}"), "alice", text);
            }
            Place::Direct => {
                self.server.post("@alice", "alice", text);
            }
        }
    }

    fn actions(&self) -> Vec<Action> {
        self.server
            .commands()
            .into_iter()
            .filter_map(|command| match command {
                BotLine::Say { room, text } => Some(Action::Message { place: place(&room), text }),
                BotLine::React { emoji, .. } => Some(Action::Reaction { emoji }),
                BotLine::Typing { room } => Some(Action::Typing { place: place(&room) }),
                BotLine::Listen { .. } => None,
            })
            .collect()
    }

    async fn drop_connection(&self) {
        self.server.drop_listener();
    }
}

#[tokio::test]
async fn the_linechat_adapter_passes_the_conformance_suite() {
    let server = LineChatServer::start().await;
    let adapter = Arc::new(LineChatAdapter::new(server.address(), "spacebot"));
    conformance::run(adapter, &Harness { server, root: Mutex::new(None) }).await;
}

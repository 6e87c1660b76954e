//! The shared adapter conformance suite, run against real Dovecot and Postfix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mail_parser::{MessageParser, MimeHeaders};

use spacebot_testing::conformance::{self, Action, Place};

use super::*;

struct Harness {
    mail: MailServer,
    /// The first Message-ID of the group thread and of the direct one, once started.
    roots: Mutex<[Option<String>; 2]>,
    sent: AtomicUsize,
}

fn slot(place: Place) -> usize {
    match place {
        Place::Channel => 0,
        Place::Direct => 1,
        Place::Thread => panic!("email has no threads under a conversation; the suite must not ask"),
    }
}

#[async_trait]
impl conformance::Platform for Harness {
    fn message_limit(&self) -> usize {
        4000
    }

    fn has_message_limit(&self) -> bool {
        false
    }

    fn has_threads(&self) -> bool {
        false
    }

    fn shows_typing_in(&self, _place: Place) -> bool {
        false
    }

    /// Alice writes: to the bot with Bob copied (a group thread), or to the bot alone; later
    /// messages in a place reply in its thread.
    async fn user_says(&self, place: Place, text: &str) {
        let id = format!("conformance-{}@example.test", self.sent.fetch_add(1, Ordering::SeqCst));
        let root = {
            let mut roots = self.roots.lock().expect("the roots lock is never poisoned");
            roots[slot(place)].get_or_insert_with(|| id.clone()).clone()
        };
        let threading =
            if root == id { String::new() } else { format!("In-Reply-To: <{root}>\r\nReferences: <{root}>\r\n") };
        let raw = match place {
            Place::Channel => {
                mail(&id, BOT, "Conformance group", &format!("Cc: bob@example.test\r\n{threading}"), text)
            }
            _ => mail(&id, BOT, "Conformance direct", &threading, text),
        };
        self.mail.send(ALICE, BOT, &raw).await;
    }

    /// The bot's mail in Alice's mailbox, placed by the thread it references.
    fn actions(&self) -> Vec<Action> {
        self.mail.settle();
        let roots = self.roots.lock().expect("the roots lock is never poisoned").clone();
        self.mail
            .mailbox("alice")
            .into_iter()
            .filter_map(|stored| {
                let message = MessageParser::default().parse(stored.raw.as_bytes())?;
                let from = message.from()?.first()?.address()?.to_owned();
                if from != BOT {
                    return None;
                }
                let references = stored.header("References").unwrap_or_default();
                let place = match &roots {
                    [Some(group), _] if references.contains(group.as_str()) => Place::Channel,
                    _ => Place::Direct,
                };
                let text = message.body_text(0).map(|t| t.trim_end().to_owned()).unwrap_or_default();
                match message.attachments().next() {
                    Some(file) => Some(Action::File {
                        place,
                        filename: file.attachment_name().unwrap_or_default().to_owned(),
                        caption: Some(text),
                        bytes: file.contents().to_vec(),
                    }),
                    None => Some(Action::Message { place, text }),
                }
            })
            .collect()
    }

    async fn drop_connection(&self) {
        self.mail.kick("bot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_email_adapter_passes_the_conformance_suite() {
    let mail = mail_server().await;
    let adapter = Arc::new(EmailAdapter::new(settings(&mail)).expect("the adapter builds"));
    let harness = Harness { mail, roots: Mutex::new([None, None]), sent: AtomicUsize::new(0) };
    conformance::run(adapter, &harness).await;
}

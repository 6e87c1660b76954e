//! Integration tests: the real IMAP and SMTP clients against real mail servers (Debian's Dovecot
//! and Postfix, started by `spacebot_testing::MailServer` on loopback ports with a throwaway
//! configuration; they need root and the packages `.ci/run` installs).

mod conformance;
mod intake;

use std::time::Duration;

use futures::StreamExt;

use spacebot_core::{InboundMessage, InboundStream, MessagingAdapter};
use spacebot_email::{EmailAdapter, EmailSettings, Security, Server};
use spacebot_testing::MailServer;

/// Bound for anything that crosses the mail servers: generous, since Postfix's queue manager and
/// Dovecot run as separate processes that a loaded machine (a release build beside the tests) can
/// hold back for many seconds; 20 s was seen to run out that way.
pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const BOT: &str = "bot@example.test";
pub(crate) const ALICE: &str = "alice@example.test";
pub(crate) const PASSWORD: &str = "bot-password";

/// A mail server with the bot's, Alice's and Bob's mailboxes.
pub(crate) async fn mail_server() -> MailServer {
    let mail = MailServer::start().await;
    mail.add_user("bot", PASSWORD);
    mail.add_user("alice", "alice-password");
    mail.add_user("bob", "bob-password");
    mail
}

pub(crate) fn settings(mail: &MailServer) -> EmailSettings {
    let (imap, smtp) = (mail.imap_addr(), mail.smtp_addr());
    let imap = Server::new(imap.ip().to_string(), imap.port(), Security::Plain).with_login("bot", PASSWORD);
    let smtp = Server::new(smtp.ip().to_string(), smtp.port(), Security::Plain);
    EmailSettings::new(BOT, imap, smtp).with_allowed_senders(["@example.test"]).with_display_name("Spacebot")
}

pub(crate) async fn next(stream: &mut InboundStream) -> InboundMessage {
    tokio::time::timeout(WAIT, stream.next()).await.expect("an inbound message in time").expect("the stream is open")
}

pub(crate) async fn shut(adapter: EmailAdapter) {
    tokio::time::timeout(WAIT, adapter.shutdown()).await.expect("shutdown is bounded");
}

/// A message as a person's mail client would send it.
pub(crate) fn mail(id: &str, to: &str, subject: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: Alice Example <{ALICE}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n{extra_headers}\r\n{body}\r\n"
    )
}

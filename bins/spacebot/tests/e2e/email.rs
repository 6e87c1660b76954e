//! Email end to end: the real binary, the fake model, and real mail servers (Dovecot and Postfix,
//! started by `spacebot_testing::MailServer`). A mail in and the model's reply out, threaded; then
//! a `kill -9` while a turn runs, and after the restart the mail is answered exactly once.

use std::time::Duration;

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, MailServer};

use crate::daemon::{Daemon, Home, PATIENCE, openai_config};

const BOT: &str = "bot@example.test";
const ALICE: &str = "alice@example.test";

fn message(id: &str, subject: &str, headers: &str, body: &str) -> String {
    format!(
        "From: Alice <{ALICE}>\r\nTo: {BOT}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n{headers}\r\n{body}\r\n"
    )
}

/// The bot's replies in Alice's mailbox, by body.
fn replies(mail: &MailServer) -> Vec<String> {
    mail.settle();
    mail.mailbox("alice").iter().map(|m| m.body().trim().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_answered_in_its_thread_and_a_mail_cut_by_a_crash_is_answered_exactly_once() {
    let model = FakeLlmServer::start().await;
    let mail = MailServer::start().await;
    mail.add_user("bot", "bot-password");
    mail.add_user("alice", "alice-password");
    let (imap, smtp) = (mail.imap_addr(), mail.smtp_addr());
    let config = format!(
        r#"{}
[messaging.email]
address = "{BOT}"
allowed_senders = ["{ALICE}"]
imap = {{ host = "{}", port = {}, security = "plain", username = "bot", password = "bot-password" }}
smtp = {{ host = "{}", port = {}, security = "plain" }}
"#,
        openai_config(&model.openai_base_url()),
        imap.ip(),
        imap.port(),
        smtp.ip(),
        smtp.port()
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Noon works for me."})));
    mail.send(ALICE, BOT, &message("lunch@example.test", "Lunch", "", "Lunch tomorrow?")).await;
    let reply = mail.wait_for_mail("alice", 1, PATIENCE).await.remove(0);
    assert_eq!(reply.body().trim(), "Noon works for me.");
    assert_eq!(reply.header("In-Reply-To").as_deref(), Some("<lunch@example.test>"));
    assert_eq!(reply.header("Subject").as_deref(), Some("Re: Lunch"));
    // The thread's conversation: its first Message-ID, hashed (FNV-1a, stable across releases).
    let hash = b"lunch@example.test"
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let conversation = format!("email:{hash:016x}");

    // The model is still thinking when the daemon dies.
    let asked = model.request_count();
    model.push(FakeReply::hang());
    let bot_id = reply.header("Message-ID").unwrap_or_default();
    let threading = format!("In-Reply-To: {bot_id}\r\nReferences: <lunch@example.test> {bot_id}\r\n");
    mail.send(ALICE, BOT, &message("second@example.test", "Re: Lunch", &threading, "Remember: no onions.")).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while model.request_count() == asked {
        assert!(std::time::Instant::now() < deadline, "the model was never asked; logs:\n{}", mail.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.crash().await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Noted, no onions."})));
    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("resuming messages left unanswered", PATIENCE).await;
    mail.wait_for_mail("alice", 2, PATIENCE).await;

    // One more mail drains whatever was still queued; the cut one was answered once.
    model.push(FakeReply::tool_call("reply", json!({"content": "See you."})));
    mail.send(ALICE, BOT, &message("third@example.test", "Re: Lunch", &threading, "Thanks!")).await;
    mail.wait_for_mail("alice", 3, PATIENCE).await;
    assert_eq!(replies(&mail), ["Noon works for me.", "Noted, no onions.", "See you."]);
    let url = format!("{}/api/agents/main/conversations/{conversation}/messages", daemon.base);
    let log: Vec<Value> = reqwest::get(url).await.expect("messages").json().await.expect("json");
    let said: Vec<&str> = log.iter().filter(|m| m["role"] == "user").filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(said, ["Lunch tomorrow?", "Remember: no onions.", "Thanks!"], "one thread, each mail once: {log:#?}");
    assert!(mail.mailbox("bot").iter().all(|m| m.seen), "every handled mail is marked seen");
    let (status, logs) = daemon.stop().await;
    assert!(status.success(), "clean exit; logs:\n{}", logs.join("\n"));
}

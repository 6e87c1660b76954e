//! Mail in and out through real servers: seen only after recorded, read again after a crash,
//! threading both ways, HTML, and who is answered.

use spacebot_core::{AdapterErrorKind, MessageContent, OutboundResponse};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_marked_seen_only_after_it_is_taken_and_is_read_again_after_a_crash() {
    let mail = mail_server().await;
    let adapter = EmailAdapter::new(settings(&mail)).expect("builds");
    let mut stream = adapter.start().await.expect("logs in");
    mail.send(ALICE, BOT, &mail_text("first@example.test", "Plans", "", "Lunch at noon?")).await;
    let first = next(&mut stream).await;
    assert_eq!(first.content.text(), "Lunch at noon?");
    assert_eq!(first.id.as_str(), "email:first@example.test");
    assert!(!mail.mailbox("bot")[0].seen, "handed in but not yet recorded: still unseen");

    // The process dies before the runtime took it: nothing marked it seen.
    drop(stream);
    shut(adapter).await;
    assert!(!mail.mailbox("bot")[0].seen);

    let adapter = EmailAdapter::new(settings(&mail)).expect("builds");
    let mut stream = adapter.start().await.expect("logs in");
    let again = next(&mut stream).await;
    assert_eq!(again.id, first.id, "read again after the restart, with the same id");
    // Asking for the next message means this one was recorded.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !mail.mailbox("bot")[0].seen {
        assert!(std::time::Instant::now() < deadline, "never marked seen; logs:\n{}", mail.logs());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shut(adapter).await;
}

fn mail_text(id: &str, subject: &str, headers: &str, body: &str) -> String {
    mail(id, BOT, subject, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_thread_both_ways_and_quoted_history_is_trimmed() {
    let mail = mail_server().await;
    let adapter = EmailAdapter::new(settings(&mail)).expect("builds");
    let mut stream = adapter.start().await.expect("logs in");
    mail.send(ALICE, BOT, &mail_text("q1@example.test", "Plans", "Cc: Bob <bob@example.test>\r\n", "Lunch?")).await;
    let question = next(&mut stream).await;
    assert!(!question.direct, "Bob is on it: a group thread");
    assert!(question.mentions_bot(), "the bot is in To");

    adapter.send(&question, OutboundResponse::text("Noon works.")).await.expect("sent");
    mail.settle();
    let reply = mail.wait_for_mail("alice", 1, WAIT).await.remove(0);
    assert_eq!(reply.header("Subject").as_deref(), Some("Re: Plans"));
    assert_eq!(reply.header("In-Reply-To").as_deref(), Some("<q1@example.test>"));
    assert_eq!(reply.header("Auto-Submitted").as_deref(), Some("auto-replied"));
    assert!(reply.header("Cc").unwrap_or_default().contains("bob@example.test"), "Bob is copied");
    assert_eq!(mail.wait_for_mail("bob", 1, WAIT).await.len(), 1, "and receives it");
    let bot_id = reply.header("Message-ID").unwrap_or_default();

    // Alice answers the bot's reply, quoting it: the same conversation, her new words only.
    let answer = format!("In-Reply-To: {bot_id}\r\nReferences: <q1@example.test> {bot_id}\r\n");
    let body =
        "Great, see you.\r\n\r\nOn Mon, 7 Dec 2026 at 10:01, Spacebot <bot@example.test> wrote:\r\n> Noon works.\r\n";
    mail.send(ALICE, BOT, &mail_text("a2@example.test", "Re: Plans", &answer, body)).await;
    let followup = next(&mut stream).await;
    assert_eq!(followup.conversation, question.conversation, "the thread is one conversation");
    assert_eq!(followup.content.text(), "Great, see you.");
    shut(adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_becomes_text_and_strangers_robots_and_itself_are_not_answered() {
    let mail = mail_server().await;
    mail.add_user("mallory", "m");
    let adapter = EmailAdapter::new(settings(&mail).with_allowed_senders([ALICE])).expect("builds");
    let mut stream = adapter.start().await.expect("logs in");

    let from_stranger = "From: bob@example.test\r\nTo: bot@example.test\r\nSubject: hi\r\nMessage-ID: <s1@example.test>\r\n\r\nLet me in\r\n";
    mail.send("bob@example.test", BOT, from_stranger).await;
    mail.send(ALICE, BOT, &mail_text("auto@example.test", "Away", "Auto-Submitted: auto-replied\r\n", "I am away"))
        .await;
    let html = "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n";
    mail.send(ALICE, BOT, &mail_text("h1@example.test", "Styled", html, "<p>Hello <b>there</b> &amp; welcome</p>"))
        .await;
    let message = next(&mut stream).await;
    assert_eq!(message.id.as_str(), "email:h1@example.test", "the stranger's and the robot's mail were skipped");
    let MessageContent::Text { text } = &message.content else { panic!("{:?}", message.content) };
    assert!(text.contains("Hello there & welcome") && !text.contains('<'), "{text:?}");
    let unread = mail.mailbox("bot").into_iter().filter(|m| !m.seen).count();
    assert!(unread >= 2, "mail not handed in is left unread for the people sharing the mailbox");
    shut(adapter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_start_permanently_and_reactions_are_unsupported() {
    let mail = mail_server().await;
    let mut wrong = settings(&mail);
    wrong.imap = wrong.imap.clone().with_login("bot", "not-the-password");
    let adapter = EmailAdapter::new(wrong).expect("builds");
    let error = adapter.start().await.err().expect("refused");
    assert_eq!(error.kind(), AdapterErrorKind::Permanent, "{error}");
    assert!(!error.to_string().contains("not-the-password"), "{error}");
    assert!(adapter.health_check().await.is_err());

    let good = EmailAdapter::new(settings(&mail)).expect("builds");
    good.health_check().await.expect("both servers accept the bot");
    let target = spacebot_core::InboundMessage::text("email", "email:x", spacebot_core::Sender::new(ALICE), "hi");
    let refused =
        good.send(&target, OutboundResponse::Reaction { emoji: "👍".into() }).await.expect_err("no reactions");
    assert_eq!(refused.kind(), AdapterErrorKind::Unsupported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_mailbox_is_checked_every_poll_interval() {
    let mail = MailServer::start_without_idle().await;
    mail.add_user("bot", PASSWORD);
    mail.add_user("alice", "alice-password");
    let polling = settings(&mail).with_poll_interval(std::time::Duration::from_secs(1));
    let adapter = EmailAdapter::new(polling).expect("builds");
    let mut stream = adapter.start().await.expect("logs in");
    for n in 0..2 {
        let id = format!("poll{n}@example.test");
        mail.send(ALICE, BOT, &mail_text(&id, "Polling", "", &format!("checked {n}"))).await;
        let message = next(&mut stream).await;
        assert_eq!(message.content.text(), format!("checked {n}"), "found by the next check, without IDLE");
    }
    shut(adapter).await;
}

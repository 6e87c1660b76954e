//! The mail server harness against the real Dovecot and Postfix: mail submitted over SMTP lands
//! in the recipient's Maildir, IMAP serves it (and advertises IDLE), flags set over IMAP show in
//! the Maildir, and two instances run side by side.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use spacebot_testing::MailServer;

const DELIVERY: Duration = Duration::from_secs(10);

fn message(from: &str, to: &str, subject: &str, id: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{id}>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n{body}"
    )
}

/// A hand-rolled IMAP client: enough to send tagged commands and read up to their completion.
struct Imap {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    next: u32,
}

impl Imap {
    async fn connect(server: &MailServer) -> (Self, String) {
        let stream = TcpStream::connect(server.imap_addr()).await.expect("connect to IMAP");
        let (read, write) = stream.into_split();
        let mut imap = Self { read: BufReader::new(read), write, next: 1 };
        let mut greeting = String::new();
        imap.read.read_line(&mut greeting).await.expect("read the IMAP greeting");
        (imap, greeting)
    }

    /// Runs `command` and returns everything the server answered, panicking unless it ends `OK`.
    async fn run(&mut self, command: &str) -> String {
        let tag = format!("a{}", self.next);
        self.next += 1;
        self.write.write_all(format!("{tag} {command}\r\n").as_bytes()).await.expect("send an IMAP command");
        let mut answer = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.read.read_line(&mut line))
                .await
                .expect("IMAP answers within 10 s")
                .expect("read an IMAP line");
            assert!(n > 0, "the IMAP server hung up during {command:?}: {answer}");
            answer.push_str(&line);
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "{command:?} failed: {answer}");
                return answer;
            }
        }
    }
}

#[tokio::test]
async fn mail_sent_over_smtp_is_delivered_and_served_over_imap() {
    let server = MailServer::start().await;
    let alice = server.add_user("alice", "alice-secret");
    let bot = server.add_user("bot", "bot-secret");
    assert_eq!((alice.as_str(), bot.as_str()), ("alice@example.test", "bot@example.test"));

    // Dot-stuffing: a body line starting with '.' must survive the SMTP transparency rule.
    let raw = message(&alice, &bot, "Hello there", "hello-1@example.test", "Hi bot,\n.leading dot\n\nbye\n");
    server.send(&alice, &bot, &raw).await;
    let mails = server.wait_for_mail("bot", 1, DELIVERY).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.header("subject").as_deref(), Some("Hello there"), "{}", mail.raw);
    assert_eq!(mail.header("Message-ID").as_deref(), Some("<hello-1@example.test>"), "{}", mail.raw);
    assert_eq!(mail.header("From").as_deref(), Some("alice@example.test"));
    assert_eq!(mail.body().replace("\r\n", "\n"), "Hi bot,\n.leading dot\n\nbye\n");
    assert!(!mail.seen, "a fresh delivery is unseen: {}", mail.file);
    assert!(server.mailbox("alice").is_empty(), "alice got nothing");

    let (mut imap, greeting) = Imap::connect(&server).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let capability = imap.run("CAPABILITY").await;
    assert!(capability.contains(" IDLE"), "Dovecot advertises IDLE: {capability}");
    imap.run("LOGIN bot bot-secret").await;
    let select = imap.run("SELECT INBOX").await;
    assert!(select.contains("* 1 EXISTS"), "{select}");
    let fetch = imap.run("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await;
    assert!(fetch.contains("Subject: Hello there"), "{fetch}");
    assert!(!server.mailbox("bot")[0].seen, "BODY.PEEK sets no flag");
    let store = imap.run("STORE 1 +FLAGS (\\Seen)").await;
    assert!(store.contains("\\Seen"), "{store}");
    imap.run("LOGOUT").await;

    let stored = server.mailbox("bot");
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert!(stored[0].seen, "the Seen flag set over IMAP shows in the Maildir: {}", stored[0].file);

    let (mut imap, _) = Imap::connect(&server).await;
    imap.write.write_all(b"a1 LOGIN bot wrong-password\r\n").await.expect("send LOGIN");
    let mut line = String::new();
    imap.read.read_line(&mut line).await.expect("read the LOGIN answer");
    assert!(line.starts_with("a1 NO"), "a wrong password is refused: {line}");
}

#[tokio::test]
async fn two_servers_run_side_by_side_without_mixing_mail() {
    let (one, two) = tokio::join!(MailServer::start(), MailServer::start());
    assert_ne!(one.smtp_addr(), two.smtp_addr());
    assert_ne!(one.imap_addr(), two.imap_addr());

    for (server, tag) in [(&one, "one"), (&two, "two")] {
        let from = server.add_user("alice", "pw");
        let to = server.add_user("bot", "pw");
        let raw = message(&from, &to, &format!("for {tag}"), &format!("{tag}@example.test"), "hi\n");
        server.send(&from, &to, &raw).await;
    }
    for server in [&one, &two] {
        server.wait_for_mail("bot", 1, DELIVERY).await;
    }
    // Give a stray cross-delivery time to show up before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (server, tag) in [(&one, "one"), (&two, "two")] {
        let mails = server.mailbox("bot");
        assert_eq!(mails.len(), 1, "{tag} got only its own mail: {mails:#?}");
        assert_eq!(mails[0].header("Subject"), Some(format!("for {tag}")));
    }

    // A user added later is usable at once: Dovecot re-reads the passwd-file.
    let carol = one.add_user("Carol", "carol-pw");
    assert_eq!(carol, "carol@example.test");
    let (mut imap, _) = Imap::connect(&one).await;
    imap.run("LOGIN carol carol-pw").await;
    imap.run("LOGOUT").await;

    // So is a changed password (of the same length, read in the same second as the old one).
    one.add_user("carol", "carol-p2");
    let (mut imap, _) = Imap::connect(&one).await;
    imap.run("LOGIN carol carol-p2").await;
    imap.run("LOGOUT").await;
}

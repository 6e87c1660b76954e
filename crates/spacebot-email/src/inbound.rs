//! From a raw RFC 5322 message to an [`InboundMessage`]: threading, filters, and the text a person
//! wrote (HTML turned into text, quoted history and signatures trimmed), as pure functions.

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use serde_json::json;

use spacebot_core::{Attachment, CHANNEL_KEY, InboundMessage, MENTIONS_BOT_KEY, MessageContent, Sender};

use crate::settings::EmailSettings;

/// Metadata: where a reply goes (the Reply-To address, else From).
pub(crate) const META_REPLY_TO: &str = "email_reply_to";
/// Metadata: the other people on the thread, copied on a reply.
pub(crate) const META_CC: &str = "email_cc";
/// Metadata: the subject.
pub(crate) const META_SUBJECT: &str = "email_subject";
/// Metadata: the message's own Message-ID, without angle brackets.
pub(crate) const META_MESSAGE_ID: &str = "email_message_id";
/// Metadata: the thread's References, oldest first, without angle brackets.
pub(crate) const META_REFERENCES: &str = "email_references";

/// Why a message was not handed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Not a parseable message, or no sender.
    Unreadable,
    /// The bot's own mail.
    Own,
    /// A sender not in the allow-list.
    NotAllowed(String),
    /// An automatic message (auto-reply, bounce, list traffic): answering it could loop.
    Automatic(String),
}

/// Maps a raw message. `fallback_id` names it when it has no Message-ID (the mailbox's UID
/// validity and UID).
pub(crate) fn map_message(settings: &EmailSettings, raw: &[u8], fallback_id: &str) -> Result<InboundMessage, Skip> {
    let message = MessageParser::default().parse(raw).ok_or(Skip::Unreadable)?;
    let from = first_address(message.from()).ok_or(Skip::Unreadable)?;
    if settings.is_own(&from) {
        return Err(Skip::Own);
    }
    if let Some(reason) = automatic(&message) {
        return Err(Skip::Automatic(reason));
    }
    if !settings.admitted(&from) {
        return Err(Skip::NotAllowed(from));
    }

    let own_id = message.message_id().map(clean_id).filter(|id| !id.is_empty());
    let mut references = ids(message.references());
    for id in ids(message.in_reply_to()) {
        if !references.contains(&id) {
            references.push(id);
        }
    }
    let key = own_id.clone().unwrap_or_else(|| fallback_id.to_owned());
    let root = references.first().cloned().unwrap_or_else(|| key.clone());

    let recipients: Vec<String> = [message.to(), message.cc()].into_iter().flat_map(addresses).collect();
    let addressed = addresses(message.to()).iter().any(|a| settings.is_own(a));
    let others: Vec<String> =
        recipients.iter().filter(|a| !settings.is_own(a) && !a.eq_ignore_ascii_case(&from)).cloned().collect();
    let reply_to = first_address(message.reply_to()).unwrap_or_else(|| from.clone());

    let body = message.body_text(0).map(|text| trim_quoted(&text)).unwrap_or_default();
    let attachments: Vec<Attachment> = message
        .attachments()
        .enumerate()
        .map(|(index, part)| {
            let name = part.attachment_name().map_or_else(|| format!("attachment-{}", index + 1), str::to_owned);
            let mut attachment = Attachment::new(name, format!("email:{key}#{}", index + 1));
            attachment.mime_type =
                part.content_type().map(|t| format!("{}/{}", t.ctype(), t.subtype().unwrap_or("octet-stream")));
            attachment.size_bytes = u64::try_from(part.len()).ok();
            attachment
        })
        .collect();
    let content = if attachments.is_empty() {
        MessageContent::Text { text: body }
    } else {
        MessageContent::Media { text: (!body.is_empty()).then_some(body), attachments }
    };

    let mut sender = Sender::new(from.to_ascii_lowercase());
    if let Some(name) = message.from().and_then(Address::first).and_then(|a| a.name()).filter(|n| !n.trim().is_empty())
    {
        sender = sender.with_display_name(name.trim());
    }
    let subject = message.subject().unwrap_or_default().trim().to_owned();
    let mut inbound = InboundMessage::text("email", conversation_id(&settings.name, &root), sender, "")
        .with_content(content)
        .with_id(format!("{}:{key}", settings.name))
        .with_adapter(settings.name.clone())
        // A mail to the bot alone is a direct conversation; one with others on it is a group.
        .with_direct(others.is_empty())
        .with_metadata(CHANNEL_KEY, json!(from.to_ascii_lowercase()))
        .with_metadata(MENTIONS_BOT_KEY, json!(addressed))
        .with_metadata(META_REPLY_TO, json!(reply_to))
        .with_metadata(META_CC, json!(others))
        .with_metadata(META_SUBJECT, json!(subject))
        .with_metadata(META_REFERENCES, json!(references));
    if let Some(id) = own_id {
        inbound = inbound.with_metadata(META_MESSAGE_ID, json!(id));
    }
    if let Some(date) = message.date().and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0)) {
        inbound.timestamp = date;
    }
    Ok(inbound)
}

/// `{key}:{thread}`, where the thread is named by a stable hash of its first message's id (ids
/// hold characters a URL path can't).
pub(crate) fn conversation_id(adapter: &str, root: &str) -> String {
    format!("{adapter}:{:016x}", fnv1a(root.as_bytes()))
}

/// FNV-1a, 64 bits: stable across Rust releases, unlike the standard hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn clean_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').trim().to_owned()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<String> = match value {
        HeaderValue::Text(id) => vec![clean_id(id)],
        HeaderValue::TextList(ids) => ids.iter().map(|id| clean_id(id)).collect(),
        _ => Vec::new(),
    };
    list.into_iter().filter(|id| !id.is_empty()).collect()
}

fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    address.into_iter().flat_map(|a| a.iter()).filter_map(|a| a.address()).map(|a| a.trim().to_owned()).collect()
}

fn first_address(address: Option<&Address<'_>>) -> Option<String> {
    addresses(address).into_iter().next().filter(|a| a.contains('@'))
}

/// Why a message is automatic, per RFC 3834 and common practice, or `None` for a person's mail.
fn automatic(message: &Message<'_>) -> Option<String> {
    let header = |name: &str| message.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if let Some(value) = header("Auto-Submitted").filter(|v| v != "no") {
        return Some(format!("Auto-Submitted: {value}"));
    }
    if let Some(value) = header("Precedence").filter(|v| matches!(v.as_str(), "bulk" | "list" | "junk")) {
        return Some(format!("Precedence: {value}"));
    }
    if header("List-Id").is_some() || header("List-Unsubscribe").is_some() {
        return Some("mailing-list traffic".to_owned());
    }
    if header("X-Autoreply").is_some() || header("X-Autorespond").is_some() {
        return Some("an auto-reply".to_owned());
    }
    let from = first_address(message.from()).unwrap_or_default().to_ascii_lowercase();
    let local = from.split('@').next().unwrap_or_default();
    if matches!(local, "mailer-daemon" | "postmaster") || local.starts_with("no-reply") || local.starts_with("noreply")
    {
        return Some(format!("sent from {from}"));
    }
    None
}

/// The new text of a reply: quoted lines (`>`), the "On … wrote:" line that introduces them, a
/// forwarded or "Original Message" block, and the signature (after `-- `) removed.
pub(crate) fn trim_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if *line == "-- " || trimmed == "--" || is_original_marker(trimmed) {
            break;
        }
        if trimmed.starts_with('>') {
            continue;
        }
        // "On Mon, 1 Jan 2024, Alice <a@x> wrote:" (possibly wrapped over two lines) before quotes.
        let rest = &lines[index + 1..];
        let introduces_quote = |l: &str| l.trim().starts_with('>') || l.trim().is_empty();
        let wrote = trimmed.ends_with("wrote:") || trimmed.ends_with("a écrit :") || trimmed.ends_with("schrieb:");
        if wrote
            && rest.iter().take(2).any(|l| l.trim().starts_with('>'))
            && rest.first().is_none_or(|l| introduces_quote(l))
        {
            continue;
        }
        if trimmed.starts_with("On ") && rest.first().is_some_and(|next| next.trim().ends_with("wrote:")) {
            continue;
        }
        kept.push(line);
    }
    let text = kept.join("\n");
    text.trim().to_owned()
}

fn is_original_marker(line: &str) -> bool {
    let line = line.trim_matches(|c: char| c == '-' || c == '_' || c.is_whitespace()).to_ascii_lowercase();
    line == "original message" || line == "forwarded message" || line.starts_with("begin forwarded message")
}

#[cfg(test)]
mod tests {
    use crate::settings::{Security, Server};

    use super::*;

    fn settings() -> EmailSettings {
        let server = Server::new("127.0.0.1", 1, Security::Plain);
        EmailSettings::new("bot@example.test", server.clone(), server).with_allowed_senders(["@example.test"])
    }

    fn mail(headers: &str, body: &str) -> Vec<u8> {
        format!("From: Alice Example <alice@example.test>\r\nTo: bot@example.test\r\nSubject: Plans\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n{headers}\r\n{body}").into_bytes()
    }

    #[test]
    fn a_thread_is_one_conversation_and_new_mail_starts_another() {
        let first = map_message(&settings(), &mail("Message-ID: <root@example.test>\r\n", "Hello"), "u1").expect("in");
        let reply = map_message(
            &settings(),
            &mail("Message-ID: <r2@example.test>\r\nIn-Reply-To: <bot1@example.test>\r\nReferences: <root@example.test> <bot1@example.test>\r\n", "More"),
            "u2",
        )
        .expect("in");
        assert_eq!(first.conversation, reply.conversation, "a reply belongs to its thread");
        assert_eq!(first.id.as_str(), "email:root@example.test");
        assert_eq!(reply.metadata[META_REFERENCES], json!(["root@example.test", "bot1@example.test"]));
        assert_eq!(first.sender.id, "alice@example.test");
        assert_eq!(first.sender.label(), "Alice Example");
        assert_eq!(first.timestamp.to_rfc3339(), "2026-12-01T10:00:00+00:00");
        assert!(first.direct && first.mentions_bot());
        let other = map_message(&settings(), &mail("Message-ID: <other@example.test>\r\n", "Hi"), "u3").expect("in");
        assert_ne!(other.conversation, first.conversation);
        assert!(first.conversation.as_str().starts_with("email:") && !first.conversation.as_str().contains('@'));
    }

    #[test]
    fn mail_with_others_on_it_is_a_group_and_a_missing_id_falls_back() {
        let group = mail("Cc: Bob <bob@example.test>, bot@example.test\r\n", "Team");
        let group = map_message(&settings(), &group, "7:42").expect("in");
        assert!(!group.direct);
        assert_eq!(group.metadata[META_CC], json!(["bob@example.test"]));
        assert_eq!(group.id.as_str(), "email:7:42", "no Message-ID: the mailbox's own id");
        let cc_only =
            b"From: alice@example.test\r\nTo: bob@example.test\r\nCc: bot@example.test\r\nSubject: x\r\n\r\nFYI"
                .to_vec();
        assert!(!map_message(&settings(), &cc_only, "1").expect("in").mentions_bot(), "copied, not addressed");
    }

    #[test]
    fn own_automatic_and_unlisted_mail_is_skipped() {
        let own = b"From: bot@example.test\r\nTo: alice@example.test\r\n\r\nhi".to_vec();
        assert_eq!(map_message(&settings(), &own, "1").err(), Some(Skip::Own));
        let auto = mail("Auto-Submitted: auto-replied\r\n", "I am away");
        assert!(matches!(map_message(&settings(), &auto, "1"), Err(Skip::Automatic(_))));
        let list = mail("List-Id: <dev.lists.example.test>\r\n", "digest");
        assert!(matches!(map_message(&settings(), &list, "1"), Err(Skip::Automatic(_))));
        let stranger = b"From: mallory@elsewhere.example\r\nTo: bot@example.test\r\n\r\nhi".to_vec();
        assert_eq!(
            map_message(&settings(), &stranger, "1").err(),
            Some(Skip::NotAllowed("mallory@elsewhere.example".into()))
        );
        assert_eq!(map_message(&settings(), b"", "1").err(), Some(Skip::Unreadable));
    }

    #[test]
    fn html_becomes_text_and_attachments_are_references() {
        let raw = "From: alice@example.test\r\nTo: bot@example.test\r\nMessage-ID: <h@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>there</b></p><p>Second &amp; last</p>\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=plan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
        let message = map_message(&settings(), raw.as_bytes(), "1").expect("in");
        let MessageContent::Media { text, attachments } = &message.content else { panic!("{:?}", message.content) };
        let text = text.clone().unwrap_or_default();
        assert!(text.contains("Hello there") && text.contains("Second & last") && !text.contains('<'), "{text:?}");
        assert_eq!(attachments[0].filename, "plan.pdf");
        assert_eq!(attachments[0].mime_type.as_deref(), Some("application/pdf"));
        assert_eq!(attachments[0].url, "email:h@x#1");
    }

    #[test]
    fn quoted_history_and_signatures_are_trimmed() {
        let text = "Sounds good, see you then.\n\nOn Tue, 1 Dec 2026 at 10:00, Bot <bot@example.test> wrote:\n> Shall we meet at 3?\n> \n\n-- \nAlice\nCEO";
        assert_eq!(trim_quoted(text), "Sounds good, see you then.");
        let wrapped = "Yes.\nOn Tue, 1 Dec 2026 at 10:00, Bot Example\n<bot@example.test> wrote:\n> Meet?";
        assert_eq!(trim_quoted(wrapped), "Yes.");
        let outlook = "Fine by me.\n\n-----Original Message-----\nFrom: Bot\nSent: Tuesday\nMeet?";
        assert_eq!(trim_quoted(outlook), "Fine by me.");
        let inline = "> question one\nanswer one\n> question two\nanswer two";
        assert_eq!(trim_quoted(inline), "answer one\nanswer two", "interleaved answers are kept");
        assert_eq!(trim_quoted("I wrote: the plan"), "I wrote: the plan", "'wrote:' alone is text");
    }
}

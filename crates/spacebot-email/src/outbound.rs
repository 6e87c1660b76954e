//! Replies as email: threaded under the message they answer, to its sender and the others on it.

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use spacebot_core::{AdapterError, CHANNEL_KEY, InboundMessage};

use crate::inbound::{META_CC, META_MESSAGE_ID, META_REFERENCES, META_REPLY_TO, META_SUBJECT};
use crate::settings::EmailSettings;

/// A file sent with a reply.
pub(crate) struct File {
    pub(crate) filename: String,
    pub(crate) mime_type: String,
    pub(crate) data: Vec<u8>,
}

/// `Auto-Submitted: auto-replied` (RFC 3834): other robots (vacation replies) don't answer it,
/// so two of them can't loop.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".to_owned())
    }
}

/// The reply to `target` saying `text` (and carrying `file`), with its new Message-ID.
pub(crate) fn reply(
    settings: &EmailSettings,
    target: &InboundMessage,
    text: &str,
    file: Option<File>,
) -> Result<lettre::Message, AdapterError> {
    let name = settings.name.as_str();
    let meta = |key: &str| target.metadata.get(key);
    let text_meta = |key: &str| meta(key).and_then(|v| v.as_str()).map(str::to_owned);
    let list_meta = |key: &str| -> Vec<String> {
        meta(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    // A message the runtime makes up (a cron job's delivery) names its recipient by core's key.
    let to = text_meta(META_REPLY_TO)
        .or_else(|| text_meta(CHANNEL_KEY))
        .ok_or_else(|| AdapterError::permanent(name, "the message names no address to answer"))?;
    let mailbox = |address: &str, what: &str| -> Result<Mailbox, AdapterError> {
        address
            .parse::<Mailbox>()
            .map_err(|e| AdapterError::permanent(name, format!("{what} `{address}` is not an email address: {e}")))
    };
    let from = match &settings.display_name {
        Some(display) => Mailbox::new(Some(display.clone()), mailbox(&settings.address, "the bot's address")?.email),
        None => mailbox(&settings.address, "the bot's address")?,
    };
    let subject = text_meta(META_SUBJECT).unwrap_or_default();
    let subject = if subject.to_ascii_lowercase().starts_with("re:") {
        subject
    } else if subject.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {subject}")
    };
    let domain = settings.address.rsplit_once('@').map_or("localhost", |(_, domain)| domain);
    let message_id = format!("<{}@{domain}>", uuid::Uuid::now_v7().simple());

    let mut builder = lettre::Message::builder()
        .from(from)
        .to(mailbox(&to, "the reply address")?)
        .subject(subject)
        .message_id(Some(message_id))
        .header(AutoSubmitted);
    for cc in list_meta(META_CC) {
        builder = builder.cc(mailbox(&cc, "a copied address")?);
    }
    if let Some(parent) = text_meta(META_MESSAGE_ID) {
        let mut references = list_meta(META_REFERENCES);
        references.retain(|id| *id != parent);
        references.push(parent.clone());
        let references: Vec<String> = references.iter().map(|id| format!("<{id}>")).collect();
        builder = builder.in_reply_to(format!("<{parent}>")).references(references.join(" "));
    }
    let body = SinglePart::plain(text.to_owned());
    let built = match file {
        None => builder.singlepart(body),
        Some(file) => {
            // A type lettre can't read goes out as the generic one mail clients save to disk.
            let kind = ContentType::parse(&file.mime_type).or_else(|_| ContentType::parse("application/octet-stream"));
            let kind = kind.map_err(|e| AdapterError::permanent(name, format!("can't type the attachment: {e}")))?;
            let attachment = Attachment::new(file.filename).body(file.data, kind);
            builder.multipart(MultiPart::mixed().singlepart(body).singlepart(attachment))
        }
    };
    built.map_err(|e| AdapterError::permanent(name, format!("can't build the reply: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use spacebot_core::Sender;

    use super::*;
    use crate::settings::{Security, Server};

    fn settings() -> EmailSettings {
        let server = Server::new("127.0.0.1", 1, Security::Plain);
        EmailSettings::new("bot@example.test", server.clone(), server).with_display_name("Spacebot")
    }

    fn target() -> InboundMessage {
        InboundMessage::text("email", "email:1", Sender::new("alice@example.test"), "hi")
            .with_metadata(META_REPLY_TO, json!("alice@example.test"))
            .with_metadata(META_CC, json!(["bob@example.test"]))
            .with_metadata(META_SUBJECT, json!("Plans"))
            .with_metadata(META_MESSAGE_ID, json!("m2@example.test"))
            .with_metadata(META_REFERENCES, json!(["m1@example.test"]))
    }

    #[test]
    fn a_reply_threads_under_its_message_and_copies_the_others() {
        let message = reply(&settings(), &target(), "Sounds good.", None).expect("built");
        let raw = String::from_utf8(message.formatted()).expect("text");
        assert!(raw.contains("From: Spacebot <bot@example.test>"), "{raw}");
        assert!(raw.contains("To: alice@example.test"), "{raw}");
        assert!(raw.contains("Cc: bob@example.test"), "{raw}");
        assert!(raw.contains("Subject: Re: Plans"), "{raw}");
        assert!(raw.contains("In-Reply-To: <m2@example.test>"), "{raw}");
        assert!(raw.contains("References: <m1@example.test> <m2@example.test>"), "{raw}");
        assert!(raw.contains("Auto-Submitted: auto-replied"), "{raw}");
        assert!(raw.contains("@example.test>\r\n") && raw.contains("Message-ID: <"), "{raw}");
        assert!(raw.contains("Sounds good."), "{raw}");
    }

    #[test]
    fn a_subject_is_not_re_prefixed_twice_and_a_made_up_target_needs_an_address() {
        let again = target().with_metadata(META_SUBJECT, json!("RE: Plans"));
        let raw = String::from_utf8(reply(&settings(), &again, "x", None).expect("built").formatted()).expect("text");
        assert!(raw.contains("Subject: RE: Plans\r\n"), "{raw}");
        let nowhere = InboundMessage::text("cron", "cron:1", Sender::new("cron"), "");
        assert!(reply(&settings(), &nowhere, "x", None).is_err());
        let cron = nowhere.with_metadata(CHANNEL_KEY, json!("alice@example.test"));
        assert!(reply(&settings(), &cron, "x", None).is_ok());
    }

    #[test]
    fn a_file_rides_as_an_attachment() {
        let file = File { filename: "r.csv".into(), mime_type: "text/csv".into(), data: b"a,b\n".to_vec() };
        let raw = String::from_utf8(reply(&settings(), &target(), "Here.", Some(file)).expect("built").formatted())
            .expect("text");
        assert!(raw.contains("multipart/mixed") && raw.contains("filename=\"r.csv\""), "{raw}");
    }
}

//! Messages in and out: what adapters hand the runtime, what processes send back, and what the
//! conversation log stores.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ConversationId, MessageId};

/// Who sent an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sender {
    /// The platform's id for the sender (a Discord user id, a Slack member id, a webhook name).
    pub id: String,
    /// How the sender is shown to the model and in logs; falls back to `id`.
    pub display_name: Option<String>,
}

impl Sender {
    /// A sender known only by id.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), display_name: None }
    }

    /// Sets the display name.
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// The name to show: the display name, else the id.
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }
}

/// A file or image attached to an inbound message, received by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attachment {
    /// The file name as the platform reported it.
    pub filename: String,
    /// MIME type, when known.
    pub mime_type: Option<String>,
    /// Where the file can be fetched.
    pub url: String,
    /// Size in bytes, when known.
    pub size_bytes: Option<u64>,
    /// The file's bytes, when the adapter fetched them (images, within its size cap), so a
    /// vision-capable model can be shown them. Not recorded in the log: a conversation reloaded
    /// after a restart has the reference only.
    #[serde(skip)]
    pub data: Option<Arc<[u8]>>,
    /// Why the adapter did not fetch an image (too large, the download failed), for the note the
    /// model gets instead. Not recorded either.
    #[serde(skip)]
    pub skipped: Option<String>,
}

impl Attachment {
    /// An attachment by file name and URL.
    pub fn new(filename: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            filename: filename.into(),
            mime_type: None,
            url: url.into(),
            size_bytes: None,
            data: None,
            skipped: None,
        }
    }

    /// Sets the MIME type.
    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Sets the fetched bytes.
    pub fn with_data(mut self, data: impl Into<Arc<[u8]>>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Says why the file was not fetched.
    pub fn with_skipped(mut self, reason: impl Into<String>) -> Self {
        self.skipped = Some(reason.into());
        self
    }

    /// Keeps what a download gave: the bytes, or why there are none (for the note the model
    /// gets).
    pub fn fetched(&mut self, outcome: Result<Vec<u8>, String>) {
        match outcome {
            Ok(bytes) => self.data = Some(bytes.into()),
            Err(reason) => {
                tracing::debug!(file = %self.filename, %reason, "image not fetched");
                self.skipped = Some(reason);
            }
        }
    }

    /// Whether it is an image, by MIME type or, without one, by file extension.
    pub fn is_image(&self) -> bool {
        match &self.mime_type {
            Some(mime) => mime.starts_with("image/"),
            None => {
                let name = self.filename.to_ascii_lowercase();
                [".png", ".jpg", ".jpeg", ".gif", ".webp"].iter().any(|ext| name.ends_with(ext))
            }
        }
    }
}

/// The content of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageContent {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// Text with attachments.
    Media {
        /// Optional text sent with the attachments.
        text: Option<String>,
        /// The attachments, by reference.
        attachments: Vec<Attachment>,
    },
    /// A control command such as `/stop`, from a native slash command or parsed from text.
    Command {
        /// The command name without the slash.
        name: String,
        /// Everything after the name.
        args: String,
    },
}

impl MessageContent {
    /// The text a model should see for this content.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for MessageContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text { text } => f.write_str(text),
            Self::Media { text, attachments } => {
                if let Some(text) = text {
                    f.write_str(text)?;
                }
                for attachment in attachments {
                    write!(f, "\n[attachment: {} <{}>]", attachment.filename, attachment.url)?;
                }
                Ok(())
            }
            Self::Command { name, args } if args.is_empty() => write!(f, "/{name}"),
            Self::Command { name, args } => write!(f, "/{name} {args}"),
        }
    }
}

/// A message from a platform, normalised by its adapter.
///
/// The adapter fills in where it came from (`source`, `adapter`, `conversation`) and who sent it;
/// the runtime assigns the agent when a binding or the caller has not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InboundMessage {
    /// Unique id; also the idempotency key when the message is recorded.
    pub id: MessageId,
    /// The platform: `discord`, `slack`, `webhook`, `cli`, ...
    pub source: String,
    /// The runtime key of the adapter instance that received it and must deliver replies
    /// (`discord`, `discord:ops`, `webhook`). Defaults to `source`.
    pub adapter: String,
    /// The agent that handles it, once known.
    pub agent: Option<AgentId>,
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// Who sent it.
    pub sender: Sender,
    /// What it says.
    pub content: MessageContent,
    /// When the platform received it.
    pub timestamp: DateTime<Utc>,
    /// Platform routing data (thread ids, message ids) the adapter needs to reply in place.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Whether this is a direct message (one person) rather than a group conversation.
    #[serde(default)]
    pub direct: bool,
}

/// The largest image adapters fetch for vision models, in bytes: 3.75 MiB, which base64-encoded
/// (as the model wires send it) is 5 MiB, the most Anthropic accepts per image.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024 / 4 * 3;

impl InboundMessage {
    /// Its image attachments, for an adapter to fetch before handing it in (see
    /// [`Attachment::fetched`]); other attachments stay references.
    pub fn images_mut(&mut self) -> impl Iterator<Item = &mut Attachment> {
        let attachments = match &mut self.content {
            MessageContent::Media { attachments, .. } => attachments.as_mut_slice(),
            _ => &mut [],
        };
        attachments.iter_mut().filter(|attachment| attachment.is_image())
    }

    /// The id memory scopes know the sender by: `source:sender` (`discord:123`).
    pub fn participant(&self) -> String {
        format!("{}:{}", self.source, self.sender.id)
    }

    /// A text message with a fresh id and the current time.
    pub fn text(
        source: impl Into<String>,
        conversation: impl Into<ConversationId>,
        sender: Sender,
        text: impl Into<String>,
    ) -> Self {
        let source = source.into();
        Self {
            id: MessageId::generate(),
            adapter: source.clone(),
            source,
            agent: None,
            conversation: conversation.into(),
            sender,
            content: MessageContent::Text { text: text.into() },
            timestamp: Utc::now(),
            metadata: BTreeMap::new(),
            direct: false,
        }
    }

    /// Replaces the content.
    pub fn with_content(mut self, content: MessageContent) -> Self {
        self.content = content;
        self
    }

    /// Sets the id (adapters use the platform's message id).
    pub fn with_id(mut self, id: impl Into<MessageId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the adapter runtime key that must deliver replies.
    pub fn with_adapter(mut self, adapter: impl Into<String>) -> Self {
        self.adapter = adapter.into();
        self
    }

    /// Assigns the agent.
    pub fn with_agent(mut self, agent: impl Into<AgentId>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Marks the message as a direct message.
    pub fn with_direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// Whether the message mentions the agent or replies to it, as its adapter says
    /// ([`MENTIONS_BOT_KEY`] metadata).
    pub fn mentions_bot(&self) -> bool {
        self.metadata.get(MENTIONS_BOT_KEY).and_then(serde_json::Value::as_bool).unwrap_or(false)
    }
}

/// Metadata key an adapter sets to `true` on a message that mentions the bot or replies to it.
pub const MENTIONS_BOT_KEY: &str = "mentions_bot";

/// A typing or progress indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatusUpdate {
    /// The agent is working on a reply.
    Typing,
    /// The agent stopped working on a reply (sent on every turn end, errors included).
    StopTyping,
}

/// Something a process sends back to a platform, in the context of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboundResponse {
    /// A text reply in the same place the message came from.
    Text {
        /// The reply.
        text: String,
    },
    /// A reply in a (new or existing) thread; adapters without threads send plain text.
    ThreadReply {
        /// The thread title when one is created.
        thread_name: String,
        /// The reply.
        text: String,
    },
    /// A reaction (an emoji) on the inbound message.
    Reaction {
        /// The emoji.
        emoji: String,
    },
    /// A typing or progress indicator.
    Status {
        /// The update.
        status: StatusUpdate,
    },
    /// A file, uploaded to the conversation. Adapters that can't deliver files answer
    /// [`AdapterErrorKind::Unsupported`](crate::AdapterErrorKind::Unsupported).
    File {
        /// File name.
        filename: String,
        /// MIME type.
        mime_type: String,
        /// The bytes. Not serialized: a [`RuntimeEvent`](crate::RuntimeEvent) about a file says
        /// its name and type, without its contents.
        #[serde(skip)]
        data: Vec<u8>,
        /// Optional caption.
        caption: Option<String>,
    },
}

impl OutboundResponse {
    /// A plain text reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// The text this response carries, if any.
    pub fn text_content(&self) -> Option<&str> {
        match self {
            Self::Text { text } | Self::ThreadReply { text, .. } => Some(text),
            Self::File { caption, .. } => caption.as_deref(),
            Self::Reaction { .. } | Self::Status { .. } => None,
        }
    }
}

/// Who wrote a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// A person on a platform.
    User,
    /// The agent.
    Assistant,
    /// The harness itself: visible errors and notices.
    System,
}

impl Role {
    /// The role as stored and served: `user`, `assistant` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
        }
    }

    /// Parses a stored role.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

/// One message in the conversation log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredMessage {
    /// The message id.
    pub id: MessageId,
    /// The agent the conversation belongs to.
    pub agent: AgentId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Who wrote it.
    pub role: Role,
    /// The sender's label: the person's name, or the agent id.
    pub sender: String,
    /// For a message from a person, the id memory scopes know them by
    /// ([`InboundMessage::participant`]); `None` for the agent's own messages and notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// The text.
    pub text: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

impl StoredMessage {
    /// A new message with a fresh id and the current time.
    pub fn new(
        agent: AgentId,
        conversation: ConversationId,
        role: Role,
        sender: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            id: MessageId::generate(),
            agent,
            conversation,
            role,
            sender: sender.into(),
            participant: None,
            text: text.into(),
            created_at: Utc::now(),
        }
    }

    /// Sets the sender's participant id.
    pub fn with_participant(mut self, participant: impl Into<String>) -> Self {
        self.participant = Some(participant.into());
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.id = id;
        self
    }

    /// Sets the creation time.
    pub fn with_created_at(mut self, created_at: DateTime<Utc>) -> Self {
        self.created_at = created_at;
        self
    }

    /// The stored form of an inbound message, under the agent that handles it.
    pub fn from_inbound(agent: AgentId, message: &InboundMessage) -> Self {
        Self {
            id: message.id.clone(),
            agent,
            conversation: message.conversation.clone(),
            role: Role::User,
            sender: message.sender.label().to_owned(),
            participant: Some(message.participant()),
            text: message.content.text(),
            created_at: message.timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_renders_for_the_model() {
        let media = MessageContent::Media {
            text: Some("look".into()),
            attachments: vec![Attachment::new("cat.png", "https://x/cat.png")],
        };
        assert_eq!(media.text(), "look\n[attachment: cat.png <https://x/cat.png>]");
        let command = MessageContent::Command { name: "stop".into(), args: String::new() };
        assert_eq!(command.text(), "/stop");
    }

    #[test]
    fn inbound_round_trips_through_json() {
        let message = InboundMessage::text("webhook", "webhook:c1", Sender::new("alice"), "hi")
            .with_agent("main")
            .with_metadata("thread", serde_json::json!("t1"));
        let json = serde_json::to_string(&message).unwrap();
        let back: InboundMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn roles_parse_what_they_print() {
        for role in [Role::User, Role::Assistant, Role::System] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("tool"), None);
    }

    #[test]
    fn images_are_fetched_and_other_files_stay_references() {
        let image = Attachment::new("a.png", "https://x/a.png");
        let broken = Attachment::new("b.jpg", "https://x/b.jpg");
        let text = Attachment::new("c.txt", "https://x/c.txt");
        let mut message = InboundMessage::text("t", "t:1", Sender::new("u"), "")
            .with_content(MessageContent::Media { text: None, attachments: vec![image, broken, text] });
        let mut asked = Vec::new();
        for attachment in message.images_mut() {
            asked.push(attachment.filename.clone());
            let outcome = if attachment.filename == "a.png" { Ok(vec![1, 2, 3]) } else { Err("too large".to_owned()) };
            attachment.fetched(outcome);
        }
        assert_eq!(asked, ["a.png", "b.jpg"], "only images are fetched");
        let MessageContent::Media { attachments, .. } = &message.content else { panic!("{:?}", message.content) };
        assert_eq!(attachments[0].data.as_deref(), Some([1u8, 2, 3].as_slice()));
        assert_eq!(attachments[1].skipped.as_deref(), Some("too large"));
        assert!(attachments[2].data.is_none() && attachments[2].skipped.is_none());
        let mut plain = InboundMessage::text("t", "t:1", Sender::new("u"), "hi");
        assert_eq!(plain.images_mut().count(), 0);
    }
}

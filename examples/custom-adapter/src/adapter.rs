//! [`LineChatAdapter`]: the `MessagingAdapter` for a LineChat server.
//!
//! Two kinds of connection, like a chat app's websocket and its REST calls:
//!
//! - `start` opens the *event connection* (`LISTEN`), and the stream it returns reads `MSG`
//!   lines from it. When the server drops it, the stream ends and the runtime calls `start`
//!   again after a backoff: that is the whole reconnect logic.
//! - every `send` opens a short *command connection*: one line out, one `OK` or `ERR` back.
//!   `ERR busy` and network failures are transient (the runtime's outbox retries them); every
//!   other refusal is permanent.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;

use spacebot_core::{
    AdapterError, AdapterErrorKind, CHANNEL_KEY, InboundMessage, InboundStream, MessageContent, MessagingAdapter,
    OutboundResponse, PARENT_CHANNEL_KEY, Sender, StatusUpdate, split_message,
};

use crate::protocol::{BotLine, Room, ServerLine};

/// The platform name, in [`InboundMessage::source`].
pub const PLATFORM: &str = "linechat";
/// The most characters a LineChat message may carry; longer replies are split.
pub const MESSAGE_LIMIT: usize = 500;
/// Metadata key of the room a message was said in (`#general`, `#general/17`, `@alice`).
pub const ROOM_KEY: &str = "linechat_room";
/// Metadata key of the server's id for a message.
pub const MESSAGE_KEY: &str = "linechat_message_id";

/// How long connecting, or waiting for the answer to one line, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A bot account on one LineChat server.
#[derive(Debug, Clone)]
pub struct LineChatAdapter {
    /// The runtime key: `linechat`, or `linechat:<instance>` for a second account.
    name: String,
    /// `host:port` of the server.
    address: String,
    /// The bot's user name; its own messages are never handed in.
    bot: String,
}

impl LineChatAdapter {
    /// The adapter for user `bot` on the server at `address` (`127.0.0.1:7070`).
    pub fn new(address: impl Into<String>, bot: impl Into<String>) -> Self {
        Self { name: PLATFORM.to_owned(), address: address.into(), bot: bot.into() }
    }

    /// Sets the runtime key, for a second instance (`linechat:ops`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Normalises one `MSG` line; `None` for the bot's own messages.
    fn inbound(&self, id: String, room: Room, user: String, text: String) -> Option<InboundMessage> {
        if user == self.bot {
            return None;
        }
        let mut message = InboundMessage::text(PLATFORM, format!("{}:{room}", self.name), Sender::new(user), "")
            .with_content(command_or_text(text))
            // The server's ids are unique, so a message delivered twice is recorded once.
            .with_id(format!("{}:{id}", self.name))
            .with_adapter(self.name.clone())
            .with_direct(matches!(room, Room::Direct(_)))
            .with_metadata(ROOM_KEY, json!(room.to_string()))
            .with_metadata(MESSAGE_KEY, json!(id))
            .with_metadata(CHANNEL_KEY, json!(room.to_string()));
        if let Room::Thread { channel, .. } = &room {
            message = message.with_metadata(PARENT_CHANNEL_KEY, json!(channel));
        }
        Some(message)
    }

    async fn connect(&self) -> Result<TcpStream, AdapterError> {
        match tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(&self.address)).await {
            Ok(Ok(stream)) => Ok(stream),
            // Refused or unreachable: the server may come back, so the runtime keeps trying.
            Ok(Err(error)) => {
                Err(AdapterError::transient(&self.name, format!("can't reach {}", self.address)).with_source(error))
            }
            Err(_) => Err(AdapterError::transient(&self.name, format!("connecting to {} timed out", self.address))),
        }
    }

    /// Writes one line on `lines`' connection and reads the answer.
    async fn exchange(&self, lines: &mut Lines<BufReader<TcpStream>>, line: &BotLine) -> Result<(), AdapterError> {
        let io = |error: std::io::Error| {
            AdapterError::transient(&self.name, format!("the connection to {} broke", self.address)).with_source(error)
        };
        let answer = tokio::time::timeout(IO_TIMEOUT, async {
            lines.get_mut().get_mut().write_all(format!("{line}\n").as_bytes()).await.map_err(io)?;
            lines.next_line().await.map_err(io)
        })
        .await
        .map_err(|_| AdapterError::transient(&self.name, format!("{} did not answer in time", self.address)))??;
        match answer.as_deref().map(ServerLine::parse) {
            Some(Some(ServerLine::Ok | ServerLine::Welcome)) => Ok(()),
            Some(Some(ServerLine::Err { code, reason })) => {
                let message = format!("the server refused `{}`: {code}: {reason}", verb(line));
                Err(if code == "busy" {
                    AdapterError::transient(&self.name, message)
                } else {
                    AdapterError::permanent(&self.name, message)
                })
            }
            Some(_) => Err(AdapterError::permanent(&self.name, format!("the server answered `{}` oddly", verb(line)))),
            None => Err(AdapterError::transient(&self.name, "the server closed the connection without answering")),
        }
    }

    /// Runs one command on a fresh connection.
    async fn command(&self, line: BotLine) -> Result<(), AdapterError> {
        let mut lines = BufReader::new(self.connect().await?).lines();
        self.exchange(&mut lines, &line).await
    }

    async fn say(&self, room: Room, text: &str) -> Result<(), AdapterError> {
        for part in split_message(text, MESSAGE_LIMIT) {
            self.command(BotLine::Say { room: room.clone(), text: part }).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MessagingAdapter for LineChatAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let mut lines = BufReader::new(self.connect().await?).lines();
        self.exchange(&mut lines, &BotLine::Listen { bot: self.bot.clone() }).await?;
        tracing::info!(adapter = %self.name, address = %self.address, "listening on LineChat");
        let adapter = self.clone();
        let stream = futures::stream::unfold((lines, adapter), |(mut lines, adapter)| async move {
            loop {
                // No timeout here: waiting for the next message is this connection's job.
                let line = match lines.next_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) => return None,
                    Err(error) => {
                        tracing::warn!(adapter = %adapter.name, %error, "the LineChat event connection broke");
                        return None;
                    }
                };
                match ServerLine::parse(&line) {
                    Some(ServerLine::Message { id, room, user, text }) => {
                        if let Some(message) = adapter.inbound(id, room, user, text) {
                            return Some((message, (lines, adapter)));
                        }
                    }
                    _ => tracing::warn!(adapter = %adapter.name, %line, "ignoring an unexpected LineChat line"),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let meta = |key: &str| target.metadata.get(key).and_then(Value::as_str).map(str::to_owned);
        let (Some(room), Some(id)) = (meta(ROOM_KEY).as_deref().and_then(Room::parse), meta(MESSAGE_KEY)) else {
            return Err(AdapterError::permanent(&self.name, "the message to answer did not come from LineChat"));
        };
        match response {
            OutboundResponse::Text { text } => self.say(room, &text).await,
            OutboundResponse::ThreadReply { text, .. } => self.say(room.thread_under(&id), &text).await,
            OutboundResponse::Reaction { emoji } => self.command(BotLine::React { room, id, emoji }).await,
            OutboundResponse::Status { status: StatusUpdate::Typing } => self.command(BotLine::Typing { room }).await,
            // LineChat's typing indicator fades by itself.
            OutboundResponse::Status { .. } => Ok(()),
            _ => Err(AdapterError::new(AdapterErrorKind::Unsupported, &self.name, "LineChat carries text only")),
        }
    }

    async fn health_check(&self) -> Result<(), AdapterError> {
        self.connect().await.map(drop)
    }
}

/// `/stop` and friends become commands; everything else is text.
fn command_or_text(text: String) -> MessageContent {
    match text.strip_prefix('/').filter(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic())) {
        Some(rest) => {
            let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
            MessageContent::Command { name: name.to_owned(), args: args.trim().to_owned() }
        }
        None => MessageContent::Text { text },
    }
}

/// The command word of a line, for error messages.
fn verb(line: &BotLine) -> &'static str {
    match line {
        BotLine::Listen { .. } => "LISTEN",
        BotLine::Say { .. } => "SAY",
        BotLine::React { .. } => "REACT",
        BotLine::Typing { .. } => "TYPING",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> LineChatAdapter {
        LineChatAdapter::new("127.0.0.1:1", "spacebot").with_name("linechat:ops")
    }

    #[test]
    fn a_thread_message_is_normalised_with_its_routing_metadata() {
        let room = Room::parse("#general/17").expect("a thread room");
        let message = adapter().inbound("18".into(), room, "alice".into(), "hi".into()).expect("not the bot's");
        assert_eq!(message.source, "linechat");
        assert_eq!(message.adapter, "linechat:ops");
        assert_eq!(message.conversation.as_str(), "linechat:ops:#general/17");
        assert_eq!(message.id.as_str(), "linechat:ops:18");
        assert_eq!(message.sender.id, "alice");
        assert!(!message.direct);
        assert_eq!(message.metadata[CHANNEL_KEY], json!("#general/17"));
        assert_eq!(message.metadata[PARENT_CHANNEL_KEY], json!("#general"));
    }

    #[test]
    fn direct_messages_are_direct_and_the_bots_own_messages_are_dropped() {
        let dm = adapter().inbound("1".into(), Room::Direct("@alice".into()), "alice".into(), "psst".into());
        assert!(dm.expect("alice's message").direct);
        let own = adapter().inbound("2".into(), Room::Channel("#general".into()), "spacebot".into(), "me".into());
        assert_eq!(own, None);
    }

    #[test]
    fn slash_commands_become_commands() {
        assert_eq!(
            command_or_text("/stop now".into()),
            MessageContent::Command { name: "stop".into(), args: "now".into() }
        );
        assert_eq!(
            command_or_text("/status".into()),
            MessageContent::Command { name: "status".into(), args: String::new() }
        );
        assert_eq!(command_or_text("/ not one".into()), MessageContent::Text { text: "/ not one".into() });
        assert_eq!(command_or_text("a/b".into()), MessageContent::Text { text: "a/b".into() });
    }
}

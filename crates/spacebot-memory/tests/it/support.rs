//! Helpers shared by the tests: messages, temporary database files, raw SQL access.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

use spacebot_core::{AgentId, InboundMessage, MessageId, Role, Sender, StoredMessage};

/// A temporary directory and a database path inside it (the file does not exist yet).
pub(crate) fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("spacebot.db");
    (dir, path)
}

/// A text message from `sender` in `conversation`, assigned to `agent`, with a fixed id.
pub(crate) fn inbound(agent: &str, conversation: &str, id: &str, text: &str) -> InboundMessage {
    InboundMessage::text("webhook", conversation, Sender::new("u-1").with_display_name("Alice"), text)
        .with_id(id)
        .with_agent(agent)
}

/// The agent's reply in the inbound message's conversation.
pub(crate) fn reply_to(message: &InboundMessage, text: &str) -> StoredMessage {
    let agent = message.agent.clone().expect("test messages have an agent");
    StoredMessage::new(agent.clone(), message.conversation.clone(), Role::Assistant, agent.as_str(), text)
}

/// A timestamp with sub-millisecond digits, to see what the log keeps.
pub(crate) fn precise_time(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, second).single().expect("valid time")
        + chrono::Duration::nanoseconds(265_358_979)
}

/// `time` as the log stores it: truncated to the millisecond.
pub(crate) fn millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).expect("in range")
}

/// The ids of messages, for compact assertions.
pub(crate) fn ids<'a>(messages: impl IntoIterator<Item = &'a InboundMessage>) -> Vec<&'a str> {
    messages.into_iter().map(|message| message.id.as_str()).collect()
}

/// The texts of stored messages, for compact assertions.
pub(crate) fn texts(messages: &[StoredMessage]) -> Vec<&str> {
    messages.iter().map(|message| message.text.as_str()).collect()
}

/// Message ids from strings.
pub(crate) fn message_ids(values: &[&str]) -> Vec<MessageId> {
    values.iter().map(|value| MessageId::from(*value)).collect()
}

/// An agent id.
pub(crate) fn agent(value: &str) -> AgentId {
    AgentId::from(value)
}

/// A plain connection to the database file, beside the store, for what the API can't do:
/// inspecting pragmas, damaging rows, injecting failures.
pub(crate) async fn raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await.expect("raw connection")
}

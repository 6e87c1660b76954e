//! [`ConversationLog`] over the `messages` and `conversation_settings` tables, written once for
//! both backends: [`SqliteLog`] (migrations 0001 and 0009) and, with the `postgres` feature,
//! `PgLog` (`migrations/postgres/`). Its chronicle of checkpoints is in `chronicle.rs`.
//!
//! Order is the recording order (`seq`), timestamps are Unix milliseconds (so a stored
//! `created_at` comes back truncated to the millisecond), and an inbound message keeps its full
//! serialized form in `inbound_json` until a reply or skip marks it handled.
//!
//! The two backends share the tables' shape and every statement but two: the SQL here uses only
//! what SQLite and PostgreSQL both understand (`$1` parameters, `ON CONFLICT`, aliased
//! subqueries), and [`log_impl!`](log_impl) stamps the trait out for each store. What differs is
//! each store's own: `begin_write_in` and `begin_write` (how a writer excludes the others) and
//! `set_handled` (how a list of ids travels), in `sqlite.rs` and `postgres.rs`. The same pattern
//! serves the chronicle, process runs, cron and usage.

use chrono::{DateTime, Utc};

use spacebot_core::{AgentId, ConversationId, InboundMessage, MessageId, Role, StoredMessage};

use crate::sqlite::SqliteLog;

/// One row of `messages` as `history` reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: String,
    agent: String,
    conversation: String,
    role: String,
    sender: String,
    text: String,
    created_at: i64,
    /// The inbound message's serialized form, kept after it is handled: where the participant
    /// id comes from.
    inbound_json: Option<String>,
}

impl MessageRow {
    pub(crate) fn into_message(self) -> Result<StoredMessage, String> {
        let role =
            Role::parse(&self.role).ok_or_else(|| format!("message {} has unknown role {:?}", self.id, self.role))?;
        let created_at = from_millis(self.created_at)
            .ok_or_else(|| format!("message {} has out-of-range created_at {}", self.id, self.created_at))?;
        // A stored form that no longer deserializes only loses the participant id.
        let participant = self
            .inbound_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<InboundMessage>(json).ok())
            .map(|inbound| inbound.participant());
        let message = StoredMessage::new(
            AgentId::from(self.agent),
            ConversationId::from(self.conversation),
            role,
            self.sender,
            self.text,
        )
        .with_id(MessageId::from(self.id))
        .with_created_at(created_at);
        Ok(match participant {
            Some(participant) => message.with_participant(participant),
            None => message,
        })
    }
}

/// One unhandled inbound row as `unhandled` reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct InboundRow {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) agent: String,
    inbound_json: String,
}

impl InboundRow {
    /// The message to process again, or `None` (logged as a warning) when its stored form no
    /// longer deserializes.
    pub(crate) fn into_inbound(self) -> Option<InboundMessage> {
        match serde_json::from_str::<InboundMessage>(&self.inbound_json) {
            // The row's agent recorded it; the column is authoritative.
            Ok(message) => Some(message.with_agent(self.agent)),
            Err(error) => {
                tracing::warn!(
                    agent = %self.agent,
                    message_id = %self.id,
                    %error,
                    "unhandled inbound message can't be read back; marking it handled so recovery goes on"
                );
                None
            }
        }
    }
}

/// `text` with each NUL character replaced by U+FFFD: PostgreSQL's text can't hold NUL, and a
/// message from the network may carry one. (The serialized form in `inbound_json` keeps it,
/// escaped as JSON writes it.)
pub(crate) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

pub(crate) fn to_millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// Implements [`ConversationLog`](spacebot_core::ConversationLog) for `$store`, a log over a
/// `sqlx::Pool<$db>` in its `pool` field with these methods of its own:
///
/// - `begin_write_in(&self, agent, conversation) -> Result<sqlx::Transaction<'static, $db>,
///   sqlx::Error>`: a transaction no other writer of that conversation runs beside, so the
///   conversation's `seq` grows in commit order and a read-then-write inside it sees no other
///   write of it;
/// - `set_handled(executor, agent, ids) -> Result<(), sqlx::Error>`: marks the agent's unhandled
///   inbound messages among `ids` handled now, ignoring ids that are unknown, handled or not
///   inbound.
macro_rules! log_impl {
    ($store:ty, $db:ty) => {
        const _: () = {
            use std::sync::Arc;

            use async_trait::async_trait;
            use chrono::Utc;

            use spacebot_core::{
                AgentId, Chronicle, ConversationId, ConversationLog, InboundMessage, MessageId, StoreError,
                StoredMessage,
            };

            use $crate::conversation_log::{InboundRow, MessageRow, to_millis, without_nul};
            use $crate::error::{permanent, store_error};

            impl $store {
                /// Inserts one message unless `(agent, id)` is already recorded. Returns whether it
                /// inserted.
                async fn insert_message<'e>(
                    executor: impl sqlx::Executor<'e, Database = $db>,
                    message: &StoredMessage,
                    inbound_json: Option<&str>,
                ) -> Result<bool, sqlx::Error> {
                    let result = sqlx::query(
                        "INSERT INTO messages (id, agent, conversation, role, sender, text, created_at, inbound_json)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (agent, id) DO NOTHING",
                    )
                    .bind(message.id.as_str())
                    .bind(message.agent.as_str())
                    .bind(message.conversation.as_str())
                    .bind(message.role.as_str())
                    .bind(without_nul(&message.sender))
                    .bind(without_nul(&message.text))
                    .bind(to_millis(message.created_at))
                    .bind(inbound_json)
                    .execute(executor)
                    .await?;
                    Ok(result.rows_affected() == 1)
                }
            }

            impl $store {

                /// The messages of unhandled rows, oldest first. A row whose stored form no longer

                /// deserializes (written by an incompatible version, or damaged) cannot be processed

                /// again: it is logged as a warning and marked handled, so it stays visible in the

                /// conversation's history but does not block recovery on every start.

                async fn readable(&self, rows: Vec<InboundRow>) -> Result<Vec<InboundMessage>, StoreError> {

                    let mut messages = Vec::with_capacity(rows.len());

                    for row in rows {

                        let (seq, id, agent) = (row.seq, row.id.clone(), row.agent.clone());

                        if let Some(message) = row.into_inbound() {

                            messages.push(message);

                            continue;

                        }

                        sqlx::query("UPDATE messages SET handled_at = $1 WHERE seq = $2")

                            .bind(to_millis(Utc::now()))

                            .bind(seq)

                            .execute(&self.pool)

                            .await

                            .map_err(|error| store_error(format!("mark unreadable message {id} of agent {agent} handled"), error))?;

                    }

                    Ok(messages)

                }

            }


            #[async_trait]
            impl ConversationLog for $store {
                /// Records an inbound message as a `user` row with its serialized form, for recovery.
                ///
                /// Returns `false`, and changes nothing, when the agent already has a message with
                /// this id. Fails (not transient) when the message has no agent.
                async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError> {
                    let operation = || format!("record inbound message {}", message.id);
                    let Some(agent) = message.agent.clone() else {
                        return Err(permanent(operation(), "it has no agent assigned"));
                    };
                    let json = serde_json::to_string(message).map_err(|error| permanent(operation(), error))?;
                    let stored = StoredMessage::from_inbound(agent, message);
                    let result = async {
                        // A writer's transaction, so numbers are taken in commit order.
                        let mut transaction =
                            self.begin_write_in(stored.agent.as_str(), stored.conversation.as_str()).await?;
                        let inserted = Self::insert_message(&mut *transaction, &stored, Some(&json)).await?;
                        transaction.commit().await?;
                        Ok(inserted)
                    }
                    .await;
                    result.map_err(|error| store_error(operation(), error))
                }

                /// Records `message` and marks `answers` (messages of `message.agent`) handled, in one
                /// transaction: either both happen or neither does.
                ///
                /// Recording the same message id again for the same agent (a retry after an error
                /// whose commit did land) inserts nothing new; the handled marks are applied either way.
                async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError> {
                    let operation =
                        || format!("record reply {} in {}/{}", message.id, message.agent, message.conversation);
                    let result = async {
                        let mut transaction =
                            self.begin_write_in(message.agent.as_str(), message.conversation.as_str()).await?;
                        Self::insert_message(&mut *transaction, message, None).await?;
                        if !answers.is_empty() {
                            Self::set_handled(&mut *transaction, &message.agent, answers).await?;
                        }
                        transaction.commit().await
                    }
                    .await;
                    result.map_err(|error| store_error(operation(), error))
                }

                /// Marks the agent's inbound messages `ids` handled. Unknown or already handled ids
                /// are ignored, so marking twice is harmless.
                async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError> {
                    if ids.is_empty() {
                        return Ok(());
                    }
                    Self::set_handled(&self.pool, agent, ids).await.map_err(|error| {
                        store_error(format!("mark {} message(s) of agent {agent} handled", ids.len()), error)
                    })
                }

                /// The last `limit` messages of the conversation in recording order, oldest first.
                async fn history(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    limit: usize,
                ) -> Result<Vec<StoredMessage>, StoreError> {
                    let operation = || format!("read the history of {agent}/{conversation}");
                    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                    let rows: Vec<MessageRow> = sqlx::query_as(
                        "SELECT id, agent, conversation, role, sender, text, created_at, inbound_json FROM (
                             SELECT seq, id, agent, conversation, role, sender, text, created_at, inbound_json
                             FROM messages
                             WHERE agent = $1 AND conversation = $2
                             ORDER BY seq DESC
                             LIMIT $3
                         ) AS recent
                         ORDER BY seq ASC",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error(operation(), error))?;
                    rows.into_iter()
                        .map(|row| row.into_message().map_err(|reason| permanent(operation(), reason)))
                        .collect()
                }

                /// Every agent's unhandled inbound messages in recording order, oldest first.
                ///
                /// A row whose stored form no longer deserializes (written by an incompatible
                /// version, or damaged) cannot be processed again. It is logged as a warning and
                /// marked handled, so it stays visible in the conversation's history but does not
                /// block recovery on every start.
                async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError> {
                    let rows: Vec<InboundRow> = sqlx::query_as(
                        "SELECT seq, id, agent, inbound_json FROM messages
                         WHERE inbound_json IS NOT NULL AND handled_at IS NULL
                         ORDER BY seq ASC",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error("read unhandled inbound messages", error))?;

                    self.readable(rows).await
                }

                /// Answered from the conversation index.
                async fn unhandled_messages_in(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                ) -> Result<Vec<InboundMessage>, StoreError> {
                    let rows: Vec<InboundRow> = sqlx::query_as(
                        "SELECT seq, id, agent, inbound_json FROM messages
                         WHERE agent = $1 AND conversation = $2 AND inbound_json IS NOT NULL AND handled_at IS NULL
                         ORDER BY seq ASC",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| {
                        store_error(format!("read the unanswered messages of {agent}/{conversation}"), error)
                    })?;
                    self.readable(rows).await
                }

                async fn conversation_setting(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    key: &str,
                ) -> Result<Option<String>, StoreError> {
                    sqlx::query_scalar(
                        "SELECT value FROM conversation_settings WHERE agent = $1 AND conversation = $2 AND key = $3",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("read setting {key} of conversation {conversation}"), error))
                }

                async fn set_conversation_setting(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    key: &str,
                    value: &str,
                ) -> Result<bool, StoreError> {
                    sqlx::query(
                        "INSERT INTO conversation_settings (agent, conversation, key, value, updated_at)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (agent, conversation, key)
                         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(key)
                    .bind(value)
                    .bind(to_millis(Utc::now()))
                    .execute(&self.pool)
                    .await
                    .map_err(|error| {
                        store_error(format!("keep setting {key} of conversation {conversation}"), error)
                    })?;
                    Ok(true)
                }

                /// Answered from the conversation index, not by reading every agent's unhandled
                /// messages.
                async fn unhandled_in(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                ) -> Result<Vec<MessageId>, StoreError> {
                    let messages = self.unhandled_messages_in(agent, conversation).await?;
                    Ok(messages.into_iter().map(|message| message.id).collect())
                }

                /// The checkpoints in the same database (`chronicle.rs`); the handle shares this
                /// store's pool.
                fn chronicle(&self) -> Option<Arc<dyn Chronicle>> {
                    Some(Arc::new(self.clone()))
                }

                fn process_runs(&self) -> Option<Arc<dyn spacebot_core::ProcessRuns>> {
                    Some(Arc::new(self.clone()))
                }

                /// The cron jobs and runs in the same database (`cron.rs`).
                fn cron_store(&self) -> Option<Arc<dyn spacebot_core::CronStore>> {
                    Some(Arc::new(self.clone()))
                }
            }
        };
    };
}
#[cfg(feature = "postgres")]
pub(crate) use log_impl;

log_impl!(SqliteLog, sqlx::Sqlite);

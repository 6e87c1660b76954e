//! [`Chronicle`](spacebot_core::Chronicle) for both logs ([`SqliteLog`], and `PgLog` with the
//! `postgres` feature): the `checkpoints` table (SQLite migration 0004), beside the `messages` it
//! summarises. Written once, as `conversation_log.rs` explains.
//!
//! Contiguity is checked inside the write transaction (the store's `begin_write_in`, so no other
//! writer of the conversation can slip in between the check and the insert): a level-0 checkpoint must start at the
//! conversation's first message after the newest level-0 checkpoint. The unique constraints of
//! the table back this up; a violation is reported as [`ChronicleError::Superseded`] too.

use spacebot_core::{AgentId, Checkpoint, CheckpointKind, ChronicleError, ConversationId, LoggedMessage, StoreError};

use crate::conversation_log::{MessageRow, from_millis};
use crate::error::{permanent, store_error};
use crate::sqlite::SqliteLog;

/// Every column of `checkpoints`, in the order [`CheckpointRow`] reads them (a macro, so queries
/// stay literal strings).
macro_rules! columns {
    () => {
        "agent, conversation, seq, level, kind, title, summary, unsummarized, covers_from_seq, covers_to_seq, \
         covers_from_at, covers_to_at, message_count, token_estimate, model, rolled_up_into, rolls_up_from, \
         rolls_up_to, created_at"
    };
}
pub(crate) use columns;

/// One row of `checkpoints`.
#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    pub(crate) agent: String,
    pub(crate) conversation: String,
    pub(crate) seq: i64,
    pub(crate) level: i64,
    pub(crate) kind: String,
    pub(crate) title: String,
    pub(crate) summary: String,
    pub(crate) unsummarized: i64,
    pub(crate) covers_from_seq: i64,
    pub(crate) covers_to_seq: i64,
    pub(crate) covers_from_at: i64,
    pub(crate) covers_to_at: i64,
    pub(crate) message_count: i64,
    pub(crate) token_estimate: i64,
    pub(crate) model: Option<String>,
    pub(crate) rolled_up_into: Option<i64>,
    pub(crate) rolls_up_from: Option<i64>,
    pub(crate) rolls_up_to: Option<i64>,
    pub(crate) created_at: i64,
}

impl CheckpointRow {
    pub(crate) fn into_checkpoint(self) -> Result<Checkpoint, String> {
        let at = |millis: i64| {
            from_millis(millis).ok_or_else(|| format!("checkpoint {} has an out-of-range time {millis}", self.seq))
        };
        let kind = CheckpointKind::parse(&self.kind)
            .ok_or_else(|| format!("checkpoint {} has unknown kind {:?}", self.seq, self.kind))?;
        let (covers_from_at, covers_to_at, created_at) =
            (at(self.covers_from_at)?, at(self.covers_to_at)?, at(self.created_at)?);
        let rolls_up = match (self.rolls_up_from, self.rolls_up_to) {
            (Some(from), Some(to)) => Some((unsigned(from), unsigned(to))),
            _ => None,
        };
        let mut checkpoint = Checkpoint::new(
            AgentId::from(self.agent),
            ConversationId::from(self.conversation),
            unsigned(self.seq),
            kind,
        );
        // The table's CHECK keeps it 0 or 1.
        checkpoint.level = u8::try_from(self.level).unwrap_or(u8::MAX);
        checkpoint.title = self.title;
        checkpoint.summary = self.summary;
        checkpoint.unsummarized = self.unsummarized != 0;
        checkpoint.covers_from_seq = unsigned(self.covers_from_seq);
        checkpoint.covers_to_seq = unsigned(self.covers_to_seq);
        checkpoint.covers_from_at = covers_from_at;
        checkpoint.covers_to_at = covers_to_at;
        checkpoint.message_count = unsigned(self.message_count);
        checkpoint.token_estimate = unsigned(self.token_estimate);
        checkpoint.model = self.model;
        checkpoint.rolled_up_into = self.rolled_up_into.map(unsigned);
        checkpoint.rolls_up = rolls_up;
        checkpoint.created_at = created_at;
        Ok(checkpoint)
    }
}

/// A message row with its log sequence number.
#[derive(sqlx::FromRow)]
pub(crate) struct LoggedRow {
    pub(crate) seq: i64,
    #[sqlx(flatten)]
    pub(crate) row: MessageRow,
}

/// Database integers are signed; sequence numbers and counts here are never negative.
pub(crate) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Estimated tokens of a summary: four bytes per token, as the agent counts them.
pub(crate) fn token_estimate(summary: &str) -> i64 {
    limit(summary.len().div_ceil(4))
}

pub(crate) fn logged(rows: Vec<LoggedRow>, operation: &dyn Fn() -> String) -> Result<Vec<LoggedMessage>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let seq = unsigned(row.seq);
            row.row.into_message().map(|message| LoggedMessage::new(seq, message))
        })
        .collect::<Result<_, _>>()
        .map_err(|reason| permanent(operation(), reason))
}

/// A failed statement inside a commit: a unique-constraint violation means another commit won.
pub(crate) fn commit_error(operation: &str, error: sqlx::Error) -> ChronicleError {
    let unique = error.as_database_error().is_some_and(|db| db.is_unique_violation());
    if unique {
        return ChronicleError::Superseded(format!(
            "another checkpoint of the same span was committed first ({operation})"
        ));
    }
    ChronicleError::Store(store_error(operation, error))
}

/// Implements [`Chronicle`](spacebot_core::Chronicle) for `$store`, a log over a
/// `sqlx::Pool<$db>` in its `pool` field with a `begin_write_in` method (see
/// [`log_impl!`](crate::conversation_log::log_impl)).
macro_rules! chronicle_impl {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::Utc;

            use spacebot_core::{
                AgentId, Checkpoint, CheckpointKind, Chronicle, ChronicleError, ConversationId, LogTail, LoggedMessage,
                NewCheckpoint, NewRollup, StoreError,
            };

            use $crate::chronicle::{
                CheckpointRow, LoggedRow, commit_error, limit, logged, signed, token_estimate, unsigned,
            };
            use $crate::conversation_log::to_millis;
            use $crate::error::{permanent, store_error};

            impl $store {
                /// The next checkpoint number of a conversation.
                async fn next_seq(
                    transaction: &mut sqlx::Transaction<'static, $db>,
                    agent: &str,
                    conversation: &str,
                ) -> Result<i64, sqlx::Error> {
                    let max: Option<i64> =
                        sqlx::query_scalar("SELECT MAX(seq) FROM checkpoints WHERE agent = $1 AND conversation = $2")
                            .bind(agent)
                            .bind(conversation)
                            .fetch_one(&mut **transaction)
                            .await?;
                    Ok(max.unwrap_or(0) + 1)
                }

                async fn read_checkpoint(
                    executor: impl sqlx::Executor<'_, Database = $db>,
                    agent: &str,
                    conversation: &str,
                    seq: i64,
                ) -> Result<Option<CheckpointRow>, sqlx::Error> {
                    sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::chronicle::columns!(),
                        " FROM checkpoints WHERE agent = $1 AND conversation = $2 AND seq = $3"
                    ))
                    .bind(agent)
                    .bind(conversation)
                    .bind(seq)
                    .fetch_optional(executor)
                    .await
                }
            }

            impl $store {
                async fn commit_checkpoint(&self, checkpoint: &NewCheckpoint) -> Result<i64, ChronicleError> {
                    let operation = "commit a checkpoint";
                    let fail = |error| commit_error(operation, error);
                    let (agent, conversation) = (checkpoint.agent.as_str(), checkpoint.conversation.as_str());
                    let (from, to) = (signed(checkpoint.covers.0), signed(checkpoint.covers.1));
                    let mut transaction = self.begin_write_in(agent, conversation).await.map_err(fail)?;
                    let previous: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(covers_to_seq), 0) FROM checkpoints
                         WHERE agent = $1 AND conversation = $2 AND level = 0",
                    )
                    .bind(agent)
                    .bind(conversation)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    let next_message: Option<i64> = sqlx::query_scalar(
                        "SELECT MIN(seq) FROM messages WHERE agent = $1 AND conversation = $2 AND seq > $3",
                    )
                    .bind(agent)
                    .bind(conversation)
                    .bind(previous)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    if next_message != Some(from) {
                        return Err(ChronicleError::Superseded(format!(
                            "the span starts at message {from}, but the first message after the last checkpoint (which ends \
                             at {previous}) is {}",
                            next_message.map_or_else(|| "none".to_owned(), |seq| seq.to_string())
                        )));
                    }
                    let ends_on_message: Option<i64> = sqlx::query_scalar(
                        "SELECT seq FROM messages WHERE agent = $1 AND conversation = $2 AND seq = $3",
                    )
                    .bind(agent)
                    .bind(conversation)
                    .bind(to)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    if ends_on_message.is_none() {
                        return Err(ChronicleError::Superseded(format!(
                            "the span ends at {to}, which is no message of {agent}/{conversation}"
                        )));
                    }
                    let seq = Self::next_seq(&mut transaction, agent, conversation).await.map_err(fail)?;
                    sqlx::query(
                        "INSERT INTO checkpoints (agent, conversation, seq, level, kind, title, summary, unsummarized,
                             covers_from_seq, covers_to_seq, covers_from_at, covers_to_at, message_count, token_estimate,
                              model,
                             created_at)
                         VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    )
                    .bind(agent)
                    .bind(conversation)
                    .bind(seq)
                    .bind(checkpoint.kind.as_str())
                    .bind(&checkpoint.title)
                    .bind(&checkpoint.summary)
                    .bind(i64::from(checkpoint.unsummarized))
                    .bind(from)
                    .bind(to)
                    .bind(to_millis(checkpoint.covers_at.0))
                    .bind(to_millis(checkpoint.covers_at.1))
                    .bind(signed(checkpoint.message_count.max(1)))
                    .bind(token_estimate(&checkpoint.summary))
                    .bind(checkpoint.model.as_deref())
                    .bind(to_millis(Utc::now()))
                    .execute(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    transaction.commit().await.map_err(fail)?;
                    Ok(seq)
                }

                async fn commit_rollup_row(&self, rollup: &NewRollup) -> Result<i64, ChronicleError> {
                    let operation = "commit a rollup";
                    let fail = |error| commit_error(operation, error);
                    let (agent, conversation) = (rollup.agent.as_str(), rollup.conversation.as_str());
                    let (first, last) = (signed(rollup.sources.0), signed(rollup.sources.1));
                    let mut transaction = self.begin_write_in(agent, conversation).await.map_err(fail)?;
                    let sources: Vec<CheckpointRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::chronicle::columns!(),
                        " FROM checkpoints
                         WHERE agent = $1 AND conversation = $2 AND level = 0 AND seq BETWEEN $3 AND $4 ORDER BY seq"
                    ))
                    .bind(agent)
                    .bind(conversation)
                    .bind(first)
                    .bind(last)
                    .fetch_all(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    // The sources are the level-0 checkpoints numbered first..=last; rollups committed
                    // meanwhile are numbered among them and are not sources. Level-0 checkpoints are
                    // contiguous by construction, so these cover one unbroken span.
                    let usable = sources.iter().all(|row| row.rolled_up_into.is_none());
                    let (Some(head), Some(tail)) = (sources.first(), sources.last()) else {
                        return Err(ChronicleError::Superseded(format!("checkpoints {first}..{last} do not exist")));
                    };
                    if first >= last || head.seq != first || tail.seq != last || !usable {
                        return Err(ChronicleError::Superseded(format!(
                            "checkpoints {first}..{last} are not all level-0 checkpoints waiting for a rollup"
                        )));
                    }
                    let (covers_from, covers_from_at) = (head.covers_from_seq, head.covers_from_at);
                    let (covers_to, covers_to_at) = (tail.covers_to_seq, tail.covers_to_at);
                    let messages: i64 = sources.iter().map(|row| row.message_count).sum();
                    let seq = Self::next_seq(&mut transaction, agent, conversation).await.map_err(fail)?;
                    sqlx::query(
                        "INSERT INTO checkpoints (agent, conversation, seq, level, kind, title, summary, unsummarized,
                             covers_from_seq, covers_to_seq, covers_from_at, covers_to_at, message_count, token_estimate,
                              model,
                             rolls_up_from, rolls_up_to, created_at)
                         VALUES ($1, $2, $3, 1, 'rollup', $4, $5, 0, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    )
                    .bind(agent)
                    .bind(conversation)
                    .bind(seq)
                    .bind(&rollup.title)
                    .bind(&rollup.summary)
                    .bind(covers_from)
                    .bind(covers_to)
                    .bind(covers_from_at)
                    .bind(covers_to_at)
                    .bind(messages)
                    .bind(token_estimate(&rollup.summary))
                    .bind(rollup.model.as_deref())
                    .bind(first)
                    .bind(last)
                    .bind(to_millis(Utc::now()))
                    .execute(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    sqlx::query(
                        "UPDATE checkpoints SET rolled_up_into = $1
                         WHERE agent = $2 AND conversation = $3 AND level = 0 AND seq BETWEEN $4 AND $5",
                    )
                    .bind(seq)
                    .bind(agent)
                    .bind(conversation)
                    .bind(first)
                    .bind(last)
                    .execute(&mut *transaction)
                    .await
                    .map_err(fail)?;
                    transaction.commit().await.map_err(fail)?;
                    Ok(seq)
                }

                async fn committed(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    seq: i64,
                ) -> Result<Checkpoint, ChronicleError> {
                    let operation = || format!("read back checkpoint {seq} of {agent}/{conversation}");
                    let row = Self::read_checkpoint(&self.pool, agent.as_str(), conversation.as_str(), seq)
                        .await
                        .map_err(|error| store_error(operation(), error))?
                        .ok_or_else(|| permanent(operation(), "it is gone"))?;
                    Ok(row.into_checkpoint().map_err(|reason| permanent(operation(), reason))?)
                }
            }

            #[async_trait]
            impl Chronicle for $store {
                async fn checkpoints(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                ) -> Result<Vec<Checkpoint>, StoreError> {
                    let operation = || format!("read the checkpoints of {agent}/{conversation}");
                    let rows: Vec<CheckpointRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::chronicle::columns!(),
                        " FROM checkpoints WHERE agent = $1 AND conversation = $2 ORDER BY seq"
                    ))
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error(operation(), error))?;
                    rows.into_iter()
                        .map(|row| row.into_checkpoint().map_err(|reason| permanent(operation(), reason)))
                        .collect()
                }

                async fn checkpoint(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    seq: u64,
                ) -> Result<Option<Checkpoint>, StoreError> {
                    let operation = || format!("read checkpoint {seq} of {agent}/{conversation}");
                    let row = Self::read_checkpoint(&self.pool, agent.as_str(), conversation.as_str(), signed(seq))
                        .await
                        .map_err(|error| store_error(operation(), error))?;
                    row.map(|row| row.into_checkpoint().map_err(|reason| permanent(operation(), reason))).transpose()
                }

                /// Fails with [`ChronicleError::Superseded`] when the span does not start at the first message
                /// after the newest level-0 checkpoint, or does not end on a message of the conversation.
                async fn commit(&self, checkpoint: NewCheckpoint) -> Result<Checkpoint, ChronicleError> {
                    if checkpoint.kind == CheckpointKind::Rollup || checkpoint.covers.0 > checkpoint.covers.1 {
                        return Err(ChronicleError::Store(permanent(
                            "commit a checkpoint",
                            "a level-0 checkpoint needs a span that ends after it starts and a kind other than rollup",
                        )));
                    }
                    let seq = self.commit_checkpoint(&checkpoint).await?;
                    self.committed(&checkpoint.agent, &checkpoint.conversation, seq).await
                }

                async fn commit_rollup(&self, rollup: NewRollup) -> Result<Checkpoint, ChronicleError> {
                    let seq = self.commit_rollup_row(&rollup).await?;
                    self.committed(&rollup.agent, &rollup.conversation, seq).await
                }

                async fn messages_after(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    after: u64,
                    count: usize,
                ) -> Result<Vec<LoggedMessage>, StoreError> {
                    let operation = || format!("read the messages of {agent}/{conversation} after {after}");
                    let rows: Vec<LoggedRow> = sqlx::query_as(
                        "SELECT seq, id, agent, conversation, role, sender, text, created_at, inbound_json FROM messages
                         WHERE agent = $1 AND conversation = $2 AND seq > $3
                         ORDER BY seq ASC
                         LIMIT $4",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(signed(after))
                    .bind(limit(count))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error(operation(), error))?;
                    logged(rows, &operation)
                }

                async fn latest_after(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    after: u64,
                    count: usize,
                ) -> Result<Vec<LoggedMessage>, StoreError> {
                    let operation = || format!("read the latest messages of {agent}/{conversation} after {after}");
                    let rows: Vec<LoggedRow> = sqlx::query_as(
                        "SELECT seq, id, agent, conversation, role, sender, text, created_at, inbound_json FROM (
                             SELECT seq, id, agent, conversation, role, sender, text, created_at, inbound_json FROM messages
                             WHERE agent = $1 AND conversation = $2 AND seq > $3
                             ORDER BY seq DESC
                             LIMIT $4
                         ) AS latest
                         ORDER BY seq ASC",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(signed(after))
                    .bind(limit(count))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error(operation(), error))?;
                    logged(rows, &operation)
                }

                async fn tail(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                    after: u64,
                ) -> Result<LogTail, StoreError> {
                    let (count, newest): (i64, Option<i64>) = sqlx::query_as(
                        "SELECT COUNT(*), MAX(seq) FROM messages WHERE agent = $1 AND conversation = $2 AND seq > $3",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(signed(after))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|error| {
                        store_error(format!("count the messages of {agent}/{conversation} after {after}"), error)
                    })?;
                    Ok(LogTail::new(unsigned(count), newest.map(unsigned)))
                }

                async fn covered_to(&self, agent: &AgentId, conversation: &ConversationId) -> Result<u64, StoreError> {
                    let covered: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(covers_to_seq), 0) FROM checkpoints
                         WHERE agent = $1 AND conversation = $2 AND level = 0",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|error| {
                        store_error(format!("read what the checkpoints of {agent}/{conversation} cover"), error)
                    })?;
                    Ok(unsigned(covered))
                }
            }
        };
    };
}
#[cfg(feature = "postgres")]
pub(crate) use chronicle_impl;

chronicle_impl!(SqliteLog, sqlx::Sqlite);

//! [`ProcessRuns`](spacebot_core::ProcessRuns) for both logs ([`SqliteLog`], and `PgLog` with the
//! `postgres` feature): the `process_runs` table (SQLite migrations `0005_process_runs.sql` and
//! `0007_process_run_outcomes.sql`) beside the conversation log. Written once, as
//! `conversation_log.rs` explains.

use spacebot_core::{
    AgentId, ConversationId, InboundMessage, Owed, ProcessId, ProcessKind, ProcessRun, RecordedRun, TerminalState,
};

use crate::conversation_log::from_millis;
use crate::sqlite::SqliteLog;

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    pub(crate) id: String,
    pub(crate) agent: String,
    pub(crate) conversation: String,
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) origin_json: Option<String>,
    pub(crate) started_at: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct RecordedRow {
    #[sqlx(flatten)]
    pub(crate) run: RunRow,
    pub(crate) state: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) owed: Option<String>,
}

fn state_from(text: &str) -> Option<TerminalState> {
    [TerminalState::Done, TerminalState::Failed, TerminalState::Cancelled, TerminalState::TimedOut]
        .into_iter()
        .find(|state| state.as_str() == text)
}

pub(crate) fn owed_columns(owed: Option<&Owed>) -> (Option<&str>, Option<&'static str>) {
    match owed {
        Some(Owed::Result(text)) => (Some(text.as_str()), Some("result")),
        Some(Owed::Notice(text)) => (Some(text.as_str()), Some("notice")),
        Some(other) => (Some(other.text()), Some("notice")),
        None => (None, None),
    }
}

impl RunRow {
    pub(crate) fn into_run(self) -> Option<ProcessRun> {
        let Some(kind) = kind_from(&self.kind) else {
            tracing::warn!(process = self.id, kind = self.kind, "skipping a process run of an unknown kind");
            return None;
        };
        // A message that no longer parses only costs the notice, not the settling.
        let origin = self.origin_json.and_then(|json| match serde_json::from_str::<InboundMessage>(&json) {
            Ok(origin) => Some(origin),
            Err(error) => {
                tracing::warn!(process = self.id, %error, "unreadable origin of a process run");
                None
            }
        });
        let mut run = ProcessRun::new(
            ProcessId::new(self.id),
            AgentId::new(self.agent),
            ConversationId::new(self.conversation),
            kind,
            self.description,
            origin,
        );
        run.started_at = from_millis(self.started_at).unwrap_or(run.started_at);
        Some(run)
    }
}

impl RecordedRow {
    pub(crate) fn into_recorded(self) -> Option<RecordedRun> {
        let state = self.state.as_deref().and_then(state_from);
        let owed = match (self.owed.as_deref(), &self.result) {
            (Some("result"), Some(text)) => Some(Owed::Result(text.clone())),
            (Some("notice"), Some(text)) => Some(Owed::Notice(text.clone())),
            _ => None,
        };
        let mut recorded = RecordedRun::new(self.run.into_run()?);
        recorded.state = state;
        recorded.result = self.result;
        recorded.owed = owed;
        Some(recorded)
    }
}

pub(crate) fn kind_from(text: &str) -> Option<ProcessKind> {
    [ProcessKind::Channel, ProcessKind::Branch, ProcessKind::Worker, ProcessKind::Compactor]
        .into_iter()
        .find(|kind| kind.as_str() == text)
}

/// Implements [`ProcessRuns`](spacebot_core::ProcessRuns) for `$store`, a log over a
/// `sqlx::Pool<$db>` in its `pool` field.
macro_rules! process_runs_impl {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::Utc;

            use spacebot_core::{
                AgentId, ConversationId, MessageId, Owed, ProcessId, ProcessRun, ProcessRuns, RecordedRun, StoreError,
                TerminalState,
            };

            use $crate::conversation_log::to_millis;
            use $crate::error::{permanent, store_error};
            use $crate::process_runs::{RecordedRow, RunRow, owed_columns};

            #[async_trait]
            impl ProcessRuns for $store {
                async fn started(&self, run: &ProcessRun) -> Result<(), StoreError> {
                    let origin = run
                        .origin
                        .as_ref()
                        .map(serde_json::to_string)
                        .transpose()
                        .map_err(|error| permanent(format!("record process run {}", run.process), error))?;
                    sqlx::query(
                        "INSERT INTO process_runs
                             (id, agent, conversation, kind, description, origin_json, started_at, origin_id)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(run.process.as_str())
                    .bind(run.agent.as_str())
                    .bind(run.conversation.as_str())
                    .bind(run.kind.as_str())
                    .bind(run.description.as_str())
                    .bind(origin)
                    .bind(to_millis(run.started_at))
                    .bind(run.origin.as_ref().map(|origin| origin.id.as_str()))
                    .execute(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("record process run {}", run.process), error))?;
                    Ok(())
                }

                async fn ended(
                    &self,
                    process: &ProcessId,
                    state: TerminalState,
                    owed: Option<&Owed>,
                ) -> Result<bool, StoreError> {
                    let (text, owed) = owed_columns(owed);
                    let result = sqlx::query(
                        "UPDATE process_runs SET state = $1, ended_at = $2, result = $4, owed = $5
                          WHERE id = $3 AND state IS NULL",
                    )
                    .bind(state.as_str())
                    .bind(to_millis(Utc::now()))
                    .bind(process.as_str())
                    .bind(text)
                    .bind(owed)
                    .execute(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("record the end of process run {process}"), error))?;
                    Ok(result.rows_affected() == 1)
                }

                async fn unfinished(&self) -> Result<Vec<ProcessRun>, StoreError> {
                    let rows: Vec<RunRow> = sqlx::query_as(
                        "SELECT id, agent, conversation, kind, description, origin_json, started_at
                         FROM process_runs WHERE state IS NULL ORDER BY started_at ASC, id ASC",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error("read unfinished process runs", error))?;
                    Ok(rows.into_iter().filter_map(RunRow::into_run).collect())
                }

                async fn owed(&self) -> Result<Vec<RecordedRun>, StoreError> {
                    let rows: Vec<RecordedRow> = sqlx::query_as(
                        "SELECT id, agent, conversation, kind, description, origin_json, started_at, state, result,
                                 owed
                         FROM process_runs WHERE owed IS NOT NULL ORDER BY started_at ASC, id ASC",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error("read what ended process runs owe", error))?;
                    Ok(rows.into_iter().filter_map(RecordedRow::into_recorded).collect())
                }

                async fn owed_in(
                    &self,
                    agent: &AgentId,
                    conversation: &ConversationId,
                ) -> Result<Vec<RecordedRun>, StoreError> {
                    let rows: Vec<RecordedRow> = sqlx::query_as(
                        "SELECT id, agent, conversation, kind, description, origin_json, started_at, state, result,
                                 owed
                         FROM process_runs WHERE owed IS NOT NULL AND agent = $1 AND conversation = $2
                         ORDER BY started_at ASC, id ASC",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("read what ended process runs owe {conversation}"), error))?;
                    Ok(rows.into_iter().filter_map(RecordedRow::into_recorded).collect())
                }

                async fn told(&self, processes: &[ProcessId]) -> Result<(), StoreError> {
                    let mut tx =
                        self.pool.begin().await.map_err(|error| store_error("mark process runs told", error))?;
                    for process in processes {
                        sqlx::query("UPDATE process_runs SET owed = NULL WHERE id = $1 AND owed IS NOT NULL")
                            .bind(process.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(|error| store_error(format!("mark process run {process} told"), error))?;
                    }
                    tx.commit().await.map_err(|error| store_error("mark process runs told", error))
                }

                async fn started_for(
                    &self,
                    agent: &AgentId,
                    messages: &[MessageId],
                ) -> Result<Vec<RecordedRun>, StoreError> {
                    let mut found = Vec::new();
                    for message in messages {
                        let rows: Vec<RecordedRow> = sqlx::query_as(
                            "SELECT id, agent, conversation, kind, description, origin_json, started_at, state, result,
                                 owed
                             FROM process_runs WHERE agent = $1 AND origin_id = $2",
                        )
                        .bind(agent.as_str())
                        .bind(message.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|error| {
                            store_error(format!("read the process runs message {message} started"), error)
                        })?;
                        found.extend(rows.into_iter().filter_map(RecordedRow::into_recorded));
                    }
                    found.sort_by(|a, b| (a.run.started_at, &a.run.process).cmp(&(b.run.started_at, &b.run.process)));
                    Ok(found)
                }
            }
        };
    };
}
#[cfg(feature = "postgres")]
pub(crate) use process_runs_impl;

process_runs_impl!(SqliteLog, sqlx::Sqlite);

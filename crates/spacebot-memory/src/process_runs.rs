//! [`ProcessRuns`] on SQLite: the `process_runs` table (migration `0005_process_runs.sql`) beside
//! the conversation log.

use async_trait::async_trait;
use chrono::Utc;

use spacebot_core::{
    AgentId, ConversationId, InboundMessage, ProcessId, ProcessKind, ProcessRun, ProcessRuns, StoreError, TerminalState,
};

use crate::conversation_log::{from_millis, to_millis};
use crate::error::store_error;
use crate::sqlite::SqliteLog;

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    agent: String,
    conversation: String,
    kind: String,
    description: String,
    origin_json: Option<String>,
    started_at: i64,
}

pub(crate) fn kind_from(text: &str) -> Option<ProcessKind> {
    [ProcessKind::Channel, ProcessKind::Branch, ProcessKind::Worker, ProcessKind::Compactor]
        .into_iter()
        .find(|kind| kind.as_str() == text)
}

#[async_trait]
impl ProcessRuns for SqliteLog {
    async fn started(&self, run: &ProcessRun) -> Result<(), StoreError> {
        let origin = run
            .origin
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| crate::error::permanent(format!("record process run {}", run.process), error))?;
        sqlx::query(
            "INSERT INTO process_runs (id, agent, conversation, kind, description, origin_json, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(run.process.as_str())
        .bind(run.agent.as_str())
        .bind(run.conversation.as_str())
        .bind(run.kind.as_str())
        .bind(run.description.as_str())
        .bind(origin)
        .bind(to_millis(run.started_at))
        .execute(&self.pool)
        .await
        .map_err(|error| store_error(format!("record process run {}", run.process), error))?;
        Ok(())
    }

    async fn ended(&self, process: &ProcessId, state: TerminalState) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE process_runs SET state = ?1, ended_at = ?2 WHERE id = ?3 AND state IS NULL")
            .bind(state.as_str())
            .bind(to_millis(Utc::now()))
            .bind(process.as_str())
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
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let Some(kind) = kind_from(&row.kind) else {
                    tracing::warn!(process = row.id, kind = row.kind, "skipping a process run of an unknown kind");
                    return None;
                };
                // A message that no longer parses only costs the notice, not the settling.
                let origin = row.origin_json.and_then(|json| match serde_json::from_str::<InboundMessage>(&json) {
                    Ok(origin) => Some(origin),
                    Err(error) => {
                        tracing::warn!(process = row.id, %error, "unreadable origin of a process run");
                        None
                    }
                });
                let mut run = ProcessRun::new(
                    ProcessId::new(row.id),
                    AgentId::new(row.agent),
                    ConversationId::new(row.conversation),
                    kind,
                    row.description,
                    origin,
                );
                run.started_at = from_millis(row.started_at).unwrap_or(run.started_at);
                Some(run)
            })
            .collect())
    }
}

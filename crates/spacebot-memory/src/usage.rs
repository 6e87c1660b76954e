//! [`UsageLedger`] on SQLite: the `model_usage` table (migration `0008_model_usage.sql`) beside
//! the conversation log, one row per day, agent, model and process kind, added to in place.

use async_trait::async_trait;
use chrono::NaiveDate;

use spacebot_core::{AgentId, StoreError, UsageLedger, UsageRow};

use crate::error::store_error;
use crate::process_runs::kind_from;
use crate::sqlite::SqliteLog;

/// How a day is written in the table: sortable text.
const DAY_FORMAT: &str = "%Y-%m-%d";

#[derive(sqlx::FromRow)]
struct Row {
    day: String,
    agent: String,
    model: String,
    process: String,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
}

/// SQLite integers are signed: counts past `i64::MAX` saturate rather than wrap.
fn to_sql(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn from_sql(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

#[async_trait]
impl UsageLedger for SqliteLog {
    async fn add_usage(&self, usage: &UsageRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO model_usage (day, agent, model, process, requests, input_tokens, output_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (day, agent, model, process) DO UPDATE SET
                 requests = requests + excluded.requests,
                 input_tokens = input_tokens + excluded.input_tokens,
                 output_tokens = output_tokens + excluded.output_tokens",
        )
        .bind(usage.day.format(DAY_FORMAT).to_string())
        .bind(usage.agent.as_str())
        .bind(usage.model.as_str())
        .bind(usage.process.as_str())
        .bind(to_sql(usage.requests))
        .bind(to_sql(usage.input_tokens))
        .bind(to_sql(usage.output_tokens))
        .execute(&self.pool)
        .await
        .map_err(|error| store_error(format!("record the usage of {} by {}", usage.model, usage.agent), error))?;
        Ok(())
    }

    async fn usage(&self, since: Option<NaiveDate>) -> Result<Vec<UsageRow>, StoreError> {
        let since = since.map(|day| day.format(DAY_FORMAT).to_string()).unwrap_or_default();
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT day, agent, model, process, requests, input_tokens, output_tokens
             FROM model_usage WHERE day >= ?1 ORDER BY day, agent, model, process",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| store_error("read the model usage", error))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (Ok(day), Some(process)) =
                    (NaiveDate::parse_from_str(&row.day, DAY_FORMAT), kind_from(&row.process))
                else {
                    tracing::warn!(day = row.day, process = row.process, "skipping an unreadable usage row");
                    return None;
                };
                Some(UsageRow::new(day, AgentId::new(row.agent), row.model, process).with_counts(
                    from_sql(row.requests),
                    from_sql(row.input_tokens),
                    from_sql(row.output_tokens),
                ))
            })
            .collect())
    }
}

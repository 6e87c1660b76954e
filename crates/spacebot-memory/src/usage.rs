//! [`UsageLedger`](spacebot_core::UsageLedger) for both logs ([`SqliteLog`], and `PgLog` with the
//! `postgres` feature): the `model_usage` table (SQLite migration `0008_model_usage.sql`) beside
//! the conversation log (written once, as `conversation_log.rs` explains), one row per day,
//! agent, model and process kind, added to in place.

use crate::sqlite::SqliteLog;

/// How a day is written in the table: sortable text.
pub(crate) const DAY_FORMAT: &str = "%Y-%m-%d";

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    pub(crate) day: String,
    pub(crate) agent: String,
    pub(crate) model: String,
    pub(crate) process: String,
    pub(crate) requests: i64,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
}

/// Database integers are signed: counts past `i64::MAX` saturate rather than wrap.
pub(crate) fn to_sql(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

pub(crate) fn from_sql(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

/// Implements [`UsageLedger`](spacebot_core::UsageLedger) for `$store`, a log over a
/// `sqlx::Pool<$db>` in its `pool` field.
macro_rules! usage_impl {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::NaiveDate;

            use spacebot_core::{AgentId, StoreError, UsageLedger, UsageRow};

            use $crate::error::store_error;
            use $crate::process_runs::kind_from;
            use $crate::usage::{DAY_FORMAT, Row, from_sql, to_sql};

            #[async_trait]
            impl UsageLedger for $store {
                async fn add_usage(&self, usage: &UsageRow) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO model_usage (day, agent, model, process, requests, input_tokens, output_tokens)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (day, agent, model, process) DO UPDATE SET
                             requests = model_usage.requests + excluded.requests,
                             input_tokens = model_usage.input_tokens + excluded.input_tokens,
                             output_tokens = model_usage.output_tokens + excluded.output_tokens",
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
                    .map_err(|error| {
                        store_error(format!("record the usage of {} by {}", usage.model, usage.agent), error)
                    })?;
                    Ok(())
                }

                async fn usage(&self, since: Option<NaiveDate>) -> Result<Vec<UsageRow>, StoreError> {
                    let since = since.map(|day| day.format(DAY_FORMAT).to_string()).unwrap_or_default();
                    let rows: Vec<Row> = sqlx::query_as(
                        "SELECT day, agent, model, process, requests, input_tokens, output_tokens
                         FROM model_usage WHERE day >= $1 ORDER BY day, agent, model, process",
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
                                tracing::warn!(
                                    day = row.day,
                                    process = row.process,
                                    "skipping an unreadable usage row"
                                );
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
        };
    };
}
#[cfg(feature = "postgres")]
pub(crate) use usage_impl;

usage_impl!(SqliteLog, sqlx::Sqlite);

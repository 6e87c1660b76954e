//! [`CronStore`](spacebot_core::CronStore) for both logs ([`SqliteLog`], and `PgLog` with the
//! `postgres` feature): the `cron_jobs` and `cron_runs` tables (SQLite migration `0010_cron.sql`)
//! beside the conversation log. Written once, as `conversation_log.rs` explains.
//!
//! A job's definition is stored as its JSON (`spec`), its scheduler state in columns: the claim
//! of a run is one conditional update of `next_run`, so two claims of the same run can't both win.

use spacebot_core::{AgentId, ConversationId, CronJob, CronOutcome, CronRun};

use crate::conversation_log::from_millis;
use crate::sqlite::SqliteLog;

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    agent: String,
    id: String,
    spec: String,
    enabled: i64,
    next_run: Option<i64>,
    consecutive_failures: i64,
}

impl JobRow {
    pub(crate) fn into_job(self) -> Option<CronJob> {
        let mut job: CronJob = match serde_json::from_str(&self.spec) {
            Ok(job) => job,
            Err(error) => {
                tracing::warn!(agent = self.agent, job = self.id, %error, "skipping an unreadable cron job");
                return None;
            }
        };
        job.agent = AgentId::new(self.agent);
        job.id = self.id;
        job.enabled = self.enabled != 0;
        job.next_run = self.next_run.and_then(from_millis);
        job.consecutive_failures = u32::try_from(self.consecutive_failures).unwrap_or(u32::MAX);
        Some(job)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: String,
    agent: String,
    job: String,
    conversation: String,
    started_at: i64,
    finished_at: Option<i64>,
    outcome: Option<String>,
    delivery: Option<String>,
}

impl RunRow {
    pub(crate) fn into_run(self) -> CronRun {
        let started_at = from_millis(self.started_at).unwrap_or_default();
        let mut run = CronRun::new(self.id, self.agent, self.job, ConversationId::new(self.conversation), started_at);
        run.finished_at = self.finished_at.and_then(from_millis);
        run.outcome = self.outcome.as_deref().and_then(CronOutcome::parse);
        run.delivery = self.delivery;
        run
    }
}

/// Implements [`CronStore`](spacebot_core::CronStore) for `$store`, a log over a
/// `sqlx::Pool<$db>` in its `pool` field with a `begin_write` method (see
/// [`log_impl!`](crate::conversation_log::log_impl)).
macro_rules! cron_impl {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};

            use spacebot_core::{AgentId, BreakerChange, CronJob, CronOutcome, CronRun, CronStore, StoreError};

            use $crate::conversation_log::to_millis;
            use $crate::cron::{JobRow, RunRow};
            use $crate::error::{permanent, store_error};

            #[async_trait]
            impl CronStore for $store {
                async fn upsert_job(&self, job: &CronJob) -> Result<(), StoreError> {
                    let operation = || format!("store cron job {}", job.id);
                    let spec = serde_json::to_string(job).map_err(|error| permanent(operation(), error))?;
                    let mut tx = self.begin_write().await.map_err(|error| store_error(operation(), error))?;
                    let existing: Option<JobRow> =
                        sqlx::query_as(
                            "SELECT agent, id, spec, enabled, next_run, consecutive_failures FROM cron_jobs
                              WHERE agent = $1 AND id = $2",
                        )
                            .bind(job.agent.as_str())
                            .bind(job.id.as_str())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(|error| store_error(operation(), error))?;
                    let unchanged = existing.and_then(JobRow::into_job).is_some_and(|old| old.same_definition(job));
                    if unchanged {
                        sqlx::query("UPDATE cron_jobs SET spec = $3, updated_at = $4 WHERE agent = $1 AND id = $2")
                            .bind(job.agent.as_str())
                            .bind(job.id.as_str())
                            .bind(&spec)
                            .bind(to_millis(Utc::now()))
                            .execute(&mut *tx)
                            .await
                            .map_err(|error| store_error(operation(), error))?;
                    } else {
                        sqlx::query(
                            "INSERT INTO cron_jobs
                                 (agent, id, spec, enabled, next_run, consecutive_failures, updated_at)
                             VALUES ($1, $2, $3, $4, $5, 0, $6)
                             ON CONFLICT (agent, id) DO UPDATE SET spec = excluded.spec, enabled = excluded.enabled,
                                 next_run = excluded.next_run, consecutive_failures = 0,
                                 updated_at = excluded.updated_at",
                        )
                        .bind(job.agent.as_str())
                        .bind(job.id.as_str())
                        .bind(&spec)
                        .bind(i64::from(job.enabled))
                        .bind(job.next_run.map(to_millis))
                        .bind(to_millis(Utc::now()))
                        .execute(&mut *tx)
                        .await
                        .map_err(|error| store_error(operation(), error))?;
                    }
                    tx.commit().await.map_err(|error| store_error(operation(), error))
                }

                async fn jobs(&self, agent: Option<&AgentId>) -> Result<Vec<CronJob>, StoreError> {
                    let rows: Vec<JobRow> = sqlx::query_as(
                        "SELECT agent, id, spec, enabled, next_run, consecutive_failures FROM cron_jobs
                         WHERE $1 IS NULL OR agent = $1 ORDER BY agent, id",
                    )
                    .bind(agent.map(AgentId::as_str))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error("read the cron jobs", error))?;
                    Ok(rows.into_iter().filter_map(JobRow::into_job).collect())
                }

                async fn delete_job(&self, agent: &AgentId, id: &str) -> Result<bool, StoreError> {
                    let result = sqlx::query("DELETE FROM cron_jobs WHERE agent = $1 AND id = $2")
                        .bind(agent.as_str())
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(|error| store_error(format!("delete cron job {id}"), error))?;
                    Ok(result.rows_affected() == 1)
                }

                async fn claim(
                    &self,
                    agent: &AgentId,
                    id: &str,
                    expected: Option<DateTime<Utc>>,
                    next: Option<DateTime<Utc>>,
                    spend: bool,
                ) -> Result<bool, StoreError> {
                    let result = sqlx::query(
                        "UPDATE cron_jobs SET next_run = $4, enabled = CASE WHEN $5 THEN 0 ELSE enabled END
                         WHERE agent = $1 AND id = $2 AND next_run IS NOT DISTINCT FROM $3 AND enabled = 1",
                    )
                    .bind(agent.as_str())
                    .bind(id)
                    .bind(expected.map(to_millis))
                    .bind(next.map(to_millis))
                    .bind(spend)
                    .execute(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("claim a run of cron job {id}"), error))?;
                    Ok(result.rows_affected() == 1)
                }

                async fn count_outcome(
                    &self,
                    agent: &AgentId,
                    id: &str,
                    failed: bool,
                    limit: u32,
                ) -> Result<BreakerChange, StoreError> {
                    let operation = || format!("count an outcome of cron job {id}");
                    if !failed {
                        sqlx::query("UPDATE cron_jobs SET consecutive_failures = 0 WHERE agent = $1 AND id = $2")
                            .bind(agent.as_str())
                            .bind(id)
                            .execute(&self.pool)
                            .await
                            .map_err(|error| store_error(operation(), error))?;
                        return Ok(BreakerChange::None);
                    }
                    let mut tx = self.begin_write().await.map_err(|error| store_error(operation(), error))?;
                    sqlx::query(
                        "UPDATE cron_jobs SET consecutive_failures = consecutive_failures + 1
                          WHERE agent = $1 AND id = $2",
                    )
                    .bind(agent.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|error| store_error(operation(), error))?;
                    let tripped = sqlx::query(
                        "UPDATE cron_jobs SET enabled = 0
                          WHERE agent = $1 AND id = $2 AND enabled = 1 AND consecutive_failures >= $3",
                    )
                    .bind(agent.as_str())
                    .bind(id)
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await
                    .map_err(|error| store_error(operation(), error))?
                    .rows_affected()
                        == 1;
                    tx.commit().await.map_err(|error| store_error(operation(), error))?;
                    Ok(if tripped { BreakerChange::Tripped } else { BreakerChange::None })
                }

                async fn run_started(&self, run: &CronRun) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO cron_runs (id, agent, job, conversation, started_at) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&run.id)
                    .bind(run.agent.as_str())
                    .bind(&run.job)
                    .bind(run.conversation.as_str())
                    .bind(to_millis(run.started_at))
                    .execute(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("record cron run {}", run.id), error))?;
                    Ok(())
                }

                async fn run_finished(
                    &self,
                    run: &str,
                    outcome: CronOutcome,
                    delivery: Option<&str>,
                    at: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "UPDATE cron_runs SET finished_at = $2, outcome = $3, delivery = $4
                          WHERE id = $1 AND finished_at IS NULL",
                    )
                    .bind(run)
                    .bind(to_millis(at))
                    .bind(outcome.as_str())
                    .bind(delivery)
                    .execute(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("record the end of cron run {run}"), error))?;
                    Ok(())
                }

                async fn runs(&self, agent: &AgentId, job: &str, limit: usize) -> Result<Vec<CronRun>, StoreError> {
                    let rows: Vec<RunRow> = sqlx::query_as(
                        "SELECT id, agent, job, conversation, started_at, finished_at, outcome, delivery FROM cron_runs
                         WHERE agent = $1 AND job = $2 ORDER BY started_at DESC, id DESC LIMIT $3",
                    )
                    .bind(agent.as_str())
                    .bind(job)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|error| store_error(format!("read the runs of cron job {job}"), error))?;
                    Ok(rows.into_iter().map(RunRow::into_run).collect())
                }

                async fn interrupt_unfinished(&self, at: DateTime<Utc>) -> Result<Vec<CronRun>, StoreError> {
                    let operation = "settle the cron runs the last stop interrupted";
                    let mut tx = self.begin_write().await.map_err(|error| store_error(operation, error))?;
                    let rows: Vec<RunRow> = sqlx::query_as(
                        "SELECT id, agent, job, conversation, started_at, finished_at, outcome, delivery FROM cron_runs
                         WHERE finished_at IS NULL ORDER BY started_at, id",
                    )
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|error| store_error(operation, error))?;
                    sqlx::query("UPDATE cron_runs SET finished_at = $1, outcome = $2 WHERE finished_at IS NULL")
                        .bind(to_millis(at))
                        .bind(CronOutcome::Interrupted.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(|error| store_error(operation, error))?;
                    tx.commit().await.map_err(|error| store_error(operation, error))?;
                    Ok(rows
                        .into_iter()
                        .map(|row| {
                            let mut run = row.into_run();
                            run.finished_at = Some(at);
                            run.outcome = Some(CronOutcome::Interrupted);
                            run
                        })
                        .collect())
                }
            }
        };
    };
}
#[cfg(feature = "postgres")]
pub(crate) use cron_impl;

cron_impl!(SqliteLog, sqlx::Sqlite);

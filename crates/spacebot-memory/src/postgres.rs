//! [`PgLog`]: the conversation log on a PostgreSQL server, behind the same traits as
//! [`SqliteLog`](crate::SqliteLog) (cargo feature `postgres`).
//!
//! The tables are the SQLite log's, one for one (`migrations/postgres/`, applied at connect; the
//! memory graph is not among them), with the same columns: integers are `BIGINT`, timestamps
//! Unix milliseconds, flags 0 or 1, so both stores read rows into the same types and run the same
//! statements (`conversation_log.rs` explains how they are written once). Two things are this
//! store's own:
//!
//! - **A conversation's writers take turns.** SQLite has one writer at a time; PostgreSQL runs
//!   transactions side by side, so a message numbered 7 could commit after one numbered 8 of the
//!   same conversation, and a reader would see 8 before 7 exists, which the chronicle's "first
//!   message after the last checkpoint" can't allow. [`PgLog::begin_write_in`] therefore starts
//!   every write transaction about a conversation (recording its messages, its checkpoints) by
//!   taking a transaction-scoped advisory lock of that conversation: within a conversation,
//!   numbers follow commit order and a check inside the transaction holds until it commits, as
//!   under SQLite's `BEGIN IMMEDIATE`, while other conversations are written beside it (every
//!   reader of the log orders one conversation at a time). The cron tables' read-then-write
//!   transactions take one database-wide lock ([`PgLog::begin_write`]).
//! - **A list of ids is an array** (`id = ANY($3)`), where SQLite unpacks JSON.
//!
//! Errors name the database by its URL with the password replaced by `***`.

use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, PgExecutor, Postgres, Transaction};

use spacebot_core::{AgentId, MessageId};

use crate::chronicle::chronicle_impl;
use crate::conversation_log::{log_impl, to_millis};
use crate::cron::cron_impl;
use crate::error::Error;
use crate::process_runs::process_runs_impl;
use crate::usage::usage_impl;

/// How long an operation waits for a free pooled connection (or a new one) before failing
/// (reported as a transient [`StoreError`](spacebot_core::StoreError)).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to the server. Writes take turns anyway (see the module docs); a few more than
/// SQLite's four let reads run beside them.
const MAX_CONNECTIONS: u32 = 8;

/// The advisory lock the write transactions of the database-wide tables take first: "Spacebot"
/// in ASCII, a number no other program sharing the database is likely to pick.
const WRITER_LOCK: i64 = 0x5370_6163_6562_6f74;

/// Takes the advisory lock of one conversation for the transaction: a 64-bit hash of the agent
/// and the conversation (two conversations that share a hash only wait for each other).
pub(crate) const CONVERSATION_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 1936744813))";

/// What stands in for a password in a URL that is shown.
const REDACTED: &str = "***";

/// The conversation log on a PostgreSQL database, with its chronicle, process runs, cron jobs and
/// usage ledger (see the module docs).
///
/// Cloning is cheap and clones share the connection pool.
#[derive(Debug, Clone)]
pub struct PgLog {
    pub(crate) pool: PgPool,
}

impl PgLog {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// applies any pending migrations. The database must exist; the user needs the right to
    /// create tables in it on the first connect.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] (at once when the server refuses or can't be reached) or
    /// [`Error::MigrateServer`], each naming the URL without its password.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let fail = |source| Error::Connect { url: redacted(url), source };
        let options: PgConnectOptions = url.parse().map_err(fail)?;
        // Every statement here is short; a parallel plan only adds the start of worker processes
        // (3 to 5 ms a query, measured on the memory graph's walk over a table with no edges).
        let options = options.options([("max_parallel_workers_per_gather", "0")]);
        // One connection first, to fail at once with the server's own answer: the pool would
        // retry a refused connection until its timeout and report only that it timed out.
        PgConnection::connect_with(&options).await.map_err(fail)?.close().await.map_err(fail)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(fail)?;
        match sqlx::migrate!("../../migrations/postgres").run(&pool).await {
            Ok(()) => Ok(Self { pool }),
            Err(source) => {
                pool.close().await;
                Err(Error::MigrateServer { url: redacted(url), source })
            }
        }
    }

    /// Closes every connection, waiting for operations in flight to finish. Operations on this
    /// store or its clones fail afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction that waits for every other writer of the tables kept for the
    /// whole database (cron jobs and runs) to finish first.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *transaction).await?;
        Ok(transaction)
    }

    /// Starts a write transaction about one conversation (its messages, its checkpoints) that
    /// waits for every other writer of that conversation to finish first, while writers of other
    /// conversations go on beside it (the module docs say why).
    pub(crate) async fn begin_write_in(
        &self,
        agent: &str,
        conversation: &str,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(CONVERSATION_LOCK).bind(agent).bind(conversation).execute(&mut *transaction).await?;
        Ok(transaction)
    }

    /// Marks the agent's unhandled inbound messages among `ids` handled now. Ids that are unknown,
    /// already handled, or not inbound are left alone.
    pub(crate) async fn set_handled<'e>(
        executor: impl PgExecutor<'e>,
        agent: &AgentId,
        ids: &[MessageId],
    ) -> Result<(), sqlx::Error> {
        let ids: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        sqlx::query(
            "UPDATE messages SET handled_at = $1
             WHERE agent = $2
               AND inbound_json IS NOT NULL
               AND handled_at IS NULL
               AND id = ANY($3)",
        )
        .bind(to_millis(Utc::now()))
        .bind(agent.as_str())
        .bind(ids)
        .execute(executor)
        .await?;
        Ok(())
    }
}

log_impl!(PgLog, sqlx::Postgres);
chronicle_impl!(PgLog, sqlx::Postgres);
process_runs_impl!(PgLog, sqlx::Postgres);
cron_impl!(PgLog, sqlx::Postgres);
usage_impl!(PgLog, sqlx::Postgres);

/// `url` with its password (in the user part, or a `password` query parameter) replaced by
/// `***`, for errors and logs. Anything that might be part of the password goes: a password with
/// an unescaped `@` takes the host with it, never the other way round.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL sqlx would take; it may still hold a password somewhere.
        return REDACTED.to_owned();
    };
    let (userinfo, location) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut shown = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => shown.push_str(&format!("{user}:{REDACTED}@")),
            None => shown.push_str(&format!("{userinfo}@")),
        }
    }
    let (base, query) = match location.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (location, None),
    };
    shown.push_str(base);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        let cases = [
            ("postgres://spacebot:s3cret@db:5432/spacebot", "postgres://spacebot:***@db:5432/spacebot"),
            ("postgres://spacebot@db/spacebot", "postgres://spacebot@db/spacebot"),
            ("postgres://db/spacebot?sslmode=require", "postgres://db/spacebot?sslmode=require"),
            (
                "postgresql://u:p%40ss@h/d?password=two&sslmode=disable",
                "postgresql://u:***@h/d?password=***&sslmode=disable",
            ),
            // Unescaped specials in the password: it goes, with whatever can't be told from it.
            ("postgres://u:pa/ss?w@rd@h/d", "postgres://u:***@h/d"),
            ("host=db password=secret", "***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}

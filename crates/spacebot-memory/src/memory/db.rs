//! The database under a [`MemoryGraph`](crate::MemoryGraph): an SQLite file or, with the cargo
//! feature `postgres`, a PostgreSQL database, and what differs between the two.
//!
//! The graph's statements are written once, in the SQL both engines understand (`$1`
//! parameters, `ON CONFLICT`, `RETURNING`, `CASE` where SQLite has a two-argument `MAX`), and run
//! on either through [`on_db!`] and [`on_tx!`], which expand a statement once per backend so
//! each is checked against its driver's types. Lists travel as JSON text unpacked by
//! `json_each(..)`: SQLite's own table-valued function, and on PostgreSQL a function of the same
//! name and columns (`key`, `value`) over text that migration `postgres/0003_memory.sql` adds.
//! What can't be written once is here: how a writer excludes the others, how a reader takes a
//! snapshot, and where the change log's last id is read.

use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use crate::memory::Stamp;

/// The advisory lock every memory write transaction on PostgreSQL takes first, so writes take
/// turns as under SQLite's `BEGIN IMMEDIATE` and the change log's ids follow commit order (the
/// in-memory copies rely on it): "SBmemory" in ASCII.
#[cfg(feature = "postgres")]
const MEMORY_WRITER_LOCK: i64 = 0x5342_6d65_6d6f_7279;

/// A memory graph's connections.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// A transaction on a [`Db`].
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$pool` bound to the pool of the backend `$db` holds (`&SqlitePool` or
/// `&PgPool`); the body is compiled once per backend. `|$pool, $db_type|` also names the
/// backend's `sqlx::Database` type, for a [`QueryBuilder`] the body builds.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::memory::db::Db::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            $crate::memory::db::Db::Postgres($pool) => $body,
        }
    };
    ($db:expr, |$pool:ident, $database:ident| $body:expr) => {
        match $db {
            $crate::memory::db::Db::Sqlite($pool) => {
                type $database = sqlx::Sqlite;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::memory::db::Db::Postgres($pool) => {
                type $database = sqlx::Postgres;
                $body
            }
        }
    };
}

/// As [`on_db!`], in a transaction: `$conn` is the transaction's connection (`&mut
/// SqliteConnection` or `&mut PgConnection`); use `&mut *$conn` to run more than one statement.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::memory::db::Tx::Sqlite(transaction) => {
                let $conn = &mut **transaction;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::memory::db::Tx::Postgres(transaction) => {
                let $conn = &mut **transaction;
                $body
            }
        }
    };
    ($tx:expr, |$conn:ident, $database:ident| $body:expr) => {
        match $tx {
            $crate::memory::db::Tx::Sqlite(transaction) => {
                type $database = sqlx::Sqlite;
                let $conn = &mut **transaction;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::memory::db::Tx::Postgres(transaction) => {
                type $database = sqlx::Postgres;
                let $conn = &mut **transaction;
                $body
            }
        }
    };
}

pub(crate) use {on_db, on_tx};

/// What differs in the text of a statement built with a [`QueryBuilder`], and the binds the
/// shared filters push (so they need no bounds on the driver's types).
pub(crate) trait Dialect: sqlx::Database + Sized {
    /// `m.agent` written so the planner doesn't pick the agent index, for queries that already
    /// name their rows (SQLite's unary `+`; PostgreSQL plans those by the named rows anyway).
    const AGENT_NOT_INDEXED: &'static str;

    /// The live memories of agent `$1` holding the idempotency keys `$2` (a JSON list of
    /// `[kind, scope key, content hash]`), as `(kind, scope key, hash, id)`. The key list is the
    /// outer loop, so each key is one lookup in the idempotency index `memories_by_hash`.
    const STORED_HASHES: &'static str;

    fn push_text(query: &mut QueryBuilder<Self>, value: String);

    fn push_int(query: &mut QueryBuilder<Self>, value: i64);
}

/// [`Dialect::STORED_HASHES`] with the key list unpacked by `$keys` into rows whose `value` is
/// one `[kind, scope key, hash]` JSON list.
macro_rules! stored_hashes {
    ($keys:literal) => {
        concat!(
            "SELECT m.kind, m.scope_key, m.content_hash, m.id FROM ",
            $keys,
            " CROSS JOIN memories m
             WHERE m.agent = $1 AND m.kind = wanted.value ->> 0 AND m.scope_key = wanted.value ->> 1
               AND m.content_hash = wanted.value ->> 2 AND m.forgotten_at IS NULL"
        )
    };
}

/// The binds of [`Dialect`], the same for every driver.
macro_rules! dialect_binds {
    () => {
        fn push_text(query: &mut QueryBuilder<Self>, value: String) {
            query.push_bind(value);
        }

        fn push_int(query: &mut QueryBuilder<Self>, value: i64) {
            query.push_bind(value);
        }
    };
}

impl Dialect for Sqlite {
    const AGENT_NOT_INDEXED: &'static str = "+m.agent";

    // CROSS JOIN: SQLite keeps the left table as the outer loop.
    const STORED_HASHES: &'static str = stored_hashes!("json_each($2) AS wanted");

    dialect_binds!();
}

#[cfg(feature = "postgres")]
impl Dialect for sqlx::Postgres {
    const AGENT_NOT_INDEXED: &'static str = "m.agent";

    // Here `value` must be JSON for `->>`, not the text the migration's `json_each` returns.
    const STORED_HASHES: &'static str = stored_hashes!("jsonb_array_elements(CAST($2 AS JSONB)) AS wanted (value)");

    dialect_binds!();
}

/// The stamp on SQLite: the generation, and the change log's last id as AUTOINCREMENT keeps it
/// (it survives the trim that deletes the rows).
const SQLITE_STAMP: &str = "SELECT CAST(value AS INTEGER),
        COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'memory_changes'), 0)
 FROM memory_meta WHERE key = 'generation'";

const SQLITE_BUMP: &str = "UPDATE memory_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'
 RETURNING CAST(value AS INTEGER),
           COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'memory_changes'), 0)";

/// The stamp on PostgreSQL: the highest id in the change log, as this transaction sees it (a
/// sequence's last value would count ids of writes not committed yet). The trim always keeps
/// the newest entries, so the highest id stays.
#[cfg(feature = "postgres")]
const PG_STAMP: &str = "SELECT CAST(value AS BIGINT), COALESCE((SELECT MAX(id) FROM memory_changes), 0)
 FROM memory_meta WHERE key = 'generation'";

#[cfg(feature = "postgres")]
const PG_BUMP: &str = "UPDATE memory_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'generation'
 RETURNING CAST(value AS BIGINT), COALESCE((SELECT MAX(id) FROM memory_changes), 0)";

impl Db {
    /// A write transaction that waits for every other memory writer to finish first.
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => Ok(Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MEMORY_WRITER_LOCK)
                    .execute(&mut *transaction)
                    .await?;
                Ok(Tx::Postgres(transaction))
            }
        }
    }

    /// A read transaction in which every statement sees the same snapshot.
    pub(crate) async fn begin_snapshot(&self) -> Result<Tx, sqlx::Error> {
        match self {
            // A deferred transaction reads one snapshot from its first read on (WAL mode).
            Self::Sqlite(pool) => Ok(Tx::Sqlite(pool.begin().await?)),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => Ok(Tx::Postgres(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ").await?)),
        }
    }

    /// Where the database stands now.
    pub(crate) async fn read_stamp(&self) -> Result<Stamp, sqlx::Error> {
        let (generation, change) = match self {
            Self::Sqlite(pool) => sqlx::query_as(SQLITE_STAMP).fetch_one(pool).await?,
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sqlx::query_as(PG_STAMP).fetch_one(pool).await?,
        };
        Ok(Stamp { generation, change })
    }

    /// Closes every connection.
    pub(crate) async fn close(&self) {
        on_db!(self, |pool| pool.close().await)
    }
}

impl Tx {
    /// Where the database stands as this transaction sees it.
    pub(crate) async fn read_stamp(&mut self) -> Result<Stamp, sqlx::Error> {
        let (generation, change) = match self {
            Self::Sqlite(transaction) => sqlx::query_as(SQLITE_STAMP).fetch_one(&mut **transaction).await?,
            #[cfg(feature = "postgres")]
            Self::Postgres(transaction) => sqlx::query_as(PG_STAMP).fetch_one(&mut **transaction).await?,
        };
        Ok(Stamp { generation, change })
    }

    /// Bumps the write generation at the end of a write transaction and returns the stamp the
    /// commit will leave.
    pub(crate) async fn bump_generation(&mut self) -> Result<Stamp, sqlx::Error> {
        let (generation, change) = match self {
            Self::Sqlite(transaction) => sqlx::query_as(SQLITE_BUMP).fetch_one(&mut **transaction).await?,
            #[cfg(feature = "postgres")]
            Self::Postgres(transaction) => sqlx::query_as(PG_BUMP).fetch_one(&mut **transaction).await?,
        };
        Ok(Stamp { generation, change })
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(transaction) => transaction.commit().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(transaction) => transaction.commit().await,
        }
    }
}

//! [`SqliteLog`]: one SQLite database file behind a small connection pool, opened in WAL mode
//! and migrated to the current schema.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteExecutor, SqlitePool, Transaction};

use spacebot_core::{AgentId, MessageId};

use crate::conversation_log::to_millis;
use crate::error::Error;

/// How long a statement waits for another connection's write lock before failing with
/// `SQLITE_BUSY` (reported as a transient [`StoreError`](spacebot_core::StoreError)).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an operation waits for a free pooled connection before failing (also transient).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to a database file. WAL lets readers run beside the one writer; writers take turns
/// through the busy timeout. A few connections are plenty for a chat workload.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection beyond the first may stay idle before it is closed, giving back its
/// page cache (up to [`CACHE_SIZE_KIB`]) and its thread: a burst of concurrent turns or recalls
/// opens up to [`MAX_CONNECTIONS`], and a quiet daemon keeps one per file.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pages each connection caches, as SQLite's `cache_size` (negative: KiB). The default (2 MB) is
/// far below the working set of a memory file at 100,000 memories (indexes and the full-text
/// index are about 30 MB); pages are allocated only as they are read.
const CACHE_SIZE_KIB: i64 = 32 * 1024;

/// The name reported for an in-memory database.
const IN_MEMORY: &str = ":memory:";

/// The conversation log on one SQLite file, with its chronicle of checkpoints and its record of
/// process runs (see the crate docs).
///
/// Cloning is cheap and clones share the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteLog {
    pub(crate) pool: SqlitePool,
}

impl SqliteLog {
    /// Opens the database at `path`, creating it and its parent directories if needed, and
    /// applies any pending migrations.
    ///
    /// The file runs in WAL mode with `synchronous = NORMAL`: a committed write survives a crash
    /// of the process, though not necessarily a power loss (see the crate docs). Foreign keys are
    /// enforced, and a statement waits up to five seconds for another writer before reporting
    /// the database busy. Each connection caches up to 32 MB of pages, and temporary tables and
    /// sorts stay in memory. Up to four connections are opened as work needs them; those beyond
    /// the first are closed after a minute idle (the pool checks once a minute, so within two),
    /// with their page caches and threads.
    ///
    /// No memory map (`mmap_size`): in WAL mode a connection drops its whole mapping whenever
    /// another connection has written since its last read, and every recall writes (access
    /// counts), so reads kept unmapping and faulting the file back in; a 1 GiB map measured no
    /// faster in the memory benchmark.
    ///
    /// # Errors
    ///
    /// [`Error::CreateDir`], [`Error::Open`] or [`Error::Migrate`], each naming `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_idle_timeout(path, IDLE_TIMEOUT).await
    }

    async fn open_with_idle_timeout(path: &Path, idle_timeout: Duration) -> Result<Self, Error> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| Error::CreateDir { path: path.to_owned(), source })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", (-CACHE_SIZE_KIB).to_string())
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // One connection stays open; the others close after a quiet spell. A local file has
            // no server that would drop a connection, so none is retired for its age.
            .min_connections(1)
            .idle_timeout(idle_timeout)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection to a local file can't be dropped by a server: skip the round trip to
            // the connection's thread that checking it would cost on every acquisition.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        Self::migrate(pool, path).await
    }

    /// Opens a fresh, empty in-memory database with the current schema, for tests.
    ///
    /// The pool holds exactly one connection that never expires, because each in-memory database
    /// belongs to the connection that created it (a private cache, not a shared one, so two
    /// stores never see each other's data). Operations therefore run one at a time, and the
    /// data is gone when the store is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] or [`Error::Migrate`], naming `:memory:`.
    pub async fn open_in_memory() -> Result<Self, Error> {
        let path = Path::new(IN_MEMORY);
        let options = SqliteConnectOptions::new()
            .filename(path)
            .in_memory(true)
            .shared_cache(false)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        Self::migrate(pool, path).await
    }

    async fn migrate(pool: SqlitePool, path: &Path) -> Result<Self, Error> {
        match sqlx::migrate!("../../migrations").run(&pool).await {
            Ok(()) => Ok(Self { pool }),
            Err(source) => {
                pool.close().await;
                Err(Error::Migrate { path: PathBuf::from(path), source })
            }
        }
    }

    /// Starts a write transaction that takes the write lock at once, so it waits on the busy
    /// timeout up front instead of failing when a read would later upgrade to a write.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// A write transaction about one conversation: SQLite has one writer at a time anyway, so
    /// [`begin_write`](Self::begin_write).
    pub(crate) async fn begin_write_in(
        &self,
        _agent: &str,
        _conversation: &str,
    ) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_write().await
    }

    /// Marks the agent's unhandled inbound messages among `ids` handled now. Ids that are unknown,
    /// already handled, or not inbound are left alone.
    pub(crate) async fn set_handled<'e>(
        executor: impl SqliteExecutor<'e>,
        agent: &AgentId,
        ids: &[MessageId],
    ) -> Result<(), sqlx::Error> {
        // One statement for any number of ids: the ids travel as a JSON array and `json_each`
        // unpacks it, so there is no SQL to build and no bound-parameter limit to hit.
        let ids = serde_json::Value::from(ids.iter().map(MessageId::as_str).collect::<Vec<_>>()).to_string();
        sqlx::query(
            "UPDATE messages SET handled_at = ?1
             WHERE agent = ?2
               AND inbound_json IS NOT NULL
               AND handled_at IS NULL
               AND id IN (SELECT value FROM json_each(?3))",
        )
        .bind(to_millis(Utc::now()))
        .bind(agent.as_str())
        .bind(ids)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// Closes every connection, waiting for operations in flight to finish. The last connection to
    /// close checkpoints the write-ahead log into the database file. Operations on this store or
    /// its clones fail afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A burst of concurrent reads opens more connections; once they have been idle past the
    /// timeout, one is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_beyond_the_first_are_closed() {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let log = SqliteLog::open_with_idle_timeout(&dir.path().join("log.db"), Duration::from_millis(100))
            .await
            .expect("open");
        let mut connections = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            connections.push(log.pool.acquire().await.expect("a connection"));
        }
        drop(connections);
        assert_eq!(log.pool.size(), MAX_CONNECTIONS, "the burst opened every connection");

        // The pool's reaper runs on its own clock (every idle timeout), so this waits in real time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.pool.size() > 1 {
            assert!(Instant::now() < deadline, "{} connections still open", log.pool.size());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(log.pool.size(), 1, "one connection stays open");
        sqlx::query("SELECT 1").execute(&log.pool).await.expect("still usable");
    }
}

//! Helpers shared by the tests: messages, temporary database files, raw SQL access, and the
//! storage suite's backends.
//!
//! # The storage suite
//!
//! The log's tests (conversation, chronicle, process runs, cron, usage, recovery, concurrency)
//! are written once, as `async fn name<D: TestDb>(db: D)`, and [`on_both_backends!`] turns each
//! into two tests, `sqlite::name` (a database file in a temp dir) and `postgres::name` (a fresh
//! database on the process's [`PgServer::shared`]). [`TestDb::open`] opens the test's database,
//! and opening it again is a restart. Tests of what only one backend has (files, WAL, URLs) stay
//! apart (`open.rs`, `postgres.rs`).
//!
//! The memory graph's tests (writes, recall, render, maintenance) run the same way, on
//! [`TestDb::memory`]; those that reach into an SQLite file (crashes injected by triggers, the
//! full-text index) stay in `memory_durability.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

use spacebot_core::{
    AgentId, ConversationLog, CronStore, Embedder, InboundMessage, MessageId, ProcessRuns, Role, Sender, StoredMessage,
    UsageLedger,
};
use spacebot_memory::{MemoryGraph, PgLog, SqliteLog};
use spacebot_testing::PgServer;

/// A store of the storage suite: every log trait, and a way to close it.
pub(crate) trait LogStore:
    ConversationLog + ProcessRuns + CronStore + UsageLedger + Clone + Send + Sync + 'static
{
    /// Closes the store's connections (as a daemon does when it stops).
    async fn close(&self);
}

impl LogStore for SqliteLog {
    async fn close(&self) {
        SqliteLog::close(self).await;
    }
}

impl LogStore for PgLog {
    async fn close(&self) {
        PgLog::close(self).await;
    }
}

/// One test's database on one backend.
pub(crate) trait TestDb: Sized {
    /// The store the backend has.
    type Log: LogStore;
    /// SQL that makes every later update of `messages.handled_at` fail with "injected failure".
    const REFUSE_HANDLED: &'static str;
    /// SQL that undoes [`REFUSE_HANDLED`](Self::REFUSE_HANDLED).
    const ALLOW_HANDLED: &'static str;

    /// A fresh, empty database (not opened yet).
    async fn new() -> Self;

    /// Opens the database as the daemon does; opening it again is a restart.
    async fn open(&self) -> Self::Log;

    /// Runs `sql` (one or more statements) on a connection of its own, beside the store.
    async fn execute(&self, sql: &'static str);

    /// The memory graph on the database, as the daemon opens it; opening it again is another
    /// process (or another daemon of a fleet) on the same database.
    async fn memory(&self, embedder: Arc<dyn Embedder>) -> MemoryGraph;
}

/// A database file in a temporary directory.
pub(crate) struct SqliteDb {
    _dir: TempDir,
    path: PathBuf,
}

impl TestDb for SqliteDb {
    type Log = SqliteLog;
    const REFUSE_HANDLED: &'static str = "CREATE TRIGGER refuse_handled BEFORE UPDATE OF handled_at ON messages
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END";
    const ALLOW_HANDLED: &'static str = "DROP TRIGGER refuse_handled";

    async fn new() -> Self {
        let (_dir, path) = temp_db();
        Self { _dir, path }
    }

    async fn open(&self) -> SqliteLog {
        SqliteLog::open(&self.path).await.expect("the test database opens")
    }

    async fn execute(&self, sql: &'static str) {
        let mut raw = raw_connection(&self.path).await;
        sqlx::raw_sql(sql).execute(&mut raw).await.expect("raw SQL runs");
    }

    async fn memory(&self, embedder: Arc<dyn Embedder>) -> MemoryGraph {
        MemoryGraph::open(&self.path, embedder).await.expect("the test's memory graph opens")
    }
}

/// A database of its own on the test process's PostgreSQL server.
pub(crate) struct PgDb {
    url: String,
}

impl TestDb for PgDb {
    type Log = PgLog;
    const REFUSE_HANDLED: &'static str = "
        CREATE FUNCTION refuse_handled() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
        CREATE TRIGGER refuse_handled BEFORE UPDATE OF handled_at ON messages
            FOR EACH ROW EXECUTE FUNCTION refuse_handled();";
    const ALLOW_HANDLED: &'static str = "DROP TRIGGER refuse_handled ON messages";

    async fn new() -> Self {
        Self { url: PgServer::shared().await.create_database().await }
    }

    async fn open(&self) -> PgLog {
        PgLog::connect(&self.url).await.expect("the test database opens")
    }

    async fn execute(&self, sql: &'static str) {
        let mut raw = PgConnection::connect(&self.url).await.expect("raw connection");
        sqlx::raw_sql(sql).execute(&mut raw).await.expect("raw SQL runs");
    }

    async fn memory(&self, embedder: Arc<dyn Embedder>) -> MemoryGraph {
        MemoryGraph::on_postgres(&self.open().await, embedder).await.expect("the test's memory graph opens")
    }
}

/// Turns each generic test `async fn name<D: TestDb>(db: D)` of the calling module into
/// `sqlite::name` and `postgres::name`, each on a fresh database. A leading `#[tokio::test(..)]`
/// replaces the plain `#[tokio::test]`.
macro_rules! on_both_backends {
    (#[$test:meta] $($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[$test]
                async fn $name() {
                    let db = <$crate::support::SqliteDb as $crate::support::TestDb>::new().await;
                    super::$name(db).await;
                }
            )+
        }

        mod postgres {
            $(
                #[$test]
                async fn $name() {
                    let db = <$crate::support::PgDb as $crate::support::TestDb>::new().await;
                    super::$name(db).await;
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {
        $crate::support::on_both_backends!(#[tokio::test] $($name),+);
    };
}
pub(crate) use on_both_backends;

/// A temporary directory and a database path inside it (the file does not exist yet).
pub(crate) fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("spacebot.db");
    (dir, path)
}

/// A text message from `sender` in `conversation`, assigned to `agent`, with a fixed id.
pub(crate) fn inbound(agent: &str, conversation: &str, id: &str, text: &str) -> InboundMessage {
    InboundMessage::text("webhook", conversation, Sender::new("u-1").with_display_name("Alice"), text)
        .with_id(id)
        .with_agent(agent)
}

/// The agent's reply in the inbound message's conversation.
pub(crate) fn reply_to(message: &InboundMessage, text: &str) -> StoredMessage {
    let agent = message.agent.clone().expect("test messages have an agent");
    StoredMessage::new(agent.clone(), message.conversation.clone(), Role::Assistant, agent.as_str(), text)
}

/// A timestamp with sub-millisecond digits, to see what the log keeps.
pub(crate) fn precise_time(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, second).single().expect("valid time")
        + chrono::Duration::nanoseconds(265_358_979)
}

/// `time` as the log stores it: truncated to the millisecond.
pub(crate) fn millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).expect("in range")
}

/// The ids of messages, for compact assertions.
pub(crate) fn ids<'a>(messages: impl IntoIterator<Item = &'a InboundMessage>) -> Vec<&'a str> {
    messages.into_iter().map(|message| message.id.as_str()).collect()
}

/// The texts of stored messages, for compact assertions.
pub(crate) fn texts(messages: &[StoredMessage]) -> Vec<&str> {
    messages.iter().map(|message| message.text.as_str()).collect()
}

/// Message ids from strings.
pub(crate) fn message_ids(values: &[&str]) -> Vec<MessageId> {
    values.iter().map(|value| MessageId::from(*value)).collect()
}

/// An agent id.
pub(crate) fn agent(value: &str) -> AgentId {
    AgentId::from(value)
}

/// A plain connection to the database file, beside the store, for what the API can't do:
/// inspecting pragmas, damaging rows, injecting failures.
pub(crate) async fn raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await.expect("raw connection")
}

/// The migrations in `migrations/` (`""`) or one of its backend directories (`"postgres"`), as
/// (version, file name), by version.
pub(crate) fn migration_files(directory: &str) -> Vec<(i64, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(directory);
    let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .expect("the migrations directory")
        .map(|entry| entry.expect("a directory entry"))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.split_once('_')?.0.parse().ok()?;
            name.ends_with(".sql").then_some((version, name))
        })
        .collect();
    files.sort();
    files
}

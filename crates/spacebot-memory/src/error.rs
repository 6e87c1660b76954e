//! Errors: this crate's own [`Error`] for opening a database, and the mapping of sqlx failures
//! to [`StoreError`] at the trait boundary, for SQLite and PostgreSQL alike.
//!
//! A PostgreSQL database is named by its URL with the password replaced by `***`
//! (`postgres.rs`): an error is logged and shown, a password never is.

use std::path::{Path, PathBuf};

use spacebot_core::StoreError;

/// SQLite's primary result code for "the database file is locked" (another connection writes).
const SQLITE_BUSY: i32 = 5;
/// SQLite's primary result code for "a table in the database is locked" (shared-cache conflicts).
const SQLITE_LOCKED: i32 = 6;

/// PostgreSQL's SQLSTATEs after which the same statement may well succeed: a serialization
/// failure, a deadlock, a lock not available at once, too many connections, the server shutting
/// down or starting up. Class `08` (connection exceptions) is transient as a whole.
const TRANSIENT_SQLSTATES: [&str; 7] = ["40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"];

/// A failure to open a database. Every variant names the database: a file, or a URL without its
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory that should hold the database could not be created.
    #[error("can't open database {}: can't create its directory: {source}", path.display())]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open or create the file, or set it up (journal mode, pragmas).
    #[error("can't open database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations could not be applied (or the file was migrated by a newer version).
    #[error("can't migrate database {}: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// No connection to the PostgreSQL server could be made (or the URL is not one).
    #[error("can't connect to database {url}: {source}")]
    Connect {
        /// The database URL, its password replaced by `***`.
        url: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL schema migrations could not be applied (or the database was migrated by a
    /// newer version).
    #[error("can't migrate database {url}: {source}")]
    MigrateServer {
        /// The database URL, its password replaced by `***`.
        url: String,
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The database opened, but its memory vectors could not be loaded.
    #[error("can't load memories from {}: {source}", path.display())]
    Load {
        /// The database file.
        path: PathBuf,
        /// What the store said.
        #[source]
        source: StoreError,
    },
}

/// A result whose error is this crate's [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The database file the error is about (`:memory:` for an in-memory database), or `None`
    /// for a database on a server.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::CreateDir { path, .. }
            | Self::Open { path, .. }
            | Self::Migrate { path, .. }
            | Self::Load { path, .. } => Some(path),
            Self::Connect { .. } | Self::MigrateServer { .. } => None,
        }
    }

    /// The URL of the server's database the error is about, its password replaced by `***`, or
    /// `None` for a database file.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Connect { url, .. } | Self::MigrateServer { url, .. } => Some(url),
            Self::CreateDir { .. } | Self::Open { .. } | Self::Migrate { .. } | Self::Load { .. } => None,
        }
    }
}

/// Wraps a sqlx failure of `operation` ("record inbound message 42", say) as a [`StoreError`],
/// transient when a retry may succeed: the database was busy or locked (SQLite), a transaction
/// lost a serialization conflict or a deadlock or the connection failed (PostgreSQL), or no
/// pooled connection became free in time.
pub(crate) fn store_error(operation: impl std::fmt::Display, error: sqlx::Error) -> StoreError {
    let transient = is_transient(&error);
    StoreError::new(format!("can't {operation}: {error}"), transient).with_source(error)
}

/// A failure of `operation` that is not a database error (stored data we cannot read, a message
/// we cannot accept); retrying will not help.
pub(crate) fn permanent(operation: impl std::fmt::Display, reason: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("can't {operation}: {reason}"), false)
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        // A lost connection to a server (a local file reports trouble as a database error).
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(database) => {
            let Some(code) = database.code() else { return false };
            if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Extended result codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
                code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
            } else {
                is_transient_sqlstate(&code)
            }
        }
        _ => false,
    }
}

/// Whether a PostgreSQL SQLSTATE says a retry may succeed.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || TRANSIENT_SQLSTATES.contains(&code)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;

    #[tokio::test]
    async fn a_busy_database_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();

        let mut other = SqliteConnection::connect_with(&options).await.unwrap();
        let error = sqlx::query("INSERT INTO t VALUES (1)").execute(&mut other).await.unwrap_err();
        let error = store_error("insert into t", error);
        assert!(error.is_transient(), "{error}");
    }

    #[test]
    fn pool_timeouts_are_transient_and_decode_errors_are_not() {
        assert!(store_error("read history", sqlx::Error::PoolTimedOut).is_transient());
        assert!(!store_error("read history", sqlx::Error::RowNotFound).is_transient());
        assert!(!store_error("read history", sqlx::Error::PoolClosed).is_transient());
    }

    #[test]
    fn messages_name_the_operation() {
        let error = store_error("read history of main/c1", sqlx::Error::PoolTimedOut);
        assert!(error.to_string().starts_with("can't read history of main/c1: "), "{error}");
    }

    #[test]
    fn open_errors_name_the_file() {
        let error = Error::CreateDir {
            path: PathBuf::from("/x/y.db"),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied"),
        };
        assert_eq!(error.to_string(), "can't open database /x/y.db: can't create its directory: permission denied");
        assert_eq!(error.path(), Some(Path::new("/x/y.db")));
        assert_eq!(error.url(), None);
    }

    #[test]
    fn serialization_failures_deadlocks_and_lost_connections_are_transient_sqlstates() {
        for code in ["40001", "40P01", "08006", "08001", "57P01", "53300"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        // Unique violation, syntax error, undefined table, check violation: retrying won't help.
        for code in ["23505", "42601", "42P01", "23514", "40002"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn io_errors_are_transient() {
        let error = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer"));
        assert!(store_error("read history", error).is_transient());
    }
}

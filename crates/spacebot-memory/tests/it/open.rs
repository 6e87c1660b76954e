//! Opening databases: files, directories, settings, failures.

use spacebot_core::ConversationLog;
use spacebot_memory::{Error, SqliteLog};

use crate::support::{agent, inbound, migration_files, raw_connection, temp_db};

#[tokio::test]
async fn open_creates_the_directories_and_the_file_in_wal_mode() {
    let (dir, _) = temp_db();
    let path = dir.path().join("data").join("agents").join("main.db");
    let store = SqliteLog::open(&path).await.unwrap();
    assert!(path.is_file());
    store.record_inbound(&inbound("main", "c1", "m-1", "hello")).await.unwrap();

    let mut raw = raw_connection(&path).await;
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&mut raw).await.unwrap();
    assert_eq!(mode, "wal");
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    let expected: Vec<i64> = migration_files("").iter().map(|(version, _)| *version).collect();
    assert!(!expected.is_empty());
    assert_eq!(applied, expected, "the files in migrations/, not those of migrations/postgres/");

    // Opening again applies nothing new and keeps the data.
    store.close().await;
    let store = SqliteLog::open(&path).await.unwrap();
    assert_eq!(store.history(&agent("main"), &"c1".into(), 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_open_error_names_the_database_file() {
    let (dir, _) = temp_db();
    // A regular file where a directory should be: fails for every user, root included.
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("spacebot.db");

    let error = SqliteLog::open(&path).await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with(&format!("can't open database {}: ", path.display())), "{text}");
    assert!(matches!(error, Error::CreateDir { .. }), "{error:?}");
    assert_eq!(error.path(), Some(path.as_path()));
}

#[tokio::test]
async fn a_directory_is_not_a_database() {
    let (dir, _) = temp_db();
    let error = SqliteLog::open(dir.path()).await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with(&format!("can't open database {}: ", dir.path().display())), "{text}");
    assert!(matches!(error, Error::Open { .. }), "{error:?}");
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_reported_with_its_path() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, "this is not a database, just some text that is long enough to look like a header").unwrap();
    let error = SqliteLog::open(&path).await.unwrap_err();
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let first = SqliteLog::open_in_memory().await.unwrap();
    let second = SqliteLog::open_in_memory().await.unwrap();
    first.record_inbound(&inbound("main", "c1", "m-1", "hello")).await.unwrap();
    assert_eq!(first.unhandled().await.unwrap().len(), 1);
    assert!(second.unhandled().await.unwrap().is_empty());
    // Clones share the one connection, so they see the same database.
    assert_eq!(first.clone().unhandled().await.unwrap().len(), 1);
}

//! What only the PostgreSQL log has: a server named by URL (never with its password), and its
//! own migrations. Everything the two logs share runs in the storage suite (`support.rs`).

use spacebot_core::ConversationLog;
use spacebot_memory::{Error, PgLog};
use spacebot_testing::PgServer;

use crate::support::{agent, inbound, migration_files};

#[tokio::test]
async fn a_connect_error_names_the_database_without_its_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://spacebot:hunter2@127.0.0.1:{port}/nothing");
    let error = PgLog::connect(&url).await.unwrap_err();
    let shown = format!("{error} / {error:?}");
    assert!(!shown.contains("hunter2"), "the password is never shown: {shown}");
    let redacted = format!("postgres://spacebot:***@127.0.0.1:{port}/nothing");
    assert!(error.to_string().starts_with(&format!("can't connect to database {redacted}: ")), "{error}");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("refused"), "the server's own answer, not a pool timeout: {error}");
    assert_eq!((error.url(), error.path()), (Some(redacted.as_str()), None));
}

#[tokio::test]
async fn connecting_again_applies_nothing_new_and_keeps_the_data() {
    let url = PgServer::shared().await.create_database().await;
    let store = PgLog::connect(&url).await.unwrap();
    store.record_inbound(&inbound("main", "c1", "m-1", "hello")).await.unwrap();
    store.close().await;

    let store = PgLog::connect(&url).await.unwrap();
    assert_eq!(store.history(&agent("main"), &"c1".into(), 10).await.unwrap().len(), 1);
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&raw_pool(&url).await)
        .await
        .unwrap();
    let expected: Vec<i64> = migration_files("postgres").iter().map(|(version, _)| *version).collect();
    assert!(!expected.is_empty());
    assert_eq!(applied, expected, "exactly the files in migrations/postgres/");
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_version_is_refused_naming_it() {
    let url = PgServer::shared().await.create_database().await;
    PgLog::connect(&url).await.unwrap().close().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&raw_pool(&url).await)
    .await
    .unwrap();

    let error = PgLog::connect(&url).await.unwrap_err();
    assert!(matches!(error, Error::MigrateServer { .. }), "{error:?}");
    assert!(error.to_string().starts_with(&format!("can't migrate database {url}: ")), "{error}");
}

async fn raw_pool(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.expect("raw connection")
}

/// Writers of one conversation take turns (its messages are numbered in commit order); writers
/// of another conversation don't wait for them.
#[tokio::test]
async fn a_conversations_writers_take_turns_and_other_conversations_go_on_beside_them() {
    use std::time::Duration;

    let url = PgServer::shared().await.create_database().await;
    let store = PgLog::connect(&url).await.unwrap();
    // Another writer of conversation `busy` holds its lock, mid-transaction.
    let raw = raw_pool(&url).await;
    let mut writer = raw.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 1936744813))")
        .bind("main")
        .bind("busy")
        .execute(&mut *writer)
        .await
        .unwrap();

    let (calm, busy) = (inbound("main", "calm", "m-1", "hi"), inbound("main", "busy", "m-2", "hi"));
    let other = tokio::time::timeout(Duration::from_secs(5), store.record_inbound(&calm));
    assert!(other.await.expect("another conversation is written at once").unwrap());
    let waiting = store.record_inbound(&busy);
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting).await.is_err(),
        "the same conversation waits for its writer"
    );
    writer.commit().await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("then it goes on").unwrap());
}

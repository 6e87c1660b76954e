//! A real process crash: a child process records messages and is killed with `SIGKILL`, then the
//! parent opens the same file and finds every committed write (WAL with `synchronous = NORMAL`).

use std::process::Stdio;
use std::time::Duration;

use spacebot_core::ConversationLog;
use spacebot_memory::SqliteStore;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{agent, ids, inbound, reply_to, temp_db, texts};

const DB_VAR: &str = "SPACEBOT_MEMORY_CRASH_TEST_DB";
const READY: &str = "crash-child: recorded";

/// The child half: runs only when the parent starts it with the database path.
#[tokio::test]
#[ignore = "started as a child process by committed_writes_survive_a_killed_process"]
async fn child_records_then_waits_to_be_killed() {
    let Ok(path) = std::env::var(DB_VAR) else { return };
    let store = SqliteStore::open(path.as_ref()).await.unwrap();
    let answered = inbound("main", "c1", "m-1", "answered before the crash");
    store.record_inbound(&answered).await.unwrap();
    store.record_reply(&reply_to(&answered, "the reply"), std::slice::from_ref(&answered.id)).await.unwrap();
    store.record_inbound(&inbound("main", "c1", "m-2", "accepted, never answered")).await.unwrap();
    store.record_inbound(&inbound("helper", "c2", "m-3", "also never answered")).await.unwrap();
    println!("{READY}");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
async fn committed_writes_survive_a_killed_process() {
    let (_dir, path) = temp_db();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash::child_records_then_waits_to_be_killed", "--exact", "--ignored", "--nocapture"])
        .env(DB_VAR, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(READY) {
                return true;
            }
        }
        false
    })
    .await
    .expect("the child reports within two minutes");
    assert!(ready, "the child exited before recording");
    child.kill().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
    let recovered = store.unhandled().await.unwrap();
    assert_eq!(ids(&recovered), ["m-2", "m-3"]);
    let history = store.history(&agent("main"), &"c1".into(), 10).await.unwrap();
    assert_eq!(texts(&history), ["answered before the crash", "the reply", "accepted, never answered"]);
}

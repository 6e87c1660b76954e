//! The conversation log on PostgreSQL (`[storage] url`) through the real binary: the daemon
//! answers with its log on a throwaway PostgreSQL server (`PgServer`: Debian's PostgreSQL, which
//! `.ci/run` installs), keeps the history across a restart, and after `kill -9` mid-turn answers
//! the message it had accepted, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply, PgServer, RecordedRequest};

use crate::daemon::{Daemon, Home, openai_config};

/// Every user message the model was shown, joined.
fn shown(request: &RecordedRequest) -> String {
    request
        .messages()
        .iter()
        .filter(|message| message["role"] == "user")
        .filter_map(|message| message["content"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_log_on_postgres_the_daemon_answers_remembers_and_recovers_a_crash() {
    let url = PgServer::shared().await.create_database().await;
    let fake = FakeLlmServer::start().await;
    // The first turn that sees "slow" hangs (the daemon is killed during it); every other turn
    // replies with what the model was shown.
    let hung = Arc::new(AtomicBool::new(false));
    fake.respond_with({
        let hung = Arc::clone(&hung);
        move |request| {
            let text = request.last_user_text().unwrap_or_default();
            if text.contains("slow") && !hung.swap(true, Ordering::SeqCst) {
                return FakeReply::hang();
            }
            FakeReply::tool_call("reply", json!({ "content": format!("heard: {}", shown(request)) }))
        }
    });
    let home = Home::new(&format!("{}\n[storage]\nurl = \"{url}\"\n", openai_config(&fake.openai_base_url())));

    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("conversation log on PostgreSQL", Duration::from_secs(10)).await;
    daemon.say("main", "pg", "alice", "first words").await;
    let answers = daemon.wait_for_answers("main", "pg", 1).await;
    assert!(answers[0]["text"].as_str().is_some_and(|text| text.contains("first words")), "{answers:?}");
    assert!(!home.data_dir().join("spacebot.db").exists(), "no SQLite log beside PostgreSQL");
    daemon.stop().await;

    // A restart reads the conversation back from PostgreSQL: the model is shown the first turn.
    let daemon = Daemon::start(&home).await;
    daemon.say("main", "pg", "alice", "second words").await;
    let answers = daemon.wait_for_answers("main", "pg", 2).await;
    let second = answers[1]["text"].as_str().unwrap_or_default();
    assert!(second.contains("first words") && second.contains("second words"), "{answers:?}");

    // Killed mid-turn: the accepted message is answered after the next start, once.
    daemon.say("main", "pg", "alice", "a slow one").await;
    while !hung.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.crash().await;
    let daemon = Daemon::start(&home).await;
    let answers = daemon.wait_for_answers("main", "pg", 3).await;
    assert!(answers[2]["text"].as_str().is_some_and(|text| text.contains("a slow one")), "{answers:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(daemon.wait_for_answers("main", "pg", 3).await.len(), 3, "answered once");
    daemon.stop().await;
}

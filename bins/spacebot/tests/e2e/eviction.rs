//! `[conversations]` reaches the runtime: with `max_live = 1` a second conversation evicts the
//! first (no timer involved), `/api/status` counts only the live one, and the evicted
//! conversation's next message is answered by a new channel that reloaded its history.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, PATIENCE, openai_config};

#[tokio::test]
async fn over_the_cap_the_least_recently_active_conversation_is_evicted_and_comes_back_with_its_history() {
    let model = FakeLlmServer::start().await;
    // The answer says whether the model saw the first message of the conversation.
    model.respond_with(|request| {
        let remembers = request.messages().iter().any(|m| m.to_string().contains("my name is Ada"));
        let text = format!("{}: remembers Ada: {remembers}", request.last_user_text().unwrap_or_default());
        FakeReply::tool_call("reply", json!({ "content": text }))
    });
    let home = Home::new(&format!("{}\n[conversations]\nmax_live = 1\n", openai_config(&model.openai_base_url())));
    let mut daemon = Daemon::start(&home).await;

    daemon.say("main", "a", "alice", "my name is Ada").await;
    daemon.wait_for_answers("main", "a", 1).await;
    daemon.say("main", "b", "bob", "hello").await;
    daemon.wait_for_answers("main", "b", 1).await;
    daemon.wait_for_log("idle conversation evicted", PATIENCE).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status: Value =
            daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap().json().await.unwrap();
        if status["conversations"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "still more than one live conversation: {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    daemon.say("main", "a", "alice", "who am I?").await;
    let answers = daemon.wait_for_answers("main", "a", 2).await;
    let last = answers[1]["text"].as_str().unwrap_or_default();
    assert!(last.ends_with("who am I?: remembers Ada: true"), "the new channel reloaded the history: {last}");
    daemon.stop().await;
}

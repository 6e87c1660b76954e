//! Token usage through the real binary: each model call's tokens are recorded per day, agent,
//! model and process kind, costed at the configured price, kept across a restart, and printed by
//! `spacebot usage`.

use serde_json::{Value, json};
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config, run_cli};

async fn usage(daemon: &Daemon, query: &str) -> (u16, Value) {
    let response = daemon.http.get(format!("{}/api/usage{query}", daemon.base)).send().await.expect("usage");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn usage_is_recorded_per_call_costed_and_kept_across_a_restart() {
    let fake = FakeLlmServer::start().await;
    fake.respond_with(|_| FakeReply::text("counted").with_usage(1_000, 250));
    let config = format!(
        "{}\n[llm.prices.\"main/fake-gpt\"]\ninput_per_million = 2.0\noutput_per_million = 8.0\n",
        openai_config(&fake.openai_base_url())
    );
    let home = Home::new(&config);

    let daemon = Daemon::start(&home).await;
    let (_, empty) = usage(&daemon, "").await;
    assert_eq!(empty["rows"], json!([]), "an idle daemon has spent nothing: {empty}");
    for (conversation, text) in [("u1", "one"), ("u2", "two")] {
        daemon.say("main", conversation, "alice", text).await;
        daemon.wait_for_answers("main", conversation, 1).await;
    }
    // Stopped gracefully: what is queued is written before the databases close.
    daemon.stop().await;

    let daemon = Daemon::start(&home).await;
    let (status, report) = usage(&daemon, "?days=1").await;
    assert_eq!(status, 200, "{report}");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{report}");
    let row = &rows[0];
    assert_eq!(row["agent"], "main");
    assert_eq!(row["model"], "main/fake-gpt");
    assert_eq!(row["process"], "channel");
    assert_eq!(row["requests"], 2);
    assert_eq!(row["input_tokens"], 2_000);
    assert_eq!(row["output_tokens"], 500);
    // 2,000 × $2/M + 500 × $8/M.
    assert_eq!(row["cost_usd"], json!(0.008));
    assert_eq!(report["total"]["cost_usd"], json!(0.008));

    let (status, refused) = usage(&daemon, "?since=yesterday").await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("YYYY-MM-DD")), "{refused}");

    let (base, dir) = (daemon.base.clone(), home.dir.path().to_path_buf());
    let output = tokio::task::spawn_blocking(move || run_cli(&["usage", "--days", "7", "--url", &base], &[], &dir))
        .await
        .expect("cli");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find(|line| line.contains("main/fake-gpt")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("channel") && line.contains("2000") && line.ends_with("$0.0080"), "{stdout}");
    daemon.stop().await;
}

//! Discord and Slack end to end: the real binary, the fake model, and fake platforms the real
//! client libraries talk to. Bindings, named instances, and an instance that can't log in.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeDiscord, FakeLlmServer, FakeMessage, FakeReply, FakeSlack, SlackMessage};

use crate::daemon::{Daemon, Home, openai_config};

const WAIT: Duration = Duration::from_secs(20);

/// The stored messages of any conversation (the shared helper assumes webhook conversations).
async fn stored(daemon: &Daemon, agent: &str, conversation: &str) -> Vec<Value> {
    let url = format!("{}/api/agents/{agent}/conversations/{conversation}/messages", daemon.base);
    let response = reqwest::get(url).await.expect("messages request");
    response.json::<Vec<Value>>().await.unwrap_or_default()
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn discord_instances_answer_through_their_bindings_while_a_broken_one_retries() {
    let model = FakeLlmServer::start().await;
    let main = FakeDiscord::start().await;
    let ops = FakeDiscord::start().await;
    let broken = FakeDiscord::start().await;
    broken.reject_identify(4004);
    for fake in [&main, &ops] {
        fake.add_channel(1, 10);
    }
    let config = format!(
        r#"{}
[[agents]]
id = "main"
[[agents]]
id = "helper"

[messaging.discord]
token = "main-token"
api_url = "{}"

[[messaging.discord.instances]]
name = "ops"
token = "ops-token"
api_url = "{}"

[[messaging.discord.instances]]
name = "broken"
token = "rejected-token"
api_url = "{}"

[[bindings]]
agent = "helper"
platform = "discord"
instance = "ops"
"#,
        openai_config(&model.openai_base_url()),
        main.api_url(),
        ops.api_url(),
        broken.api_url()
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;
    main.wait_connected(WAIT).await;
    ops.wait_connected(WAIT).await;

    // The default instance: default agent, reply split into the channel, typing while it ran.
    model.push(FakeReply::tool_call("reply", json!({"content": "Hello from main."})));
    main.post(FakeMessage::guild(1, 10, 7, "hi main").by("alice"));
    main.wait_for("the reply", WAIT, |r| r.iter().any(|r| r.body["content"] == json!("Hello from main."))).await;
    assert!(main.requests().iter().any(|r| r.path == "/channels/10/typing"), "typing while the turn ran");
    let log = stored(&daemon, "main", "discord:1:10").await;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(log[0]["text"], "hi main");

    // The named instance is bound to another agent, with its own conversation ids.
    model.push(FakeReply::tool_call("reply", json!({"content": "Helper here."})));
    ops.post(FakeMessage::guild(1, 10, 8, "hi ops"));
    ops.wait_for("the helper's reply", WAIT, |r| r.iter().any(|r| r.body["content"] == json!("Helper here."))).await;
    wait_until("the helper's log", async || stored(&daemon, "helper", "discord:ops:1:10").await.len() == 2).await;
    assert!(stored(&daemon, "main", "discord:ops:1:10").await.is_empty(), "the binding picked the agent");

    // The broken instance keeps being retried, and never took the daemon down.
    wait_until("a retry of the broken instance", async || broken.identifies().len() >= 2).await;
    let health = reqwest::get(format!("{}/health", daemon.base)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, logs) = daemon.stop().await;
    assert!(status.success(), "clean exit; logs:\n{}", logs.join("\n"));
    assert!(
        logs.iter().any(|l| l.contains("discord:broken") && l.contains("failed to start")),
        "the failure is logged"
    );
}

#[tokio::test]
async fn slack_messages_are_acknowledged_after_they_are_recorded_and_answered_in_thread() {
    let model = FakeLlmServer::start().await;
    let slack = FakeSlack::start().await;
    let config = format!(
        "{}\n[messaging.slack]\nbot_token = \"xoxb-test\"\napp_token = \"xapp-test\"\napi_url = \"{}\"\n",
        openai_config(&model.openai_base_url()),
        slack.api_url()
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;
    slack.wait_for("a Socket Mode connection", WAIT, |f| f.connections() >= 1).await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Answer in the thread."})));
    let (envelope, root) = slack.post(SlackMessage::new("C1", "U1", "a question").in_thread("1699999999.000001"));
    slack.wait_for("the reply", WAIT, |f| !f.calls_to("chat.postMessage").is_empty()).await;
    let reply = &slack.calls_to("chat.postMessage")[0];
    assert_eq!(reply.body["text"], json!("Answer in the thread."));
    assert_eq!(reply.body["thread_ts"], json!("1699999999.000001"));
    let conversation = "slack:T1:C1:1699999999.000001";
    let log = stored(&daemon, "main", conversation).await;
    assert_eq!(log[0]["text"], "a question", "{log:#?}");
    assert_ne!(root, "");

    // The first envelope is acknowledged once the runtime asked for the next message, which it
    // does only after recording the first.
    model.push(FakeReply::tool_call("reply", json!({"content": "Second."})));
    slack.post(SlackMessage::new("C1", "U1", "another"));
    slack.wait_for("the first ack", WAIT, |f| f.acked(&envelope)).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_adapter_whose_credentials_fail() {
    let model = FakeLlmServer::start().await;
    let good = FakeDiscord::start().await;
    let bad = FakeDiscord::start().await;
    bad.fail_next("/users/@me", 401, None);
    let config = format!(
        "{}\n[messaging.discord]\ntoken = \"good\"\napi_url = \"{}\"\n[[messaging.discord.instances]]\nname = \"revoked\"\ntoken = \"bad\"\napi_url = \"{}\"\n",
        openai_config(&model.openai_base_url()),
        good.api_url(),
        bad.api_url()
    );
    let home = Home::new(&config);
    let (config_path, data_dir) = (home.config_path(), home.data_dir());
    let output = tokio::task::spawn_blocking(move || {
        let args = [
            "doctor",
            "--config",
            config_path.to_str().unwrap_or_default(),
            "--data-dir",
            data_dir.to_str().unwrap_or_default(),
        ];
        crate::daemon::run_cli(&args, &[], &std::env::temp_dir())
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a failing check fails the command:\n{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("adapter discord:")), "{stdout}");
    let failing = stdout.lines().find(|l| l.contains("adapter discord:revoked")).unwrap_or_default();
    assert!(failing.starts_with("FAIL") && failing.contains("401") && failing.contains("Permanent"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("data dir")), "{stdout}");
}

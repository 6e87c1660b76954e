//! The process model through the real binary: a fallback chain answers when its first model gives
//! up, each process type talks to the model configured for it, `/api/status` and `spacebot
//! status` list live processes, a worker cut short by a crash is settled and reported, one a
//! clean stop ended is reported after the restart, and a result a crash kept from its relay is
//! relayed after the restart.

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home};

/// Two providers, `main` (OpenAI-compatible) and `backup` (Anthropic), each a fake server.
fn two_providers(main: &FakeLlmServer, backup: &FakeLlmServer, models: &str) -> String {
    format!(
        r#"
[llm.providers.main]
kind = "openai"
base_url = "{}"
api_key = "sk-test"
timeout_secs = 2
max_retries = 1
retry_backoff_ms = 10

[llm.providers.backup]
kind = "anthropic"
base_url = "{}"
api_key = "sk-ant-test"
timeout_secs = 2
max_retries = 1
retry_backoff_ms = 10

[llm.models]
{models}
"#,
        main.openai_base_url(),
        backup.anthropic_base_url()
    )
}

#[tokio::test]
async fn a_fallback_chain_answers_from_the_next_model_when_the_first_fails() {
    let main = FakeLlmServer::start().await;
    let backup = FakeLlmServer::start().await;
    // The first model fails on every attempt (1 retry: 2 attempts), then gives up.
    main.push(FakeReply::status(500));
    main.push(FakeReply::status(500));
    backup.push(FakeReply::tool_call("reply", json!({"content": "answered by the backup"})));
    let home = Home::new(&two_providers(&main, &backup, r#"channel = ["main/fake-gpt", "backup/fake-claude"]"#));
    let daemon = Daemon::start(&home).await;

    daemon.say("main", "fallback", "frank", "is anyone up?").await;
    let answers = daemon.wait_for_answers("main", "fallback", 1).await;
    assert_eq!(answers[0]["role"], "assistant", "{}", answers[0]);
    assert_eq!(answers[0]["text"], "answered by the backup");
    assert_eq!(main.request_count(), 2, "the first model's attempts");
    assert_eq!(backup.request_count(), 1, "then the next model, once");
    let request = &backup.requests()[0];
    assert!(request.path.ends_with("/v1/messages"), "the backup speaks Anthropic: {}", request.path);
    assert_eq!(request.body["model"], "fake-claude");
    daemon.stop().await;
}

#[tokio::test]
async fn workers_use_the_worker_model_and_the_channel_its_own() {
    let channel = FakeLlmServer::start().await;
    let worker = FakeLlmServer::start().await;
    channel.push(FakeReply::tool_call("spawn_worker", json!({"task": "compute the answer"})));
    channel.push(FakeReply::tool_call("reply", json!({"content": "Working on it."})));
    worker.push(FakeReply::tool_call("set_status", json!({"status": "the answer is 42", "kind": "done"})));
    channel.push(FakeReply::tool_call("reply", json!({"content": "It is 42."})));
    let models = "channel = \"main/fake-gpt\"\nworker = \"backup/fake-claude\"";
    let home = Home::new(&two_providers(&channel, &worker, models));
    let daemon = Daemon::start(&home).await;

    daemon.say("main", "routing", "grace", "what is the answer?").await;
    let answers = daemon.wait_for_answers("main", "routing", 2).await;
    assert_eq!(answers[0]["text"], "Working on it.");
    assert_eq!(answers[1]["text"], "It is 42.");
    assert_eq!(worker.request_count(), 1, "the worker's one call went to the worker model");
    let worker_request = serde_json::to_string(&worker.requests()[0].body).expect("json");
    assert!(worker_request.contains("compute the answer") && worker_request.contains("set_status"), "{worker_request}");
    assert_eq!(channel.request_count(), 3, "the channel's turn (two calls) and the relay turn");
    let channel_requests =
        serde_json::to_string(&channel.requests().iter().map(|r| &r.body).collect::<Vec<_>>()).expect("json");
    assert!(!channel_requests.contains("\"set_status\""), "the channel is never offered worker tools");
    assert!(channel_requests.contains("the answer is 42"), "the relay carries the worker's result");
    daemon.stop().await;
}

#[tokio::test]
async fn status_lists_a_running_worker_with_its_limit() {
    let channel = FakeLlmServer::start().await;
    let worker = FakeLlmServer::start().await;
    channel.push(FakeReply::tool_call("spawn_worker", json!({"task": "index the archive"})));
    channel.push(FakeReply::tool_call("reply", json!({"content": "Indexing."})));
    // The worker's model call never answers (until its 2 s timeout and retries).
    worker.push(FakeReply::hang());
    worker.push(FakeReply::hang());
    let models = "channel = \"main/fake-gpt\"\nworker = \"backup/fake-claude\"";
    let home = Home::new(&two_providers(&channel, &worker, models));
    let daemon = Daemon::start(&home).await;

    daemon.say("main", "status", "heidi", "index it").await;
    daemon.wait_for_answers("main", "status", 1).await;
    let status: serde_json::Value =
        daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap().json().await.unwrap();
    let processes = status["processes"].as_array().expect("a process list");
    assert_eq!(processes.len(), 1, "{status}");
    assert_eq!(processes[0]["kind"], "worker");
    assert_eq!(processes[0]["agent"], "main");
    assert_eq!(processes[0]["conversation"], "webhook:status");
    assert_eq!(processes[0]["description"], "index the archive");
    assert_eq!(processes[0]["limit_seconds"], 1800);

    let (base, dir) = (daemon.base.clone(), home.dir.path().to_path_buf());
    let output = tokio::task::spawn_blocking(move || crate::daemon::run_cli(&["status", "--url", &base], &[], &dir))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("live processes: 1") && stdout.contains("worker") && stdout.contains("index the archive"),
        "{stdout}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_worker_cut_short_by_a_crash_is_recorded_failed_and_its_conversation_told() {
    let channel = FakeLlmServer::start().await;
    let worker = FakeLlmServer::start().await;
    channel.push(FakeReply::tool_call("spawn_worker", json!({"task": "summarise the quarterly report"})));
    channel.push(FakeReply::tool_call("reply", json!({"content": "On it."})));
    worker.push(FakeReply::hang());
    let models = "channel = \"main/fake-gpt\"\nworker = \"backup/fake-claude\"";
    let home = Home::new(&two_providers(&channel, &worker, models));

    let daemon = Daemon::start(&home).await;
    daemon.say("main", "crashwork", "ivan", "summarise it").await;
    daemon.wait_for_answers("main", "crashwork", 1).await;
    let deadline = std::time::Instant::now() + crate::daemon::PATIENCE;
    while worker.request_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the worker never called its model");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    daemon.crash().await;

    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("interrupted by the last stop", crate::daemon::PATIENCE).await;
    let answers = daemon.wait_for_answers("main", "crashwork", 2).await;
    assert_eq!(answers[1]["role"], "system", "{answers:#?}");
    let notice = answers[1]["text"].as_str().unwrap();
    assert!(
        notice.contains("interrupted by a restart") && notice.contains("summarise the quarterly report"),
        "{notice}"
    );
    daemon.stop().await;

    // Settled once: the next start finds nothing unfinished and says nothing more.
    let daemon = Daemon::start(&home).await;
    let messages = daemon.messages("main", "crashwork").await;
    let (_, logs) = daemon.stop().await;
    assert_eq!(messages.iter().filter(|m| m["role"] == "system").count(), 1, "{messages:#?}");
    assert!(!logs.iter().any(|l| l.contains("interrupted by the last stop")), "settled twice:\n{}", logs.join("\n"));
}

#[tokio::test]
async fn a_clean_stop_records_every_run_and_the_restart_reports_the_stopped_worker_once() {
    let channel = FakeLlmServer::start().await;
    let worker = FakeLlmServer::start().await;
    channel.push(FakeReply::tool_call("spawn_worker", json!({"task": "watch the queue"})));
    channel.push(FakeReply::tool_call("reply", json!({"content": "Watching."})));
    worker.push(FakeReply::hang());
    let models = "channel = \"main/fake-gpt\"\nworker = \"backup/fake-claude\"";
    let home = Home::new(&two_providers(&channel, &worker, models));

    let daemon = Daemon::start(&home).await;
    daemon.say("main", "cleanstop", "judy", "watch it").await;
    daemon.wait_for_answers("main", "cleanstop", 1).await;
    // The worker is cancelled by the stop (SIGTERM), and its end recorded before the daemon exits.
    daemon.stop().await;

    // The restart says so, as a notice: no run was left unfinished, nothing was interrupted.
    let daemon = Daemon::start(&home).await;
    let answers = daemon.wait_for_answers("main", "cleanstop", 2).await;
    let (_, logs) = daemon.stop().await;
    assert_eq!(answers[1]["role"], "system", "{answers:#?}");
    let notice = answers[1]["text"].as_str().unwrap();
    assert!(notice.contains("stopped by a shutdown") && notice.contains("watch the queue"), "{notice}");
    assert!(!logs.iter().any(|l| l.contains("interrupted by the last stop")), "{}", logs.join("\n"));

    // Once.
    let daemon = Daemon::start(&home).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let messages = daemon.messages("main", "cleanstop").await;
    daemon.stop().await;
    assert_eq!(messages.iter().filter(|m| m["role"] == "system").count(), 1, "{messages:#?}");
    assert_eq!(channel.request_count(), 2, "a notice, not a model turn");
}

#[tokio::test]
async fn a_result_finished_before_a_crash_is_relayed_after_the_restart_once() {
    let channel = FakeLlmServer::start().await;
    let worker = FakeLlmServer::start().await;
    channel.push(FakeReply::tool_call("spawn_worker", json!({"task": "read the report"})));
    channel.push(FakeReply::tool_call("reply", json!({"content": "Reading it."})));
    // The relay turn's model call hangs: the daemon is killed inside it.
    channel.push(FakeReply::hang());
    worker.push(FakeReply::tool_call("set_status", json!({"status": "the report says 42", "kind": "done"})));
    let models = "channel = \"main/fake-gpt\"\nworker = \"backup/fake-claude\"";
    let home = Home::new(&two_providers(&channel, &worker, models));

    let daemon = Daemon::start(&home).await;
    daemon.say("main", "crashrelay", "ivan", "what does the report say?").await;
    daemon.wait_for_answers("main", "crashrelay", 1).await;
    let deadline = std::time::Instant::now() + crate::daemon::PATIENCE;
    while channel.request_count() < 3 {
        assert!(std::time::Instant::now() < deadline, "the relay turn never started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    daemon.crash().await;

    channel.push(FakeReply::tool_call("reply", json!({"content": "The report says 42."})));
    let daemon = Daemon::start(&home).await;
    let answers = daemon.wait_for_answers("main", "crashrelay", 2).await;
    daemon.stop().await;
    assert_eq!(
        (answers[1]["role"].as_str(), answers[1]["text"].as_str()),
        (Some("assistant"), Some("The report says 42."))
    );
    let relay = serde_json::to_string(&channel.requests().last().expect("a request").body).expect("json");
    assert!(relay.contains("[background results]") && relay.contains("the report says 42"), "{relay}");
    assert_eq!(worker.request_count(), 1, "the worker ran once");

    // Once: the next start relays nothing.
    let requests = channel.request_count();
    let daemon = Daemon::start(&home).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let messages = daemon.messages("main", "crashrelay").await;
    daemon.stop().await;
    assert_eq!(messages.iter().filter(|m| m["role"] != "user").count(), 2, "{messages:#?}");
    assert_eq!(channel.request_count(), requests);
}

//! The command line: config errors, `config check`, `send` and `status` against a daemon.

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config, run_cli};

#[test]
fn config_check_names_the_bad_key_and_fails() {
    let home = Home::new("[llm.providers.main]\nkind = \"openai\"\ntimeout_secs = \"soon\"\n");
    let config = home.config_path();
    let output = run_cli(&["config", "check", "--config", config.to_str().unwrap()], &[], home.dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`llm.providers.main.timeout_secs`"), "{stderr}");
    assert!(stderr.contains(config.to_str().unwrap()), "the file is not named: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "not one sentence: {stderr}");
}

#[test]
fn config_check_reports_a_valid_config() {
    let home = Home::new(&openai_config("http://127.0.0.1:9/v1"));
    let config = home.config_path();
    let output = run_cli(&["config", "check", "--config", config.to_str().unwrap()], &[], home.dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("agent main: model main/fake-gpt"), "{stdout}");
}

#[test]
fn environment_overrides_config_values() {
    let home = Home::new(&openai_config("http://127.0.0.1:9/v1"));
    let config = home.config_path();
    let output = run_cli(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[("SPACEBOT_LLM__MODELS__CHANNEL", "main/other-model")],
        home.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("agent main: model main/other-model"), "{stdout}");
}

#[test]
fn status_without_a_daemon_says_it_is_not_running() {
    let output = run_cli(&["status", "--url", "http://127.0.0.1:9"], &[], std::path::Path::new("/"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not running at http://127.0.0.1:9"), "{stderr}");
}

#[tokio::test]
async fn send_prints_the_reply_and_status_reports_the_daemon() {
    let model = FakeLlmServer::start().await;
    model.push(FakeReply::tool_call("reply", json!({"content": "pong"})));
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let daemon = Daemon::start(&home).await;
    let base = daemon.base.clone();
    let dir = home.dir.path().to_path_buf();

    let output = tokio::task::spawn_blocking(move || {
        run_cli(&["send", "--url", &base, "--conversation", "cli-test", "ping"], &[], &dir)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "pong");

    let base = daemon.base.clone();
    let dir = home.dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || run_cli(&["status", "--url", &base], &[], &dir)).await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("is running") && stdout.contains("agents: main"), "{stdout}");
    daemon.stop().await;
}

#[tokio::test]
async fn chat_answers_each_line_typed() {
    let model = FakeLlmServer::start().await;
    model.push(FakeReply::tool_call("reply", json!({"content": "first answer"})));
    model.push(FakeReply::tool_call("reply", json!({"content": "second answer"})));
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let daemon = Daemon::start(&home).await;
    let base = daemon.base.clone();

    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = crate::daemon::spacebot()
            .args(["chat", "--url", &base, "--conversation", "tty"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn chat");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"hello\n\nand again\n").expect("type");
        drop(stdin);
        child.wait_with_output().expect("chat output")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.find("main: first answer").expect(&stdout);
    let second = stdout.find("main: second answer").expect(&stdout);
    assert!(first < second, "{stdout}");
    // The blank line was not sent: two messages, two answers.
    assert_eq!(daemon.messages("main", "tty").await.len(), 4);
    daemon.stop().await;
}

#[test]
fn config_check_summarises_adapters_bindings_and_memory() {
    let home = Home::new(
        r#"
[[agents]]
id = "main"

[[agents]]
id = "ops"

[messaging.discord]
token = "discord-token"
api_url = "http://127.0.0.1:9"

[[messaging.discord.instances]]
name = "ops"
token = "ops-token"

[[bindings]]
agent = "ops"
platform = "discord"
instance = "ops"
"#,
    );
    let config = home.config_path();
    let output = run_cli(&["config", "check", "--config", config.to_str().unwrap()], &[], home.dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("adapter discord: Discord at http://127.0.0.1:9"), "{stdout}");
    assert!(stdout.contains("adapter discord:ops: Discord"), "{stdout}");
    assert!(stdout.contains("binding 0: discord:ops -> agent ops"), "{stdout}");
    assert!(stdout.contains("memory: hashing embedder, 384 dimensions"), "{stdout}");
}

#[test]
fn config_check_shows_when_conversations_are_evicted_and_names_a_bad_value() {
    let home = Home::new("[conversations]\nidle_timeout_secs = 600\n");
    let config = home.config_path();
    let check = |env: &[(&str, &str)]| {
        run_cli(&["config", "check", "--config", config.to_str().unwrap()], env, home.dir.path())
    };

    let output = check(&[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("conversations: evicted after 600 s idle, at most 10000 live"), "{stdout}");

    let output =
        check(&[("SPACEBOT_CONVERSATIONS__MAX_LIVE", "0"), ("SPACEBOT_CONVERSATIONS__IDLE_TIMEOUT_SECS", "0")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("conversations: never evicted for idleness, no cap on live conversations"), "{stdout}");

    let output = check(&[("SPACEBOT_CONVERSATIONS__MAX_LIVE", "lots")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`conversations.max_live`"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "not one sentence: {stderr}");
}

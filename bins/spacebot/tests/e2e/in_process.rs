//! The daemon assembled in-process from the `spacebot` library, as an embedder would: a config
//! with a temp data dir and the API on port 0, the fake model over HTTP, a conversation over the
//! real API, and a clean shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot::{Config, Daemon, Location};
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Home, PATIENCE, openai_config};

/// The config of the e2e tests, with the API on a free port.
fn config(home: &Home, model: &FakeLlmServer) -> Config {
    let toml = format!("{}\n[api]\nbind = \"127.0.0.1:0\"\n", openai_config(&model.openai_base_url()));
    std::fs::write(home.config_path(), toml).expect("write config");
    Config::load(&Location::new().with_config(home.config_path()).with_data_dir(home.data_dir())).expect("config loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_assembled_in_process_answers_over_http_and_shuts_down() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let model = FakeLlmServer::start().await;
    model.push(FakeReply::tool_call("reply", json!({"content": "pong, in-process"})));
    let home = Home::new("");
    let config = config(&home, &model);
    assert_eq!(config.data_dir().root(), home.data_dir());

    let daemon = Daemon::start(&config).await.expect("the daemon starts");
    let base = format!("http://{}", daemon.addr());
    assert_ne!(daemon.addr().port(), 0, "port 0 became a real port");
    let http = reqwest::Client::new();

    let health: Value = http.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let accepted = http
        .post(format!("{base}/webhook/main"))
        .json(&json!({"conversation": "embedded", "sender": "alice", "text": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);

    let url = format!("{base}/api/agents/main/conversations/webhook:embedded/messages");
    let deadline = Instant::now() + PATIENCE;
    let messages = loop {
        let messages: Vec<Value> = http.get(&url).send().await.unwrap().json().await.unwrap();
        if messages.len() >= 2 {
            break messages;
        }
        assert!(Instant::now() < deadline, "no reply in time: {messages:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!((messages[0]["text"].as_str(), messages[1]["text"].as_str()), (Some("ping"), Some("pong, in-process")));
    assert!(model.last_request().is_some_and(|r| r.last_user_text().is_some_and(|t| t.contains("ping"))));

    daemon.shutdown().await.expect("a clean shutdown");
    assert!(http.get(format!("{base}/health")).send().await.is_err(), "the API is closed after shutdown");
    let data_dir = config.data_dir();
    assert!(data_dir.log_db().is_file(), "the log is in the data dir");
    assert!(data_dir.memory_db("main").is_file(), "the agent's memory is in the data dir");
}

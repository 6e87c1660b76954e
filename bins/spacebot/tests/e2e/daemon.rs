//! Starting, talking to and stopping the real `spacebot` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, RecordedRequest};

/// How long a test waits for the daemon to do something before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The config of an OpenAI-compatible provider at `base_url`, used as the channel model.
pub(crate) fn openai_config(base_url: &str) -> String {
    format!(
        r#"
[llm.providers.main]
kind = "openai"
base_url = "{base_url}"
api_key = "sk-test"
timeout_secs = 2
max_retries = 2
retry_backoff_ms = 10

[llm.models]
channel = "main/fake-gpt"
"#
    )
}

/// A running daemon, killed on drop if the test did not stop it.
pub(crate) struct Daemon {
    child: Option<Child>,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    logs: mpsc::Receiver<String>,
    pub(crate) log_lines: Vec<String>,
    pub(crate) token: Option<String>,
}

/// A scratch directory holding the config and the data dir.
pub(crate) struct Home {
    pub(crate) dir: tempfile::TempDir,
}

impl Home {
    pub(crate) fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        Self { dir }
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// The binary under test, unaffected by the developer's own settings.
pub(crate) fn spacebot() -> Command {
    spacebot_testing::binary::isolated_command(env!("CARGO_BIN_EXE_spacebot"))
}

impl Daemon {
    /// Starts `spacebot start` on an ephemeral port and waits until it is ready.
    pub(crate) async fn start(home: &Home) -> Self {
        Self::start_with(home, &[]).await
    }

    pub(crate) async fn start_with(home: &Home, env: &[(&str, &str)]) -> Self {
        let command = spacebot_testing::binary::start_command(
            env!("CARGO_BIN_EXE_spacebot"),
            &home.config_path(),
            &home.data_dir(),
        );
        Self::spawn(command, env).await
    }

    /// Starts `spacebot start --data-dir DATA_DIR` with no config file at all.
    pub(crate) async fn start_unconfigured(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = spacebot();
        command
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn(command, env).await
    }

    async fn spawn(mut command: Command, env: &[(&str, &str)]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        command
            // Overrides `api.bind` through the environment, as operators do.
            .env("SPACEBOT_API__BIND", "127.0.0.1:0")
            .env("SPACEBOT_LOG", "info,spacebot_core=debug");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn spacebot");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Self {
            child: Some(child),
            base: String::new(),
            http: reqwest::Client::new(),
            logs,
            log_lines: Vec::new(),
            token: None,
        };
        let line = daemon.wait_for_log("spacebot ready", PATIENCE).await;
        let addr =
            spacebot_testing::binary::ready_addr(&line).unwrap_or_else(|| panic!("no addr= in the ready line: {line}"));
        daemon.base = format!("http://{addr}");
        daemon
    }

    /// A figure of the daemon's `/proc/PID/status` in KiB: `VmRSS` (its resident set),
    /// `RssAnon` (the part that is its own memory rather than pages of files).
    pub(crate) fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().map(Child::id).expect("the daemon is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the daemon's status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// Waits until a log line contains `needle`, and returns it.
    pub(crate) async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(line) = self.log_lines.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.logs.try_recv() {
                Ok(line) => {
                    self.log_lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => {
                    if Instant::now() > deadline {
                        panic!("no log line with {needle:?} within {timeout:?}; logs:\n{}", self.log_lines.join("\n"));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("daemon exited before logging {needle:?}; logs:\n{}", self.log_lines.join("\n"))
                }
            }
        }
    }

    /// Every log line so far, for a failure message.
    pub(crate) fn logs_so_far(&mut self) -> String {
        while let Ok(line) = self.logs.try_recv() {
            self.log_lines.push(line);
        }
        self.log_lines.join("\n")
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `POST /webhook/{agent}` with a JSON body; returns status and JSON answer.
    pub(crate) async fn post_json(&self, agent: &str, body: &Value) -> (u16, Value) {
        let request = self.authorize(self.http.post(format!("{}/webhook/{agent}", self.base)).json(body));
        let response = request.send().await.expect("webhook request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Posts a message and asserts it was accepted; returns the message id.
    pub(crate) async fn say(&self, agent: &str, conversation: &str, sender: &str, text: &str) -> String {
        let (status, body) =
            self.post_json(agent, &json!({"conversation": conversation, "sender": sender, "text": text})).await;
        assert_eq!(status, 202, "webhook answer: {body}");
        body["message_id"].as_str().expect("message_id").to_owned()
    }

    /// The stored messages of a webhook conversation.
    pub(crate) async fn messages(&self, agent: &str, conversation: &str) -> Vec<Value> {
        let url = format!("{}/api/agents/{agent}/conversations/webhook:{conversation}/messages", self.base);
        let response = self.authorize(self.http.get(url)).send().await.expect("messages request");
        assert_eq!(response.status().as_u16(), 200);
        response.json::<Vec<Value>>().await.expect("messages JSON")
    }

    /// Waits until the conversation holds at least `count` messages that are not the user's.
    pub(crate) async fn wait_for_answers(&self, agent: &str, conversation: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let messages = self.messages(agent, conversation).await;
            let answers: Vec<Value> = messages.iter().filter(|m| m["role"] != "user").cloned().collect();
            if answers.len() >= count {
                return answers;
            }
            assert!(Instant::now() < deadline, "no {count} answers in {conversation} in time; have {messages:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) async fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
        assert!(status.success());
        let exit = wait_child(&mut child, PATIENCE).await;
        while let Ok(line) = self.logs.recv_timeout(Duration::from_millis(200)) {
            self.log_lines.push(line);
        }
        (exit, std::mem::take(&mut self.log_lines))
    }

    /// Kills the daemon with SIGKILL: a crash.
    pub(crate) async fn crash(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        let _ = wait_child(&mut child, PATIENCE).await;
    }
}

async fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon did not exit within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a `spacebot` client subcommand to completion.
pub(crate) fn run_cli(args: &[&str], env: &[(&str, &str)], dir: &Path) -> std::process::Output {
    let mut command = spacebot();
    command.args(args).current_dir(dir).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run spacebot")
}

/// A fake model whose channel hands every message to a worker, whose worker calls `tool` with
/// `args` once and declares the result as its outcome, and whose relay turn replies with it.
pub(crate) fn worker_calls(model: &FakeLlmServer, tool: &'static str, args: Value) {
    model.respond_with(move |request: &RecordedRequest| {
        if request.tool_names().iter().any(|name| name == "set_status") {
            let last = request.messages().last().cloned().unwrap_or_default();
            return if last["role"] == "tool" {
                let result = last["content"].as_str().unwrap_or_default().to_owned();
                FakeReply::tool_call("set_status", json!({ "status": result, "kind": "done" }))
            } else {
                FakeReply::tool_call(tool, args.clone())
            };
        }
        let text = request.last_user_text().unwrap_or_default();
        if text.starts_with("[background results]") {
            return FakeReply::tool_call("reply", json!({ "content": format!("result: {text}") }));
        }
        if request.messages().last().is_some_and(|m| m["role"] == "tool") {
            return FakeReply::tool_call("reply", json!({ "content": "On it." }));
        }
        FakeReply::tool_call("spawn_worker", json!({ "task": format!("use the tool {tool}") }))
    });
}

/// What the worker's tool call returned, as the model read it.
pub(crate) fn worker_tool_results(model: &FakeLlmServer) -> Vec<String> {
    model
        .requests()
        .iter()
        .filter(|request| request.tool_names().iter().any(|tool| tool == "set_status"))
        .flat_map(|request| request.messages().to_vec())
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The tool specs the worker was offered.
pub(crate) fn worker_tool_specs(model: &FakeLlmServer) -> Vec<Value> {
    model
        .requests()
        .iter()
        .find(|request| request.tool_names().iter().any(|tool| tool == "set_status"))
        .and_then(|request| request.body["tools"].as_array().cloned())
        .unwrap_or_default()
}

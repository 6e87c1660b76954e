//! The real `spacebot` binary as the harness drives it: started on a free port with a scratch
//! data dir, talked to over HTTP, and stopped with SIGTERM or killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long the daemon may take to say it is ready, or to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where one trial's daemon keeps its config and data; deleted on drop.
pub(crate) struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub(crate) fn new(config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("spacebot-soak-").tempdir().context("can't create a scratch dir")?;
        std::fs::write(dir.path().join("config.toml"), config).context("can't write the config")?;
        Ok(Self { dir })
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Keeps the directory (for a failed trial), returning its path.
    pub(crate) fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// A running daemon. Dropping it kills the process.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every log line read so far.
    pub(crate) log: Vec<String>,
    reader: JoinHandle<()>,
}

/// How a stop went.
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) status: ExitStatus,
    pub(crate) log: Vec<String>,
}

impl Daemon {
    /// Starts `spacebot start` and waits for its `spacebot ready` line.
    pub(crate) async fn start(binary: &Path, home: &Home) -> anyhow::Result<Self> {
        let command = spacebot_testing::binary::start_command(binary, &home.config_path(), &home.data_dir());
        let mut command = Command::from(command);
        command.env("SPACEBOT_LOG", "info").kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("can't start {}", binary.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("the daemon's stderr is not piped"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut daemon = Self { child, base: String::new(), http, lines, log: Vec::new(), reader };
        let ready = daemon.wait_for_log("spacebot ready").await?;
        let addr = spacebot_testing::binary::ready_addr(&ready)
            .ok_or_else(|| anyhow!("no addr= in the ready line: {ready}"))?;
        daemon.base = format!("http://{addr}");
        Ok(daemon)
    }

    /// Waits for a log line containing `needle`.
    async fn wait_for_log(&mut self, needle: &str) -> anyhow::Result<String> {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if line.contains(needle) {
                    return Ok(line);
                }
            }
            Err(anyhow!("the daemon exited before logging {needle:?}"))
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(result) => result.map_err(|error| anyhow!("{error}; log:\n{}", self.log.join("\n"))),
            Err(_) => bail!("no {needle:?} within {PATIENCE:?}; log:\n{}", self.log.join("\n")),
        }
    }

    /// Moves the log lines read so far into [`log`](Self::log).
    pub(crate) fn drain_log(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// `POST /webhook/main`: the message id when accepted (`202`), else `None`.
    pub(crate) async fn say(&self, conversation: &str, text: &str) -> Option<String> {
        let body = json!({"conversation": conversation, "sender": "soak", "text": text});
        let response = self.http.post(format!("{}/webhook/main", self.base)).json(&body).send().await.ok()?;
        if response.status().as_u16() != 202 {
            return None;
        }
        let answer: Value = response.json().await.ok()?;
        answer["message_id"].as_str().map(str::to_owned)
    }

    /// The stored messages of a webhook conversation, or none when the daemon doesn't answer.
    pub(crate) async fn messages(&self, conversation: &str) -> Option<Vec<Value>> {
        let url = format!("{}/api/agents/main/conversations/webhook:{conversation}/messages?limit=1000", self.base);
        let response = self.http.get(url).send().await.ok()?;
        response.json().await.ok()
    }

    /// How many processes `GET /api/status` lists, or none when the daemon doesn't answer.
    pub(crate) async fn live_processes(&self) -> Option<usize> {
        let status: Value = self.http.get(format!("{}/api/status", self.base)).send().await.ok()?.json().await.ok()?;
        status["processes"].as_array().map(Vec::len)
    }

    /// Kills the process with SIGKILL (a crash) and waits for it to end.
    pub(crate) async fn kill(mut self) -> anyhow::Result<Vec<String>> {
        self.child.start_kill().context("can't kill the daemon")?;
        self.child.wait().await.context("can't reap the daemon")?;
        Ok(self.finish().await)
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) async fn terminate(mut self) -> anyhow::Result<Stopped> {
        let pid = self.child.id().ok_or_else(|| anyhow!("the daemon has already exited"))?;
        let sent = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
        if !sent.success() {
            bail!("`kill -TERM {pid}` failed");
        }
        let status = match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.drain_log();
                bail!("the daemon did not exit within {PATIENCE:?} of SIGTERM; log:\n{}", self.log.join("\n"));
            }
        };
        let log = self.finish().await;
        Ok(Stopped { status, log })
    }

    /// Reads the rest of the log (the pipe closes with the process).
    async fn finish(mut self) -> Vec<String> {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        self.drain_log();
        std::mem::take(&mut self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.reader.abort();
    }
}

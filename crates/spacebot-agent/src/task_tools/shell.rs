//! `shell`: a command run in the workspace, in bubblewrap when it is installed.
//!
//! In the sandbox the command sees only the system directories (`/usr`, `/etc` and the like),
//! read-only, its workspace, read-write, and a private `/tmp`: not the home directories, not
//! `/var`, not the daemon's data dir or config (hidden even when they sit inside a mounted
//! directory). It runs in its own pid namespace (the daemon's `/proc` entry is out of sight) and
//! has no network unless the settings allow it. Under [`Sandbox::Auto`] without bubblewrap the
//! tool refuses to run and says how to fix it. Sandboxed or not, the command gets a clean
//! environment (no API keys leak from the daemon), a time limit after which its whole process
//! group is killed, and a cap on the output kept.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use spacebot_core::{ToolError, TypedTool};

use super::TaskToolSettings;
use super::launcher::{Launcher, Mounts};
use super::workspace::Workspace;
use crate::error::TaskToolError;

/// Whether shell commands run in bubblewrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sandbox {
    /// In bubblewrap when `bwrap` is installed; otherwise the tool refuses every command, saying
    /// how to install bubblewrap or opt out with [`Sandbox::Off`].
    #[default]
    Auto,
    /// Never sandboxed: commands run as the daemon's user, seeing what it sees.
    Off,
    /// Always sandboxed: setting up the tools fails without `bwrap`.
    Required,
}

/// What the tool says to every command when it may not run one.
const NO_SANDBOX: &str = "the shell is disabled: bubblewrap (`bwrap`) is not installed, and commands don't run \
     unsandboxed unless the operator says so. Tell the user: install bubblewrap (`apt install bubblewrap`), or set \
     `tools.sandbox = \"off\"` to run commands unsandboxed";

#[derive(Debug, Deserialize)]
pub(crate) struct ShellArgs {
    #[serde(alias = "cmd", alias = "script")]
    command: String,
}

/// The `shell` tool.
pub(crate) struct Shell {
    workspace: Arc<Workspace>,
    timeout: Duration,
    cap: usize,
    launcher: Launcher,
}

impl Shell {
    pub(crate) fn new(workspace: Arc<Workspace>, settings: &TaskToolSettings) -> Result<Self, TaskToolError> {
        let launcher = Launcher::new(settings)?;
        if launcher.refuses() {
            tracing::warn!(
                "bubblewrap (`bwrap`) is not installed: the workers' shell refuses every command; install \
                 bubblewrap, or set tools.sandbox = \"off\" to run them unsandboxed"
            );
        }
        Ok(Self { workspace, timeout: settings.shell_timeout, cap: settings.output_cap, launcher })
    }

    /// The command for `script`, or `None` when every command is refused.
    fn command(&self, script: &str) -> Option<tokio::process::Command> {
        let mut command =
            self.launcher.command(Mounts::new(self.workspace.root()), std::ffi::OsStr::new("sh"), ["-c", script])?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).process_group(0);
        Some(command)
    }
}

#[async_trait]
impl TypedTool for Shell {
    const NAME: &'static str = "shell";
    type Args = ShellArgs;

    fn description(&self) -> String {
        let sandbox = if self.launcher.is_sandboxed() {
            "in a sandbox (only the workspace is writable, no network)"
        } else if self.launcher.refuses() {
            "when bubblewrap is installed (it isn't: every command is refused)"
        } else {
            "unsandboxed"
        };
        format!(
            "Run a shell command (`sh -c`) in the workspace, {sandbox}. Limited to {} seconds; long output is cut.",
            self.timeout.as_secs()
        )
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": { "command": { "type": "string" } },
            "required": ["command"]
        })
    }

    async fn run(&self, args: ShellArgs) -> Result<String, ToolError> {
        let Some(mut command) = self.command(&args.command) else {
            return Err(ToolError::Failed(NO_SANDBOX.to_owned()));
        };
        let mut child =
            command.spawn().map_err(|error| ToolError::Failed(format!("can't start the command: {error}")))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let cap = self.cap;
        let run = async {
            let (out, err, status) = tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap), child.wait());
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(&child).await;
                let _ = child.kill().await;
                return Ok(format!("timed out after {} seconds; the command was killed", self.timeout.as_secs()));
            }
        };
        let status = status.map_err(|error| ToolError::Failed(format!("the command failed to run: {error}")))?;
        let code = status.code().map_or_else(|| "killed by a signal".to_owned(), |code| code.to_string());
        let mut text = format!("exit code: {code}");
        for (name, (bytes, total)) in [("stdout", out), ("stderr", err)] {
            if total == 0 {
                continue;
            }
            text.push_str(&format!("\n--- {name} ---\n{}", String::from_utf8_lossy(&bytes)));
            if total > bytes.len() {
                text.push_str(&format!("\n[{name} cut: {total} bytes, {} shown]", bytes.len()));
            }
        }
        Ok(text)
    }
}

/// Reads a pipe to its end, keeping the first `cap` bytes; returns them and the total size.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, cap: usize) -> (Vec<u8>, usize) {
    let Some(mut pipe) = pipe else { return (Vec::new(), 0) };
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                total += read;
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }
    (kept, total)
}

/// Kills the command's whole process group (it leads its own), so background children die too.
async fn kill_group(child: &tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    let killed = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = killed {
        tracing::warn!(%error, pid, "can't kill a timed-out command's process group");
    }
}

#[cfg(test)]
mod tests {
    use spacebot_core::Tool;

    use super::super::bubblewrap_available;

    use super::*;

    fn shell(dir: &std::path::Path, sandbox: Sandbox, timeout: Duration, cap: usize) -> Shell {
        let workspace = Arc::new(Workspace::open(&dir.join("ws")).unwrap());
        let settings = TaskToolSettings::default().with_sandbox(sandbox).with_shell_limits(timeout, cap);
        Shell::new(workspace, &settings).unwrap()
    }

    #[tokio::test]
    async fn runs_in_the_workspace_with_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let shell = shell(dir.path(), Sandbox::Off, Duration::from_secs(20), 4096);
        let out = shell
            .call(json!({"command": "pwd; echo hi > f.txt; cat f.txt; echo ${OPENAI_API_KEY:-clean}"}))
            .await
            .unwrap();
        assert!(out.starts_with("exit code: 0"), "{out}");
        assert!(out.contains(shell.workspace.root().to_str().unwrap()), "{out}");
        assert!(out.contains("hi\nclean"), "{out}");
        let failed = shell.call(json!({"command": "echo oops >&2; exit 3"})).await.unwrap();
        assert!(failed.starts_with("exit code: 3") && failed.contains("--- stderr ---\noops"), "{failed}");
    }

    #[tokio::test]
    async fn output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let shell = shell(dir.path(), Sandbox::Off, Duration::from_secs(20), 100);
        let out = shell.call(json!({"command": "head -c 5000 /dev/zero | tr '\\0' x"})).await.unwrap();
        assert!(out.contains("[stdout cut: 5000 bytes, 100 shown]"), "{out}");
        assert!(out.len() < 400, "{}", out.len());
    }

    #[tokio::test]
    async fn commands_past_the_time_limit_are_killed_with_their_children() {
        let dir = tempfile::tempdir().unwrap();
        let shell = shell(dir.path(), Sandbox::Off, Duration::from_millis(300), 4096);
        let started = std::time::Instant::now();
        let out = shell.call(json!({"command": "(sleep 30; touch late.txt) & sleep 30"})).await.unwrap();
        assert!(out.contains("timed out after 0 seconds"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        let marker = shell.workspace.root().join("late.txt");
        assert!(!marker.exists());
    }

    /// Runs where bubblewrap is installed (`.ci/run` installs it); elsewhere it checks that
    /// `Required` refuses to start without it.
    #[tokio::test]
    async fn the_sandbox_confines_writes_and_network_when_bubblewrap_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        if !bubblewrap_available() {
            let workspace = Arc::new(Workspace::open(&dir.path().join("ws")).unwrap());
            let settings = TaskToolSettings::default().with_sandbox(Sandbox::Required);
            assert!(matches!(Shell::new(workspace, &settings), Err(TaskToolError::SandboxMissing)));
            return;
        }
        let shell = shell(dir.path(), Sandbox::Auto, Duration::from_secs(20), 4096);
        assert!(shell.spec().description.contains("in a sandbox"));
        // Outside the workspace: a sibling under /tmp (the sandbox has a private /tmp) and a
        // directory the host can write to.
        let outside = dir.path().join("outside.txt");
        let host_dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let host_file = host_dir.path().join("escaped.txt");
        let script = format!(
            "echo $SPACEBOT_SANDBOX; echo inside > in.txt && echo wrote-inside; echo x > {}; \
             echo x > {} && echo wrote-host; touch /etc/spacebot-test && echo wrote-etc; \
             cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sed 's/^/iface:/'",
            outside.display(),
            host_file.display()
        );
        let out = shell.call(json!({ "command": script })).await.unwrap();
        assert!(out.contains("bubblewrap\n") && out.contains("wrote-inside"), "{out}");
        assert!(!out.contains("wrote-host") && !out.contains("wrote-etc"), "{out}");
        assert!(!outside.exists() && !host_file.exists(), "a sandboxed command wrote outside the workspace: {out}");
        assert!(shell.workspace.root().join("in.txt").exists());
        // Only the loopback interface exists in the sandbox's network namespace.
        let interfaces: Vec<&str> = out.lines().filter_map(|line| line.strip_prefix("iface:")).collect();
        assert_eq!(interfaces, vec!["lo"], "{out}");
    }

    /// Runs where bubblewrap is installed (`.ci/run` installs it); elsewhere it checks that
    /// `Auto` refuses every command and says how to fix it.
    #[tokio::test]
    async fn the_sandbox_shows_no_data_dir_config_home_or_daemon_and_auto_without_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        if !bubblewrap_available() {
            let shell = shell(dir.path(), Sandbox::Auto, Duration::from_secs(20), 4096);
            let error = shell.call(json!({"command": "echo hi"})).await.unwrap_err().to_string();
            assert!(error.contains("apt install bubblewrap") && error.contains("tools.sandbox"), "{error}");
            return;
        }
        // A data dir holding the workspace, and a config file beside it, in a directory the sandbox
        // mounts: both hidden, the workspace inside still usable.
        let data = tempfile::tempdir_in("/etc").unwrap();
        std::fs::write(data.path().join("spacebot.db"), "every private memory").unwrap();
        let config = data.path().join("spacebot.toml");
        std::fs::write(&config, "api_key = \"secret\"").unwrap();
        let workspace = Arc::new(Workspace::open(&data.path().join("workspaces/main")).unwrap());
        let settings = TaskToolSettings::default()
            .with_sandbox(Sandbox::Required)
            .with_hidden_paths([data.path().to_path_buf(), config.clone()]);
        let shell = Shell::new(workspace, &settings).unwrap();
        let script = format!(
            "cat {db} && echo read-db; cat {config} && echo read-config; ls /root /home 2>/dev/null && echo saw-homes; \
             test -e /proc/{daemon}/environ && echo saw-daemon; echo x > here.txt && echo wrote-here",
            db = data.path().join("spacebot.db").display(),
            config = config.display(),
            daemon = std::process::id(),
        );
        let out = shell.call(json!({ "command": script })).await.unwrap();
        assert!(!out.contains("every private memory") && !out.contains("read-db"), "{out}");
        assert!(!out.contains("secret") && !out.contains("read-config"), "{out}");
        assert!(!out.contains("saw-homes"), "{out}");
        assert!(!out.contains("saw-daemon"), "the daemon's /proc entry is out of sight: {out}");
        assert!(out.contains("wrote-here"), "{out}");
        assert!(data.path().join("workspaces/main/here.txt").exists());
    }
}

//! How the workers' programs start: the shell's commands, and the stdio MCP servers the daemon
//! runs for them, in bubblewrap when the settings say so.
//!
//! One place builds the sandbox, so a program started for a worker sees what a shell command
//! sees: the system directories (`/usr`, `/etc` and the like) read-only, the directories it was
//! given (read-write or read-only), a private `/tmp`, its own pid namespace (the daemon's `/proc`
//! entry out of sight) and no network unless allowed; never the daemon's data dir or config
//! (hidden even when they sit inside a mounted directory). Sandboxed or not, it gets a clean
//! environment: no API key leaks from the daemon unless its caller adds one by name.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Sandbox, TaskToolSettings};
use crate::error::TaskToolError;

/// The `PATH` programs run with.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Directories mounted read-only in the sandbox (those that exist; a symlink such as a merged
/// `/bin` stays a symlink).
const SYSTEM_DIRS: [&str; 7] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"];

/// The `bwrap` executable on `PATH`, if any (looked up once).
fn bubblewrap() -> Option<&'static PathBuf> {
    static BWRAP: OnceLock<Option<PathBuf>> = OnceLock::new();
    BWRAP
        .get_or_init(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path).map(|dir| dir.join("bwrap")).find(|candidate| candidate.is_file())
        })
        .as_ref()
}

/// Whether bubblewrap (`bwrap`) is installed, so workers' programs can be sandboxed.
pub fn bubblewrap_available() -> bool {
    bubblewrap().is_some()
}

/// What a program started for a worker may see besides the system directories.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Mounts<'a> {
    /// The working directory, mounted read-write.
    pub workdir: &'a Path,
    /// More directories mounted read-write.
    pub writable: &'a [PathBuf],
    /// Files and directories mounted read-only (a program's own install directory, say).
    pub readable: &'a [PathBuf],
}

impl<'a> Mounts<'a> {
    /// Only the working directory.
    pub fn new(workdir: &'a Path) -> Self {
        Self { workdir, writable: &[], readable: &[] }
    }

    /// Adds directories mounted read-write.
    pub fn with_writable(mut self, writable: &'a [PathBuf]) -> Self {
        self.writable = writable;
        self
    }

    /// Adds files and directories mounted read-only.
    pub fn with_readable(mut self, readable: &'a [PathBuf]) -> Self {
        self.readable = readable;
        self
    }
}

/// Starts the workers' programs, in bubblewrap or not, as [`TaskToolSettings`] say.
#[derive(Debug, Clone)]
pub struct Launcher {
    bwrap: Option<PathBuf>,
    /// Refuse every program (`Auto` without bubblewrap).
    refuse: bool,
    network: bool,
    /// Paths the sandbox hides (the daemon's data dir and config).
    hidden: Vec<PathBuf>,
}

impl Launcher {
    /// The launcher for these settings: sandboxed when bubblewrap is installed (or `Off` says
    /// never); under [`Sandbox::Auto`] without bubblewrap it refuses every program.
    ///
    /// Fails when the sandbox is [`Sandbox::Required`] and bubblewrap is missing.
    pub fn new(settings: &TaskToolSettings) -> Result<Self, TaskToolError> {
        let bwrap = match settings.sandbox {
            Sandbox::Off => None,
            Sandbox::Auto => bubblewrap().cloned(),
            Sandbox::Required => Some(bubblewrap().cloned().ok_or(TaskToolError::SandboxMissing)?),
        };
        Ok(Self {
            refuse: bwrap.is_none() && settings.sandbox == Sandbox::Auto,
            bwrap,
            network: settings.shell_network,
            hidden: settings.hidden_paths.clone(),
        })
    }

    /// Whether programs run in bubblewrap.
    pub fn is_sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// Whether every program is refused: the sandbox is `auto` and bubblewrap is missing.
    pub fn refuses(&self) -> bool {
        self.refuse
    }

    /// The command that runs `program` with `args` in `mounts.workdir`, with a clean environment
    /// (`PATH`, `HOME` = the working directory, `LANG`), or `None` when every program is refused.
    ///
    /// The caller sets the standard streams and adds the environment variables the program is
    /// meant to have.
    pub fn command<I, S>(&self, mounts: Mounts<'_>, program: &OsStr, args: I) -> Option<tokio::process::Command>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if self.refuse {
            return None;
        }
        // The sandbox resolves paths from its own root, so relative ones (a `--data-dir data`)
        // are made absolute here, from the daemon's current directory.
        let workdir = &absolute(mounts.workdir);
        let mut command = match &self.bwrap {
            Some(bwrap) => {
                let mut command = tokio::process::Command::new(bwrap);
                for dir in SYSTEM_DIRS {
                    match std::fs::read_link(dir) {
                        Ok(target) => {
                            command.arg("--symlink").arg(target).arg(dir);
                        }
                        Err(_) if Path::new(dir).is_dir() => {
                            command.args(["--ro-bind", dir, dir]);
                        }
                        Err(_) => {}
                    }
                }
                command.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
                // Hidden before anything else is mounted, which may lie inside one of them.
                for path in self.hidden.iter().map(|path| absolute(path)) {
                    if path.is_dir() {
                        command.arg("--tmpfs").arg(path);
                    } else if path.exists() {
                        command.arg("--ro-bind").arg("/dev/null").arg(path);
                    }
                }
                for path in mounts.readable.iter().map(|path| absolute(path)) {
                    command.arg("--ro-bind").arg(&path).arg(&path);
                }
                for path in mounts.writable.iter().map(|path| absolute(path)) {
                    command.arg("--bind").arg(&path).arg(&path);
                }
                command.arg("--bind").arg(workdir).arg(workdir).arg("--chdir").arg(workdir);
                command.args(["--unshare-pid", "--die-with-parent", "--new-session"]);
                if !self.network {
                    command.arg("--unshare-net");
                }
                command.args(["--setenv", "SPACEBOT_SANDBOX", "bubblewrap"]).arg(program).args(args);
                command
            }
            None => {
                let mut command = tokio::process::Command::new(program);
                command.args(args);
                command
            }
        };
        command.current_dir(workdir).env_clear().env("PATH", SAFE_PATH).env("HOME", workdir).env("LANG", "C.UTF-8");
        Some(command)
    }
}

/// `path` made absolute from the current directory (unchanged when that can't be read).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;

    /// A data dir, a working directory and mounts given relative to the daemon's current
    /// directory (`--data-dir data`) still work in the sandbox, which resolves them from its own
    /// root. Runs where bubblewrap is installed (`.ci/run` installs it).
    #[tokio::test]
    async fn relative_paths_are_resolved_before_they_reach_the_sandbox() {
        if !bubblewrap_available() {
            return;
        }
        let base = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let relative = |path: &Path| path.strip_prefix(std::env::current_dir().unwrap()).unwrap().to_path_buf();
        let data = base.path().join("data");
        let workdir = data.join("mcp/server");
        let shared = base.path().join("shared");
        std::fs::create_dir_all(&workdir).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(data.join("spacebot.db"), "private").unwrap();
        let settings = TaskToolSettings::default().with_sandbox(Sandbox::Required).with_hidden_paths([relative(&data)]);
        let launcher = Launcher::new(&settings).unwrap();
        let (workdir_rel, writable) = (relative(&workdir), [relative(&shared)]);
        let mut command = launcher
            .command(
                Mounts::new(&workdir_rel).with_writable(&writable),
                OsStr::new("sh"),
                ["-c", &format!("pwd; echo x > {}/out.txt && echo wrote; cat ../../spacebot.db", shared.display())],
            )
            .unwrap();
        let output = command.stdout(Stdio::piped()).stderr(Stdio::piped()).output().await.unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(out.contains(workdir.to_str().unwrap()) && out.contains("wrote"), "{output:?}");
        assert!(!out.contains("private"), "the hidden data dir was readable: {output:?}");
        assert!(shared.join("out.txt").exists());
    }
}

//! What the harnesses that run real daemons share (`mail_server.rs`, `pg_server.rs`): system
//! users, running a command with its output kept, telling whether a process is alive, and the
//! watchdog that cleans up after a test process that died.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The uid and gid of the system user `name`, from `/etc/passwd`; `install_hint` says which
/// package creates it.
pub(crate) fn system_user(name: &str, install_hint: &str) -> Result<(u32, u32), String> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|error| format!("can't read /etc/passwd: {error}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(|| format!("no system user '{name}' (the packages create it: `{install_hint}`)"))
}

/// Runs a command to its end, its output appended to `dir/commands.log` (a daemon it starts would
/// keep a pipe open as long as it runs).
pub(crate) fn run(dir: &Path, command: &mut Command) -> Result<(), String> {
    let log_path = dir.join("commands.log");
    let log = fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|error| format!("open {}: {error}", log_path.display()))?;
    let err = log.try_clone().map_err(|error| format!("open {}: {error}", log_path.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .status()
        .map_err(|error| format!("can't run {command:?}: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} exited with {status}")) }
}

/// Whether process `pid` is alive (a zombie counts as gone).
pub(crate) fn is_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A shell named `name` that waits for this process to end (or turn zombie: its parent may never
/// reap it), then runs `cleanup` with `args` as `$2`, `$3`, ... and a shell function `alive PID`
/// at hand: the cleanup when the test process dies (or exits) without dropping its server. In its
/// own process group, so a Ctrl-C to the test doesn't take it down first.
pub(crate) fn spawn_watchdog(name: &str, cleanup: &str, args: &[&OsStr]) -> Option<Child> {
    let script = format!(
        r#"
        alive() {{ state=$(sed 's/.*) //; s/ .*//' "/proc/$1/stat" 2>/dev/null) && [ "$state" != Z ]; }}
        while alive "$1"; do sleep 1; done
        {cleanup}
        "#
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(name)
        .arg(std::process::id().to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

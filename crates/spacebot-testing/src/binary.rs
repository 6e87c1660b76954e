//! Running the built `spacebot` binary in a test: a command that can't pick up the developer's own
//! settings, `spacebot start` on a config and data dir, and the address its `spacebot ready` line
//! announces.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where `HOME` points for a daemon under test: nowhere, so no `~/.spacebot` is read or written.
pub const TEST_HOME: &str = "/nonexistent-home-for-tests";

/// A command running `binary` with every `SPACEBOT_*` variable of the caller's environment
/// removed and `HOME` at [`TEST_HOME`], so only what the test passes configures it.
pub fn isolated_command(binary: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SPACEBOT_") {
            command.env_remove(key);
        }
    }
    command.env("HOME", TEST_HOME);
    command
}

/// `binary start --config CONFIG --data-dir DATA_DIR`, isolated as [`isolated_command`], with
/// stdin and stdout closed and stderr (the log) piped for the caller to read.
pub fn start_command(binary: impl AsRef<OsStr>, config: &Path, data_dir: &Path) -> Command {
    let mut command = isolated_command(binary);
    command
        .arg("start")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The address in a `spacebot ready` log line (`addr=127.0.0.1:PORT`), if it has one.
pub fn ready_addr(line: &str) -> Option<&str> {
    line.split_whitespace().find_map(|word| word.strip_prefix("addr="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_points_home_nowhere() {
        let command = isolated_command("spacebot");
        let home = command.get_envs().find(|(key, _)| *key == "HOME").and_then(|(_, value)| value);
        assert_eq!(home, Some(OsStr::new(TEST_HOME)));
    }

    #[test]
    fn the_ready_line_names_the_address() {
        let line = "2026-12-06T01:00:00Z  INFO spacebot::daemon: spacebot ready addr=127.0.0.1:4242 data_dir=/tmp/x";
        assert_eq!(ready_addr(line), Some("127.0.0.1:4242"));
        assert_eq!(ready_addr("spacebot ready"), None);
    }
}

//! Repository automation for Spacebot, run as `cargo xtask <command>`.
//!
//! `.cargo/config.toml` aliases `cargo xtask` to `cargo run --package xtask --bin xtask --`, so the
//! only tool a contributor needs is cargo. This crate stays small on purpose (anyhow and
//! serde_json, no workspace crates): it must build even when the rest of the workspace doesn't.
//!
//! Commands:
//! - `tidy`: repository rules (dependency direction, file headers, layout); also runs as the
//!   `tidy` test, so `cargo test --workspace` enforces it.
//! - `ci`: fmt, clippy, the docs, the tests and a short soak (`soak --trials 20`), in that order,
//!   stopping at the first failure.
//! - `bench [name]`: benchmarks (`memory`, `processes`; all of them without a name), run in
//!   release mode from `benches/spacebot-bench` (a workspace member that `cargo build` skips);
//!   figures go to `docs/benchmarks.md`.
//! - `eval recall [args]`: the recall evaluation (`benches/spacebot-eval`), in release mode:
//!   hit@1/5/10 per question category for each ranked list and fused; `--embedder local` builds
//!   it with the `local-embeddings` feature. Figures go to `docs/benchmarks.md`.
//! - `dist`: builds the binary to ship (profile `dist`) and prints its size beside the 30 MB
//!   target; exits non-zero when it is over (`docs/deploy.md`).
//! - `soak [args]`: builds the `spacebot` binary, then runs the soak harness
//!   (`benches/spacebot-soak`, a test target run only when selected) against it: kills and
//!   restarts at seeded moments, invariants checked, an HTTP fuzz pass; see `docs/benchmarks.md`.
//! - `fuzz [TARGET...] [--seconds N | --runs N]`: builds the coverage-guided fuzz targets of
//!   `fuzz/` (libFuzzer, on the stable toolchain) and runs each; see `docs/security.md`.

mod ci;
mod dist;
mod fuzz;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  tidy    check repository rules (dependency direction, `//!` headers, no mod.rs, ...)
  ci      run fmt --check, clippy -D warnings, the tests (also with local-embeddings) and `soak --trials 20`, stopping at the first failure
  bench   run the benchmarks, or one: `bench memory`, `bench processes` (results: docs/benchmarks.md)
  eval    `eval recall [--embedder hashing|local] [--model-dir DIR] [--conversations N] [--misses N]`:
          recall hit@1/5/10 per category, each list and fused, on long conversations (docs/benchmarks.md)
  dist    build the binary to ship (profile `dist`: LTO, stripped) and print its size against the 30 MB target
  soak    kill -9 / SIGTERM the real binary at seeded moments, restart, check every invariant, fuzz
          the HTTP API: `soak [--seed N] [--trials N] [--trial T] [--stops N] [--messages N]
          [--idle-ms N] [--fuzz N]` (20 trials by default; exits non-zero on a violation)
  fuzz    build the libFuzzer targets (stable toolchain) and run each, regressions first:
          `fuzz [split|scrub|http_bodies|config|discord|slack|mcp ...] [--seconds N | --runs N]`
          (every target, 10 seconds each, by default; exits non-zero on a finding; docs/security.md)
  help    print this message";

/// The benchmarks `benches/spacebot-bench` knows.
const BENCHES: &[&str] = &["memory", "processes"];

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Tidy,
    Ci,
    /// The benchmarks to run, in order.
    Bench(Vec<String>),
    /// The soak harness, with its arguments.
    Soak(Vec<String>),
    /// The recall evaluation, with its arguments.
    EvalRecall(Vec<String>),
    /// The binary to ship.
    Dist,
    /// The fuzz targets to run, in order, and for how long each.
    Fuzz(Vec<String>, fuzz::Budget),
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Command, String> {
    if let [command, name, rest @ ..] = args
        && command == "bench"
    {
        return match rest {
            [] if BENCHES.contains(&name.as_str()) => Ok(Command::Bench(vec![name.clone()])),
            [] => Err(format!("unknown benchmark `{name}`; known: {}", BENCHES.join(", "))),
            [extra, ..] => Err(format!("`bench {name}` takes no more arguments, got `{extra}`")),
        };
    }
    if let [command, rest @ ..] = args
        && command == "eval"
    {
        return match rest {
            [name, rest @ ..] if name == "recall" => Ok(Command::EvalRecall(rest.to_vec())),
            [name, ..] => Err(format!("unknown evaluation `{name}`; known: recall")),
            [] => Err("`eval` needs an evaluation: recall".to_owned()),
        };
    }
    if let [command, rest @ ..] = args
        && command == "fuzz"
    {
        let (targets, budget) = fuzz::parse(rest)?;
        return Ok(Command::Fuzz(targets, budget));
    }
    if let [command, rest @ ..] = args
        && command == "soak"
    {
        return Ok(Command::Soak(rest.to_vec()));
    }
    let command = match args {
        [] => return Err("no command given".to_owned()),
        [command] => command,
        [command, extra, ..] => return Err(format!("`{command}` takes no arguments, got `{extra}`")),
    };
    match command.as_str() {
        "tidy" => Ok(Command::Tidy),
        "ci" => Ok(Command::Ci),
        "dist" => Ok(Command::Dist),
        "bench" => Ok(Command::Bench(BENCHES.iter().map(|name| (*name).to_owned()).collect())),
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let root = project_root();
    match command {
        Command::Tidy => {
            let violations = tidy::run(&root)?;
            if violations.is_empty() {
                println!("tidy: ok");
                return Ok(ExitCode::SUCCESS);
            }
            for violation in &violations {
                eprintln!("{violation}");
            }
            eprintln!("tidy: {} violation(s)", violations.len());
            Ok(ExitCode::FAILURE)
        }
        Command::Ci => {
            ci::run(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(names) => {
            for name in names {
                let status = std::process::Command::new(cargo())
                    .current_dir(&root)
                    .args(["run", "--release", "--package", "spacebot-bench", "--", &name])
                    .status()?;
                if !status.success() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fuzz(targets, budget) => {
            Ok(if fuzz::run(&root, &targets, budget)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Soak(args) => Ok(if soak(&root, &args)? { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
        Command::EvalRecall(args) => {
            let local = args.windows(2).any(|pair| pair[0] == "--embedder" && pair[1] == "local");
            let mut command = std::process::Command::new(cargo());
            command.current_dir(&root).args(["run", "--release", "--package", "spacebot-eval"]);
            if local {
                command.args(["--features", "local-embeddings"]);
            }
            let status = command.args(["--", "recall"]).args(&args).status()?;
            Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Dist => Ok(if dist::run(&root)? { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
        Command::Help => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds the daemon, then runs the harness against it (the harness finds the binary next to its
/// own executable, in the same target directory and profile). True when nothing was violated.
fn soak(root: &Path, args: &[String]) -> anyhow::Result<bool> {
    let build =
        std::process::Command::new(cargo()).current_dir(root).args(["build", "--package", "spacebot"]).status()?;
    if !build.success() {
        return Ok(false);
    }
    let status = std::process::Command::new(cargo())
        .current_dir(root)
        .args(["test", "--package", "spacebot-soak", "--test", "soak", "--"])
        .args(args)
        .status()?;
    Ok(status.success())
}

/// The workspace root. xtask always runs from the checkout it was built in, so the compile-time
/// manifest directory is reliable, whatever the current directory is.
fn project_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// The cargo that launched us (`cargo xtask`, `cargo test`), else the one on `PATH`.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse(&args(&["tidy"])), Ok(Command::Tidy));
        assert_eq!(parse(&args(&["ci"])), Ok(Command::Ci));
        assert_eq!(parse(&args(&["dist"])), Ok(Command::Dist));
        assert_eq!(parse(&args(&["bench", "memory"])), Ok(Command::Bench(vec!["memory".to_owned()])));
        assert_eq!(parse(&args(&["bench"])), Ok(Command::Bench(vec!["memory".to_owned(), "processes".to_owned()])));
        assert!(parse(&args(&["bench", "disk"])).unwrap_err().contains("`disk`"));
        assert_eq!(parse(&args(&["soak"])), Ok(Command::Soak(Vec::new())));
        assert_eq!(
            parse(&args(&["soak", "--trials", "3"])),
            Ok(Command::Soak(vec!["--trials".to_owned(), "3".to_owned()]))
        );
        assert_eq!(parse(&args(&["eval", "recall"])), Ok(Command::EvalRecall(Vec::new())));
        assert_eq!(
            parse(&args(&["eval", "recall", "--embedder", "local"])),
            Ok(Command::EvalRecall(vec!["--embedder".to_owned(), "local".to_owned()]))
        );
        assert!(parse(&args(&["eval", "speed"])).unwrap_err().contains("`speed`"));
        assert!(parse(&args(&["eval"])).is_err());
        let all: Vec<String> = fuzz::TARGETS.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(parse(&args(&["fuzz"])), Ok(Command::Fuzz(all, fuzz::DEFAULT_BUDGET)));
        assert_eq!(
            parse(&args(&["fuzz", "config", "--runs", "1000000"])),
            Ok(Command::Fuzz(vec!["config".to_owned()], fuzz::Budget::Runs(1_000_000)))
        );
        assert!(parse(&args(&["fuzz", "nope"])).unwrap_err().contains("`nope`"));
        assert_eq!(parse(&args(&["--help"])), Ok(Command::Help));
    }

    #[test]
    fn rejects_missing_unknown_and_extra_arguments() {
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["lint"])).unwrap_err().contains("`lint`"));
        assert!(parse(&args(&["tidy", "--fix"])).unwrap_err().contains("`--fix`"));
    }

    #[test]
    fn project_root_is_the_workspace() {
        let manifest = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}

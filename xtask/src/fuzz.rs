//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` with coverage instrumentation on
//! the stable toolchain and runs them.
//!
//! Stable rustc has no `-Zsanitizer`, but its LLVM still has the SanitizerCoverage pass: asking
//! for it by name (`-Cpasses=sancov-module` with the `-sanitizer-coverage-*` options libFuzzer
//! reads) gives the same inline 8-bit counters, PC table and comparison tracing that `cargo fuzz`
//! turns on with nightly. The flags go through `RUSTFLAGS` with an explicit `--target`, so cargo
//! applies them to the targets' code only, not to build scripts and proc macros. `--cfg fuzzing`
//! is what `libfuzzer-sys` and `cargo fuzz` set too.
//!
//! Each target first replays every file of `fuzz/regressions/<target>/` (inputs that once failed),
//! then fuzzes from its working corpus (`<target dir>/fuzz/corpus/<target>/`, kept between runs)
//! and the seeds of `fuzz/corpus/<target>/`. A crash leaves its input in
//! `<target dir>/fuzz/artifacts/<target>/`; libFuzzer's output goes to
//! `<target dir>/fuzz/logs/<target>.log`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The targets, in the order they run: the `[[bin]]`s of `fuzz/Cargo.toml`.
pub(crate) const TARGETS: &[&str] = &["split", "scrub", "http_bodies", "config", "discord", "slack", "mcp"];

/// The coverage instrumentation libFuzzer needs, on stable (see the module docs).
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing";

/// The longest input libFuzzer makes: room for a config file or a platform payload.
const MAX_LEN: u32 = 4096;

/// Seconds one input may take before libFuzzer calls it a hang (a finding).
const INPUT_TIMEOUT_SECS: u32 = 10;

/// How long each target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// `--seconds N`: this many seconds of fuzzing.
    Seconds(u64),
    /// `--runs N`: this many inputs.
    Runs(u64),
}

/// The short run: what `cargo xtask fuzz` does without a budget, and what CI runs.
pub(crate) const DEFAULT_BUDGET: Budget = Budget::Seconds(10);

/// Parses `[TARGET...] [--seconds N | --runs N]` (every target when none is named).
pub(crate) fn parse(args: &[String]) -> Result<(Vec<String>, Budget), String> {
    let mut targets = Vec::new();
    let mut budget = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            flag @ ("--seconds" | "--runs") => {
                if budget.is_some() {
                    return Err("give one of `--seconds` and `--runs`, once".to_owned());
                }
                let value = args.next().ok_or_else(|| format!("`{flag}` needs a number"))?;
                let value: u64 = value.parse().map_err(|_| format!("`{flag}` needs a number, got `{value}`"))?;
                if value == 0 {
                    return Err(format!("`{flag}` needs a number above 0"));
                }
                budget = Some(if flag == "--seconds" { Budget::Seconds(value) } else { Budget::Runs(value) });
            }
            name if TARGETS.contains(&name) => {
                if !targets.iter().any(|known| known == name) {
                    targets.push(name.to_owned());
                }
            }
            other => return Err(format!("unknown fuzz target `{other}`; known: {}", TARGETS.join(", "))),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|name| (*name).to_owned()).collect();
    }
    Ok((targets, budget.unwrap_or(DEFAULT_BUDGET)))
}

/// What one target's run came to.
#[derive(Debug, Clone)]
struct Outcome {
    target: String,
    runs: u64,
    seconds: f64,
    corpus: usize,
    /// `ok`, or what failed and where its input is.
    result: String,
    ok: bool,
}

/// Builds the targets, runs each within `budget` and prints a line per target. True when no
/// target found anything.
pub(crate) fn run(root: &Path, targets: &[String], budget: Budget) -> anyhow::Result<bool> {
    let target_dir = target_dir(root);
    let triple = host_triple()?;
    let manifest = root.join("fuzz").join("Cargo.toml");
    println!("==> building the fuzz targets (instrumented, release) into {}", target_dir.display());
    let status = Command::new(crate::cargo())
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--target", &triple])
        .args(targets.iter().flat_map(|target| ["--bin", target.as_str()]))
        .status()
        .context("can't run cargo build for the fuzz targets")?;
    if !status.success() {
        bail!("the fuzz targets don't build ({status})");
    }
    let bin_dir = target_dir.join(&triple).join("release");
    let work = target_dir.join("fuzz");
    let mut outcomes = Vec::new();
    for target in targets {
        let outcome = run_one(root, &bin_dir.join(target), &work, target, budget)?;
        println!(
            "{:<12} {:>10} runs {:>7.1} s {:>9.0} execs/s {:>6} in corpus  {}",
            outcome.target,
            outcome.runs,
            outcome.seconds,
            outcome.runs as f64 / outcome.seconds.max(0.001),
            outcome.corpus,
            outcome.result
        );
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().filter(|outcome| !outcome.ok).count();
    println!("fuzz: {} target(s), {failed} with findings", outcomes.len());
    Ok(failed == 0)
}

/// Replays the target's regressions, then fuzzes it.
fn run_one(root: &Path, binary: &Path, work: &Path, target: &str, budget: Budget) -> anyhow::Result<Outcome> {
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("can't create {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("can't create {}", log_path.display()))?;
    let mut artifact_prefix = artifacts.into_os_string();
    artifact_prefix.push("/");
    let common = |command: &mut Command| {
        let mut prefix = std::ffi::OsString::from("-artifact_prefix=");
        prefix.push(&artifact_prefix);
        command
            .arg(prefix)
            .arg(format!("-max_len={MAX_LEN}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
            .stdout(Stdio::null());
    };
    let started = Instant::now();

    let regressions = files_in(&root.join("fuzz").join("regressions").join(target))?;
    if !regressions.is_empty() {
        let mut command = Command::new(binary);
        common(&mut command);
        command.args(&regressions).stderr(log.try_clone()?);
        let status = command.status().with_context(|| format!("can't run {}", binary.display()))?;
        if !status.success() {
            return Ok(failed(target, started, &corpus, &log_path, "a regression fails again"));
        }
    }

    let mut command = Command::new(binary);
    common(&mut command);
    match budget {
        Budget::Seconds(seconds) => command.arg(format!("-max_total_time={seconds}")),
        Budget::Runs(runs) => command.arg(format!("-runs={runs}")),
    };
    command.arg(&corpus).arg(root.join("fuzz").join("corpus").join(target)).stderr(log);
    let status = command.status().with_context(|| format!("can't run {}", binary.display()))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let found = text
            .lines()
            .find(|line| line.contains("Test unit written to"))
            .and_then(|line| line.rsplit(' ').next())
            .unwrap_or("no input saved");
        return Ok(failed(target, started, &corpus, &log_path, &format!("FOUND: {found}")));
    }
    let (runs, seconds) = done_line(&text).unwrap_or((0, started.elapsed().as_secs_f64()));
    Ok(Outcome {
        target: target.to_owned(),
        runs,
        seconds,
        corpus: files_in(&corpus)?.len(),
        result: "ok".to_owned(),
        ok: true,
    })
}

fn failed(target: &str, started: Instant, corpus: &Path, log: &Path, what: &str) -> Outcome {
    Outcome {
        target: target.to_owned(),
        runs: 0,
        seconds: started.elapsed().as_secs_f64(),
        corpus: files_in(corpus).map_or(0, |files| files.len()),
        result: format!("{what} (log: {})", log.display()),
        ok: false,
    }
}

/// libFuzzer's closing line, `Done 123456 runs in 10 second(s)`: the inputs run and the seconds.
fn done_line(log: &str) -> Option<(u64, f64)> {
    let line = log.lines().rev().find(|line| line.starts_with("Done ") && line.contains(" runs in "))?;
    let mut words = line.split_whitespace();
    let runs = words.nth(1)?.parse().ok()?;
    let seconds = words.nth(2)?.parse().ok()?;
    Some((runs, seconds))
}

/// The regular files of `dir` (none if it does not exist), hidden ones left out, sorted.
fn files_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("can't list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if path.is_file() && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The caller's `CARGO_TARGET_DIR`, else the workspace's `target/` (the fuzz crate is a
/// workspace of its own, whose default would be `fuzz/target/`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root.join("target"), |dir| root.join(PathBuf::from(dir)))
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc).arg("-vV").output().with_context(|| format!("can't run `{rustc} -vV`"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .with_context(|| format!("`{rustc} -vV` names no host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_targets_and_a_budget() {
        let all: Vec<String> = TARGETS.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(parse(&args(&[])), Ok((all.clone(), DEFAULT_BUDGET)));
        assert_eq!(parse(&args(&["--runs", "1000000"])), Ok((all, Budget::Runs(1_000_000))));
        assert_eq!(
            parse(&args(&["split", "mcp", "split", "--seconds", "30"])),
            Ok((args(&["split", "mcp"]), Budget::Seconds(30)))
        );
    }

    #[test]
    fn rejects_unknown_targets_and_bad_budgets() {
        assert!(parse(&args(&["splat"])).unwrap_err().contains("`splat`"));
        assert!(parse(&args(&["--seconds"])).unwrap_err().contains("needs a number"));
        assert!(parse(&args(&["--runs", "many"])).unwrap_err().contains("`many`"));
        assert!(parse(&args(&["--runs", "0"])).is_err());
        assert!(parse(&args(&["--runs", "5", "--seconds", "5"])).is_err());
    }

    #[test]
    fn reads_the_closing_line() {
        let log = "#1000\tDONE   cov: 12 ft: 30 corp: 4/20b exec/s: 500 rss: 40Mb\nDone 1000 runs in 2 second(s)\n";
        assert_eq!(done_line(log), Some((1000, 2.0)));
        assert_eq!(done_line("INFO: Seed: 1\n"), None);
    }

    /// The table above and the fuzz crate's binaries name the same targets, each with a seed
    /// corpus.
    #[test]
    fn every_target_is_a_binary_of_the_fuzz_crate_with_seeds() {
        let root = crate::project_root();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|section| section.lines().find_map(|line| line.strip_prefix("name = ")))
            .map(|name| name.trim().trim_matches('"'))
            .collect();
        assert_eq!(bins, TARGETS, "fuzz/Cargo.toml's [[bin]]s");
        for target in TARGETS {
            let seeds = files_in(&root.join("fuzz/corpus").join(target)).unwrap();
            assert!(!seeds.is_empty(), "no seeds in fuzz/corpus/{target}");
        }
    }
}

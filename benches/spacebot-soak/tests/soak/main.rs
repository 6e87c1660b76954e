//! `cargo xtask soak`: the real `spacebot` binary against a fake model with delays, stopped with
//! `kill -9` or SIGTERM at seeded moments (before the reply, mid-turn, mid-worker,
//! mid-compaction, mid-memory-save) and restarted, then checked: every accepted message answered
//! exactly once, every settled background result relayed (or its interruption told) once, no
//! work run twice, `PRAGMA integrity_check` on both databases, live memories = vectors =
//! full-text rows, no model call while idle, no panic, a clean final stop. An HTTP fuzz pass
//! (hostile bodies, slow and idle connections) runs first.
//!
//! ```text
//! cargo test -p spacebot-soak --test soak -- [--seed N] [--trials N] [--trial T] [--stops N]
//!     [--messages N] [--idle-ms N] [--fuzz N] [--bin PATH]
//! ```
//!
//! It prints one line per trial and a summary table, and exits non-zero on any violation, naming
//! the seed and trial that reproduce it. Without `--bin` it runs the `spacebot` next to its own
//! executable's directory (`target/debug`), which `cargo xtask soak` builds first.

mod check;
mod daemon;
mod fuzz;
mod model;
mod rng;
mod trial;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::rng::Rng;
use crate::trial::{MOMENTS, Outcome, Settings, Signal};

/// The parsed command line.
#[derive(Debug)]
struct Args {
    seed: u64,
    trials: u64,
    only: Option<u64>,
    fuzz: u64,
    settings: Settings,
}

const USAGE: &str =
    "usage: soak [--seed N] [--trials N] [--trial T] [--stops N] [--messages N] [--idle-ms N] [--fuzz N] [--bin PATH]";

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args {
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs()),
        trials: 20,
        only: None,
        fuzz: 300,
        settings: Settings { binary: default_binary()?, stops: 2, messages: 6, idle: Duration::from_millis(1500) },
    };
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| anyhow!("`{flag}` needs a value\n{USAGE}"));
        let number = |text: &String| text.parse::<u64>().map_err(|_| anyhow!("`{flag}` takes a number, got `{text}`"));
        match flag.as_str() {
            "--seed" => parsed.seed = number(value()?)?,
            "--trials" => parsed.trials = number(value()?)?,
            "--trial" => parsed.only = Some(number(value()?)?),
            "--fuzz" => parsed.fuzz = number(value()?)?,
            "--stops" => parsed.settings.stops = u32::try_from(number(value()?)?)?,
            "--messages" => parsed.settings.messages = u32::try_from(number(value()?)?)?.max(1),
            "--idle-ms" => parsed.settings.idle = Duration::from_millis(number(value()?)?),
            "--bin" => parsed.settings.binary = PathBuf::from(value()?),
            // What cargo's test runner may pass along.
            "--nocapture" | "--quiet" | "-q" => {}
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if !parsed.settings.binary.is_file() {
        bail!(
            "no spacebot binary at {}: build it first (`cargo build -p spacebot`) or pass --bin",
            parsed.settings.binary.display()
        );
    }
    Ok(parsed)
}

/// `target/<profile>/spacebot`: this executable lives in `target/<profile>/deps`.
fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("can't find the soak executable")?;
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).ok_or_else(|| anyhow!("odd executable path"))?;
    Ok(profile_dir.join(format!("spacebot{}", std::env::consts::EXE_SUFFIX)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|args| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(soak(args))
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the fuzz pass and the trials; true when nothing was violated.
async fn soak(args: Args) -> anyhow::Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    println!("soak: seed {} ({} trials, binary {})", args.seed, args.trials, args.settings.binary.display());
    let mut clean = true;
    if args.fuzz > 0 && args.only.is_none() {
        let report = fuzz::run(&args.settings.binary, args.fuzz, Rng::for_trial(args.seed, u64::MAX)).await?;
        println!(
            "fuzz: {} requests in {:.1}s: {} 2xx, {} 4xx, {} 5xx, {} not JSON, {} unanswered; {} slow clients, {} idle \
             connections",
            report.requests,
            report.elapsed.as_secs_f64(),
            report.answered_2xx,
            report.answered_4xx,
            report.server_errors,
            report.not_json,
            report.unanswered,
            report.slow_clients,
            report.idle_connections
        );
        for violation in &report.violations {
            println!("  VIOLATION {violation}");
        }
        if !report.violations.is_empty() {
            clean = false;
            println!("  reproduce: cargo xtask soak --seed {} --trials 0", args.seed);
        }
    }
    let trials: Vec<u64> = match args.only {
        Some(trial) => vec![trial],
        None => (0..args.trials).collect(),
    };
    let mut outcomes = Vec::new();
    for trial in trials {
        let outcome = trial::run(&args.settings, trial, Rng::for_trial(args.seed, trial)).await?;
        let violations = outcome.violations();
        let stops: Vec<String> = outcome
            .stops
            .iter()
            .map(|stop| {
                let signal = if stop.signal == Signal::Kill { "kill -9" } else { "SIGTERM" };
                let missed = if stop.hit { "" } else { " (moment not reached)" };
                format!("{signal} {}{missed}", stop.moment.name())
            })
            .collect();
        println!(
            "trial {trial}: {:.1}s, {}, {} accepted, {} model calls ({} compaction); {}: {}",
            outcome.elapsed.as_secs_f64(),
            if outcome.chronicle { "chronicle" } else { "rolling" },
            outcome.accepted,
            outcome.model_calls,
            outcome.calls.compaction,
            stops.join(", "),
            if violations.is_empty() { "ok".to_owned() } else { format!("{} violation(s)", violations.len()) }
        );
        for violation in &violations {
            println!("  VIOLATION {violation}");
        }
        if !violations.is_empty() {
            clean = false;
            println!("  reproduce: cargo xtask soak --seed {} --trial {trial}", args.seed);
            if let Some(kept) = &outcome.kept {
                println!("  kept: {}", trial::describe_kept(kept));
            }
        }
        outcomes.push(outcome);
    }
    summary(&outcomes, started.elapsed());
    Ok(clean)
}

/// The totals, one row per thing counted.
fn summary(outcomes: &[Outcome], elapsed: Duration) {
    let sum = |f: &dyn Fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let stops = sum(&|o| u64::try_from(o.stops.len()).unwrap_or(0));
    let kills = sum(&|o| u64::try_from(o.stops.iter().filter(|s| s.signal == Signal::Kill).count()).unwrap_or(0));
    let rows: Vec<(String, u64)> = vec![
        ("trials".to_owned(), u64::try_from(outcomes.len()).unwrap_or(0)),
        (format!("stops (kill -9 {kills}, SIGTERM {})", stops - kills), stops),
        ("messages accepted".to_owned(), sum(&|o| o.accepted)),
        ("  answered exactly once".to_owned(), sum(&|o| o.findings.answered_once)),
        ("  unanswered".to_owned(), sum(&|o| o.findings.unanswered)),
        ("  lost from the log".to_owned(), sum(&|o| o.findings.lost)),
        ("  answered twice (duplicates)".to_owned(), sum(&|o| o.findings.answered_twice)),
        ("background results settled".to_owned(), sum(&|o| o.findings.settled)),
        ("  relayed or told once".to_owned(), sum(&|o| o.findings.relayed_once)),
        ("  never relayed or told".to_owned(), sum(&|o| o.findings.not_relayed)),
        ("  relayed twice".to_owned(), sum(&|o| o.findings.relayed_twice)),
        ("  left unsettled".to_owned(), sum(&|o| o.findings.unsettled)),
        ("work run twice".to_owned(), sum(&|o| o.findings.run_twice)),
        ("idle model calls".to_owned(), sum(&|o| o.idle_calls)),
        ("integrity failures".to_owned(), sum(&|o| o.findings.integrity_failures)),
        ("memory row mismatches".to_owned(), sum(&|o| o.findings.memory_mismatch)),
        ("memories saved".to_owned(), sum(&|o| o.findings.memories)),
        ("panics".to_owned(), sum(&|o| o.panics)),
        ("unclean final stops".to_owned(), sum(&|o| o.unclean_exit)),
        ("trials that did not settle".to_owned(), sum(&|o| o.not_quiet)),
        ("model calls".to_owned(), sum(&|o| o.model_calls)),
        ("  compaction (summaries, cuts, rollups)".to_owned(), sum(&|o| o.calls.compaction)),
        ("  memory saves (branches)".to_owned(), sum(&|o| o.calls.memory_saves)),
        ("  workers".to_owned(), sum(&|o| o.calls.workers)),
        ("  relay turns".to_owned(), sum(&|o| o.calls.relays)),
    ];
    println!("\nsoak summary ({:.1}s)", elapsed.as_secs_f64());
    for (label, value) in rows {
        println!("  {label:<40} {value:>7}");
    }
    let mut line = String::from("  stops by moment:");
    for moment in MOMENTS {
        let at: Vec<_> = outcomes.iter().flat_map(|o| &o.stops).filter(|s| s.moment == *moment).collect();
        let hit = at.iter().filter(|s| s.hit).count();
        line.push_str(&format!(" {} {}/{};", moment.name(), hit, at.len()));
    }
    println!("{line} (reached/planned)");
}

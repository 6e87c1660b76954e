//! `cargo xtask ci`: the checks a change must pass, in the order that fails fastest.
//!
//! After the tests come the fuzz crate's lint and a short run of every fuzz target, then the
//! soak, whose test summary closes the output.
//!
//! Besides the default build (the local models included), the steps lint the build without its
//! default features and the API docs: a broken intra-doc link fails the run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The default build runs the local models in-process with candle (`spacebot`'s default features
/// turn on `spacebot-memory/local-embeddings` and `spacebot-llm/local-model`, and cargo unifies
/// them across the workspace, so the workspace steps lint and test both). The build without them,
/// for a smaller binary, is linted on its own.
const NO_DEFAULT_FEATURES_CLIPPY: &[&str] =
    &["clippy", "-p", "spacebot", "--all-targets", "--no-default-features", "--", "-D", "warnings"];

/// The soak harness and the fleet measurement are test targets that run only when selected
/// (`test = false`), which `--all-targets` skips too; they are linted by name.
const SOAK_CLIPPY: &[&str] =
    &["clippy", "-p", "spacebot-soak", "--test", "soak", "--test", "fleet", "--", "-D", "warnings"];

/// The API docs, with every rustdoc warning (a link to nothing, say) an error.
const DOC: &[&str] = &["doc", "--workspace", "--no-deps"];
const DOC_ENV: (&str, &str) = ("RUSTDOCFLAGS", "-D warnings");

/// The fuzz crate is a workspace of its own (so the steps above never build libFuzzer); it is
/// linted by its manifest.
const FUZZ_CLIPPY: &[&str] = &["clippy", "--manifest-path", "fuzz/Cargo.toml", "--all-targets", "--", "-D", "warnings"];

/// The fuzz targets' short run, after the tests: each target's regressions, then this many
/// seconds of coverage-guided fuzzing per target (`cargo xtask fuzz`; the long runs are in
/// `docs/security.md`).
const FUZZ_SECONDS: u64 = 10;

/// The soak harness's short form, after the tests: 20 trials of kills and restarts of the real
/// binary and an HTTP fuzz pass (about two and a half minutes on two cores). The seed is fixed so
/// CI is repeatable (the moments of the kills still vary with scheduling); other seeds are for
/// runs by hand (`cargo xtask soak --seed N`), and a violation names the seed and trial that
/// reproduce it.
const SOAK_ARGS: &[&str] = &["--seed", "17", "--trials", "20", "--fuzz", "300"];

/// Runs fmt, clippy, the docs, the tests, the fuzz lint and short run, and the short soak,
/// stopping at the first failure.
///
/// The tidy rules need no step of their own: they run as the `tidy` test in `xtask`.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    let mut steps: Vec<&[&str]> = vec![
        &["fmt", "--all", "--", "--check"],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        SOAK_CLIPPY,
        NO_DEFAULT_FEATURES_CLIPPY,
        DOC,
    ];
    if nextest_available(&cargo, root) {
        // nextest runs each test in its own process but skips doctests, so those run apart,
        // first: the workspace run's summary line then closes the output, where CI reads the
        // test count.
        steps.push(&["test", "--workspace", "--doc"]);
        steps.push(&["nextest", "run", "--workspace", "--no-tests", "fail"]);
    } else {
        steps.push(&["test", "--workspace"]);
    }
    steps.push(FUZZ_CLIPPY);

    let started = Instant::now();
    for args in &steps {
        let shown = if *args == DOC {
            format!("{}=\"{}\" cargo {}", DOC_ENV.0, DOC_ENV.1, args.join(" "))
        } else {
            format!("cargo {}", args.join(" "))
        };
        println!("==> {shown}");
        let step_started = Instant::now();
        let mut command = Command::new(&cargo);
        command.args(*args).current_dir(root);
        if *args == DOC {
            command.env(DOC_ENV.0, DOC_ENV.1);
        }
        let status = command.status().with_context(|| format!("can't run `{shown}`"))?;
        let took = step_started.elapsed().as_secs_f64();
        if !status.success() {
            bail!("`{shown}` failed after {took:.1}s ({status})");
        }
        println!("==> {shown}: ok in {took:.1}s");
    }
    let shown = format!("cargo xtask fuzz --seconds {FUZZ_SECONDS}");
    println!("==> {shown}");
    let fuzz_started = Instant::now();
    let targets: Vec<String> = crate::fuzz::TARGETS.iter().map(|name| (*name).to_owned()).collect();
    if !crate::fuzz::run(root, &targets, crate::fuzz::Budget::Seconds(FUZZ_SECONDS))? {
        bail!("`{shown}` failed after {:.1}s", fuzz_started.elapsed().as_secs_f64());
    }
    println!("==> {shown}: ok in {:.1}s", fuzz_started.elapsed().as_secs_f64());
    let shown = format!("cargo xtask soak {}", SOAK_ARGS.join(" "));
    println!("==> {shown}");
    let soak_started = Instant::now();
    let args: Vec<String> = SOAK_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
    if !crate::soak(root, &args)? {
        bail!("`{shown}` failed after {:.1}s", soak_started.elapsed().as_secs_f64());
    }
    println!("==> {shown}: ok in {:.1}s", soak_started.elapsed().as_secs_f64());
    println!("ci: {} steps passed in {:.1}s", steps.len() + 2, started.elapsed().as_secs_f64());
    Ok(())
}

fn nextest_available(cargo: &str, root: &Path) -> bool {
    Command::new(cargo)
        .args(["nextest", "--version"])
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

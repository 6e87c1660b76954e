//! `cargo xtask ci`: the checks a change must pass, in the order that fails fastest.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// Runs fmt, clippy and the tests, stopping at the first failure.
///
/// The tidy rules need no step of their own: they run as the `tidy` test in `xtask`.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let cargo = crate::cargo();
    let mut steps: Vec<&[&str]> =
        vec![&["fmt", "--all", "--", "--check"], &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]];
    if nextest_available(&cargo, root) {
        // nextest runs each test in its own process but skips doctests, so those run apart,
        // first: nextest's summary line then closes the output, where CI reads the test count.
        steps.push(&["test", "--workspace", "--doc"]);
        steps.push(&["nextest", "run", "--workspace", "--no-tests", "fail"]);
    } else {
        steps.push(&["test", "--workspace"]);
    }

    let started = Instant::now();
    for args in &steps {
        let shown = format!("cargo {}", args.join(" "));
        println!("==> {shown}");
        let step_started = Instant::now();
        let status = Command::new(&cargo)
            .args(*args)
            .current_dir(root)
            .status()
            .with_context(|| format!("can't run `{shown}`"))?;
        let took = step_started.elapsed().as_secs_f64();
        if !status.success() {
            bail!("`{shown}` failed after {took:.1}s ({status})");
        }
        println!("==> {shown}: ok in {took:.1}s");
    }
    println!("ci: {} steps passed in {:.1}s", steps.len(), started.elapsed().as_secs_f64());
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

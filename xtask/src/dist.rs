//! `cargo xtask dist`: builds the binary to ship (cargo profile `dist`: fat LTO, one codegen
//! unit, symbols stripped, panics unwinding) with the default features (every adapter and the
//! local models), then prints where it is and its size beside the target.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The size the shipped binary should stay within, in bytes (30 MB).
pub(crate) const TARGET_BYTES: u64 = 30_000_000;

/// Builds and measures the binary; whether it is within [`TARGET_BYTES`].
pub(crate) fn run(root: &Path) -> anyhow::Result<bool> {
    let status = Command::new(crate::cargo())
        .current_dir(root)
        .args(["build", "--locked", "--profile", "dist", "--package", "spacebot"])
        .status()
        .context("can't run cargo")?;
    if !status.success() {
        bail!("`cargo build --profile dist --package spacebot` failed");
    }
    let binary = target_dir(root)?.join("dist").join("spacebot");
    let bytes = std::fs::metadata(&binary).with_context(|| format!("can't read {}", binary.display()))?.len();
    println!("{}", report(&binary, bytes));
    Ok(bytes <= TARGET_BYTES)
}

/// One line: the path, the size in bytes and MB, and how it stands against the target.
fn report(binary: &Path, bytes: u64) -> String {
    let verdict = if bytes <= TARGET_BYTES { "within" } else { "OVER" };
    format!(
        "dist: {} is {bytes} bytes ({:.1} MB), {verdict} the {:.0} MB target",
        binary.display(),
        to_mb(bytes),
        to_mb(TARGET_BYTES)
    )
}

fn to_mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The build directory cargo uses here (`CARGO_TARGET_DIR`, a config's `build.target-dir`, or
/// `target/`), as `cargo metadata` reports it.
fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(crate::cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("can't run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).context("cargo metadata's output")?;
    metadata["target_directory"].as_str().map(PathBuf::from).context("cargo metadata names no target directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_how_the_size_stands() {
        let path = Path::new("/t/dist/spacebot");
        assert_eq!(
            report(path, 24_300_000),
            "dist: /t/dist/spacebot is 24300000 bytes (24.3 MB), within the 30 MB target"
        );
        assert!(report(path, 30_000_001).contains("OVER the 30 MB target"));
    }
}

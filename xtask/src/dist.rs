//! `cargo xtask dist`: builds the binary to ship (cargo profile `dist`: fat LTO, one codegen
//! unit, symbols stripped, panics unwinding) with the default features (every adapter and the
//! local models), then prints where it is, its size beside the target, and whether it is
//! position-independent (the default) or linked at a fixed address (`SPACEBOT_NO_PIE=1`).

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
    if let Some(layout) = layout(&binary)? {
        println!("dist: {layout}");
    }
    Ok(bytes <= TARGET_BYTES)
}

/// How an ELF binary is loaded, from the type in its header: at a fixed address (`EXEC`, built
/// with `SPACEBOT_NO_PIE=1`) or anywhere (`DYN`, position-independent). `None` for a file that is
/// not a little-endian ELF binary (another platform's format).
fn layout(binary: &Path) -> anyhow::Result<Option<&'static str>> {
    use std::io::Read;
    let mut header = [0u8; 18];
    std::fs::File::open(binary)
        .and_then(|mut file| file.read_exact(&mut header))
        .with_context(|| format!("can't read the header of {}", binary.display()))?;
    Ok(elf_layout(&header))
}

fn elf_layout(header: &[u8; 18]) -> Option<&'static str> {
    // The magic, then EI_DATA (byte 5) 1 for little-endian; e_type is the u16 at byte 16.
    if header[..4] != *b"\x7fELF" || header[5] != 1 {
        return None;
    }
    match u16::from_le_bytes([header[16], header[17]]) {
        2 => Some("linked at a fixed address (EXEC, as `SPACEBOT_NO_PIE=1` builds it)"),
        3 => Some("position-independent (DYN)"),
        _ => None,
    }
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

    #[test]
    fn the_layout_is_read_from_the_elf_type() {
        let header = |kind: u8| {
            let mut header = [0u8; 18];
            header[..4].copy_from_slice(b"\x7fELF");
            header[4] = 2;
            header[5] = 1;
            header[16] = kind;
            header
        };
        assert_eq!(elf_layout(&header(3)), Some("position-independent (DYN)"));
        assert!(elf_layout(&header(2)).is_some_and(|layout| layout.contains("fixed address")));
        assert_eq!(elf_layout(&header(1)), None, "a relocatable object is neither");
        let mut big_endian = header(3);
        big_endian[5] = 2;
        assert_eq!(elf_layout(&big_endian), None);
        assert_eq!(elf_layout(&[0u8; 18]), None);
    }

    #[test]
    fn this_test_binary_is_an_elf_binary_of_a_known_layout() {
        // The binary running this test is built like any other of the workspace.
        let me = std::env::current_exe().expect("the test binary's path");
        if cfg!(target_os = "linux") {
            assert!(layout(&me).expect("its header").is_some(), "{} is not a recognised ELF binary", me.display());
        }
    }
}

//! Links the daemon's binary with packed relative relocations (`-z pack-relative-relocs`,
//! `DT_RELR`) where the C library it will run on reads them.
//!
//! The binary is position-independent, so every pointer in its read-only data (vtables, string
//! tables, the many `&'static` values) is fixed up by the loader at start. Listed one by one
//! (`.rela.dyn`, 24 bytes each) they take about 2 MB of the file, which the loader reads, so they
//! are also about 2 MB of the resident set of an idle daemon. Packed, they take a few kilobytes.
//! glibc reads packed relocations from 2.36 on and refuses to load a binary that has them when it
//! is older, so the flag is given only when the binary is built for the machine that builds it
//! and that machine's glibc is new enough. See docs/deploy.md, "The binary to ship".
//!
//! `SPACEBOT_NO_PIE=1` links the binary at a fixed address instead (`-no-pie`, Linux only): the
//! linker then resolves those pointers and the loader has none to apply, so a start is about
//! 2.4 ms sooner and an idle daemon holds about 1.8 MiB less (docs/benchmarks.md), at the cost of
//! address-space randomisation of the daemon's own code and data. Opt-in, for that reason.

use std::env;
use std::process::Command;

/// The first glibc that reads `DT_RELR`.
const GLIBC_WITH_RELR: (u32, u32) = (2, 36);

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SPACEBOT_NO_PACKED_RELOCS");
    println!("cargo::rerun-if-env-changed=SPACEBOT_NO_PIE");
    if env::var_os("SPACEBOT_NO_PIE").is_some() && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // After rustc's own `-pie`, so the linker driver takes this one. Nothing to pack then.
        println!("cargo::rustc-link-arg-bins=-no-pie");
        return;
    }
    if env::var_os("SPACEBOT_NO_PACKED_RELOCS").is_some() {
        return;
    }
    let target_is_linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = env::var("TARGET").ok().is_some_and(|target| env::var("HOST").ok() == Some(target));
    if !(target_is_linux_gnu && native) {
        return;
    }
    match host_glibc() {
        Some(version) if version >= GLIBC_WITH_RELR => {
            println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        }
        Some((major, minor)) => println!(
            "cargo::warning=glibc {major}.{minor} predates packed relocations (2.36): the binary keeps \
             its relocations unpacked, about 2 MB larger"
        ),
        None => {}
    }
}

/// The version of the glibc this machine runs, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn host_glibc() -> Option<(u32, u32)> {
    let output = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    if !output.status.success() {
        return None;
    }
    parse_glibc(std::str::from_utf8(&output.stdout).ok()?)
}

fn parse_glibc(text: &str) -> Option<(u32, u32)> {
    let version = text.trim().strip_prefix("glibc ")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

//! The binary itself: how it is linked (see `bins/spacebot/build.rs`).

use std::process::Command;

/// The glibc of this machine, from `getconf GNU_LIBC_VERSION`; `None` off glibc.
fn glibc() -> Option<(u32, u32)> {
    let output = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
}

/// On a glibc that reads packed relocations (2.36 on), the daemon is linked with them: its
/// relocations take kilobytes of the file instead of about 2 MB, which the loader would read at
/// every start.
#[test]
fn the_binary_packs_its_relocations_where_glibc_reads_them() {
    let reads_packed = cfg!(all(target_os = "linux", target_env = "gnu")) && glibc().is_some_and(|v| v >= (2, 36));
    if !reads_packed {
        eprintln!("skipped: this machine's C library does not read packed relocations");
        return;
    }
    let binary = env!("CARGO_BIN_EXE_spacebot");
    let output = Command::new("readelf").args(["--dynamic", "--wide", binary]).output().expect("run readelf");
    assert!(output.status.success(), "readelf: {}", String::from_utf8_lossy(&output.stderr));
    let dynamic = String::from_utf8_lossy(&output.stdout);
    assert!(dynamic.contains("(RELR)"), "{binary} has no packed relocations:\n{dynamic}");

    let output = Command::new("readelf").args(["--section-headers", "--wide", binary]).output().expect("run readelf");
    let sections = String::from_utf8_lossy(&output.stdout);
    let rela_dyn = sections
        .lines()
        .find(|line| line.contains(" .rela.dyn "))
        .and_then(|line| line.split_whitespace().skip_while(|field| *field != ".rela.dyn").nth(4))
        .and_then(|size| u64::from_str_radix(size, 16).ok());
    // Unpacked, the debug build's list is several megabytes; what stays is the few relocations
    // that are not relative (symbols from the C library).
    assert!(rela_dyn.is_none_or(|bytes| bytes < 256 * 1024), "{binary}'s .rela.dyn is {rela_dyn:?} bytes");
}

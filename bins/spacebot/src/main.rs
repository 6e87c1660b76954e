//! `spacebot`: the daemon and its command line.
//!
//! Everything lives in the library (`src/lib.rs`), so the daemon can also be assembled
//! in-process by tests and embedders; this file only hands over to it.

fn main() -> std::process::ExitCode {
    spacebot::main()
}

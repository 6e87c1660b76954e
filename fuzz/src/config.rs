//! Config files: any bytes written as the config and loaded through the daemon's own loader.

use std::cell::RefCell;
use std::path::PathBuf;

use spacebot::{Config, Location};

thread_local! {
    /// One scratch directory for the whole run: the data dir, holding the config file.
    static SCRATCH: RefCell<Option<(tempfile::TempDir, PathBuf)>> = const { RefCell::new(None) };
}

/// Writes `data` as `config.toml` and loads it with [`Config::load`] (the data dir overridden,
/// as `--data-dir` does): it loads or fails with an error that says something, and never panics.
pub fn check_config(data: &[u8]) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let (dir, path) = scratch.get_or_insert_with(|| {
            // In memory where the system has a tmpfs: a file written to disk on every input
            // costs more than the loading under test.
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
            let dir = dir.expect("a scratch directory for the config");
            let path = dir.path().join("config.toml");
            (dir, path)
        });
        std::fs::write(&*path, data).expect("the config file is written");
        let location = Location::new().with_config(path.clone()).with_data_dir(dir.path());
        if let Err(error) = Config::load(&location) {
            assert!(!format!("{error:#}").trim().is_empty(), "an error without a message");
        }
    });
}

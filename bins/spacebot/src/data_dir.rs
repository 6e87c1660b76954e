//! The data directory and what the daemon keeps in it, in one place: every subcommand asks
//! [`DataDir`] for a path instead of joining names itself.
//!
//! ```text
//! DATA_DIR/
//!   config.toml               read when no --config is given
//!   spacebot.db               the conversation log (messages, process runs, checkpoints)
//!   agents/<agent>/memory.db  each agent's memory
//!   workspaces/<agent>/       where each agent's workers read and write files
//! ```

use std::path::{Path, PathBuf};

/// The data directory's layout (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The config file read when none is named.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The conversation log's database.
    pub fn log_db(&self) -> PathBuf {
        self.root.join("spacebot.db")
    }

    /// The memory database of `agent`.
    pub fn memory_db(&self, agent: &str) -> PathBuf {
        self.root.join("agents").join(agent).join("memory.db")
    }

    /// The workspace `agent`'s workers are confined to.
    pub fn workspace(&self, agent: &str) -> PathBuf {
        self.root.join("workspaces").join(agent)
    }
}

impl std::fmt::Display for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.root.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_lives_under_the_root() {
        let dir = DataDir::new("/srv/spacebot");
        assert_eq!(dir.config_file(), Path::new("/srv/spacebot/config.toml"));
        assert_eq!(dir.log_db(), Path::new("/srv/spacebot/spacebot.db"));
        assert_eq!(dir.memory_db("ops"), Path::new("/srv/spacebot/agents/ops/memory.db"));
        assert_eq!(dir.workspace("ops"), Path::new("/srv/spacebot/workspaces/ops"));
        assert_eq!(dir.to_string(), "/srv/spacebot");
    }
}

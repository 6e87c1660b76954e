//! The data directory and what the daemon keeps in it, in one place: every subcommand asks
//! [`DataDir`] for a path instead of joining names itself.
//!
//! ```text
//! DATA_DIR/
//!   config.toml               read when no --config is given
//!   secrets.json              the secret store (values encrypted; `spacebot secrets`)
//!   master.key                the secret store's key, unless SPACEBOT_MASTER_KEY is set
//!   api-tokens.json           scoped API tokens, as SHA-256 digests (`spacebot tokens`)
//!   spacebot.db               the conversation log (messages, process runs, checkpoints)
//!   agents/<agent>/memory.db  each agent's memory
//!   agents/<agent>/SOUL.md    its identity files (also IDENTITY.md, USER.md), unless
//!                             agents[].identity_dir puts them elsewhere
//!   workspaces/<agent>/       where each agent's workers read and write files
//! ```
//!
//! [`DataDir::check`] says, without changing anything, whether the daemon could use it (it is a
//! writable directory, or one can be created there); `spacebot config check` and `spacebot
//! start` both ask it, and [`DataDir::create`] makes it.

use std::fmt;
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

    /// The secret store.
    pub fn secrets_file(&self) -> PathBuf {
        self.root.join("secrets.json")
    }

    /// The secret store's key file.
    pub fn master_key_file(&self) -> PathBuf {
        self.root.join("master.key")
    }

    /// The scoped API tokens' file (digests only).
    pub fn api_tokens_file(&self) -> PathBuf {
        self.root.join("api-tokens.json")
    }

    /// The directory of `agent`: its memory, and its identity files unless configured elsewhere.
    pub fn agent_dir(&self, agent: &str) -> PathBuf {
        self.root.join("agents").join(agent)
    }

    /// The memory database of `agent`.
    pub fn memory_db(&self, agent: &str) -> PathBuf {
        self.agent_dir(agent).join("memory.db")
    }

    /// The workspace `agent`'s workers are confined to.
    pub fn workspace(&self, agent: &str) -> PathBuf {
        self.root.join("workspaces").join(agent)
    }
}

impl DataDir {
    /// Whether the daemon could use the directory: it is a writable directory, or it can be
    /// created. Probes by creating (and removing) an entry; changes nothing else.
    ///
    /// # Errors
    ///
    /// Why it can't be used.
    pub fn check(&self) -> Result<(), Unusable> {
        if self.root.exists() {
            if !self.root.is_dir() {
                return Err(Unusable::NotADirectory);
            }
            return probe(&self.root, false).map_err(Unusable::NotWritable);
        }
        // The nearest ancestor that exists is where `create` would start making directories.
        let ancestor = self
            .root
            .ancestors()
            .skip(1)
            .map(|dir| if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
            .find(|dir| dir.exists())
            .unwrap_or(Path::new("/"));
        if !ancestor.is_dir() {
            return Err(Unusable::CantCreate(
                ancestor.to_path_buf(),
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        probe(ancestor, true).map_err(|error| Unusable::CantCreate(ancestor.to_path_buf(), error))
    }

    /// Creates the directory (and its parents) if it does not exist.
    ///
    /// # Errors
    ///
    /// Why it can't be created.
    pub fn create(&self) -> Result<(), Unusable> {
        std::fs::create_dir_all(&self.root).map_err(|error| Unusable::CantCreate(self.root.clone(), error))
    }
}

/// Creates and removes an entry in `dir`: a directory when `as_dir`, else a file.
fn probe(dir: &Path, as_dir: bool) -> std::io::Result<()> {
    let name = format!(".spacebot-probe-{}-{}", std::process::id(), if as_dir { "dir" } else { "file" });
    let path = dir.join(name);
    if as_dir {
        std::fs::create_dir(&path)?;
        std::fs::remove_dir(&path)
    } else {
        std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)
    }
}

/// Why the daemon can't use a data directory; completes a sentence that starts with the
/// directory ("data dir /x can't be created in /: ...").
#[derive(Debug)]
#[non_exhaustive]
pub enum Unusable {
    /// Something that is not a directory is in the way.
    NotADirectory,
    /// It exists but nothing can be written in it.
    NotWritable(std::io::Error),
    /// It does not exist and can't be made in this directory.
    CantCreate(PathBuf, std::io::Error),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADirectory => f.write_str("is not a directory"),
            Self::NotWritable(error) => write!(f, "is not writable: {error}"),
            Self::CantCreate(dir, error) => write!(f, "can't be created in {}: {error}", dir.display()),
        }
    }
}

impl std::error::Error for Unusable {}

impl fmt::Display for DataDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

    #[test]
    fn a_dir_that_exists_or_can_be_made_is_usable_and_checking_changes_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        DataDir::new(scratch.path()).check().unwrap();
        let deep = DataDir::new(scratch.path().join("a/b/c"));
        deep.check().unwrap();
        assert!(!scratch.path().join("a").exists(), "check created nothing");
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0, "the probe was removed");
        deep.create().unwrap();
        assert!(deep.root().is_dir());
        deep.check().unwrap();
    }

    #[test]
    fn a_file_in_the_way_makes_it_unusable() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(DataDir::new(&file).check().unwrap_err().to_string(), "is not a directory");
        let under = DataDir::new(file.join("data"));
        let error = under.check().unwrap_err().to_string();
        assert!(error.starts_with(&format!("can't be created in {}: ", file.display())), "{error}");
        assert!(under.create().is_err());
    }
}

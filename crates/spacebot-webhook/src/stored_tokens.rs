//! Scoped API tokens kept in the data dir (`DATA_DIR/api-tokens.json`, managed with
//! `spacebot tokens add|list|rm`), stored as SHA-256 digests: the file never holds a token, so a
//! copy of it (a backup, a leaked disk image) lets no one in.
//!
//! A token is 32 random bytes written as `sbt_` and 64 hex digits, so a plain SHA-256 (no slow
//! password hash) is enough: there is no dictionary to guess from. A presented token is hashed
//! once per request and its digest compared with each stored one in constant time.
//!
//! The file is rewritten whole through a temporary file (mode 0600) and a rename, so a crash
//! leaves the old file or the new one. The daemon reads it at start ([`StoredTokens::open`]: a
//! broken file stops the start with the reason) and then notices changes within a second, without
//! a restart ([`StoredTokens::current`]); a file broken later is reported in the log and the
//! tokens read last stay in force until it is fixed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::{Scope, ScopedToken};

/// The token file's format version this build reads and writes.
const VERSION: u32 = 1;

/// How often [`StoredTokens::current`] looks at the file at most.
const RECHECK: Duration = Duration::from_secs(1);

/// What a generated token starts with, so people (and secret scanners) can tell what it is.
pub const TOKEN_PREFIX: &str = "sbt_";

/// Why the token file can't be read, written or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The file exists but can't be read.
    #[error("can't read the token file {}: {error}", path.display())]
    Read {
        /// The token file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file isn't a token file.
    #[error("the token file {} is not valid: {error}", path.display())]
    Parse {
        /// The token file.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
    /// The file was written by another version.
    #[error("the token file {} has version {found}; this spacebot reads version {VERSION}", path.display())]
    Version {
        /// The token file.
        path: PathBuf,
        /// The version it has.
        found: u32,
    },
    /// A token in the file (or one being added) is not well formed.
    #[error("token `{name}` in {}: {problem}", path.display())]
    Invalid {
        /// The token file.
        path: PathBuf,
        /// The token's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A token of that name is already there.
    #[error("a token named `{name}` is already in {}; remove it first with `spacebot tokens rm {name}`", path.display())]
    Exists {
        /// The token file.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// The file can't be written.
    #[error("can't write the token file {}: {error}", path.display())]
    Write {
        /// The token file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// One token as the file keeps it: its digest, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The token's name, for `list`, `rm`, logs and errors.
    pub name: String,
    /// The SHA-256 digest of the token, in hex.
    pub sha256: String,
    /// `webhook`, `read`, `admin`.
    pub scopes: Vec<String>,
    /// The agents it may reach (every agent when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// The senders it may speak as (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
    /// When it was made (RFC 3339).
    pub created: String,
}

/// A token to make: its name and rights.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// At least one.
    pub scopes: Vec<Scope>,
    /// The agents it may reach (every agent when empty).
    pub agents: Vec<String>,
    /// The senders it may speak as (any when empty).
    pub senders: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The token file: read, changed and written back by `spacebot tokens`.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    tokens: Vec<TokenRecord>,
}

impl TokenFile {
    /// Reads the file at `path`; a file that doesn't exist holds no tokens.
    ///
    /// # Errors
    ///
    /// The file can't be read, isn't a token file, or holds a token that isn't well formed.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Self { path, tokens: Vec::new() }),
            Err(error) => return Err(TokenFileError::Read { path, error }),
        };
        let contents: FileContents = match serde_json::from_slice(&bytes) {
            Ok(contents) => contents,
            Err(error) => return Err(TokenFileError::Parse { path, error }),
        };
        if contents.version != VERSION {
            return Err(TokenFileError::Version { path, found: contents.version });
        }
        let file = Self { path, tokens: contents.tokens };
        file.scoped_tokens()?;
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens, in the order they were added.
    pub fn records(&self) -> &[TokenRecord] {
        &self.tokens
    }

    /// Adds `token` with the secret `random` (32 random bytes the caller draws from the
    /// system's generator), made at `created` (RFC 3339), and returns the token to hand over:
    /// it is shown this once and never stored. Call [`TokenFile::save`] to keep it.
    ///
    /// # Errors
    ///
    /// The name is taken or not well formed, or no scope is given.
    pub fn add(&mut self, token: NewToken, random: [u8; 32], created: String) -> Result<String, TokenFileError> {
        let invalid = |problem: &str| TokenFileError::Invalid {
            path: self.path.clone(),
            name: token.name.clone(),
            problem: problem.to_owned(),
        };
        if !valid_name(&token.name) {
            return Err(invalid("a token's name is 1 to 64 letters, digits, '-', '_' or '.'"));
        }
        if token.scopes.is_empty() {
            return Err(invalid("give one or more scopes: `webhook`, `read`, `admin`"));
        }
        if self.tokens.iter().any(|record| record.name == token.name) {
            return Err(TokenFileError::Exists { path: self.path.clone(), name: token.name });
        }
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(random));
        self.tokens.push(TokenRecord {
            name: token.name,
            sha256: hex::encode(digest(&secret)),
            scopes: token.scopes.iter().map(|scope| scope.as_str().to_owned()).collect(),
            agents: token.agents,
            senders: token.senders,
            created,
        });
        Ok(secret)
    }

    /// Removes the token called `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|record| record.name != name);
        self.tokens.len() != before
    }

    /// Writes the file: a private temporary file (mode 0600, its directory created when
    /// missing) renamed over the old one.
    ///
    /// # Errors
    ///
    /// The file can't be written.
    pub fn save(&self) -> Result<(), TokenFileError> {
        let write_error = |error| TokenFileError::Write { path: self.path.clone(), error };
        let contents = FileContents { version: VERSION, tokens: self.tokens.clone() };
        let mut bytes = serde_json::to_vec_pretty(&contents).map_err(|error| write_error(error.into()))?;
        bytes.push(b'\n');
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_error)?;
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temporary = self.path.with_file_name(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary).map_err(write_error)?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(write_error)?;
        std::fs::rename(&temporary, &self.path).map_err(write_error)
    }

    /// The tokens as the API checks them.
    fn scoped_tokens(&self) -> Result<Vec<ScopedToken>, TokenFileError> {
        self.tokens
            .iter()
            .map(|record| {
                let invalid = |problem: String| TokenFileError::Invalid {
                    path: self.path.clone(),
                    name: record.name.clone(),
                    problem,
                };
                let digest = hex::decode(&record.sha256)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| invalid("`sha256` is not 64 hex digits".to_owned()))?;
                if record.scopes.is_empty() {
                    return Err(invalid("it has no scopes".to_owned()));
                }
                let scopes = record
                    .scopes
                    .iter()
                    .map(|scope| {
                        Scope::parse(scope).ok_or_else(|| {
                            invalid(format!("unknown scope `{scope}`; the scopes are `webhook`, `read` and `admin`"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ScopedToken::hashed(record.name.clone(), digest, scopes)
                    .with_agents(record.agents.iter().map(|agent| spacebot_core::AgentId::new(agent.as_str())))
                    .with_senders(record.senders.iter().cloned()))
            })
            .collect()
    }
}

/// The token file as the running daemon sees it: read at start, then looked at again at most
/// once a second, when a request asks for the tokens. Cheap to clone.
#[derive(Clone)]
pub struct StoredTokens {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    tokens: Arc<[Arc<ScopedToken>]>,
    /// What the file looked like when last read (`None`: it didn't exist).
    stamp: Option<Stamp>,
    checked: Instant,
}

/// Enough of a file's metadata to tell that it changed: `save` renames a new file over the old
/// one, so the inode changes with every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self { modified: metadata.modified().ok(), len: metadata.len(), inode })
    }
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl StoredTokens {
    /// Reads the token file at `path` (none there: no tokens yet).
    ///
    /// # Errors
    ///
    /// The file can't be read or is not a valid token file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        let stamp = Stamp::of(&path);
        let tokens = load_tokens(&path)?;
        Ok(Self {
            inner: Arc::new(Inner { path, state: Mutex::new(State { tokens, stamp, checked: Instant::now() }) }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The tokens in force: the file is looked at again when it was last looked at more than a
    /// second ago, and read again when it changed.
    pub fn current(&self) -> Arc<[Arc<ScopedToken>]> {
        self.check(false)
    }

    /// Reads the file again now if it changed, whenever it was last looked at.
    pub fn refresh(&self) -> Arc<[Arc<ScopedToken>]> {
        self.check(true)
    }

    fn check(&self, now: bool) -> Arc<[Arc<ScopedToken>]> {
        // The lock is held for a stat and, when the file changed, a read of a small file; never
        // across an await.
        let mut state = self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !now && state.checked.elapsed() < RECHECK {
            return Arc::clone(&state.tokens);
        }
        state.checked = Instant::now();
        let stamp = Stamp::of(&self.inner.path);
        if stamp != state.stamp {
            state.stamp = stamp;
            match load_tokens(&self.inner.path) {
                Ok(tokens) => {
                    tracing::info!(file = %self.inner.path.display(), tokens = tokens.len(), "API tokens reloaded");
                    state.tokens = tokens;
                }
                Err(error) => tracing::warn!(
                    %error,
                    kept = state.tokens.len(),
                    "the token file changed but can't be used; the tokens read before stay in force"
                ),
            }
        }
        Arc::clone(&state.tokens)
    }
}

fn load_tokens(path: &Path) -> Result<Arc<[Arc<ScopedToken>]>, TokenFileError> {
    Ok(TokenFile::load(path)?.scoped_tokens()?.into_iter().map(Arc::new).collect())
}

/// A token's SHA-256 digest.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_token(name: &str, scopes: &[Scope]) -> NewToken {
        NewToken { name: name.to_owned(), scopes: scopes.to_vec(), agents: Vec::new(), senders: Vec::new() }
    }

    fn file_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("data").join("api-tokens.json")
    }

    #[test]
    fn a_token_is_kept_only_as_its_digest_in_a_private_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_in(&dir);
        let mut file = TokenFile::load(&path).expect("no file yet is no tokens");
        assert!(file.records().is_empty());
        let token = file
            .add(
                NewToken {
                    agents: vec!["main".to_owned()],
                    senders: vec!["ci-bot".to_owned()],
                    ..new_token("ci", &[Scope::Webhook])
                },
                [7; 32],
                "2026-12-06T00:00:00Z".to_owned(),
            )
            .expect("add");
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64, "{token}");
        file.save().expect("save");

        let written = std::fs::read_to_string(&path).expect("read");
        assert!(!written.contains(&token) && !written.contains(&token[TOKEN_PREFIX.len()..]), "{written}");
        assert!(written.contains(&hex::encode(digest(&token))), "{written}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let again = TokenFile::load(&path).expect("load");
        assert_eq!(again.records(), file.records());
        let tokens = StoredTokens::open(&path).expect("open").current();
        assert_eq!(tokens.len(), 1);
        assert!(tokens[0].matches(&token, &digest(&token)));
        assert!(!tokens[0].matches("sbt_wrong", &digest("sbt_wrong")));
    }

    #[test]
    fn names_are_checked_and_unique() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut file = TokenFile::load(file_in(&dir)).expect("load");
        file.add(new_token("ci", &[Scope::Read]), [1; 32], String::new()).expect("add");
        let error = file.add(new_token("ci", &[Scope::Read]), [2; 32], String::new()).expect_err("taken");
        assert!(matches!(error, TokenFileError::Exists { .. }), "{error}");
        for bad in ["", "two words", "a/b", &"x".repeat(65)] {
            assert!(file.add(new_token(bad, &[Scope::Read]), [3; 32], String::new()).is_err(), "{bad:?}");
        }
        assert!(file.add(new_token("none", &[]), [4; 32], String::new()).is_err(), "no scopes");
        assert!(file.remove("ci") && !file.remove("ci"));
    }

    #[test]
    fn a_broken_file_names_itself_and_the_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_in(&dir);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let record = |scope: &str, sha: &str| {
            format!(r#"{{"version":1,"tokens":[{{"name":"ci","sha256":"{sha}","scopes":["{scope}"],"created":""}}]}}"#)
        };
        let good = "ab".repeat(32);
        for (contents, expect) in [
            ("not json".to_owned(), "is not valid"),
            (r#"{"version":2,"tokens":[]}"#.to_owned(), "has version 2"),
            (record("owner", &good), "unknown scope `owner`"),
            (record("read", "abc"), "not 64 hex digits"),
        ] {
            std::fs::write(&path, &contents).expect("write");
            let error = TokenFile::load(&path).expect_err(&contents).to_string();
            assert!(error.contains(expect) && error.contains("api-tokens.json"), "{error}");
            assert!(StoredTokens::open(&path).is_err(), "{contents}");
        }
    }

    #[test]
    fn the_daemon_sees_changes_and_keeps_the_last_good_tokens_over_a_broken_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_in(&dir);
        let stored = StoredTokens::open(&path).expect("no file");
        assert!(stored.current().is_empty());

        let mut file = TokenFile::load(&path).expect("load");
        let first = file.add(new_token("one", &[Scope::Read]), [1; 32], String::new()).expect("add");
        file.save().expect("save");
        let tokens = stored.refresh();
        assert_eq!(tokens.len(), 1);
        assert!(tokens[0].matches(&first, &digest(&first)));

        // Broken by hand: the token read before stays.
        std::fs::write(&path, "{").expect("write");
        let tokens = stored.refresh();
        assert_eq!(tokens.len(), 1, "the last good tokens stay in force");

        // Fixed again, with the token removed: it stops working.
        let mut file = TokenFile { path: path.clone(), tokens: Vec::new() };
        let second = file.add(new_token("two", &[Scope::Webhook]), [2; 32], String::new()).expect("add");
        file.save().expect("save");
        let tokens = stored.refresh();
        assert_eq!(tokens.len(), 1);
        assert!(tokens[0].matches(&second, &digest(&second)) && !tokens[0].matches(&first, &digest(&first)));
    }
}

//! The secret store: named values kept encrypted at rest in `DATA_DIR/secrets.json`, which config
//! values of the form `secret:NAME` read, managed with `spacebot secrets set|list|rm`.
//!
//! Each value is sealed with AES-256-GCM (ring) under a random 96-bit nonce, with the secret's
//! name as associated data, so a value can't be moved to another name unnoticed. The key is
//! `SPACEBOT_MASTER_KEY` (64 hex digits) when set, else `DATA_DIR/master.key`, created on the first
//! `set` with mode 0600. Losing the key loses the secrets; the file alone reveals only their
//! names. The store is rewritten whole through a temporary file and a rename, so a crash leaves
//! the old file or the new one.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::Serialized;
use figment::value::Value;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::cli::{GlobalArgs, SecretsArgs, SecretsCommand};
use crate::data_dir::DataDir;

/// The environment variable that holds the key, as 64 hex digits.
pub(crate) const MASTER_KEY_VAR: &str = "SPACEBOT_MASTER_KEY";

/// What a config value starts with to read a secret.
const PREFIX: &str = "secret:";

const KEY_LEN: usize = 32;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    secrets: BTreeMap<String, Sealed>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    /// Hex.
    nonce: String,
    /// Hex: the ciphertext and its tag.
    value: String,
}

/// The secret store of a data directory.
pub(crate) struct SecretStore {
    file: PathBuf,
    key_file: PathBuf,
}

impl SecretStore {
    pub(crate) fn new(data_dir: &DataDir) -> Self {
        Self { file: data_dir.secrets_file(), key_file: data_dir.master_key_file() }
    }

    fn read(&self) -> anyhow::Result<StoreFile> {
        match std::fs::read(&self.file) {
            Ok(bytes) => {
                let store: StoreFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("the secret store {} is not readable", self.file.display()))?;
                if store.version != 1 {
                    bail!(
                        "the secret store {} has version {}; this spacebot reads version 1",
                        self.file.display(),
                        store.version
                    );
                }
                Ok(store)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(StoreFile { version: 1, ..StoreFile::default() })
            }
            Err(error) => Err(error).with_context(|| format!("can't read the secret store {}", self.file.display())),
        }
    }

    fn write(&self, store: &StoreFile) -> anyhow::Result<()> {
        let temporary = self.file.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(store).context("can't encode the secret store")?;
        write_private(&temporary, &bytes)?;
        std::fs::rename(&temporary, &self.file)
            .with_context(|| format!("can't replace the secret store {}", self.file.display()))
    }

    /// The key: from the environment, else the key file (created when `create` and missing).
    fn key(&self, create: bool) -> anyhow::Result<LessSafeKey> {
        let hex_key = match std::env::var(MASTER_KEY_VAR) {
            Ok(value) => value,
            Err(_) => match std::fs::read_to_string(&self.key_file) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
                    let mut key = [0u8; KEY_LEN];
                    SystemRandom::new().fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness for a new key"))?;
                    let text = hex::encode(key);
                    write_private(&self.key_file, format!("{text}\n").as_bytes())?;
                    eprintln!(
                        "created the secret store's key {} (back it up: without it the secrets can't be read)",
                        self.key_file.display()
                    );
                    text
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                    "the secret store's key is missing: set {MASTER_KEY_VAR} or restore {}",
                    self.key_file.display()
                ),
                Err(error) => {
                    return Err(error).with_context(|| format!("can't read the key {}", self.key_file.display()));
                }
            },
        };
        let bytes = hex::decode(hex_key.trim()).ok().filter(|bytes| bytes.len() == KEY_LEN).with_context(|| {
            format!(
                "the secret store's key must be {} hex digits ({MASTER_KEY_VAR} or {})",
                KEY_LEN * 2,
                self.key_file.display()
            )
        })?;
        let key =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| anyhow::anyhow!("the key is not an AES-256 key"))?;
        Ok(LessSafeKey::new(key))
    }

    /// Stores `value` under `name`, replacing what was there.
    pub(crate) fn set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        check_name(name)?;
        if value.trim().chars().count() < spacebot_core::MIN_SECRET_LEN {
            bail!(
                "secret `{name}` is shorter than {} characters: secrets are scrubbed from everything the agents send, and one this short would scrub ordinary words",
                spacebot_core::MIN_SECRET_LEN
            );
        }
        let key = self.key(true)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut sealed = value.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut sealed)
            .map_err(|_| anyhow::anyhow!("can't encrypt secret `{name}`"))?;
        let mut store = self.read()?;
        store.secrets.insert(name.to_owned(), Sealed { nonce: hex::encode(nonce), value: hex::encode(&sealed) });
        self.write(&store)
    }

    /// The value of `name`, if stored.
    pub(crate) fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        let store = self.read()?;
        let Some(sealed) = store.secrets.get(name) else { return Ok(None) };
        let key = self.key(false)?;
        let broken = || {
            anyhow::anyhow!(
                "secret `{name}` in {} can't be decrypted: the key is not the one it was stored with, or the file was changed",
                self.file.display()
            )
        };
        let nonce: [u8; NONCE_LEN] =
            hex::decode(&sealed.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(broken)?;
        let mut bytes = hex::decode(&sealed.value).ok().ok_or_else(broken)?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut bytes)
            .map_err(|_| broken())?;
        String::from_utf8(plain.to_vec()).map(Some).map_err(|_| broken())
    }

    /// The stored names, sorted.
    pub(crate) fn names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.read()?.secrets.into_keys().collect())
    }

    /// Removes `name`; whether it was there.
    pub(crate) fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let mut store = self.read()?;
        let removed = store.secrets.remove(name).is_some();
        if removed {
            self.write(&store)?;
        }
        Ok(removed)
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!("a secret's name is 1 to 64 letters, digits and underscores, not `{name}`");
    }
    Ok(())
}

/// Writes `bytes` to a new file only its owner can read (mode 0600 on Unix), creating its
/// directory (the data dir, before the daemon first ran) when needed.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("can't create {}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("can't write {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("can't write {}", path.display()))
}

/// Replaces every `secret:NAME` string of the config with the stored value, read from the secret
/// store of `data_dir`, leaving everything else to the config's own checks. A name not in the
/// store is an error naming the key and the secret.
pub(crate) fn resolve_references(figment: Figment, data_dir: &DataDir) -> anyhow::Result<Figment> {
    let Ok(Value::Dict(_, root)) = figment.extract::<Value>() else { return Ok(figment) };
    let mut references = Vec::new();
    collect(&root, "", &mut references);
    if references.is_empty() {
        return Ok(figment);
    }
    let store = SecretStore::new(data_dir);
    let mut figment = figment;
    let mut missing = Vec::new();
    for (key, name) in references {
        match store.get(&name).with_context(|| format!("config key `{key}` names secret `{name}`"))? {
            Some(value) => figment = figment.merge(Serialized::default(&key, value)),
            None => missing.push((key, name)),
        }
    }
    match missing.as_slice() {
        [] => Ok(figment),
        [(key, name)] => bail!(
            "config key `{key}` names secret `{name}`, which is not in the secret store {}: add it with `spacebot secrets set {name}`",
            store.file.display()
        ),
        several => {
            let list: Vec<String> =
                several.iter().map(|(key, name)| format!("`{name}` (config key `{key}`)")).collect();
            bail!(
                "secrets {} are not in the secret store {}: add each with `spacebot secrets set NAME`",
                list.join(", "),
                store.file.display()
            )
        }
    }
}

/// Every `(key, secret name)` under `dict`, keys written dotted from `prefix`.
fn collect(dict: &figment::value::Dict, prefix: &str, out: &mut Vec<(String, String)>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            Value::String(_, text) => {
                if let Some(name) = text.strip_prefix(PREFIX) {
                    out.push((path, name.to_owned()));
                }
            }
            Value::Dict(_, inner) => collect(inner, &path, out),
            _ => {}
        }
    }
}

/// `spacebot secrets set|list|rm`.
pub(crate) fn run(global: &GlobalArgs, args: &SecretsArgs) -> anyhow::Result<ExitCode> {
    let data_dir = crate::config::data_dir_for(&global.location())?;
    let store = SecretStore::new(&data_dir);
    match &args.command {
        SecretsCommand::Set { name } => {
            check_name(name)?;
            let value = read_value(name)?;
            store.set(name, &value)?;
            println!("stored secret `{name}`; use it in the config as \"secret:{name}\"");
        }
        SecretsCommand::List => {
            let names = store.names()?;
            if names.is_empty() {
                println!("no secrets stored in {}", data_dir.secrets_file().display());
            }
            for name in names {
                println!("{name}");
            }
        }
        SecretsCommand::Rm { name } => {
            if !store.remove(name)? {
                bail!("no secret named `{name}` in {}", data_dir.secrets_file().display());
            }
            println!("removed secret `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The value from stdin (never argv, which other users can read): one line, its line ending
/// removed; prompted for, without echo, when stdin is a terminal.
fn read_value(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let value = if stdin.is_terminal() {
        rpassword::prompt_password(format!("value of secret `{name}`: ")).context("can't read the value")?
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).context("can't read the value from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if value.is_empty() {
        bail!("no value given for secret `{name}` (it is read from stdin)");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a data dir that does not exist yet, as before the daemon's first run.
    fn store() -> (tempfile::TempDir, SecretStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SecretStore::new(&DataDir::new(dir.path().join("data")));
        (dir, store)
    }

    #[test]
    fn values_round_trip_and_are_not_stored_in_the_clear() {
        let (dir, store) = store();
        store.set("OPENAI", "sk-the-real-key-123").expect("set");
        store.set("SLACK", "xoxb-another-secret").expect("set");
        assert_eq!(store.get("OPENAI").expect("get").as_deref(), Some("sk-the-real-key-123"));
        assert_eq!(store.get("NONE").expect("get"), None);
        assert_eq!(store.names().expect("names"), ["OPENAI", "SLACK"]);
        let on_disk = std::fs::read_to_string(dir.path().join("data/secrets.json")).expect("file");
        assert!(!on_disk.contains("sk-the-real-key") && on_disk.contains("OPENAI"), "{on_disk}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in ["secrets.json", "master.key"] {
                let mode =
                    std::fs::metadata(dir.path().join("data").join(file)).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{file}");
            }
        }
        assert!(store.remove("OPENAI").expect("rm"));
        assert!(!store.remove("OPENAI").expect("rm"));
        assert_eq!(store.names().expect("names"), ["SLACK"]);
    }

    #[test]
    fn a_value_moved_to_another_name_or_a_wrong_key_is_refused() {
        let (dir, store) = store();
        store.set("A", "first-secret-value").expect("set");
        store.set("B", "other-secret-value").expect("set");
        let path = dir.path().join("data/secrets.json");
        let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        file["secrets"]["B"] = file["secrets"]["A"].clone();
        std::fs::write(&path, file.to_string()).expect("write");
        let error = store.get("B").expect_err("a moved value").to_string();
        assert!(error.contains("can't be decrypted"), "{error}");
        std::fs::write(dir.path().join("data/master.key"), hex::encode([7u8; KEY_LEN])).expect("other key");
        assert!(store.get("A").is_err(), "a wrong key can't read it");
    }

    #[test]
    fn references_are_replaced_and_every_missing_one_is_named() {
        use figment::providers::{Format, Toml};
        let (dir, store) = store();
        store.set("TOKEN", "api-token-value-1").expect("set");
        let data_dir = DataDir::new(dir.path().join("data"));
        let toml = "[api]\ntoken = \"secret:TOKEN\"\n[llm.providers.a]\napi_key = \"secret:A\"\n[llm.providers.b]\napi_key = \"secret:B\"\n";
        let error = resolve_references(Figment::from(Toml::string(toml)), &data_dir).expect_err("missing").to_string();
        assert!(
            error.contains("`A` (config key `llm.providers.a.api_key`)")
                && error.contains("`B` (config key `llm.providers.b.api_key`)"),
            "{error}"
        );
        let toml = "[api]\ntoken = \"secret:TOKEN\"\nbind = \"127.0.0.1:1\"\n";
        let resolved = resolve_references(Figment::from(Toml::string(toml)), &data_dir).expect("resolved");
        assert_eq!(resolved.extract_inner::<String>("api.token").expect("token"), "api-token-value-1");
        assert_eq!(resolved.extract_inner::<String>("api.bind").expect("bind"), "127.0.0.1:1");
    }

    #[test]
    fn short_values_and_odd_names_are_refused_with_the_reason() {
        let (_dir, store) = store();
        let error = store.set("SHORT", "1234567").expect_err("short").to_string();
        assert!(error.contains("shorter than 8"), "{error}");
        let error = store.set("bad name", "long-enough-value").expect_err("name").to_string();
        assert!(error.contains("letters, digits and underscores"), "{error}");
    }
}

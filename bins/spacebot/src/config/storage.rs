//! The `[storage]` section: where the conversation log lives.
//!
//! ```toml
//! [storage]
//! url = "postgres://spacebot:PASSWORD@db.internal/spacebot"   # default: SQLite at data_dir/spacebot.db
//! # or url = "secret:PG_URL" / "env:DATABASE_URL"
//! ```
//!
//! With a URL, the conversation log and what is kept beside it (the chronicle, process runs,
//! cron jobs, token usage) are on that PostgreSQL database; each agent's memory graph stays in
//! its SQLite file under the data dir for now.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    url: Option<String>,
}

/// The checked `[storage]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum StorageSettings {
    /// The SQLite file `data_dir/spacebot.db`.
    #[default]
    Sqlite,
    /// A PostgreSQL database.
    Postgres {
        /// Its `postgres://` URL, password included.
        url: String,
    },
}

impl StorageSettings {
    /// The URL as it may be shown: its password replaced.
    pub(crate) fn shown_url(&self) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres { url } => Some(spacebot_memory::redacted_url(url)),
        }
    }

    /// The URL's password, for the scrubber (a URL without one gives none).
    pub(crate) fn password(&self) -> Option<String> {
        let Self::Postgres { url } = self else { return None };
        let rest = url.split_once("://")?.1;
        let userinfo = &rest[..rest.rfind('@')?];
        let password = userinfo.split_once(':')?.1;
        (!password.is_empty()).then(|| password.to_owned())
    }
}

/// Checks `[storage]`.
///
/// # Errors
///
/// A sentence naming `storage.url` when it is not a `postgres://` URL.
pub(crate) fn storage(raw: RawStorage) -> anyhow::Result<StorageSettings> {
    let Some(url) = raw.url else {
        return Ok(StorageSettings::Sqlite);
    };
    let url = super::resolve(url.trim(), "storage.url")?;
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(StorageSettings::Postgres { url }),
        _ => anyhow::bail!(
            "config key `storage.url` must be a postgres:// URL (such as postgres://user:password@host/database), not `{}`; \
             leave it out to keep the log in SQLite at data_dir/spacebot.db",
            spacebot_memory::redacted_url(&url)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: Option<&str>) -> anyhow::Result<StorageSettings> {
        storage(RawStorage { url: url.map(str::to_owned) })
    }

    #[test]
    fn a_postgres_url_is_taken_and_anything_else_refused_without_showing_a_password() {
        assert_eq!(parse(None).unwrap(), StorageSettings::Sqlite);
        let settings = parse(Some(" postgres://bot:s3cret-pass@db:5432/spacebot ")).unwrap();
        assert_eq!(settings, StorageSettings::Postgres { url: "postgres://bot:s3cret-pass@db:5432/spacebot".into() });
        assert_eq!(settings.password().as_deref(), Some("s3cret-pass"));
        assert_eq!(settings.shown_url().as_deref(), Some("postgres://bot:***@db:5432/spacebot"));
        assert!(parse(Some("postgresql://db/spacebot")).unwrap().password().is_none());

        for bad in ["sqlite:///var/lib/spacebot.db", "mysql://bot:s3cret-pass@db/x", "db.internal"] {
            let error = parse(Some(bad)).unwrap_err().to_string();
            assert!(error.contains("storage.url") && error.contains("postgres://"), "{error}");
            assert!(!error.contains("s3cret-pass"), "{error}");
        }
    }
}

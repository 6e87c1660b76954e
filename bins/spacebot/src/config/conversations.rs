//! The `[conversations]` section: when an idle conversation's channel is evicted from memory.
//!
//! ```toml
//! [conversations]
//! idle_timeout_secs = 1800   # evict a channel idle this long; 0 never evicts for idleness
//! max_live = 10000           # most live channels, least recently active evicted first; 0: no cap
//! ```
//!
//! An evicted conversation loses nothing the log keeps: its next message starts a new channel
//! that reloads the history, as after a restart. Only idle channels go (no turn, queued message,
//! held burst, background process or unrelayed result; not paused).

use std::time::Duration;

use serde::Deserialize;

use spacebot_core::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIVE};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConversations {
    idle_timeout_secs: Option<u64>,
    max_live: Option<usize>,
}

/// The checked `[conversations]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConversationSettings {
    /// How long a channel may stay idle before it is evicted; `None` never.
    pub(crate) idle_timeout: Option<Duration>,
    /// Most live channels; `None` for no cap.
    pub(crate) max_live: Option<usize>,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        Self { idle_timeout: Some(DEFAULT_IDLE_TIMEOUT), max_live: Some(DEFAULT_MAX_LIVE) }
    }
}

impl std::fmt::Display for ConversationSettings {
    /// What `config check` prints: `evicted after 1800 s idle, at most 10000 live`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.idle_timeout {
            Some(idle) => write!(f, "evicted after {} s idle", idle.as_secs())?,
            None => f.write_str("never evicted for idleness")?,
        }
        match self.max_live {
            Some(cap) => write!(f, ", at most {cap} live"),
            None => f.write_str(", no cap on live conversations"),
        }
    }
}

pub(crate) fn conversations(raw: RawConversations) -> ConversationSettings {
    let defaults = ConversationSettings::default();
    ConversationSettings {
        idle_timeout: match raw.idle_timeout_secs {
            None => defaults.idle_timeout,
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
        },
        max_live: match raw.max_live {
            None => defaults.max_live,
            Some(0) => None,
            Some(cap) => Some(cap),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Location};

    fn load(toml: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml)?;
        Config::load(&Location::new().with_config(&path).with_data_dir(dir.path()))
    }

    #[test]
    fn defaults_are_thirty_minutes_and_ten_thousand() {
        let config = load("").unwrap();
        assert_eq!(
            config.conversations,
            ConversationSettings { idle_timeout: Some(Duration::from_secs(1800)), max_live: Some(10_000) }
        );
        assert_eq!(config.conversations.to_string(), "evicted after 1800 s idle, at most 10000 live");
    }

    #[test]
    fn zero_turns_each_off() {
        let config = load("[conversations]\nidle_timeout_secs = 0\nmax_live = 0\n").unwrap();
        assert_eq!(config.conversations, ConversationSettings { idle_timeout: None, max_live: None });
        assert_eq!(config.conversations.to_string(), "never evicted for idleness, no cap on live conversations");

        let config = load("[conversations]\nidle_timeout_secs = 60\nmax_live = 500\n").unwrap();
        assert_eq!(
            config.conversations,
            ConversationSettings { idle_timeout: Some(Duration::from_secs(60)), max_live: Some(500) }
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_key() {
        let error = load("[conversations]\nmax_live = -1\n").unwrap_err().to_string();
        assert!(error.contains("`conversations.max_live`"), "{error}");
        let error = load("[conversations]\nidle_timeout_secs = \"soon\"\n").unwrap_err().to_string();
        assert!(error.contains("`conversations.idle_timeout_secs`"), "{error}");
        let error = load("[conversations]\nidle_secs = 5\n").unwrap_err().to_string();
        assert!(error.contains("unknown config key `conversations.idle_secs`"), "{error}");
    }
}

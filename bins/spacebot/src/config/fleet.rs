//! The `[fleet]` section: this daemon as one member of a fleet sharing a PostgreSQL database.
//!
//! ```toml
//! [storage]
//! url = "env:DATABASE_URL"     # a fleet shares the log: PostgreSQL is required
//!
//! [fleet]
//! member = "bot-2"             # unique in the fleet; default: the host name
//! lease_secs = 6               # a dead member's conversations move on after about this long
//! address = "http://10.0.0.12:8080"   # where this member's API is reached, shown by `status`
//! ```
//!
//! Without the section the daemon runs alone and answers every message in the log. With it, it
//! runs a conversation only while it holds the conversation's lease (`docs/deploy.md`, "A
//! fleet").

use std::time::Duration;

use serde::Deserialize;

use super::StorageSettings;

/// The lease time when the config gives none: a member killed outright loses its conversations
/// within it plus a third (8 s).
const DEFAULT_LEASE_SECS: u64 = 6;
/// Leases are renewed every third of their time, so shorter ones would renew too often to leave
/// room for a slow database.
const MIN_LEASE_SECS: u64 = 2;
/// Longest member name.
const MAX_MEMBER_LEN: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    member: Option<String>,
    lease_secs: Option<u64>,
    address: Option<String>,
}

/// The checked `[fleet]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetSettings {
    /// This member's name.
    pub(crate) member: String,
    /// How long a lease lasts unless renewed.
    pub(crate) lease: Duration,
    /// Where this member's API is reached, as the config gives it; `None`: the address the API
    /// is bound to.
    pub(crate) address: Option<String>,
}

/// Checks `[fleet]`, which needs the log on PostgreSQL. `hostname` gives the default member name.
///
/// # Errors
///
/// A sentence naming the key at fault.
pub(crate) fn fleet(
    raw: Option<RawFleet>,
    storage: &StorageSettings,
    hostname: impl FnOnce() -> String,
) -> anyhow::Result<Option<FleetSettings>> {
    let Some(raw) = raw else { return Ok(None) };
    if matches!(storage, StorageSettings::Sqlite) {
        anyhow::bail!(
            "the `[fleet]` section needs `[storage] url` to name a PostgreSQL database: the members of a fleet share its log"
        );
    }
    let member = match raw.member {
        Some(member) => member.trim().to_owned(),
        None => hostname(),
    };
    if member.is_empty() || member.len() > MAX_MEMBER_LEN || member.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        anyhow::bail!(
            "config key `fleet.member` must be 1 to {MAX_MEMBER_LEN} characters without spaces, not `{}`",
            member.escape_debug()
        );
    }
    let lease_secs = raw.lease_secs.unwrap_or(DEFAULT_LEASE_SECS);
    if lease_secs < MIN_LEASE_SECS {
        anyhow::bail!("config key `fleet.lease_secs` must be at least {MIN_LEASE_SECS}, not {lease_secs}");
    }
    let address = raw.address.map(|address| address.trim().to_owned()).filter(|address| !address.is_empty());
    Ok(Some(FleetSettings { member, lease: Duration::from_secs(lease_secs), address }))
}

/// This machine's host name, or `spacebot` when it can't be read.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "spacebot".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres() -> StorageSettings {
        StorageSettings::Postgres { url: "postgres://db/spacebot".into() }
    }

    fn parse(raw: RawFleet, storage: &StorageSettings) -> anyhow::Result<Option<FleetSettings>> {
        fleet(Some(raw), storage, || "host-a".to_owned())
    }

    #[test]
    fn a_fleet_needs_postgres_and_a_usable_name_and_lease() {
        assert_eq!(fleet(None, &postgres(), || unreachable!()).unwrap(), None);
        let defaults = parse(RawFleet::default(), &postgres()).unwrap().unwrap();
        assert_eq!(
            defaults,
            FleetSettings { member: "host-a".into(), lease: Duration::from_secs(DEFAULT_LEASE_SECS), address: None }
        );
        let given =
            RawFleet { member: Some(" bot-2 ".into()), lease_secs: Some(3), address: Some("http://b:8080".into()) };
        assert_eq!(
            parse(given, &postgres()).unwrap().unwrap(),
            FleetSettings {
                member: "bot-2".into(),
                lease: Duration::from_secs(3),
                address: Some("http://b:8080".into())
            }
        );

        let error = parse(RawFleet::default(), &StorageSettings::Sqlite).unwrap_err().to_string();
        assert!(error.contains("[fleet]") && error.contains("storage"), "{error}");
        for bad in ["", "two words", &"x".repeat(65)] {
            let error = parse(RawFleet { member: Some(bad.into()), ..RawFleet::default() }, &postgres()).unwrap_err();
            assert!(error.to_string().contains("fleet.member"), "{error}");
        }
        let error = parse(RawFleet { lease_secs: Some(1), ..RawFleet::default() }, &postgres()).unwrap_err();
        assert!(error.to_string().contains("fleet.lease_secs"), "{error}");
    }
}

//! The `[messaging.*]` and `[[bindings]]` sections: platform connections (each with optional
//! named instances) and which agent answers where.
//!
//! ```toml
//! [messaging.discord]
//! token = "env:DISCORD_BOT_TOKEN"
//! guilds = ["123"]                 # allow-lists; empty admits all
//! [[messaging.discord.instances]]  # a second bot, runtime key `discord:ops`
//! name = "ops"
//! token = "env:DISCORD_OPS_TOKEN"
//! [messaging.slack]
//! bot_token = "env:SLACK_BOT_TOKEN"
//! app_token = "env:SLACK_APP_TOKEN"
//! [[bindings]]
//! agent = "main"
//! platform = "discord"
//! instance = "ops"
//! ```

use std::fmt;

use anyhow::bail;
use serde::Deserialize;

use spacebot_core::Binding;
use spacebot_discord::DiscordSettings;
use spacebot_slack::SlackSettings;

use super::resolve;

/// A credential: shown as `[redacted]` whenever the config is printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An id written as a string or a number (Discord snowflakes, Slack ids).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Id {
    Text(String),
    Number(u64),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.trim().to_owned(),
            Self::Number(number) => number.to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMessaging {
    discord: Option<RawDiscord>,
    slack: Option<RawSlack>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscord {
    token: Option<Secret>,
    api_url: Option<String>,
    #[serde(default)]
    guilds: Vec<Id>,
    #[serde(default)]
    channels: Vec<Id>,
    #[serde(default)]
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    slash_commands: Option<bool>,
    #[serde(default)]
    instances: Vec<RawDiscordInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscordInstance {
    name: String,
    token: Secret,
    api_url: Option<String>,
    #[serde(default)]
    guilds: Vec<Id>,
    #[serde(default)]
    channels: Vec<Id>,
    #[serde(default)]
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    slash_commands: Option<bool>,
}

/// The options a default connection and its named instances share.
struct DiscordOptions {
    api_url: Option<String>,
    guilds: Vec<Id>,
    channels: Vec<Id>,
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    slash_commands: Option<bool>,
}

macro_rules! discord_options {
    ($raw:expr) => {
        DiscordOptions {
            api_url: $raw.api_url,
            guilds: $raw.guilds,
            channels: $raw.channels,
            dm_users: $raw.dm_users,
            allow_bots: $raw.allow_bots,
            slash_commands: $raw.slash_commands,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    bot_token: Option<Secret>,
    app_token: Option<Secret>,
    api_url: Option<String>,
    #[serde(default)]
    workspaces: Vec<Id>,
    #[serde(default)]
    channels: Vec<Id>,
    #[serde(default)]
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    #[serde(default)]
    instances: Vec<RawSlackInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlackInstance {
    name: String,
    bot_token: Secret,
    app_token: Secret,
    api_url: Option<String>,
    #[serde(default)]
    workspaces: Vec<Id>,
    #[serde(default)]
    channels: Vec<Id>,
    #[serde(default)]
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
}

/// The options a default connection and its named instances share.
struct SlackOptions {
    api_url: Option<String>,
    workspaces: Vec<Id>,
    channels: Vec<Id>,
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
}

macro_rules! slack_options {
    ($raw:expr) => {
        SlackOptions {
            api_url: $raw.api_url,
            workspaces: $raw.workspaces,
            channels: $raw.channels,
            dm_users: $raw.dm_users,
            allow_bots: $raw.allow_bots,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBinding {
    agent: String,
    platform: String,
    instance: Option<String>,
    #[serde(alias = "workspace")]
    guild: Option<Id>,
    #[serde(default)]
    channels: Vec<Id>,
    #[serde(default)]
    users: Vec<Id>,
    /// `active`, `mention_only` or `observe` in the conversations it matches.
    response_mode: Option<String>,
    /// `true` is `response_mode = "mention_only"`.
    require_mention: Option<bool>,
}

/// The platform connections to run, by kind.
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    pub(crate) discord: Vec<DiscordSettings>,
    pub(crate) slack: Vec<SlackSettings>,
}

impl Messaging {
    /// The runtime keys of every configured connection.
    pub(crate) fn adapter_keys(&self) -> Vec<String> {
        self.discord.iter().map(|d| d.name.clone()).chain(self.slack.iter().map(|s| s.name.clone())).collect()
    }
}

/// Validates the messaging sections.
pub(crate) fn messaging(raw: RawMessaging) -> anyhow::Result<Messaging> {
    let mut messaging = Messaging::default();
    if let Some(mut discord) = raw.discord {
        let key = "messaging.discord";
        let instances = std::mem::take(&mut discord.instances);
        if let Some(token) = discord.token.clone() {
            let token = secret(&token, &format!("{key}.token"))?;
            messaging.discord.push(discord_settings(DiscordSettings::new(token), discord_options!(discord), key)?);
        } else if instances.is_empty() {
            bail!("config key `{key}.token` is missing: a Discord connection needs a bot token");
        }
        let mut names = Vec::new();
        for (index, instance) in instances.into_iter().enumerate() {
            let key = format!("{key}.instances[{index}]");
            check_instance_name(&instance.name, &key, &mut names)?;
            let token = secret(&instance.token, &format!("{key}.token"))?;
            let settings = DiscordSettings::new(token).with_instance(&instance.name);
            messaging.discord.push(discord_settings(settings, discord_options!(instance), &key)?);
        }
    }
    if let Some(mut slack) = raw.slack {
        let key = "messaging.slack";
        let instances = std::mem::take(&mut slack.instances);
        match (slack.bot_token.clone(), slack.app_token.clone()) {
            (Some(bot), Some(app)) => {
                let bot = secret(&bot, &format!("{key}.bot_token"))?;
                let app = secret(&app, &format!("{key}.app_token"))?;
                messaging.slack.push(slack_settings(SlackSettings::new(bot, app), slack_options!(slack), key)?);
            }
            (None, None) if !instances.is_empty() => {}
            (None, _) => bail!("config key `{key}.bot_token` is missing: a Slack connection needs a bot token"),
            (_, None) => bail!("config key `{key}.app_token` is missing: Socket Mode needs an app-level token"),
        }
        let mut names = Vec::new();
        for (index, instance) in instances.into_iter().enumerate() {
            let key = format!("{key}.instances[{index}]");
            check_instance_name(&instance.name, &key, &mut names)?;
            let bot = secret(&instance.bot_token, &format!("{key}.bot_token"))?;
            let app = secret(&instance.app_token, &format!("{key}.app_token"))?;
            let settings = SlackSettings::new(bot, app).with_instance(&instance.name);
            messaging.slack.push(slack_settings(settings, slack_options!(instance), &key)?);
        }
    }
    Ok(messaging)
}

/// Validates the bindings against the agents and the configured connections.
pub(crate) fn bindings(raw: Vec<RawBinding>, agents: &[&str], messaging: &Messaging) -> anyhow::Result<Vec<Binding>> {
    let adapters = messaging.adapter_keys();
    let mut bindings = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let key = format!("bindings[{index}]");
        if !agents.contains(&raw.agent.as_str()) {
            bail!("config key `{key}.agent` names agent `{}`, which is not defined under [[agents]]", raw.agent);
        }
        let mut binding = Binding::new(raw.agent.as_str(), raw.platform.as_str());
        if let Some(instance) = &raw.instance {
            binding = binding.with_instance(instance.as_str());
        }
        if raw.platform != "webhook" && !adapters.contains(&binding.adapter_key()) {
            let section = match &raw.instance {
                Some(instance) => format!("an instance named `{instance}` under [messaging.{}]", raw.platform),
                None => format!("a [messaging.{}] connection", raw.platform),
            };
            bail!("config key `{key}` binds platform `{}`, but the config has no {section}", raw.platform);
        }
        if let Some(guild) = &raw.guild {
            binding = binding.with_guild(guild.text());
        }
        let mode = match (&raw.response_mode, raw.require_mention) {
            (Some(_), Some(_)) => {
                bail!("config key `{key}` sets both `response_mode` and `require_mention`; keep one")
            }
            (Some(name), None) => Some(super::response_mode(name, &format!("{key}.response_mode"))?),
            (None, Some(true)) => Some(spacebot_core::ResponseMode::MentionOnly),
            (None, Some(false)) => Some(spacebot_core::ResponseMode::Active),
            (None, None) => None,
        };
        if let Some(mode) = mode {
            binding = binding.with_response_mode(mode);
        }
        bindings
            .push(binding.with_channels(raw.channels.iter().map(Id::text)).with_users(raw.users.iter().map(Id::text)));
    }
    Ok(bindings)
}

fn secret(value: &Secret, key: &str) -> anyhow::Result<String> {
    let resolved = resolve(&value.0, key)?;
    if resolved.trim().is_empty() {
        bail!("config key `{key}` is empty");
    }
    Ok(resolved)
}

fn check_instance_name(name: &str, key: &str, seen: &mut Vec<String>) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.eq_ignore_ascii_case("default");
    if !valid {
        bail!("config key `{key}.name` must be 1-32 letters, digits, '-' or '_' (and not `default`), not `{name}`");
    }
    if seen.iter().any(|n| n == name) {
        bail!("config key `{key}.name`: instance `{name}` is defined twice");
    }
    seen.push(name.to_owned());
    Ok(())
}

fn api_url(value: Option<String>, key: &str) -> anyhow::Result<Option<String>> {
    value.map(|url| super::check::http_url(&resolve(&url, key)?, key)).transpose()
}

fn numeric(ids: &[Id], key: &str) -> anyhow::Result<Vec<u64>> {
    ids.iter()
        .map(|id| {
            let text = id.text();
            text.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("config key `{key}` holds `{text}`, which is not a Discord id"))
        })
        .collect()
}

fn discord_settings(
    mut settings: DiscordSettings,
    options: DiscordOptions,
    key: &str,
) -> anyhow::Result<DiscordSettings> {
    if let Some(url) = api_url(options.api_url, &format!("{key}.api_url"))? {
        settings = settings.with_api_url(url);
    }
    Ok(settings
        .with_guilds(numeric(&options.guilds, &format!("{key}.guilds"))?)
        .with_channels(numeric(&options.channels, &format!("{key}.channels"))?)
        .with_dm_users(options.dm_users.iter().map(Id::text))
        .with_allow_bots(options.allow_bots.unwrap_or(false))
        .with_slash_commands(options.slash_commands.unwrap_or(true)))
}

fn slack_settings(mut settings: SlackSettings, options: SlackOptions, key: &str) -> anyhow::Result<SlackSettings> {
    if let Some(url) = api_url(options.api_url, &format!("{key}.api_url"))? {
        settings = settings.with_api_url(url);
    }
    Ok(settings
        .with_workspaces(options.workspaces.iter().map(Id::text))
        .with_channels(options.channels.iter().map(Id::text))
        .with_dm_users(options.dm_users.iter().map(Id::text))
        .with_allow_bots(options.allow_bots.unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Location};

    fn load_str(toml: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml)?;
        Config::load(&Location { config: Some(path), data_dir: Some(dir.path().to_path_buf()) })
    }

    #[test]
    fn discord_and_slack_connections_with_named_instances() {
        let config = load_str(
            r#"
            [[agents]]
            id = "main"
            [[agents]]
            id = "ops"
            [messaging.discord]
            token = "t1"
            api_url = "http://127.0.0.1:9001"
            guilds = ["1", 2]
            dm_users = ["*"]
            [[messaging.discord.instances]]
            name = "ops"
            token = "t2"
            [messaging.slack]
            bot_token = "xoxb-1"
            app_token = "xapp-1"
            [[bindings]]
            agent = "ops"
            platform = "discord"
            instance = "ops"
            [[bindings]]
            agent = "main"
            platform = "slack"
            workspace = "T1"
            channels = ["C1"]
            "#,
        )
        .unwrap();
        let names: Vec<&str> = config.messaging.discord.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["discord", "discord:ops"]);
        assert_eq!(config.messaging.discord[0].guilds, vec![1, 2]);
        assert_eq!(config.messaging.discord[0].api_url.as_deref(), Some("http://127.0.0.1:9001"));
        assert_eq!(config.messaging.slack[0].name, "slack");
        assert_eq!(config.bindings.len(), 2);
        assert_eq!(config.bindings[0].adapter_key(), "discord:ops");
        assert_eq!(config.bindings[1].guild.as_deref(), Some("T1"));
        assert!(!format!("{config:?}").contains("xoxb-1"), "tokens never show in Debug");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[messaging.discord]\napi_url = \"http://x\"", "`messaging.discord.token`"),
            ("[messaging.discord]\ntoken = \"t\"\ntokn = \"x\"", "messaging.discord.tokn"),
            ("[messaging.slack]\nbot_token = \"b\"", "`messaging.slack.app_token`"),
            ("[messaging.discord]\ntoken = \"t\"\nguilds = [\"abc\"]", "`messaging.discord.guilds`"),
            ("[messaging.discord]\ntoken = \"env:SPACEBOT_SURELY_UNSET_TOKEN\"", "SPACEBOT_SURELY_UNSET_TOKEN"),
            (
                "[messaging.discord]\ntoken = \"t\"\n[[messaging.discord.instances]]\nname = \"a:b\"\ntoken = \"u\"",
                "`messaging.discord.instances[0].name`",
            ),
            ("[[bindings]]\nagent = \"nobody\"\nplatform = \"discord\"", "`bindings[0].agent`"),
            ("[[bindings]]\nagent = \"main\"\nplatform = \"discord\"", "`bindings[0]`"),
            (
                "[messaging.discord]\ntoken = \"t\"\n[[bindings]]\nagent = \"main\"\nplatform = \"discord\"\ninstance = \"x\"",
                "instance named `x`",
            ),
        ];
        for (toml, expected) in cases {
            let error = load_str(toml).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(expected), "{toml:?}: expected {expected} in {error:?}");
        }
    }
}

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
//! [messaging.telegram]
//! token = "secret:TELEGRAM_BOT_TOKEN"
//! chats = [-1001234567890]         # group chats; empty admits all
//! dm_users = [123456789]           # private chats; "*" admits anyone
//! [messaging.email]
//! address = "bot@example.com"
//! allowed_senders = ["@example.com"]
//! imap = { host = "imap.example.com", password = "secret:EMAIL_PASSWORD" }
//! smtp = { host = "smtp.example.com", password = "secret:EMAIL_PASSWORD" }
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
use spacebot_email::{EmailSettings, Security, Server};
use spacebot_slack::SlackSettings;
use spacebot_telegram::{TelegramSettings, WebhookSettings};

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

/// An id written as a string or a number (Discord snowflakes, Slack ids, Telegram's negative
/// group ids).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Id {
    Text(String),
    Number(u64),
    Signed(i64),
}

impl Id {
    /// A Telegram chat id (negative for groups).
    fn chat(&self, key: &str) -> anyhow::Result<i64> {
        match self {
            Self::Signed(number) => Ok(*number),
            Self::Number(number) => i64::try_from(*number)
                .map_err(|_| anyhow::anyhow!("config key `{key}` holds {number}, which is not a Telegram chat id")),
            Self::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("config key `{key}` holds `{text}`, which is not a Telegram chat id")),
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.trim().to_owned(),
            Self::Number(number) => number.to_string(),
            Self::Signed(number) => number.to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMessaging {
    discord: Option<RawDiscord>,
    slack: Option<RawSlack>,
    telegram: Option<RawTelegram>,
    email: Option<RawEmail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    address: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    allowed_senders: Vec<String>,
    mailbox: Option<String>,
    poll_interval_secs: Option<u64>,
    imap: Option<RawMailServer>,
    smtp: Option<RawMailServer>,
    #[serde(default)]
    instances: Vec<RawEmailInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmailInstance {
    name: String,
    address: String,
    display_name: Option<String>,
    #[serde(default)]
    allowed_senders: Vec<String>,
    mailbox: Option<String>,
    poll_interval_secs: Option<u64>,
    imap: RawMailServer,
    smtp: RawMailServer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailServer {
    host: String,
    port: Option<u16>,
    security: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegram {
    token: Option<Secret>,
    api_url: Option<String>,
    #[serde(default)]
    chats: Vec<Id>,
    #[serde(default)]
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    poll_timeout_secs: Option<u64>,
    webhook: Option<RawTelegramWebhook>,
    #[serde(default)]
    instances: Vec<RawTelegramInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegramInstance {
    name: String,
    token: Secret,
    api_url: Option<String>,
    #[serde(default)]
    chats: Vec<Id>,
    #[serde(default)]
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    poll_timeout_secs: Option<u64>,
    webhook: Option<RawTelegramWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegramWebhook {
    url: String,
    listen: String,
    secret_token: Secret,
}

/// The options a default connection and its named instances share.
struct TelegramOptions {
    api_url: Option<String>,
    chats: Vec<Id>,
    dm_users: Vec<Id>,
    allow_bots: Option<bool>,
    poll_timeout_secs: Option<u64>,
    webhook: Option<RawTelegramWebhook>,
}

macro_rules! telegram_options {
    ($raw:expr) => {
        TelegramOptions {
            api_url: $raw.api_url,
            chats: $raw.chats,
            dm_users: $raw.dm_users,
            allow_bots: $raw.allow_bots,
            poll_timeout_secs: $raw.poll_timeout_secs,
            webhook: $raw.webhook,
        }
    };
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
    pub(crate) telegram: Vec<TelegramSettings>,
    pub(crate) email: Vec<EmailSettings>,
}

impl Messaging {
    /// The runtime keys of every configured connection.
    pub(crate) fn adapter_keys(&self) -> Vec<String> {
        let discord = self.discord.iter().map(|d| d.name.clone());
        let slack = self.slack.iter().map(|s| s.name.clone());
        let telegram = self.telegram.iter().map(|t| t.name.clone());
        discord.chain(slack).chain(telegram).chain(self.email.iter().map(|e| e.name.clone())).collect()
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
        messaging.discord.extend(each_instance(key, instances, |instance, key| {
            let token = secret(&instance.token, &format!("{key}.token"))?;
            let settings = DiscordSettings::new(token).with_instance(&instance.name);
            discord_settings(settings, discord_options!(instance), key)
        })?);
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
        messaging.slack.extend(each_instance(key, instances, |instance, key| {
            let bot = secret(&instance.bot_token, &format!("{key}.bot_token"))?;
            let app = secret(&instance.app_token, &format!("{key}.app_token"))?;
            let settings = SlackSettings::new(bot, app).with_instance(&instance.name);
            slack_settings(settings, slack_options!(instance), key)
        })?);
    }
    if let Some(mut telegram) = raw.telegram {
        let key = "messaging.telegram";
        let instances = std::mem::take(&mut telegram.instances);
        if let Some(token) = telegram.token.clone() {
            let token = secret(&token, &format!("{key}.token"))?;
            let settings = TelegramSettings::new(token);
            messaging.telegram.push(telegram_settings(settings, telegram_options!(telegram), key)?);
        } else if instances.is_empty() {
            bail!("config key `{key}.token` is missing: a Telegram connection needs the bot token BotFather gave");
        }
        messaging.telegram.extend(each_instance(key, instances, |instance, key| {
            let token = secret(&instance.token, &format!("{key}.token"))?;
            let settings = TelegramSettings::new(token).with_instance(&instance.name);
            telegram_settings(settings, telegram_options!(instance), key)
        })?);
        let mut listening = Vec::new();
        for telegram in &messaging.telegram {
            if let Some(webhook) = &telegram.webhook {
                if listening.contains(&webhook.listen) {
                    bail!(
                        "config key `{key}`: two Telegram webhooks listen on {}; give each its own `listen`",
                        webhook.listen
                    );
                }
                listening.push(webhook.listen);
            }
        }
    }
    if let Some(mut email) = raw.email {
        let key = "messaging.email";
        let instances = std::mem::take(&mut email.instances);
        match (email.address.take(), email.imap.take(), email.smtp.take()) {
            (Some(address), Some(imap), Some(smtp)) => {
                let options = EmailOptions {
                    display_name: email.display_name,
                    allowed_senders: email.allowed_senders,
                    mailbox: email.mailbox,
                    poll_interval_secs: email.poll_interval_secs,
                };
                messaging.email.push(email_settings(None, &address, imap, smtp, options, key)?);
            }
            (None, None, None) if !instances.is_empty() => {}
            (None, _, _) => bail!("config key `{key}.address` is missing: the address the bot reads and answers from"),
            (_, None, _) => bail!("config key `{key}.imap` is missing: the IMAP server mail is read from"),
            (_, _, None) => bail!("config key `{key}.smtp` is missing: the SMTP server replies are sent through"),
        }
        messaging.email.extend(each_instance(key, instances, |instance, key| {
            let options = EmailOptions {
                display_name: instance.display_name,
                allowed_senders: instance.allowed_senders,
                mailbox: instance.mailbox,
                poll_interval_secs: instance.poll_interval_secs,
            };
            email_settings(Some(&instance.name), &instance.address, instance.imap, instance.smtp, options, key)
        })?);
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

/// A platform's `[[messaging.<platform>.instances]]`, each built by `build` with its own key
/// (`messaging.discord.instances[0]`) after its name is checked.
fn each_instance<R: Named, S>(
    key: &str,
    instances: Vec<R>,
    mut build: impl FnMut(R, &str) -> anyhow::Result<S>,
) -> anyhow::Result<Vec<S>> {
    let mut names = Vec::new();
    instances
        .into_iter()
        .enumerate()
        .map(|(index, instance)| {
            let key = format!("{key}.instances[{index}]");
            check_instance_name(instance.name(), &key, &mut names)?;
            build(instance, &key)
        })
        .collect()
}

/// A named instance's raw section.
trait Named {
    fn name(&self) -> &str;
}

macro_rules! named {
    ($($raw:ty),*) => {
        $(impl Named for $raw {
            fn name(&self) -> &str {
                &self.name
            }
        })*
    };
}

named!(RawDiscordInstance, RawSlackInstance, RawTelegramInstance, RawEmailInstance);

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

fn telegram_settings(
    mut settings: TelegramSettings,
    options: TelegramOptions,
    key: &str,
) -> anyhow::Result<TelegramSettings> {
    if let Some(url) = api_url(options.api_url, &format!("{key}.api_url"))? {
        settings = settings.with_api_url(url);
    }
    let chats_key = format!("{key}.chats");
    let chats = options.chats.iter().map(|chat| chat.chat(&chats_key)).collect::<anyhow::Result<Vec<i64>>>()?;
    if let Some(seconds) = options.poll_timeout_secs {
        if !(1..=50).contains(&seconds) {
            bail!("config key `{key}.poll_timeout_secs` must be 1 to 50 (Telegram's longest long poll), not {seconds}");
        }
        settings = settings.with_poll_timeout(std::time::Duration::from_secs(seconds));
    }
    if let Some(webhook) = options.webhook {
        let url_key = format!("{key}.webhook.url");
        let url = super::check::http_url(&resolve(&webhook.url, &url_key)?, &url_key)?;
        let listen_key = format!("{key}.webhook.listen");
        let listen = resolve(&webhook.listen, &listen_key)?;
        let listen = listen.trim().parse().map_err(|_| {
            anyhow::anyhow!("config key `{listen_key}` holds `{listen}`, which is not an address like 0.0.0.0:8443")
        })?;
        let secret_token = secret(&webhook.secret_token, &format!("{key}.webhook.secret_token"))?;
        let valid = (1..=256).contains(&secret_token.len())
            && secret_token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            bail!(
                "config key `{key}.webhook.secret_token` must be 1-256 letters, digits, '_' or '-' (Telegram's rule)"
            );
        }
        settings = settings.with_webhook(WebhookSettings::new(url, listen, secret_token));
    }
    Ok(settings
        .with_chats(chats)
        .with_dm_users(options.dm_users.iter().map(Id::text))
        .with_allow_bots(options.allow_bots.unwrap_or(false)))
}

/// The options an email connection and its named instances share.
struct EmailOptions {
    display_name: Option<String>,
    allowed_senders: Vec<String>,
    mailbox: Option<String>,
    poll_interval_secs: Option<u64>,
}

fn email_settings(
    instance: Option<&str>,
    address: &str,
    imap: RawMailServer,
    smtp: RawMailServer,
    options: EmailOptions,
    key: &str,
) -> anyhow::Result<EmailSettings> {
    let address = resolve(address, &format!("{key}.address"))?.trim().to_owned();
    let valid = address.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid {
        bail!("config key `{key}.address` holds `{address}`, which is not an email address");
    }
    let imap = mail_server(imap, &address, &format!("{key}.imap"), false)?;
    let smtp = mail_server(smtp, &address, &format!("{key}.smtp"), true)?;
    let mut settings = EmailSettings::new(address, imap, smtp).with_allowed_senders(options.allowed_senders);
    if let Some(instance) = instance {
        settings = settings.with_instance(instance);
    }
    if let Some(name) = options.display_name {
        settings = settings.with_display_name(name);
    }
    if let Some(mailbox) = options.mailbox {
        settings = settings.with_mailbox(mailbox);
    }
    if let Some(seconds) = options.poll_interval_secs {
        if seconds == 0 {
            bail!("config key `{key}.poll_interval_secs` must be at least 1");
        }
        settings = settings.with_poll_interval(std::time::Duration::from_secs(seconds));
    }
    Ok(settings)
}

/// One mail server: `security` defaults to `tls`, the port to the security's usual one, the
/// login to the bot's address when a password is given.
fn mail_server(raw: RawMailServer, address: &str, key: &str, smtp: bool) -> anyhow::Result<Server> {
    let security = match raw.security.as_deref().map(str::trim) {
        None | Some("tls") => Security::Tls,
        Some("starttls") if smtp => Security::StartTls,
        Some("starttls") => {
            bail!("config key `{key}.security`: IMAP over STARTTLS is not supported; use \"tls\" (port 993)")
        }
        Some("plain") => Security::Plain,
        Some(other) => {
            bail!("config key `{key}.security` holds `{other}`; use \"tls\", \"starttls\" (SMTP) or \"plain\"")
        }
    };
    let port = raw.port.unwrap_or(match (smtp, security) {
        (false, Security::Plain) => 143,
        (false, _) => 993,
        (true, Security::Tls) => 465,
        (true, Security::StartTls) => 587,
        (true, _) => 25,
    });
    let host = resolve(&raw.host, &format!("{key}.host"))?.trim().to_owned();
    if host.is_empty() {
        bail!("config key `{key}.host` is empty");
    }
    let mut server = Server::new(host, port, security);
    match (raw.username, raw.password) {
        (username, Some(password)) => {
            let password = secret(&password, &format!("{key}.password"))?;
            let username = match username {
                Some(username) => resolve(&username, &format!("{key}.username"))?,
                None => address.to_owned(),
            };
            server = server.with_login(username, password);
        }
        (Some(_), None) => bail!("config key `{key}.password` is missing: `{key}.username` is set without it"),
        (None, None) if !smtp => bail!("config key `{key}.password` is missing: IMAP needs a login"),
        (None, None) => {}
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use spacebot_email::Security;

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
    fn telegram_connections_with_chats_webhooks_and_instances() {
        let config = load_str(
            r#"
            [[agents]]
            id = "main"
            [messaging.telegram]
            token = "4242:tg-token-1"
            chats = [-1001234, "-1005678"]
            dm_users = [77, "*"]
            poll_timeout_secs = 20
            [messaging.telegram.webhook]
            url = "https://bot.example/tg"
            listen = "127.0.0.1:8443"
            secret_token = "hook_secret-1"
            [[messaging.telegram.instances]]
            name = "support"
            token = "4343:tg-token-2"
            [[bindings]]
            agent = "main"
            platform = "telegram"
            instance = "support"
            channels = [-1001234]
            "#,
        )
        .unwrap();
        let telegram = &config.messaging.telegram;
        assert_eq!(telegram.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["telegram", "telegram:support"]);
        assert_eq!(telegram[0].chats, [-1_001_234, -1_005_678]);
        assert_eq!(telegram[0].dm_users, ["77", "*"]);
        assert_eq!(telegram[0].poll_timeout, std::time::Duration::from_secs(20));
        let webhook = telegram[0].webhook.as_ref().expect("webhook mode");
        assert_eq!((webhook.url.as_str(), webhook.listen.port()), ("https://bot.example/tg", 8443));
        assert!(telegram[1].webhook.is_none());
        assert_eq!(config.bindings[0].adapter_key(), "telegram:support");
        assert_eq!(config.bindings[0].channels, ["-1001234"], "a binding names a group by its chat id");
        let shown = format!("{config:?}");
        assert!(!shown.contains("tg-token") && !shown.contains("hook_secret"), "secrets never show in Debug");
    }

    #[test]
    fn email_connections_default_ports_and_logins() {
        let config = load_str(
            r#"
            [[agents]]
            id = "main"
            [messaging.email]
            address = "bot@example.com"
            allowed_senders = ["@example.com"]
            imap = { host = "imap.example.com", password = "mail-secret-1" }
            smtp = { host = "smtp.example.com", security = "starttls", username = "relay", password = "mail-secret-2" }
            [[messaging.email.instances]]
            name = "support"
            address = "help@example.com"
            imap = { host = "127.0.0.1", port = 1143, security = "plain", password = "mail-secret-3" }
            smtp = { host = "127.0.0.1", port = 2525, security = "plain" }
            "#,
        )
        .unwrap();
        let email = &config.messaging.email;
        assert_eq!(email.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["email", "email:support"]);
        assert_eq!((email[0].imap.port, email[0].imap.security), (993, Security::Tls));
        assert_eq!(email[0].imap.username.as_deref(), Some("bot@example.com"), "the address is the login");
        assert_eq!((email[0].smtp.port, email[0].smtp.username.as_deref()), (587, Some("relay")));
        assert_eq!((email[1].smtp.port, email[1].smtp.username.as_deref()), (2525, None));
        assert!(!format!("{config:?}").contains("mail-secret"), "passwords never show in Debug");
        assert!(config.secrets().iter().any(|s| s == "mail-secret-3"), "passwords are scrubbed");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[messaging.discord]\napi_url = \"http://x\"", "`messaging.discord.token`"),
            ("[messaging.discord]\ntoken = \"t\"\ntokn = \"x\"", "messaging.discord.tokn"),
            ("[messaging.slack]\nbot_token = \"b\"", "`messaging.slack.app_token`"),
            ("[messaging.telegram]\nchats = [1]", "`messaging.telegram.token`"),
            ("[messaging.email]\naddress = \"b@x.com\"\nsmtp = { host = \"s\" }", "`messaging.email.imap`"),
            (
                "[messaging.email]\naddress = \"bot\"\nimap = { host = \"i\", password = \"p\" }\nsmtp = { host = \"s\" }",
                "`messaging.email.address`",
            ),
            (
                "[messaging.email]\naddress = \"b@x.com\"\nimap = { host = \"i\" }\nsmtp = { host = \"s\" }",
                "`messaging.email.imap.password`",
            ),
            (
                "[messaging.email]\naddress = \"b@x.com\"\nimap = { host = \"i\", password = \"p\", security = \"starttls\" }\nsmtp = { host = \"s\" }",
                "`messaging.email.imap.security`",
            ),
            ("[messaging.telegram]\ntoken = \"t\"\nchats = [\"general\"]", "`messaging.telegram.chats`"),
            ("[messaging.telegram]\ntoken = \"t\"\npoll_timeout_secs = 90", "`messaging.telegram.poll_timeout_secs`"),
            (
                "[messaging.telegram]\ntoken = \"t\"\n[messaging.telegram.webhook]\nurl = \"https://x\"\nlisten = \"nowhere\"\nsecret_token = \"s\"",
                "`messaging.telegram.webhook.listen`",
            ),
            (
                "[messaging.telegram]\ntoken = \"t\"\n[messaging.telegram.webhook]\nurl = \"https://x\"\nlisten = \"127.0.0.1:1\"\nsecret_token = \"a b\"",
                "`messaging.telegram.webhook.secret_token`",
            ),
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

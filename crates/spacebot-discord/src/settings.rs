//! What a Discord adapter instance is configured with.

use std::fmt;
use std::time::Duration;

/// The settings of one Discord bot connection.
///
/// Allow-lists are empty by default, which admits every guild and channel; direct messages are
/// admitted only from users in [`dm_users`](Self::dm_users) (`"*"` admits anyone).
#[derive(Clone)]
#[non_exhaustive]
pub struct DiscordSettings {
    /// The runtime key: `discord`, or `discord:{instance}` for a named instance.
    pub name: String,
    /// The bot token.
    pub token: String,
    /// A base URL that replaces `https://discord.com` (a local fake); `None` for Discord itself.
    pub api_url: Option<String>,
    /// Guild ids to listen in; empty means every guild the bot is in.
    pub guilds: Vec<u64>,
    /// Channel ids to listen in; a thread is admitted when its parent is. Empty means every channel.
    pub channels: Vec<u64>,
    /// User ids whose direct messages are accepted; `"*"` accepts anyone; empty accepts none.
    pub dm_users: Vec<String>,
    /// Whether messages from other bots are handed in (the bot's own never are).
    pub allow_bots: bool,
    /// Whether to register the control commands as native slash commands.
    pub slash_commands: bool,
    /// How long `start` waits for the gateway's READY.
    pub ready_timeout: Duration,
}

impl DiscordSettings {
    /// The default instance (`discord`) with this bot token.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            name: "discord".to_owned(),
            token: token.into(),
            api_url: None,
            guilds: Vec::new(),
            channels: Vec::new(),
            dm_users: Vec::new(),
            allow_bots: false,
            slash_commands: true,
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// Makes it the named instance `discord:{instance}`.
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.name = format!("discord:{instance}");
        self
    }

    /// Talks to this base URL instead of `https://discord.com`.
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// Listens only in these guilds.
    pub fn with_guilds(mut self, guilds: impl IntoIterator<Item = u64>) -> Self {
        self.guilds = guilds.into_iter().collect();
        self
    }

    /// Listens only in these channels (and their threads).
    pub fn with_channels(mut self, channels: impl IntoIterator<Item = u64>) -> Self {
        self.channels = channels.into_iter().collect();
        self
    }

    /// Accepts direct messages from these user ids (`"*"` for anyone).
    pub fn with_dm_users<I, S>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.dm_users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Hands in messages from other bots too.
    pub fn with_allow_bots(mut self, allow: bool) -> Self {
        self.allow_bots = allow;
        self
    }

    /// Registers (or not) the control slash commands.
    pub fn with_slash_commands(mut self, enabled: bool) -> Self {
        self.slash_commands = enabled;
        self
    }

    /// Sets how long `start` waits for READY.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    pub(crate) fn dm_allowed(&self, user: u64) -> bool {
        let user = user.to_string();
        self.dm_users.iter().any(|allowed| allowed == "*" || *allowed == user)
    }

    pub(crate) fn guild_allowed(&self, guild: u64) -> bool {
        self.guilds.is_empty() || self.guilds.contains(&guild)
    }

    pub(crate) fn channel_allowed(&self, channel: u64, parent: Option<u64>) -> bool {
        self.channels.is_empty()
            || self.channels.contains(&channel)
            || parent.is_some_and(|parent| self.channels.contains(&parent))
    }
}

impl fmt::Debug for DiscordSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordSettings")
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("guilds", &self.guilds)
            .field("channels", &self.channels)
            .field("dm_users", &self.dm_users)
            .field("allow_bots", &self.allow_bots)
            .field("slash_commands", &self.slash_commands)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let settings = DiscordSettings::new("very-secret-token");
        assert!(!format!("{settings:?}").contains("very-secret"));
    }

    #[test]
    fn allow_lists_admit_what_they_list() {
        let open = DiscordSettings::new("t");
        assert!(open.guild_allowed(1) && open.channel_allowed(2, None));
        assert!(!open.dm_allowed(5), "DMs are closed until users are listed");

        let closed = DiscordSettings::new("t").with_guilds([1]).with_channels([10]).with_dm_users(["5"]);
        assert!(closed.guild_allowed(1) && !closed.guild_allowed(2));
        assert!(closed.channel_allowed(10, None) && closed.channel_allowed(99, Some(10)));
        assert!(!closed.channel_allowed(11, None) && !closed.channel_allowed(99, Some(11)));
        assert!(closed.dm_allowed(5) && !closed.dm_allowed(6));
        assert!(DiscordSettings::new("t").with_dm_users(["*"]).dm_allowed(6));
    }
}

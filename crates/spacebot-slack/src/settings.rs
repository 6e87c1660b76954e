//! What a Slack adapter instance is configured with.

use std::fmt;
use std::time::Duration;

/// The settings of one Slack app connection.
///
/// Allow-lists are empty by default, which admits every workspace and channel; direct messages
/// are admitted only from users in [`dm_users`](Self::dm_users) (`"*"` admits anyone).
#[derive(Clone)]
#[non_exhaustive]
pub struct SlackSettings {
    /// The runtime key: `slack`, or `slack:{instance}` for a named instance.
    pub name: String,
    /// The bot token (`xoxb-...`), for the Web API.
    pub bot_token: String,
    /// The app-level token (`xapp-...`), for Socket Mode.
    pub app_token: String,
    /// The Web API base (a local fake); `None` for `https://slack.com/api`.
    pub api_url: Option<String>,
    /// Workspace (team) ids to listen in; empty means all.
    pub workspaces: Vec<String>,
    /// Channel ids to listen in; empty means all.
    pub channels: Vec<String>,
    /// User ids whose direct messages are accepted; `"*"` accepts anyone; empty accepts none.
    pub dm_users: Vec<String>,
    /// Whether messages from other bots are handed in (the bot's own never are).
    pub allow_bots: bool,
    /// How long Socket Mode waits before reconnecting after a failed connection.
    pub reconnect_after: Duration,
    /// Retries of a rate-limited Web API call (each after Slack's `Retry-After`).
    pub rate_limit_retries: usize,
}

impl SlackSettings {
    /// The default instance (`slack`) with these tokens.
    pub fn new(bot_token: impl Into<String>, app_token: impl Into<String>) -> Self {
        Self {
            name: "slack".to_owned(),
            bot_token: bot_token.into(),
            app_token: app_token.into(),
            api_url: None,
            workspaces: Vec::new(),
            channels: Vec::new(),
            dm_users: Vec::new(),
            allow_bots: false,
            reconnect_after: Duration::from_secs(10),
            rate_limit_retries: 3,
        }
    }

    /// Makes it the named instance `slack:{instance}`.
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.name = format!("slack:{instance}");
        self
    }

    /// Talks to this Web API base instead of `https://slack.com/api`.
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// Listens only in these workspaces.
    pub fn with_workspaces<I, S>(mut self, workspaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.workspaces = workspaces.into_iter().map(Into::into).collect();
        self
    }

    /// Listens only in these channels.
    pub fn with_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels = channels.into_iter().map(Into::into).collect();
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

    /// Sets the wait before Socket Mode reconnects after a failed connection (whole seconds, at
    /// least one).
    pub fn with_reconnect_after(mut self, wait: Duration) -> Self {
        self.reconnect_after = wait;
        self
    }

    pub(crate) fn admitted(&self, team: &str, channel: &str, user: &str, direct: bool) -> bool {
        if direct {
            return self.dm_users.iter().any(|allowed| allowed == "*" || allowed == user);
        }
        (self.workspaces.is_empty() || self.workspaces.iter().any(|w| w == team))
            && (self.channels.is_empty() || self.channels.iter().any(|c| c == channel))
    }
}

impl fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSettings")
            .field("name", &self.name)
            .field("bot_token", &"[redacted]")
            .field("app_token", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("workspaces", &self.workspaces)
            .field("channels", &self.channels)
            .field("dm_users", &self.dm_users)
            .field("allow_bots", &self.allow_bots)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_tokens() {
        let shown = format!("{:?}", SlackSettings::new("xoxb-secret-1", "xapp-secret-2"));
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn allow_lists_admit_what_they_list() {
        let open = SlackSettings::new("b", "a");
        assert!(open.admitted("T1", "C1", "U1", false));
        assert!(!open.admitted("T1", "D1", "U1", true), "DMs are closed until users are listed");
        let closed = SlackSettings::new("b", "a").with_workspaces(["T1"]).with_channels(["C1"]).with_dm_users(["U1"]);
        assert!(closed.admitted("T1", "C1", "U2", false));
        assert!(!closed.admitted("T2", "C1", "U2", false));
        assert!(!closed.admitted("T1", "C2", "U2", false));
        assert!(closed.admitted("T1", "D9", "U1", true) && !closed.admitted("T1", "D9", "U2", true));
        assert!(SlackSettings::new("b", "a").with_dm_users(["*"]).admitted("T1", "D9", "U7", true));
    }
}

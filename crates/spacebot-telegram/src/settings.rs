//! What a Telegram adapter instance is configured with.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Telegram's Bot API.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// The settings of one Telegram bot.
///
/// Group chats are admitted by [`chats`](Self::chats) (empty admits every group the bot is in);
/// private chats only from users in [`dm_users`](Self::dm_users) (`"*"` admits anyone).
#[derive(Clone)]
#[non_exhaustive]
pub struct TelegramSettings {
    /// The runtime key: `telegram`, or `telegram:{instance}` for a named instance.
    pub name: String,
    /// The bot token BotFather gave (`123456:ABC-...`).
    pub token: String,
    /// The Bot API base (a local fake or a self-hosted Bot API server); `None` for
    /// [`DEFAULT_API_URL`].
    pub api_url: Option<String>,
    /// Group and supergroup chat ids to listen in; empty means all.
    pub chats: Vec<i64>,
    /// User ids whose private messages are accepted; `"*"` accepts anyone; empty accepts none.
    pub dm_users: Vec<String>,
    /// Whether messages from other bots are handed in (the bot's own never are).
    pub allow_bots: bool,
    /// How long one `getUpdates` long poll waits for updates.
    pub poll_timeout: Duration,
    /// Retries of a rate-limited call (each after Telegram's `retry_after`).
    pub rate_limit_retries: usize,
    /// Receive updates by webhook instead of long polling.
    pub webhook: Option<WebhookSettings>,
}

/// Webhook mode: Telegram posts updates to a public HTTPS URL that reaches a local listener.
#[derive(Clone)]
#[non_exhaustive]
pub struct WebhookSettings {
    /// The public URL given to Telegram (`https://bot.example.com/telegram`); a reverse proxy
    /// terminates TLS and forwards to [`listen`](Self::listen).
    pub url: String,
    /// Where the adapter's own HTTP listener binds.
    pub listen: SocketAddr,
    /// The secret Telegram sends back in `X-Telegram-Bot-Api-Secret-Token`; a request without it
    /// is refused.
    pub secret_token: String,
}

impl WebhookSettings {
    /// Webhook mode at `url`, listening on `listen`, with this secret.
    pub fn new(url: impl Into<String>, listen: SocketAddr, secret_token: impl Into<String>) -> Self {
        Self { url: url.into(), listen, secret_token: secret_token.into() }
    }

    /// The path the listener serves: the URL's path (`/` when it has none).
    pub fn path(&self) -> String {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        let path = rest.find('/').map_or("/", |at| &rest[at..]);
        let path = path.split(['?', '#']).next().unwrap_or("/");
        if path.is_empty() { "/".to_owned() } else { path.to_owned() }
    }
}

impl TelegramSettings {
    /// The default instance (`telegram`) with this bot token.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            name: "telegram".to_owned(),
            token: token.into(),
            api_url: None,
            chats: Vec::new(),
            dm_users: Vec::new(),
            allow_bots: false,
            poll_timeout: Duration::from_secs(30),
            rate_limit_retries: 3,
            webhook: None,
        }
    }

    /// Makes it the named instance `telegram:{instance}`.
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.name = format!("telegram:{instance}");
        self
    }

    /// Talks to this Bot API base instead of [`DEFAULT_API_URL`].
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// Listens only in these group chats.
    pub fn with_chats(mut self, chats: impl IntoIterator<Item = i64>) -> Self {
        self.chats = chats.into_iter().collect();
        self
    }

    /// Accepts private messages from these user ids (`"*"` for anyone).
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

    /// Sets how long one long poll waits (whole seconds; at least one).
    pub fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Receives updates by webhook.
    pub fn with_webhook(mut self, webhook: WebhookSettings) -> Self {
        self.webhook = Some(webhook);
        self
    }

    /// The Bot API base, without a trailing slash.
    pub fn api_base(&self) -> &str {
        self.api_url.as_deref().unwrap_or(DEFAULT_API_URL).trim_end_matches('/')
    }

    pub(crate) fn admitted(&self, chat: i64, user: u64, direct: bool) -> bool {
        if direct {
            let user = user.to_string();
            return self.dm_users.iter().any(|allowed| allowed == "*" || allowed.trim() == user);
        }
        self.chats.is_empty() || self.chats.contains(&chat)
    }
}

impl fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSettings")
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("chats", &self.chats)
            .field("dm_users", &self.dm_users)
            .field("allow_bots", &self.allow_bots)
            .field("poll_timeout", &self.poll_timeout)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("listen", &self.listen)
            .field("secret_token", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_or_the_webhook_secret() {
        let listen: SocketAddr = "127.0.0.1:8443".parse().expect("address");
        let settings = TelegramSettings::new("123:TOKEN-VALUE").with_webhook(WebhookSettings::new(
            "https://bot.example/tg",
            listen,
            "HOOK-VALUE",
        ));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("TOKEN-VALUE") && !shown.contains("HOOK-VALUE"), "{shown}");
        assert!(shown.contains("bot.example"), "{shown}");
    }

    #[test]
    fn allow_lists_admit_what_they_list() {
        let open = TelegramSettings::new("t");
        assert!(open.admitted(-100, 7, false));
        assert!(!open.admitted(7, 7, true), "private chats are closed until users are listed");
        let closed = TelegramSettings::new("t").with_chats([-100]).with_dm_users(["7"]);
        assert!(closed.admitted(-100, 8, false));
        assert!(!closed.admitted(-200, 8, false));
        assert!(closed.admitted(7, 7, true) && !closed.admitted(8, 8, true));
        assert!(TelegramSettings::new("t").with_dm_users(["*"]).admitted(9, 9, true));
    }

    #[test]
    fn the_webhook_path_is_the_url_path() {
        let listen: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let path = |url: &str| WebhookSettings::new(url, listen, "s").path();
        assert_eq!(path("https://bot.example/telegram/hook?x=1"), "/telegram/hook");
        assert_eq!(path("https://bot.example"), "/");
        assert_eq!(path("https://bot.example/"), "/");
    }

    #[test]
    fn the_api_base_has_no_trailing_slash() {
        assert_eq!(TelegramSettings::new("t").api_base(), DEFAULT_API_URL);
        assert_eq!(TelegramSettings::new("t").with_api_url("http://127.0.0.1:9/").api_base(), "http://127.0.0.1:9");
    }
}

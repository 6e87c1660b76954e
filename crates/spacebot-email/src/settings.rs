//! What an email adapter instance is configured with.

use std::fmt;
use std::time::Duration;

/// How a connection to a mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// TLS from the first byte (IMAP 993, SMTP 465).
    Tls,
    /// Plain text upgraded with STARTTLS (SMTP 587). For IMAP this is not offered: use `Tls`.
    StartTls,
    /// No encryption: only for a server on the same machine or a trusted network.
    Plain,
}

impl Security {
    /// `tls`, `starttls` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::StartTls => "starttls",
            Self::Plain => "plain",
        }
    }
}

/// A mail server and the account on it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Server {
    /// Host name (also the name checked against the server's certificate).
    pub host: String,
    /// Port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// The login; `None` sends without logging in (SMTP only).
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
}

impl Server {
    /// A server at `host:port` secured with `security`, without a login.
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Self {
        Self { host: host.into(), port, security, username: None, password: None }
    }

    /// Logs in with this account.
    pub fn with_login(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The settings of one mailbox the bot reads and answers from.
///
/// Mail is handed in only from senders in [`allowed_senders`](Self::allowed_senders): an address
/// (`alice@example.com`), a whole domain (`@example.com`), or `*` for anyone. Empty admits no one.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmailSettings {
    /// The runtime key: `email`, or `email:{instance}` for a named instance.
    pub name: String,
    /// The bot's address: replies come from it, and mail from it is never handed in.
    pub address: String,
    /// The name shown beside the address in replies.
    pub display_name: Option<String>,
    /// Where mail is read.
    pub imap: Server,
    /// Where replies are sent.
    pub smtp: Server,
    /// The mailbox read (`INBOX`).
    pub mailbox: String,
    /// Who may write to the bot.
    pub allowed_senders: Vec<String>,
    /// How often the mailbox is checked when the server has no IDLE.
    pub poll_interval: Duration,
    /// How long one IDLE waits in silence before it is renewed. Servers drop an IDLE after 30
    /// minutes, and a connection that died without a word (a NAT forgot it) is noticed only
    /// here, so the default is five minutes; Dovecot's keepalives every two reset it.
    pub idle_renewal: Duration,
}

impl EmailSettings {
    /// The default instance (`email`) for `address`, reading from `imap` and sending through `smtp`.
    pub fn new(address: impl Into<String>, imap: Server, smtp: Server) -> Self {
        Self {
            name: "email".to_owned(),
            address: address.into(),
            display_name: None,
            imap,
            smtp,
            mailbox: "INBOX".to_owned(),
            allowed_senders: Vec::new(),
            poll_interval: Duration::from_secs(60),
            idle_renewal: Duration::from_secs(5 * 60),
        }
    }

    /// Makes it the named instance `email:{instance}`.
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.name = format!("email:{instance}");
        self
    }

    /// Admits mail from these senders (addresses, `@domain`, or `*`).
    pub fn with_allowed_senders<I, S>(mut self, senders: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_senders = senders.into_iter().map(Into::into).collect();
        self
    }

    /// Shows this name beside the address.
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Checks the mailbox this often when the server has no IDLE.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Renews IDLE this often.
    pub fn with_idle_renewal(mut self, renewal: Duration) -> Self {
        self.idle_renewal = renewal;
        self
    }

    /// Reads this mailbox instead of `INBOX`.
    pub fn with_mailbox(mut self, mailbox: impl Into<String>) -> Self {
        self.mailbox = mailbox.into();
        self
    }

    pub(crate) fn admitted(&self, sender: &str) -> bool {
        let sender = sender.trim().to_ascii_lowercase();
        self.allowed_senders.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            allowed == "*"
                || allowed == sender
                || (allowed.starts_with('@') && sender.ends_with(&allowed) && sender.len() > allowed.len())
        })
    }

    /// Whether `address` is the bot's own.
    pub(crate) fn is_own(&self, address: &str) -> bool {
        address.trim().eq_ignore_ascii_case(self.address.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EmailSettings {
        let imap = Server::new("imap.example.com", 993, Security::Tls).with_login("bot", "IMAP-PASSWORD");
        let smtp = Server::new("smtp.example.com", 465, Security::Tls).with_login("bot", "SMTP-PASSWORD");
        EmailSettings::new("bot@example.com", imap, smtp)
    }

    #[test]
    fn debug_never_shows_the_passwords() {
        let shown = format!("{:?}", settings());
        assert!(!shown.contains("IMAP-PASSWORD") && !shown.contains("SMTP-PASSWORD"), "{shown}");
    }

    #[test]
    fn senders_are_admitted_by_address_domain_or_star() {
        assert!(!settings().admitted("alice@example.com"), "empty admits no one");
        let listed = settings().with_allowed_senders(["Alice@Example.com", "@team.example"]);
        assert!(listed.admitted("alice@example.com"));
        assert!(listed.admitted("bob@team.example"));
        assert!(!listed.admitted("bob@evilteam.example"), "a domain matches whole");
        assert!(!listed.admitted("mallory@example.com"));
        assert!(settings().with_allowed_senders(["*"]).admitted("anyone@anywhere.example"));
        assert!(listed.is_own("BOT@example.com "));
    }
}

//! Who may do what through the API: the admin token (`api.token`) may do everything; a scoped
//! token ([`ScopedToken`]) only what its scopes allow, on the agents it names, speaking as the
//! senders it names. With no token configured at all, the API is open (the daemon refuses that
//! on an address other machines can reach unless told otherwise).
//!
//! The middleware turns the bearer token into a [`Caller`] that handlers ask before acting.
//! Tokens are compared in constant time, every configured one each time, so neither timing nor
//! order tells which matched or how much of one did.

use std::sync::Arc;

use axum::http::{HeaderMap, header};

use spacebot_core::AgentId;

use crate::api::ApiConfig;
use crate::error::ApiError;

/// What a scoped token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Send messages (`POST /webhook/{agent}`, `POST /v1/chat/completions`), and read the answer
    /// to one's own completion request; no conversation reads.
    Webhook,
    /// Read conversations (`GET /api/agents/{agent}/conversations/{conversation}/messages`).
    Read,
    /// Everything, including the daemon-wide routes (status, events, metrics, usage).
    Admin,
}

impl Scope {
    /// The scope a config names: `webhook`, `read` or `admin`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "webhook" => Some(Self::Webhook),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The scope's name in config and token files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// A token with limited rights: from the config (`[[api.tokens]]`), or from the data dir's token
/// file, which keeps only its digest ([`crate::StoredTokens`]).
#[derive(Clone)]
pub struct ScopedToken {
    name: String,
    secret: Secret,
    scopes: Vec<Scope>,
    agents: Vec<AgentId>,
    senders: Vec<String>,
}

impl std::fmt::Debug for ScopedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedToken")
            .field("name", &self.name)
            .field("secret", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .field("agents", &self.agents)
            .field("senders", &self.senders)
            .finish()
    }
}

impl ScopedToken {
    /// A token called `name` (for logs and errors) with the secret `token` and `scopes`, for
    /// every agent and any sender until narrowed.
    pub fn new(name: impl Into<String>, token: impl Into<String>, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            name: name.into(),
            secret: Secret::Plain(token.into()),
            scopes: scopes.into_iter().collect(),
            agents: Vec::new(),
            senders: Vec::new(),
        }
    }

    /// A token known only by the SHA-256 `digest` of its secret, as the token file keeps it.
    pub fn hashed(name: impl Into<String>, digest: [u8; 32], scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            name: name.into(),
            secret: Secret::Sha256(digest),
            scopes: scopes.into_iter().collect(),
            agents: Vec::new(),
            senders: Vec::new(),
        }
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `presented` (whose SHA-256 digest is `presented_digest`) is this token, compared
    /// in constant time.
    pub(crate) fn matches(&self, presented: &str, presented_digest: &[u8; 32]) -> bool {
        match &self.secret {
            Secret::Plain(token) => constant_time_eq(presented.as_bytes(), token.as_bytes()),
            Secret::Sha256(digest) => constant_time_eq(presented_digest, digest),
        }
    }

    /// Only these agents (all of them when empty).
    pub fn with_agents(mut self, agents: impl IntoIterator<Item = AgentId>) -> Self {
        self.agents = agents.into_iter().collect();
        self
    }

    /// Only speaking as these senders (any when empty): a message's `sender` (or a completion's
    /// `user`) must be one of them, since memory privacy keys on who speaks.
    pub fn with_senders(mut self, senders: impl IntoIterator<Item = String>) -> Self {
        self.senders = senders.into_iter().collect();
        self
    }

    fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// What a scoped token is checked against.
#[derive(Clone)]
enum Secret {
    /// The token itself, from the config.
    Plain(String),
    /// Its SHA-256 digest, from the token file.
    Sha256([u8; 32]),
}

/// Who made a request, as its token says.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The admin token, or an API without tokens.
    Admin,
    Scoped(Arc<ScopedToken>),
}

impl Caller {
    /// The caller a request's headers name, or `None` when its token is missing or wrong.
    pub(crate) fn identify(config: &ApiConfig, headers: &HeaderMap) -> Option<Self> {
        let stored = config.stored_tokens.as_ref().map(crate::StoredTokens::current);
        let stored = stored.as_deref().unwrap_or_default();
        if config.token.is_none() && config.tokens.is_empty() && stored.is_empty() {
            return Some(Self::Admin);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        let presented_digest = crate::stored_tokens::digest(presented);
        // Every token is compared, whichever matches.
        let admin = config.token.as_ref().is_some_and(|token| constant_time_eq(presented.as_bytes(), token.as_bytes()));
        let mut scoped = None;
        for token in config.tokens.iter().chain(stored) {
            if token.matches(presented, &presented_digest) {
                scoped = Some(Arc::clone(token));
            }
        }
        if admin {
            return Some(Self::Admin);
        }
        scoped.map(Self::Scoped)
    }

    /// Whether the caller may act with `scope` on `agent`.
    pub(crate) fn require(&self, scope: Scope, agent: &AgentId) -> Result<(), ApiError> {
        let Self::Scoped(token) = self else { return Ok(()) };
        if !token.has(scope) {
            return Err(ApiError::Forbidden(format!(
                "token `{}` does not have the `{}` scope this route needs",
                token.name,
                scope.as_str()
            )));
        }
        if !token.agents.is_empty() && !token.agents.contains(agent) {
            return Err(ApiError::Forbidden(format!("token `{}` may not reach agent '{agent}'", token.name)));
        }
        Ok(())
    }

    /// Whether the caller may use a daemon-wide route (status, events, metrics, usage): the admin
    /// token, or a scoped `admin` token for every agent.
    pub(crate) fn require_daemon_wide(&self) -> Result<(), ApiError> {
        let Self::Scoped(token) = self else { return Ok(()) };
        if token.scopes.contains(&Scope::Admin) && token.agents.is_empty() {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "token `{}` may not use this route: it needs the `admin` scope for every agent",
            token.name
        )))
    }

    /// Whether the caller may speak as `sender`.
    pub(crate) fn may_speak_as(&self, sender: &str) -> Result<(), ApiError> {
        let Self::Scoped(token) = self else { return Ok(()) };
        if token.senders.is_empty() || token.senders.iter().any(|allowed| allowed == sender) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "token `{}` may not speak as '{sender}'; it may speak as: {}",
            token.name,
            token.senders.join(", ")
        )))
    }

    /// Whether the caller may see `agent` at all (for listings).
    pub(crate) fn reaches(&self, agent: &AgentId) -> bool {
        match self {
            Self::Admin => true,
            Self::Scoped(token) => token.agents.is_empty() || token.agents.contains(agent),
        }
    }
}

/// Compares without an early exit, so response time doesn't reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(token: ScopedToken) -> Caller {
        Caller::Scoped(Arc::new(token))
    }

    #[test]
    fn scopes_agents_and_senders_narrow_a_token() {
        let main = AgentId::new("main");
        let ops = AgentId::new("ops");
        let webhook = caller(
            ScopedToken::new("ci", "t", [Scope::Webhook])
                .with_agents([main.clone()])
                .with_senders(["ci-bot".to_owned()]),
        );
        assert!(webhook.require(Scope::Webhook, &main).is_ok());
        assert!(webhook.require(Scope::Read, &main).is_err(), "webhook can't read");
        assert!(webhook.require(Scope::Webhook, &ops).is_err(), "nor reach another agent");
        assert!(webhook.require_daemon_wide().is_err());
        assert!(webhook.may_speak_as("ci-bot").is_ok());
        assert!(webhook.may_speak_as("alice").is_err());
        assert!(webhook.reaches(&main) && !webhook.reaches(&ops));

        let admin = caller(ScopedToken::new("ops", "t", [Scope::Admin]));
        assert!(admin.require(Scope::Read, &ops).is_ok() && admin.require_daemon_wide().is_ok());
        let narrow_admin = caller(ScopedToken::new("ops", "t", [Scope::Admin]).with_agents([main]));
        assert!(narrow_admin.require_daemon_wide().is_err(), "daemon-wide routes show every agent");
    }

    #[test]
    fn the_token_decides_who_calls() {
        let mut config = ApiConfig::default();
        assert!(matches!(Caller::identify(&config, &HeaderMap::new()), Some(Caller::Admin)), "no tokens: open");
        config = config.with_token(Some("admin-token".to_owned())).with_scoped_tokens([ScopedToken::new(
            "ci",
            "scoped-token",
            [Scope::Webhook],
        )]);
        let with = |token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
            Caller::identify(&config, &headers)
        };
        assert!(matches!(with("admin-token"), Some(Caller::Admin)));
        assert!(matches!(with("scoped-token"), Some(Caller::Scoped(token)) if token.name == "ci"));
        assert!(with("scoped-token-").is_none() && with("").is_none());
        assert!(Caller::identify(&config, &HeaderMap::new()).is_none());
    }
}

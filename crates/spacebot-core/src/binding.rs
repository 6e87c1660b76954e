//! Bindings: which agent answers where.
//!
//! A binding names an agent and the place it answers: a platform, optionally one named adapter
//! instance, a guild (Discord) or workspace (Slack), some channels, some users. The runtime tries
//! the bindings in order for every message that names no agent; the first that matches decides,
//! and a message no binding matches goes to the default agent.
//!
//! Bindings match on what the adapter wrote into the message: [`InboundMessage::source`] and
//! [`InboundMessage::adapter`], and the metadata keys [`GUILD_KEY`], [`CHANNEL_KEY`] and
//! [`PARENT_CHANNEL_KEY`]. An adapter that wants its messages routable by place sets them.

use crate::ids::AgentId;
use crate::message::InboundMessage;

/// Metadata key for the group a message belongs to: a Discord guild id, a Slack workspace (team)
/// id. Direct messages have none.
pub const GUILD_KEY: &str = "guild_id";
/// Metadata key for the platform channel the message was posted in (for a thread: the thread).
pub const CHANNEL_KEY: &str = "channel_id";
/// Metadata key for the channel a thread belongs to, so a thread inherits its channel's binding.
pub const PARENT_CHANNEL_KEY: &str = "parent_channel_id";

/// Metadata key the runtime sets on a message its binding gives a response mode
/// ([`ResponseMode::as_str`]), so the conversation answers it in that mode.
pub const RESPONSE_MODE_KEY: &str = "response_mode";

/// When an agent answers in a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseMode {
    /// Every message.
    #[default]
    Active,
    /// Only messages that mention the agent or reply to it, and direct messages; the others are
    /// recorded as context for the next answer.
    MentionOnly,
    /// None: every message is recorded as context, nothing is answered.
    Observe,
}

impl ResponseMode {
    /// `active`, `mention_only` or `observe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::MentionOnly => "mention_only",
            Self::Observe => "observe",
        }
    }

    /// The mode a config or a message's metadata names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "active" => Some(Self::Active),
            "mention_only" => Some(Self::MentionOnly),
            "observe" => Some(Self::Observe),
            _ => None,
        }
    }

    /// Whether a message is answered in this mode: a direct message or one that mentions the
    /// agent (or replies to it) in `mention_only`.
    pub fn answers(self, message: &InboundMessage) -> bool {
        match self {
            Self::Active => true,
            Self::MentionOnly => message.direct || message.mentions_bot(),
            Self::Observe => false,
        }
    }
}

/// Routes the messages it matches to one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Binding {
    /// The agent that answers.
    pub agent: AgentId,
    /// The platform: `discord`, `slack`, `webhook`, ...
    pub platform: String,
    /// A named adapter instance (`ops` for the runtime key `discord:ops`); `None` matches only the
    /// platform's default instance.
    pub instance: Option<String>,
    /// The Discord guild or Slack workspace id; `None` matches any, and direct messages.
    pub guild: Option<String>,
    /// Channel ids; a thread matches when its parent channel is listed. Empty matches any.
    pub channels: Vec<String>,
    /// Sender ids. Empty matches anyone.
    pub users: Vec<String>,
    /// The response mode of the conversations it matches, over the agent's own.
    pub response_mode: Option<ResponseMode>,
}

impl Binding {
    /// Binds everything on the default instance of `platform` to `agent`.
    pub fn new(agent: impl Into<AgentId>, platform: impl Into<String>) -> Self {
        Self {
            agent: agent.into(),
            platform: platform.into(),
            instance: None,
            guild: None,
            channels: Vec::new(),
            users: Vec::new(),
            response_mode: None,
        }
    }

    /// Answers the conversations it matches in `mode`.
    pub fn with_response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = Some(mode);
        self
    }

    /// Restricts it to a named instance of the platform (`ops` for `discord:ops`).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Restricts it to one guild or workspace.
    pub fn with_guild(mut self, guild: impl Into<String>) -> Self {
        self.guild = Some(guild.into());
        self
    }

    /// Restricts it to these channels (and their threads).
    pub fn with_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels = channels.into_iter().map(Into::into).collect();
        self
    }

    /// Restricts it to these senders.
    pub fn with_users<I, S>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.users = users.into_iter().map(Into::into).collect();
        self
    }

    /// The runtime key of the adapter instance this binding is for: `discord` or `discord:ops`.
    pub fn adapter_key(&self) -> String {
        match &self.instance {
            Some(instance) => format!("{}:{instance}", self.platform),
            None => self.platform.clone(),
        }
    }

    /// Whether `message` is one this binding routes.
    pub fn matches(&self, message: &InboundMessage) -> bool {
        if message.source != self.platform {
            return false;
        }
        let adapter = if message.adapter.is_empty() { &message.source } else { &message.adapter };
        if *adapter != self.adapter_key() {
            return false;
        }
        let meta = |key: &str| message.metadata.get(key).and_then(metadata_str);
        if let Some(guild) = &self.guild
            && meta(GUILD_KEY).as_deref() != Some(guild.as_str())
        {
            return false;
        }
        if !self.channels.is_empty() {
            let listed = [CHANNEL_KEY, PARENT_CHANNEL_KEY]
                .iter()
                .filter_map(|key| meta(key))
                .any(|channel| self.channels.contains(&channel));
            if !listed {
                return false;
            }
        }
        self.users.is_empty() || self.users.contains(&message.sender.id)
    }
}

/// The agent of the first binding that matches `message`.
pub fn resolve_binding<'a>(bindings: &'a [Binding], message: &InboundMessage) -> Option<&'a AgentId> {
    matching_binding(bindings, message).map(|binding| &binding.agent)
}

/// The first binding that matches `message`.
pub fn matching_binding<'a>(bindings: &'a [Binding], message: &InboundMessage) -> Option<&'a Binding> {
    bindings.iter().find(|binding| binding.matches(message))
}

/// Metadata values are written as strings or numbers (Discord snowflakes); both compare as text.
fn metadata_str(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::message::Sender;

    fn discord(adapter: &str, guild: Option<&str>, channel: &str, parent: Option<&str>) -> InboundMessage {
        let mut message = InboundMessage::text("discord", "discord:x", Sender::new("u1"), "hi")
            .with_adapter(adapter)
            .with_metadata(CHANNEL_KEY, json!(channel));
        if let Some(guild) = guild {
            message = message.with_metadata(GUILD_KEY, json!(guild));
        }
        if let Some(parent) = parent {
            message = message.with_metadata(PARENT_CHANNEL_KEY, json!(parent));
        }
        message
    }

    #[test]
    fn the_first_matching_binding_wins() {
        let bindings = vec![
            Binding::new("ops", "discord").with_guild("1").with_channels(["10"]),
            Binding::new("community", "discord").with_guild("1"),
            Binding::new("fallback", "discord"),
        ];
        let resolve = |m: &InboundMessage| resolve_binding(&bindings, m).map(AgentId::as_str);
        assert_eq!(resolve(&discord("discord", Some("1"), "10", None)), Some("ops"));
        assert_eq!(resolve(&discord("discord", Some("1"), "11", None)), Some("community"));
        assert_eq!(resolve(&discord("discord", Some("2"), "11", None)), Some("fallback"));
        assert_eq!(resolve(&discord("discord", None, "dm", None)), Some("fallback"));
    }

    #[test]
    fn threads_inherit_their_channels_binding() {
        let binding = Binding::new("ops", "discord").with_channels(["10"]);
        assert!(binding.matches(&discord("discord", Some("1"), "99", Some("10"))));
        assert!(!binding.matches(&discord("discord", Some("1"), "99", Some("11"))));
    }

    #[test]
    fn instances_are_told_apart() {
        let default = Binding::new("a", "discord");
        let ops = Binding::new("b", "discord").with_instance("ops");
        let from_ops = discord("discord:ops", Some("1"), "10", None);
        let from_default = discord("discord", Some("1"), "10", None);
        assert!(!default.matches(&from_ops));
        assert!(ops.matches(&from_ops));
        assert!(!ops.matches(&from_default));
        assert_eq!(ops.adapter_key(), "discord:ops");
    }

    #[test]
    fn numbers_and_strings_compare_alike_and_platforms_must_agree() {
        let message = InboundMessage::text("discord", "discord:1:2", Sender::new("u1"), "hi")
            .with_metadata(GUILD_KEY, json!(1))
            .with_metadata(CHANNEL_KEY, json!(2));
        assert!(Binding::new("a", "discord").with_guild("1").with_channels(["2"]).matches(&message));
        assert!(!Binding::new("a", "slack").matches(&message));
        assert!(!Binding::new("a", "discord").with_users(["u2"]).matches(&message));
        assert!(Binding::new("a", "discord").with_users(["u1"]).matches(&message));
    }
}

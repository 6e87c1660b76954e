//! The engine: per-agent profiles and the factory the runtime calls for each conversation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use spacebot_core::{AgentId, ConversationContext, ConversationEngine, Inbox, LanguageModel};

use crate::channel::Channel;
use crate::prompt;

/// Limits of a channel.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelSettings {
    /// Model calls allowed in one turn before it ends with an error.
    pub max_model_calls_per_turn: usize,
    /// Wall-clock limit of one turn.
    pub turn_timeout: Duration,
    /// Messages of history kept in context (and loaded from the log at start).
    pub history_limit: usize,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self { max_model_calls_per_turn: 6, turn_timeout: Duration::from_secs(600), history_limit: 60 }
    }
}

impl ChannelSettings {
    /// Sets the model-call budget per turn.
    pub fn with_max_model_calls_per_turn(mut self, calls: usize) -> Self {
        self.max_model_calls_per_turn = calls.max(1);
        self
    }

    /// Sets the turn time limit.
    pub fn with_turn_timeout(mut self, timeout: Duration) -> Self {
        self.turn_timeout = timeout;
        self
    }

    /// Sets how many messages of history are kept.
    pub fn with_history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }
}

/// One agent as the engine sees it: identity, prompt, model and limits.
#[derive(Clone)]
pub struct AgentProfile {
    pub(crate) id: AgentId,
    pub(crate) system_prompt: String,
    pub(crate) model: Option<Arc<dyn LanguageModel>>,
    pub(crate) settings: ChannelSettings,
}

impl AgentProfile {
    /// An agent with the default prompt and limits and no model yet.
    ///
    /// An agent without a model still answers: every message gets a visible error saying that no
    /// model is configured, so a misconfigured agent is never silent.
    pub fn new(id: impl Into<AgentId>) -> Self {
        let id = id.into();
        Self {
            system_prompt: prompt::default_system_prompt(&id),
            id,
            model: None,
            settings: ChannelSettings::default(),
        }
    }

    /// Sets the model channels of this agent use.
    pub fn with_model(mut self, model: Arc<dyn LanguageModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// Replaces the system prompt.
    pub fn with_system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = prompt.into();
        self
    }

    /// Sets the channel limits.
    pub fn with_settings(mut self, settings: ChannelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The agent id.
    pub fn id(&self) -> &AgentId {
        &self.id
    }
}

/// Runs a channel per conversation for the agents it knows.
pub struct ChannelEngine {
    agents: HashMap<AgentId, Arc<AgentProfile>>,
}

impl ChannelEngine {
    /// An engine for these agents.
    pub fn new(agents: impl IntoIterator<Item = AgentProfile>) -> Self {
        Self { agents: agents.into_iter().map(|a| (a.id.clone(), Arc::new(a))).collect() }
    }
}

impl ConversationEngine for ChannelEngine {
    fn run_conversation(&self, ctx: ConversationContext, inbox: Inbox) -> BoxFuture<'static, ()> {
        // The runtime only routes to agents it hosts; an agent the engine was not told about
        // still gets a channel, with no model, so its messages are answered with a visible error.
        let profile =
            self.agents.get(&ctx.agent).cloned().unwrap_or_else(|| Arc::new(AgentProfile::new(ctx.agent.clone())));
        Box::pin(Channel::new(ctx, profile).run(inbox))
    }
}

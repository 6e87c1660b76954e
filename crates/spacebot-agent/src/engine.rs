//! The engine: per-agent profiles and the factory the runtime calls for each conversation.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;

use spacebot_core::{
    AgentId, ConversationContext, ConversationEngine, CronJobs, Inbox, LanguageModel, MemoryStore, ProcessKind,
    ResponseMode, Tool,
};

use crate::budget::{BackgroundBudget, BackgroundBudgetSettings};
use crate::channel::Channel;
use crate::context::compactor::CompactionSettings;
use crate::identity::IdentityDir;
use crate::prompt;
use crate::task_tools::{TaskToolSettings, task_tools};

/// How bursts of messages in group conversations are merged into one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoalesceSettings {
    /// A burst ends when no message arrived for this long.
    pub debounce: Duration,
    /// A burst never waits longer than this after its first message.
    pub max_wait: Duration,
}

impl Default for CoalesceSettings {
    fn default() -> Self {
        Self { debounce: Duration::from_millis(1500), max_wait: Duration::from_secs(5) }
    }
}

impl CoalesceSettings {
    /// Settings with this debounce and maximum wait.
    pub fn new(debounce: Duration, max_wait: Duration) -> Self {
        Self { debounce, max_wait: max_wait.max(debounce) }
    }
}

/// Limits of a channel and of the branches and workers it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelSettings {
    /// Model calls allowed in one turn before it ends with an error.
    pub max_model_calls_per_turn: usize,
    /// Model calls allowed in a relay turn (one started by background results).
    pub max_model_calls_per_relay: usize,
    /// Wall-clock limit of one turn.
    pub turn_timeout: Duration,
    /// Messages of history loaded from the log when a channel starts. From then on the compactor
    /// keeps the context within the model's window.
    pub history_limit: usize,
    /// Burst coalescing in group conversations; `None` turns it off. Never applies to direct
    /// messages or control commands.
    pub coalesce: Option<CoalesceSettings>,
    /// Branches running at once per channel.
    pub max_branches: usize,
    /// Workers running (or idle, when interactive) at once per channel.
    pub max_workers: usize,
    /// Model calls a branch may make.
    pub branch_model_calls: usize,
    /// Wall-clock limit of a branch.
    pub branch_timeout: Duration,
    /// Model calls a worker may make per task (each follow-up of an interactive worker gets a
    /// fresh budget).
    pub worker_model_calls: usize,
    /// Wall-clock limit of a worker, follow-ups included.
    pub worker_timeout: Duration,
    /// Completions within this window of the first are relayed in one turn.
    pub relay_window: Duration,
    /// Relay turns allowed per real user message; later results go into history silently.
    pub max_relays_per_message: u32,
    /// How long a cancelled process (at `/stop` or shutdown) gets to end before it is aborted.
    pub cancel_grace: Duration,
    /// When and how much the channel compacts its context.
    pub compaction: CompactionSettings,
    /// When the agent answers (a binding's mode, carried on the message, wins).
    pub response_mode: ResponseMode,
    /// Who may use the control commands that change a conversation (`/stop`, `/pause`,
    /// `/resume`, `/new`), as participant ids (`discord:1234`, `slack:U0123`); empty lets
    /// everyone. `/status` is for everyone.
    pub admins: Vec<String>,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            max_model_calls_per_turn: 6,
            max_model_calls_per_relay: 3,
            turn_timeout: Duration::from_secs(600),
            history_limit: 60,
            coalesce: Some(CoalesceSettings::default()),
            max_branches: 5,
            max_workers: 5,
            branch_model_calls: 10,
            branch_timeout: Duration::from_secs(600),
            worker_model_calls: 25,
            worker_timeout: Duration::from_secs(30 * 60),
            relay_window: Duration::from_millis(500),
            max_relays_per_message: 3,
            cancel_grace: Duration::from_secs(2),
            compaction: CompactionSettings::default(),
            response_mode: ResponseMode::Active,
            admins: Vec::new(),
        }
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

    /// Sets how many messages of history are loaded from the log at start.
    pub fn with_history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }

    /// Sets when the agent answers.
    pub fn with_response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = mode;
        self
    }

    /// Lets only these participants use the control commands that change a conversation.
    pub fn with_admins(mut self, admins: impl IntoIterator<Item = String>) -> Self {
        self.admins = admins.into_iter().collect();
        self
    }

    /// Sets (or, with `None`, turns off) burst coalescing.
    pub fn with_coalesce(mut self, coalesce: Option<CoalesceSettings>) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// Sets how many branches and workers may run at once per channel.
    pub fn with_process_limits(mut self, branches: usize, workers: usize) -> Self {
        self.max_branches = branches;
        self.max_workers = workers;
        self
    }

    /// Sets a worker's model-call budget per task and its wall-clock limit.
    pub fn with_worker_limits(mut self, model_calls: usize, timeout: Duration) -> Self {
        self.worker_model_calls = model_calls.max(1);
        self.worker_timeout = timeout;
        self
    }

    /// Sets a branch's model-call budget and wall-clock limit.
    pub fn with_branch_limits(mut self, model_calls: usize, timeout: Duration) -> Self {
        self.branch_model_calls = model_calls.max(1);
        self.branch_timeout = timeout;
        self
    }

    /// Sets the compaction thresholds and limits.
    pub fn with_compaction(mut self, compaction: CompactionSettings) -> Self {
        self.compaction = compaction;
        self
    }

    /// Sets the relay merge window and the number of relay turns per user message.
    pub fn with_relays(mut self, window: Duration, per_message: u32) -> Self {
        self.relay_window = window;
        self.max_relays_per_message = per_message;
        self
    }
}

/// Tools whose set changes while the daemon runs (those of MCP servers, found when a server
/// connects and gone while it is away): asked for the current set at every worker's start.
pub trait ToolSource: Send + Sync + 'static {
    /// The tools available now.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;
}

/// The workers' tools once built, or why they could not be.
type BuiltTools = Result<Vec<Arc<dyn Tool>>, String>;

/// One agent as the engine sees it: identity, prompt, models, tools and limits.
#[derive(Clone)]
pub struct AgentProfile {
    pub(crate) id: AgentId,
    pub(crate) system_prompt: String,
    pub(crate) model: Option<Arc<dyn LanguageModel>>,
    pub(crate) branch_model: Option<Arc<dyn LanguageModel>>,
    pub(crate) worker_model: Option<Arc<dyn LanguageModel>>,
    pub(crate) compactor_model: Option<Arc<dyn LanguageModel>>,
    pub(crate) settings: ChannelSettings,
    pub(crate) task_tools: TaskToolSettings,
    pub(crate) worker_tools: Vec<Arc<dyn Tool>>,
    pub(crate) branch_tools: Vec<Arc<dyn Tool>>,
    /// Tools workers get besides the others, asked for at each worker's start.
    pub(crate) tool_sources: Vec<Arc<dyn ToolSource>>,
    /// The agent's long-term memory: branches get the memory tools and every turn's system
    /// prompt carries its knowledge render.
    pub(crate) memory: Option<Arc<dyn MemoryStore>>,
    /// The agent's cron jobs: its channels get the `cron` tool.
    pub(crate) cron: Option<Arc<dyn CronJobs>>,
    /// The identity files every turn's system prompt carries, read again at each turn.
    pub(crate) identity: Option<IdentityDir>,
    /// Whether the channel's model sees images: image attachments the adapter fetched are shown
    /// to it; otherwise the model gets a note saying an image was not shown.
    pub(crate) vision: bool,
    /// The allowance of background model calls (compaction) of this agent, shared by its
    /// conversations.
    pub(crate) background: Arc<BackgroundBudget>,
    /// The built-in task tools plus `worker_tools`, built at the first worker (shared by the
    /// agent's channels), or why they could not be.
    built_worker_tools: Arc<OnceLock<BuiltTools>>,
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
            id: id.clone(),
            model: None,
            branch_model: None,
            worker_model: None,
            compactor_model: None,
            settings: ChannelSettings::default(),
            task_tools: TaskToolSettings::default(),
            worker_tools: Vec::new(),
            branch_tools: Vec::new(),
            tool_sources: Vec::new(),
            memory: None,
            cron: None,
            identity: None,
            vision: false,
            background: Arc::new(BackgroundBudget::new(id.clone(), BackgroundBudgetSettings::default())),
            built_worker_tools: Arc::default(),
        }
    }

    /// Sets how many background model calls (compaction) the agent may make an hour and when
    /// its circuit breaker stops them (see [`BackgroundBudget`]).
    pub fn with_background_budget(mut self, settings: BackgroundBudgetSettings) -> Self {
        self.background = Arc::new(BackgroundBudget::new(self.id.clone(), settings));
        self
    }

    /// Reads the agent's identity files (`SOUL.md`, `IDENTITY.md`, `USER.md`) from `identity`
    /// into every turn's system prompt, after the agent's prompt.
    pub fn with_identity(mut self, identity: IdentityDir) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Says whether the channel's model sees images (see the crate docs on attachments).
    pub fn with_vision(mut self, vision: bool) -> Self {
        self.vision = vision;
        self
    }

    /// The agent's background budget.
    pub fn background_budget(&self) -> &Arc<BackgroundBudget> {
        &self.background
    }

    /// Sets the model channels of this agent use (and every process type without its own).
    pub fn with_model(mut self, model: Arc<dyn LanguageModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// Sets the model of one process type; branch, worker and compactor default to the channel's.
    pub fn with_process_model(mut self, kind: ProcessKind, model: Arc<dyn LanguageModel>) -> Self {
        match kind {
            ProcessKind::Branch => self.branch_model = Some(model),
            ProcessKind::Worker => self.worker_model = Some(model),
            ProcessKind::Compactor => self.compactor_model = Some(model),
            _ => self.model = Some(model),
        }
        self
    }

    /// The model a process type runs on: its own, else the channel's.
    pub fn model_for(&self, kind: ProcessKind) -> Option<Arc<dyn LanguageModel>> {
        let own = match kind {
            ProcessKind::Branch => self.branch_model.as_ref(),
            ProcessKind::Worker => self.worker_model.as_ref(),
            ProcessKind::Compactor => self.compactor_model.as_ref(),
            _ => None,
        };
        own.or(self.model.as_ref()).cloned()
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

    /// Sets the workers' built-in task tools (workspace, shell, web fetch).
    pub fn with_task_tools(mut self, settings: TaskToolSettings) -> Self {
        self.task_tools = settings;
        self.built_worker_tools = Arc::default();
        self
    }

    /// Adds a tool workers may call, besides the built-in task tools.
    pub fn with_worker_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.worker_tools.push(tool);
        self.built_worker_tools = Arc::default();
        self
    }

    /// Adds a source of tools workers may call (an MCP client, say), asked for its current set
    /// each time a worker starts; a name already taken by another tool (or the harness's
    /// `set_status`) is left out.
    pub fn with_tool_source(mut self, source: Arc<dyn ToolSource>) -> Self {
        self.tool_sources.push(source);
        self
    }

    /// Adds a tool branches may call (memory tools, say).
    pub fn with_branch_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.branch_tools.push(tool);
        self
    }

    /// Gives the agent a long-term memory. Branches then get `memory_recall`, `memory_save` and
    /// `memory_delete`, bound to their conversation, besides their other tools; and each turn's
    /// system prompt ends its agent part with the knowledge render of what the conversation may
    /// see (re-rendered as the turn starts, so it only changes when the memories do).
    pub fn with_memory(mut self, memory: Arc<dyn MemoryStore>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Gives the agent's channels the `cron` tool over `cron` (create, list and delete the
    /// conversation's scheduled jobs).
    pub fn with_cron(mut self, cron: Arc<dyn CronJobs>) -> Self {
        self.cron = Some(cron);
        self
    }

    /// The agent's long-term memory, if it has one.
    pub fn memory(&self) -> Option<&Arc<dyn MemoryStore>> {
        self.memory.as_ref()
    }

    /// The tools workers get: the built-in task tools, then the added ones, then those the tool
    /// sources offer now.
    pub(crate) fn worker_tools(&self) -> Result<Vec<Arc<dyn Tool>>, String> {
        let mut tools = self.built_tools()?;
        for source in &self.tool_sources {
            for tool in source.tools() {
                // The harness's own `set_status` is added by the worker itself.
                let taken = tool.name() == crate::tools::SET_STATUS_TOOL
                    || tools.iter().any(|known| known.name() == tool.name());
                if !taken {
                    tools.push(tool);
                }
            }
        }
        Ok(tools)
    }

    /// The built-in task tools and the added ones, built once.
    fn built_tools(&self) -> Result<Vec<Arc<dyn Tool>>, String> {
        self.built_worker_tools
            .get_or_init(|| {
                let mut tools = task_tools(&self.task_tools).map_err(|error| {
                    tracing::error!(agent = %self.id, %error, "workers get no task tools");
                    format!("the workers' tools are not available ({error}).")
                })?;
                tools.extend(self.worker_tools.iter().cloned());
                Ok(tools)
            })
            .clone()
    }

    /// The agent id.
    pub fn id(&self) -> &AgentId {
        &self.id
    }

    /// The channel limits.
    pub fn settings(&self) -> &ChannelSettings {
        &self.settings
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

    fn notices(&self) -> Vec<String> {
        let mut notices: Vec<String> = self.agents.values().filter_map(|agent| agent.background.notice()).collect();
        notices.sort();
        notices
    }
}

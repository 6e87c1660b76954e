//! The config file: TOML read with figment, overridden by `SPACEBOT_` environment variables
//! (`__` between levels), with `env:NAME` values read from the environment.
//!
//! Only this binary reads config files and the environment; library crates get plain values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use spacebot_core::ProcessKind;

use crate::data_dir::DataDir;

mod check;
mod conversations;
mod cron;
mod effective;
mod fleet;
mod mcp;
mod memory;
mod messaging;
mod storage;
mod tools;

pub(crate) use conversations::ConversationSettings;
pub(crate) use effective::effective;
pub(crate) use fleet::FleetSettings;
pub(crate) use memory::{DEFAULT_EMBEDDING_MODEL, EmbedderSettings, MemorySettings};
pub(crate) use messaging::Messaging;
pub(crate) use storage::StorageSettings;

/// Where the HTTP API listens when the config says nothing.
pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:19898";

/// The whole config file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    llm: RawLlm,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[serde(default)]
    messaging: messaging::RawMessaging,
    #[serde(default)]
    bindings: Vec<messaging::RawBinding>,
    shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    tools: tools::RawTools,
    #[serde(default)]
    memory: memory::RawMemory,
    #[serde(default)]
    conversations: conversations::RawConversations,
    #[serde(default)]
    storage: storage::RawStorage,
    fleet: Option<fleet::RawFleet>,
    /// `[[mcp_servers]]`: MCP servers whose tools workers get.
    #[serde(default)]
    mcp_servers: Vec<mcp::RawMcpServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    bind: Option<String>,
    token: Option<String>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    /// Serve a non-loopback `bind` without a token, on purpose.
    allow_unauthenticated: Option<bool>,
    /// `[[api.tokens]]`: tokens with limited rights.
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    token: String,
    scopes: Vec<String>,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    senders: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    models: RawModels,
    /// `[llm.prices."provider/model"]`: what the model's tokens cost, for `spacebot usage`.
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    /// `llm.vision_models`: the `provider/model`s that are shown images.
    #[serde(default)]
    vision_models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input_per_million: f64,
    output_per_million: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key: Option<String>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    retry_backoff_ms: Option<u64>,
    max_tokens: Option<u32>,
    context_window: Option<usize>,
    /// The GGUF file of a `kind = "local"` provider (`~` is the home directory).
    path: Option<PathBuf>,
}

/// `llm.providers.NAME.kind`: the wire format a provider speaks, as written in the config
/// (`openai`, `anthropic` or `local`, in any case). Anything else fails to deserialize, so figment names
/// the key and the accepted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProviderKind {
    OpenAi,
    Anthropic,
    Local,
}

impl ProviderKind {
    /// The names the config accepts, in the order error messages list them.
    const NAMES: &'static [&'static str] = &["openai", "anthropic", "local"];
}

impl<'de> Deserialize<'de> for ProviderKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(Self::OpenAi),
            "anthropic" => Ok(Self::Anthropic),
            "local" => Ok(Self::Local),
            _ => Err(serde::de::Error::unknown_variant(&name, Self::NAMES)),
        }
    }
}

impl From<ProviderKind> for spacebot_llm::ProviderKind {
    fn from(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::OpenAi => Self::OpenAi,
            ProviderKind::Anthropic => Self::Anthropic,
            ProviderKind::Local => Self::Local,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    channel: Option<RawModelSpec>,
    branch: Option<RawModelSpec>,
    worker: Option<RawModelSpec>,
    compactor: Option<RawModelSpec>,
}

/// `"provider/model"`, or a fallback chain `["provider/model", "other/model", ...]` tried in
/// order when a model fails for a reason another may not have (rate limit, outage, timeout).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawModelSpec {
    One(String),
    Chain(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    model: Option<RawModelSpec>,
    system_prompt: Option<String>,
    max_model_calls_per_turn: Option<usize>,
    turn_timeout_secs: Option<u64>,
    history_limit: Option<usize>,
    /// Where `SOUL.md`, `IDENTITY.md` and `USER.md` are (default `DATA_DIR/agents/<id>`).
    identity_dir: Option<PathBuf>,
    /// `active`, `mention_only` or `observe`.
    response_mode: Option<String>,
    /// Who may use the control commands that change a conversation.
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    compaction: RawCompaction,
    /// `[[agents.cron]]`: scheduled jobs.
    #[serde(default)]
    cron: Vec<spacebot_core::CronJobSpec>,
}

/// `agents[].compaction`: how the agent's channels keep their context small.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompaction {
    mode: Option<String>,
    background: Option<f64>,
    aggressive: Option<f64>,
    emergency: Option<f64>,
    background_share: Option<f64>,
    aggressive_share: Option<f64>,
    emergency_share: Option<f64>,
    interval_messages: Option<usize>,
    interval_token_fraction: Option<f64>,
    max_messages_per_checkpoint: Option<usize>,
    rollup_threshold: Option<usize>,
    rollup_batch: Option<usize>,
    /// The agent's background budget: compaction model calls allowed per hour.
    max_calls_per_hour: Option<u32>,
    /// Failed compaction calls in a row that pause them (the circuit breaker).
    breaker_failures: Option<u32>,
    /// How long the breaker pauses them.
    breaker_cooldown_secs: Option<u64>,
}

/// The validated config the daemon runs on: read with [`Config::load`], run with
/// [`Daemon::start`](crate::Daemon::start).
#[derive(Debug)]
pub struct Config {
    /// The file it came from, if any.
    pub(crate) source: Option<PathBuf>,
    pub(crate) data_dir: DataDir,
    /// Where the data dir was set, for errors about it: ``config key `data_dir` in FILE``,
    /// `--data-dir`, ...
    pub(crate) data_dir_origin: String,
    pub(crate) api: ApiSettings,
    pub(crate) providers: BTreeMap<String, spacebot_llm::ProviderConfig>,
    pub(crate) agents: Vec<AgentSettings>,
    pub(crate) shutdown_grace: Duration,
    /// Platform connections (`[messaging.*]`).
    pub(crate) messaging: Messaging,
    /// Which agent answers where (`[[bindings]]`), in file order.
    pub(crate) bindings: Vec<spacebot_core::Binding>,
    /// `llm.models.{branch,worker,compactor}` when set; each defaults to the agent's channel model.
    pub(crate) process_models: Vec<(ProcessKind, ModelChain)>,
    /// `[tools]`: the workers' task tools (each agent adds its own workspace).
    pub(crate) task_tools: spacebot_agent::TaskToolSettings,
    /// `[memory]`: the embedder and the maintenance schedule.
    pub(crate) memory: MemorySettings,
    /// `[conversations]`: when idle conversations are evicted.
    pub(crate) conversations: ConversationSettings,
    /// `[storage]`: where the conversation log lives.
    pub(crate) storage: StorageSettings,
    /// `[fleet]`: this daemon as a member of a fleet on that log, if it is one.
    pub(crate) fleet: Option<FleetSettings>,
    /// `[llm.prices]`: US dollars per million tokens, by `provider/model`.
    pub(crate) prices: BTreeMap<String, spacebot_webhook::ModelPrice>,
    /// `[[mcp_servers]]`, checked.
    pub(crate) mcp_servers: Vec<spacebot_mcp::McpServerSettings>,
    /// The MCP servers' environment values and tokens, for the scrubber.
    pub(crate) mcp_secrets: Vec<String>,
    /// Set by [`Config::with_embedded_default`] when the agents run on the local model because
    /// nothing else is configured.
    pub(crate) embedded: Option<EmbeddedDefault>,
}

/// The model the daemon runs with no provider configured: the local chat model in the models
/// directory, when its file is there.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddedDefault {
    /// The GGUF file.
    pub(crate) path: PathBuf,
    /// What `start`, `status` and `doctor` say about it.
    pub(crate) notice: String,
}

/// The provider name the embedded default registers.
const EMBEDDED_PROVIDER: &str = "local";
/// Its model name.
const EMBEDDED_MODEL: &str = "SmolLM2-135M";
/// Its file, under the models directory.
const EMBEDDED_FILE: &str = "SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The local embedder's directory, under the models directory.
#[cfg(feature = "local-embeddings")]
const EMBEDDED_EMBEDDER_DIR: &str = "all-MiniLM-L6-v2";

/// Where `scripts/fetch-models` puts the models: `SPACEBOT_MODELS_DIR`, else
/// `~/.cache/spacebot/models`.
pub(crate) fn models_dir() -> PathBuf {
    match std::env::var_os("SPACEBOT_MODELS_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => expand_home(Path::new(&dir)),
        None => home().join(".cache/spacebot/models"),
    }
}

impl Config {
    /// With no provider and no model configured anywhere, runs every agent on the local chat
    /// model (and, when `[memory]` names no embedder, embeds with the local sentence embedder)
    /// if their files are in [`models_dir`]: the first run works with no config and no key.
    /// Otherwise the config is returned as it is.
    pub(crate) fn with_embedded_default(mut self) -> Self {
        let configured = !self.providers.is_empty()
            || !self.process_models.is_empty()
            || self.agents.iter().any(|agent| agent.model.is_some());
        if configured || !cfg!(feature = "local-model") {
            return self;
        }
        let models = models_dir();
        let path = models.join(EMBEDDED_FILE);
        if !path.is_file() {
            return self;
        }
        let mut provider = spacebot_llm::ProviderConfig::local(&path);
        // The answer limit; the only setting of the embedded default, as there is no config.
        if let Some(tokens) = std::env::var("SPACEBOT_LOCAL_MAX_TOKENS").ok().and_then(|v| v.trim().parse::<u32>().ok())
        {
            provider = provider.with_max_tokens(tokens.max(1));
        }
        self.providers.insert(EMBEDDED_PROVIDER.to_owned(), provider);
        let chain = ModelChain {
            models: vec![ModelRef { provider: EMBEDDED_PROVIDER.to_owned(), model: EMBEDDED_MODEL.to_owned() }],
        };
        for agent in &mut self.agents {
            agent.model = Some(chain.clone());
        }
        #[cfg(feature = "local-embeddings")]
        if !self.memory.embedder_configured {
            let model_dir = models.join(EMBEDDED_EMBEDDER_DIR);
            if spacebot_memory::LOCAL_MODEL_FILES.iter().all(|file| model_dir.join(file).is_file()) {
                self.memory.embedder = EmbedderSettings::Local { model_dir };
            }
        }
        let notice = format!(
            "local model {EMBEDDED_MODEL}: small, for trying things out (no provider is configured, so every agent runs \
             {} on this machine); for better answers configure a hosted provider: [llm.providers.main] kind = \"openai\" \
             (or \"anthropic\"), api_key = \"env:OPENAI_API_KEY\", and [llm.models] channel = \"main/gpt-4.1-mini\" \
             (see docs/configuration.md)",
            path.display()
        );
        self.embedded = Some(EmbeddedDefault { path, notice });
        self
    }
}

#[derive(Debug)]
pub(crate) struct ApiSettings {
    pub(crate) bind: String,
    pub(crate) token: Option<String>,
    /// `[[api.tokens]]`, checked.
    pub(crate) tokens: Vec<spacebot_webhook::ScopedToken>,
    /// The scoped tokens' values, for the scrubber.
    pub(crate) token_values: Vec<String>,
    pub(crate) max_body_bytes: usize,
    /// How many connections the HTTP server holds, and how long it waits for a request.
    pub(crate) limits: spacebot_webhook::ServeLimits,
}

#[derive(Debug)]
pub(crate) struct AgentSettings {
    pub(crate) id: String,
    /// `provider/model` (or a fallback chain of them), if any model is configured.
    pub(crate) model: Option<ModelChain>,
    pub(crate) system_prompt: Option<String>,
    pub(crate) max_model_calls_per_turn: Option<usize>,
    pub(crate) turn_timeout: Option<Duration>,
    pub(crate) history_limit: Option<usize>,
    /// `agents[].compaction`: the mode (rolling or chronicle), thresholds and intervals.
    pub(crate) compaction: spacebot_agent::CompactionSettings,
    /// `agents[].compaction.{max_calls_per_hour,breaker_failures,breaker_cooldown_secs}`: the
    /// budget of background model calls and its circuit breaker.
    pub(crate) background: spacebot_agent::BackgroundBudgetSettings,
    /// `agents[].identity_dir`, or `DATA_DIR/agents/<id>`.
    pub(crate) identity_dir: PathBuf,
    /// `agents[].response_mode` (default `active`).
    pub(crate) response_mode: spacebot_core::ResponseMode,
    /// `agents[].admins`: participant ids (`discord:1234`); empty lets everyone.
    pub(crate) admins: Vec<String>,
    /// `[[agents.cron]]`, checked; upserted into the store at start.
    pub(crate) cron: Vec<spacebot_core::CronJob>,
    /// Whether its channel model (every model of the chain) is in `llm.vision_models`.
    pub(crate) vision: bool,
}

/// A `provider/model` reference, checked against the configured providers.
#[derive(Debug, Clone)]
pub(crate) struct ModelRef {
    pub(crate) provider: String,
    pub(crate) model: String,
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// A model, or a fallback chain of models tried in order; never empty.
#[derive(Debug, Clone)]
pub(crate) struct ModelChain {
    pub(crate) models: Vec<ModelRef>,
}

impl std::fmt::Display for ModelChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.models.iter().map(ToString::to_string).collect();
        match names.as_slice() {
            [one] => f.write_str(one),
            _ => write!(f, "{} (falling back in this order)", names.join(", ")),
        }
    }
}

/// Where to look for the config and data: the `--config` and `--data-dir` flags.
#[derive(Debug, Default, Clone)]
pub struct Location {
    /// `--config`: must exist when given.
    pub(crate) config: Option<PathBuf>,
    /// `--data-dir`: overrides `data_dir`.
    pub(crate) data_dir: Option<PathBuf>,
}

impl Location {
    /// No file named: `~/.spacebot/config.toml` if it exists, else the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this config file, which must exist.
    pub fn with_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// Uses this data directory, whatever the config says.
    pub fn with_data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }
}

impl Config {
    /// Every secret value of the configuration (provider keys, the API token, adapter tokens,
    /// the embeddings key, the web search key), for the scrubber that keeps them out of everything sent.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self.providers.values().map(|provider| provider.api_key.clone()).collect();
        secrets.extend(self.api.token.clone());
        secrets.extend(self.api.token_values.iter().cloned());
        for discord in &self.messaging.discord {
            secrets.push(discord.token.clone());
        }
        for slack in &self.messaging.slack {
            secrets.extend([slack.bot_token.clone(), slack.app_token.clone()]);
        }
        for telegram in &self.messaging.telegram {
            secrets.push(telegram.token.clone());
            secrets.extend(telegram.webhook.iter().map(|w| w.secret_token.clone()));
        }
        for email in &self.messaging.email {
            secrets.extend([email.imap.password.clone(), email.smtp.password.clone()].into_iter().flatten());
        }
        if let EmbedderSettings::OpenAi { api_key: Some(key), .. } = &self.memory.embedder {
            secrets.push(key.clone());
        }
        secrets.extend(self.mcp_secrets.iter().cloned());
        secrets.extend(self.task_tools.web_search.as_ref().and_then(|search| search.api_key.clone()));
        secrets.extend(self.storage.password());
        secrets
    }

    /// Loads the config `location` names, lays the `SPACEBOT_` environment variables over it,
    /// resolves `env:` values and validates everything.
    ///
    /// # Errors
    ///
    /// One sentence naming the file, key or value at fault.
    pub fn load(location: &Location) -> anyhow::Result<Self> {
        let (figment, file, home_dir) = layered(location)?;
        // `secret:NAME` values are read from the secret store of the data dir the config names.
        let data_dir = data_dir_of(&figment, location, &home_dir);
        let figment = crate::secrets::resolve_references(figment, &data_dir)?;
        let raw: RawConfig =
            figment.extract().map_err(|error| anyhow::anyhow!(describe_figment(error, file.as_deref())))?;
        let data_dir_origin = match (&location.data_dir, &raw.data_dir) {
            (Some(_), _) => "--data-dir".to_owned(),
            (None, Some(_)) => format!("config key `data_dir`{}", check::origin(&figment, "data_dir")),
            (None, None) => "config key `data_dir`, by default ~/.spacebot".to_owned(),
        };
        validate(raw, file, location, home_dir, data_dir_origin).map_err(|error| {
            // The checks name the key; say where its value came from too.
            let mut message = check::with_origin(&error.to_string(), &figment);
            for cause in error.chain().skip(1) {
                message.push_str(": ");
                message.push_str(&cause.to_string());
            }
            anyhow::anyhow!(message)
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }
}

/// The data directory `location` and the config it finds name, without reading the rest of the
/// config (nor its secrets): for `spacebot secrets`, which must work while a secret the config
/// names is still missing.
pub(crate) fn data_dir_for(location: &Location) -> anyhow::Result<DataDir> {
    let (figment, _, home_dir) = layered(location)?;
    Ok(data_dir_of(&figment, location, &home_dir))
}

/// The data directory as `load` will settle it (an empty or unreadable `data_dir` is left to
/// its checks; this gives the default then).
fn data_dir_of(figment: &Figment, location: &Location, home_dir: &Path) -> DataDir {
    let configured = figment.extract_inner::<PathBuf>("data_dir").ok().filter(|dir| !dir.as_os_str().is_empty());
    DataDir::new(
        location.data_dir.clone().or(configured).map_or_else(|| home_dir.to_path_buf(), |dir| expand_home(&dir)),
    )
}

/// The config file `location` names (or the data dir's), with the `SPACEBOT_` environment
/// variables laid over it, and the default data dir.
fn layered(location: &Location) -> anyhow::Result<(Figment, Option<PathBuf>, PathBuf)> {
    {
        let home_dir = home().join(".spacebot");
        let file = match &location.config {
            Some(path) if !path.is_file() => bail!("config file {} does not exist", path.display()),
            Some(path) => Some(path.clone()),
            None => {
                let candidate =
                    DataDir::new(location.data_dir.clone().unwrap_or_else(|| home_dir.clone())).config_file();
                candidate.is_file().then_some(candidate)
            }
        };

        let mut figment = Figment::new();
        if let Some(path) = &file {
            check::parse_toml(path)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        // `SPACEBOT_LLM__PROVIDERS__MAIN__API_KEY` sets `llm.providers.main.api_key`. Variables
        // without `__` are the CLI's own (`SPACEBOT_URL`, `SPACEBOT_TOKEN`) or values referenced by
        // `env:` (`SPACEBOT_API_TOKEN`), except the top-level keys named here.
        figment = figment.merge(
            Env::prefixed("SPACEBOT_")
                .filter(|key| key.as_str().contains("__") || key == "data_dir" || key == "shutdown_grace_secs")
                .split("__"),
        );
        Ok((figment, file, home_dir))
    }
}

fn describe_figment(error: figment::Error, file: Option<&Path>) -> String {
    let mut messages = Vec::new();
    for error in error {
        let key = error.path.join(".");
        let origin = match error.metadata.as_ref().and_then(|m| m.source.as_ref()) {
            Some(figment::Source::File(path)) => format!(" in {}", path.display()),
            Some(_) => error.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default(),
            None => file.map(|f| format!(" in {}", f.display())).unwrap_or_default(),
        };
        let what = match &error.kind {
            // figment's path already ends with the unknown key.
            figment::error::Kind::UnknownField(field, _) => {
                let full = if key.is_empty() { field.clone() } else { key.clone() };
                format!("unknown config key `{full}`")
            }
            figment::error::Kind::UnknownVariant(found, expected) => {
                let expected: Vec<String> = expected.iter().map(|name| format!("`{name}`")).collect();
                format!("config key `{key}` must be one of {}, not `{found}`", expected.join(", "))
            }
            figment::error::Kind::MissingField(field) => {
                let full = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
                format!("missing config key `{full}`")
            }
            kind if key.is_empty() => format!("invalid config: {kind}"),
            kind => format!("invalid value for config key `{key}`: {kind}"),
        };
        messages.push(format!("{what}{origin}"));
    }
    messages.join("; ")
}

fn validate(
    raw: RawConfig,
    source: Option<PathBuf>,
    location: &Location,
    home_dir: PathBuf,
    data_dir_origin: String,
) -> anyhow::Result<Config> {
    if location.data_dir.as_ref().is_some_and(|dir| dir.as_os_str().to_string_lossy().trim().is_empty()) {
        bail!("--data-dir is empty; name a directory");
    }
    if raw.data_dir.as_ref().is_some_and(|dir| dir.as_os_str().to_string_lossy().trim().is_empty())
        && location.data_dir.is_none()
    {
        bail!("config key `data_dir` is empty; name a directory, or leave the key out for ~/.spacebot");
    }
    let data_dir =
        DataDir::new(location.data_dir.clone().or(raw.data_dir).map(|dir| expand_home(&dir)).unwrap_or(home_dir));

    let bind = raw.api.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned());
    let address = bind
        .parse::<std::net::SocketAddr>()
        .with_context(|| format!("config key `api.bind` must be an address like 127.0.0.1:19898, not `{bind}`"))?;
    let token = raw.api.token.map(|value| resolve(&value, "api.token")).transpose()?;
    // An empty token would turn authentication off without anyone deciding so.
    if token.as_ref().is_some_and(|token| token.trim().is_empty()) {
        bail!(
            "config key `api.token` is empty (`\"\"`, or an `env:` variable set to nothing), which would turn authentication off: set a token, or remove the key to run without one"
        );
    }
    if token.is_none()
        && raw.api.tokens.is_empty()
        && !address.ip().is_loopback()
        && raw.api.allow_unauthenticated != Some(true)
    {
        bail!(
            "config key `api.bind` is {bind}, reachable from other machines, and no `api.token` is set: set one, or set `api.allow_unauthenticated = true` to serve without authentication on purpose"
        );
    }
    let max_body_bytes = check::positive(raw.api.max_body_bytes, "api.max_body_bytes")?.unwrap_or(256 * 1024);
    let mut limits = spacebot_webhook::ServeLimits::default();
    if let Some(connections) = check::positive(raw.api.max_connections, "api.max_connections")? {
        limits = limits.with_max_connections(connections);
    }
    if let Some(secs) = check::positive(raw.api.header_read_timeout_secs, "api.header_read_timeout_secs")? {
        limits = limits.with_header_read_timeout(Duration::from_secs(secs));
    }
    if let Some(secs) = check::positive(raw.api.body_read_timeout_secs, "api.body_read_timeout_secs")? {
        limits = limits.with_body_read_timeout(Duration::from_secs(secs));
    }
    if let Some(bytes) = check::positive(raw.api.max_header_bytes, "api.max_header_bytes")? {
        if bytes < 1024 {
            bail!("config key `api.max_header_bytes` must be at least 1024, not {bytes}");
        }
        limits = limits.with_max_header_bytes(bytes);
    }
    let raw_tokens = raw.api.tokens;
    let mut api = ApiSettings { bind, token, tokens: Vec::new(), token_values: Vec::new(), max_body_bytes, limits };

    let mut providers = BTreeMap::new();
    for (name, provider) in raw.llm.providers {
        let key = format!("llm.providers.{name}");
        if name.contains('/') || name.trim().is_empty() {
            bail!("config key `{key}`: provider names must be non-empty and contain no '/'");
        }
        let kind = spacebot_llm::ProviderKind::from(provider.kind);
        let api_key = provider.api_key.map(|v| resolve(&v, &format!("{key}.api_key"))).transpose()?.unwrap_or_default();
        let mut config = spacebot_llm::ProviderConfig::new(kind, api_key);
        if kind == spacebot_llm::ProviderKind::Local {
            let Some(path) = provider.path.filter(|path| !path.as_os_str().is_empty()) else {
                bail!("config key `{key}.path` is required with `kind = \"local\"`: name the model's GGUF file");
            };
            config = spacebot_llm::ProviderConfig::local(expand_home(&path));
        } else if provider.path.is_some() {
            bail!("config key `{key}.path` is only for `kind = \"local\"` providers");
        }
        if let Some(url) = provider.base_url {
            let url_key = format!("{key}.base_url");
            config = config.with_base_url(check::http_url(&resolve(&url, &url_key)?, &url_key)?);
        }
        if let Some(secs) = check::positive(provider.timeout_secs, &format!("{key}.timeout_secs"))? {
            config = config.with_timeout(Duration::from_secs(secs));
        }
        if let Some(retries) = provider.max_retries {
            config = config.with_max_retries(retries);
        }
        if let Some(ms) = provider.retry_backoff_ms {
            config = config.with_initial_backoff(Duration::from_millis(ms));
        }
        if let Some(tokens) = check::positive(provider.max_tokens, &format!("{key}.max_tokens"))? {
            config = config.with_max_tokens(tokens);
        }
        if let Some(window) = check::positive(provider.context_window, &format!("{key}.context_window"))? {
            config = config.with_context_window(window);
        }
        providers.insert(name, config);
    }

    let check_model = |value: &str, key: &str| -> anyhow::Result<ModelRef> {
        let Some((provider, model)) = value.split_once('/') else {
            bail!("config key `{key}` must be `provider/model`, not `{value}`");
        };
        if !providers.contains_key(provider) {
            bail!("config key `{key}` names provider `{provider}`, which is not defined under [llm.providers]");
        }
        if model.is_empty() {
            bail!("config key `{key}` names no model after `{provider}/`");
        }
        Ok(ModelRef { provider: provider.to_owned(), model: model.to_owned() })
    };
    let check_chain = |spec: &RawModelSpec, key: &str| -> anyhow::Result<ModelChain> {
        let models = match spec {
            RawModelSpec::One(value) => vec![check_model(value, key)?],
            RawModelSpec::Chain(values) if values.is_empty() => {
                bail!("config key `{key}` is an empty list; name at least one `provider/model`")
            }
            RawModelSpec::Chain(values) => values
                .iter()
                .enumerate()
                .map(|(index, value)| check_model(value, &format!("{key}[{index}]")))
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(ModelChain { models })
    };
    let mut prices = BTreeMap::new();
    for (model, price) in &raw.llm.prices {
        let key = format!("llm.prices.\"{model}\"");
        if !model.split_once('/').is_some_and(|(provider, name)| !provider.is_empty() && !name.is_empty()) {
            bail!("config key `{key}` must name a model as `provider/model`");
        }
        for (field, value) in
            [("input_per_million", price.input_per_million), ("output_per_million", price.output_per_million)]
        {
            if !value.is_finite() || value < 0.0 {
                bail!(
                    "config key `{key}.{field}` must be a price of zero or more (US dollars per million tokens), got {value}"
                );
            }
        }
        prices.insert(
            model.clone(),
            spacebot_webhook::ModelPrice::new(price.input_per_million, price.output_per_million),
        );
    }
    let mut vision_models = Vec::new();
    for (index, name) in raw.llm.vision_models.iter().enumerate() {
        vision_models.push(check_model(name, &format!("llm.vision_models[{index}]"))?.to_string());
    }
    let channel_model = raw.llm.models.channel.as_ref().map(|m| check_chain(m, "llm.models.channel")).transpose()?;
    let mut process_models = Vec::new();
    for (kind, name, value) in [
        (ProcessKind::Branch, "branch", &raw.llm.models.branch),
        (ProcessKind::Worker, "worker", &raw.llm.models.worker),
        (ProcessKind::Compactor, "compactor", &raw.llm.models.compactor),
    ] {
        if let Some(value) = value {
            process_models.push((kind, check_chain(value, &format!("llm.models.{name}"))?));
        }
    }

    let raw_agents = if raw.agents.is_empty() {
        vec![RawAgent {
            id: "main".to_owned(),
            model: None,
            system_prompt: None,
            max_model_calls_per_turn: None,
            turn_timeout_secs: None,
            history_limit: None,
            identity_dir: None,
            response_mode: None,
            admins: Vec::new(),
            compaction: RawCompaction::default(),
            cron: Vec::new(),
        }]
    } else {
        raw.agents
    };
    let mut agents: Vec<AgentSettings> = Vec::new();
    for (index, agent) in raw_agents.into_iter().enumerate() {
        let key = format!("agents[{index}]");
        let valid = !agent.id.is_empty()
            && agent.id.len() <= 64
            && agent.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            bail!("config key `{key}.id` must be 1-64 letters, digits, '-' or '_', not `{}`", agent.id);
        }
        if agents.iter().any(|a| a.id == agent.id) {
            bail!("config key `{key}.id`: agent `{}` is defined twice", agent.id);
        }
        let model = match &agent.model {
            Some(value) => Some(check_chain(value, &format!("{key}.model"))?),
            None => channel_model.clone(),
        };
        let background = background_budget(&agent.compaction, &format!("{key}.compaction"))?;
        let compaction = compaction(agent.compaction, &format!("{key}.compaction"))?;
        let identity_dir = match agent.identity_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                bail!("config key `{key}.identity_dir` is empty; name a directory, or leave it out for the default")
            }
            Some(dir) => expand_home(&dir),
            None => data_dir.agent_dir(&agent.id),
        };
        let response_mode = match &agent.response_mode {
            Some(name) => response_mode(name, &format!("{key}.response_mode"))?,
            None => spacebot_core::ResponseMode::Active,
        };
        for admin in &agent.admins {
            if !admin.split_once(':').is_some_and(|(platform, id)| !platform.is_empty() && !id.is_empty()) {
                bail!(
                    "config key `{key}.admins` lists `{admin}`; name each admin as platform:id, like discord:1234, slack:U0123, telegram:123456789 or email:alice@example.com"
                );
            }
        }
        let cron = cron::cron_jobs(agent.cron, &agent.id, &key)?;
        // A fallback that can't read images would fail on them, so every model must see them.
        let vision = model
            .as_ref()
            .is_some_and(|chain| chain.models.iter().all(|model| vision_models.contains(&model.to_string())));
        agents.push(AgentSettings {
            vision,
            cron,
            compaction,
            background,
            identity_dir,
            response_mode,
            admins: agent.admins,
            id: agent.id,
            model,
            system_prompt: agent.system_prompt,
            max_model_calls_per_turn: check::positive(
                agent.max_model_calls_per_turn,
                &format!("{key}.max_model_calls_per_turn"),
            )?,
            turn_timeout: check::positive(agent.turn_timeout_secs, &format!("{key}.turn_timeout_secs"))?
                .map(Duration::from_secs),
            history_limit: check::positive(agent.history_limit, &format!("{key}.history_limit"))?,
        });
    }

    let messaging = messaging::messaging(raw.messaging)?;
    let agent_ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    let bindings = messaging::bindings(raw.bindings, &agent_ids, &messaging)?;
    scoped_tokens(raw_tokens, &agent_ids, &mut api)?;

    let task_tools = tools::task_tools(raw.tools)?;
    let memory = memory::memory(raw.memory)?;
    let conversations = conversations::conversations(raw.conversations);
    let storage = storage::storage(raw.storage)?;
    let fleet = fleet::fleet(raw.fleet, &storage, fleet::hostname)?;
    let (mcp_servers, mcp_secrets) = mcp::mcp_servers(raw.mcp_servers, &data_dir)?;

    Ok(Config {
        mcp_servers,
        mcp_secrets,
        task_tools,
        memory,
        conversations,
        storage,
        fleet,
        source,
        data_dir,
        data_dir_origin,
        api,
        providers,
        agents,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
        process_models,
        messaging,
        bindings,
        prices,
        embedded: None,
    })
}

/// Checks `[[api.tokens]]` against the agents and the admin token, into `api`.
fn scoped_tokens(raw: Vec<RawToken>, agents: &[&str], api: &mut ApiSettings) -> anyhow::Result<()> {
    let mut names: Vec<String> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let key = format!("api.tokens[{index}]");
        if raw.name.trim().is_empty() || names.contains(&raw.name) {
            bail!("config key `{key}.name` must be a name no other token has, not `{}`", raw.name);
        }
        let value = resolve(&raw.token, &format!("{key}.token"))?;
        if value.trim().chars().count() < spacebot_core::MIN_SECRET_LEN {
            bail!(
                "config key `{key}.token` is shorter than {} characters; a token that short can be guessed",
                spacebot_core::MIN_SECRET_LEN
            );
        }
        if api.token.as_deref() == Some(value.as_str()) || api.token_values.contains(&value) {
            bail!("config key `{key}.token` is the same as another token's; each token must be its own");
        }
        if raw.scopes.is_empty() {
            bail!("config key `{key}.scopes` is empty; give one or more of `webhook`, `read`, `admin`");
        }
        let scopes = raw
            .scopes
            .iter()
            .map(|scope| {
                spacebot_webhook::Scope::parse(scope).with_context(|| {
                    format!("config key `{key}.scopes` names `{scope}`; the scopes are `webhook`, `read` and `admin`")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for agent in &raw.agents {
            if !agents.contains(&agent.as_str()) {
                bail!("config key `{key}.agents` names agent `{agent}`, which is not configured");
            }
        }
        let token = spacebot_webhook::ScopedToken::new(raw.name.clone(), value.clone(), scopes)
            .with_agents(raw.agents.iter().map(|agent| spacebot_core::AgentId::new(agent.as_str())))
            .with_senders(raw.senders);
        names.push(raw.name);
        api.token_values.push(value);
        api.tokens.push(token);
    }
    Ok(())
}

/// The response mode `name` names (under `key`).
pub(crate) fn response_mode(name: &str, key: &str) -> anyhow::Result<spacebot_core::ResponseMode> {
    spacebot_core::ResponseMode::parse(name)
        .with_context(|| format!("config key `{key}` must be `active`, `mention_only` or `observe`, not `{name}`"))
}

/// `agents[].compaction` (under `key`); unset keys keep the defaults.
/// The agent's budget of background model calls, from its compaction section.
fn background_budget(raw: &RawCompaction, key: &str) -> anyhow::Result<spacebot_agent::BackgroundBudgetSettings> {
    let defaults = spacebot_agent::BackgroundBudgetSettings::default();
    let mut budget = defaults;
    if let Some(calls) = check::positive(raw.max_calls_per_hour, &format!("{key}.max_calls_per_hour"))? {
        budget = budget.with_max_calls_per_hour(calls);
    }
    let failures =
        check::positive(raw.breaker_failures, &format!("{key}.breaker_failures"))?.unwrap_or(defaults.breaker_failures);
    let cooldown = check::positive(raw.breaker_cooldown_secs, &format!("{key}.breaker_cooldown_secs"))?
        .map_or(defaults.breaker_cooldown, Duration::from_secs);
    Ok(budget.with_breaker(failures, cooldown))
}

fn compaction(raw: RawCompaction, key: &str) -> anyhow::Result<spacebot_agent::CompactionSettings> {
    use spacebot_agent::{ChronicleSettings, CompactionMode, CompactionSettings};
    let defaults = CompactionSettings::default();
    let share = |value: Option<f64>, name: &str, default: f64| -> anyhow::Result<f64> {
        match value {
            None => Ok(default),
            Some(value) if value > 0.0 && value <= 1.0 => Ok(value),
            Some(value) => bail!(
                "config key `{key}.{name}` must be a share of the context window above 0 and at most 1, not {value}"
            ),
        }
    };
    let mode = match raw.mode.as_deref() {
        None | Some("rolling") => CompactionMode::Rolling,
        Some("chronicle") => CompactionMode::Chronicle,
        Some(other) => bail!("config key `{key}.mode` must be `rolling` or `chronicle`, not `{other}`"),
    };
    let background = share(raw.background, "background", defaults.background)?;
    let aggressive = share(raw.aggressive, "aggressive", defaults.aggressive)?;
    let emergency = share(raw.emergency, "emergency", defaults.emergency)?;
    if !(background <= aggressive && aggressive <= emergency) {
        bail!(
            "config keys `{key}.background`, `.aggressive` and `.emergency` must not decrease, not {background}, {aggressive}, {emergency}"
        );
    }
    let positive = |value: Option<usize>, name: &str, default: usize, min: usize| -> anyhow::Result<usize> {
        match value {
            None => Ok(default),
            Some(value) if value >= min => Ok(value),
            Some(value) => bail!("config key `{key}.{name}` must be at least {min}, not {value}"),
        }
    };
    let chronicle_defaults = ChronicleSettings::default();
    let batch = positive(raw.rollup_batch, "rollup_batch", chronicle_defaults.rollup_batch, 2)?;
    let threshold = positive(raw.rollup_threshold, "rollup_threshold", chronicle_defaults.rollup_threshold, batch)?;
    let chronicle = ChronicleSettings::default()
        .with_interval(
            positive(raw.interval_messages, "interval_messages", chronicle_defaults.interval_messages, 1)?,
            share(raw.interval_token_fraction, "interval_token_fraction", chronicle_defaults.interval_token_fraction)?,
        )
        .with_max_messages_per_checkpoint(positive(
            raw.max_messages_per_checkpoint,
            "max_messages_per_checkpoint",
            chronicle_defaults.max_messages_per_checkpoint,
            1,
        )?)
        .with_rollups(threshold, batch);
    Ok(defaults
        .with_thresholds(background, aggressive, emergency)
        .with_shares(
            share(raw.background_share, "background_share", CompactionSettings::default().background_share)?,
            share(raw.aggressive_share, "aggressive_share", CompactionSettings::default().aggressive_share)?,
            share(raw.emergency_share, "emergency_share", CompactionSettings::default().emergency_share)?,
        )
        .with_mode(mode)
        .with_chronicle(chronicle))
}

/// Resolves an `env:NAME` value; other values are literal (`secret:NAME` values were replaced by
/// the stored secret before the config was read: `crate::secrets::resolve_references`).
fn resolve(value: &str, key: &str) -> anyhow::Result<String> {
    match value.strip_prefix("env:") {
        Some(name) => std::env::var(name)
            .map_err(|_| anyhow::anyhow!("config key `{key}` reads environment variable {name}, which is not set")),
        None => Ok(value.to_owned()),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml)?;
        Config::load(&Location { config: Some(path), data_dir: Some(dir.path().to_path_buf()) })
    }

    #[test]
    fn defaults_give_one_agent_and_no_model() {
        let config = load_str("").unwrap();
        assert_eq!(config.agents.len(), 1);
        assert_eq!(config.agents[0].id, "main");
        assert!(config.agents[0].model.is_none());
        assert_eq!(config.api.bind, DEFAULT_BIND);
    }

    #[test]
    fn models_resolve_against_providers() {
        let config = load_str(
            r#"
            [llm.providers.main]
            kind = "openai"
            base_url = "http://127.0.0.1:9/v1"
            [llm.models]
            channel = "main/gpt-x"
            "#,
        )
        .unwrap();
        let model = config.agents[0].model.as_ref().unwrap();
        assert_eq!(model.to_string(), "main/gpt-x");
    }

    #[test]
    fn a_model_may_be_a_fallback_chain() {
        let config = load_str(
            r#"
            [llm.providers.a]
            kind = "openai"
            [llm.providers.b]
            kind = "anthropic"
            [llm.models]
            channel = ["a/x", "b/y"]
            compactor = "b/small"
            "#,
        )
        .unwrap();
        let chain = config.agents[0].model.as_ref().unwrap();
        assert_eq!(chain.to_string(), "a/x, b/y (falling back in this order)");
        assert_eq!(config.process_models[0].0, ProcessKind::Compactor);
        assert_eq!(config.process_models[0].1.to_string(), "b/small");
        assert_eq!(config.providers["a"].kind, spacebot_llm::ProviderKind::OpenAi);
        assert_eq!(config.providers["b"].kind, spacebot_llm::ProviderKind::Anthropic);
        let error = load_str("[llm.providers.a]\nkind = \"openai\"\n[llm.models]\nchannel = [\"a/x\", \"c/z\"]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`llm.models.channel[1]`") && error.contains("`c`"), "{error}");
        let error = load_str("[llm.models]\nchannel = []").unwrap_err().to_string();
        assert!(error.contains("`llm.models.channel`") && error.contains("empty"), "{error}");
    }

    #[test]
    fn a_local_provider_needs_its_file_and_only_it_takes_a_path() {
        let config = load_str("[llm.providers.l]\nkind = \"local\"\npath = \"/models/x.gguf\"").unwrap();
        let provider = &config.providers["l"];
        assert_eq!(provider.kind, spacebot_llm::ProviderKind::Local);
        assert_eq!(provider.model_path.as_deref(), Some(Path::new("/models/x.gguf")));
        assert_eq!(provider.max_tokens, 256, "local answers are short by default");
        let error = load_str("[llm.providers.l]\nkind = \"local\"").unwrap_err().to_string();
        assert!(error.contains("`llm.providers.l.path` is required with `kind = \"local\"`"), "{error}");
        let error = load_str("[llm.providers.o]\nkind = \"openai\"\npath = \"/x.gguf\"").unwrap_err().to_string();
        assert!(
            error.contains("`llm.providers.o.path`") && error.contains("is only for `kind = \"local\"`"),
            "{error}"
        );
        // A configured provider turns the embedded default off, file or not.
        let config = load_str("[llm.providers.l]\nkind = \"local\"\npath = \"/x.gguf\"").unwrap();
        assert!(config.with_embedded_default().embedded.is_none());
    }

    #[test]
    fn provider_kinds_are_typed_and_read_in_any_case() {
        let config = load_str("[llm.providers.a]\nkind = \"OpenAI\"\n[llm.providers.b]\nkind = \"Anthropic\"").unwrap();
        assert_eq!(config.providers["a"].kind, spacebot_llm::ProviderKind::OpenAi);
        assert_eq!(config.providers["b"].kind, spacebot_llm::ProviderKind::Anthropic);
        let error = load_str("[llm.providers.a]\nkind = \"\"").unwrap_err().to_string();
        assert!(
            error.contains("`llm.providers.a.kind` must be one of `openai`, `anthropic`, `local`, not ``"),
            "{error}"
        );
        let error = load_str("[llm.providers.a]\nbase_url = \"http://x\"").unwrap_err().to_string();
        assert!(error.contains("missing config key `llm.providers.a.kind`"), "{error}");
    }

    #[test]
    fn task_tools_are_configured_in_one_section() {
        let config = load_str(
            r#"
            [tools]
            shell_timeout_secs = 5
            shell_output_bytes = 100
            sandbox = "off"
            shell_network = true
            web_allow_hosts = ["wiki.internal", "127.0.0.1:8080"]
            "#,
        )
        .unwrap();
        let tools = &config.task_tools;
        assert_eq!((tools.shell_timeout, tools.output_cap), (Duration::from_secs(5), 100));
        assert_eq!(tools.sandbox, spacebot_agent::Sandbox::Off);
        assert!(tools.shell_network);
        let web = tools.web_fetch.as_ref().unwrap();
        assert_eq!(web.allow_hosts, vec!["wiki.internal", "127.0.0.1:8080"]);
        assert!(load_str("[tools]\nweb_fetch = false").unwrap().task_tools.web_fetch.is_none());
        let error = load_str("[tools]\nsandbox = \"maybe\"").unwrap_err().to_string();
        assert!(error.contains("`tools.sandbox`") && error.contains("maybe"), "{error}");
        let defaults = load_str("").unwrap().task_tools;
        assert_eq!(defaults.sandbox, spacebot_agent::Sandbox::Auto);
        assert!(defaults.web_fetch.is_some());
        assert!(defaults.web_search.is_none(), "no search API, no web_search");
    }

    #[test]
    fn vision_is_per_model_and_needs_every_model_of_the_chain() {
        let providers = "[llm.providers.main]\nkind = \"openai\"\n[llm.providers.backup]\nkind = \"anthropic\"\n";
        let config = |vision: &str, channel: &str| {
            load_str(&format!("{providers}[llm]\nvision_models = {vision}\n[llm.models]\nchannel = {channel}\n"))
        };
        assert!(config("[\"main/gpt-4o\"]", "\"main/gpt-4o\"").unwrap().agents[0].vision);
        assert!(!config("[\"main/gpt-4o\"]", "\"main/o-mini\"").unwrap().agents[0].vision);
        let chain = "[\"main/gpt-4o\", \"backup/claude\"]";
        assert!(!config("[\"main/gpt-4o\"]", chain).unwrap().agents[0].vision, "the fallback can't see images");
        assert!(config("[\"main/gpt-4o\", \"backup/claude\"]", chain).unwrap().agents[0].vision);
        let error = config("[\"other/gpt-4o\"]", "\"main/gpt-4o\"").unwrap_err().to_string();
        assert!(error.contains("`llm.vision_models[0]`"), "{error}");
    }

    #[test]
    fn the_web_search_key_is_a_secret_and_its_keys_are_named() {
        let config = load_str(
            "[tools]\nweb_search = { backend = \"brave\", api_key = \"brave-subscription-token\", max_results = 4 }\n",
        )
        .unwrap();
        let search = config.task_tools.web_search.as_ref().expect("web_search configured");
        assert_eq!(search.max_results, 4);
        assert!(config.secrets().contains(&"brave-subscription-token".to_owned()));
        assert!(!format!("{config:?}").contains("brave-subscription-token"), "Debug redacts the key");

        let error = load_str("[tools.web_search]\nbackend = \"brave\"\napi_token = \"x\"\n").unwrap_err().to_string();
        assert!(error.contains("unknown config key `tools.web_search.api_token`"), "{error}");
        let error = load_str("[tools.web_search]\nbackend = \"searxng\"\n").unwrap_err().to_string();
        assert!(error.contains("`tools.web_search.base_url` is required"), "{error}");
    }

    #[test]
    fn the_background_budget_is_read_per_agent() {
        let config = load_str(
            "[[agents]]\nid = \"main\"\n[agents.compaction]\nmax_calls_per_hour = 30\nbreaker_failures = 2\nbreaker_cooldown_secs = 60\n",
        )
        .unwrap();
        let budget = config.agents[0].background;
        assert_eq!((budget.max_calls_per_hour, budget.breaker_failures), (30, 2));
        assert_eq!(budget.breaker_cooldown, Duration::from_secs(60));
        assert_eq!(load_str("").unwrap().agents[0].background, spacebot_agent::BackgroundBudgetSettings::default());
        let error = load_str("[[agents]]\nid = \"main\"\n[agents.compaction]\nmax_calls_per_hour = 0\n").unwrap_err();
        assert!(error.to_string().contains("`agents[0].compaction.max_calls_per_hour`"), "{error}");
    }

    #[test]
    fn http_limits_are_read_and_checked() {
        let limits = load_str(
            "[api]\nmax_connections = 3\nheader_read_timeout_secs = 2\nbody_read_timeout_secs = 4\nmax_header_bytes = 2048",
        )
        .unwrap()
        .api
        .limits;
        assert_eq!(limits.max_connections, 3);
        assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(4));
        assert_eq!(limits.max_header_bytes, 2048);
        let defaults = load_str("").unwrap().api.limits;
        assert_eq!(defaults.max_connections, spacebot_webhook::ServeLimits::default().max_connections);
        for (toml, key) in [
            ("[api]\nmax_connections = 0", "`api.max_connections`"),
            ("[api]\nheader_read_timeout_secs = 0", "`api.header_read_timeout_secs`"),
            ("[api]\nmax_header_bytes = 100", "`api.max_header_bytes`"),
        ] {
            let error = load_str(toml).unwrap_err().to_string();
            assert!(error.contains(key), "{toml}: {error}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let error = load_str("[api]\nbnid = \"x\"").unwrap_err().to_string();
        assert!(error.contains("`api.bnid`"), "{error}");
        let error = load_str("[api]\nmax_body_bytes = \"lots\"").unwrap_err().to_string();
        assert!(error.contains("`api.max_body_bytes`"), "{error}");
        let error = load_str("[llm.models]\nchannel = \"nope/m\"").unwrap_err().to_string();
        assert!(error.contains("`llm.models.channel`") && error.contains("nope"), "{error}");
        let error = load_str("[llm.providers.main]\nkind = \"gemini\"").unwrap_err().to_string();
        assert!(
            error.starts_with(
                "config key `llm.providers.main.kind` must be one of `openai`, `anthropic`, `local`, not `gemini` in "
            ),
            "{error}"
        );
        let error = load_str("[api]\nbind = \"localhost\"").unwrap_err().to_string();
        assert!(error.contains("`api.bind`"), "{error}");
    }

    #[test]
    fn compaction_is_set_per_agent_and_checked() {
        let config = load_str(
            r#"
            [[agents]]
            id = "long"
            compaction = { mode = "chronicle", interval_messages = 20, rollup_threshold = 6, rollup_batch = 4 }
            [[agents]]
            id = "short"
            "#,
        )
        .unwrap();
        let long = &config.agents[0].compaction;
        assert_eq!(long.mode, spacebot_agent::CompactionMode::Chronicle);
        assert_eq!(
            (long.chronicle.interval_messages, long.chronicle.rollup_threshold, long.chronicle.rollup_batch),
            (20, 6, 4)
        );
        assert_eq!(config.agents[1].compaction.mode, spacebot_agent::CompactionMode::Rolling);
        let error = load_str("[[agents]]\nid = \"a\"\ncompaction = { mode = \"weekly\" }").unwrap_err().to_string();
        assert!(error.contains("`agents[0].compaction.mode`") && error.contains("weekly"), "{error}");
        let error = load_str("[[agents]]\nid = \"a\"\ncompaction = { intervall = 3 }").unwrap_err().to_string();
        assert!(error.contains("intervall"), "{error}");
        let error = load_str("[[agents]]\nid = \"a\"\ncompaction = { rollup_threshold = 3 }").unwrap_err().to_string();
        assert!(error.contains("`agents[0].compaction.rollup_threshold`"), "{error}");
        let error = load_str("[[agents]]\nid = \"a\"\ncompaction = { emergency = 1.5 }").unwrap_err().to_string();
        assert!(error.contains("`agents[0].compaction.emergency`"), "{error}");
    }

    #[test]
    fn an_empty_token_or_an_open_bind_without_one_is_refused() {
        let error = load_str("[api]\ntoken = \"\"").unwrap_err().to_string();
        assert!(
            error.contains("`api.token`") && error.contains("is empty") && error.contains("authentication off"),
            "{error}"
        );
        let error = load_str("[api]\ntoken = \"  \"").unwrap_err().to_string();
        assert!(error.contains("`api.token`") && error.contains("is empty"), "{error}");
        let error = load_str("[api]\nbind = \"0.0.0.0:19898\"").unwrap_err().to_string();
        assert!(
            error.contains("`api.bind`") && error.contains("0.0.0.0:19898") && error.contains("allow_unauthenticated"),
            "{error}"
        );
        assert!(load_str("[api]\nbind = \"0.0.0.0:19898\"\nallow_unauthenticated = true").is_ok());
        assert!(load_str("[api]\nbind = \"0.0.0.0:19898\"\ntoken = \"a-real-token\"").is_ok());
        assert!(load_str("[api]\nbind = \"[::1]:19898\"").is_ok(), "loopback needs no token");
    }

    #[test]
    fn scoped_tokens_are_checked_and_their_values_scrubbed() {
        let config = load_str(
            "[api]\nbind = \"0.0.0.0:1\"\n[[api.tokens]]\nname = \"ci\"\ntoken = \"ci-token-value\"\nscopes = [\"webhook\"]\nagents = [\"main\"]\nsenders = [\"ci-bot\"]\n",
        )
        .expect("a scoped token is enough for an open bind");
        assert_eq!(config.api.tokens.len(), 1);
        assert!(config.secrets().contains(&"ci-token-value".to_owned()));
        for (tokens, expected) in [
            ("name = \"a\"\ntoken = \"short\"\nscopes = [\"read\"]", "shorter than 8"),
            ("name = \"a\"\ntoken = \"long-enough\"\nscopes = [\"write\"]", "names `write`"),
            ("name = \"a\"\ntoken = \"long-enough\"\nscopes = []", "is empty; give one or more"),
            ("name = \"a\"\ntoken = \"long-enough\"\nscopes = [\"read\"]\nagents = [\"ops\"]", "agent `ops`"),
            ("name = \"a\"\ntoken = \"admin-token\"\nscopes = [\"read\"]", "same as another token"),
        ] {
            let error = load_str(&format!("[api]\ntoken = \"admin-token\"\n[[api.tokens]]\n{tokens}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{tokens}: {error}");
        }
    }

    #[test]
    fn response_modes_and_admins_are_checked() {
        let config = load_str(
            "[[agents]]\nid = \"main\"\nresponse_mode = \"mention_only\"\nadmins = [\"discord:1\"]\n\n[[bindings]]\nagent = \"main\"\nplatform = \"webhook\"\nrequire_mention = true\n",
        )
        .unwrap();
        assert_eq!(config.agents[0].response_mode, spacebot_core::ResponseMode::MentionOnly);
        assert_eq!(config.agents[0].admins, ["discord:1"]);
        assert_eq!(config.bindings[0].response_mode, Some(spacebot_core::ResponseMode::MentionOnly));
        for (toml, expected) in [
            (
                "[[agents]]\nid = \"main\"\nresponse_mode = \"loud\"",
                "must be `active`, `mention_only` or `observe`, not `loud`",
            ),
            ("[[agents]]\nid = \"main\"\nadmins = [\"1234\"]", "platform:id"),
            (
                "[[bindings]]\nagent = \"main\"\nplatform = \"webhook\"\nresponse_mode = \"observe\"\nrequire_mention = true",
                "both `response_mode` and `require_mention`",
            ),
        ] {
            let error = load_str(toml).unwrap_err().to_string();
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }

    #[test]
    fn env_values_are_resolved_and_missing_ones_named() {
        let error = load_str("[api]\ntoken = \"env:SPACEBOT_TEST_SURELY_UNSET_VAR\"").unwrap_err().to_string();
        assert!(error.contains("SPACEBOT_TEST_SURELY_UNSET_VAR") && error.contains("`api.token`"), "{error}");
    }

    #[test]
    fn missing_config_file_is_named() {
        let error = Config::load(&Location { config: Some("/nonexistent/spacebot.toml".into()), data_dir: None })
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/spacebot.toml"), "{error}");
    }
}

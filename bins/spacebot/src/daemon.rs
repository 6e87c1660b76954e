//! The daemon, assembled from a checked [`Config`]: the conversation log, each agent's memory,
//! the channel engine with its models, the messaging adapters, the cortex (watchdog and memory
//! upkeep) and the HTTP API, wired into one `spacebot_core::Runtime`.
//!
//! This is the one place that knows every concrete type. `spacebot start` runs it until a signal;
//! tests and embedders run it in-process ([`Daemon::start`], [`Daemon::shutdown`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use spacebot_agent::{AgentProfile, ChannelEngine, ChannelSettings};
use spacebot_core::{
    AgentId, ConversationLog, CronJobs, FallbackModel, LanguageModel, ProcessKind, Runtime, RuntimeHandle,
    RuntimeSettings, Scrubber, UsageLedger,
};
use spacebot_cortex::{CronAdapter, CronScheduler, CronSettings, Watchdog, WatchdogSettings};
use spacebot_memory::{PgLeases, PgLog, SqliteLog};
use spacebot_webhook::{ApiConfig, Metrics, OpenAiAdapter, WebhookAdapter};

use crate::config::{self, Config};
use crate::data_dir::Unusable;
use crate::memory_setup::Memories;

/// How long the HTTP API may take to close once the runtime stopped; open event streams never
/// end by themselves, so they are cut after this.
const HTTP_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time the runtime gets to stop after the daemon shut down, even with no grace:
/// enough for blocking work that is about to finish.
const MIN_RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// The conversation log and what is kept beside it (chronicle, process runs, cron jobs, token
/// usage): SQLite at `data_dir/spacebot.db`, or the PostgreSQL database `[storage] url` names.
#[derive(Clone)]
enum LogStore {
    Sqlite(Arc<SqliteLog>),
    Postgres(Arc<PgLog>),
}

impl LogStore {
    /// Opens (and migrates) the store the config names.
    async fn open(config: &Config) -> anyhow::Result<Self> {
        Ok(match &config.storage {
            config::StorageSettings::Sqlite => {
                Self::Sqlite(Arc::new(SqliteLog::open(&config.data_dir.log_db()).await?))
            }
            config::StorageSettings::Postgres { url } => {
                let log = PgLog::connect(url).await?;
                tracing::info!(url = %spacebot_memory::redacted_url(url), "conversation log on PostgreSQL");
                Self::Postgres(Arc::new(log))
            }
        })
    }

    fn log(&self) -> Arc<dyn ConversationLog> {
        match self {
            Self::Sqlite(log) => log.clone(),
            Self::Postgres(log) => log.clone(),
        }
    }

    fn usage(&self) -> Arc<dyn UsageLedger> {
        match self {
            Self::Sqlite(log) => log.clone(),
            Self::Postgres(log) => log.clone(),
        }
    }

    /// Joins the fleet `[fleet]` describes, if it does (the config check made sure the log is on
    /// PostgreSQL then).
    async fn join_fleet(&self, config: &Config, addr: SocketAddr) -> anyhow::Result<Option<PgLeases>> {
        let (Some(fleet), Self::Postgres(log)) = (&config.fleet, self) else { return Ok(None) };
        if fleet.address.is_none() && (addr.ip().is_unspecified() || addr.ip().is_loopback()) {
            tracing::warn!(%addr, "[fleet] gives no address and the API's bound address can't be reached from another machine; \
                set `[fleet] address` to where the other members reach this one, or chat completions sent to them for this \
                member's conversations fail");
        }
        let address = fleet.address.clone().unwrap_or_else(|| format!("http://{addr}"));
        let agents: Vec<AgentId> = config.agents.iter().map(|agent| AgentId::new(agent.id.as_str())).collect();
        let leases = PgLeases::join(log, &fleet.member, Some(&address), fleet.lease, &agents)
            .await
            .with_context(|| format!("can't join the fleet as member {}", fleet.member))?;
        tracing::info!(member = %fleet.member, lease = ?fleet.lease, %address, "member of a fleet: conversations run under leases");
        Ok(Some(leases))
    }

    /// The PostgreSQL database, when the log is there (the memory graph goes beside it).
    fn postgres(&self) -> Option<&PgLog> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(log) => Some(log),
        }
    }

    /// Closes every connection, waiting for operations in flight.
    async fn close(&self) {
        match self {
            Self::Sqlite(log) => log.close().await,
            Self::Postgres(log) => log.close().await,
        }
    }
}

/// A running daemon: the runtime, its stores, the cortex's loops and the HTTP API.
///
/// Stop it with [`shutdown`](Self::shutdown) (or [`run_until`](Self::run_until)), which waits for
/// in-flight turns within the configured grace and flushes every write. Dropping it instead
/// cancels everything it started without waiting.
pub struct Daemon {
    addr: SocketAddr,
    runtime: Runtime,
    store: LogStore,
    memories: Memories,
    tasks: Tasks,
}

/// The tasks the daemon runs beside the runtime. Dropped without [`Tasks::stop`] (a `Daemon`
/// dropped without `shutdown`), it cancels them without waiting.
struct Tasks {
    /// Stops the watchdog and the memory maintenance.
    cortex_stop: CancellationToken,
    watchdog: Option<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
    /// Runs the cron jobs (stopped with the cortex).
    cron: Option<JoinHandle<()>>,
    /// Keeps the metrics that come from runtime events (stopped with the cortex).
    metering: Option<JoinHandle<()>>,
    /// Writes model calls' usage (stopped with the cortex, after draining what is queued).
    usage: Option<JoinHandle<()>>,
    /// Stops the HTTP API (after the runtime, so reads keep working while turns finish).
    http_stop: CancellationToken,
    http: Option<JoinHandle<std::io::Result<()>>>,
    /// The MCP servers' clients (stopped with the cortex, after the runtime).
    mcp: Option<spacebot_mcp::McpClients>,
}

impl Daemon {
    /// Opens the stores, builds every agent, starts the runtime, the cortex and the HTTP API on
    /// `api.bind` (port 0 picks a free port; see [`addr`](Self::addr)), and logs `spacebot ready`.
    ///
    /// # Errors
    ///
    /// When the data dir can't be used or a model can't be built (the checks `config check`
    /// shares), a store can't be opened, or `api.bind` can't be bound; the
    /// message names the file, key or address at fault. Nothing is left running on error.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        if let Some(path) = &config.source {
            tracing::info!(config = %path.display(), "config loaded");
        }
        // Every model call is metered, and its tokens recorded beside the conversation log.
        let (metrics, usage_writer) = Metrics::recording_usage();
        let Prepared { profiles: built, stored_tokens } = prepare(config, Some(&metrics))?;
        config.data_dir.create().map_err(|reason| data_dir_error(config, &reason))?;
        // A missing identity directory gets commented templates to fill in (they add nothing to
        // the prompt until someone writes in them).
        for agent in &config.agents {
            if let Err(error) = spacebot_agent::IdentityDir::new(agent.identity_dir.clone()).create_missing() {
                tracing::warn!(agent = %agent.id, dir = %agent.identity_dir.display(), %error,
                    "can't create the identity files' templates");
            }
        }
        let (store, memories) = match config.storage {
            // Separate files, each opened (and its schema read) on its own connection thread, so
            // the two opens overlap (1 to 1.5 ms off a start of about 12 on two cores).
            config::StorageSettings::Sqlite => tokio::try_join!(LogStore::open(config), Memories::open(config, None))?,
            // The memory graph goes beside the log, in its database.
            config::StorageSettings::Postgres { .. } => {
                let store = LogStore::open(config).await?;
                let memories = Memories::open(config, store.postgres()).await?;
                (store, memories)
            }
        };

        // The cron scheduler over the store's jobs; the config's jobs are upserted now, so a job
        // removed from the config is gone before anything runs.
        let cron = match store.log().cron_store() {
            Some(cron_store) => {
                let scheduler = CronScheduler::new(cron_store, CronSettings::default());
                let agents: Vec<AgentId> = config.agents.iter().map(|a| AgentId::new(a.id.as_str())).collect();
                let jobs = config.agents.iter().flat_map(|a| a.cron.iter().cloned()).collect();
                scheduler.upsert_config(&agents, jobs).await.context("can't store the config's cron jobs")?;
                Some(scheduler)
            }
            None => None,
        };
        let cron_jobs = cron.clone().map(|scheduler| Arc::new(scheduler) as Arc<dyn CronJobs>);

        // MCP servers connect in the background; workers get the tools of those connected when
        // each starts.
        let mcp = crate::mcp_setup::start(config, CancellationToken::new());
        let mut profiles = Vec::new();
        for profile in built {
            let profile = match memories.get(profile.id().as_str()) {
                Some(memory) => profile.with_memory(memory),
                None => profile,
            };
            let profile = match &cron_jobs {
                Some(cron) => profile.with_cron(cron.clone()),
                None => profile,
            };
            profiles.push(crate::mcp_setup::with_tools(profile, &mcp.handle()));
        }

        // The cortex's watchdog ends any process or turn that outlives its limit.
        let watchdog = Watchdog::new(watchdog_settings(&profiles));
        // A chat completion waits as long as the slowest agent's turn may take, and a little.
        let reply_timeout =
            profiles.iter().map(|p| p.settings().turn_timeout).max().unwrap_or_default() + Duration::from_secs(30);
        let openai = OpenAiAdapter::new();
        let mut builder = Runtime::builder()
            .engine(Arc::new(WithNotices {
                engine: ChannelEngine::new(profiles),
                notices: config.embedded.iter().map(|embedded| embedded.notice.clone()).collect(),
            }))
            .log(store.log())
            .adapter(Arc::new(WebhookAdapter))
            .adapter(Arc::new(openai.clone()))
            .adapter(Arc::new(CronAdapter))
            .settings(
                RuntimeSettings::default()
                    .with_shutdown_grace(config.shutdown_grace)
                    .with_idle_timeout(config.conversations.idle_timeout)
                    .with_max_live(config.conversations.max_live),
            )
            .scrubber(Scrubber::new().with_secrets(config.secrets()));
        for agent in &config.agents {
            builder = builder.agent(agent.id.as_str());
        }
        // Platform adapters and bindings. A connection that can't be built is reported and left
        // out; one that fails to start is retried by the runtime, never fatal.
        for entry in crate::adapters::build(&config.messaging) {
            match entry.adapter {
                Ok(adapter) => {
                    tracing::info!(adapter = %entry.name, "messaging adapter configured");
                    builder = builder.adapter(adapter);
                }
                Err(error) => tracing::error!(adapter = %entry.name, %error, "messaging adapter left out"),
            }
        }
        for binding in &config.bindings {
            builder = builder.binding(binding.clone());
        }

        let listener = TcpListener::bind(&config.api.bind)
            .await
            .with_context(|| format!("can't listen on api.bind {}", config.api.bind))?;
        let addr = listener.local_addr().context("can't read the API address")?;
        // Runs a crash cut short are settled before the runtime resumes unanswered messages, so
        // it doesn't answer theirs again.
        if let Some(scheduler) = &cron {
            scheduler.settle_interrupted(&*store.log()).await;
        }
        if let Some(leases) = store.join_fleet(config, addr).await? {
            builder = builder.leases(Arc::new(leases));
        }
        let runtime = builder.start().await?;
        let cortex_stop = CancellationToken::new();
        // The metrics follow the runtime's events until the cortex stops.
        let metering = tokio::spawn(metrics.clone().follow(runtime.handle().subscribe(), cortex_stop.clone()));
        // Stopped with the cortex, after the runtime: every call's usage is written by then.
        let usage = tokio::spawn(usage_writer.run(store.usage(), cortex_stop.clone()));
        let watchdog =
            tokio::spawn(watchdog.enforce(runtime.handle()).run(runtime.handle().subscribe(), cortex_stop.clone()));
        // The cortex's memory upkeep (decay, prune, merge, link), every interval, per agent.
        let maintenance = memories.maintenance(&config.memory).map(|m| tokio::spawn(m.run(cortex_stop.clone())));
        let cron = cron.map(|scheduler| tokio::spawn(scheduler.run(runtime.handle(), cortex_stop.clone())));
        let api = ApiConfig::default()
            .with_token(config.api.token.clone())
            .with_scoped_tokens(config.api.tokens.clone())
            .with_stored_tokens(stored_tokens)
            .with_max_body_bytes(config.api.max_body_bytes)
            .with_openai(openai)
            .with_metrics(metrics)
            .with_usage(store.usage(), config.prices.clone())
            .with_memories(memories.all())
            .with_mcp_status(mcp_status(mcp.handle()))
            .with_effective_config(crate::config::effective(config))
            .with_reply_timeout(reply_timeout);
        let api = match &cron_jobs {
            Some(cron) => api.with_cron(cron.clone()),
            None => api,
        };
        let router = spacebot_webhook::router(runtime.handle(), api);
        let http_stop = CancellationToken::new();
        let http =
            tokio::spawn(spacebot_webhook::serve(listener, router, config.api.limits.clone(), http_stop.clone()));
        // Tests and scripts wait for this line; with `api.bind` port 0 it is where the port is read.
        tracing::info!(%addr, data_dir = %config.data_dir, "spacebot ready");
        Ok(Self {
            addr,
            runtime,
            store,
            memories,
            tasks: Tasks {
                cortex_stop,
                watchdog: Some(watchdog),
                maintenance,
                cron,
                metering: Some(metering),
                usage: Some(usage),
                http_stop,
                http: Some(http),
                mcp: Some(mcp),
            },
        })
    }

    /// Where the HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The runtime's handle: submit messages, subscribe to events, list processes.
    pub fn handle(&self) -> RuntimeHandle {
        self.runtime.handle()
    }

    /// Runs until `stop` completes or the HTTP API fails, then [shuts down](Self::shutdown).
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        if let Some(http) = self.tasks.http.as_mut() {
            tokio::select! {
                () = stop => {}
                result = http => {
                    // The server only returns early on an I/O error; shut down rather than run
                    // headless.
                    tracing::error!(?result, "HTTP API stopped unexpectedly; shutting down");
                    self.tasks.http = None;
                }
            }
        }
        self.shutdown().await
    }

    /// Stops taking messages, lets in-flight turns finish within the grace period (the API keeps
    /// answering reads and reports 503 on `/health` meanwhile), stops the cortex, closes the API
    /// and flushes the databases. Logs `shutdown complete` when nothing it started is left.
    ///
    /// # Errors
    ///
    /// None yet; the signature leaves room for a store that fails to flush.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Self { runtime, store, memories, mut tasks, .. } = self;
        runtime.shutdown().await;
        tasks.stop().await;
        memories.close().await;
        store.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

impl Tasks {
    /// Stops the cortex, then the HTTP API, and waits for them (open event streams are cut after
    /// [`HTTP_CLOSE_TIMEOUT`]).
    async fn stop(&mut self) {
        self.cortex_stop.cancel();
        if let Some(Err(error)) = join_optional(self.watchdog.take()).await {
            tracing::error!(%error, "the watchdog task failed");
        }
        if let Some(Err(error)) = join_optional(self.maintenance.take()).await {
            tracing::error!(%error, "the memory maintenance task failed");
        }
        if let Some(Err(error)) = join_optional(self.cron.take()).await {
            tracing::error!(%error, "the cron scheduler failed");
        }
        if let Some(Err(error)) = join_optional(self.metering.take()).await {
            tracing::error!(%error, "the metrics task failed");
        }
        if let Some(Err(error)) = join_optional(self.usage.take()).await {
            tracing::error!(%error, "the usage writer failed");
        }
        if let Some(mcp) = self.mcp.take() {
            mcp.shutdown().await;
        }
        self.http_stop.cancel();
        if let Some(mut http) = self.http.take()
            && tokio::time::timeout(HTTP_CLOSE_TIMEOUT, &mut http).await.is_err()
        {
            http.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        // Only reached with tasks left when `stop` was not called: end them without waiting.
        self.cortex_stop.cancel();
        self.http_stop.cancel();
        if let Some(http) = &self.http {
            http.abort();
        }
    }
}

/// Runs the daemon on a runtime of its own until `stop` completes, then shuts it down and stops
/// the runtime within the shutdown grace. `stop` is polled once before the daemon starts, so a
/// signal it listens for is caught from `spacebot ready` on.
///
/// Blocking work can't be cancelled: a task stuck in a blocking call (a read of a pipe nobody
/// writes, say) would keep the runtime, and so the process, alive forever after `shutdown
/// complete`. The runtime therefore gets `shutdown_grace` (at least a second) to finish what is
/// left, then is abandoned with a warning, and this returns so the process can exit.
///
/// # Errors
///
/// When the tokio runtime can't be built, or as [`Daemon::start`] and [`Daemon::shutdown`].
pub fn run(config: &Config, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("can't start tokio")?;
    let result = runtime.block_on(async {
        // Polled once before the daemon starts, so whatever `stop` listens for (SIGTERM) is
        // registered before `spacebot ready` is logged: a supervisor that signals as soon as it
        // reads that line must get a clean shutdown, not the signal's default action.
        let mut stop = std::pin::pin!(stop);
        let stopped = std::future::poll_fn(|cx| std::task::Poll::Ready(stop.as_mut().poll(cx).is_ready())).await;
        if stopped {
            return Ok(());
        }
        let daemon = Daemon::start(config).await?;
        daemon.run_until(stop).await
    });
    let bound = config.shutdown_grace.max(MIN_RUNTIME_SHUTDOWN);
    let tasks = runtime.metrics().num_alive_tasks();
    let started = std::time::Instant::now();
    runtime.shutdown_timeout(bound);
    if started.elapsed() >= bound {
        tracing::warn!(
            waited = ?bound,
            tasks,
            "work was still running when the runtime stopped (a blocking call that never returns?); exiting without it"
        );
    }
    result
}

/// What [`Daemon::start`] checks before it opens anything: the data dir is usable and every
/// agent (with its models) can be built. `spacebot config check` runs the same, so it refuses
/// exactly what `start` would (short of what only running can tell, like a port in use).
pub(crate) struct Prepared {
    /// Every agent's profile, without its memory.
    profiles: Vec<AgentProfile>,
    /// The scoped tokens of the data dir's token file.
    pub(crate) stored_tokens: spacebot_webhook::StoredTokens,
}

/// Checks `config` as [`Daemon::start`] does first, changing nothing on disk.
///
/// # Errors
///
/// One sentence naming the key (and the file or flag) at fault.
/// With `metrics`, every agent's models are metered into them.
pub(crate) fn prepare(config: &Config, metrics: Option<&Metrics>) -> anyhow::Result<Prepared> {
    config.data_dir.check().map_err(|reason| data_dir_error(config, &reason))?;
    // A token file that can't be read stops the start: its tokens would silently stop working.
    let stored_tokens = spacebot_webhook::StoredTokens::open(config.data_dir.api_tokens_file())?;
    Ok(Prepared { profiles: agent_profiles(config, metrics)?, stored_tokens })
}

/// The sentence for a data dir the daemon can't use: the path, where it was set, and why.
fn data_dir_error(config: &Config, reason: &Unusable) -> anyhow::Error {
    anyhow::anyhow!("data dir {} ({}) {reason}", config.data_dir, config.data_dir_origin)
}

/// Every agent's profile (settings, prompt, task tools, models), without its memory, which the
/// daemon opens separately.
fn agent_profiles(config: &Config, metrics: Option<&Metrics>) -> anyhow::Result<Vec<AgentProfile>> {
    let mut profiles = Vec::new();
    for agent in &config.agents {
        let id = AgentId::new(agent.id.as_str());
        // Each process kind's model is metered under its kind, the channel's model once per kind
        // that shares it.
        let meter = |kind: ProcessKind, model: Arc<dyn LanguageModel>| match metrics {
            Some(metrics) => metrics.meter(&id, kind, model),
            None => model,
        };
        let mut settings = ChannelSettings::default();
        if let Some(calls) = agent.max_model_calls_per_turn {
            settings = settings.with_max_model_calls_per_turn(calls);
        }
        if let Some(timeout) = agent.turn_timeout {
            settings = settings.with_turn_timeout(timeout);
        }
        if let Some(limit) = agent.history_limit {
            settings = settings.with_history_limit(limit);
        }
        settings = settings
            .with_compaction(agent.compaction.clone())
            .with_response_mode(agent.response_mode)
            .with_admins(agent.admins.clone());
        let mut profile =
            AgentProfile::new(agent.id.as_str()).with_settings(settings).with_background_budget(agent.background);
        if let Some(prompt) = &agent.system_prompt {
            profile = profile.with_system_prompt(prompt.clone());
        }
        // Its identity files, read into every turn's system prompt.
        profile = profile.with_identity(spacebot_agent::IdentityDir::new(agent.identity_dir.clone()));
        // Image attachments are shown to its model when `llm.vision_models` lists it.
        profile = profile.with_vision(agent.vision);
        // Workers' file and shell tools are confined to a workspace per agent.
        let workspace = config.data_dir.workspace(&agent.id);
        // The sandbox hides the data dir (every agent's memories, the log) and the config from
        // commands, wherever they are; the workspace inside stays visible.
        let hidden = std::iter::once(config.data_dir.root().to_path_buf()).chain(config.source.clone());
        profile =
            profile.with_task_tools(config.task_tools.clone().with_workspace(workspace).with_hidden_paths(hidden));
        match &agent.model {
            Some(model_ref) => {
                let model = build_model(config, model_ref)?;
                tracing::info!(agent = %agent.id, model = model.name(), "agent ready");
                profile = profile.with_model(meter(ProcessKind::Channel, model.clone()));
                for kind in [ProcessKind::Branch, ProcessKind::Worker, ProcessKind::Compactor] {
                    let own = config.process_models.iter().find(|(k, _)| *k == kind).map(|(_, chain)| chain);
                    let model = match own {
                        Some(chain) => build_model(config, chain)?,
                        None => model.clone(),
                    };
                    profile = profile.with_process_model(kind, meter(kind, model));
                }
            }
            None => tracing::warn!(
                agent = %agent.id,
                "no model configured (llm.models.channel); this agent will answer every message with an error"
            ),
        }
        profiles.push(profile);
    }
    Ok(profiles)
}

/// The watchdog's limits from the agents' settings: each agent's turns are held to its own turn
/// timeout; processes carry their own limit in the registry, and the largest of the agents'
/// limits covers any that doesn't.
fn watchdog_settings(profiles: &[AgentProfile]) -> WatchdogSettings {
    let largest = |limit: fn(&ChannelSettings) -> Duration| {
        profiles.iter().map(|profile| limit(profile.settings())).max().unwrap_or_default()
    };
    let mut settings = WatchdogSettings::default().with_process_limits(
        largest(|s| s.branch_timeout),
        largest(|s| s.worker_timeout),
        largest(|s| s.compaction.summary_timeout),
    );
    for profile in profiles {
        settings = settings.with_turn_limit(profile.id().clone(), profile.settings().turn_timeout);
    }
    settings
}

/// `GET /api/mcp`'s answer: each MCP server's state and tools, read when asked.
fn mcp_status(mcp: spacebot_mcp::McpHandle) -> spacebot_webhook::StatusSource {
    Arc::new(move || serde_json::json!({ "servers": mcp.status() }))
}

/// The agents' engine, with what the daemon itself wants `status` to say (the embedded default
/// model) before the engine's own notices.
struct WithNotices {
    engine: ChannelEngine,
    notices: Vec<String>,
}

impl spacebot_core::ConversationEngine for WithNotices {
    fn run_conversation(
        &self,
        ctx: spacebot_core::ConversationContext,
        inbox: spacebot_core::Inbox,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.engine.run_conversation(ctx, inbox)
    }

    fn notices(&self) -> Vec<String> {
        let mut notices = self.notices.clone();
        notices.extend(self.engine.notices());
        notices
    }
}

/// Waits for a task that may not have been started.
async fn join_optional<T>(task: Option<JoinHandle<T>>) -> Option<Result<T, tokio::task::JoinError>> {
    match task {
        Some(task) => Some(task.await),
        None => None,
    }
}

/// A model client for `provider/model`, or a fallback chain of them; `Config::load` checked that
/// each provider exists and that a chain is not empty.
fn build_model(config: &Config, chain: &config::ModelChain) -> anyhow::Result<Arc<dyn LanguageModel>> {
    let mut models = Vec::new();
    for model_ref in &chain.models {
        let provider = config
            .providers
            .get(&model_ref.provider)
            .with_context(|| format!("provider `{}` is not configured", model_ref.provider))?;
        models.push(spacebot_llm::build_model(&model_ref.provider, provider, &model_ref.model)?);
    }
    let mut models = models.into_iter();
    let primary = models.next().context("a model chain names no model")?;
    let fallbacks: Vec<Arc<dyn LanguageModel>> = models.collect();
    if fallbacks.is_empty() {
        return Ok(primary);
    }
    Ok(Arc::new(FallbackModel::new(primary, fallbacks)))
}

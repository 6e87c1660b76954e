//! `spacebot start`: run the daemon in the foreground until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use spacebot_agent::{AgentProfile, ChannelEngine, ChannelSettings};
use spacebot_core::{FallbackModel, LanguageModel, ProcessKind, Runtime, RuntimeSettings};
use spacebot_cortex::{Watchdog, WatchdogSettings};
use spacebot_memory::SqliteStore;
use spacebot_webhook::{ApiConfig, WebhookAdapter};

use crate::cli::{GlobalArgs, StartArgs};
use crate::config::{self, Config, Location};
use crate::memory_setup::Memories;

/// Where the config and data are, from the global flags.
pub(crate) fn location(global: &GlobalArgs) -> Location {
    Location { config: global.config.clone(), data_dir: global.data_dir.clone() }
}

pub(crate) fn run(global: &GlobalArgs, _args: StartArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&location(global))?;
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("can't start tokio")?;
    runtime.block_on(daemon(config))?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPACEBOT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

async fn daemon(config: Config) -> anyhow::Result<()> {
    if let Some(path) = &config.source {
        tracing::info!(config = %path.display(), "config loaded");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("can't create data dir {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("spacebot.db");
    let store = Arc::new(SqliteStore::open(&db_path).await?);
    let memories = Memories::open(&config).await?;

    let mut profiles = Vec::new();
    for agent in &config.agents {
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
        settings = settings.with_compaction(agent.compaction.clone());
        let mut profile = AgentProfile::new(agent.id.as_str()).with_settings(settings);
        if let Some(prompt) = &agent.system_prompt {
            profile = profile.with_system_prompt(prompt.clone());
        }
        // Workers' file and shell tools are confined to a workspace per agent.
        let workspace = config.data_dir.join("workspaces").join(&agent.id);
        profile = profile.with_task_tools(config.task_tools.clone().with_workspace(workspace));
        if !spacebot_agent::bubblewrap_available() {
            tracing::warn!(agent = %agent.id, "bubblewrap (`bwrap`) is not installed: worker shell commands run unsandboxed");
        }
        match &agent.model {
            Some(model_ref) => {
                let model = build_model(&config, model_ref)?;
                tracing::info!(agent = %agent.id, model = model.name(), "agent ready");
                profile = profile.with_model(model);
                for (kind, model_ref) in &config.process_models {
                    let kind = match *kind {
                        "branch" => ProcessKind::Branch,
                        "worker" => ProcessKind::Worker,
                        _ => ProcessKind::Compactor,
                    };
                    profile = profile.with_process_model(kind, build_model(&config, model_ref)?);
                }
            }
            None => tracing::warn!(
                agent = %agent.id,
                "no model configured (llm.models.channel); this agent will answer every message with an error"
            ),
        }
        if let Some(memory) = memories.get(&agent.id) {
            profile = profile.with_memory(memory);
        }
        profiles.push(profile);
    }

    // The cortex's watchdog ends any process or turn that outlives its limit.
    let watchdog = Watchdog::new(WatchdogSettings::for_agents(profiles.iter().map(|p| p.settings())));
    let mut builder = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new(profiles)))
        .log(store.clone())
        .adapter(Arc::new(WebhookAdapter))
        .settings(RuntimeSettings::default().with_shutdown_grace(config.shutdown_grace));
    for agent in &config.agents {
        builder = builder.agent(agent.id.as_str());
    }
    // Platform adapters and bindings (issue #5). A connection that can't be built is reported
    // and left out; one that fails to start is retried by the runtime, never fatal.
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
    let runtime = builder.start().await?;
    let watchdog_stop = CancellationToken::new();
    let watchdog =
        tokio::spawn(watchdog.enforce(runtime.handle()).run(runtime.handle().subscribe(), watchdog_stop.clone()));
    // The cortex's memory upkeep (decay, prune, merge, link), every interval, per agent.
    let maintenance_stop = CancellationToken::new();
    let maintenance = memories.maintenance(&config.memory).map(|m| tokio::spawn(m.run(maintenance_stop.clone())));
    let api = ApiConfig::default().with_token(config.api.token.clone()).with_max_body_bytes(config.api.max_body_bytes);
    let router = spacebot_webhook::router(runtime.handle(), api);
    let http_stop = CancellationToken::new();
    let mut http = tokio::spawn(spacebot_webhook::serve(
        listener,
        router,
        spacebot_webhook::ServeLimits::default(),
        http_stop.clone(),
    ));
    // Tests and scripts wait for this line; with `api.bind` port 0 it is where the port is read.
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "spacebot ready");

    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
        result = &mut http => {
            // The server only returns early on an I/O error; shut down rather than run headless.
            tracing::error!(?result, "HTTP API stopped unexpectedly; shutting down");
        }
    }

    // Stop taking messages and let in-flight turns finish (the API keeps answering reads and
    // reports 503 on /health meanwhile), then close the API and flush the database.
    runtime.shutdown().await;
    watchdog_stop.cancel();
    if let Err(error) = watchdog.await {
        tracing::error!(%error, "the watchdog task failed");
    }
    maintenance_stop.cancel();
    if let Some(Err(error)) = join_optional(maintenance).await {
        tracing::error!(%error, "the memory maintenance task failed");
    }
    http_stop.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut http).await.is_err() {
        // Open event streams never end by themselves.
        http.abort();
    }
    memories.close().await;
    store.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Waits for a task that may not have been started.
async fn join_optional(task: Option<tokio::task::JoinHandle<()>>) -> Option<Result<(), tokio::task::JoinError>> {
    match task {
        Some(task) => Some(task.await),
        None => None,
    }
}

/// A model client for `provider/model`, or a fallback chain of them; `config::load` checked that
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

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(error) => {
                tracing::warn!(%error, "can't listen for SIGTERM; only SIGINT stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

//! `spacebot start`: run the daemon in the foreground until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use spacebot_agent::{AgentProfile, ChannelEngine, ChannelSettings};
use spacebot_core::{LanguageModel, Runtime, RuntimeSettings};
use spacebot_memory::SqliteStore;
use spacebot_webhook::{ApiConfig, WebhookAdapter};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, StartArgs};
use crate::config::{self, Config, Location};

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
    for section in &config.inactive_sections {
        tracing::warn!(section, "configured but not used by this version yet");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("can't create data dir {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("spacebot.db");
    let store = Arc::new(SqliteStore::open(&db_path).await?);

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
        let mut profile = AgentProfile::new(agent.id.as_str()).with_settings(settings);
        if let Some(prompt) = &agent.system_prompt {
            profile = profile.with_system_prompt(prompt.clone());
        }
        match &agent.model {
            Some(model_ref) => {
                // `config::load` checked that the provider exists.
                let provider = config
                    .providers
                    .get(&model_ref.provider)
                    .with_context(|| format!("provider `{}` is not configured", model_ref.provider))?;
                let model: Arc<dyn LanguageModel> =
                    spacebot_llm::build_model(&model_ref.provider, provider, &model_ref.model)?;
                tracing::info!(agent = %agent.id, model = model.name(), "agent ready");
                profile = profile.with_model(model);
            }
            None => tracing::warn!(
                agent = %agent.id,
                "no model configured (llm.models.channel); this agent will answer every message with an error"
            ),
        }
        profiles.push(profile);
    }

    let mut builder = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new(profiles)))
        .log(store.clone())
        .adapter(Arc::new(WebhookAdapter))
        .settings(RuntimeSettings::default().with_shutdown_grace(config.shutdown_grace));
    for agent in &config.agents {
        builder = builder.agent(agent.id.as_str());
    }

    let listener = TcpListener::bind(&config.api.bind)
        .await
        .with_context(|| format!("can't listen on api.bind {}", config.api.bind))?;
    let addr = listener.local_addr().context("can't read the API address")?;
    let runtime = builder.start().await?;
    let api = ApiConfig::default().with_token(config.api.token.clone()).with_max_body_bytes(config.api.max_body_bytes);
    let router = spacebot_webhook::router(runtime.handle(), api);
    let http_stop = CancellationToken::new();
    let mut http = tokio::spawn(spacebot_webhook::serve(listener, router, http_stop.clone()));
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
    http_stop.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut http).await.is_err() {
        // Open event streams never end by themselves.
        http.abort();
    }
    store.close().await;
    tracing::info!("shutdown complete");
    Ok(())
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

//! `spacebot start`: run the daemon in the foreground until SIGINT or SIGTERM.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, StartArgs};
use crate::config::Config;
use crate::daemon;

pub(crate) fn run(global: &GlobalArgs, _args: StartArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&global.location())?;
    init_tracing();
    daemon::run(&config, async {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down");
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPACEBOT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
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

//! `spacebot start`: run the daemon in the foreground until SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use spacebot_core::Scrubber;

use crate::cli::{GlobalArgs, StartArgs};
use crate::config::Config;
use crate::daemon;

pub(crate) fn run(global: &GlobalArgs, _args: StartArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&global.location())?.with_embedded_default();
    init_tracing(Scrubber::new().with_secrets(config.secrets()), "info");
    if let Some(embedded) = &config.embedded {
        tracing::info!(model = %embedded.path.display(), "{}", embedded.notice);
    }
    daemon::run(&config, async {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down");
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr at `SPACEBOT_LOG`'s level (`default` without it), every line scrubbed of the configured secrets and
/// credential-shaped tokens first (a provider's error text can quote the key it refused).
pub(crate) fn init_tracing(scrubber: Scrubber, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPACEBOT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = move || ScrubbedStderr(scrubber.clone());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer).init();
}

/// stderr, masking secrets in what is written. The log formatter writes each event whole, in one
/// call, so a secret is never cut across two writes.
struct ScrubbedStderr(Scrubber);

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(self.0.scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
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

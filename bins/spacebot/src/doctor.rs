//! `spacebot doctor`: checks the config, the data dir, the model providers and every adapter's
//! credentials, with one verdict per item, and exits non-zero when any check fails.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::GlobalArgs;
use crate::config::Config;

/// How long one adapter's credential check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn run(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("can't start tokio")?;
    let healthy = runtime.block_on(check(global));
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn verdict(ok: bool, item: &str, detail: &str) -> bool {
    println!("{} {item}: {detail}", if ok { "ok  " } else { "FAIL" });
    ok
}

async fn check(global: &GlobalArgs) -> bool {
    let config = match Config::load(&global.location()) {
        Ok(config) => config.with_embedded_default(),
        Err(error) => return verdict(false, "config", &format!("{error:#}")),
    };
    let source = config.source.as_ref().map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    let mut healthy = verdict(true, "config", &source);

    let data_dir = &config.data_dir;
    healthy &= match data_dir.check() {
        Ok(()) => verdict(true, "data dir", &format!("{data_dir} is usable")),
        Err(reason) => verdict(false, "data dir", &format!("{data_dir} ({}) {reason}", config.data_dir_origin)),
    };

    if let crate::config::StorageSettings::Postgres { url } = &config.storage {
        let shown = spacebot_memory::redacted_url(url);
        healthy &= match tokio::time::timeout(CHECK_TIMEOUT, spacebot_memory::PgLog::connect(url)).await {
            Ok(Ok(log)) => {
                log.close().await;
                verdict(
                    true,
                    "storage",
                    &format!("PostgreSQL at {shown} answers; its schema is current (pending migrations applied)"),
                )
            }
            Ok(Err(error)) => verdict(false, "storage", &error.to_string()),
            Err(_) => {
                verdict(false, "storage", &format!("PostgreSQL at {shown} did not answer within {CHECK_TIMEOUT:?}"))
            }
        };
    }

    #[cfg(feature = "local-model")]
    if let Some(embedded) = &config.embedded {
        healthy &= match spacebot_llm::LocalModel::inspect(&embedded.path) {
            Ok(_) => verdict(true, "model", &embedded.notice),
            Err(error) => verdict(false, "model", &error.to_string()),
        };
    }
    for agent in &config.agents {
        let item = format!("agent {}", agent.id);
        healthy &= match &agent.model {
            Some(model) => verdict(true, &item, &format!("model {model}")),
            None => verdict(false, &item, "no model configured (llm.models.channel); it would answer with errors"),
        };
    }

    let built = crate::adapters::build(&config.messaging);
    if built.is_empty() {
        verdict(true, "messaging", "no Discord, Slack, Telegram or email connection configured");
    }
    for entry in built {
        let item = format!("adapter {}", entry.name);
        healthy &= match entry.adapter {
            Err(error) => verdict(false, &item, &error),
            Ok(adapter) => match tokio::time::timeout(CHECK_TIMEOUT, adapter.health_check()).await {
                Ok(Ok(())) => verdict(true, &item, "credentials accepted"),
                Ok(Err(error)) => verdict(false, &item, &format!("{error} ({:?})", error.kind())),
                Err(_) => verdict(false, &item, &format!("no answer within {CHECK_TIMEOUT:?}")),
            },
        };
    }
    for binding in &config.bindings {
        verdict(true, "binding", &format!("{} answers on {}", binding.agent, binding.adapter_key()));
    }
    healthy
}

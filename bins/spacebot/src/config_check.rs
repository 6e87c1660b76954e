//! `spacebot config check`: load and validate the config, run the checks `start` runs before it
//! opens anything (the same function), and summarise what the daemon would run.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::config::{Config, EmbedderSettings};

pub(crate) fn run(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&global.location())?.with_embedded_default();
    let prepared = crate::daemon::prepare(&config, None)?;
    match &config.source {
        Some(path) => println!("config: {} (valid)", path.display()),
        None => println!("config: none found; using built-in defaults"),
    }
    println!("data dir: {}", config.data_dir);
    let stored = prepared.stored_tokens.current().len();
    let mut guard = Vec::new();
    if config.api.token.is_some() {
        guard.push("admin token".to_owned());
    }
    if !config.api.tokens.is_empty() {
        guard.push(format!("{} scoped token(s) in the config", config.api.tokens.len()));
    }
    if stored > 0 {
        guard.push(format!("{stored} scoped token(s) in {}", prepared.stored_tokens.path().display()));
    }
    if guard.is_empty() {
        println!("api: http://{} (no token: open to whoever can reach it)", config.api.bind);
    } else {
        println!("api: http://{} (bearer token required: {})", config.api.bind, guard.join(", "));
    }
    for (name, provider) in &config.providers {
        match &provider.model_path {
            Some(path) if provider.kind == spacebot_llm::ProviderKind::Local => {
                println!("provider {name}: local model {}", path.display())
            }
            _ => println!("provider {name}: {} at {}", provider.kind, provider.effective_base_url()),
        }
    }
    if let Some(embedded) = &config.embedded {
        println!("{}", embedded.notice);
    }
    for agent in &config.agents {
        match &agent.model {
            Some(model) => println!(
                "agent {}: model {model}, {} compaction, answers {}{}",
                agent.id,
                agent.compaction.mode.as_str(),
                agent.response_mode.as_str(),
                if agent.admins.is_empty() { String::new() } else { format!(", admins {}", agent.admins.join(", ")) }
            ),
            None => println!(
                "agent {}: no model (set llm.models.channel; until then it answers every message with an error)",
                agent.id
            ),
        }
        let files: Vec<String> = spacebot_agent::IdentityDir::new(agent.identity_dir.clone())
            .summary()
            .into_iter()
            .map(|(name, state)| match state {
                spacebot_agent::FileState::Written(bytes) => format!("{name} {bytes} bytes"),
                spacebot_agent::FileState::Empty => format!("{name} empty"),
                _ => format!("{name} missing"),
            })
            .collect();
        println!("agent {}: identity {} ({})", agent.id, agent.identity_dir.display(), files.join(", "));
        for job in &agent.cron {
            let when = match (&job.cron, job.every) {
                (Some(cron), _) => format!("cron \"{cron}\" in {}", job.timezone.as_deref().unwrap_or("UTC")),
                (None, Some(every)) => format!("every {} s", every.as_secs_f64()),
                (None, None) => "no schedule".to_owned(),
            };
            let once = if job.run_once { ", once" } else { "" };
            println!("agent {}: cron job {} {when}{once}, to {}", agent.id, job.id, job.deliver_to);
        }
    }
    for discord in &config.messaging.discord {
        let place = discord.api_url.as_deref().map(|url| format!(" at {url}")).unwrap_or_default();
        println!("adapter {}: Discord{place}", discord.name);
    }
    for slack in &config.messaging.slack {
        let place = slack.api_url.as_deref().map(|url| format!(" at {url}")).unwrap_or_default();
        println!("adapter {}: Slack (Socket Mode){place}", slack.name);
    }
    for telegram in &config.messaging.telegram {
        let place = telegram.api_url.as_deref().map(|url| format!(" at {url}")).unwrap_or_default();
        match &telegram.webhook {
            Some(webhook) => println!(
                "adapter {}: Telegram (webhook {}, listening on {}){place}",
                telegram.name, webhook.url, webhook.listen
            ),
            None => println!("adapter {}: Telegram (long polling){place}", telegram.name),
        }
    }
    for email in &config.messaging.email {
        let (imap, smtp) = (&email.imap, &email.smtp);
        println!(
            "adapter {}: email {} (IMAP {}:{} {}, SMTP {}:{} {}), {} allowed sender(s)",
            email.name,
            email.address,
            imap.host,
            imap.port,
            imap.security.as_str(),
            smtp.host,
            smtp.port,
            smtp.security.as_str(),
            email.allowed_senders.len()
        );
    }
    println!("conversations: {}", config.conversations);
    match config.storage.shown_url() {
        Some(url) => println!(
            "storage: the conversation log on PostgreSQL at {url}; memories in SQLite files under the data dir"
        ),
        None => println!("storage: SQLite at {}", config.data_dir.log_db().display()),
    }
    if let Some(fleet) = &config.fleet {
        println!(
            "fleet: member {} ({}), leases of {} s",
            fleet.member,
            fleet.address.as_deref().unwrap_or("its API's bound address"),
            fleet.lease.as_secs()
        );
    }
    println!("adapter webhook: POST /webhook/{{agent}}");
    for (index, binding) in config.bindings.iter().enumerate() {
        let instance = binding.instance.as_deref().map(|i| format!(":{i}")).unwrap_or_default();
        println!("binding {index}: {}{instance} -> agent {}", binding.platform, binding.agent);
    }
    match &config.memory.embedder {
        EmbedderSettings::Hashing { dimensions } => println!("memory: hashing embedder, {dimensions} dimensions"),
        EmbedderSettings::OpenAi { base_url, model, dimensions, .. } => {
            println!("memory: embeddings from {base_url} (model {model}, {dimensions} dimensions)")
        }
        #[cfg(feature = "local-embeddings")]
        EmbedderSettings::Local { model_dir } => {
            println!("memory: local embedding model from {} (loaded on first use)", model_dir.display())
        }
    }
    Ok(ExitCode::SUCCESS)
}

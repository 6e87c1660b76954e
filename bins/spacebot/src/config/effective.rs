//! The configuration the daemon runs with, defaults filled in and every secret redacted: what
//! `GET /api/config` serves and the portal's Config tab shows.
//!
//! Secrets are left out where they are known (provider keys, the API and adapter tokens, the
//! embeddings and search keys, MCP environment values and tokens) and, in case a field that
//! carries one is added later without being redacted here, the whole document then goes through
//! a scrubber that knows every configured secret.

use serde_json::{Value, json};

use spacebot_core::{REDACTED, Scrubber};

use super::{Config, EmbedderSettings};

/// What a secret shows as: whether it is set, never its value.
fn secret(value: Option<&str>) -> Value {
    match value {
        Some(value) if !value.is_empty() => json!(REDACTED),
        _ => Value::Null,
    }
}

fn secs(duration: std::time::Duration) -> Value {
    json!(duration.as_secs_f64())
}

/// The effective configuration as JSON, secrets redacted.
pub(crate) fn effective(config: &Config) -> Value {
    let providers: serde_json::Map<String, Value> = config
        .providers
        .iter()
        .map(|(name, provider)| {
            let value = json!({
                "kind": provider.kind.as_str(),
                "base_url": provider.effective_base_url(),
                "api_key": secret(Some(&provider.api_key)),
                "model_path": provider.model_path,
                "timeout_secs": secs(provider.timeout),
                "max_retries": provider.max_retries,
                "max_tokens": provider.max_tokens,
                "context_window": provider.context_window,
            });
            (name.clone(), value)
        })
        .collect();
    let defaults = spacebot_agent::ChannelSettings::default();
    let agents: Vec<Value> = config
        .agents
        .iter()
        .map(|agent| {
            json!({
                "id": agent.id,
                "model": agent.model.as_ref().map(|chain| chain.models.iter().map(ToString::to_string).collect::<Vec<_>>()),
                "response_mode": agent.response_mode.as_str(),
                "admins": agent.admins,
                "compaction": agent.compaction.mode.as_str(),
                "max_model_calls_per_turn": agent.max_model_calls_per_turn.unwrap_or(defaults.max_model_calls_per_turn),
                "turn_timeout_secs": secs(agent.turn_timeout.unwrap_or(defaults.turn_timeout)),
                "history_limit": agent.history_limit.unwrap_or(defaults.history_limit),
                "identity_dir": agent.identity_dir,
                "vision": agent.vision,
                "cron_jobs": agent.cron.iter().map(|job| job.id.clone()).collect::<Vec<_>>(),
                "workspace": config.data_dir.workspace(&agent.id),
            })
        })
        .collect();
    let discord: Vec<Value> = config
        .messaging
        .discord
        .iter()
        .map(|discord| {
            json!({
                "name": discord.name,
                "token": secret(Some(&discord.token)),
                "api_url": discord.api_url,
                "guilds": discord.guilds,
                "channels": discord.channels,
                "dm_users": discord.dm_users,
                "allow_bots": discord.allow_bots,
                "slash_commands": discord.slash_commands,
            })
        })
        .collect();
    let slack: Vec<Value> = config
        .messaging
        .slack
        .iter()
        .map(|slack| {
            json!({
                "name": slack.name,
                "bot_token": secret(Some(&slack.bot_token)),
                "app_token": secret(Some(&slack.app_token)),
                "api_url": slack.api_url,
                "workspaces": slack.workspaces,
                "channels": slack.channels,
                "dm_users": slack.dm_users,
                "allow_bots": slack.allow_bots,
            })
        })
        .collect();
    let telegram: Vec<Value> = config
        .messaging
        .telegram
        .iter()
        .map(|telegram| {
            json!({
                "name": telegram.name,
                "token": secret(Some(&telegram.token)),
                "api_url": telegram.api_url,
                "chats": telegram.chats,
                "dm_users": telegram.dm_users,
                "allow_bots": telegram.allow_bots,
                "poll_timeout_secs": secs(telegram.poll_timeout),
                "webhook": telegram.webhook.as_ref().map(|webhook| json!({
                    "url": webhook.url,
                    "listen": webhook.listen.to_string(),
                    "secret_token": secret(Some(&webhook.secret_token)),
                })),
            })
        })
        .collect();
    let server = |server: &spacebot_email::Server| {
        json!({
            "host": server.host,
            "port": server.port,
            "security": server.security.as_str(),
            "username": server.username,
            "password": secret(server.password.as_deref()),
        })
    };
    let email: Vec<Value> = config
        .messaging
        .email
        .iter()
        .map(|email| {
            json!({
                "name": email.name,
                "address": email.address,
                "display_name": email.display_name,
                "allowed_senders": email.allowed_senders,
                "mailbox": email.mailbox,
                "poll_interval_secs": secs(email.poll_interval),
                "imap": server(&email.imap),
                "smtp": server(&email.smtp),
            })
        })
        .collect();
    let bindings: Vec<Value> = config
        .bindings
        .iter()
        .map(|binding| {
            json!({
                "agent": binding.agent.as_str(),
                "platform": binding.platform,
                "instance": binding.instance,
                "guild": binding.guild,
                "channels": binding.channels,
                "users": binding.users,
                "response_mode": binding.response_mode.map(|mode| mode.as_str()),
            })
        })
        .collect();
    let tools = &config.task_tools;
    let embedder = match &config.memory.embedder {
        EmbedderSettings::Hashing { dimensions } => json!({ "kind": "hashing", "dimensions": dimensions }),
        EmbedderSettings::OpenAi { base_url, model, dimensions, api_key } => json!({
            "kind": "openai", "base_url": base_url, "model": model, "dimensions": dimensions,
            "api_key": secret(api_key.as_deref()),
        }),
        #[cfg(feature = "local-embeddings")]
        EmbedderSettings::Local { model_dir } => json!({ "kind": "local", "model_dir": model_dir }),
    };
    let mcp: Vec<Value> = config
        .mcp_servers
        .iter()
        .map(|server| {
            let transport = match &server.transport {
                spacebot_mcp::McpTransport::Stdio(stdio) => json!({
                    "command": stdio.command,
                    "args": stdio.args,
                    "env": stdio.env.keys().map(|name| (name.clone(), json!(REDACTED))).collect::<serde_json::Map<_, _>>(),
                }),
                spacebot_mcp::McpTransport::Http { url, bearer_token } => {
                    json!({ "url": url, "bearer_token": secret(bearer_token.as_deref()) })
                }
                other => json!(format!("{other:?}")),
            };
            json!({ "name": server.name, "enabled": server.enabled, "timeout_secs": secs(server.timeout), "transport": transport })
        })
        .collect();
    let document = json!({
        "source": config.source,
        "data_dir": config.data_dir.to_string(),
        "embedded_default": config.embedded.as_ref().map(|embedded| embedded.notice.clone()),
        "api": {
            "bind": config.api.bind,
            "token": secret(config.api.token.as_deref()),
            "tokens": config.api.tokens.iter().map(|token| token.name().to_owned()).collect::<Vec<_>>(),
            "max_body_bytes": config.api.max_body_bytes,
        },
        "providers": providers,
        "agents": agents,
        "messaging": { "discord": discord, "slack": slack, "telegram": telegram, "email": email },
        "bindings": bindings,
        "tools": {
            "shell_timeout_secs": secs(tools.shell_timeout),
            "shell_output_bytes": tools.output_cap,
            "sandbox": format!("{:?}", tools.sandbox).to_lowercase(),
            "shell_network": tools.shell_network,
            "web_fetch": tools.web_fetch.as_ref().map(|web| json!({ "max_bytes": web.max_bytes, "allow_hosts": web.allow_hosts })),
            "web_search": tools.web_search.as_ref().map(|search| json!({
                "backend": format!("{:?}", search.backend).to_lowercase(),
                "base_url": search.base_url,
                "api_key": secret(search.api_key.as_deref()),
                "max_results": search.max_results,
            })),
            "send_file_max_bytes": tools.max_send_bytes,
        },
        "memory": {
            "embedder": embedder,
            "maintenance_interval_secs": config.memory.maintenance_interval.map(secs),
        },
        "storage": {
            "backend": match config.storage { super::StorageSettings::Sqlite => "sqlite", super::StorageSettings::Postgres { .. } => "postgres" },
            "url": config.storage.shown_url(),
        },
        "fleet": config.fleet.as_ref().map(|fleet| json!({
            "member": fleet.member,
            "lease_secs": fleet.lease.as_secs(),
            "address": fleet.address,
        })),
        "conversations": {
            "idle_timeout_secs": config.conversations.idle_timeout.map(secs),
            "max_live": config.conversations.max_live,
        },
        "mcp_servers": mcp,
        "shutdown_grace_secs": secs(config.shutdown_grace),
    });
    // Whatever this function missed, no configured secret leaves in it.
    let scrubber = Scrubber::new().with_secrets(config.secrets());
    let text = document.to_string();
    match scrubber.scrub(&text) {
        std::borrow::Cow::Borrowed(_) => document,
        std::borrow::Cow::Owned(scrubbed) => serde_json::from_str(&scrubbed)
            .unwrap_or_else(|_| json!({ "error": "the configuration could not be shown without its secrets" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    #[test]
    fn every_configured_secret_is_redacted_and_the_settings_are_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spacebot.toml");
        std::fs::write(
            &path,
            r#"
[api]
token = "api-admin-secret-1"
[[api.tokens]]
name = "ci"
token = "api-scoped-secret-2"
scopes = ["webhook"]
[llm.providers.main]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "provider-secret-3"
[llm.models]
channel = "main/gpt"
[[agents]]
id = "main"
response_mode = "mention_only"
admins = ["discord:42"]
[messaging.discord]
token = "discord-secret-4"
[messaging.slack]
bot_token = "xoxb-slack-secret-5"
app_token = "xapp-slack-secret-6"
[messaging.telegram]
token = "4242:telegram-secret-9"
[messaging.telegram.webhook]
url = "https://bot.example/tg"
listen = "127.0.0.1:8443"
secret_token = "telegram-hook-secret-10"
[messaging.email]
address = "bot@example.com"
imap = { host = "imap.example.com", password = "email-secret-11" }
smtp = { host = "smtp.example.com" }
[tools]
send_file_max_bytes = 1024
web_search = { backend = "brave", api_key = "search-secret-7" }
[memory]
embedder = "openai"
embedding_base_url = "http://127.0.0.1:9/v1"
embedding_model = "emb"
embedding_api_key = "embedding-secret-8"
[storage]
url = "postgres://bot:storage-secret-12@db.internal/spacebot"

[fleet]
member = "bot-1"
"#,
        )
        .unwrap();
        let location = Location { config: Some(path), data_dir: Some(dir.path().to_path_buf()) };
        let config = Config::load(&location).unwrap();
        let shown = effective(&config);
        let text = shown.to_string();
        for secret in [
            "api-admin-secret-1",
            "api-scoped-secret-2",
            "provider-secret-3",
            "discord-secret-4",
            "slack-secret-5",
            "slack-secret-6",
            "search-secret-7",
            "embedding-secret-8",
            "telegram-secret-9",
            "telegram-hook-secret-10",
            "email-secret-11",
            "storage-secret-12",
        ] {
            assert!(!text.contains(secret), "{secret} shown in {shown:#}");
        }
        assert_eq!(shown["api"]["token"], REDACTED);
        assert_eq!(shown["storage"], json!({"backend": "postgres", "url": "postgres://bot:***@db.internal/spacebot"}));
        assert_eq!(shown["fleet"], json!({"member": "bot-1", "lease_secs": 6, "address": null}));
        assert!(config.secrets().contains(&"storage-secret-12".to_owned()), "the scrubber knows the password");
        assert_eq!(shown["messaging"]["telegram"][0]["token"], REDACTED);
        assert_eq!(shown["messaging"]["email"][0]["imap"]["password"], REDACTED);
        assert_eq!(shown["messaging"]["email"][0]["imap"]["port"], 993);
        assert_eq!(shown["messaging"]["telegram"][0]["webhook"]["url"], "https://bot.example/tg");
        assert_eq!(shown["api"]["tokens"], json!(["ci"]));
        assert_eq!(shown["providers"]["main"]["api_key"], REDACTED);
        assert_eq!(shown["providers"]["main"]["base_url"], "http://127.0.0.1:9/v1");
        assert_eq!(shown["agents"][0]["model"], json!(["main/gpt"]));
        assert_eq!(shown["agents"][0]["response_mode"], "mention_only");
        assert_eq!(shown["agents"][0]["admins"], json!(["discord:42"]));
        assert_eq!(shown["agents"][0]["max_model_calls_per_turn"], 6, "the default, filled in");
        assert_eq!(shown["messaging"]["discord"][0]["token"], REDACTED);
        assert_eq!(shown["messaging"]["slack"][0]["app_token"], REDACTED);
        assert_eq!(shown["tools"]["send_file_max_bytes"], 1024);
        assert_eq!(shown["tools"]["web_search"]["backend"], "brave");
        assert_eq!(shown["tools"]["web_search"]["api_key"], REDACTED);
        assert_eq!(shown["memory"]["embedder"]["api_key"], REDACTED);
        assert_eq!(shown["memory"]["embedder"]["model"], "emb");
    }
}

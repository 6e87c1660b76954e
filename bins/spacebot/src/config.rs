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
    messaging: BTreeMap<String, figment::value::Value>,
    #[serde(default)]
    bindings: Vec<figment::value::Value>,
    shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    bind: Option<String>,
    token: Option<String>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    models: RawModels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: String,
    base_url: Option<String>,
    api_key: Option<String>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    retry_backoff_ms: Option<u64>,
    max_tokens: Option<u32>,
    context_window: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    channel: Option<String>,
    branch: Option<String>,
    worker: Option<String>,
    compactor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    model: Option<String>,
    system_prompt: Option<String>,
    max_model_calls_per_turn: Option<usize>,
    turn_timeout_secs: Option<u64>,
    history_limit: Option<usize>,
}

/// The validated config the daemon runs on.
#[derive(Debug)]
pub(crate) struct Config {
    /// The file it came from, if any.
    pub(crate) source: Option<PathBuf>,
    pub(crate) data_dir: PathBuf,
    pub(crate) api: ApiSettings,
    pub(crate) providers: BTreeMap<String, spacebot_llm::ProviderConfig>,
    pub(crate) agents: Vec<AgentSettings>,
    pub(crate) shutdown_grace: Duration,
    /// Configured sections this version does not act on yet, for a warning.
    pub(crate) inactive_sections: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct ApiSettings {
    pub(crate) bind: String,
    pub(crate) token: Option<String>,
    pub(crate) max_body_bytes: usize,
}

#[derive(Debug)]
pub(crate) struct AgentSettings {
    pub(crate) id: String,
    /// `provider/model`, if any model is configured.
    pub(crate) model: Option<ModelRef>,
    pub(crate) system_prompt: Option<String>,
    pub(crate) max_model_calls_per_turn: Option<usize>,
    pub(crate) turn_timeout: Option<Duration>,
    pub(crate) history_limit: Option<usize>,
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

/// Where to look for the config and data.
#[derive(Debug, Default)]
pub(crate) struct Location {
    /// `--config`: must exist when given.
    pub(crate) config: Option<PathBuf>,
    /// `--data-dir`: overrides `data_dir`.
    pub(crate) data_dir: Option<PathBuf>,
}

/// Loads, overrides, resolves and validates the config.
pub(crate) fn load(location: &Location) -> anyhow::Result<Config> {
    let home_dir = home().join(".spacebot");
    let file = match &location.config {
        Some(path) if !path.is_file() => bail!("config file {} does not exist", path.display()),
        Some(path) => Some(path.clone()),
        None => {
            let candidate = location.data_dir.clone().unwrap_or_else(|| home_dir.clone()).join("config.toml");
            candidate.is_file().then_some(candidate)
        }
    };

    let mut figment = Figment::new();
    if let Some(path) = &file {
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
    let raw: RawConfig =
        figment.extract().map_err(|error| anyhow::anyhow!(describe_figment(error, file.as_deref())))?;
    validate(raw, file, location, home_dir)
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

fn validate(raw: RawConfig, source: Option<PathBuf>, location: &Location, home_dir: PathBuf) -> anyhow::Result<Config> {
    let data_dir = location.data_dir.clone().or(raw.data_dir).map(|dir| expand_home(&dir)).unwrap_or(home_dir);

    let bind = raw.api.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned());
    bind.parse::<std::net::SocketAddr>()
        .with_context(|| format!("config key `api.bind` must be an address like 127.0.0.1:19898, not `{bind}`"))?;
    let token = raw.api.token.map(|value| resolve(&value, "api.token")).transpose()?.filter(|t| !t.is_empty());
    let api = ApiSettings { bind, token, max_body_bytes: raw.api.max_body_bytes.unwrap_or(256 * 1024) };

    let mut providers = BTreeMap::new();
    for (name, provider) in raw.llm.providers {
        let key = format!("llm.providers.{name}");
        if name.contains('/') || name.trim().is_empty() {
            bail!("config key `{key}`: provider names must be non-empty and contain no '/'");
        }
        let kind: spacebot_llm::ProviderKind = provider.kind.parse().map_err(|_| {
            anyhow::anyhow!("config key `{key}.kind` must be `openai` or `anthropic`, not `{}`", provider.kind)
        })?;
        let api_key = provider.api_key.map(|v| resolve(&v, &format!("{key}.api_key"))).transpose()?.unwrap_or_default();
        let mut config = spacebot_llm::ProviderConfig::new(kind, api_key);
        if let Some(url) = provider.base_url {
            let url = resolve(&url, &format!("{key}.base_url"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("config key `{key}.base_url` must start with http:// or https://, not `{url}`");
            }
            config = config.with_base_url(url);
        }
        if let Some(secs) = provider.timeout_secs {
            config = config.with_timeout(Duration::from_secs(secs.max(1)));
        }
        if let Some(retries) = provider.max_retries {
            config = config.with_max_retries(retries);
        }
        if let Some(ms) = provider.retry_backoff_ms {
            config = config.with_initial_backoff(Duration::from_millis(ms));
        }
        if let Some(tokens) = provider.max_tokens {
            config = config.with_max_tokens(tokens);
        }
        if let Some(window) = provider.context_window {
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
    let channel_model = raw.llm.models.channel.as_deref().map(|m| check_model(m, "llm.models.channel")).transpose()?;
    for (name, value) in [
        ("branch", &raw.llm.models.branch),
        ("worker", &raw.llm.models.worker),
        ("compactor", &raw.llm.models.compactor),
    ] {
        if let Some(value) = value {
            check_model(value, &format!("llm.models.{name}"))?;
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
            Some(value) => Some(check_model(value, &format!("{key}.model"))?),
            None => channel_model.clone(),
        };
        agents.push(AgentSettings {
            id: agent.id,
            model,
            system_prompt: agent.system_prompt,
            max_model_calls_per_turn: agent.max_model_calls_per_turn,
            turn_timeout: agent.turn_timeout_secs.map(Duration::from_secs),
            history_limit: agent.history_limit,
        });
    }

    let mut inactive_sections: Vec<String> = raw.messaging.keys().map(|k| format!("messaging.{k}")).collect();
    if !raw.bindings.is_empty() {
        inactive_sections.push("bindings".to_owned());
    }

    Ok(Config {
        source,
        data_dir,
        api,
        providers,
        agents,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
        inactive_sections,
    })
}

/// Resolves an `env:NAME` value; other values are literal.
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
        load(&Location { config: Some(path), data_dir: Some(dir.path().to_path_buf()) })
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
    fn errors_name_the_key() {
        let error = load_str("[api]\nbnid = \"x\"").unwrap_err().to_string();
        assert!(error.contains("`api.bnid`"), "{error}");
        let error = load_str("[api]\nmax_body_bytes = \"lots\"").unwrap_err().to_string();
        assert!(error.contains("`api.max_body_bytes`"), "{error}");
        let error = load_str("[llm.models]\nchannel = \"nope/m\"").unwrap_err().to_string();
        assert!(error.contains("`llm.models.channel`") && error.contains("nope"), "{error}");
        let error = load_str("[llm.providers.main]\nkind = \"gemini\"").unwrap_err().to_string();
        assert!(error.contains("`llm.providers.main.kind`"), "{error}");
        let error = load_str("[api]\nbind = \"localhost\"").unwrap_err().to_string();
        assert!(error.contains("`api.bind`"), "{error}");
    }

    #[test]
    fn env_values_are_resolved_and_missing_ones_named() {
        let error = load_str("[api]\ntoken = \"env:SPACEBOT_TEST_SURELY_UNSET_VAR\"").unwrap_err().to_string();
        assert!(error.contains("SPACEBOT_TEST_SURELY_UNSET_VAR") && error.contains("`api.token`"), "{error}");
    }

    #[test]
    fn missing_config_file_is_named() {
        let error = load(&Location { config: Some("/nonexistent/spacebot.toml".into()), data_dir: None })
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/spacebot.toml"), "{error}");
    }
}

//! The `[tools]` section: the workers' task tools, for every agent.
//!
//! ```toml
//! [tools]
//! shell_timeout_secs = 60
//! shell_output_bytes = 16384
//! sandbox = "auto"                     # or "off", "required"
//! shell_network = false
//! web_fetch = true
//! web_max_bytes = 524288
//! web_allow_hosts = ["wiki.internal"]
//! send_file_max_bytes = 8388608          # the largest file `send_file` uploads
//! # `web_search` is offered only when a search API is configured:
//! web_search = { backend = "searxng", base_url = "http://127.0.0.1:8888", max_results = 5 }
//! # web_search = { backend = "brave", api_key = "env:BRAVE_API_KEY" }
//! ```

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use spacebot_agent::{MAX_SEARCH_RESULTS, Sandbox, TaskToolSettings, WebFetchSettings, WebSearchSettings};

use super::{check, resolve};

/// `[tools]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTools {
    shell_timeout_secs: Option<u64>,
    shell_output_bytes: Option<usize>,
    sandbox: Option<String>,
    shell_network: Option<bool>,
    web_fetch: Option<bool>,
    web_max_bytes: Option<usize>,
    web_allow_hosts: Option<Vec<String>>,
    send_file_max_bytes: Option<usize>,
    /// `tools.web_search`: the search API `web_search` asks.
    web_search: Option<RawWebSearch>,
}

/// `tools.web_search`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebSearch {
    backend: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    max_results: Option<usize>,
    timeout_secs: Option<u64>,
}

/// The workers' task tools from `[tools]`; unset keys keep the defaults.
pub(super) fn task_tools(raw: RawTools) -> anyhow::Result<TaskToolSettings> {
    let defaults = TaskToolSettings::default();
    let mut settings = TaskToolSettings::default().with_shell_limits(
        check::positive(raw.shell_timeout_secs, "tools.shell_timeout_secs")?
            .map_or(defaults.shell_timeout, Duration::from_secs),
        check::positive(raw.shell_output_bytes, "tools.shell_output_bytes")?.unwrap_or(defaults.output_cap),
    );
    if let Some(sandbox) = raw.sandbox {
        settings = settings.with_sandbox(match sandbox.as_str() {
            "auto" => Sandbox::Auto,
            "off" => Sandbox::Off,
            "required" => Sandbox::Required,
            other => bail!("config key `tools.sandbox` must be `auto`, `off` or `required`, not `{other}`"),
        });
    }
    if let Some(network) = raw.shell_network {
        settings.shell_network = network;
    }
    if let Some(bytes) = check::positive(raw.send_file_max_bytes, "tools.send_file_max_bytes")? {
        settings = settings.with_max_send_bytes(bytes);
    }
    let web = match raw.web_fetch {
        Some(false) => None,
        _ => {
            let mut web = WebFetchSettings::default();
            if let Some(bytes) = check::positive(raw.web_max_bytes, "tools.web_max_bytes")? {
                web = web.with_max_bytes(bytes);
            }
            for host in raw.web_allow_hosts.unwrap_or_default() {
                if host.trim().is_empty() || host.contains('/') {
                    bail!(
                        "config key `tools.web_allow_hosts` holds `{host}`; give host names like `wiki.internal` or `host:port`"
                    );
                }
                web = web.allow_host(host);
            }
            Some(web)
        }
    };
    let search = raw.web_search.map(web_search).transpose()?;
    Ok(settings.with_web_fetch(web).with_web_search(search))
}

/// `tools.web_search`, checked: the backend, where it is, its key and limits.
fn web_search(raw: RawWebSearch) -> anyhow::Result<WebSearchSettings> {
    const KEY: &str = "tools.web_search";
    let base_url = |default: Option<&str>| -> anyhow::Result<Option<String>> {
        match &raw.base_url {
            Some(url) => {
                let url = resolve(url, &format!("{KEY}.base_url"))?;
                Ok(Some(check::http_url(url.trim(), &format!("{KEY}.base_url"))?))
            }
            None => Ok(default.map(str::to_owned)),
        }
    };
    let mut settings = match raw.backend.as_deref().map(str::trim) {
        Some("searxng") => {
            let Some(url) = base_url(None)? else {
                bail!(
                    "config key `{KEY}.base_url` is required with `backend = \"searxng\"`: the address of your SearXNG \
                     instance, like http://127.0.0.1:8888"
                );
            };
            if raw.api_key.is_some() {
                bail!("config key `{KEY}.api_key` is only for `backend = \"brave\"`; SearXNG takes no key");
            }
            WebSearchSettings::searxng(url)
        }
        Some("brave") => {
            let url = base_url(Some(WebSearchSettings::BRAVE_BASE_URL))?.unwrap_or_default();
            let key = match &raw.api_key {
                Some(key) => resolve(key, &format!("{KEY}.api_key"))?,
                None => bail!(
                    "config key `{KEY}.api_key` is required with `backend = \"brave\"`: your Brave Search API \
                     subscription token, like \"env:BRAVE_API_KEY\""
                ),
            };
            if key.trim().is_empty() {
                bail!("config key `{KEY}.api_key` is empty (`\"\"`, or an `env:` variable set to nothing)");
            }
            WebSearchSettings::brave(url, key.trim())
        }
        Some(other) => bail!("config key `{KEY}.backend` must be `searxng` or `brave`, not `{other}`"),
        None => bail!("config key `{KEY}.backend` is required: `searxng` or `brave`"),
    };
    if let Some(count) = check::positive(raw.max_results, &format!("{KEY}.max_results"))? {
        if count > MAX_SEARCH_RESULTS {
            bail!("config key `{KEY}.max_results` must be at most {MAX_SEARCH_RESULTS}, not {count}");
        }
        settings = settings.with_max_results(count);
    }
    if let Some(secs) = check::positive(raw.timeout_secs, &format!("{KEY}.timeout_secs"))? {
        settings = settings.with_timeout(Duration::from_secs(secs));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use spacebot_agent::SearchBackend;

    use super::*;

    fn search(backend: &str) -> RawWebSearch {
        RawWebSearch { backend: Some(backend.to_owned()), ..RawWebSearch::default() }
    }

    fn error(raw: RawWebSearch) -> String {
        web_search(raw).unwrap_err().to_string()
    }

    #[test]
    fn send_file_takes_the_default_limit_or_the_configured_one() {
        assert_eq!(task_tools(RawTools::default()).unwrap().max_send_bytes, spacebot_agent::DEFAULT_MAX_SEND_BYTES);
        let raw = RawTools { send_file_max_bytes: Some(1024), ..RawTools::default() };
        assert_eq!(task_tools(raw).unwrap().max_send_bytes, 1024);
        let zero = RawTools { send_file_max_bytes: Some(0), ..RawTools::default() };
        assert!(task_tools(zero).unwrap_err().to_string().contains("`tools.send_file_max_bytes`"));
    }

    #[test]
    fn no_search_api_means_no_web_search() {
        assert!(task_tools(RawTools::default()).unwrap().web_search.is_none());
    }

    #[test]
    fn searxng_needs_its_address_and_takes_no_key() {
        let raw = RawWebSearch {
            base_url: Some("http://127.0.0.1:8888".into()),
            max_results: Some(3),
            timeout_secs: Some(4),
            ..search("searxng")
        };
        let settings = web_search(raw).unwrap();
        assert_eq!(settings.backend, SearchBackend::Searxng);
        assert_eq!(settings.base_url, "http://127.0.0.1:8888");
        assert_eq!((settings.max_results, settings.timeout), (3, Duration::from_secs(4)));
        assert!(settings.api_key.is_none());

        assert!(error(search("searxng")).contains("`tools.web_search.base_url` is required"));
        let keyed = RawWebSearch { base_url: Some("http://s".into()), api_key: Some("k".into()), ..search("searxng") };
        assert!(error(keyed).contains("`tools.web_search.api_key` is only for"));
        let bad = RawWebSearch { base_url: Some("127.0.0.1:8888".into()), ..search("searxng") };
        assert!(error(bad).contains("`tools.web_search.base_url` must be an http(s) URL"));
    }

    #[test]
    fn brave_needs_a_key_and_defaults_to_its_api() {
        let settings = web_search(RawWebSearch { api_key: Some("brave-token".into()), ..search("brave") }).unwrap();
        assert_eq!(settings.backend, SearchBackend::Brave);
        assert_eq!(settings.base_url, WebSearchSettings::BRAVE_BASE_URL);
        assert_eq!(settings.api_key.as_deref(), Some("brave-token"));

        assert!(error(search("brave")).contains("`tools.web_search.api_key` is required"));
        let empty = RawWebSearch { api_key: Some(" ".into()), ..search("brave") };
        assert!(error(empty).contains("`tools.web_search.api_key` is empty"));
        let unset = RawWebSearch { api_key: Some("env:SPACEBOT_TEST_UNSET_BRAVE_KEY".into()), ..search("brave") };
        assert!(error(unset).contains("SPACEBOT_TEST_UNSET_BRAVE_KEY, which is not set"));
    }

    #[test]
    fn the_backend_and_the_limits_are_checked() {
        assert!(
            error(search("google")).contains("`tools.web_search.backend` must be `searxng` or `brave`, not `google`")
        );
        assert!(error(RawWebSearch::default()).contains("`tools.web_search.backend` is required"));
        let base = || RawWebSearch { base_url: Some("http://s".into()), ..search("searxng") };
        assert!(error(RawWebSearch { max_results: Some(0), ..base() }).contains("`tools.web_search.max_results`"));
        assert!(error(RawWebSearch { max_results: Some(21), ..base() }).contains("at most 20, not 21"));
        assert!(error(RawWebSearch { timeout_secs: Some(0), ..base() }).contains("`tools.web_search.timeout_secs`"));
    }
}

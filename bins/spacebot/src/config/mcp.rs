//! `[[mcp_servers]]`: the MCP servers whose tools workers get, as `<name>_<tool>`.
//!
//! ```toml
//! [[mcp_servers]]
//! name = "files"                       # letters, digits, `_` and `-`; unique
//! command = "npx"                      # stdio: a child process, in the workers' sandbox
//! args = ["@modelcontextprotocol/server-filesystem", "/srv/shared"]
//! env = { API_KEY = "secret:FILES_KEY" } # the only variables it gets besides PATH, HOME, LANG
//! write_paths = ["/srv/shared"]        # mounted read-write in the sandbox
//! read_paths = ["/opt/mcp"]            # mounted read-only (the server's own files)
//! timeout_secs = 30                    # to connect, and for each call
//! enabled = true
//!
//! [[mcp_servers]]
//! name = "search"
//! url = "http://127.0.0.1:8931/mcp"    # streamable HTTP
//! bearer_token = "env:SEARCH_TOKEN"
//! ```
//!
//! Values may be `secret:NAME` or `env:NAME` like any other; every value resolved so (and every
//! `env` value and bearer token) is scrubbed from what leaves the process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use spacebot_mcp::{McpServerSettings, McpTransport, StdioSettings};

use super::{check, expand_home, resolve};
use crate::data_dir::DataDir;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMcpServer {
    name: String,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
    bearer_token: Option<String>,
    timeout_secs: Option<u64>,
    enabled: Option<bool>,
    #[serde(default)]
    read_paths: Vec<PathBuf>,
    #[serde(default)]
    write_paths: Vec<PathBuf>,
}

/// The checked servers, and the values to scrub (their environment values and tokens).
pub(crate) fn mcp_servers(
    raw: Vec<RawMcpServer>,
    data_dir: &DataDir,
) -> anyhow::Result<(Vec<McpServerSettings>, Vec<String>)> {
    let mut servers: Vec<McpServerSettings> = Vec::new();
    let mut secrets = Vec::new();
    for (index, server) in raw.into_iter().enumerate() {
        let key = format!("mcp_servers[{index}]");
        let name = server.name.trim().to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            bail!("config key `{key}.name` must be letters, digits, `_` or `-`, not `{}`", server.name);
        }
        if servers.iter().any(|known| known.name == name) {
            bail!("config key `{key}.name`: another MCP server is already named `{name}`");
        }
        let transport = match (server.command, server.url) {
            (Some(command), None) => {
                if command.trim().is_empty() {
                    bail!("config key `{key}.command` is empty");
                }
                if server.bearer_token.is_some() {
                    bail!("config key `{key}.bearer_token` is for `url` servers; give a stdio server `env` instead");
                }
                let mut env = BTreeMap::new();
                for (variable, value) in server.env {
                    let value = resolve(&value, &format!("{key}.env.{variable}"))?;
                    secrets.push(value.clone());
                    env.insert(variable, value);
                }
                let workdir = data_dir.root().join("mcp").join(&name);
                let paths = |paths: Vec<PathBuf>| paths.iter().map(|path| expand_home(path)).collect::<Vec<_>>();
                McpTransport::Stdio(
                    StdioSettings::new(command, server.args, workdir)
                        .with_env(env)
                        .with_mounts(paths(server.write_paths), paths(server.read_paths)),
                )
            }
            (None, Some(url)) => {
                let url = check::http_url(&url, &format!("{key}.url"))?;
                if !server.env.is_empty() || !server.args.is_empty() {
                    bail!("config key `{key}`: `args` and `env` are for `command` servers, not `url` ones");
                }
                let bearer_token = match server.bearer_token {
                    Some(token) => {
                        let token = resolve(&token, &format!("{key}.bearer_token"))?;
                        secrets.push(token.clone());
                        Some(token)
                    }
                    None => None,
                };
                let mut transport = McpTransport::http(url);
                if let McpTransport::Http { bearer_token: slot, .. } = &mut transport {
                    *slot = bearer_token;
                }
                transport
            }
            (Some(_), Some(_)) => bail!("config key `{key}` has both `command` and `url`; an MCP server has one"),
            (None, None) => bail!("config key `{key}` needs `command` (stdio) or `url` (streamable HTTP)"),
        };
        let timeout = check::positive(server.timeout_secs, &format!("{key}.timeout_secs"))?
            .map_or(spacebot_mcp::DEFAULT_TIMEOUT, Duration::from_secs);
        servers.push(
            McpServerSettings::new(name, transport).with_timeout(timeout).with_enabled(server.enabled.unwrap_or(true)),
        );
    }
    secrets.retain(|secret| !secret.is_empty());
    Ok((servers, secrets))
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        mcp_servers: Vec<RawMcpServer>,
    }

    fn load(toml: &str) -> anyhow::Result<(Vec<McpServerSettings>, Vec<String>)> {
        let wrapper: Wrapper = Figment::from(Toml::string(toml)).extract()?;
        mcp_servers(wrapper.mcp_servers, &DataDir::new("/data"))
    }

    #[test]
    fn stdio_and_http_servers_are_read_with_their_defaults() {
        let (servers, secrets) = load(
            r#"
            [[mcp_servers]]
            name = "files"
            command = "node"
            args = ["server.js", "/srv"]
            env = { API_KEY = "literal-key-value" }
            write_paths = ["/srv"]
            read_paths = ["/opt/mcp"]

            [[mcp_servers]]
            name = "web"
            url = "http://127.0.0.1:8931/mcp"
            bearer_token = "bearer-value-1234"
            timeout_secs = 5
            enabled = false
            "#,
        )
        .unwrap();
        assert_eq!(servers.len(), 2);
        let McpTransport::Stdio(stdio) = &servers[0].transport else { panic!("{:?}", servers[0]) };
        assert_eq!(stdio.command, "node");
        assert_eq!(stdio.args, ["server.js", "/srv"]);
        assert_eq!(stdio.workdir, PathBuf::from("/data/mcp/files"));
        assert_eq!(stdio.writable, [PathBuf::from("/srv")]);
        assert_eq!(stdio.readable, [PathBuf::from("/opt/mcp")]);
        assert_eq!(servers[0].timeout, spacebot_mcp::DEFAULT_TIMEOUT);
        assert!(servers[0].enabled);
        assert_eq!(
            servers[1].transport,
            McpTransport::Http {
                url: "http://127.0.0.1:8931/mcp".to_owned(),
                bearer_token: Some("bearer-value-1234".to_owned())
            }
        );
        assert_eq!(servers[1].timeout, Duration::from_secs(5));
        assert!(!servers[1].enabled);
        assert_eq!(secrets, ["literal-key-value", "bearer-value-1234"]);
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        let cases = [
            ("[[mcp_servers]]\nname = \"a b\"\ncommand = \"x\"", "mcp_servers[0].name"),
            (
                "[[mcp_servers]]\nname = \"a\"\ncommand = \"x\"\n[[mcp_servers]]\nname = \"a\"\ncommand = \"y\"",
                "already named",
            ),
            ("[[mcp_servers]]\nname = \"a\"", "needs `command` (stdio) or `url`"),
            ("[[mcp_servers]]\nname = \"a\"\ncommand = \"x\"\nurl = \"http://h/mcp\"", "both `command` and `url`"),
            ("[[mcp_servers]]\nname = \"a\"\nurl = \"ftp://h/mcp\"", "mcp_servers[0].url"),
            ("[[mcp_servers]]\nname = \"a\"\ncommand = \"x\"\ntimeout_secs = 0", "mcp_servers[0].timeout_secs"),
            (
                "[[mcp_servers]]\nname = \"a\"\ncommand = \"x\"\nenv = { K = \"env:SPACEBOT_TEST_SURELY_UNSET_VAR\" }",
                "mcp_servers[0].env.K",
            ),
            ("[[mcp_servers]]\nname = \"a\"\ncommand = \"x\"\nbearer_token = \"t\"", "bearer_token"),
        ];
        for (toml, expected) in cases {
            let error = load(toml).unwrap_err().to_string();
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }
}

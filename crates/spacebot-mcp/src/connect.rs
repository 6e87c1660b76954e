//! Opening one connection to an MCP server: starting its process (through a [`StdioLauncher`])
//! or reaching its URL, and the MCP handshake.

use std::process::Stdio;
use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::ServiceExt;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

use crate::error::ConnectError;
use crate::settings::{McpTransport, StdioSettings};

/// A live connection: the SDK's client service.
pub(crate) type Connection = RunningService<RoleClient, ()>;

/// Builds the command that starts a stdio server: the daemon's makes it the workers' sandbox.
pub trait StdioLauncher: Send + Sync + 'static {
    /// The command running `server`, with its working directory, a clean environment and (in a
    /// sandbox) its mounts; the client adds `server.env` and the pipes. An `Err` is a refusal
    /// the operator must fix (retrying won't help), in words for them and the model.
    fn command(&self, server: &StdioSettings) -> Result<tokio::process::Command, String>;
}

/// Starts stdio servers unsandboxed, with a clean environment (`PATH`, `HOME` = the working
/// directory, `LANG`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLauncher;

impl StdioLauncher for PlainLauncher {
    fn command(&self, server: &StdioSettings) -> Result<tokio::process::Command, String> {
        let mut command = tokio::process::Command::new(&server.command);
        command
            .args(&server.args)
            .current_dir(&server.workdir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &server.workdir)
            .env("LANG", "C.UTF-8");
        Ok(command)
    }
}

/// How one server is connected to.
#[derive(Clone)]
pub(crate) enum Connector {
    Stdio {
        settings: StdioSettings,
        launcher: Arc<dyn StdioLauncher>,
    },
    Http {
        url: String,
        bearer_token: Option<String>,
    },
    /// A connection made by the caller (tests: a server in the same process).
    #[cfg(test)]
    Custom(Arc<dyn Fn() -> BoxFuture<'static, Result<Connection, ConnectError>> + Send + Sync>),
}

impl Connector {
    pub(crate) fn new(transport: &McpTransport, launcher: Arc<dyn StdioLauncher>) -> Self {
        match transport {
            McpTransport::Stdio(settings) => Self::Stdio { settings: settings.clone(), launcher },
            McpTransport::Http { url, bearer_token } => {
                Self::Http { url: url.clone(), bearer_token: bearer_token.clone() }
            }
        }
    }

    /// Connects and completes the handshake (no timeout here: the caller bounds it).
    pub(crate) fn connect(&self) -> BoxFuture<'static, Result<Connection, ConnectError>> {
        match self {
            Self::Stdio { settings, launcher } => {
                let started = start_child(settings, launcher.as_ref());
                Box::pin(async move {
                    let transport = started?;
                    ().serve(transport).await.map_err(|error| ConnectError::Handshake(error.to_string()))
                })
            }
            Self::Http { url, bearer_token } => {
                let mut config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                );
                if let Some(token) = bearer_token {
                    config = config.auth_header(token.clone());
                }
                let transport = StreamableHttpClientTransport::with_client(
                    reqwest::Client::builder()
                        .tls_backend_preconfigured(spacebot_core::tls::client_config())
                        .build()
                        .unwrap_or_default(),
                    config,
                );
                Box::pin(async move {
                    ().serve(transport).await.map_err(|error| ConnectError::Handshake(error.to_string()))
                })
            }
            #[cfg(test)]
            Self::Custom(connect) => connect(),
        }
    }
}

/// Starts a stdio server's process, its stderr discarded (it must not reach the daemon's logs
/// unscrubbed).
fn start_child(settings: &StdioSettings, launcher: &dyn StdioLauncher) -> Result<TokioChildProcess, ConnectError> {
    if let Err(error) = std::fs::create_dir_all(&settings.workdir) {
        return Err(ConnectError::Spawn {
            program: settings.command.clone(),
            reason: format!("can't create its working directory {}: {error}", settings.workdir.display()),
        });
    }
    let mut command = launcher.command(settings).map_err(ConnectError::Refused)?;
    command.envs(&settings.env);
    let (child, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| ConnectError::Spawn { program: settings.command.clone(), reason: error.to_string() })?;
    Ok(child)
}

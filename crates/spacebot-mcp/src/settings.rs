//! What the daemon says about each MCP server: how to reach it and how long to wait for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long a server gets to connect and list its tools, and each tool call to answer, unless
/// its settings say otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpServerSettings {
    /// The server's name: its tools are offered as `<name>_<tool>`.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
    /// How long it gets to connect and list its tools, and each call to answer.
    pub timeout: Duration,
    /// Whether the daemon connects to it at all.
    pub enabled: bool,
}

impl McpServerSettings {
    /// An enabled server with the default timeout.
    pub fn new(name: impl Into<String>, transport: McpTransport) -> Self {
        Self { name: name.into(), transport, timeout: DEFAULT_TIMEOUT, enabled: true }
    }

    /// Sets the timeout of the connection and of each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Enables or disables the server.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpTransport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio(StdioSettings),
    /// Streamable HTTP at this URL.
    Http {
        /// The endpoint (`http://127.0.0.1:8931/mcp`).
        url: String,
        /// Sent as the `Authorization` header's bearer token, if set.
        bearer_token: Option<String>,
    },
}

impl McpTransport {
    /// A streamable HTTP server at `url`.
    pub fn http(url: impl Into<String>) -> Self {
        Self::Http { url: url.into(), bearer_token: None }
    }

    /// What the transport is, for status lines: the command or the URL.
    pub fn describe(&self) -> String {
        match self {
            Self::Stdio(stdio) => {
                let mut text = format!("stdio: {}", stdio.command);
                for arg in &stdio.args {
                    text.push(' ');
                    text.push_str(arg);
                }
                text
            }
            Self::Http { url, .. } => format!("http: {url}"),
        }
    }
}

/// A server run as a child process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StdioSettings {
    /// The program (looked up on the sandbox's `PATH` when not a path).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The only environment variables it gets besides `PATH`, `HOME` and `LANG`.
    pub env: BTreeMap<String, String>,
    /// Its working directory (created if missing), mounted read-write in the sandbox.
    pub workdir: PathBuf,
    /// More directories the sandbox mounts read-write (those the server works on).
    pub writable: Vec<PathBuf>,
    /// Files and directories the sandbox mounts read-only (the server's own installation).
    pub readable: Vec<PathBuf>,
}

impl StdioSettings {
    /// `command` with `args`, working in `workdir`.
    pub fn new(
        command: impl Into<String>,
        args: impl IntoIterator<Item = String>,
        workdir: impl Into<PathBuf>,
    ) -> Self {
        Self { command: command.into(), args: args.into_iter().collect(), workdir: workdir.into(), ..Self::default() }
    }

    /// Sets the environment variables it gets.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// Sets the directories mounted read-write and read-only in the sandbox.
    pub fn with_mounts(mut self, writable: Vec<PathBuf>, readable: Vec<PathBuf>) -> Self {
        self.writable = writable;
        self.readable = readable;
        self
    }
}

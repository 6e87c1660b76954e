//! Why a connection to an MCP server could not be made.

/// Why connecting to an MCP server failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server may not be started at all (the sandbox is `auto` and bubblewrap is missing);
    /// retrying won't help.
    #[error("{0}")]
    Refused(String),
    /// The child process could not be started.
    #[error("can't start `{program}`: {reason}")]
    Spawn {
        /// The configured command.
        program: String,
        /// What the operating system said.
        reason: String,
    },
    /// The server did not complete the MCP handshake.
    #[error("the MCP handshake failed: {0}")]
    Handshake(String),
    /// The server did not list its tools.
    #[error("can't list the server's tools: {0}")]
    ListTools(String),
}

impl ConnectError {
    /// Whether trying again later may help (everything but a refusal).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }
}

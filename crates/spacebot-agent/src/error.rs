//! The agent's own errors: what can fail while an agent is being set up, before any
//! conversation runs. Failures inside a conversation cross the core contract instead
//! (`LlmError`, `StoreError`, `ToolError`) and end in a visible notice, never in an error here.

use std::path::PathBuf;

/// Why the task tools can't be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskToolError {
    /// The workspace directory can't be created or resolved.
    #[error("can't use the workspace {path}: {source}")]
    Workspace {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox is required and bubblewrap (`bwrap`) is not installed.
    #[error("the shell sandbox is required but bubblewrap (`bwrap`) is not installed")]
    SandboxMissing,
    /// `web_search`'s HTTP client can't be built.
    #[error("can't set up `web_search`'s HTTP client: {source}")]
    WebSearchClient {
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
}

/// A result whose error is this crate's [`TaskToolError`] unless said otherwise.
pub type Result<T, E = TaskToolError> = std::result::Result<T, E>;

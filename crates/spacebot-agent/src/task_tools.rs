//! The workers' built-in task tools: `file_read`, `file_write`, `file_list` and `shell`,
//! confined to the agent's workspace directory, `web_fetch`, guarded against private
//! addresses, and `web_search` through the configured search API. `send_file` (for the channel
//! and for workers) uploads a workspace file to the conversation; being bound to one
//! conversation, it is added where a worker starts, not here.
//!
//! Confinement is checked on resolved paths (symlinks followed), so no path, however it is
//! spelled, reaches outside the workspace. Shell commands run inside bubblewrap when it is
//! installed (the workspace writable, the rest of the filesystem read-only, no network), with a
//! clear warning when it is not; either way they run with a clean environment, a time limit and
//! an output cap.

mod launcher;
mod send_file;
mod shell;
mod web;
mod web_search;
mod workspace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spacebot_core::Tool;

use crate::error::TaskToolError;

pub use launcher::{Launcher, Mounts, bubblewrap_available};
pub use send_file::{DEFAULT_MAX_SEND_BYTES, SEND_FILE_TOOL};
pub(crate) use send_file::{FileSender, SendFile, SendFileArgs, send_file_spec};
pub use shell::Sandbox;
pub use web::WebFetchSettings;
pub use web_search::{MAX_SEARCH_RESULTS, SearchBackend, WebSearchSettings};

/// Settings of the built-in task tools.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskToolSettings {
    /// The directory file and shell tools work in; without one, workers get no file or shell
    /// tools.
    pub workspace: Option<PathBuf>,
    /// Longest a shell command may run.
    pub shell_timeout: Duration,
    /// Bytes of a command's stdout (and, separately, stderr) kept; the rest is cut.
    pub output_cap: usize,
    /// Whether shell commands run in bubblewrap.
    pub sandbox: Sandbox,
    /// Whether sandboxed shell commands may use the network.
    pub shell_network: bool,
    /// Paths the sandbox hides from commands even when they lie inside a directory it mounts
    /// (the daemon's data dir and config file).
    pub hidden_paths: Vec<PathBuf>,
    /// Longest file `file_read` returns, in bytes.
    pub max_read_bytes: usize,
    /// Largest file `send_file` uploads, in bytes; a larger one is refused, not cut.
    pub max_send_bytes: usize,
    /// `web_fetch`, when enabled.
    pub web_fetch: Option<WebFetchSettings>,
    /// `web_search`, when a search API is configured (none by default).
    pub web_search: Option<WebSearchSettings>,
}

impl Default for TaskToolSettings {
    fn default() -> Self {
        Self {
            workspace: None,
            shell_timeout: Duration::from_secs(60),
            output_cap: 16 * 1024,
            sandbox: Sandbox::Auto,
            shell_network: false,
            hidden_paths: Vec::new(),
            max_read_bytes: 256 * 1024,
            max_send_bytes: DEFAULT_MAX_SEND_BYTES,
            web_fetch: Some(WebFetchSettings::default()),
            web_search: None,
        }
    }
}

impl TaskToolSettings {
    /// Settings with file and shell tools confined to `workspace`.
    pub fn with_workspace(mut self, workspace: impl Into<PathBuf>) -> Self {
        self.workspace = Some(workspace.into());
        self
    }

    /// Sets the shell time limit and output cap.
    pub fn with_shell_limits(mut self, timeout: Duration, output_cap: usize) -> Self {
        self.shell_timeout = timeout;
        self.output_cap = output_cap;
        self
    }

    /// Sets the sandbox mode of shell commands.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// Hides these paths from sandboxed commands (see [`hidden_paths`](Self::hidden_paths)).
    pub fn with_hidden_paths(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.hidden_paths.extend(paths);
        self
    }

    /// Sets the largest file `send_file` uploads.
    pub fn with_max_send_bytes(mut self, bytes: usize) -> Self {
        self.max_send_bytes = bytes;
        self
    }

    /// Sets (or, with `None`, turns off) `web_fetch`.
    pub fn with_web_fetch(mut self, web_fetch: Option<WebFetchSettings>) -> Self {
        self.web_fetch = web_fetch;
        self
    }

    /// Sets (or, with `None`, turns off) `web_search`.
    pub fn with_web_search(mut self, web_search: Option<WebSearchSettings>) -> Self {
        self.web_search = web_search;
        self
    }
}

/// The built-in task tools for these settings.
///
/// Fails when the workspace can't be created or resolved, when the sandbox is required and
/// bubblewrap is missing, or when `web_search`'s HTTP client can't be built.
pub fn task_tools(settings: &TaskToolSettings) -> Result<Vec<Arc<dyn Tool>>, TaskToolError> {
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    if let Some(root) = &settings.workspace {
        let workspace = Arc::new(workspace::Workspace::open(root)?);
        tools.push(Arc::new(workspace::FileRead::new(workspace.clone(), settings.max_read_bytes)));
        tools.push(Arc::new(workspace::FileWrite::new(workspace.clone())));
        tools.push(Arc::new(workspace::FileList::new(workspace.clone())));
        tools.push(Arc::new(shell::Shell::new(workspace, settings)?));
    }
    if let Some(web) = &settings.web_fetch {
        tools.push(Arc::new(web::WebFetch::new(web.clone())));
    }
    if let Some(search) = &settings.web_search {
        tools.push(Arc::new(web_search::WebSearch::new(search.clone())?));
    }
    Ok(tools)
}

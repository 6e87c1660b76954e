//! The Spacebot MCP client: the tools of Model Context Protocol servers, offered to workers.
//!
//! Each configured server ([`McpServerSettings`]) is reached over stdio (a child process, started
//! by a [`StdioLauncher`], which the daemon makes the workers' sandbox) or streamable HTTP,
//! through the official SDK, `rmcp`. [`McpClients::start`] gives every server a task of its own
//! that connects, lists the server's tools, watches the connection and reconnects with backoff
//! (1 s doubling to 60 s) when it drops; the tasks are owned by the [`McpClients`] and stopped by
//! [`McpClients::shutdown`]. Nothing here blocks: a server that is missing, slow or crashing is
//! only a state in [`McpClients::status`], its tools are absent while it is away, and a call to
//! one of them fails within the server's timeout with an error the model can read.
//!
//! A server's tools are named `<server>_<tool>` and carry the server's own JSON schemas; the
//! arguments go to the server as the model wrote them (the server validates them).
//!
//! Depends on `spacebot-core` only: the tools are core [`Tool`](spacebot_core::Tool)s.

mod client;
mod connect;
mod error;
mod settings;
mod tool;

pub use client::{McpClients, McpHandle, ServerState, ServerStatus, ToolInfo};
pub use connect::{PlainLauncher, StdioLauncher};
pub use error::ConnectError;
pub use settings::{DEFAULT_TIMEOUT, McpServerSettings, McpTransport, StdioSettings};

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

#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    //! What an MCP server sends, converted as the client converts it, reachable by the fuzz
    //! targets in `fuzz/` (feature `fuzzing`) without making the conversion part of the crate's
    //! API.

    use rmcp::model::{CallToolResult, JsonRpcMessage, ListToolsResult, ServerJsonRpcMessage, ServerResult};

    use spacebot_core::ToolSpec;

    /// What came of one message.
    #[derive(Debug, Default)]
    #[non_exhaustive]
    pub struct Converted {
        /// Whether it was a JSON-RPC message a server may send.
        pub message: bool,
        /// The text the model reads of each tool result found.
        pub texts: Vec<String>,
        /// The definitions offered to the model for each tool listed.
        pub tools: Vec<ToolSpec>,
    }

    /// Reads `payload` as a JSON-RPC message from the server named `server` and converts the
    /// tool results and tool lists in it, also reading a response's `result` directly as the
    /// result of a `tools/call` and of a `tools/list` (which is what the client expects there).
    pub fn convert(server: &str, payload: &[u8]) -> Converted {
        let mut converted = Converted::default();
        let mut results = Vec::new();
        let mut lists = Vec::new();
        if let Ok(message) = serde_json::from_slice::<ServerJsonRpcMessage>(payload) {
            converted.message = true;
            if let JsonRpcMessage::Response(response) = message {
                match response.result {
                    ServerResult::CallToolResult(result) => results.push(result),
                    ServerResult::ListToolsResult(list) => lists.push(list),
                    _ => {}
                }
            }
        }
        if let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice::<serde_json::Value>(payload)
            && let Some(result) = object.remove("result")
        {
            results.extend(serde_json::from_value::<CallToolResult>(result.clone()).ok());
            lists.extend(serde_json::from_value::<ListToolsResult>(result).ok());
        }
        converted.texts = results.iter().map(crate::tool::result_text).collect();
        converted.tools =
            lists.iter().flat_map(|list| &list.tools).map(|tool| crate::tool::tool_spec(server, tool)).collect();
        converted
    }
}

pub use client::{McpClients, McpHandle, ServerState, ServerStatus, ToolInfo};
pub use connect::{PlainLauncher, StdioLauncher};
pub use error::ConnectError;
pub use settings::{DEFAULT_TIMEOUT, McpServerSettings, McpTransport, StdioSettings};

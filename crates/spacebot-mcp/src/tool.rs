//! One tool of an MCP server as a core [`Tool`]: `<server>_<tool>`, the server's schema, and a
//! call bounded by the server's timeout that reads like any tool's result.

use std::sync::Arc;

use async_trait::async_trait;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::ServiceError;

use spacebot_core::{Tool, ToolError, ToolSpec};

use crate::client::Shared;

/// Longest tool name most model APIs accept.
const MAX_NAME: usize = 64;

/// The name the model calls a server's tool by: `<server>_<tool>`, with every character a
/// model API refuses in a name (anything but ASCII letters, digits, `_` and `-`) made `_`, cut to
/// 64 bytes.
pub(crate) fn tool_name(server: &str, tool: &str) -> String {
    let mut name: String = format!("{server}_{tool}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    name.truncate(MAX_NAME);
    name
}

/// A tool of a connected MCP server.
pub(crate) struct McpTool {
    pub(crate) name: String,
    /// The tool's name on the server.
    pub(crate) remote: String,
    pub(crate) spec: ToolSpec,
    pub(crate) server: Arc<Shared>,
}

impl McpTool {
    pub(crate) fn new(server: Arc<Shared>, tool: &rmcp::model::Tool) -> Self {
        let spec = tool_spec(&server.settings.name, tool);
        Self { name: spec.name.clone(), spec, remote: tool.name.to_string(), server }
    }
}

/// The definition the model is offered for `tool` of the server named `server`: the prefixed
/// name, the server's description with where the tool comes from, and the server's schema.
pub(crate) fn tool_spec(server: &str, tool: &rmcp::model::Tool) -> ToolSpec {
    let name = tool_name(server, &tool.name);
    let description = tool.description.as_deref().unwrap_or_default();
    let description = format!("{description} (tool `{}` of the MCP server `{server}`)", tool.name);
    let schema = serde_json::Value::Object(tool.input_schema.as_ref().clone());
    ToolSpec::new(name, description.trim_start(), schema)
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let server = &self.server.settings.name;
        let arguments = match arguments {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => serde_json::Map::new(),
            serde_json::Value::String(raw) if raw.trim().is_empty() => serde_json::Map::new(),
            serde_json::Value::String(raw) => match serde_json::from_str(&raw) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => return Err(ToolError::InvalidArguments(format!("`{}` takes a JSON object", self.name))),
            },
            _ => return Err(ToolError::InvalidArguments(format!("`{}` takes a JSON object", self.name))),
        };
        let Some(peer) = self.server.peer() else {
            return Err(ToolError::Failed(format!(
                "the MCP server `{server}` is not connected ({}); try again later or do without it",
                self.server.state()
            )));
        };
        let timeout = self.server.settings.timeout;
        let params = CallToolRequestParams::new(self.remote.clone()).with_arguments(arguments);
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => Err(ToolError::Failed(format!(
                "the MCP server `{server}` did not answer within {} seconds; try again later or do without it",
                timeout.as_secs()
            ))),
            Ok(Err(ServiceError::McpError(error))) => {
                Err(ToolError::Failed(format!("the MCP server `{server}` refused the call: {}", error.message)))
            }
            Ok(Err(error)) => {
                // The connection is gone: the server's task notices it and reconnects.
                Err(ToolError::Failed(format!(
                    "the MCP server `{server}` failed during the call ({error}); it is being reconnected, try again \
                     later or do without it"
                )))
            }
            Ok(Ok(result)) => {
                let text = result_text(&result);
                if result.is_error == Some(true) { Err(ToolError::Failed(text)) } else { Ok(text) }
            }
        }
    }
}

/// What the model reads of a result: its text blocks, then the rest described, or the
/// structured content when there is no block.
pub(crate) fn result_text(result: &CallToolResult) -> String {
    let mut parts = Vec::new();
    for block in &result.content {
        match block {
            ContentBlock::Text(text) => parts.push(text.text.clone()),
            ContentBlock::Image(image) => parts.push(format!("[image: {}]", image.mime_type)),
            ContentBlock::Audio(audio) => parts.push(format!("[audio: {}]", audio.mime_type)),
            ContentBlock::Resource(resource) => {
                parts.push(serde_json::to_string(&resource.resource).unwrap_or_else(|_| "[resource]".to_owned()))
            }
            ContentBlock::ResourceLink(link) => parts.push(format!("[resource: {}]", link.uri)),
            _ => parts.push("[content of an unknown kind]".to_owned()),
        }
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_safe_for_model_apis() {
        assert_eq!(tool_name("files", "read_file"), "files_read_file");
        assert_eq!(tool_name("my server", "ls.dir"), "my_server_ls_dir");
        assert_eq!(tool_name("s", &"x".repeat(100)).len(), 64);
    }
}

//! The tool contract: something a model may call by name with JSON arguments.

use async_trait::async_trait;

use crate::error::ToolError;
use crate::llm::ToolSpec;

/// A tool offered to a model.
///
/// The result (or the error's text) goes back to the model as the tool result, so errors should
/// say what went wrong in words the model can act on.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name, description and argument schema the model sees.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool.
    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError>;
}

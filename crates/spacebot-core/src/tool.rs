//! The tool contract: something a model may call by name with JSON arguments.
//!
//! Two ways to write one:
//! - [`TypedTool`]: a name known at compile time and an argument type. Its arguments are parsed
//!   once, by [`parse_tool_args`], before [`TypedTool::run`] sees them; every typed tool gets
//!   [`Tool`] for free. This is the way to write a tool.
//! - [`Tool`] directly: for tools whose name or schema is only known at run time (a tool
//!   discovered from another server, say), which read their JSON arguments themselves, with
//!   [`parse_tool_args`] too.
//!
//! Either way the process that offers the tool holds it as `Arc<dyn Tool>`.

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::error::ToolError;
use crate::llm::ToolSpec;

/// A tool offered to a model.
///
/// The result (or the error's text) goes back to the model as the tool result, so errors should
/// say what went wrong in words the model can act on.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name the model calls it by: the name in [`spec`](Self::spec), read without building
    /// the schema (processes look tools up by name on every call).
    fn name(&self) -> &str;

    /// The name, description and argument schema the model sees.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool.
    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError>;
}

/// A tool with a fixed name and typed arguments; implementing it implements [`Tool`].
///
/// ```
/// use async_trait::async_trait;
/// use serde::Deserialize;
/// use spacebot_core::{Tool, ToolError, TypedTool};
///
/// struct Echo;
///
/// #[derive(Deserialize)]
/// struct EchoArgs {
///     text: String,
/// }
///
/// #[async_trait]
/// impl TypedTool for Echo {
///     const NAME: &'static str = "echo";
///     type Args = EchoArgs;
///
///     fn description(&self) -> String {
///         "Say the text back.".to_owned()
///     }
///
///     fn parameters(&self) -> serde_json::Value {
///         serde_json::json!({ "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"] })
///     }
///
///     async fn run(&self, args: EchoArgs) -> Result<String, ToolError> {
///         Ok(args.text)
///     }
/// }
///
/// # futures::executor::block_on(async {
/// // Arguments some servers send as a JSON string are read the same way.
/// let tool: &dyn Tool = &Echo;
/// assert_eq!(tool.call(serde_json::json!({ "text": "hi" })).await.unwrap(), "hi");
/// assert_eq!(tool.call(serde_json::json!("{\"text\": \"hi\"}")).await.unwrap(), "hi");
/// # });
/// ```
#[async_trait]
pub trait TypedTool: Send + Sync + 'static {
    /// The name the model calls it by.
    const NAME: &'static str;

    /// The arguments, read from the model's JSON by [`parse_tool_args`].
    type Args: DeserializeOwned + Send;

    /// What the model reads about the tool: what it does and when to call it.
    fn description(&self) -> String;

    /// The JSON schema of [`Args`](Self::Args).
    fn parameters(&self) -> serde_json::Value;

    /// Runs the tool with its parsed arguments.
    async fn run(&self, args: Self::Args) -> Result<String, ToolError>;
}

#[async_trait]
impl<T: TypedTool> Tool for T {
    fn name(&self) -> &str {
        T::NAME
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(T::NAME, self.description(), self.parameters())
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let args = parse_tool_args::<T::Args>(T::NAME, &arguments)?;
        self.run(args).await
    }
}

/// Reads the arguments of a call to `tool` into `T`: the one parser every tool uses.
///
/// Accepts the arguments object itself; the same object encoded as a JSON string (some
/// OpenAI-compatible servers encode tool arguments twice); and, for a tool whose arguments are
/// all optional, no arguments at all (`null`, or an empty string).
pub fn parse_tool_args<T: DeserializeOwned>(tool: &str, arguments: &serde_json::Value) -> Result<T, ToolError> {
    let parsed = match arguments {
        serde_json::Value::String(raw) if raw.trim().is_empty() => serde_json::from_value(serde_json::json!({})),
        serde_json::Value::String(raw) => serde_json::from_str(raw),
        serde_json::Value::Null => serde_json::from_value(serde_json::json!({})),
        other => T::deserialize(other),
    };
    parsed.map_err(|error: serde_json::Error| ToolError::InvalidArguments(format!("{error} (tool `{tool}`)")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Args {
        content: String,
        #[serde(default)]
        count: u32,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct Optional {
        #[serde(default)]
        reason: Option<String>,
    }

    #[test]
    fn an_object_and_the_same_object_encoded_as_a_string_read_alike() {
        let expected = Args { content: "hi".to_owned(), count: 2 };
        assert_eq!(parse_tool_args::<Args>("t", &json!({ "content": "hi", "count": 2 })).unwrap(), expected);
        assert_eq!(parse_tool_args::<Args>("t", &json!("{\"content\": \"hi\", \"count\": 2}")).unwrap(), expected);
    }

    #[test]
    fn no_arguments_read_as_an_empty_object() {
        assert_eq!(parse_tool_args::<Optional>("t", &json!(null)).unwrap(), Optional::default());
        assert_eq!(parse_tool_args::<Optional>("t", &json!(" ")).unwrap(), Optional::default());
        assert!(parse_tool_args::<Args>("t", &json!(null)).is_err(), "required fields stay required");
    }

    #[test]
    fn errors_name_the_tool_and_what_is_wrong() {
        let error = parse_tool_args::<Args>("reply", &json!({ "text": "hi" })).unwrap_err();
        assert_eq!(error.to_string(), "invalid arguments: missing field `content` (tool `reply`)");
        let error = parse_tool_args::<Args>("reply", &json!("not json")).unwrap_err();
        assert!(error.to_string().starts_with("invalid arguments: expected"), "{error}");
        assert!(error.to_string().ends_with("(tool `reply`)"), "{error}");
    }
}

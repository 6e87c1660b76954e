//! What an MCP server sends: any bytes read as a JSON-RPC server message and its tool results
//! and tool lists converted as the client converts them.

/// Longest tool name most model APIs accept (what the client cuts names to).
const MAX_TOOL_NAME: usize = 64;

/// Converts `data` as a message from a server named `files`: never panics, and every tool
/// offered to the model has a name of at most 64 characters, each an ASCII letter, digit, `_` or
/// `-`, starting with the server's prefix, and an object for its parameters.
pub fn check_mcp(data: &[u8]) {
    let converted = spacebot_mcp::fuzzing::convert("files", data);
    for tool in &converted.tools {
        assert!(tool.name.len() <= MAX_TOOL_NAME, "a name over {MAX_TOOL_NAME} bytes: {:?}", tool.name);
        assert!(
            tool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "a name a model API refuses: {:?}",
            tool.name
        );
        assert!(tool.name.starts_with("files_"), "no server prefix: {:?}", tool.name);
        assert!(tool.parameters.is_object(), "parameters not an object: {:?}", tool.parameters);
    }
}

//! What the fake model server was asked (dev-only test support).

use axum::http::HeaderMap;
use serde_json::Value;

/// The wire format a request arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions (`POST /v1/chat/completions`).
    OpenAi,
    /// Anthropic messages (`POST /v1/messages`).
    Anthropic,
}

/// One request the fake model server received, recorded before it was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The wire format, from the path.
    pub wire: Wire,
    /// The request path, such as `/v1/chat/completions`.
    pub path: String,
    /// The headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body; a body that is not JSON is kept as a JSON string of its text.
    pub body: Value,
    /// Whether the body asked for a streamed answer (`"stream": true`).
    pub stream: bool,
}

impl RecordedRequest {
    pub(super) fn new(wire: Wire, path: &str, headers: &HeaderMap, body: &[u8]) -> Self {
        let body = serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let headers = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        Self { wire, path: path.to_owned(), headers, body, stream }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The `model` the request named.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The history: the `messages` array (empty when missing).
    pub fn messages(&self) -> &[Value] {
        self.body.get("messages").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }

    /// The text of the last user message that has text: OpenAI string content or text parts,
    /// Anthropic string content or text blocks. Anthropic user messages holding only tool results
    /// are skipped. Several text parts are joined with newlines.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages()
            .iter()
            .rev()
            .filter(|message| message.get("role").and_then(Value::as_str) == Some("user"))
            .find_map(|message| message.get("content").and_then(text_of))
    }

    /// The system prompt: OpenAI `system` (or `developer`) messages, or Anthropic's top-level
    /// `system` string or text blocks. Several parts are joined with newlines.
    pub fn system_text(&self) -> Option<String> {
        if let Some(system) = self.body.get("system") {
            return text_of(system);
        }
        let parts: Vec<String> = self
            .messages()
            .iter()
            .filter(|message| matches!(message.get("role").and_then(Value::as_str), Some("system" | "developer")))
            .filter_map(|message| message.get("content").and_then(text_of))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    /// The images in the history, in order, as `(media type, base64 data)`: OpenAI `image_url`
    /// parts with a `data:` URL, Anthropic `image` blocks with a base64 source. An image given by
    /// a plain URL is listed as `("url", URL)`.
    pub fn images(&self) -> Vec<(String, String)> {
        let str_at = |value: &Value, pointer: &str| value.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        self.messages()
            .iter()
            .filter_map(|message| message.get("content").and_then(Value::as_array))
            .flatten()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("image_url") => {
                    let url = str_at(part, "/image_url/url")?;
                    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((media_type, data)) => Some((media_type.to_owned(), data.to_owned())),
                        None => Some(("url".to_owned(), url)),
                    }
                }
                Some("image") => match str_at(part, "/source/type").as_deref() {
                    Some("base64") => Some((str_at(part, "/source/media_type")?, str_at(part, "/source/data")?)),
                    _ => Some(("url".to_owned(), str_at(part, "/source/url")?)),
                },
                _ => None,
            })
            .collect()
    }

    /// The names of the tools offered, in order (OpenAI `function.name` or Anthropic `name`).
    pub fn tool_names(&self) -> Vec<String> {
        let Some(tools) = self.body.get("tools").and_then(Value::as_array) else {
            return Vec::new();
        };
        tools
            .iter()
            .filter_map(|tool| tool.pointer("/function/name").or_else(|| tool.get("name")))
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    /// Whether the history holds a tool result (an OpenAI `tool` message or an Anthropic
    /// `tool_result` block).
    pub fn has_tool_result(&self) -> bool {
        self.messages().iter().any(|message| {
            message.get("role").and_then(Value::as_str) == Some("tool")
                || message
                    .get("content")
                    .and_then(Value::as_array)
                    .is_some_and(|blocks| blocks.iter().any(|block| kind(block) == Some("tool_result")))
        })
    }
}

/// The `type` of a content block.
fn kind(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// The text of message content: a string, or the text parts of a block array joined with
/// newlines. `None` when there is no text part at all.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|block| kind(block).is_none_or(|kind| kind == "text"))
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn recorded(wire: Wire, body: Value) -> RecordedRequest {
        RecordedRequest::new(wire, "/", &HeaderMap::new(), body.to_string().as_bytes())
    }

    #[test]
    fn reads_an_openai_request() {
        let request = recorded(
            Wire::OpenAi,
            json!({
                "model": "gpt-x",
                "stream": true,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "reply", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                    {"role": "user", "content": [{"type": "text", "text": "second"}]}
                ],
                "tools": [{"type": "function", "function": {"name": "reply", "parameters": {}}}]
            }),
        );
        assert!(request.stream);
        assert_eq!(request.model(), Some("gpt-x"));
        assert_eq!(request.last_user_text().as_deref(), Some("second"));
        assert_eq!(request.system_text().as_deref(), Some("be brief"));
        assert_eq!(request.tool_names(), vec!["reply"]);
        assert!(request.has_tool_result());
    }

    #[test]
    fn reads_an_anthropic_request() {
        let request = recorded(
            Wire::Anthropic,
            json!({
                "model": "claude-x",
                "system": [{"type": "text", "text": "be kind"}],
                "messages": [
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "reply", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
                ],
                "tools": [{"name": "reply", "input_schema": {}}, {"name": "skip", "input_schema": {}}]
            }),
        );
        assert!(!request.stream);
        assert_eq!(request.last_user_text().as_deref(), Some("hello"));
        assert_eq!(request.system_text().as_deref(), Some("be kind"));
        assert_eq!(request.tool_names(), vec!["reply", "skip"]);
        assert!(request.has_tool_result());
    }

    #[test]
    fn keeps_a_body_that_is_not_json() {
        let request = RecordedRequest::new(Wire::OpenAi, "/v1/chat/completions", &HeaderMap::new(), b"nope");
        assert_eq!(request.body, Value::String("nope".into()));
        assert_eq!(request.last_user_text(), None);
        assert!(!request.has_tool_result());
        assert!(request.tool_names().is_empty());
    }
}

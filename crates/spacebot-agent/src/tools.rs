//! The channel's tools and the checks on plain-text fallback replies.

use serde::Deserialize;
use serde_json::json;
use spacebot_core::ToolSpec;

/// The tool that sends a message to the conversation and ends the turn.
pub const REPLY_TOOL: &str = "reply";
/// The tool that ends the turn without a message.
pub const SKIP_TOOL: &str = "skip";

/// The tools a channel offers the model, in a fixed order so requests are byte-stable.
pub(crate) fn channel_tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec::new(
            REPLY_TOOL,
            "Send a message to the conversation. Ends your turn.",
            json!({
                "type": "object",
                "properties": {
                    "content": { "type": "string", "description": "The message to send." }
                },
                "required": ["content"]
            }),
        ),
        ToolSpec::new(
            SKIP_TOOL,
            "Send nothing this turn, when the message needs no answer. Ends your turn.",
            json!({
                "type": "object",
                "properties": {
                    "reason": { "type": "string", "description": "Why no reply is needed (for logs)." }
                }
            }),
        ),
    ]
}

#[derive(Debug, Deserialize)]
struct ReplyArgs {
    #[serde(alias = "text", alias = "message")]
    content: String,
}

/// The message of a `reply` call, or the error text to show the model.
pub(crate) fn parse_reply(arguments: &serde_json::Value) -> Result<String, String> {
    // Some models send the arguments object as a JSON string.
    let parsed = match arguments {
        serde_json::Value::String(raw) => serde_json::from_str::<ReplyArgs>(raw),
        other => serde_json::from_value::<ReplyArgs>(other.clone()),
    };
    match parsed {
        Ok(args) if args.content.trim().is_empty() => {
            Err("`reply` needs a non-empty `content`; call `skip` to send nothing.".to_owned())
        }
        Ok(args) => Ok(args.content),
        Err(error) => Err(format!("invalid arguments for `reply`: {error}; expected {{\"content\": \"...\"}}.")),
    }
}

/// Why plain model text must not be sent as a fallback reply, if it must not.
pub(crate) fn fallback_refusal(text: &str) -> Option<&'static str> {
    if looks_like_tool_syntax(text) {
        Some("it looks like a tool call written as text")
    } else if contains_secret(text) {
        Some("it appears to contain a secret")
    } else {
        None
    }
}

fn looks_like_tool_syntax(text: &str) -> bool {
    let trimmed = text.trim();
    if ["<tool_call", "<function", "<|tool", "[TOOL_CALLS]", "```tool"].iter().any(|tag| trimmed.contains(tag)) {
        return true;
    }
    // A bare JSON object naming a tool, as weak models emit when they mean to call one.
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(map)) => {
            map.contains_key("name") && (map.contains_key("arguments") || map.contains_key("parameters"))
                || map.contains_key("tool")
                || map.contains_key("function")
        }
        _ => false,
    }
}

fn contains_secret(text: &str) -> bool {
    const PREFIXES: [(&str, usize); 7] =
        [("sk-", 20), ("sk-ant-", 20), ("xoxb-", 10), ("xoxp-", 10), ("xapp-", 10), ("ghp_", 20), ("github_pat_", 20)];
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY") {
        return true;
    }
    text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | '(' | ')')).any(|word| {
        PREFIXES.iter().any(|(prefix, min_len)| {
            word.strip_prefix(prefix).is_some_and(|rest| {
                rest.len() >= *min_len && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_arguments_are_parsed_leniently_but_checked() {
        assert_eq!(parse_reply(&json!({"content": "hi"})), Ok("hi".to_owned()));
        assert_eq!(parse_reply(&json!({"text": "hi"})), Ok("hi".to_owned()));
        assert_eq!(parse_reply(&json!("{\"content\": \"hi\"}")), Ok("hi".to_owned()));
        assert!(parse_reply(&json!({"content": "  "})).is_err());
        assert!(parse_reply(&json!({"body": "hi"})).unwrap_err().contains("expected"));
    }

    #[test]
    fn ordinary_text_is_a_valid_fallback() {
        assert_eq!(fallback_refusal("Sure, the meeting is at 3pm."), None);
        assert_eq!(fallback_refusal("{\"weather\": \"sunny\"}"), None);
        assert_eq!(fallback_refusal("use the sk- prefix for keys"), None);
    }

    #[test]
    fn tool_syntax_is_not_sent() {
        assert!(fallback_refusal("{\"name\": \"reply\", \"arguments\": {\"content\": \"x\"}}").is_some());
        assert!(fallback_refusal("<tool_call>{\"name\":\"reply\"}</tool_call>").is_some());
    }

    #[test]
    fn secrets_are_not_sent() {
        assert!(fallback_refusal("your key is sk-abcdefghijklmnopqrstuvwx").is_some());
        assert!(fallback_refusal("token: xoxb-1234567890-abcdef").is_some());
        assert!(fallback_refusal("-----BEGIN RSA PRIVATE KEY-----\nabc").is_some());
    }
}

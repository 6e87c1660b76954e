//! Translation between the core chat types and rig's completion types.
//!
//! rig encodes the result for each wire: for OpenAI Chat Completions an assistant message with
//! `tool_calls` followed by one `role: "tool"` message per result (with `tool_call_id`); for
//! Anthropic Messages `tool_use` blocks in the assistant turn and `tool_result` blocks in the
//! next user turn. Consecutive tool results (and a user message right after them) are grouped
//! into one rig user message, so Anthropic sees every result of a turn in the single user turn
//! that must follow it.

use rig_core::completion::{CompletionRequest, CompletionResponse};
use rig_core::message::{
    AssistantContent, AssistantMessage, CallId, ImageMediaType, Message, ToolFunction, ToolName, ToolResultContent,
    UserContent,
};

use spacebot_core::{ChatMessage, ChatRequest, ChatResponse, ToolCall, Usage};

/// Why a core request can't be expressed as a rig request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    /// A tool or tool call with an empty name.
    #[error("a tool name is empty")]
    EmptyToolName,
    /// Nothing to send: no message carries content.
    #[error("the request has no message with content")]
    NoMessages,
}

/// Builds rig's request from ours. `default_max_tokens` applies when the request sets none.
pub(crate) fn to_rig_request(
    request: &ChatRequest,
    default_max_tokens: u32,
) -> Result<CompletionRequest, ConvertError> {
    let mut history = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        history.push(Message::system(request.system.clone()));
    }
    let mut pending_user: Vec<UserContent> = Vec::new();
    for message in &request.messages {
        match message {
            ChatMessage::User { content, images, .. } => {
                if !content.is_empty() {
                    pending_user.push(UserContent::text(content.clone()));
                }
                // After the text that introduces them; rig writes an OpenAI `image_url` part (a
                // data URL) or an Anthropic base64 image block.
                for image in images {
                    pending_user.push(UserContent::image_base64(
                        base64(&image.data),
                        image_media_type(&image.media_type),
                        None,
                    ));
                }
                // A plain user message closes the turn; tool results before it share it.
                flush_user(&mut history, &mut pending_user);
            }
            ChatMessage::ToolResult { call_id, name, content } => {
                let name = ToolName::new(name.clone()).map_err(|_| ConvertError::EmptyToolName)?;
                pending_user.push(UserContent::tool_result(
                    CallId::from_wire(call_id.clone()),
                    name,
                    vec![ToolResultContent::text(content.clone())],
                ));
            }
            ChatMessage::Assistant { content, tool_calls } => {
                flush_user(&mut history, &mut pending_user);
                let mut parts = Vec::with_capacity(tool_calls.len() + 1);
                if !content.is_empty() {
                    parts.push(AssistantContent::text(content.clone()));
                }
                for call in tool_calls {
                    let name = ToolName::new(call.name.clone()).map_err(|_| ConvertError::EmptyToolName)?;
                    parts.push(AssistantContent::ToolCall(rig_core::message::ToolCall::from_wire(
                        call.id.clone(),
                        ToolFunction::new(name, call.arguments.clone()),
                    )));
                }
                // An assistant turn with neither text nor calls says nothing; providers reject it.
                if !parts.is_empty() {
                    history.push(Message::Assistant(AssistantMessage::new(parts)));
                }
            }
            // `ChatMessage` is non-exhaustive; a future variant is skipped until it is mapped.
            _ => {}
        }
    }
    flush_user(&mut history, &mut pending_user);
    if !history.iter().any(|message| !matches!(message, Message::System { .. })) {
        return Err(ConvertError::NoMessages);
    }

    let tools = request
        .tools
        .iter()
        .map(|tool| {
            let name = ToolName::new(tool.name.clone()).map_err(|_| ConvertError::EmptyToolName)?;
            Ok(rig_core::completion::ToolDefinition::new(name, tool.description.clone(), tool.parameters.clone()))
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;

    // `CompletionRequest` is non-exhaustive: start from one message, then set the public fields.
    let mut rig_request = CompletionRequest::new(Message::user(""));
    rig_request.chat_history = history;
    rig_request.tools = tools;
    rig_request.temperature = request.temperature;
    rig_request.max_tokens = Some(u64::from(request.max_tokens.unwrap_or(default_max_tokens)));
    Ok(rig_request)
}

/// rig's name for an image MIME type; `None` for a type no provider here reads (the agent only
/// passes the ones `ImagePart::MEDIA_TYPES` lists).
fn image_media_type(media_type: &str) -> Option<ImageMediaType> {
    match media_type {
        "image/png" => Some(ImageMediaType::PNG),
        "image/jpeg" | "image/jpg" => Some(ImageMediaType::JPEG),
        "image/gif" => Some(ImageMediaType::GIF),
        "image/webp" => Some(ImageMediaType::WEBP),
        _ => None,
    }
}

/// Standard base64 with padding (RFC 4648), as both wires carry image bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                // Six bits index the 64-entry alphabet.
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn flush_user(history: &mut Vec<Message>, pending: &mut Vec<UserContent>) {
    if !pending.is_empty() {
        history.push(Message::User { content: std::mem::take(pending) });
    }
}

/// Converts one rig tool call. Arguments that were not a JSON object are passed on as the raw
/// string the model sent, so the tool rejects them visibly instead of running with `{}`.
pub(crate) fn from_rig_tool_call(call: &rig_core::message::ToolCall) -> ToolCall {
    let arguments = match &call.function.invalid_arguments {
        Some(raw) => serde_json::Value::String(raw.clone()),
        None => call.function.arguments_value(),
    };
    ToolCall::new(call.id.wire().into_owned(), call.function.name.as_str(), arguments)
}

/// Converts rig's response: text parts joined, tool calls in order, token counts.
pub(crate) fn from_rig_response(response: &CompletionResponse) -> ChatResponse {
    let tool_calls = response.tool_calls().map(from_rig_tool_call).collect();
    let usage = Usage::new(response.usage.input_tokens.unwrap_or(0), response.usage.output_tokens.unwrap_or(0));
    ChatResponse::text(response.text()).with_tool_calls(tool_calls).with_usage(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use spacebot_core::ToolSpec;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn tool_results_and_a_following_user_message_share_one_user_turn() {
        let request = ChatRequest::new(
            "be brief",
            vec![
                ChatMessage::user("add 2 and 3"),
                ChatMessage::assistant_with_calls(
                    "",
                    vec![
                        ToolCall::new("call_1", "add", json!({"a": 2, "b": 3})),
                        ToolCall::new("call_2", "add", json!({"a": 1, "b": 1})),
                    ],
                ),
                ChatMessage::tool_result("call_1", "add", "5"),
                ChatMessage::tool_result("call_2", "add", "2"),
                ChatMessage::user("thanks"),
            ],
        )
        .with_tools(vec![ToolSpec::new("add", "adds", json!({"type": "object"}))]);
        let rig = to_rig_request(&request, 100).unwrap();
        assert_eq!(rig.chat_history.len(), 4, "{:#?}", rig.chat_history);
        assert!(matches!(&rig.chat_history[0], Message::System { content } if content == "be brief"));
        let Message::Assistant(turn) = &rig.chat_history[2] else { panic!("expected assistant") };
        assert_eq!(turn.tool_calls().count(), 2);
        let Message::User { content } = &rig.chat_history[3] else { panic!("expected user") };
        assert_eq!(content.len(), 3);
        assert!(matches!(&content[0], UserContent::ToolResult(r) if r.call.wire() == "call_1"));
        assert!(matches!(&content[2], UserContent::Text(t) if t.text == "thanks"));
        assert_eq!(rig.max_tokens, Some(100));
        assert_eq!(rig.tools.len(), 1);
    }

    #[test]
    fn empty_messages_are_skipped_and_an_empty_history_is_refused() {
        let request = ChatRequest::new("", vec![ChatMessage::user(""), ChatMessage::assistant("")]);
        assert!(matches!(to_rig_request(&request, 1), Err(ConvertError::NoMessages)));
        let request = ChatRequest::new("", vec![ChatMessage::user("hi")]).with_max_tokens(7);
        let rig = to_rig_request(&request, 1).unwrap();
        assert_eq!(rig.chat_history.len(), 1);
        assert_eq!(rig.max_tokens, Some(7));
    }

    #[test]
    fn empty_tool_names_are_refused() {
        let request = ChatRequest::new("", vec![ChatMessage::user("hi")]).with_tools(vec![ToolSpec::new(
            "",
            "nameless",
            json!({}),
        )]);
        assert!(matches!(to_rig_request(&request, 1), Err(ConvertError::EmptyToolName)));
    }

    #[test]
    fn non_object_arguments_reach_the_tool_as_the_raw_text() {
        let name = ToolName::new("reply").unwrap();
        let call = rig_core::message::ToolCall::from_wire("c1", ToolFunction::parse(name.clone(), "[1, 2]"));
        assert_eq!(from_rig_tool_call(&call).arguments, json!("[1, 2]"));
        let call = rig_core::message::ToolCall::from_wire("c2", ToolFunction::parse(name, r#"{"text":"hi"}"#));
        let converted = from_rig_tool_call(&call);
        assert_eq!(converted.arguments, json!({"text": "hi"}));
        assert_eq!(converted.id, "c2");
        assert_eq!(converted.name, "reply");
    }
}

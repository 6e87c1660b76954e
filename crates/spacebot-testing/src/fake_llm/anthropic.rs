//! The Anthropic messages wire format of the fake model server (dev-only test support).

use serde_json::{Value, json};

use super::Answer;
use crate::chunk;

/// How many fragments a streamed tool call's input arrives in.
const INPUT_FRAGMENTS: usize = 3;

/// The whole answer as a `message` object.
pub(super) fn message(answer: &Answer) -> Value {
    let mut content = Vec::with_capacity(answer.calls.len() + 1);
    if has_text_block(answer) {
        content.push(json!({ "type": "text", "text": answer.text }));
    }
    content.extend(answer.calls.iter().enumerate().map(|(index, (name, input))| {
        json!({ "type": "tool_use", "id": tool_use_id(answer, index), "name": name, "input": input })
    }));
    json!({
        "id": message_id(answer),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": stop_reason(answer),
        "stop_sequence": null,
        "usage": { "input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens },
    })
}

/// The answer as server-sent events: `message_start`, a `ping`, each content block as
/// `content_block_start`, deltas (`text_delta` words, `input_json_delta` fragments) and
/// `content_block_stop`, then `message_delta` with the stop reason and usage, and `message_stop`.
pub(super) fn events(answer: &Answer) -> Vec<String> {
    let start = json!({
        "id": message_id(answer),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": { "input_tokens": answer.input_tokens, "output_tokens": 1 },
    });
    let mut events = vec![json!({ "type": "message_start", "message": start }), json!({ "type": "ping" })];
    let mut next_index = 0;
    let mut block = |opening: Value, deltas: Vec<Value>| {
        let index = next_index;
        next_index += 1;
        events.push(json!({ "type": "content_block_start", "index": index, "content_block": opening }));
        events.extend(
            deltas.into_iter().map(|delta| json!({ "type": "content_block_delta", "index": index, "delta": delta })),
        );
        events.push(json!({ "type": "content_block_stop", "index": index }));
    };
    if has_text_block(answer) {
        let deltas = chunk::words(&answer.text).map(|piece| json!({ "type": "text_delta", "text": piece })).collect();
        block(json!({ "type": "text", "text": "" }), deltas);
    }
    for (index, (name, input)) in answer.calls.iter().enumerate() {
        let input = input.to_string();
        let deltas = chunk::fragments(&input, INPUT_FRAGMENTS)
            .into_iter()
            .map(|fragment| json!({ "type": "input_json_delta", "partial_json": fragment }))
            .collect();
        block(json!({ "type": "tool_use", "id": tool_use_id(answer, index), "name": name, "input": {} }), deltas);
    }
    events.push(json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason(answer), "stop_sequence": null },
        "usage": { "output_tokens": answer.output_tokens },
    }));
    events.push(json!({ "type": "message_stop" }));
    events
        .iter()
        .map(|event| format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap_or("unknown")))
        .collect()
}

/// An Anthropic-style error body for an HTTP status.
pub(super) fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

/// A text block is sent when there is text, or when there is nothing else.
fn has_text_block(answer: &Answer) -> bool {
    !answer.text.is_empty() || answer.calls.is_empty()
}

fn stop_reason(answer: &Answer) -> &'static str {
    if answer.calls.is_empty() { "end_turn" } else { "tool_use" }
}

fn message_id(answer: &Answer) -> String {
    format!("msg_fake{}", answer.seq)
}

fn tool_use_id(answer: &Answer, index: usize) -> String {
    format!("toolu_{}_{index}", answer.seq)
}

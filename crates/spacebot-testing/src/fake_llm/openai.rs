//! The OpenAI chat-completions wire format of the fake model server (dev-only test support).

use serde_json::{Value, json};

use super::Answer;
use crate::chunk;

/// The whole answer as a `chat.completion` object.
pub(super) fn completion(answer: &Answer) -> Value {
    let mut message = json!({ "role": "assistant", "content": content(answer), "refusal": null });
    if !answer.calls.is_empty() {
        let calls: Vec<Value> = answer
            .calls
            .iter()
            .enumerate()
            .map(|(index, (name, arguments))| {
                json!({
                    "id": call_id(answer, index),
                    "type": "function",
                    "function": { "name": name, "arguments": arguments.to_string() },
                })
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": response_id(answer),
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(answer) }],
        "usage": usage(answer),
        "system_fingerprint": null,
    })
}

/// The answer as server-sent events: a role chunk, text in word-sized deltas, each tool call
/// opened with its id and name and then its arguments in fragments, a finish chunk, a usage chunk
/// with no choices, and `[DONE]`.
pub(super) fn events(answer: &Answer) -> Vec<String> {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": response_id(answer),
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        })
    };
    let mut frames = vec![chunk(json!({ "role": "assistant", "content": "" }), Value::Null)];
    frames.extend(chunk::words(&answer.text).map(|piece| chunk(json!({ "content": piece }), Value::Null)));
    for (index, (name, arguments)) in answer.calls.iter().enumerate() {
        let opening = json!({
            "index": index,
            "id": call_id(answer, index),
            "type": "function",
            "function": { "name": name, "arguments": "" },
        });
        frames.push(chunk(json!({ "tool_calls": [opening] }), Value::Null));
        let arguments = arguments.to_string();
        frames.extend(chunk::fragments(&arguments, chunk::ARGUMENT_FRAGMENTS).into_iter().map(|fragment| {
            let delta = json!({ "index": index, "function": { "arguments": fragment } });
            chunk(json!({ "tool_calls": [delta] }), Value::Null)
        }));
    }
    frames.push(chunk(json!({}), finish_reason(answer).into()));
    let mut usage_frame = chunk(Value::Null, Value::Null);
    usage_frame["choices"] = json!([]);
    usage_frame["usage"] = usage(answer);
    frames.push(usage_frame);
    frames.iter().map(|frame| format!("data: {frame}\n\n")).chain([String::from("data: [DONE]\n\n")]).collect()
}

/// An OpenAI-style error body for an HTTP status.
pub(super) fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("unsupported_country_region_territory")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

/// The message content: `null` when the answer is only tool calls.
fn content(answer: &Answer) -> Value {
    if answer.text.is_empty() && !answer.calls.is_empty() { Value::Null } else { answer.text.clone().into() }
}

fn finish_reason(answer: &Answer) -> &'static str {
    if answer.calls.is_empty() { "stop" } else { "tool_calls" }
}

fn usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    })
}

fn response_id(answer: &Answer) -> String {
    format!("chatcmpl-fake{}", answer.seq)
}

fn call_id(answer: &Answer, index: usize) -> String {
    format!("call_{}_{index}", answer.seq)
}

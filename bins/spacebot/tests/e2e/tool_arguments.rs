//! Tool arguments work in both shapes for every tool, through the real binary and the real
//! provider client: as an object, and as that object encoded as a JSON string (some
//! OpenAI-compatible servers encode them twice). The channel's tools, a branch's `memory_save`
//! and a worker's `shell` and `set_status` all read them alike.
//!
//! On this wire path the provider client unwraps one level of string encoding itself, so these
//! tests pin the end-to-end behaviour; the one parser every tool shares
//! (`spacebot_core::parse_tool_args`) is what makes a string-encoded object work when a model
//! hands it over as is (in-process models do), which the agent's tests cover.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, RecordedRequest};

use crate::daemon::{Daemon, Home, PATIENCE, openai_config};

/// A call, with its arguments as an object or, `encoded`, as a JSON string inside the wire
/// format's string.
fn shaped(encoded: bool, name: &str, arguments: Value) -> (String, Value) {
    let arguments = if encoded { Value::String(arguments.to_string()) } else { arguments };
    (name.to_owned(), arguments)
}

fn last_tool_result(request: &RecordedRequest) -> Option<String> {
    let last = request.messages().last()?;
    (last["role"] == "tool").then(|| last["content"].as_str().unwrap_or_default().to_owned())
}

fn script(encoded: bool, request: &RecordedRequest) -> FakeReply {
    let tools = request.tool_names();
    let has = |name: &str| tools.iter().any(|tool| tool == name);
    let call = |name: &str, arguments: Value| FakeReply::tool_calls(vec![shaped(encoded, name, arguments)]);
    if has("set_status") {
        // The worker: run a command, then declare the outcome.
        return match last_tool_result(request) {
            None => call("shell", json!({ "command": "echo proof-of-work" })),
            Some(output) => call("set_status", json!({ "status": format!("ran it: {output}"), "kind": "done" })),
        };
    }
    if has("memory_save") {
        // The branch: save, then conclude.
        return match last_tool_result(request) {
            None => call("memory_save", json!({ "content": "Alice drinks oolong", "memory_type": "preference" })),
            Some(result) => FakeReply::text(format!("memory_save said: {result}")),
        };
    }
    let text = request.last_user_text().unwrap_or_default();
    if text.starts_with("[background results]") {
        return call("reply", json!({ "content": "Background work reported." }));
    }
    if last_tool_result(request).is_some() {
        return call("reply", json!({ "content": "On it." }));
    }
    FakeReply::tool_calls(vec![
        shaped(encoded, "branch", json!({ "task": "remember that Alice drinks oolong" })),
        shaped(encoded, "spawn_worker", json!({ "task": "run the proof command" })),
    ])
}

/// The results the model got back for calls of `tool`.
fn results_of(requests: &[RecordedRequest], tool: &str) -> Vec<String> {
    let mut results = Vec::new();
    for request in requests {
        let messages = request.messages();
        for message in messages {
            let Some(calls) = message["tool_calls"].as_array() else { continue };
            for call in calls.iter().filter(|call| call["function"]["name"] == tool) {
                let result = messages.iter().find(|m| m["role"] == "tool" && m["tool_call_id"] == call["id"]);
                if let Some(text) = result.and_then(|m| m["content"].as_str()) {
                    results.push(text.to_owned());
                }
            }
        }
    }
    results.sort();
    results.dedup();
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_sent_as_an_object_work_for_every_tool() {
    every_tool_reads(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_sent_as_a_json_string_work_for_every_tool() {
    every_tool_reads(true).await;
}

async fn every_tool_reads(encoded: bool) {
    let model = FakeLlmServer::start().await;
    model.respond_with(move |request| script(encoded, request));
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let daemon = Daemon::start(&home).await;

    daemon.say("main", "tea", "alice", "remember my tea and run the proof").await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let requests = model.requests();
        let relayed = requests.iter().filter_map(RecordedRequest::last_user_text).any(|text| {
            text.starts_with("[background results]") && text.contains("] done: ran it") && text.contains("Saved as")
        });
        if relayed && daemon.messages("main", "tea").await.iter().any(|m| m["text"] == "Background work reported.") {
            break;
        }
        assert!(Instant::now() < deadline, "the work did not finish; requests: {:#?}", model.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let requests = model.requests();
    for tool in ["branch", "spawn_worker"] {
        let results = results_of(&requests, tool);
        assert!(results.iter().all(|r| r.contains("started")), "{tool}: {results:?}");
    }
    // The worker's `set_status` declared `done` (a worker whose outcome can't be read fails) and the
    // branch's conclusion carries `memory_save`'s answer: the wait above saw both relayed.
    let saved = results_of(&requests, "memory_save");
    assert!(saved.iter().all(|r| r.starts_with("Saved as")), "memory_save: {saved:?}");
    let shell = results_of(&requests, "shell");
    assert!(shell.iter().all(|r| r.contains("exit code: 0") && r.contains("proof-of-work")), "shell: {shell:?}");
    let answers: Vec<String> = daemon
        .messages("main", "tea")
        .await
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(answers.contains(&"On it.".to_owned()), "the encoded reply was sent: {answers:?}");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

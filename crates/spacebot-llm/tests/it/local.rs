//! The in-process model (cargo feature `local-model`) on the real SmolLM2-135M-Instruct file.
//!
//! These tests need the file: `SPACEBOT_TEST_CHAT_MODEL` names it
//! (`export SPACEBOT_TEST_CHAT_MODEL="$(scripts/fetch-models chat)"`; `.ci/run` does it), else
//! the default place `scripts/fetch-models` puts it. They fail, saying so, when it is in
//! neither. Answers are kept short: every token costs CPU time.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;

use spacebot_core::{ChatMessage, ChatRequest, LanguageModel, StreamEvent};
use spacebot_llm::{LocalModel, LocalSettings, ProviderConfig, build_model};

fn model_path() -> PathBuf {
    spacebot_testing::models::chat_model_file()
}

fn model(max_tokens: u32) -> LocalModel {
    LocalModel::new("local/smollm2", LocalSettings::new(model_path()).with_max_tokens(max_tokens))
        .unwrap_or_else(|error| panic!("{error}"))
}

fn ask(question: &str) -> ChatRequest {
    ChatRequest::new("You are a helpful assistant. Answer briefly.", vec![ChatMessage::user(question)])
}

#[tokio::test]
async fn the_file_is_inspected_without_loading_it() {
    let model = model(8);
    let info = model.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.template, "chatml");
    assert_eq!(info.context_length, 8192);
    assert_eq!(model.context_window(), 4096, "capped: a CPU reads long prompts slowly");
    assert!(!model.is_loaded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_streams_token_by_token_and_ends_with_the_whole_text() {
    let model = model(12);
    let mut stream = model.stream(ask("What is the capital of France?")).await.unwrap();
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::TextDelta(text) => deltas.push(text),
            StreamEvent::Done(response) => done = Some(response),
            other => panic!("unexpected event {other:?}"),
        }
    }
    let done = done.expect("the stream ends with Done");
    assert!(deltas.len() > 1, "several deltas, not one block: {deltas:?}");
    assert_eq!(deltas.concat().trim(), done.content);
    assert!(done.content.contains("Paris"), "{}", done.content);
    assert!(done.usage.input_tokens > 10 && done.usage.output_tokens <= 12, "{:?}", done.usage);
    assert!(model.is_loaded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_limit_bounds_an_answer() {
    let model = model(5);
    let answer = model.complete(ask("Write a long poem about the sea.")).await.unwrap();
    assert_eq!(answer.usage.output_tokens, 5, "{answer:?}");
    let answer = model.complete(ask("Write a long poem about the sea.").with_max_tokens(2)).await.unwrap();
    assert_eq!(answer.usage.output_tokens, 2, "a request may ask for fewer: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_waits_for_the_first_and_a_dropped_stream_frees_the_model() {
    let model = Arc::new(model(200));
    let mut first = model.stream(ask("Write a long poem about the sea.")).await.unwrap();
    assert!(matches!(first.next().await, Some(Ok(StreamEvent::TextDelta(_)))));

    // The second asks while the first is generating: it waits for the model.
    let second = tokio::spawn({
        let model = Arc::clone(&model);
        async move { model.complete(ask("Say hello.").with_max_tokens(3)).await }
    });
    assert!(matches!(first.next().await, Some(Ok(StreamEvent::TextDelta(_)))));
    assert!(!second.is_finished(), "the second request got the model while the first generated");

    // Dropping the first stream (what `/stop` does) ends its generation at the next token, so
    // the second is answered long before 200 tokens would have taken.
    let started = std::time::Instant::now();
    drop(first);
    let answer = second.await.unwrap().unwrap();
    assert!(!answer.content.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[tokio::test]
async fn build_model_makes_a_local_provider_and_names_a_missing_file() {
    let config = ProviderConfig::local(model_path()).with_max_tokens(4);
    let model = build_model("local", &config, "smollm2").unwrap();
    assert_eq!(model.name(), "local/smollm2");
    let error = build_model("local", &ProviderConfig::local("/nowhere/model.gguf"), "x").err().unwrap();
    assert_eq!(
        error.to_string(),
        "the local model file /nowhere/model.gguf does not exist (fetch it with `scripts/fetch-models chat`)"
    );
}

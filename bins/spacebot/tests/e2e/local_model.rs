//! The embedded default: no config at all, the real SmolLM2-135M-Instruct file in the models
//! directory, and the daemon answers from the in-process model, previewing each answer on the
//! event stream as it is generated.
//!
//! The file comes from `SPACEBOT_TEST_CHAT_MODEL` (`export SPACEBOT_TEST_CHAT_MODEL="$(scripts/fetch-models chat)"`;
//! `.ci/run` does it), else the default place `scripts/fetch-models` puts it; the tests fail,
//! saying so, when it is in neither. Answers are held to a few tokens
//! (`SPACEBOT_LOCAL_MAX_TOKENS`): a debug build generates a few tokens a second.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::Daemon;

/// How long a local answer may take on a busy debug build.
const LOCAL_PATIENCE: Duration = Duration::from_secs(300);

/// Where the chat model lies in a models directory.
const MODEL_FILE: &str = "SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A models directory holding only the chat model (so the embedder default is left out and the
/// test stays quick), as `SPACEBOT_MODELS_DIR` for the daemon.
fn models_dir() -> tempfile::TempDir {
    let file = spacebot_testing::models::chat_model_file();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("SmolLM2-135M-Instruct")).expect("model dir");
    std::os::unix::fs::symlink(&file, dir.path().join(MODEL_FILE)).expect("link the model");
    dir
}

async fn start(models: &Path, data: &Path, max_tokens: &str) -> Daemon {
    let models = models.to_str().expect("utf-8 path");
    Daemon::start_unconfigured(data, &[("SPACEBOT_MODELS_DIR", models), ("SPACEBOT_LOCAL_MAX_TOKENS", max_tokens)])
        .await
}

/// Everything `/api/events` sends, collected as it arrives.
fn follow_events(daemon: &Daemon) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(String::new()));
    let request = daemon.http.get(format!("{}/api/events", daemon.base));
    let task = tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            let Ok(mut response) = request.send().await else { return };
            while let Ok(Some(chunk)) = response.chunk().await {
                seen.lock().expect("events lock").push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    });
    (seen, task)
}

/// The texts of the responses sent to `conversation`, from the SSE stream so far.
fn sent_texts(events: &Mutex<String>, conversation: &str) -> Vec<String> {
    let events = events.lock().expect("events lock").clone();
    events
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .filter(|event| event["type"] == "response_sent" && event["conversation"] == conversation)
        .filter_map(|event| event["response"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// The `reply_delta` events of `conversation` sent before its first response: whether each was
/// tentative, and the text they make together.
fn previewed(events: &Mutex<String>, conversation: &str) -> (Vec<bool>, String) {
    let events = events.lock().expect("events lock").clone();
    let mut flags = Vec::new();
    let mut text = String::new();
    let parsed = events.lines().filter_map(|line| line.strip_prefix("data:")).filter_map(|data| {
        serde_json::from_str::<Value>(data.trim()).ok().filter(|event| event["conversation"] == conversation)
    });
    for event in parsed {
        match event["type"].as_str() {
            Some("reply_delta") => {
                flags.push(event["tentative"].as_bool().unwrap_or(true));
                text.push_str(event["text"].as_str().unwrap_or_default());
            }
            Some("response_sent") if event["response"]["type"] == "text" => break,
            _ => {}
        }
    }
    (flags, text)
}

/// `(prompt tokens, reused tokens)` of every local generation so far, in order, from the
/// daemon's `local generation done` log lines.
fn generations(daemon: &mut Daemon) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> u64 {
        let start = line.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 1;
        line[start..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("a number")
    };
    daemon.logs_so_far();
    daemon
        .log_lines
        .iter()
        .filter(|line| line.contains("local generation done"))
        .map(|line| (field(line, "prompt_tokens"), field(line, "reused_tokens")))
        .collect()
}

async fn wait_for_text(events: &Mutex<String>, conversation: &str) -> String {
    let deadline = Instant::now() + LOCAL_PATIENCE;
    loop {
        if let Some(text) = sent_texts(events, conversation).into_iter().next() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no answer in {conversation}; events:\n{}",
            events.lock().expect("events lock")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_config_the_local_model_answers_and_a_second_conversation_waits_its_turn() {
    let models = models_dir();
    let data = tempfile::tempdir().expect("data dir");
    let mut daemon = start(models.path(), data.path(), "12").await;
    daemon.wait_for_log("local model SmolLM2-135M: small, for trying things out", Duration::from_secs(5)).await;

    let status: Value =
        daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap().json().await.unwrap();
    let notices = status["notices"].to_string();
    assert!(notices.contains("local model SmolLM2-135M: small, for trying things out"), "{status}");
    assert!(notices.contains("llm.providers"), "it says how to configure a hosted provider: {status}");

    let (events, follower) = follow_events(&daemon);
    // The SSE stream is open before the messages go in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_kib = daemon.status_kib("RssAnon");
    daemon.say("main", "first", "alice", "What is the capital of France?").await;
    daemon.say("main", "second", "bob", "Say hello.").await;

    let first = wait_for_text(&events, "webhook:first").await;
    let second = wait_for_text(&events, "webhook:second").await;
    for text in [&first, &second] {
        assert!(!text.trim().is_empty());
        assert!(!text.contains("no model configured") && !text.contains("failed"), "an answer, not an error: {text}");
    }
    // The answers were previewed as the model wrote them, for sure (the local model answers in
    // text, so its text is the reply): every word but the last settles before the answer is sent.
    let mut previews = 0;
    for (conversation, text) in [("webhook:first", &first), ("webhook:second", &second)] {
        let (flags, shown) = previewed(&events, conversation);
        assert!(text.trim().starts_with(&shown), "{conversation}: previewed {shown:?}, answered {text:?}");
        assert!(flags.iter().all(|tentative| !tentative), "{conversation}: {flags:?}");
        if text.split_whitespace().count() >= 2 {
            assert!(!shown.is_empty(), "{conversation}: an answer of several words was not previewed: {text:?}");
            previews += 1;
        }
    }
    assert!(previews > 0, "no answer had two words to preview: {first:?}, {second:?}");
    // One generation at a time: whichever came second waited for the model.
    daemon.wait_for_log("this one waits its turn", Duration::from_secs(5)).await;
    let answers = daemon.wait_for_answers("main", "first", 1).await;
    assert_eq!(answers[0]["text"].as_str().map(str::trim), Some(first.trim()), "{answers:?}");

    // The next turn of the first conversation: the model's attention cache still holds the
    // system prompt the second conversation shares, so the prompt is read from there on.
    daemon.say("main", "first", "alice", "And of Italy?").await;
    daemon.wait_for_answers("main", "first", 2).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let generations = loop {
        let generations = generations(&mut daemon);
        if generations.len() >= 3 || Instant::now() > deadline {
            break generations;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(generations.len(), 3, "{generations:?}");
    let (prompt, reused) = generations[2];
    assert!(reused > prompt / 2, "the third prompt ({prompt} tokens) reused only {reused} cached tokens");
    assert!(generations[1].1 > 0, "two conversations of one agent share their system prompt: {generations:?}");

    // The model's weights are held as they are in the file (quantized), so loading it and
    // answering three times costs the daemon's own memory (pages of its binary aside) the
    // file's size, the attention cache (46 KB a token), the tokenizer and the allocator's
    // share: 126 MiB for the 94 MiB file when this was written. Dequantized token embeddings
    // would add 108 MiB.
    let grown_kib = daemon.status_kib("RssAnon").saturating_sub(idle_kib);
    let file_kib = std::fs::metadata(models.path().join(MODEL_FILE)).expect("the model file").len() / 1024;
    assert!(grown_kib <= file_kib + 56 * 1024, "memory grew by {grown_kib} KiB for a model file of {file_kib} KiB");
    eprintln!("RssAnon: idle {idle_kib} KiB, +{grown_kib} KiB with the model loaded (file {file_kib} KiB)");
    follower.abort();
    let (exit, _) = daemon.stop().await;
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_long_local_generation() {
    let models = models_dir();
    let data = tempfile::tempdir().expect("data dir");
    // Long enough that the answer can't finish before the /stop.
    let mut daemon = start(models.path(), data.path(), "2000").await;
    let (events, follower) = follow_events(&daemon);
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.say("main", "long", "alice", "Write a very long story about a dragon, with many chapters.").await;
    daemon.wait_for_log("local model loaded", LOCAL_PATIENCE).await;
    let stopped_at = Instant::now();
    daemon.say("main", "long", "alice", "/stop").await;
    let answer = wait_for_text(&events, "webhook:long").await;
    assert!(answer.contains("Stopped with /stop"), "{answer}");
    daemon.wait_for_log("local generation cancelled", Duration::from_secs(60)).await;
    assert!(stopped_at.elapsed() < Duration::from_secs(60), "{:?}", stopped_at.elapsed());
    follower.abort();
    let (exit, _) = daemon.stop().await;
    assert!(exit.success());
}

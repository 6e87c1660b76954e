//! Memory through the real binary: a branch saves a memory with `memory_save`, and after a
//! restart a new conversation with the person it came from carries it in the knowledge render
//! (one with someone else does not: it is that person's); the
//! `spacebot memory` commands work on the same file, with the daemon's `[memory]` embedder unless
//! flags override it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config, run_cli};

/// What the scripted model does: the channel branches when asked to remember, the branch saves
/// and concludes, the relay turn and every other turn reply.
pub(crate) fn script(request: &spacebot_testing::RecordedRequest) -> FakeReply {
    let last_is_tool = request.messages().last().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool");
    let text = request.last_user_text().unwrap_or_default();
    if request.tool_names().iter().any(|name| name == "memory_save") {
        if last_is_tool {
            return FakeReply::text("Saved the preference.");
        }
        return FakeReply::tool_call(
            "memory_save",
            json!({ "content": "Alice likes green tea", "memory_type": "preference", "importance": 0.9 }),
        );
    }
    if text.starts_with("[background results]") {
        return FakeReply::tool_call("reply", json!({ "content": "Noted for later." }));
    }
    if last_is_tool {
        return FakeReply::tool_call("reply", json!({ "content": "Thinking about it." }));
    }
    if text.contains("remember") {
        return FakeReply::tool_call("branch", json!({ "task": "save that Alice likes green tea" }));
    }
    FakeReply::tool_call("reply", json!({ "content": "Hello." }))
}

/// Runs `spacebot --config C --data-dir D ARGS` in `home`: whether it succeeded, its stdout and
/// its stderr.
fn memory_cli(home: &Home, args: &[&str]) -> (bool, String, String) {
    let config = home.config_path();
    let data_dir = home.data_dir();
    let mut all =
        vec!["--config", config.to_str().expect("utf-8 path"), "--data-dir", data_dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let out = run_cli(&all, &[], home.dir.path());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_saved_by_a_branch_is_in_the_prompt_after_a_restart() {
    let model = FakeLlmServer::start().await;
    model.respond_with(script);
    let home = Home::new(&openai_config(&model.openai_base_url()));

    let daemon = Daemon::start(&home).await;
    daemon.say("main", "tea", "alice", "please remember that I like green tea").await;
    let deadline = std::time::Instant::now() + crate::daemon::PATIENCE;
    loop {
        let answers = daemon.wait_for_answers("main", "tea", 1).await;
        if answers.iter().any(|m| m.to_string().contains("Noted for later.")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no relay reply: {answers:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let branch_saved = model
        .requests()
        .iter()
        .any(|r| r.tool_names().iter().any(|n| n == "memory_save") && r.messages().iter().any(|m| m["role"] == "tool"));
    assert!(branch_saved, "the branch called memory_save and saw its result");
    let (status, _) = daemon.stop().await;
    assert!(status.success());

    let data_dir = home.data_dir();
    let data_dir = data_dir.to_str().expect("utf-8 path");
    let config = home.config_path();
    let config = config.to_str().expect("utf-8 path");
    let search = run_cli(
        &["--config", config, "--data-dir", data_dir, "memory", "search", "green", "tea"],
        &[],
        home.dir.path(),
    );
    let out = String::from_utf8_lossy(&search.stdout);
    assert!(search.status.success() && out.contains("Alice likes green tea"), "{out}\n{:?}", search.stderr);

    // Saved from Alice's own message, the memory is hers: a new conversation with her carries
    // it, one with Bob does not.
    let before = model.request_count();
    let daemon = Daemon::start(&home).await;
    let system_of = |sender: &'static str, greeting: &'static str| {
        let model = &model;
        let daemon = &daemon;
        async move {
            daemon.say("main", sender, sender, greeting).await;
            daemon.wait_for_answers("main", sender, 1).await;
            model.requests()[before..]
                .iter()
                .find(|r| r.last_user_text().unwrap_or_default().contains(greeting))
                .and_then(|r| r.system_text())
                .expect("the new conversation's request")
        }
    };
    let alice = system_of("alice", "hi from alice").await;
    assert!(alice.contains("## What I remember") && alice.contains("Alice likes green tea"), "{alice}");
    let bob = system_of("bob", "hi from bob").await;
    assert!(!bob.contains("Alice likes green tea"), "{bob}");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_added_from_the_cli_is_in_the_prompt() {
    let model = FakeLlmServer::start().await;
    model.respond_with(script);
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let data_dir = home.data_dir();
    let data_dir = data_dir.to_str().expect("utf-8 path");
    let config = home.config_path();
    let config = config.to_str().expect("utf-8 path");
    let add = run_cli(
        &[
            "--config",
            config,
            "--data-dir",
            data_dir,
            "memory",
            "add",
            "--type",
            "fact",
            "The",
            "deploy",
            "is",
            "on",
            "Fridays",
        ],
        &[],
        home.dir.path(),
    );
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));

    let daemon = Daemon::start(&home).await;
    daemon.say("main", "c1", "carol", "hi").await;
    daemon.wait_for_answers("main", "c1", 1).await;
    let system = model.last_request().and_then(|r| r.system_text()).expect("a request");
    assert!(system.contains("The deploy is on Fridays"), "{system}");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_embeds_with_the_daemons_embedder_so_nobody_reindexes() {
    let model = FakeLlmServer::start().await;
    model.respond_with(script);
    // A non-default dimension count: a CLI that ignored `[memory]` would pick 384 and reindex.
    let home = Home::new(&format!(
        "{}\n[memory]\nembedder = \"hashing\"\nembedding_dimensions = 64\n",
        openai_config(&model.openai_base_url())
    ));
    let cli = |args: &[&str]| {
        let (ok, stdout, stderr) = memory_cli(&home, args);
        assert!(ok, "{args:?}: {stdout}\n{stderr}");
        (stdout, stderr)
    };

    // The daemon creates the store; the CLI adds to it and reads it back, without reindexing.
    let daemon = Daemon::start(&home).await;
    let (status, logs) = daemon.stop().await;
    assert!(status.success(), "{status:?}; logs:\n{}", logs.join("\n"));
    let (_, stderr) = cli(&["memory", "add", "--type", "fact", "The", "deploy", "is", "on", "Fridays"]);
    assert!(!stderr.contains("reindex") && !stderr.contains("warning"), "{stderr}");
    let daemon = Daemon::start(&home).await;
    let (status, logs) = daemon.stop().await;
    assert!(status.success(), "{status:?}; logs:\n{}", logs.join("\n"));
    assert!(!logs.iter().any(|l| l.contains("embedder changed")), "the daemon reindexed:\n{}", logs.join("\n"));
    let (stdout, stderr) = cli(&["memory", "list"]);
    assert!(stdout.contains("The deploy is on Fridays"), "{stdout}");
    assert!(!stderr.contains("reindex") && !stderr.contains("warning"), "{stderr}");
    let (stdout, _) = cli(&["memory", "reindex"]);
    assert!(stdout.contains("reindexed 0 memories"), "{stdout}");

    // A flag that disagrees with `[memory]` still works, with a warning, and the daemon reindexes back.
    let (_, stderr) = cli(&["memory", "--embedding-dimensions", "32", "list"]);
    assert!(stderr.contains("warning") && stderr.contains("reindexing first"), "{stderr}");
    let daemon = Daemon::start(&home).await;
    let (status, logs) = daemon.stop().await;
    assert!(status.success());
    assert!(logs.iter().any(|l| l.contains("embedder changed")), "no reindex back:\n{}", logs.join("\n"));
}

/// The memory CLI for other programs: JSON Lines in (with a tally of what was stored, merged and
/// skipped, and nothing saved from a file with a bad line), JSON out, and a search the running
/// daemon answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_cli_imports_json_lines_prints_json_and_searches_through_the_daemon() {
    let model = FakeLlmServer::start().await;
    model.respond_with(script);
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let config = home.config_path();
    let config = config.to_str().expect("utf-8 path");
    let cli = |args: &[&str]| memory_cli(&home, args);
    let lines = home.dir.path().join("turns.jsonl");
    std::fs::write(
        &lines,
        concat!(
            r#"{"content": "Nate: We adopted a beagle puppy named Mango", "source": "chat:s3:t4", "created_at": "2023-05-08T12:00:00Z"}"#,
            "\n",
            r#"{"content": "Joanna: Mango is such a cute name", "source": "chat:s3:t5", "type": "observation"}"#,
            "\n\n",
            r#"{"content": "Nate: I start as a nurse on Monday", "importance": 0.9}"#,
            "\n",
        ),
    )
    .unwrap();
    let lines = lines.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = cli(&["memory", "import", "--type", "event", lines]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("3 stored, 0 merged into similar memories, 0 skipped"), "{stdout}");
    let (ok, stdout, _) = cli(&["memory", "import", "--type", "event", lines]);
    assert!(ok && stdout.contains("0 stored, 0 merged into similar memories, 3 skipped"), "{stdout}");

    let bad = home.dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"content\": \"Nate: fine line\"}\n{\"text\": \"the wrong field\"}\n").unwrap();
    let (ok, _, stderr) = cli(&["memory", "import", bad.to_str().expect("utf-8 path")]);
    assert!(!ok && stderr.contains("bad.jsonl line 2"), "{stderr}");

    let (ok, stdout, stderr) = cli(&["memory", "list", "--json"]);
    assert!(ok, "{stderr}");
    let listed: Vec<Value> = serde_json::from_str(&stdout).expect("a JSON array");
    assert_eq!(listed.len(), 3, "the bad file saved nothing: {listed:#?}");
    let puppy = listed.iter().find(|m| m["content"].as_str().unwrap_or_default().contains("beagle")).unwrap();
    assert_eq!(puppy["source"], "chat:s3:t4");
    assert_eq!(puppy["kind"], "event");
    assert!(puppy["created_at"].as_str().unwrap_or_default().starts_with("2023-05-08"), "{puppy}");
    let cute = listed.iter().find(|m| m["content"].as_str().unwrap_or_default().contains("cute")).unwrap();
    assert_eq!(cute["kind"], "observation", "a line's own type wins");

    let (ok, stdout, stderr) =
        cli(&["memory", "search", "--json", "--local", "which", "beagle", "did", "Nate", "adopt"]);
    assert!(ok, "{stderr}");
    let hits: Vec<Value> = serde_json::from_str(&stdout).expect("a JSON array");
    assert!(hits[0]["memory"]["content"].as_str().unwrap_or_default().contains("Mango"), "{hits:#?}");
    assert!(hits[0]["score"].as_f64().is_some() && hits[0].get("text_rank").is_some(), "{}", hits[0]);

    // With the daemon running, search asks it: pointed at an empty data dir, the CLI still finds
    // what the daemon holds.
    let daemon = Daemon::start(&home).await;
    let empty = home.dir.path().join("empty");
    let out = run_cli(
        &[
            "--config",
            config,
            "--data-dir",
            empty.to_str().expect("utf-8 path"),
            "--url",
            &daemon.base,
            "memory",
            "search",
            "--json",
            "nurse",
        ],
        &[],
        home.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let hits: Vec<Value> = serde_json::from_str(&stdout).expect("a JSON array");
    assert!(hits[0]["memory"]["content"].as_str().unwrap_or_default().contains("nurse"), "{hits:#?}");
    assert!(!empty.join("agents").exists(), "the CLI did not open a store of its own");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

/// The local embedding model in the daemon: opened at start without its weights, which load on
/// the blocking pool when memory is first used, while the daemon keeps answering; a recall then
/// finds a paraphrase sharing no word with the memory.
///
/// Needs the all-MiniLM-L6-v2 files: `SPACEBOT_TEST_EMBEDDING_MODEL_DIR` (`.ci/run` sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_embedder_loads_on_first_use_while_the_daemon_answers() {
    let Some(model_dir) = std::env::var_os("SPACEBOT_TEST_EMBEDDING_MODEL_DIR").filter(|dir| !dir.is_empty()) else {
        panic!(
            "SPACEBOT_TEST_EMBEDDING_MODEL_DIR is not set: this test needs the all-MiniLM-L6-v2 files; run \
             `export SPACEBOT_TEST_EMBEDDING_MODEL_DIR=\"$(scripts/fetch-models embedding)\"`"
        )
    };
    let model_dir = std::path::PathBuf::from(model_dir);
    let model = FakeLlmServer::start().await;
    model.respond_with(script);
    let config = format!(
        "{}\n[memory]\nembedder = \"local\"\nembedding_model_dir = \"{}\"\n",
        openai_config(&model.openai_base_url()),
        model_dir.display()
    );
    let home = Home::new(&config);
    let (ok, stdout, stderr) = memory_cli(&home, &["memory", "add", "--type", "preference", "Alice drinks green tea"]);
    assert!(ok, "{stdout}\n{stderr}");
    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("loads when the first memory is saved or recalled", Duration::from_secs(10)).await;
    assert!(!daemon.logs_so_far().contains("local embedding model loaded"), "nothing used memory yet");

    let url = format!("{}/api/agents/main/memories?q=what%20beverage%20does%20she%20prefer", daemon.base);
    let recall = tokio::spawn({
        let request = daemon.http.get(url);
        async move {
            let response = request.send().await.expect("recall");
            (Instant::now(), response.json::<Value>().await.expect("JSON"))
        }
    });
    // While the weights load, the daemon answers.
    let health = daemon.http.get(format!("{}/health", daemon.base)).send().await.expect("health");
    let healthy_at = Instant::now();
    assert_eq!(health.status(), 200);
    let (recalled_at, hits) = recall.await.expect("the recall task");
    assert!(
        healthy_at <= recalled_at,
        "health answered before the recall that loads the model: {hits}\n{}",
        daemon.logs_so_far()
    );
    daemon.wait_for_log("local embedding model loaded", Duration::from_secs(60)).await;
    let first = &hits["hits"][0];
    assert_eq!(first["memory"]["content"], "Alice drinks green tea", "{hits:#}");
    assert!(first["vector_rank"].as_u64().is_some(), "found by meaning, sharing no word: {first:#}");
    daemon.stop().await;
}

//! The encrypted secret store through the real binary: `spacebot secrets set` reads the value
//! from stdin, `list` shows names only, a `secret:NAME` config value reaches the provider, the
//! value is scrubbed from what the agent sends, and a missing one is named by `config check`.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::json;
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, spacebot};

/// Not shaped like any well-known key: only the configured secrets can catch it.
const KEY: &str = "store-held-value-4f9a1c";

/// `spacebot --config .. --data-dir .. secrets ARGS`, with `stdin` piped in.
fn secrets(home: &Home, args: &[&str], stdin: &str) -> Output {
    let mut command = spacebot();
    command
        .arg("--config")
        .arg(home.config_path())
        .arg("--data-dir")
        .arg(home.data_dir())
        .arg("secrets")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn spacebot");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("spacebot secrets")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test]
async fn a_stored_secret_reaches_the_provider_and_never_the_chat() {
    let fake = FakeLlmServer::start().await;
    // The model repeats the key it was given: the scrubber must catch it.
    fake.respond_with(|_| {
        FakeReply::tool_call("reply", json!({ "content": format!("my key is {KEY}, keep it safe") }))
    });
    let config = format!(
        r#"
[llm.providers.main]
kind = "openai"
base_url = "{}"
api_key = "secret:PROVIDER_KEY"
timeout_secs = 2
max_retries = 0

[llm.models]
channel = "main/fake-gpt"
"#,
        fake.openai_base_url()
    );
    let home = Home::new(&config);

    // Missing: config check names the key and the secret, and how to add it.
    let check = crate::daemon::run_cli(
        &[
            "--config",
            home.config_path().to_str().expect("utf-8"),
            "--data-dir",
            home.data_dir().to_str().expect("utf-8"),
            "config",
            "check",
        ],
        &[],
        home.dir.path(),
    );
    assert!(!check.status.success());
    let said = text(&check);
    assert!(
        said.contains("`llm.providers.main.api_key`")
            && said.contains("PROVIDER_KEY")
            && said.contains("spacebot secrets set"),
        "{said}"
    );

    let short = secrets(&home, &["set", "PROVIDER_KEY"], "short\n");
    assert!(!short.status.success() && text(&short).contains("shorter than 8"), "{}", text(&short));
    let set = secrets(&home, &["set", "PROVIDER_KEY"], &format!("{KEY}\n"));
    assert!(set.status.success(), "{}", text(&set));
    let list = secrets(&home, &["list"], "");
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "PROVIDER_KEY");
    let stored = std::fs::read_to_string(home.data_dir().join("secrets.json")).expect("store");
    assert!(!stored.contains(KEY), "the value is encrypted at rest: {stored}");

    let daemon = Daemon::start(&home).await;
    daemon.say("main", "s1", "alice", "what is your key?").await;
    let answers = daemon.wait_for_answers("main", "s1", 1).await;
    let request = fake.last_request().expect("the model was called");
    assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let answer = answers[0]["text"].as_str().expect("text");
    assert_eq!(answer, "my key is [redacted], keep it safe");
    daemon.stop().await;

    let removed = secrets(&home, &["rm", "PROVIDER_KEY"], "");
    assert!(removed.status.success(), "{}", text(&removed));
    let again = secrets(&home, &["rm", "PROVIDER_KEY"], "");
    assert!(!again.status.success() && text(&again).contains("no secret named"), "{}", text(&again));
}

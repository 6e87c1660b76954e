//! Cron through the real binary: a job every 2 s delivers into a webhook conversation; after a
//! `kill -9` and a restart it goes on, and the run-once jobs have fired exactly once (one that
//! finished before the crash, and one the crash cut short mid-run, which is never run again).
//! The CLI lists, adds, runs and removes jobs over the API.

use std::time::{Duration, Instant};

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeReply, RecordedRequest};

use crate::daemon::{Daemon, Home, PATIENCE, openai_config};

/// The provider waits long and never retries, so the cut-short run is still in its model call
/// when the daemon is killed.
fn config(model: &FakeLlmServer) -> String {
    format!(
        r#"
[llm.providers.main]
kind = "openai"
base_url = "{}"
api_key = "sk-test"
timeout_secs = 120
max_retries = 0

[llm.models]
channel = "main/fake-gpt"

[[agents]]
id = "main"

[[agents.cron]]
id = "tick"
prompt = "TICK-PROMPT: say tick"
every = "2s"
deliver_to = "webhook:ticks"

[[agents.cron]]
id = "once"
prompt = "ONCE-PROMPT: say hello once"
every = "1s"
run_once = true
deliver_to = "webhook:once"

[[agents.cron]]
id = "once-cut"
prompt = "CUT-PROMPT: this run is cut short"
every = "1s"
run_once = true
deliver_to = "webhook:cut"
"#,
        model.openai_base_url()
    )
}

fn asks(request: &RecordedRequest, prompt: &str) -> bool {
    // Only the request of the run itself: its last message is the prompt.
    request.body["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m.to_string().contains(prompt))
}

fn model() -> impl Fn(&RecordedRequest) -> FakeReply + Send + Sync + 'static {
    |request| {
        if asks(request, "CUT-PROMPT") {
            FakeReply::hang()
        } else if asks(request, "ONCE-PROMPT") {
            FakeReply::tool_call("reply", json!({ "content": "hello, once" }))
        } else {
            FakeReply::tool_call("reply", json!({ "content": "tick" }))
        }
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool, fake: &FakeLlmServer) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        let asked: Vec<String> = fake
            .requests()
            .iter()
            .map(|r| r.body["messages"].as_array().and_then(|m| m.last()).map(|m| m.to_string()).unwrap_or_default())
            .collect();
        assert!(Instant::now() < deadline, "{what} did not happen in time; the model was asked {asked:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_delivers_every_two_seconds_and_run_once_jobs_fire_once_across_a_kill() {
    let fake = FakeLlmServer::start().await;
    fake.respond_with(model());
    let home = Home::new(&config(&fake));
    let count = |prompt: &'static str| fake.requests().iter().filter(|r| asks(r, prompt)).count();

    let daemon = Daemon::start(&home).await;
    let ticks = daemon.wait_for_answers("main", "ticks", 2).await;
    assert!(ticks.iter().all(|m| m["text"] == "tick" && m["role"] == "assistant"), "{ticks:#?}");
    assert_eq!(daemon.wait_for_answers("main", "once", 1).await[0]["text"], "hello, once");
    wait_until("the cut-short run's model call", async || count("CUT-PROMPT") == 1, &fake).await;
    daemon.crash().await;
    let before = count("TICK-PROMPT");

    let mut daemon = Daemon::start(&home).await;
    daemon.wait_for_log("cron runs were interrupted by the last stop", PATIENCE).await;
    let ticks_before = daemon.messages("main", "ticks").await.len();
    wait_until(
        "two more ticks after the restart",
        async || daemon.messages("main", "ticks").await.len() >= ticks_before + 2,
        &fake,
    )
    .await;
    assert!(count("TICK-PROMPT") >= before + 2);
    assert_eq!(count("ONCE-PROMPT"), 1, "the finished run-once job never runs again");
    assert_eq!(count("CUT-PROMPT"), 1, "the run-once job the crash cut short is not run again");
    assert_eq!(daemon.messages("main", "once").await.len(), 1);
    assert!(daemon.messages("main", "cut").await.is_empty(), "nothing was delivered for the cut run");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn the_cli_lists_adds_runs_and_removes_jobs() {
    let fake = FakeLlmServer::start().await;
    fake.respond_with(|_| FakeReply::tool_call("reply", json!({ "content": "from the CLI's job" })));
    let home = Home::new(&openai_config(&fake.openai_base_url()));
    let daemon = Daemon::start(&home).await;
    let dir = home.dir.path().to_path_buf();
    let cli = |args: Vec<String>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::daemon::run_cli(&args, &[], &dir)
        })
    };
    let url = daemon.base.clone();
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).chain(["--url".to_owned(), url.clone()]).collect();

    let added = cli(args(&[
        "cron",
        "add",
        "weekly",
        "--prompt",
        "Summarise the week",
        "--cron",
        "0 17 * * 5",
        "--timezone",
        "Europe/Berlin",
        "--deliver-to",
        "webhook:weekly",
    ]))
    .await
    .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = cli(args(&["cron", "list"])).await.unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("weekly  cron \"0 17 * * 5\" (Europe/Berlin)  enabled"), "{listed}");

    let ran = cli(args(&["cron", "run", "weekly"])).await.unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(daemon.wait_for_answers("main", "weekly", 1).await[0]["text"], "from the CLI's job");

    let bad = cli(args(&["cron", "add", "bad", "--prompt", "p", "--every", "soon", "--deliver-to", "webhook:x"]))
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`every`"), "{}", String::from_utf8_lossy(&bad.stderr));

    assert!(cli(args(&["cron", "rm", "weekly"])).await.unwrap().status.success());
    let listed = cli(args(&["cron", "list"])).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "no cron jobs\n");
    let missing = cli(args(&["cron", "rm", "weekly"])).await.unwrap();
    assert!(!missing.status.success(), "removing a missing job fails");
    daemon.stop().await;
}

#[test]
fn config_check_lists_the_jobs_and_refuses_a_bad_one() {
    let good = format!(
        "{}\n[[agents]]\nid = \"main\"\n[[agents.cron]]\nid = \"daily\"\nprompt = \"p\"\ncron = \"0 17 * * 1-5\"\ntimezone = \"Europe/Berlin\"\ndeliver_to = \"discord:123\"\n",
        openai_config("http://127.0.0.1:9/v1")
    );
    let home = Home::new(&good);
    let config = home.config_path();
    let output =
        crate::daemon::run_cli(&["config", "check", "--config", config.to_str().unwrap()], &[], home.dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("agent main: cron job daily cron \"0 17 * * 1-5\" in Europe/Berlin, to discord:123"),
        "{stdout}"
    );

    let home = Home::new(&good.replace("Europe/Berlin", "Europe/Atlantis"));
    let config = home.config_path();
    let output =
        crate::daemon::run_cli(&["config", "check", "--config", config.to_str().unwrap()], &[], home.dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("`agents[0].cron[0]`") && stderr.contains("`timezone` 'Europe/Atlantis'"), "{stderr}");
}

//! The portal in a real browser: headless Chromium (Debian's) driven by playwright-core (npm)
//! through `portal_browser.mjs` signs in with the token, chats with an agent backed by the fake
//! model (a slow reply shown as it is written, before it is sent), and opens the live view, memory search (forgetting a memory) and usage plot, on a
//! phone-sized screen.
//!
//! Needs `SPACEBOT_TEST_CHROMIUM` (default `/usr/bin/chromium`) and playwright-core under
//! `SPACEBOT_TEST_MCP_NPM_DIR` (the npm prefix `.ci/run` fills); without them the test fails and
//! says what to install. Screenshots land in `$CARGO_TARGET_TMPDIR/portal-shots`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home};

const TOKEN: &str = "portal-admin-token-7f3a";
const REPLY: &str = "hello from the fake model";
/// The reply written slowly, previewed as it comes.
const SLOW_REPLY: &str = "this answer is written slowly, a few words at a time, and shown as it comes";
const MEMORY: &str = "The standup moved to Thursdays";
/// A memory linked to [`MEMORY`], whose links the portal draws.
const LINKED: &str = "Standup notes go in the team wiki";

#[tokio::test]
async fn the_portal_signs_in_chats_and_shows_live_memory_and_usage_in_chromium() {
    let chromium =
        PathBuf::from(std::env::var("SPACEBOT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let npm = PathBuf::from(std::env::var("SPACEBOT_TEST_MCP_NPM_DIR").unwrap_or_default());
    assert!(
        chromium.exists() && npm.join("node_modules/playwright-core/package.json").exists(),
        "this test needs Chromium ({}; apt-get install chromium, or SPACEBOT_TEST_CHROMIUM) and playwright-core \
         (npm install --prefix DIR playwright-core, with SPACEBOT_TEST_MCP_NPM_DIR=DIR); .ci/run installs both",
        chromium.display()
    );

    let fake = FakeLlmServer::start().await;
    // A message asking for a slow reply gets one written a fragment every 400 ms, so the
    // portal's preview of it can be seen before it is sent.
    fake.respond_with(|request| {
        let slow = request.messages().iter().any(|m| m["content"].as_str().is_some_and(|c| c.contains("slowly")));
        if slow {
            FakeReply::tool_call("reply", json!({ "content": SLOW_REPLY })).chunk_delay(Duration::from_millis(400))
        } else {
            FakeReply::tool_call("reply", json!({ "content": REPLY }))
        }
    });
    let home =
        Home::new(&format!("[api]\ntoken = \"{TOKEN}\"\n\n{}", crate::daemon::openai_config(&fake.openai_base_url())));
    // A memory to find and forget in the Memory tab, and one linked to it.
    let config = home.config_path();
    let data_dir = home.data_dir();
    let add = |args: &[&str]| {
        let mut all =
            vec!["--config", config.to_str().expect("utf-8"), "--data-dir", data_dir.to_str().expect("utf-8")];
        all.extend_from_slice(&["memory", "add"]);
        all.extend_from_slice(args);
        let added = crate::daemon::run_cli(&all, &[], home.dir.path());
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        let stdout = String::from_utf8_lossy(&added.stdout).into_owned();
        stdout.split_whitespace().next().expect("the new memory's id").to_owned()
    };
    let first = add(&["--type", "fact", MEMORY]);
    add(&["--type", "decision", "--link", &format!("part_of:{first}"), LINKED]);
    let daemon = Daemon::start(&home).await;

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-shots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/portal_browser.mjs");
    let base = daemon.base.clone();
    let output = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            Command::new("node")
                .arg(script)
                .env("SPACEBOT_URL", base)
                .env("SPACEBOT_TOKEN", TOKEN)
                .env("SPACEBOT_CHROMIUM", chromium)
                .env("SPACEBOT_NPM_DIR", npm)
                .env("SPACEBOT_SHOTS", shots)
                .env("SPACEBOT_EXPECT", REPLY)
                .env("SPACEBOT_SLOW", SLOW_REPLY)
                .env("SPACEBOT_MEMORY", MEMORY)
                .env("SPACEBOT_LINKED", LINKED)
                .output()
                .expect("run node")
        }
    })
    .await
    .expect("the browser script finished");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser run failed:\n{stdout}\n{stderr}");
    let figures: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("figures");
    println!("portal figures: {figures}");
    assert!(figures["bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{figures}");
    let (preview, sent) = (figures["preview_ms"].as_u64(), figures["slow_reply_ms"].as_u64());
    assert!(preview.zip(sent).is_some_and(|(preview, sent)| preview < sent), "previewed before it was sent: {figures}");
    for shot in
        ["1-login.png", "2-chat-writing.png", "2-chat.png", "3-live.png", "4-memory.png", "5-usage.png", "6-config.png"]
    {
        assert!(shots.join(shot).metadata().is_ok_and(|m| m.len() > 0), "no screenshot {shot}");
    }
    // The page and its files are served without a token; the API behind them is not.
    let page = daemon.http.get(format!("{}/", daemon.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let status = daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap();
    assert_eq!(status.status(), 401);
    daemon.stop().await;
}

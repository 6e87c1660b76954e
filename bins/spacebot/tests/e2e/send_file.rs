//! `send_file` through the real binary and the real platform clients: the channel uploads a
//! workspace file to Discord (serenity's multipart upload against the fake Discord), a worker
//! uploads one to Slack (slack-morphism's external upload against the fake Slack), and where a
//! file can't go (a webhook conversation, a file over the limit) the model is told why.

use std::time::Duration;

use serde_json::{Value, json};

use spacebot_testing::{FakeDiscord, FakeLlmServer, FakeMessage, FakeReply, FakeSlack, RecordedRequest, SlackMessage};

use crate::daemon::{Daemon, Home, openai_config, worker_calls, worker_tool_results, worker_tool_specs};

const WAIT: Duration = Duration::from_secs(20);

/// The tool results the channel's model read, in order (requests without `set_status`).
fn channel_tool_results(model: &FakeLlmServer) -> Vec<String> {
    let last = model.requests().into_iter().rfind(|request| !request.tool_names().iter().any(|t| t == "set_status"));
    last.map(|request| {
        request
            .messages()
            .iter()
            .filter(|message| message["role"] == "tool")
            .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    })
    .unwrap_or_default()
}

/// A channel model that calls `send_file` once with each of `calls`, then replies `Done.`.
fn channel_sends(model: &FakeLlmServer, calls: Vec<Value>) {
    model.respond_with(move |request: &RecordedRequest| {
        let results = request.messages().iter().filter(|message| message["role"] == "tool").count();
        match calls.get(results) {
            Some(args) => FakeReply::tool_call("send_file", args.clone()),
            None => FakeReply::tool_call("reply", json!({ "content": "Done." })),
        }
    });
}

fn write_workspace_file(home: &Home, path: &str, bytes: &[u8]) {
    let file = home.data_dir().join("workspaces/main").join(path);
    std::fs::create_dir_all(file.parent().expect("a parent")).expect("create the workspace");
    std::fs::write(file, bytes).expect("write a workspace file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_uploads_a_workspace_file_to_discord_with_its_caption_and_secrets_masked() {
    let model = FakeLlmServer::start().await;
    channel_sends(&model, vec![json!({ "path": "out/report.csv", "caption": "The weekly report" })]);
    let discord = FakeDiscord::start().await;
    discord.add_channel(1, 10);
    let config = format!(
        "{}\n[messaging.discord]\ntoken = \"discord-token\"\napi_url = \"{}\"\n",
        openai_config(&model.openai_base_url()),
        discord.api_url()
    );
    let home = Home::new(&config);
    write_workspace_file(&home, "out/report.csv", b"week,total\n48,1200\ntoken,xoxb-1234567890-abcdefghij\n");
    let daemon = Daemon::start(&home).await;
    discord.wait_connected(WAIT).await;

    discord.post(FakeMessage::guild(1, 10, 42, "send me the weekly report").by("carol"));
    discord
        .wait_for("the reply after the upload", WAIT, |r| r.iter().any(|r| r.body["content"] == json!("Done.")))
        .await;

    let uploads = discord.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!((uploads[0].path.as_str(), uploads[0].filename.as_str()), ("/channels/10/messages", "report.csv"));
    assert_eq!(String::from_utf8_lossy(&uploads[0].bytes), "week,total\n48,1200\ntoken,[redacted]\n");
    assert_eq!(discord.messages_in(10), vec!["The weekly report", "Done."], "the caption, then the reply");
    let results = channel_tool_results(&model);
    assert_eq!(results.len(), 1, "{results:#?}");
    assert!(results[0].starts_with("Sent `report.csv` ("), "the model read: {results:#?}");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_uploads_a_workspace_file_to_slack_through_the_external_upload() {
    let model = FakeLlmServer::start().await;
    worker_calls(&model, "send_file", json!({ "path": "charts/q3.png" }));
    let slack = FakeSlack::start().await;
    let config = format!(
        "{}\n[messaging.slack]\nbot_token = \"xoxb-test\"\napp_token = \"xapp-test\"\napi_url = \"{}\"\n",
        openai_config(&model.openai_base_url()),
        slack.api_url()
    );
    let home = Home::new(&config);
    let png: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[0u8, 255, 13, 10].repeat(5000)].concat();
    write_workspace_file(&home, "charts/q3.png", &png);
    let daemon = Daemon::start(&home).await;
    slack.wait_for("a Socket Mode connection", WAIT, |f| f.connections() >= 1).await;

    slack.post(SlackMessage::new("C1", "U1", "chart the quarter"));
    slack.wait_for("the upload", WAIT, |f| !f.uploads().is_empty()).await;
    let uploads = slack.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    let upload = &uploads[0];
    assert_eq!((upload.channel.as_str(), upload.filename.as_str()), ("C1", "q3.png"));
    assert_eq!((upload.title.as_deref(), upload.content_type.as_deref()), (Some("q3.png"), Some("image/png")));
    assert!(upload.bytes == png, "the bytes arrived unchanged ({} of {})", upload.bytes.len(), png.len());
    assert_eq!(upload.thread_ts, None, "a channel message is answered in the channel");

    let specs = worker_tool_specs(&model);
    assert!(specs.iter().any(|spec| spec["function"]["name"] == "send_file"), "{specs:#?}");
    // The relay turn tells the channel what the worker did.
    slack
        .wait_for("the relay reply", WAIT, |f| {
            f.calls_to("chat.postMessage")
                .iter()
                .any(|call| call.body["text"].as_str().is_some_and(|text| text.contains("Sent `q3.png` (20008 bytes)")))
        })
        .await;
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_or_to_a_webhook_conversation_is_refused_and_the_model_is_told() {
    let model = FakeLlmServer::start().await;
    channel_sends(&model, vec![json!({ "path": "big.bin" }), json!({ "path": "small.txt" })]);
    let config = format!("{}\n[tools]\nsend_file_max_bytes = 64\n", openai_config(&model.openai_base_url()));
    let home = Home::new(&config);
    write_workspace_file(&home, "big.bin", &[1u8; 65]);
    write_workspace_file(&home, "small.txt", b"fits");
    let daemon = Daemon::start(&home).await;

    daemon.say("main", "files", "alice", "send both files").await;
    let answers = daemon.wait_for_answers("main", "files", 1).await;
    assert_eq!(answers[0]["text"], "Done.");
    let results = channel_tool_results(&model);
    assert_eq!(results.len(), 2, "{results:#?}");
    assert!(results[0].contains("`big.bin` has 65 bytes, more than the 64 bytes send_file may send"), "{results:#?}");
    assert!(
        results[1].contains("`small.txt` was not sent: webhook: webhook conversations can't receive files"),
        "{results:#?}"
    );
    // Workers were not involved, and nothing else was asked of the model.
    assert!(worker_tool_results(&model).is_empty());
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

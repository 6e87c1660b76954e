//! Response modes and command authority through the real binary and the real platform clients
//! (serenity against the fake Discord, slack-morphism against the fake Slack): in `mention_only`
//! a message that doesn't mention the agent gets no answer but is in the context of the next
//! one that does, as the model sees it; with `admins` set, a stranger's `/pause` is refused
//! visibly in the conversation while an admin's works. Over the webhook too, for authority.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spacebot_testing::{FakeDiscord, FakeLlmServer, FakeMessage, FakeReply, FakeSlack, SlackMessage};

use crate::daemon::{Daemon, Home, openai_config};

const WAIT: Duration = Duration::from_secs(20);

/// The texts of a platform conversation's stored messages.
async fn stored_texts(daemon: &Daemon, conversation: &str) -> Vec<String> {
    let url = format!("{}/api/agents/main/conversations/{conversation}/messages", daemon.base);
    let response = reqwest::get(url).await.expect("messages request");
    let messages = response.json::<Vec<Value>>().await.unwrap_or_default();
    messages.iter().map(|m| m["text"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Polls the daemon (a real process) until `conversation` holds `count` messages.
async fn wait_for_stored(daemon: &Daemon, conversation: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let texts = stored_texts(daemon, conversation).await;
        if texts.len() >= count {
            return texts;
        }
        assert!(Instant::now() < deadline, "no {count} messages in {conversation} within {WAIT:?}: {texts:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The texts of every message (every text part of one, when it has several) in the model's
/// requests, in order.
fn model_saw(model: &FakeLlmServer) -> Vec<String> {
    model
        .requests()
        .iter()
        .flat_map(|request| request.messages().to_vec())
        .flat_map(|message| match &message["content"] {
            Value::String(text) => vec![text.clone()],
            Value::Array(parts) => {
                parts.iter().map(|part| part["text"].as_str().unwrap_or_default().to_owned()).collect()
            }
            other => vec![other.to_string()],
        })
        .collect()
}

/// Waits until the fake Discord's requests pass `check`; on timeout, fails with them and the
/// daemon's log.
async fn wait_or_show_logs(
    discord: &FakeDiscord,
    daemon: &mut Daemon,
    what: &str,
    check: impl Fn(&[spacebot_testing::DiscordRequest]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !check(&discord.requests()) {
        if Instant::now() > deadline {
            panic!(
                "waited {WAIT:?} for {what}; requests: {:#?}\ndaemon log:\n{}",
                discord.requests(),
                daemon.logs_so_far()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The agent `main` in `mention_only`, with one admin, on the fake model.
fn mention_only_config(model: &FakeLlmServer, admin: &str) -> String {
    format!(
        "{}\n[[agents]]\nid = \"main\"\nresponse_mode = \"mention_only\"\nadmins = [\"{admin}\"]\n",
        openai_config(&model.openai_base_url())
    )
}

#[tokio::test]
async fn discord_mention_only_reads_everything_answers_mentions_and_only_admins_pause() {
    let model = FakeLlmServer::start().await;
    let discord = FakeDiscord::start().await;
    discord.add_channel(1, 10);
    let config = format!(
        "{}\n[messaging.discord]\ntoken = \"discord-token\"\napi_url = \"{}\"\n",
        mention_only_config(&model, "discord:42"),
        discord.api_url()
    );
    let home = Home::new(&config);
    let mut daemon = Daemon::start(&home).await;
    discord.wait_connected(WAIT).await;
    let conversation = "discord:1:10";

    // Not mentioned: recorded, not answered.
    discord.post(FakeMessage::guild(1, 10, 7, "The deploy moved to 5pm.").by("bob"));
    wait_for_stored(&daemon, conversation, 1).await;

    // Mentioned: answered, with the earlier message in the context the model reads.
    model.push(FakeReply::tool_call("reply", json!({"content": "At 5pm, Bob says."})));
    discord.post(FakeMessage::guild(1, 10, 42, "when is the deploy?").by("carol").mentioning_bot());
    discord
        .wait_for("the answer to the mention", WAIT, |r| {
            r.iter().any(|r| r.body["content"] == json!("At 5pm, Bob says."))
        })
        .await;
    assert_eq!(model.request_count(), 1, "only the mention made a model call");
    let seen = model_saw(&model);
    let earlier = seen.iter().position(|text| text.contains("The deploy moved to 5pm.") && text.contains("bob"));
    let mention = seen.iter().position(|text| text.contains("when is the deploy?"));
    assert!(earlier.is_some() && mention.is_some() && earlier < mention, "the model saw: {seen:#?}");
    assert_eq!(discord.messages_in(10), vec!["At 5pm, Bob says."], "one answer, to the mention");

    // A stranger's /pause, typed or as a slash command, is refused where they can see it.
    discord.post(FakeMessage::guild(1, 10, 7, "/pause").by("bob"));
    let refusal = "Only an admin of this agent can use /pause here.";
    discord.wait_for("the typed refusal", WAIT, |r| r.iter().any(|r| r.body["content"] == json!(refusal))).await;
    let stranger = discord.slash_command(Some(1), 10, 7, "pause", None);
    let in_place = |id: u64, text: &'static str| {
        move |requests: &[spacebot_testing::DiscordRequest]| {
            requests.iter().any(|r| {
                r.method == "PATCH"
                    && r.path.ends_with(&format!("/token-{id}/messages/@original"))
                    && r.body["content"].as_str().is_some_and(|content| content.starts_with(text))
            })
        }
    };
    discord.wait_for("the slash command's refusal", WAIT, in_place(stranger, refusal)).await;

    // "@spacebot /pause", the way a command is addressed to one bot among several, is a command
    // too: refused for the stranger, not answered by the model.
    discord.post(FakeMessage::guild(1, 10, 7, "/pause").by("bob").mentioning_bot());
    let posted = |texts: &'static str| {
        move |requests: &[spacebot_testing::DiscordRequest]| {
            requests
                .iter()
                .filter(|r| r.method == "POST" && r.path == "/channels/10/messages")
                .filter(|r| r.body["content"].as_str().is_some_and(|content| content.starts_with(texts)))
                .count()
        }
    };
    let refusals = posted(refusal);
    wait_or_show_logs(&discord, &mut daemon, "the refusal of the mention", |r| refusals(r) == 2).await;

    // The admin's works.
    let admin = discord.slash_command(Some(1), 10, 42, "pause", None);
    discord.wait_for("the admin's pause", WAIT, in_place(admin, "Paused:")).await;
    discord.post(FakeMessage::guild(1, 10, 42, "/resume").by("carol").mentioning_bot());
    let resumed = posted("Resumed");
    wait_or_show_logs(&discord, &mut daemon, "the admin's resume by mention", |r| resumed(r) == 1).await;
    assert_eq!(model.request_count(), 1, "commands make no model call");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn slack_mention_only_reads_everything_answers_mentions_and_only_admins_pause() {
    let model = FakeLlmServer::start().await;
    let slack = FakeSlack::start().await;
    let config = format!(
        "{}\n[messaging.slack]\nbot_token = \"xoxb-test\"\napp_token = \"xapp-test\"\napi_url = \"{}\"\n",
        mention_only_config(&model, "slack:UADMIN"),
        slack.api_url()
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;
    slack.wait_for("a Socket Mode connection", WAIT, |f| f.connections() >= 1).await;
    let conversation = "slack:T1:C1";
    let posted = |slack: &FakeSlack| -> Vec<String> {
        slack
            .calls_to("chat.postMessage")
            .iter()
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    slack.post(SlackMessage::new("C1", "U7", "The deploy moved to 5pm."));
    wait_for_stored(&daemon, conversation, 1).await;

    // Slack sends a mention twice, as a `message` and as an `app_mention`: one message, one answer.
    model.push(FakeReply::tool_call("reply", json!({"content": "At 5pm, U7 says."})));
    let mention = SlackMessage::new("C1", "UADMIN", "when is the deploy?").mentioning_bot();
    let (first, ts) = slack.post(mention.clone());
    let second = slack.app_mention(mention, &ts);
    slack.wait_for("the answer", WAIT, |f| posted(f).contains(&"At 5pm, U7 says.".to_owned())).await;
    slack.wait_for("both envelopes acknowledged", WAIT, |f| f.acked(&first) && f.acked(&second)).await;
    assert_eq!(model.request_count(), 1, "only the mention made a model call");
    let seen = model_saw(&model);
    let earlier = seen.iter().position(|text| text.contains("The deploy moved to 5pm."));
    let asked = seen.iter().position(|text| text.contains("when is the deploy?"));
    assert!(earlier.is_some() && asked.is_some() && earlier < asked, "the model saw: {seen:#?}");

    // A stranger's /pause is refused in the channel; the admin's works.
    slack.slash_command("C1", "U7", "/pause", "");
    let refusal = "Only an admin of this agent can use /pause here.".to_owned();
    slack.wait_for("the refusal", WAIT, |f| posted(f).contains(&refusal)).await;
    slack.slash_command("C1", "UADMIN", "/pause", "");
    slack.wait_for("the admin's pause", WAIT, |f| posted(f).iter().any(|text| text.starts_with("Paused:"))).await;
    assert_eq!(posted(&slack).len(), 3, "{:#?}", posted(&slack));
    let texts = stored_texts(&daemon, conversation).await;
    assert_eq!(
        texts.iter().filter(|text| text.contains("when is the deploy?")).count(),
        1,
        "the mention is recorded once: {texts:#?}"
    );
    assert_eq!(model.request_count(), 1, "commands make no model call");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn only_admins_pause_and_a_stranger_is_told_so() {
    let model = FakeLlmServer::start().await;
    model.respond_with(|_| FakeReply::text("answered"));
    let config = format!(
        "{}\n[[agents]]\nid = \"main\"\nadmins = [\"webhook:carol\"]\n",
        openai_config(&model.openai_base_url())
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;

    // The stranger's /pause is refused, visibly; the conversation still answers.
    daemon.say("main", "ops", "mallory", "/pause").await;
    let answers = daemon.wait_for_answers("main", "ops", 1).await;
    assert_eq!(answers[0]["text"], "Only an admin of this agent can use /pause here.");
    daemon.say("main", "ops", "mallory", "hello").await;
    let answers = daemon.wait_for_answers("main", "ops", 2).await;
    assert_eq!(answers[1]["text"], "answered");
    daemon.say("main", "ops", "carol", "/pause").await;
    let answers = daemon.wait_for_answers("main", "ops", 3).await;
    assert!(answers[2]["text"].as_str().is_some_and(|t| t.starts_with("Paused")), "{answers:#?}");

    daemon.stop().await;
}

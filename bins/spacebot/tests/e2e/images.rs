//! Images through the real binary: a picture posted on the fake Discord is downloaded by the
//! adapter and reaches a vision model (`llm.vision_models`) as an image part; an agent whose model
//! is not listed gets a note instead.

use std::time::Duration;

use serde_json::json;

use spacebot_testing::{FakeDiscord, FakeLlmServer, FakeMessage, FakeReply};

use crate::daemon::{Daemon, Home, openai_config};

const WAIT: Duration = Duration::from_secs(20);

/// Posts a picture to an agent on Discord, with `vision_models` set as given, and returns the
/// images and the user text the model received.
async fn picture_through_discord(vision_models: &str) -> (Vec<(String, String)>, String) {
    let model = FakeLlmServer::start().await;
    let discord = FakeDiscord::start().await;
    discord.add_channel(1, 10);
    let png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let url = discord.add_file("cat.png", "image/png", png.clone());
    let config = format!(
        "{}\n[llm]\nvision_models = {vision_models}\n[messaging.discord]\ntoken = \"discord-token\"\napi_url = \"{}\"\n",
        openai_config(&model.openai_base_url()),
        discord.api_url()
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;
    discord.wait_connected(WAIT).await;
    model.push(FakeReply::tool_call("reply", json!({"content": "A cat."})));
    discord.post(FakeMessage::guild(1, 10, 7, "what is this?").with_attachment(
        "cat.png",
        &url,
        "image/png",
        png.len() as u64,
    ));
    discord.wait_for("the answer", WAIT, |r| r.iter().any(|r| r.body["content"] == json!("A cat."))).await;
    let (status, _) = daemon.stop().await;
    assert!(status.success());
    let request = model.requests().into_iter().next().expect("one model call");
    (request.images(), request.last_user_text().unwrap_or_default())
}

#[tokio::test]
async fn a_picture_on_discord_reaches_a_vision_model_as_an_image() {
    let (images, text) = picture_through_discord("[\"main/fake-gpt\"]").await;
    assert_eq!(images, vec![("image/png".to_owned(), "iVBORw0KGgo=".to_owned())], "{text}");
    assert!(text.contains("what is this?") && !text.contains("not shown"), "{text}");
}

#[tokio::test]
async fn a_model_not_listed_as_vision_is_told_the_picture_was_not_shown() {
    let (images, text) = picture_through_discord("[]").await;
    assert!(images.is_empty());
    assert!(text.contains("[image cat.png not shown: this model can't see images]"), "{text}");
}

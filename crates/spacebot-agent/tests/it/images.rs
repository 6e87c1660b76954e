//! Image attachments: a vision-capable agent's model is shown the images the adapter fetched;
//! any other gets a note saying an image was not shown, and why.

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::REPLY_TOOL;
use spacebot_core::{Attachment, ChatMessage, ImagePart, InboundMessage, MessageContent, Sender};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{CONV, profile, start};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// A DM with a text and these attachments.
fn with_attachments(attachments: Vec<Attachment>) -> InboundMessage {
    InboundMessage::text("test", CONV, Sender::new("alice"), "")
        .with_content(MessageContent::Media { text: Some("what is this?".to_owned()), attachments })
        .with_direct(true)
}

fn cat() -> Attachment {
    Attachment::new("cat.png", "https://cdn.example/cat.png").with_mime_type("image/png").with_data(PNG.to_vec())
}

/// Runs one message through an agent (`vision` or not) and returns the user message its model got.
async fn model_got(vision: bool, message: InboundMessage) -> (String, Vec<ImagePart>) {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({"content": "A cat."})));
    let mut h = start(profile(&model).with_vision(vision), Arc::new(MemoryLog::new())).await;
    h.inject(message);
    h.wait_turns(1).await;
    h.shutdown().await;
    let requests = model.requests();
    match requests[0].messages.last() {
        Some(ChatMessage::User { content, images, .. }) => (content.clone(), images.clone()),
        other => panic!("the last message is not the user's: {other:#?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_vision_model_is_shown_the_fetched_image() {
    let (text, images) = model_got(true, with_attachments(vec![cat()])).await;
    assert_eq!(images, vec![ImagePart::new("image/png", PNG.to_vec())]);
    assert!(text.contains("what is this?") && text.contains("[attachment: cat.png"), "{text}");
    assert!(!text.contains("not shown"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_model_without_vision_is_told_an_image_was_not_shown() {
    let (text, images) = model_got(false, with_attachments(vec![cat()])).await;
    assert!(images.is_empty());
    assert!(text.ends_with("\n[image cat.png not shown: this model can't see images]"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn skipped_and_unreadable_images_are_named_with_the_reason() {
    let big = Attachment::new("big.png", "https://cdn.example/big.png")
        .with_mime_type("image/png")
        .with_skipped("it is 7.0 MB, over the 5 MB limit");
    let tiff =
        Attachment::new("scan.tiff", "https://cdn.example/scan.tiff").with_mime_type("image/tiff").with_data(PNG);
    let file = Attachment::new("notes.txt", "https://cdn.example/notes.txt").with_mime_type("text/plain");
    let (text, images) = model_got(true, with_attachments(vec![big, cat(), tiff, file])).await;
    assert_eq!(images.len(), 1, "only the cat is shown");
    assert!(text.contains("\n[image big.png not shown: it is 7.0 MB, over the 5 MB limit]"), "{text}");
    assert!(
        text.contains("\n[image scan.tiff not shown: its type (image/tiff) can't be shown to the model]"),
        "{text}"
    );
    assert!(!text.contains("notes.txt not shown"), "a file that is no image gets no note: {text}");
}

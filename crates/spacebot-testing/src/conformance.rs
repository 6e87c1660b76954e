//! One conformance suite for every [`MessagingAdapter`] (dev-only test support).
//!
//! [`run`] checks what the runtime relies on, whatever the platform: inbound normalisation
//! (source, adapter key, sender, text, distinct conversations for a channel, a thread and a direct
//! message), replies in place, splitting at the platform's limit without breaking words or code
//! blocks (or a long reply whole where there is no limit), thread replies (in place where there
//! are no threads), reactions (or a refusal saying there are none), typing, files (uploaded in
//! place, bytes intact, or refused as unsupported; never dropped quietly), recovery after a dropped connection, and a bounded
//! shutdown.
//!
//! The suite talks to the adapter through the trait only, and to the platform through a
//! [`Platform`] the adapter's tests implement over their fake (a local server the real client
//! library talks to, or an in-memory platform for an example). Failures panic with what was
//! expected and what the platform saw.
//!
//! ```text
//! spacebot_testing::conformance::run(adapter, &my_platform_harness).await;
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use spacebot_core::{
    AdapterErrorKind, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse, StatusUpdate,
};

/// Where on the platform something happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A group channel.
    Channel,
    /// A thread under a message of that channel.
    Thread,
    /// A direct message with the user.
    Direct,
}

/// Something the bot did on the platform, as the harness observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A message posted in a place.
    Message {
        /// Where.
        place: Place,
        /// What it said.
        text: String,
    },
    /// A reaction added to a message.
    Reaction {
        /// The emoji as the platform names it.
        emoji: String,
    },
    /// A typing indicator shown in a place.
    Typing {
        /// Where.
        place: Place,
    },
    /// A file uploaded in a place.
    File {
        /// Where.
        place: Place,
        /// Its name.
        filename: String,
        /// The message sent with it.
        caption: Option<String>,
        /// Its bytes, as the platform received them.
        bytes: Vec<u8>,
    },
}

/// The platform side of the suite, implemented by each adapter's tests over their fake.
#[async_trait]
pub trait Platform: Send + Sync {
    /// The most characters one message may carry.
    fn message_limit(&self) -> usize;

    /// A user says `text` in `place`, so the adapter receives it. `Thread` means a thread under a
    /// message of the channel, `Direct` a direct message from a user the adapter accepts.
    async fn user_says(&self, place: Place, text: &str);

    /// Everything the bot did on the platform so far, in order.
    fn actions(&self) -> Vec<Action>;

    /// Drops the adapter's connection the way the platform does when it goes away.
    async fn drop_connection(&self);

    /// Whether the platform shows typing in `place` (Slack: only in threads; email: nowhere).
    fn shows_typing_in(&self, place: Place) -> bool {
        let _ = place;
        true
    }

    /// Whether the platform has threads under a channel's messages. Without them (email, where a
    /// thread is the whole conversation) the suite says nothing in [`Place::Thread`], and a
    /// thread reply must land in place, as plain text.
    fn has_threads(&self) -> bool {
        true
    }

    /// Whether messages have a length limit, so long replies are split. Without one (email) a
    /// long reply must arrive whole, in one message.
    fn has_message_limit(&self) -> bool {
        true
    }
}

/// Bound for every step that waits on the adapter: a hang fails, but a real mail server on a loaded
/// machine may take many seconds to deliver (15 s was seen to run out).
const STEP: Duration = Duration::from_secs(60);

/// Runs the whole suite against `adapter` on `platform`.
///
/// # Panics
///
/// On the first check that fails, saying which and showing what the platform saw.
pub async fn run(adapter: Arc<dyn MessagingAdapter>, platform: &dyn Platform) {
    let mut stream = start(&adapter).await;

    // Inbound normalisation.
    platform.user_says(Place::Channel, "conformance: hello from a channel").await;
    let channel = receive(&adapter, &mut stream).await;
    assert_eq!(channel.content.text(), "conformance: hello from a channel", "the text arrives as sent");
    assert_eq!(channel.adapter, adapter.name(), "inbound messages carry the adapter's runtime key");
    assert!(!channel.source.is_empty(), "inbound messages name their platform");
    assert!(!channel.sender.id.is_empty(), "inbound messages name their sender");
    assert!(!channel.direct, "a channel message is not direct");

    let thread = if platform.has_threads() {
        platform.user_says(Place::Thread, "conformance: hello from a thread").await;
        let thread = receive(&adapter, &mut stream).await;
        assert_eq!(thread.content.text(), "conformance: hello from a thread");
        assert_ne!(thread.conversation, channel.conversation, "a thread is its own conversation");
        Some(thread)
    } else {
        None
    };

    platform.user_says(Place::Direct, "conformance: hello in private").await;
    let direct = receive(&adapter, &mut stream).await;
    assert!(direct.direct, "a direct message is marked direct");
    assert_ne!(direct.conversation, channel.conversation, "a DM is its own conversation");

    // Replies land where the message came from.
    let places =
        [Some((&channel, Place::Channel)), thread.as_ref().map(|t| (t, Place::Thread)), Some((&direct, Place::Direct))];
    for (message, place) in places.into_iter().flatten() {
        let text = format!("conformance: reply in {place:?}");
        send(&adapter, message, OutboundResponse::text(text.clone())).await;
        expect(platform, &format!("the reply in {place:?}"), |a| *a == Action::Message { place, text: text.clone() });
    }

    // Splitting.
    let before = platform.actions().len();
    let limit = platform.message_limit();
    let code: String = (0..limit / 20).map(|i| format!("let v{i} = {i};\n")).collect();
    let long =
        format!("{}\n```rust\n{code}```\n{}", "lorem ipsum ".repeat(limit / 10), "dolor sit ".repeat(limit / 15));
    send(&adapter, &channel, OutboundResponse::text(long.clone())).await;
    let parts: Vec<String> = platform.actions()[before..]
        .iter()
        .filter_map(|a| match a {
            Action::Message { place: Place::Channel, text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    if platform.has_message_limit() {
        assert!(parts.len() >= 3, "a reply of {} characters is split in at least 3 parts: {parts:?}", long.len());
    } else {
        assert_eq!(parts.len(), 1, "without a length limit a long reply arrives whole: {parts:?}");
    }
    for (i, part) in parts.iter().enumerate() {
        let fits = !platform.has_message_limit() || part.chars().count() <= limit;
        assert!(fits, "part {i} has {} characters, over {limit}", part.chars().count());
        let fences = part.lines().filter(|l| l.trim_start().starts_with("```")).count();
        assert_eq!(fences % 2, 0, "part {i} leaves a code block open: {part}");
    }
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace().filter(|w| !w.starts_with("```")).map(str::to_owned).collect()
    };
    assert_eq!(parts.iter().flat_map(|p| words(p)).collect::<Vec<_>>(), words(&long), "no word is lost or cut");

    // A thread reply goes into a thread, or in place where the platform has none.
    let response =
        OutboundResponse::ThreadReply { thread_name: "conformance".into(), text: "conformance: threaded".into() };
    send(&adapter, &channel, response).await;
    let threaded = if platform.has_threads() { Place::Thread } else { Place::Channel };
    expect(platform, "the thread reply", |a| {
        *a == Action::Message { place: threaded, text: "conformance: threaded".into() }
    });

    // Reactions (or a refusal saying the platform has none) and typing.
    let reaction = OutboundResponse::Reaction { emoji: "👍".into() };
    match tokio::time::timeout(STEP, adapter.send(&channel, reaction)).await {
        Ok(Ok(())) => expect(platform, "a reaction", |a| matches!(a, Action::Reaction { .. })),
        Ok(Err(error)) if error.kind() == AdapterErrorKind::Unsupported => {}
        Ok(Err(error)) => panic!("conformance: sending a reaction failed: {error}"),
        Err(_) => panic!("conformance: sending a reaction did not return within {STEP:?}"),
    }
    let typing_place = [Place::Channel, Place::Thread]
        .into_iter()
        .find(|p| platform.shows_typing_in(*p) && (*p == Place::Channel || thread.is_some()));
    if let Some(place) = typing_place {
        let target = match (place, &thread) {
            (Place::Thread, Some(thread)) => thread,
            _ => &channel,
        };
        send(&adapter, target, OutboundResponse::Status { status: StatusUpdate::Typing }).await;
        wait_for(platform, "a typing indicator", |a| *a == Action::Typing { place }).await;
        send(&adapter, target, OutboundResponse::Status { status: StatusUpdate::StopTyping }).await;
    }

    // A file lands in place with its caption and its bytes intact, or the adapter says it can't
    // send files; it is never dropped quietly.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let file = OutboundResponse::File {
        filename: "conformance.bin".into(),
        mime_type: "application/octet-stream".into(),
        data: bytes.clone(),
        caption: Some("conformance: a file".into()),
    };
    let (file_target, file_place) = match &thread {
        Some(thread) => (thread, Place::Thread),
        None => (&channel, Place::Channel),
    };
    match tokio::time::timeout(STEP, adapter.send(file_target, file)).await {
        Ok(Ok(())) => expect(platform, "the file in place", |a| {
            *a == Action::File {
                place: file_place,
                filename: "conformance.bin".into(),
                caption: Some("conformance: a file".into()),
                bytes: bytes.clone(),
            }
        }),
        Ok(Err(error)) if error.kind() == AdapterErrorKind::Unsupported => {}
        Ok(Err(error)) => panic!("conformance: sending a file failed: {error}"),
        Err(_) => panic!("conformance: sending a file did not return within {STEP:?}"),
    }

    // A dropped connection is recovered: by the adapter itself, or by ending the stream so the
    // runtime starts it again.
    platform.drop_connection().await;
    platform.user_says(Place::Channel, "conformance: after the drop").await;
    let after = receive(&adapter, &mut stream).await;
    assert_eq!(after.content.text(), "conformance: after the drop");
    assert_eq!(after.conversation, channel.conversation, "the same place is the same conversation");

    // Shutdown is bounded.
    tokio::time::timeout(STEP, adapter.shutdown()).await.expect("shutdown returns within its bound");
}

async fn start(adapter: &Arc<dyn MessagingAdapter>) -> InboundStream {
    match tokio::time::timeout(STEP, adapter.start()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => panic!("conformance: start failed: {error}"),
        Err(_) => panic!("conformance: start did not return within {STEP:?}"),
    }
}

/// The next inbound message, restarting the adapter when its stream ends as the runtime would.
async fn receive(adapter: &Arc<dyn MessagingAdapter>, stream: &mut InboundStream) -> InboundMessage {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(message)) => return message,
            Ok(None) => *stream = start(adapter).await,
            Err(_) => panic!("conformance: no inbound message within {STEP:?}"),
        }
    }
}

async fn send(adapter: &Arc<dyn MessagingAdapter>, target: &InboundMessage, response: OutboundResponse) {
    let what = format!("{response:?}");
    match tokio::time::timeout(STEP, adapter.send(target, response)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("conformance: sending {what} failed: {error}"),
        Err(_) => panic!("conformance: sending {what} did not return within {STEP:?}"),
    }
}

/// Asserts that the platform saw an action matching `check` (sends are synchronous).
fn expect(platform: &dyn Platform, what: &str, check: impl Fn(&Action) -> bool) {
    let actions = platform.actions();
    assert!(actions.iter().any(check), "conformance: expected {what}; the platform saw {actions:#?}");
}

/// Waits for an action the adapter performs in the background (typing loops).
async fn wait_for(platform: &dyn Platform, what: &str, check: impl Fn(&Action) -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
        if platform.actions().iter().any(&check) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    expect(platform, what, check);
}

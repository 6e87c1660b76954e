//! Handing inbound messages to the runtime and learning when it took them.
//!
//! A platform that redelivers what it was not told about (Slack envelopes, Telegram updates,
//! webhook retries) must be told only once a message is safe. The runtime takes a message from an
//! adapter's stream after the previous one was recorded: it reads the next message only once
//! `submit` has returned, which happens after the durable write. [`handoff`] builds on that: the
//! stream it returns signals a message as taken when the runtime asks for the one after it, and
//! [`Handoff::hand_in`] returns when that happened.
//!
//! A message still held when the stream is dropped is never signalled; the platform then
//! delivers it again, and its id makes the second delivery a no-op if it was in fact recorded.

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::adapter::InboundStream;
use crate::message::InboundMessage;

/// The runtime did not take a message: its stream was dropped first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the runtime did not take the message (its stream is gone)")]
pub struct NotTaken;

type Handed = (InboundMessage, oneshot::Sender<()>);

/// The adapter's side of a [`handoff`]: hands messages in one at a time per caller.
#[derive(Debug, Clone)]
pub struct Handoff {
    sender: mpsc::Sender<Handed>,
}

impl Handoff {
    /// Hands `message` to the runtime and returns once the runtime took it (recorded it and asked
    /// for the next message).
    ///
    /// # Errors
    ///
    /// [`NotTaken`] when the stream was dropped before the runtime took the message.
    pub async fn hand_in(&self, message: InboundMessage) -> Result<(), NotTaken> {
        let (taken, signal) = oneshot::channel();
        self.sender.send((message, taken)).await.map_err(|_| NotTaken)?;
        signal.await.map_err(|_| NotTaken)
    }

    /// Whether the runtime's side (the stream) is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A [`Handoff`] and the stream the runtime reads, with room for `buffer` messages in between.
pub fn handoff(buffer: usize) -> (Handoff, InboundStream) {
    let (sender, receiver) = mpsc::channel::<Handed>(buffer.max(1));
    let stream = futures::stream::unfold((receiver, None::<oneshot::Sender<()>>), |(mut receiver, held)| async move {
        if let Some(taken) = held {
            // The adapter may have stopped waiting; the platform's redelivery dedups by id.
            let _ = taken.send(());
        }
        let (message, taken) = receiver.recv().await?;
        Some((message, (receiver, Some(taken))))
    })
    .boxed();
    (Handoff { sender }, stream)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::message::Sender;

    fn message(text: &str) -> InboundMessage {
        InboundMessage::text("test", "test:c", Sender::new("u"), text)
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_taken_when_the_next_one_is_asked_for() {
        let (handoff, mut stream) = handoff(4);
        let first = tokio::spawn({
            let handoff = handoff.clone();
            async move { handoff.hand_in(message("one")).await }
        });
        assert_eq!(stream.next().await.map(|m| m.content.text().to_owned()).as_deref(), Some("one"));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!first.is_finished(), "read but not yet taken: the runtime may still be recording it");

        let second = tokio::spawn({
            let handoff = handoff.clone();
            async move { handoff.hand_in(message("two")).await }
        });
        assert!(stream.next().await.is_some());
        assert_eq!(first.await.ok(), Some(Ok(())), "asking for the next one took the first");
        drop(stream);
        assert_eq!(second.await.ok(), Some(Err(NotTaken)), "a message held when the stream drops is not taken");
        assert!(handoff.is_closed());
        assert_eq!(handoff.hand_in(message("three")).await, Err(NotTaken));
    }
}

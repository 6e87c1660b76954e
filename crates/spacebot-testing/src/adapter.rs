//! A [`MessagingAdapter`] that records what it is asked to send (dev-only test support).
//!
//! [`CapturingAdapter`] stands in for a chat platform: a test injects inbound messages, the
//! runtime reads them from the stream [`start`](MessagingAdapter::start) returned, and every
//! response the runtime sends back is recorded for assertions. Waiting for replies wakes on each
//! send (no polling), and sends can be made to fail on demand.
//!
//! ```
//! # async fn example() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use spacebot_core::MessagingAdapter;
//! use spacebot_testing::CapturingAdapter;
//!
//! let adapter = Arc::new(CapturingAdapter::new("test"));
//! let message = adapter.inject_text("test:c1", "alice", "hello");
//! // ... hand `adapter.clone()` to a runtime as `Arc<dyn MessagingAdapter>`; here we reply by hand:
//! adapter.send(&message, spacebot_core::OutboundResponse::text("hi alice")).await.ok();
//! let texts = adapter.wait_for_texts("test:c1", 1, Duration::from_secs(5)).await;
//! assert_eq!(texts, vec!["hi alice"]);
//! # }
//! ```

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;

use spacebot_core::{
    AdapterError, AdapterErrorKind, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse, Sender,
};

/// A fake chat platform: injected messages in, recorded responses out.
pub struct CapturingAdapter {
    name: String,
    inbound: mpsc::UnboundedSender<InboundMessage>,
    /// The receiving end, until the first `start` takes it.
    receiver: Mutex<Option<mpsc::UnboundedReceiver<InboundMessage>>>,
    sent: Mutex<Vec<(InboundMessage, OutboundResponse)>>,
    /// Woken on every successful send.
    sends: Notify,
    /// How many of the next sends fail, and how.
    failures: Mutex<(usize, AdapterErrorKind)>,
    /// How many sends were refused by [`fail_next`](CapturingAdapter::fail_next).
    failed: Mutex<usize>,
}

impl CapturingAdapter {
    /// An adapter with this runtime key (what [`MessagingAdapter::name`] returns).
    pub fn new(name: impl Into<String>) -> Self {
        let (inbound, receiver) = mpsc::unbounded_channel();
        Self {
            name: name.into(),
            inbound,
            receiver: Mutex::new(Some(receiver)),
            sent: Mutex::default(),
            sends: Notify::new(),
            failures: Mutex::new((0, AdapterErrorKind::Transient)),
            failed: Mutex::default(),
        }
    }

    /// Queues an inbound message for the stream [`start`](MessagingAdapter::start) returns.
    /// Messages injected before `start` wait for it; messages injected after the runtime dropped
    /// the stream are lost (with a warning).
    pub fn inject(&self, message: InboundMessage) {
        if self.inbound.send(message).is_err() {
            tracing::warn!(adapter = %self.name, "capturing adapter: the inbound stream is gone; message dropped");
        }
    }

    /// Injects a text message from `sender` in `conversation`, sourced from this adapter, and
    /// returns it (for its id, or to send a reply to by hand).
    pub fn inject_text(&self, conversation: &str, sender: &str, text: &str) -> InboundMessage {
        let message = InboundMessage::text(self.name.as_str(), conversation, Sender::new(sender), text);
        self.inject(message.clone());
        message
    }

    /// Makes the next `count` sends fail with an error of `kind` (replacing any earlier setting).
    pub fn fail_next(&self, count: usize, kind: AdapterErrorKind) {
        *lock(&self.failures) = (count, kind);
    }

    /// How many sends failed because of [`fail_next`](Self::fail_next).
    pub fn failed_sends(&self) -> usize {
        *lock(&self.failed)
    }

    /// Every response sent so far with the message it answered, in order.
    pub fn sent(&self) -> Vec<(InboundMessage, OutboundResponse)> {
        lock(&self.sent).clone()
    }

    /// The responses sent in `conversation`, in order.
    pub fn responses_for(&self, conversation: &str) -> Vec<OutboundResponse> {
        lock(&self.sent)
            .iter()
            .filter(|(target, _)| target.conversation.as_str() == conversation)
            .map(|(_, response)| response.clone())
            .collect()
    }

    /// The texts sent in `conversation` (text and thread replies), in order.
    pub fn texts_for(&self, conversation: &str) -> Vec<String> {
        self.responses_for(conversation)
            .into_iter()
            .filter_map(|response| match response {
                OutboundResponse::Text { text } | OutboundResponse::ThreadReply { text, .. } => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Waits until at least `count` texts were sent in `conversation` and returns them all.
    ///
    /// # Panics
    ///
    /// When `timeout` passes first, with a message listing what was sent.
    pub async fn wait_for_texts(&self, conversation: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.sends.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let texts = self.texts_for(conversation);
            if texts.len() >= count {
                return texts;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                let everything: Vec<_> = self
                    .sent()
                    .into_iter()
                    .map(|(target, response)| format!("{}: {response:?}", target.conversation))
                    .collect();
                panic!(
                    "capturing adapter {}: waited {timeout:?} for {count} text(s) in {conversation}, got {texts:?}; \
                     everything sent: {everything:#?}",
                    self.name
                );
            }
        }
    }
}

impl std::fmt::Debug for CapturingAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturingAdapter").field("name", &self.name).field("sent", &lock(&self.sent).len()).finish()
    }
}

#[async_trait]
impl MessagingAdapter for CapturingAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    /// The first call returns the injected messages; later calls return a stream that never
    /// yields (the messages have one reader).
    async fn start(&self) -> Result<InboundStream, AdapterError> {
        match lock(&self.receiver).take() {
            Some(receiver) => Ok(UnboundedReceiverStream::new(receiver).boxed()),
            None => Ok(futures::stream::pending().boxed()),
        }
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        {
            let mut failures = lock(&self.failures);
            if failures.0 > 0 {
                failures.0 -= 1;
                *lock(&self.failed) += 1;
                return Err(AdapterError::new(failures.1, &self.name, "capturing adapter: scripted send failure"));
            }
        }
        lock(&self.sent).push((target.clone(), response));
        self.sends.notify_waiters();
        Ok(())
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the data (a log, a counter) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn hands_out_injected_messages_once() {
        let adapter = CapturingAdapter::new("test");
        let first = adapter.inject_text("test:c1", "alice", "hello");
        let mut stream = adapter.start().await.unwrap();
        assert_eq!(stream.next().await, Some(first));

        let mut again = adapter.start().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(20), again.next()).await;
        assert!(waited.is_err(), "a second start must not yield messages");
    }

    #[tokio::test]
    async fn records_sends_and_fails_on_demand() {
        let adapter = CapturingAdapter::new("test");
        let message = adapter.inject_text("test:c1", "alice", "hello");
        adapter.fail_next(1, AdapterErrorKind::Permanent);
        let error = adapter.send(&message, OutboundResponse::text("lost")).await.unwrap_err();
        assert_eq!(error.kind(), AdapterErrorKind::Permanent);
        assert_eq!(adapter.failed_sends(), 1);

        adapter.send(&message, OutboundResponse::text("hi")).await.unwrap();
        adapter.send(&message, OutboundResponse::Reaction { emoji: "👍".into() }).await.unwrap();
        assert_eq!(adapter.texts_for("test:c1"), vec!["hi"]);
        assert_eq!(adapter.responses_for("test:c1").len(), 2);
        assert!(adapter.texts_for("test:other").is_empty());
        assert_eq!(adapter.sent().len(), 2);
    }

    #[tokio::test]
    async fn wait_for_texts_wakes_on_send() {
        let adapter = Arc::new(CapturingAdapter::new("test"));
        let message = adapter.inject_text("test:c1", "alice", "hello");
        let sender = Arc::clone(&adapter);
        let sending = tokio::spawn(async move {
            for text in ["one", "two"] {
                tokio::task::yield_now().await;
                sender.send(&message, OutboundResponse::text(text)).await.unwrap();
            }
        });
        let texts = adapter.wait_for_texts("test:c1", 2, Duration::from_secs(5)).await;
        assert_eq!(texts, vec!["one", "two"]);
        sending.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waited 1s for 1 text(s) in test:c1")]
    async fn wait_for_texts_panics_on_timeout() {
        let adapter = CapturingAdapter::new("test");
        adapter.wait_for_texts("test:c1", 1, Duration::from_secs(1)).await;
    }
}

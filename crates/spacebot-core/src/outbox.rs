//! The outbox: delivers a conversation's responses through the adapter each message came from,
//! retrying transient failures within a [`DeliveryPolicy`], and publishes what it did as
//! [`RuntimeEvent`]s. Everything it delivers or publishes passes its [`Scrubber`] first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::adapter::MessagingAdapter;
use crate::error::{AdapterError, AdapterErrorKind};
use crate::event::RuntimeEvent;
use crate::ids::AgentId;
use crate::message::{InboundMessage, OutboundResponse};
use crate::scrub::Scrubber;

/// How the outbox retries transient delivery failures.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DeliveryPolicy {
    /// Attempts per response, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Give up on one attempt after this long.
    pub attempt_timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self { attempts: 3, initial_backoff: Duration::from_millis(250), attempt_timeout: Duration::from_secs(30) }
    }
}

/// Delivers responses to the adapter an inbound message came from, retrying transient failures,
/// and publishes what it did as [`RuntimeEvent`]s.
#[derive(Clone)]
pub struct Outbox {
    adapters: Arc<AdapterSet>,
    events: broadcast::Sender<RuntimeEvent>,
    policy: DeliveryPolicy,
    scrubber: Scrubber,
}

/// The adapters a runtime delivers through, by runtime key.
#[derive(Default)]
pub struct AdapterSet {
    adapters: Vec<Arc<dyn MessagingAdapter>>,
}

impl AdapterSet {
    /// A set of adapters; later ones with the same name replace earlier ones.
    pub fn new(adapters: Vec<Arc<dyn MessagingAdapter>>) -> Self {
        let mut set = Self::default();
        for adapter in adapters {
            set.adapters.retain(|a| a.name() != adapter.name());
            set.adapters.push(adapter);
        }
        set
    }

    /// The adapter with this runtime key.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn MessagingAdapter>> {
        self.adapters.iter().find(|a| a.name() == name)
    }

    /// All adapters.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn MessagingAdapter>> {
        self.adapters.iter()
    }
}

impl Outbox {
    /// An outbox over these adapters, publishing to `events`.
    pub fn new(adapters: Arc<AdapterSet>, events: broadcast::Sender<RuntimeEvent>, policy: DeliveryPolicy) -> Self {
        Self { adapters, events, policy, scrubber: Scrubber::new() }
    }

    /// Scrubs with `scrubber` (by default, one that masks credential-shaped tokens only).
    pub fn with_scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// The scrubber everything outbound passes: whoever records an outgoing message scrubs it with
    /// this one first, so the log holds what was sent.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// Publishes an event to runtime observers, secrets masked. Having none is fine.
    pub fn publish(&self, event: RuntimeEvent) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(self.scrubber.event(event));
        }
    }

    /// Delivers `response` in the context of `target`, secrets masked, retrying transient
    /// failures.
    ///
    /// Typing indicators get one attempt: a late indicator is worse than none.
    pub async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let response = self.scrubber.response(response);
        let result = self.deliver(target, &response).await;
        if self.events.receiver_count() == 0 {
            return result;
        }
        let agent = target.agent.clone().unwrap_or_else(|| AgentId::new(""));
        let event = match &result {
            Ok(()) => RuntimeEvent::ResponseSent {
                agent,
                conversation: target.conversation.clone(),
                adapter: target.adapter.clone(),
                response,
            },
            Err(error) => RuntimeEvent::DeliveryFailed {
                agent,
                conversation: target.conversation.clone(),
                adapter: target.adapter.clone(),
                error: error.to_string(),
            },
        };
        self.publish(event);
        result
    }

    async fn deliver(&self, target: &InboundMessage, response: &OutboundResponse) -> Result<(), AdapterError> {
        let Some(adapter) = self.adapters.get(&target.adapter) else {
            return Err(AdapterError::permanent(&target.adapter, "no messaging adapter with this name is running"));
        };
        let attempts = match response {
            OutboundResponse::Status { .. } => 1,
            _ => self.policy.attempts.max(1),
        };
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 1;
        loop {
            let result = tokio::time::timeout(self.policy.attempt_timeout, adapter.send(target, response.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(AdapterError::new(
                        AdapterErrorKind::Transient,
                        adapter.name(),
                        format!("send timed out after {:?}", self.policy.attempt_timeout),
                    ))
                });
            match result {
                Err(error) if error.is_transient() && attempt < attempts => {
                    tracing::warn!(adapter = adapter.name(), attempt, %error, "delivery failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

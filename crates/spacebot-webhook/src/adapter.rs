//! The webhook adapter: inbound arrives through `POST /webhook/{agent}`, replies are read back
//! through the API and the event stream, so delivery is recording, which the channel already did.

use async_trait::async_trait;

use spacebot_core::{AdapterError, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse};

/// The runtime key (and message source) of the webhook adapter.
pub const WEBHOOK_ADAPTER: &str = "webhook";

/// The adapter that owns `webhook:` conversations.
#[derive(Debug, Default)]
pub struct WebhookAdapter;

#[async_trait]
impl MessagingAdapter for WebhookAdapter {
    fn name(&self) -> &str {
        WEBHOOK_ADAPTER
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        // Webhook messages are submitted by the HTTP handler directly, so that the request is
        // answered only once the message is durable; this stream never yields.
        Ok(Box::pin(futures::stream::pending()))
    }

    async fn send(&self, _target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        match response {
            // The API serves messages, not files: say so rather than drop the file.
            OutboundResponse::File { .. } => Err(AdapterError::unsupported(
                WEBHOOK_ADAPTER,
                "webhook conversations can't receive files; they stay in the agent's workspace",
            )),
            // Replies are stored by the channel and published as events; callers poll or subscribe.
            _ => Ok(()),
        }
    }
}

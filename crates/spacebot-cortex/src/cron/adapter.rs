//! The `cron` messaging adapter: the adapter of the fresh conversations cron runs happen in.
//!
//! A run's conversation answers through it like any other, but what it says there goes nowhere:
//! the scheduler reads the run's first reply from the log and delivers it to the job's target
//! itself. Registering it keeps the outbox from failing those deliveries as unknown.

use async_trait::async_trait;

use spacebot_core::{AdapterError, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse};

/// The runtime key (and message source) of the adapter cron runs happen in.
pub const CRON_ADAPTER: &str = "cron";

/// The adapter of `cron:` conversations; register it with the runtime that runs the jobs.
#[derive(Debug, Default)]
pub struct CronAdapter;

#[async_trait]
impl MessagingAdapter for CronAdapter {
    fn name(&self) -> &str {
        CRON_ADAPTER
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        // The scheduler submits runs itself; nothing arrives from outside.
        Ok(Box::pin(futures::stream::pending()))
    }

    async fn send(&self, _target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        match response {
            // Only the reply's text reaches the job's target; a file would be lost without a word.
            OutboundResponse::File { .. } => Err(AdapterError::unsupported(
                CRON_ADAPTER,
                "a scheduled run delivers its reply's text only, not files",
            )),
            // The reply is recorded in the run's conversation; the scheduler delivers it from there.
            _ => Ok(()),
        }
    }
}

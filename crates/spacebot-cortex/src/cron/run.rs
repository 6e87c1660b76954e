//! One run of a cron job: a fresh conversation (`cron:<job>:<run>`) gets the job's prompt and
//! answers it with the agent's full channel toolset; the first reply it records is delivered to
//! the job's target (recorded in the target conversation, then sent through its adapter), and
//! the run is recorded when it starts and when it ends, its outcome counted by the breaker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use spacebot_core::{
    AgentId, BreakerChange, CHANNEL_KEY, ConversationId, CronJob, CronOutcome, CronRun, CronStore, InboundMessage,
    MessageId, OutboundResponse, Role, RuntimeEvent, RuntimeHandle, Sender, StoredMessage, TurnOutcome,
};

use super::CronSettings;
use super::adapter::CRON_ADAPTER;

/// How many messages of the run's conversation are read to find its first reply.
const HISTORY_LIMIT: usize = 50;

/// What a run needs, cloned into its task.
#[derive(Clone)]
pub(crate) struct Runner {
    pub(crate) store: Arc<dyn CronStore>,
    pub(crate) settings: CronSettings,
    pub(crate) handle: RuntimeHandle,
}

impl Runner {
    /// Records a run of `job` that did not start because the previous one was still going.
    pub(crate) async fn overlapped(&self, job: &CronJob) {
        let now = self.settings.clock.now();
        let id = MessageId::generate().to_string();
        tracing::warn!(agent = %job.agent, job = job.id, "cron run skipped: the previous run is still going");
        let run = CronRun::new(id.clone(), job.agent.clone(), job.id.clone(), run_conversation(job, &id), now);
        if let Err(error) = self.store.run_started(&run).await {
            tracing::error!(job = job.id, %error, "can't record a skipped cron run");
        }
        if let Err(error) = self.store.run_finished(&id, CronOutcome::Overlapped, None, now).await {
            tracing::error!(job = job.id, %error, "can't record a skipped cron run");
        }
    }

    /// Runs `job` once, to the end: started, answered (or failed, or timed out), delivered,
    /// recorded, counted.
    pub(crate) async fn run(self, job: CronJob) {
        let id = MessageId::generate().to_string();
        let conversation = run_conversation(&job, &id);
        let run = CronRun::new(
            id.clone(),
            job.agent.clone(),
            job.id.clone(),
            conversation.clone(),
            self.settings.clock.now(),
        );
        if let Err(error) = self.store.run_started(&run).await {
            tracing::error!(job = job.id, %error, "can't record the start of a cron run");
        }
        tracing::info!(agent = %job.agent, job = job.id, run = id, "cron run started");
        let timeout = job.timeout.unwrap_or(self.settings.default_timeout);
        let outcome = self.answer(&job, &id, &conversation, timeout).await;
        let (delivery, delivered_ok) = match outcome {
            CronOutcome::Replied => match self.first_reply(&job.agent, &conversation).await {
                Some(text) => match self.deliver(&job, text).await {
                    Ok(()) => ("delivered".to_owned(), true),
                    Err(reason) => (format!("failed: {reason}"), false),
                },
                None => ("nothing to deliver".to_owned(), true),
            },
            _ => ("nothing to deliver".to_owned(), true),
        };
        tracing::info!(agent = %job.agent, job = job.id, run = id, outcome = outcome.as_str(), delivery, "cron run ended");
        if let Err(error) = self.store.run_finished(&id, outcome, Some(&delivery), self.settings.clock.now()).await {
            tracing::error!(job = job.id, %error, "can't record the end of a cron run");
        }
        let failed = outcome.is_failure() || !delivered_ok;
        match self.store.count_outcome(&job.agent, &job.id, failed, self.settings.breaker_limit).await {
            Ok(BreakerChange::Tripped) => {
                tracing::warn!(agent = %job.agent, job = job.id, "cron job disabled after consecutive failures");
                let notice = format!(
                    "⚠️ The scheduled job `{}` failed {} times in a row and has been disabled. Fix it and create it again to resume.",
                    job.id, self.settings.breaker_limit
                );
                if let Err(reason) = self.deliver(&job, notice).await {
                    tracing::warn!(job = job.id, reason, "can't tell the cron job's target it was disabled");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::error!(job = job.id, %error, "can't count a cron run's outcome"),
        }
    }

    /// Submits the prompt to the run's conversation and waits for the turn that answers it.
    async fn answer(&self, job: &CronJob, id: &str, conversation: &ConversationId, timeout: Duration) -> CronOutcome {
        let mut events = self.handle.subscribe();
        let sender = Sender::new(CRON_ADAPTER).with_display_name(format!("scheduled job {}", job.id));
        let message = InboundMessage::text(CRON_ADAPTER, conversation.clone(), sender, job.prompt.as_str())
            .with_id(run_message_id(id))
            .with_agent(job.agent.clone())
            .with_direct(true);
        let message_id = match self.handle.submit(message).await {
            Ok(message_id) => message_id,
            // A stop is not the job's fault: it doesn't count against the breaker.
            Err(spacebot_core::Error::ShuttingDown) => return CronOutcome::Interrupted,
            Err(error) => {
                tracing::warn!(job = job.id, %error, "can't start a cron run");
                return CronOutcome::Failed;
            }
        };
        let wait = self.turn_outcome(&mut events, &job.agent, conversation, &message_id);
        match tokio::time::timeout(timeout, wait).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(job = job.id, ?timeout, "cron run timed out");
                let reason = "the scheduled run timed out";
                if let Err(error) = self.handle.restart_conversation(&job.agent, conversation, reason).await {
                    tracing::warn!(job = job.id, %error, "can't end a timed-out cron run");
                }
                CronOutcome::TimedOut
            }
        }
    }

    async fn turn_outcome(
        &self,
        events: &mut broadcast::Receiver<RuntimeEvent>,
        agent: &AgentId,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> CronOutcome {
        loop {
            match events.recv().await {
                Ok(RuntimeEvent::TurnFinished { agent: a, conversation: c, outcome, message: answered, .. })
                    if &a == agent && &c == conversation && answered.as_ref().is_none_or(|m| m == message) =>
                {
                    return match outcome {
                        TurnOutcome::Replied => CronOutcome::Replied,
                        TurnOutcome::Skipped => CronOutcome::Skipped,
                        _ => CronOutcome::Failed,
                    };
                }
                Ok(_) => {}
                // Events were missed: the log says whether the message was answered.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match self.handle.log().unhandled_in(agent, conversation).await {
                        Ok(unhandled) if !unhandled.contains(message) => {
                            return match self.first_reply(agent, conversation).await {
                                Some(_) => CronOutcome::Replied,
                                None => CronOutcome::Skipped,
                            };
                        }
                        _ => {}
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return CronOutcome::Interrupted,
            }
        }
    }

    /// The first reply the run's conversation recorded.
    async fn first_reply(&self, agent: &AgentId, conversation: &ConversationId) -> Option<String> {
        match self.handle.log().history(agent, conversation, HISTORY_LIMIT).await {
            Ok(history) => history.into_iter().find(|m| m.role == Role::Assistant).map(|m| m.text),
            Err(error) => {
                tracing::error!(%conversation, %error, "can't read a cron run's reply");
                None
            }
        }
    }

    /// Records `text` in the job's target conversation (the one that created the job, else the
    /// conversation named `deliver_to`, which for a webhook target is the webhook conversation
    /// itself) and sends it through the target's adapter.
    async fn deliver(&self, job: &CronJob, text: String) -> Result<(), String> {
        let Some((adapter, target)) = job.delivery_target() else {
            return Err(format!("`deliver_to` '{}' is not `adapter:target`", job.deliver_to));
        };
        let platform = adapter.split(':').next().unwrap_or(adapter);
        // A job made in a conversation delivers there; the conversation's own id may say more
        // than `deliver_to` does (a Discord guild, a Slack thread).
        let conversation = job.conversation.clone().unwrap_or_else(|| ConversationId::new(job.deliver_to.as_str()));
        let text = self.handle.scrubber().scrub_owned(text);
        let stored = StoredMessage::new(
            job.agent.clone(),
            conversation.clone(),
            Role::Assistant,
            job.agent.as_str(),
            text.as_str(),
        );
        self.handle.log().record_reply(&stored, &[]).await.map_err(|error| error.to_string())?;
        let target_message = InboundMessage::text(platform, conversation, Sender::new(CRON_ADAPTER), "")
            .with_adapter(adapter)
            .with_agent(job.agent.clone())
            .with_metadata(CHANNEL_KEY, serde_json::Value::from(target));
        self.handle.deliver(&target_message, OutboundResponse::text(text)).await.map_err(|error| error.to_string())
    }
}

/// The id of the message a run starts with.
pub(crate) fn run_message_id(run: &str) -> MessageId {
    MessageId::new(format!("{CRON_ADAPTER}:{run}"))
}

/// The fresh conversation a run happens in.
fn run_conversation(job: &CronJob, run: &str) -> ConversationId {
    ConversationId::new(format!("{CRON_ADAPTER}:{}:{run}", job.id))
}

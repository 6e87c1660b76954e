//! `GET /metrics`: the daemon's figures in the Prometheus text format (version 0.0.4), kept with
//! the `prometheus-client` crate. Every name starts with `spacebot_`.
//!
//! Where each figure comes from:
//! - turns and their latency, and processes' ends: the runtime's event stream, which
//!   [`Metrics::follow`] reads for as long as the daemon runs;
//! - model requests, their latency and tokens: [`Metrics::meter`] wraps each agent's model,
//!   once per process kind; with a [`UsageLedger`] each call's tokens are also recorded durably
//!   (by the [`UsageWriter`] task, off the model call's path);
//! - live processes and conversations: read from the runtime at each scrape.
//!
//! The last [`RECENT_TURNS`] turns are also kept with their end time and duration, for
//! `GET /api/turns` and the portal's latency plot; a longer history is Prometheus's to keep.
//!
//! The event stream is a bounded broadcast: a reader that falls behind misses events. A missed
//! stretch is counted in `spacebot_metrics_events_missed_total` and logged, so a gap shows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use spacebot_core::{
    AgentId, ChatRequest, ChatResponse, ChatStream, ConversationId, LanguageModel, LlmError, LlmErrorKind,
    ProcessChange, ProcessKind, RuntimeEvent, RuntimeHandle, StreamEvent, TurnOutcome, UsageLedger, UsageRow,
};

/// How many of the latest turns [`Metrics::recent_turns`] keeps.
pub const RECENT_TURNS: usize = 1000;

/// A finished turn, as `GET /api/turns` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TurnSample {
    /// When it ended.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The agent.
    pub agent: AgentId,
    /// The conversation.
    pub conversation: ConversationId,
    /// `replied`, `skipped` or `failed`.
    pub outcome: &'static str,
    /// From its start to its end.
    pub seconds: f64,
}

/// The `Content-Type` of what [`Metrics::render`] writes.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TurnLabels {
    agent: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    agent: String,
    process: &'static str,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    agent: String,
    process: &'static str,
    model: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    agent: String,
    process: &'static str,
    model: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    agent: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessEndLabels {
    agent: String,
    kind: &'static str,
    state: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 5 ms to about 80 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The daemon's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    families: Families,
}

/// Hands each answered call's usage to the [`UsageWriter`].
#[derive(Clone)]
struct UsageSender(mpsc::UnboundedSender<UsageRow>);

/// The metric families (each a cheap handle onto its shared values).
#[derive(Clone)]
struct Families {
    turns: Family<TurnLabels, Counter>,
    turn_seconds: Histograms<AgentLabels>,
    model_requests: Family<RequestLabels, Counter>,
    model_seconds: Histograms<ModelLabels>,
    tokens: Family<TokenLabels, Counter>,
    processes: Family<ProcessLabels, Gauge>,
    process_ends: Family<ProcessEndLabels, Counter>,
    conversations: Gauge,
    events_missed: Counter,
    usage: Option<UsageSender>,
    /// The latest turns, oldest first, at most [`RECENT_TURNS`].
    recent: Arc<Mutex<VecDeque<TurnSample>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with every Spacebot metric registered, whose metered models also hand
    /// their usage to the returned writer, which records it ([`UsageWriter::run`]).
    pub fn recording_usage() -> (Self, UsageWriter) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let metrics = Self::build(Some(UsageSender(sender)));
        (metrics, UsageWriter { receiver })
    }

    /// An empty registry with every Spacebot metric registered.
    pub fn new() -> Self {
        Self::build(None)
    }

    fn build(usage: Option<UsageSender>) -> Self {
        let families = Families {
            turns: Family::default(),
            turn_seconds: Family::new_with_constructor(latency_histogram),
            model_requests: Family::default(),
            model_seconds: Family::new_with_constructor(latency_histogram),
            tokens: Family::default(),
            processes: Family::default(),
            process_ends: Family::default(),
            conversations: Gauge::default(),
            events_missed: Counter::default(),
            usage,
            recent: Arc::default(),
        };
        let mut registry = Registry::with_prefix("spacebot");
        let f = families.clone();
        registry.register("turns", "Turns finished, by agent and outcome (replied, skipped, failed)", f.turns);
        registry.register("turn_duration_seconds", "Time from a turn's start to its end", f.turn_seconds);
        registry.register(
            "model_requests",
            "Model requests, by agent, process kind, model and status (ok or the error kind)",
            f.model_requests,
        );
        registry.register("model_request_duration_seconds", "Time a model request took", f.model_seconds);
        registry.register("model_tokens", "Tokens the providers reported, by direction (input, output)", f.tokens);
        registry.register("processes", "Live branches, workers and other processes, by kind", f.processes);
        registry.register("process_ends", "Processes that ended, by kind and terminal state", f.process_ends);
        registry.register("conversations", "Conversations with a live channel", f.conversations);
        registry.register(
            "metrics_events_missed",
            "Runtime events the metrics reader missed because it fell behind",
            f.events_missed,
        );
        Self { inner: Arc::new(Inner { registry, families }) }
    }

    /// `model` as `agent`'s processes of kind `process` use it, recording each request's status,
    /// latency and tokens (and, with a ledger, its usage).
    pub fn meter(
        &self,
        agent: &AgentId,
        process: ProcessKind,
        model: Arc<dyn LanguageModel>,
    ) -> Arc<dyn LanguageModel> {
        let labels =
            ModelLabels { agent: agent.to_string(), process: process.as_str(), model: model.name().to_owned() };
        Arc::new(MeteredModel { model, labels, agent: agent.clone(), process, families: self.inner.families.clone() })
    }

    /// Records what the runtime's events tell (turns, their latency, processes' ends) until the
    /// stream closes or `stop` is cancelled.
    pub async fn follow(self, mut events: broadcast::Receiver<RuntimeEvent>, stop: CancellationToken) {
        let mut turns_started: HashMap<(AgentId, ConversationId), Instant> = HashMap::new();
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => self.inner.families.record(event, &mut turns_started),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the metrics fell behind the runtime's events; some are not counted");
                    self.inner.families.events_missed.inc_by(missed);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The latest turns (at most [`RECENT_TURNS`]), oldest first.
    pub fn recent_turns(&self) -> Vec<TurnSample> {
        self.inner.families.recent.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// The metrics in the Prometheus text format, with the runtime's live figures read now.
    pub(crate) async fn render(&self, runtime: &RuntimeHandle) -> String {
        let families = &self.inner.families;
        if let Ok(status) = runtime.status().await {
            families.conversations.set(i64::try_from(status.conversations).unwrap_or(i64::MAX));
        }
        let mut live: HashMap<ProcessLabels, i64> = HashMap::new();
        for process in runtime.processes().list() {
            *live
                .entry(ProcessLabels { agent: process.agent.to_string(), kind: process.kind.as_str() })
                .or_default() += 1;
        }
        // Kinds that had processes before and have none now read 0, not their last value.
        families.processes.clear();
        for agent in runtime.agents() {
            for kind in ["branch", "worker", "compactor"] {
                let labels = ProcessLabels { agent: agent.to_string(), kind };
                families.processes.get_or_create(&labels).set(live.remove(&labels).unwrap_or(0));
            }
        }
        for (labels, count) in live {
            families.processes.get_or_create(&labels).set(count);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry) {
            tracing::error!(%error, "can't encode the metrics");
        }
        text
    }
}

/// Writes the usage of answered model calls to the ledger, in the order they came.
pub struct UsageWriter {
    receiver: mpsc::UnboundedReceiver<UsageRow>,
}

impl std::fmt::Debug for UsageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWriter").finish_non_exhaustive()
    }
}

impl UsageWriter {
    /// Writes usage to `ledger` as it comes until `stop` is cancelled, then what is still
    /// queued. Cancel it after the last model call (the daemon does so after the runtime has shut
    /// down).
    pub async fn run(mut self, ledger: Arc<dyn UsageLedger>, stop: CancellationToken) {
        loop {
            let row = tokio::select! {
                biased;
                row = self.receiver.recv() => row,
                () = stop.cancelled() => break,
            };
            let Some(row) = row else { return };
            write(&*ledger, &row).await;
        }
        self.receiver.close();
        while let Some(row) = self.receiver.recv().await {
            write(&*ledger, &row).await;
        }
    }
}

async fn write(ledger: &dyn UsageLedger, row: &UsageRow) {
    {
        if let Err(error) = ledger.add_usage(row).await {
            tracing::error!(agent = %row.agent, model = row.model, %error, "can't record a model call's usage");
        }
    }
}

impl Families {
    fn record(&self, event: RuntimeEvent, turns_started: &mut HashMap<(AgentId, ConversationId), Instant>) {
        match event {
            RuntimeEvent::TurnStarted { agent, conversation } => {
                turns_started.insert((agent, conversation), Instant::now());
            }
            RuntimeEvent::TurnFinished { agent, conversation, outcome, .. } => {
                let started = turns_started.remove(&(agent.clone(), conversation.clone()));
                let label = agent.to_string();
                if let Some(started) = started {
                    let seconds = started.elapsed().as_secs_f64();
                    self.turn_seconds.get_or_create(&AgentLabels { agent: label.clone() }).observe(seconds);
                    let sample = TurnSample {
                        at: chrono::Utc::now(),
                        agent,
                        conversation,
                        outcome: outcome_label(outcome),
                        seconds,
                    };
                    let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
                    if recent.len() == RECENT_TURNS {
                        recent.pop_front();
                    }
                    recent.push_back(sample);
                }
                self.turns.get_or_create(&TurnLabels { agent: label, outcome: outcome_label(outcome) }).inc();
            }
            RuntimeEvent::Process(event) => {
                if let ProcessChange::Finished { state, .. } = event.change {
                    let labels = ProcessEndLabels {
                        agent: event.agent.to_string(),
                        kind: event.kind.as_str(),
                        state: state.as_str(),
                    };
                    self.process_ends.get_or_create(&labels).inc();
                }
            }
            _ => {}
        }
    }

    fn model_request(&self, labels: &ModelLabels, status: &'static str, took: Duration) {
        let request =
            RequestLabels { agent: labels.agent.clone(), process: labels.process, model: labels.model.clone(), status };
        self.model_requests.get_or_create(&request).inc();
        self.model_seconds.get_or_create(labels).observe(took.as_secs_f64());
    }

    /// Counts an answered call's tokens, and hands its usage to the ledger's writer.
    fn answered(&self, model: &MeteredModel, response: &ChatResponse) {
        let labels = &model.labels;
        let usage = response.usage;
        for (direction, count) in [("input", usage.input_tokens), ("output", usage.output_tokens)] {
            let labels = TokenLabels {
                agent: labels.agent.clone(),
                process: labels.process,
                model: labels.model.clone(),
                direction,
            };
            self.tokens.get_or_create(&labels).inc_by(count);
        }
        if let Some(UsageSender(sender)) = &self.usage {
            let row = UsageRow::new(
                chrono::Utc::now().date_naive(),
                model.agent.clone(),
                labels.model.clone(),
                model.process,
            )
            .with_counts(1, usage.input_tokens, usage.output_tokens);
            // Closed only once the writer has stopped, at the end of shutdown.
            if sender.send(row).is_err() {
                tracing::warn!(agent = %model.agent, "a model call's usage came after the usage writer stopped; not recorded");
            }
        }
    }
}

fn outcome_label(outcome: TurnOutcome) -> &'static str {
    match outcome {
        TurnOutcome::Replied => "replied",
        TurnOutcome::Skipped => "skipped",
        TurnOutcome::Failed => "failed",
        _ => "other",
    }
}

fn status_label(error: &LlmError) -> &'static str {
    match error.kind() {
        LlmErrorKind::RateLimited => "rate_limited",
        LlmErrorKind::ServerError => "server_error",
        LlmErrorKind::Timeout => "timeout",
        LlmErrorKind::Unreachable => "unreachable",
        LlmErrorKind::Untrusted => "untrusted",
        LlmErrorKind::Auth => "auth",
        LlmErrorKind::InvalidRequest => "invalid_request",
        LlmErrorKind::InvalidResponse => "invalid_response",
        LlmErrorKind::NotConfigured => "not_configured",
        _ => "error",
    }
}

/// A model whose requests are counted.
#[derive(Clone)]
struct MeteredModel {
    model: Arc<dyn LanguageModel>,
    labels: ModelLabels,
    agent: AgentId,
    process: ProcessKind,
    families: Families,
}

#[async_trait]
impl LanguageModel for MeteredModel {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn context_window(&self) -> usize {
        self.model.context_window()
    }

    fn calls_tools(&self) -> bool {
        self.model.calls_tools()
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let result = self.model.complete(request).await;
        match &result {
            Ok(response) => {
                self.families.model_request(&self.labels, "ok", started.elapsed());
                self.families.answered(self, response);
            }
            Err(error) => self.families.model_request(&self.labels, status_label(error), started.elapsed()),
        }
        result
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let started = Instant::now();
        let stream = match self.model.stream(request).await {
            Ok(stream) => stream,
            Err(error) => {
                self.families.model_request(&self.labels, status_label(&error), started.elapsed());
                return Err(error);
            }
        };
        // Counted when it ends: with its tokens when it completes, as failed when it breaks off.
        let metered = self.clone();
        Ok(Box::pin(stream.inspect(move |event| match event {
            Ok(StreamEvent::Done(response)) => {
                metered.families.model_request(&metered.labels, "ok", started.elapsed());
                metered.families.answered(&metered, response);
            }
            Err(error) => metered.families.model_request(&metered.labels, status_label(error), started.elapsed()),
            Ok(_) => {}
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacebot_core::ProcessKind;

    #[test]
    fn names_carry_the_prefix_and_counters_their_total_suffix() {
        let metrics = Metrics::new();
        let families = &metrics.inner.families;
        let mut started = HashMap::new();
        families.record(
            RuntimeEvent::TurnFinished {
                agent: AgentId::new("main"),
                conversation: ConversationId::new("c"),
                outcome: TurnOutcome::Replied,
                message: None,
                usage: spacebot_core::Usage::default(),
            },
            &mut started,
        );
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.inner.registry).expect("encodes");
        assert!(text.contains("spacebot_turns_total{agent=\"main\",outcome=\"replied\"} 1"), "{text}");
        assert!(text.contains("# TYPE spacebot_turns_total counter"), "{text}");
        assert_eq!(ProcessKind::Worker.as_str(), "worker", "the kinds the scrape lists by name");
        assert!(metrics.recent_turns().is_empty(), "a turn seen ending but not starting has no duration");
    }

    #[test]
    fn the_latest_turns_are_kept_with_their_durations_up_to_the_cap() {
        let metrics = Metrics::new();
        let families = &metrics.inner.families;
        let mut started = HashMap::new();
        for index in 0..RECENT_TURNS + 5 {
            let conversation = ConversationId::new(format!("c{index}"));
            let agent = AgentId::new("main");
            families.record(
                RuntimeEvent::TurnStarted { agent: agent.clone(), conversation: conversation.clone() },
                &mut started,
            );
            let outcome = if index % 2 == 0 { TurnOutcome::Replied } else { TurnOutcome::Skipped };
            families.record(
                RuntimeEvent::TurnFinished {
                    agent,
                    conversation,
                    outcome,
                    message: None,
                    usage: spacebot_core::Usage::default(),
                },
                &mut started,
            );
        }
        let recent = metrics.recent_turns();
        assert_eq!(recent.len(), RECENT_TURNS);
        assert_eq!(recent[0].conversation.as_str(), "c5", "the oldest went first");
        assert_eq!(recent[RECENT_TURNS - 1].conversation.as_str(), format!("c{}", RECENT_TURNS + 4));
        assert_eq!((recent[0].outcome, recent[1].outcome), ("skipped", "replied"));
        assert!(recent.iter().all(|turn| turn.seconds >= 0.0 && turn.seconds < 60.0));
        assert!(recent.windows(2).all(|pair| pair[0].at <= pair[1].at), "in the order they ended");
    }
}

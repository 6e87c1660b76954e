//! The harness every test uses: the real runtime (router, adapter supervisor, outbox) running the
//! real `ChannelEngine`, over a `MemoryLog`, a `CapturingAdapter` and a `ScriptedModel`.

use std::sync::Arc;
use std::time::Duration;

use spacebot_agent::{AgentProfile, ChannelEngine};
use spacebot_core::{
    ChatMessage, ChatRequest, InboundMessage, OutboundResponse, Runtime, RuntimeEvent, StatusUpdate, TurnOutcome,
};
use spacebot_testing::{CapturingAdapter, MemoryLog, ScriptedModel};
use tokio::sync::broadcast;

/// The agent every test runs.
pub(crate) const AGENT: &str = "main";
/// The adapter's runtime key (and the source of injected messages).
pub(crate) const ADAPTER: &str = "test";
/// The conversation most tests talk in.
pub(crate) const CONV: &str = "test:c1";
/// How long (on the paused clock) a test waits for something before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

/// A running runtime and the fakes around it.
pub(crate) struct Harness {
    pub(crate) runtime: Runtime,
    pub(crate) adapter: Arc<CapturingAdapter>,
    events: broadcast::Receiver<RuntimeEvent>,
}

/// A profile for the test agent that uses `model`.
pub(crate) fn profile(model: &Arc<ScriptedModel>) -> AgentProfile {
    AgentProfile::new(AGENT).with_model(model.clone())
}

/// Starts a runtime hosting [`AGENT`] with a fresh adapter over `log`.
pub(crate) async fn start(profile: AgentProfile, log: Arc<MemoryLog>) -> Harness {
    start_with(vec![profile], &[AGENT], log).await
}

/// Starts a runtime hosting `agents` (the first is the default) with an engine that knows
/// `profiles`, and a fresh adapter, over `log`.
pub(crate) async fn start_with(profiles: Vec<AgentProfile>, agents: &[&str], log: Arc<MemoryLog>) -> Harness {
    let adapter = Arc::new(CapturingAdapter::new(ADAPTER));
    let mut builder =
        Runtime::builder().engine(Arc::new(ChannelEngine::new(profiles))).log(log).adapter(adapter.clone());
    for agent in agents {
        builder = builder.agent(*agent);
    }
    let runtime = builder.start().await.expect("runtime starts");
    let events = runtime.handle().subscribe();
    Harness { runtime, adapter, events }
}

impl Harness {
    /// Injects a text message from `alice` through the adapter.
    pub(crate) fn say(&self, conversation: &str, text: &str) -> InboundMessage {
        self.adapter.inject_text(conversation, "alice", text)
    }

    /// Waits for `count` more finished turns (any conversation) and returns their outcomes.
    pub(crate) async fn wait_turns(&mut self, count: usize) -> Vec<TurnOutcome> {
        let mut outcomes = Vec::new();
        while outcomes.len() < count {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Ok(RuntimeEvent::TurnFinished { outcome, .. })) => outcomes.push(outcome),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => panic!("runtime event stream failed: {error}"),
                Err(_) => panic!(
                    "waited {WAIT:?} for {count} finished turn(s), got {outcomes:?}; sent: {:#?}",
                    self.adapter.sent()
                ),
            }
        }
        outcomes
    }

    /// Waits until `conversation` has at least `count` texts and returns them.
    pub(crate) async fn wait_texts(&self, conversation: &str, count: usize) -> Vec<String> {
        self.adapter.wait_for_texts(conversation, count, WAIT).await
    }

    /// The responses sent in answer to the inbound message `message`.
    pub(crate) fn responses_to(&self, message: &InboundMessage) -> Vec<OutboundResponse> {
        self.adapter
            .sent()
            .into_iter()
            .filter(|(target, _)| target.id == message.id)
            .map(|(_, response)| response)
            .collect()
    }

    /// Shuts the runtime down and waits for every task to end.
    pub(crate) async fn shutdown(self) {
        self.runtime.shutdown().await;
    }
}

/// Lets every task run until all of them wait on the clock or on input. With the paused clock the
/// runtime only advances time when nothing else can run, so this sleep ends once all ready work is
/// done (and before any timer more than a second away fires).
pub(crate) async fn idle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The typing indicator response.
pub(crate) fn typing() -> OutboundResponse {
    OutboundResponse::Status { status: StatusUpdate::Typing }
}

/// The stop-typing response.
pub(crate) fn stop_typing() -> OutboundResponse {
    OutboundResponse::Status { status: StatusUpdate::StopTyping }
}

/// The envelope the channel wraps an inbound message in, as the model must see it (the same
/// format the channel rebuilds from the log after a restart).
pub(crate) fn envelope(message: &InboundMessage) -> String {
    format!(
        "[{} | {}] {}",
        message.timestamp.format("%Y-%m-%d %H:%M UTC"),
        message.sender.label(),
        message.content.text()
    )
}

/// The user turn for `message`, as it appears in a request.
pub(crate) fn user(message: &InboundMessage) -> ChatMessage {
    ChatMessage::user(envelope(message))
}

/// The text of the last user message of a request, without its envelope.
pub(crate) fn last_user_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find_map(|message| match message {
            ChatMessage::User { content } => Some(content.split_once("] ").map_or(content.as_str(), |(_, text)| text)),
            _ => None,
        })
        .unwrap_or_default()
        .to_owned()
}

/// The names of the tools offered in a request.
pub(crate) fn tool_names(request: &ChatRequest) -> Vec<String> {
    request.tools.iter().map(|tool| tool.name.clone()).collect()
}

/// Every piece of text in a request (system prompt, messages, tool calls and results).
pub(crate) fn request_text(request: &ChatRequest) -> String {
    serde_json::to_string(request).expect("requests serialise")
}

//! The harness every test uses: the real runtime (router, adapter supervisor, outbox) running the
//! real `ChannelEngine`, over a `MemoryLog`, a `CapturingAdapter` and a `ScriptedModel`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use spacebot_agent::{AgentProfile, ChannelEngine};
use spacebot_core::{
    ChatMessage, ChatRequest, InboundMessage, OutboundResponse, ProcessChange, ProcessEvent, ProcessId, ProcessKind,
    Runtime, RuntimeEvent, Scrubber, Sender, StatusUpdate, TerminalState, TurnOutcome,
};
use spacebot_testing::{CapturingAdapter, MemoryLog, ScriptedModel};

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
    process_events: broadcast::Receiver<RuntimeEvent>,
    seen_process_events: Vec<ProcessEvent>,
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
    start_scrubbed(profiles, agents, log, Scrubber::new()).await
}

/// [`start_with`], with this scrubber on everything outbound.
pub(crate) async fn start_scrubbed(
    profiles: Vec<AgentProfile>,
    agents: &[&str],
    log: Arc<MemoryLog>,
    scrubber: Scrubber,
) -> Harness {
    let adapter = Arc::new(CapturingAdapter::new(ADAPTER));
    let mut builder = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new(profiles)))
        .log(log)
        .adapter(adapter.clone())
        .scrubber(scrubber);
    for agent in agents {
        builder = builder.agent(*agent);
    }
    let runtime = builder.start().await.expect("runtime starts");
    let events = runtime.handle().subscribe();
    let process_events = runtime.handle().subscribe();
    Harness { runtime, adapter, events, process_events, seen_process_events: Vec::new() }
}

impl Harness {
    /// Injects a direct text message from `alice` through the adapter. Direct messages are never
    /// coalesced, so each is answered in its own turn.
    pub(crate) fn say(&self, conversation: &str, text: &str) -> InboundMessage {
        let message = InboundMessage::text(ADAPTER, conversation, Sender::new("alice"), text).with_direct(true);
        self.adapter.inject(message.clone());
        message
    }

    /// Injects `message` through the adapter, as it is.
    pub(crate) fn inject(&self, message: InboundMessage) -> InboundMessage {
        self.adapter.inject(message.clone());
        message
    }

    /// The texts sent to `conversation` so far.
    pub(crate) fn texts(&self, conversation: &str) -> Vec<String> {
        self.adapter.texts_for(conversation)
    }

    /// The texts sent in answer to `message`.
    pub(crate) fn texts_to(&self, message: &InboundMessage) -> Vec<String> {
        self.responses_to(message).iter().filter_map(|r| r.text_content().map(str::to_owned)).collect()
    }

    /// Injects a group-conversation text message from `sender` through the adapter.
    pub(crate) fn say_in_group(&self, conversation: &str, sender: &str, text: &str) -> InboundMessage {
        self.adapter.inject_text(conversation, sender, text)
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

    /// Every runtime event up to and including the next finished turn.
    pub(crate) async fn events_through_turn(&mut self) -> Vec<RuntimeEvent> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Ok(event)) => {
                    let end = matches!(event, RuntimeEvent::TurnFinished { .. });
                    seen.push(event);
                    if end {
                        return seen;
                    }
                }
                Ok(Err(error)) => panic!("runtime event stream failed: {error}"),
                Err(_) => panic!("waited {WAIT:?} for a turn to finish; saw {seen:#?}"),
            }
        }
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

    /// Every process event published so far, in order.
    pub(crate) fn process_events(&mut self) -> Vec<ProcessEvent> {
        loop {
            match self.process_events.try_recv() {
                Ok(RuntimeEvent::Process(event)) => self.seen_process_events.push(event),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(missed)) => panic!("missed {missed} events"),
                Err(_) => break,
            }
        }
        self.seen_process_events.clone()
    }

    /// The terminal states announced so far, per process, in order of announcement.
    pub(crate) fn finished(&mut self) -> Vec<(ProcessId, ProcessKind, TerminalState, String)> {
        self.process_events()
            .into_iter()
            .filter_map(|event| match event.change {
                ProcessChange::Finished { state, summary } => Some((event.process, event.kind, state, summary)),
                _ => None,
            })
            .collect()
    }

    /// The ids of processes that started, in order.
    pub(crate) fn started(&mut self) -> Vec<(ProcessId, ProcessKind)> {
        self.process_events()
            .into_iter()
            .filter(|event| matches!(event.change, ProcessChange::Started { .. }))
            .map(|event| (event.process, event.kind))
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
            ChatMessage::User { content, .. } => {
                Some(content.split_once("] ").map_or(content.as_str(), |(_, text)| text))
            }
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

/// The text of the first user message of a request (a worker's task, a branch's fork start).
pub(crate) fn first_user_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .find_map(|message| match message {
            ChatMessage::User { content, .. } => Some(content.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The raw text of the last user message of a request.
pub(crate) fn last_user_raw(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find_map(|message| match message {
            ChatMessage::User { content, .. } => Some(content.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The content of every tool result of the turn in progress (after the last user message), in
/// order. Earlier turns' tool calls and results stay in the history and are not counted.
pub(crate) fn tool_results(request: &ChatRequest) -> Vec<String> {
    let start = request.messages.iter().rposition(|message| matches!(message, ChatMessage::User { .. })).unwrap_or(0);
    request.messages[start..]
        .iter()
        .filter_map(|message| match message {
            ChatMessage::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

/// A scripted model whose context window a test sets between turns.
pub(crate) struct Windowed {
    pub(crate) inner: Arc<ScriptedModel>,
    pub(crate) window: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl spacebot_core::LanguageModel for Windowed {
    fn name(&self) -> &str {
        "scripted/windowed"
    }

    fn context_window(&self) -> usize {
        self.window.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn complete(&self, request: ChatRequest) -> Result<spacebot_core::ChatResponse, spacebot_core::LlmError> {
        self.inner.complete(request).await
    }
}

/// An agent whose channel model (a [`Windowed`] over `channel`) replies `reply` to everything,
/// with a scripted compactor model and these compaction settings.
pub(crate) struct WindowedAgent {
    pub(crate) channel: Arc<ScriptedModel>,
    pub(crate) compactor: Arc<ScriptedModel>,
    pub(crate) model: Arc<Windowed>,
    pub(crate) profile: AgentProfile,
}

/// See [`WindowedAgent`]; the window starts at `window` tokens.
pub(crate) fn windowed_agent(
    settings: spacebot_agent::CompactionSettings,
    reply: &str,
    window: usize,
) -> WindowedAgent {
    let channel = Arc::new(ScriptedModel::new().with_name("scripted/channel"));
    let content = reply.to_owned();
    channel.respond_with(move |_| {
        spacebot_testing::ScriptedTurn::tool_call(spacebot_agent::REPLY_TOOL, serde_json::json!({ "content": content }))
    });
    let compactor = Arc::new(ScriptedModel::new().with_name("scripted/compactor"));
    let model = Arc::new(Windowed { inner: channel.clone(), window: std::sync::atomic::AtomicUsize::new(window) });
    let profile = AgentProfile::new(AGENT)
        .with_model(model.clone())
        .with_process_model(ProcessKind::Compactor, compactor.clone())
        .with_system_prompt("You are a test agent.")
        .with_settings(spacebot_agent::ChannelSettings::default().with_compaction(settings));
    WindowedAgent { channel, compactor, model, profile }
}

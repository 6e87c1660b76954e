//! Idle channels are evicted: the runtime asks, and a real channel ends only when nothing is in
//! flight. A running worker, a result waiting for its relay turn and a burst waiting to be
//! answered each keep it; an idle one goes, and its next message is answered by a new channel
//! that reloads the history from the log. Messages racing a channel's exit are answered once,
//! in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use spacebot_agent::{ChannelEngine, ChannelSettings};
use spacebot_core::{
    AgentId, ChatMessage, Chronicle, ConversationId, ConversationLog, InboundMessage, MessageId, ProcessKind,
    ProcessRuns, Runtime, RuntimeSettings, Sender, StoreError, StoredMessage,
};
use spacebot_testing::{CapturingAdapter, MemoryLog};

use crate::processes::{Models, done, reply, spawn};
use crate::support::{ADAPTER, AGENT, CONV, WAIT, envelope, last_user_raw, last_user_text};

/// The conversation log, counting how often a channel loaded its history (once per start).
struct CountingLog {
    inner: Arc<MemoryLog>,
    loads: AtomicUsize,
}

impl CountingLog {
    fn new() -> Arc<Self> {
        Arc::new(Self { inner: Arc::new(MemoryLog::new()), loads: AtomicUsize::new(0) })
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ConversationLog for CountingLog {
    async fn record_inbound(&self, message: &InboundMessage) -> Result<bool, StoreError> {
        self.inner.record_inbound(message).await
    }

    async fn record_reply(&self, message: &StoredMessage, answers: &[MessageId]) -> Result<(), StoreError> {
        self.inner.record_reply(message, answers).await
    }

    async fn mark_handled(&self, agent: &AgentId, ids: &[MessageId]) -> Result<(), StoreError> {
        self.inner.mark_handled(agent, ids).await
    }

    async fn history(
        &self,
        agent: &AgentId,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.history(agent, conversation, limit).await
    }

    async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError> {
        self.inner.unhandled().await
    }

    async fn unhandled_in(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Vec<MessageId>, StoreError> {
        self.inner.unhandled_in(agent, conversation).await
    }

    fn chronicle(&self) -> Option<Arc<dyn Chronicle>> {
        self.inner.chronicle()
    }

    fn process_runs(&self) -> Option<Arc<dyn ProcessRuns>> {
        self.inner.process_runs()
    }
}

struct Evicting {
    runtime: Runtime,
    adapter: Arc<CapturingAdapter>,
    log: Arc<CountingLog>,
    models: Models,
}

/// A runtime evicting channels idle for `idle` (no cap), running the test agent on `models`.
async fn start(idle: Duration, settings: ChannelSettings) -> Evicting {
    start_with(RuntimeSettings::default().with_idle_timeout(Some(idle)).with_max_live(None), settings).await
}

async fn start_with(runtime: RuntimeSettings, settings: ChannelSettings) -> Evicting {
    let models = Models::new();
    let log = CountingLog::new();
    let adapter = Arc::new(CapturingAdapter::new(ADAPTER));
    let runtime = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new(vec![models.profile(settings)])))
        .log(log.clone())
        .adapter(adapter.clone())
        .agent(AGENT)
        .settings(runtime)
        .start()
        .await
        .expect("runtime starts");
    Evicting { runtime, adapter, log, models }
}

impl Evicting {
    fn say(&self, text: &str) -> InboundMessage {
        let message = InboundMessage::text(ADAPTER, CONV, Sender::new("alice"), text).with_direct(true);
        self.adapter.inject(message.clone());
        message
    }

    async fn live(&self) -> usize {
        self.runtime.handle().status().await.expect("status").conversations
    }

    async fn texts(&self, count: usize) -> Vec<String> {
        self.adapter.wait_for_texts(CONV, count, WAIT).await
    }

    fn live_workers(&self) -> usize {
        self.runtime.handle().processes().list().iter().filter(|p| p.kind == ProcessKind::Worker).count()
    }

    async fn unhandled(&self) -> usize {
        self.log.unhandled().await.expect("unhandled").len()
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_channel_goes_and_its_next_message_is_answered_with_the_history_reloaded() {
    let idle = Duration::from_secs(60);
    let h = start(idle, ChannelSettings::default()).await;
    h.models.channel.push_all([reply("Hello Ada."), reply("You are Ada.")]);

    let first = h.say("my name is Ada");
    assert_eq!(h.texts(1).await, ["Hello Ada."]);
    assert_eq!((h.live().await, h.log.loads()), (1, 1));

    tokio::time::sleep(idle + idle / 4 + Duration::from_secs(1)).await;
    assert_eq!(h.live().await, 0, "idle past the timeout: the channel ended");

    let second = h.say("what is my name?");
    assert_eq!(h.texts(2).await, ["Hello Ada.", "You are Ada."]);
    assert_eq!(h.log.loads(), 2, "a new channel loaded the history from the log");
    let request = h.models.channel.last_request().expect("a request");
    assert_eq!(
        request.messages,
        [
            ChatMessage::user(envelope(&first)),
            ChatMessage::assistant("Hello Ada."),
            ChatMessage::user(envelope(&second))
        ],
        "the reloaded history: what the log keeps of the first turn, then the new message"
    );
    assert_eq!(h.unhandled().await, 0);
    h.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_channel_with_a_running_worker_stays_and_goes_once_its_result_is_relayed() {
    let idle = Duration::from_secs(1);
    let h = start(idle, ChannelSettings::default()).await;
    h.models.channel.push_all([spawn("count the files"), reply("On it."), reply("There are 3 files.")]);
    h.models.worker.push(done("3 files").delay(Duration::from_secs(360)));

    h.say("how many files?");
    assert_eq!(h.texts(1).await, ["On it."]);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(h.live().await, 1, "idle 300 times over, but a worker is running");
    assert_eq!(h.live_workers(), 1, "the worker still runs");

    assert_eq!(h.texts(2).await, ["On it.", "There are 3 files."], "its result is relayed");
    assert_eq!(h.log.loads(), 1, "by the channel that started it");
    tokio::time::sleep(idle * 3).await;
    assert_eq!(h.live().await, 0, "idle once the result was relayed");
    assert_eq!(h.unhandled().await, 0);
    h.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_channel_with_a_result_waiting_for_its_relay_turn_is_not_evicted() {
    // Asked every 100 ms after 100 ms idle; the relay waits 2 s for more results.
    let idle = Duration::from_millis(100);
    let mut settings = ChannelSettings::default();
    settings.relay_window = Duration::from_secs(2);
    let h = start(idle, settings).await;
    h.models.channel.push_all([spawn("count the files"), reply("On it."), reply("There are 3 files.")]);
    h.models.worker.push(done("3 files").delay(Duration::from_secs(10)));

    h.say("how many files?");
    assert_eq!(h.texts(1).await, ["On it."]);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(h.live_workers(), 0, "the worker ended; its result waits for the relay window");
    assert_eq!(h.live().await, 1, "asked to go while a result waited, the channel stayed");

    assert_eq!(h.texts(2).await, ["On it.", "There are 3 files."]);
    let relay = last_user_raw(&h.models.channel.last_request().expect("the relay turn"));
    assert!(relay.contains("done: 3 files"), "{relay}");
    assert_eq!(h.log.loads(), 1, "the channel that started the worker relayed its result");
    h.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_channel_gathering_a_burst_is_not_evicted() {
    let idle = Duration::from_millis(100);
    let h = start(idle, ChannelSettings::default()).await;
    h.models.channel.push(reply("Hi both."));

    // Group messages 600 ms apart: the burst waits 1.5 s after the last, asked to go meanwhile.
    for (sender, text) in [("alice", "hi"), ("bob", "hello"), ("alice", "anyone here?")] {
        h.adapter.inject_text(CONV, sender, text);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(h.live().await, 1, "a burst is held");
    assert_eq!(h.models.channel.request_count(), 0, "not answered yet");

    assert_eq!(h.texts(1).await, ["Hi both."], "one answer for the burst, no error notice");
    let requests = h.models.channel.requests();
    assert_eq!(requests.len(), 1);
    let burst = last_user_raw(&requests[0]);
    for text in ["hi", "hello", "anyone here?"] {
        assert!(burst.contains(text), "{text:?} in {burst}");
    }
    assert_eq!(h.unhandled().await, 0, "every message of the burst is answered");
    tokio::time::sleep(idle * 3).await;
    assert_eq!(h.live().await, 0, "idle once the burst was answered");
    h.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_channel_stays_paused() {
    let idle = Duration::from_secs(1);
    let h = start(idle, ChannelSettings::default()).await;

    h.say("/pause");
    h.texts(1).await;
    tokio::time::sleep(idle * 60).await;
    assert_eq!(h.live().await, 1, "a pause lives only in the channel, so it is kept");
    h.say("are you there?");
    tokio::time::sleep(idle).await;
    assert_eq!(h.models.channel.request_count(), 0, "still paused: the message is skipped");
    assert_eq!(h.texts(1).await.len(), 1);
    h.runtime.shutdown().await;
}

/// Real threads, no timers: with a cap of 0, every conversation that starts asks all the others
/// to go, so messages keep arriving at channels deciding to end, ending or gone. Each is answered
/// once, in order, by the model (never with the error notice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_racing_channel_exits_are_each_answered_once_in_order() {
    const CONVERSATIONS: usize = 8;
    const ROUNDS: usize = 150;
    let cap_zero = RuntimeSettings::default().with_idle_timeout(None).with_max_live(Some(0));
    let h = start_with(cap_zero, ChannelSettings::default()).await;
    h.models.channel.respond_with(|request| reply(&format!("echo: {}", last_user_text(request))));
    let conversation = |c: usize| format!("{ADAPTER}:c{c}");

    for round in 0..ROUNDS {
        for c in 0..CONVERSATIONS {
            let message = InboundMessage::text(ADAPTER, conversation(c), Sender::new("alice"), format!("{c}-{round}"))
                .with_direct(true);
            h.adapter.inject(message);
            tokio::task::yield_now().await;
        }
        if round == 0 {
            h.adapter.wait_for_texts(&conversation(CONVERSATIONS - 1), 1, WAIT).await;
        }
    }
    for c in 0..CONVERSATIONS {
        let texts = h.adapter.wait_for_texts(&conversation(c), ROUNDS, WAIT).await;
        let expected: Vec<String> = (0..ROUNDS).map(|round| format!("echo: {c}-{round}")).collect();
        assert_eq!(texts, expected, "conversation {c}: each message answered once, in order");
    }
    assert_eq!(h.unhandled().await, 0);
    assert!(h.log.loads() > CONVERSATIONS, "channels were evicted and started again: {} loads", h.log.loads());
    h.runtime.shutdown().await;
}

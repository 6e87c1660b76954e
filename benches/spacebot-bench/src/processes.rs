//! `processes`: the harness's own cost per conversation, measured through the real runtime.
//!
//! Messages go in through an in-process adapter (adapter supervisor → submit → log → router →
//! inbox → channel), the real `ChannelEngine` runs each turn against a model that sleeps a fixed
//! 200 ms (real time) and answers with `reply`, and the adapter stamps each reply's arrival. So
//! the latency of a reply minus 200 ms is what the harness added: routing, the channel's turn
//! loop, tool handling, delivery, and waiting for a CPU among thousands of busy tasks.
//!
//! Four measurements:
//! 1. **Throughput and overhead** at 1, 100, 1,000 and 10,000 concurrent conversations, each
//!    sending its next message as soon as the last one is answered (a closed loop).
//! 2. **Memory per idle conversation**: resident memory (`/proc/self/statm`) before and after
//!    10,000 conversations that each answered one message and now wait, divided by 10,000.
//! 3. **A busy channel**: reply latency in a conversation whose five workers run and report
//!    progress every 100 ms, against one with no workers.
//! 4. **Eviction**: waves of 10,000 new conversations (each answers one message), with idle
//!    channels evicted after 10 s, with a cap of 1,000 live channels, and with eviction off: live
//!    channels and resident memory after each wave and once the evictions are done. Alone:
//!    `spacebot-bench processes eviction [idle|cap|off]` (one policy per process gives resident
//!    memory figures that owe nothing to memory an earlier policy freed).
//!
//! Measurements 1-3 run with eviction off, so they measure live channels.
//!
//! The conversation log keeps nothing (`NullLog`): in the daemon the log is SQLite on disk, and an
//! in-memory log would count stored messages as conversation memory. (The test suite's
//! `MemoryLog` is also off limits here: `spacebot-testing` is a dev-only crate, and its linear
//! scans would dominate at 10,000 conversations.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use spacebot_agent::{AgentProfile, ChannelEngine, ChannelSettings, REPLY_TOOL, SET_STATUS_TOOL, SPAWN_WORKER_TOOL};
use spacebot_core::{
    AdapterError, AgentId, ChatMessage, ChatRequest, ChatResponse, ConversationId, ConversationLog, InboundMessage,
    InboundStream, LanguageModel, LlmError, MessageId, MessagingAdapter, OutboundResponse, ProcessKind, Runtime,
    RuntimeSettings, Sender, StoreError, StoredMessage, ToolCall,
};

/// What the model takes per call.
const MODEL_TIME: Duration = Duration::from_millis(200);
/// The agent every conversation talks to.
const AGENT: &str = "bench";
/// The adapter's runtime key.
const ADAPTER: &str = "bench";
/// Conversations created for the memory measurement.
const IDLE_CONVERSATIONS: usize = 10_000;
/// Messages timed in the busy/idle channel comparison.
const BUSY_SAMPLES: usize = 100;
/// New conversations per wave of the eviction measurement, and how many waves.
const WAVE: usize = 10_000;
const WAVES: usize = 5;

/// Runs every measurement and prints Markdown tables for `docs/benchmarks.md`. With
/// conversation counts in `args`, runs only the spread-arrival throughput at those counts; with
/// `eviction` (and optionally one policy: `idle`, `cap`, `off`), only the eviction measurement.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let eviction_only = matches!(args.first(), Some(first) if first == "eviction");
    let policy = if eviction_only { args.get(1).cloned() } else { None };
    let only: Vec<usize> = if eviction_only {
        Vec::new()
    } else {
        args.iter().map(|a| a.parse().context("arguments are numbers of conversations")).collect::<Result<_, _>>()?
    };
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        println!("## processes ({threads} cores, model time {} ms per call)\n", MODEL_TIME.as_millis());
        if eviction_only {
            println!("{}", eviction(policy.as_deref()).await?);
            return anyhow::Ok(());
        }
        if !only.is_empty() {
            header();
            for conversations in only {
                println!("{}", throughput(conversations, 10, true).await?);
            }
            return anyhow::Ok(());
        }
        // First, while the allocator has no freed memory to reuse.
        let memory = idle_memory(IDLE_CONVERSATIONS).await?;
        println!("{memory}\n");
        for spread in [true, false] {
            if spread {
                println!("Arrivals spread evenly over one model period (independent users):\n");
            } else {
                println!("Worst case: every conversation's first message in the same instant:\n");
            }
            header();
            for (conversations, per_conversation) in [(1, 50), (100, 20), (1_000, 10), (10_000, 5)] {
                println!("{}", throughput(conversations, per_conversation, spread).await?);
            }
            println!();
        }
        println!("{}\n", busy_channel().await?);
        println!("{}", eviction(None).await?);
        anyhow::Ok(())
    })
}

fn header() {
    println!(
        "| conversations | replies | replies/s | reply p50 | reply − 200 ms, p50 | reply − 200 ms, p99 \
         | reply − model call, p50 | reply − model call, p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
}

// -------------------------------------------------------------------------------------------
// Fakes

/// A model that takes [`MODEL_TIME`] (or `delay`) per call. A channel answers with `reply`,
/// except to a message containing "spawn", which starts five workers first. A worker reports
/// progress on every call, forever.
struct SleepyModel {
    delay: Duration,
    calls: AtomicU64,
    /// How long each channel call took, by the text of the message it answered.
    timings: Mutex<HashMap<String, Duration>>,
}

impl SleepyModel {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self { delay, calls: AtomicU64::new(0), timings: Mutex::default() })
    }

    /// How long the model took over the call that answered `text`, once.
    fn took(&self, text: &str) -> Duration {
        lock(&self.timings).remove(text).unwrap_or(self.delay)
    }

    fn call(&self, name: &str, arguments: serde_json::Value) -> ToolCall {
        let id = self.calls.fetch_add(1, Ordering::Relaxed);
        ToolCall::new(format!("call_{id}"), name, arguments)
    }
}

#[async_trait]
impl LanguageModel for SleepyModel {
    fn name(&self) -> &str {
        "bench/sleepy"
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let worker = request.tools.iter().any(|tool| tool.name == SET_STATUS_TOOL);
        if !worker && let Some(ChatMessage::User { content, .. }) = request.messages.last() {
            // The envelope is `[time | sender] text`.
            let text = content.split_once("] ").map_or(content.as_str(), |(_, text)| text);
            lock(&self.timings).insert(text.to_owned(), started.elapsed());
        }
        if worker {
            let call = self.call(SET_STATUS_TOOL, json!({ "status": "still busy", "kind": "progress" }));
            return Ok(ChatResponse::text("").with_tool_calls(vec![call]));
        }
        let last_is_user =
            matches!(request.messages.last(), Some(ChatMessage::User { content, .. }) if content.contains("spawn"));
        let calls = if last_is_user {
            (0..5).map(|i| self.call(SPAWN_WORKER_TOOL, json!({ "task": format!("busy work {i}") }))).collect()
        } else {
            vec![self.call(REPLY_TOOL, json!({ "content": "ok" }))]
        };
        Ok(ChatResponse::text("").with_tool_calls(calls))
    }
}

/// A conversation log that keeps nothing; see the module documentation.
struct NullLog;

#[async_trait]
impl ConversationLog for NullLog {
    async fn record_inbound(&self, _message: &InboundMessage) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn record_reply(&self, _message: &StoredMessage, _answers: &[MessageId]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn mark_handled(&self, _agent: &AgentId, _ids: &[MessageId]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn history(
        &self,
        _agent: &AgentId,
        _conversation: &ConversationId,
        _limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(Vec::new())
    }

    async fn unhandled(&self) -> Result<Vec<InboundMessage>, StoreError> {
        Ok(Vec::new())
    }
}

/// An in-process platform: messages in through a channel, each text reply's arrival time out to
/// the waiting client of its conversation.
struct BenchAdapter {
    inbound: mpsc::UnboundedSender<InboundMessage>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<InboundMessage>>>,
    waiting: Mutex<HashMap<ConversationId, mpsc::UnboundedSender<Instant>>>,
}

impl BenchAdapter {
    fn new() -> Arc<Self> {
        let (inbound, receiver) = mpsc::unbounded_channel();
        Arc::new(Self { inbound, receiver: Mutex::new(Some(receiver)), waiting: Mutex::default() })
    }

    /// A client for one conversation: sends a message, returns when it is answered.
    fn client(self: &Arc<Self>, conversation: &str) -> Client {
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let conversation = ConversationId::new(conversation);
        lock(&self.waiting).insert(conversation.clone(), replies_tx);
        Client { adapter: self.clone(), model: None, conversation, replies, sent: 0 }
    }
}

#[async_trait]
impl MessagingAdapter for BenchAdapter {
    fn name(&self) -> &str {
        ADAPTER
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let receiver = lock(&self.receiver).take().ok_or_else(|| AdapterError::permanent(ADAPTER, "started twice"))?;
        Ok(Box::pin(tokio_stream_from(receiver)))
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        let now = Instant::now();
        if let OutboundResponse::Text { .. } = response
            && let Some(waiting) = lock(&self.waiting).get(&target.conversation)
        {
            // A client that stopped listening has its numbers already.
            let _ = waiting.send(now);
        }
        Ok(())
    }
}

/// An unbounded receiver as a stream, without another dependency.
fn tokio_stream_from(receiver: mpsc::UnboundedReceiver<InboundMessage>) -> impl futures::Stream<Item = InboundMessage> {
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|m| (m, receiver)) })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Client {
    adapter: Arc<BenchAdapter>,
    model: Option<Arc<SleepyModel>>,
    conversation: ConversationId,
    replies: mpsc::UnboundedReceiver<Instant>,
    sent: usize,
}

impl Drop for Client {
    fn drop(&mut self) {
        // A client that is gone no longer costs the bench memory.
        lock(&self.adapter.waiting).remove(&self.conversation);
    }
}

impl Client {
    /// Times the model's share of each reply with `model`.
    fn with_model(mut self, model: Arc<SleepyModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// Sends `text` and returns how long the reply took.
    async fn ask(&mut self, text: &str) -> anyhow::Result<Duration> {
        Ok(self.timed(text).await?.0)
    }

    /// Sends a message and returns how long the reply took and how long the model took of it.
    async fn timed(&mut self, text: &str) -> anyhow::Result<(Duration, Duration)> {
        self.sent += 1;
        let text = format!("{} {} {text}", self.conversation, self.sent);
        let message = InboundMessage::text(ADAPTER, self.conversation.as_str(), Sender::new("user"), text.as_str())
            .with_direct(true);
        let sent = Instant::now();
        self.adapter.inbound.send(message).map_err(|_| anyhow::anyhow!("the runtime stopped reading"))?;
        let replied = tokio::time::timeout(Duration::from_secs(600), self.replies.recv())
            .await
            .with_context(|| format!("{}: no reply within 10 minutes", self.conversation))?
            .with_context(|| format!("{}: the adapter is gone", self.conversation))?;
        let model = self.model.as_ref().map_or(Duration::ZERO, |model| model.took(&text));
        Ok((replied.saturating_duration_since(sent), model))
    }
}

/// Runtime settings with eviction off, so every conversation stays live.
fn no_eviction() -> RuntimeSettings {
    RuntimeSettings::default().with_idle_timeout(None).with_max_live(None)
}

async fn start(
    model: Arc<SleepyModel>,
    worker_model: Arc<SleepyModel>,
    runtime_settings: RuntimeSettings,
) -> anyhow::Result<(Runtime, Arc<BenchAdapter>)> {
    let adapter = BenchAdapter::new();
    let settings = ChannelSettings::default().with_worker_limits(1_000_000, Duration::from_secs(3600));
    let profile = AgentProfile::new(AGENT)
        .with_model(model)
        .with_process_model(ProcessKind::Worker, worker_model)
        .with_settings(settings);
    let runtime = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new([profile])))
        .log(Arc::new(NullLog))
        .adapter(adapter.clone())
        .agent(AGENT)
        .settings(runtime_settings)
        .start()
        .await?;
    Ok((runtime, adapter))
}

// -------------------------------------------------------------------------------------------
// Measurements

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Each conversation sends `per_conversation` messages, each as soon as the previous one is
/// answered. With `spread`, conversation `i` starts `i/n` of a model period late, so arrivals
/// are spread evenly; otherwise all start at once.
async fn throughput(conversations: usize, per_conversation: usize, spread: bool) -> anyhow::Result<String> {
    let model = SleepyModel::new(MODEL_TIME);
    let (runtime, adapter) = start(model.clone(), model.clone(), no_eviction()).await?;
    let clients: Vec<Client> =
        (0..conversations).map(|i| adapter.client(&format!("bench:c{i}")).with_model(model.clone())).collect();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let offset = if spread { MODEL_TIME.mul_f64(i as f64 / conversations as f64) } else { Duration::ZERO };
        tasks.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut timings = Vec::with_capacity(per_conversation);
            for _ in 0..per_conversation {
                timings.push(client.timed("hello").await?);
            }
            anyhow::Ok(timings)
        });
    }
    let mut timings = Vec::with_capacity(conversations * per_conversation);
    while let Some(joined) = tasks.join_next().await {
        timings.extend(joined??);
    }
    // The spread start is not part of the work.
    let elapsed = started.elapsed().saturating_sub(if spread { MODEL_TIME } else { Duration::ZERO });
    runtime.shutdown().await;
    let mut replies: Vec<Duration> = timings.iter().map(|(reply, _)| *reply).collect();
    let mut nominal: Vec<Duration> = timings.iter().map(|(reply, _)| reply.saturating_sub(MODEL_TIME)).collect();
    let mut harness: Vec<Duration> = timings.iter().map(|(reply, model)| reply.saturating_sub(*model)).collect();
    for list in [&mut replies, &mut nominal, &mut harness] {
        list.sort();
    }
    Ok(format!(
        "| {conversations} | {} | {:.0} | {} | {} | {} | {} | {} |",
        replies.len(),
        replies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&replies, 0.5)),
        ms(percentile(&nominal, 0.5)),
        ms(percentile(&nominal, 0.99)),
        ms(percentile(&harness, 0.5)),
        ms(percentile(&harness, 0.99)),
    ))
}

/// Resident memory of this process in bytes.
fn rss() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("can't read /proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("unexpected /proc/self/statm")?.parse()?;
    // The page size is 4 KiB on the machines we measure on (x86_64, aarch64 Linux defaults).
    Ok(pages * 4096)
}

async fn idle_memory(conversations: usize) -> anyhow::Result<String> {
    let model = SleepyModel::new(Duration::ZERO);
    let (runtime, adapter) = start(model.clone(), model, no_eviction()).await?;
    // Warm up: the first conversation allocates what every later one shares (tool definitions,
    // the runtime's buffers).
    adapter.client("bench:warmup").ask("hello").await?;
    let clients: Vec<Client> = (0..conversations).map(|i| adapter.client(&format!("bench:idle{i}"))).collect();
    let before = rss()?;
    let mut tasks = JoinSet::new();
    for mut client in clients {
        tasks.spawn(async move {
            client.ask("hello").await?;
            // Keep the client (and its reply channel) alive, as a live connection would.
            anyhow::Ok(client)
        });
    }
    let mut kept = Vec::with_capacity(conversations);
    while let Some(joined) = tasks.join_next().await {
        kept.push(joined??);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss()?;
    let live = runtime.handle().status().await?.conversations;
    let per = after.saturating_sub(before) as f64 / conversations as f64;
    drop(kept);
    runtime.shutdown().await;
    Ok(format!(
        "Idle conversations: {live} live; resident memory {:.1} MiB → {:.1} MiB: **{:.1} KiB per idle conversation** \
         (each answered one message; includes the bench client's reply channel).",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        per / 1024.0
    ))
}

async fn busy_channel() -> anyhow::Result<String> {
    let model = SleepyModel::new(MODEL_TIME);
    // Workers report progress every 100 ms, each report waking their channel.
    let workers = SleepyModel::new(Duration::from_millis(100));
    let (runtime, adapter) = start(model, workers, no_eviction()).await?;
    let mut idle = adapter.client("bench:idle");
    let mut busy = adapter.client("bench:busy");
    busy.ask("please spawn five workers").await?;
    let mut samples = (Vec::new(), Vec::new());
    for _ in 0..BUSY_SAMPLES {
        samples.0.push(idle.ask("hello").await?);
        samples.1.push(busy.ask("hello").await?);
    }
    let status = runtime.handle().status().await?;
    runtime.shutdown().await;
    let (mut idle_latencies, mut busy_latencies) = samples;
    idle_latencies.sort();
    busy_latencies.sort();
    let (idle50, busy50) = (percentile(&idle_latencies, 0.5), percentile(&busy_latencies, 0.5));
    let (idle99, busy99) = (percentile(&idle_latencies, 0.99), percentile(&busy_latencies, 0.99));
    let ratio = busy50.as_secs_f64() / idle50.as_secs_f64().max(f64::EPSILON);
    Ok(format!(
        "| channel ({} messages each, {} conversations live) | reply p50 | reply p99 |\n|---|---:|---:|\n\
         | idle (no workers) | {} | {} |\n| five workers reporting every 100 ms | {} | {} |\n\n\
         Busy/idle p50: {:.3}×",
        BUSY_SAMPLES,
        status.conversations,
        ms(idle50),
        ms(idle99),
        ms(busy50),
        ms(busy99),
        ratio
    ))
}

/// Waves of [`WAVE`] new conversations that each answer one message, under three policies;
/// after each wave, the live channels and resident memory, then again once the evictions the
/// policy calls for are done; all three policies, or the one named (`idle`, `cap`, `off`). See
/// the module documentation.
async fn eviction(only: Option<&str>) -> anyhow::Result<String> {
    let idle = Duration::from_secs(10);
    let cap = 1_000;
    let policies = [
        ("idle", "idle 10 s", RuntimeSettings::default().with_idle_timeout(Some(idle)).with_max_live(None), Some(0)),
        ("cap", "cap 1,000", RuntimeSettings::default().with_idle_timeout(None).with_max_live(Some(cap)), Some(cap)),
        ("off", "off", no_eviction(), None),
    ];
    if let Some(only) = only
        && !policies.iter().any(|(key, ..)| *key == only)
    {
        anyhow::bail!("unknown eviction policy `{only}`; known: idle, cap, off");
    }
    let mut table = String::from(
        "| eviction | conversations so far | live after the wave | RSS after the wave | live after evicting \
         | RSS after evicting | evicting took |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / 1_048_576.0);
    for (_, name, settings, settle_to) in policies.into_iter().filter(|(key, ..)| only.is_none_or(|only| only == *key))
    {
        let model = SleepyModel::new(Duration::ZERO);
        let (runtime, adapter) = start(model.clone(), model, settings).await?;
        adapter.client("bench:warmup").ask("hello").await?;
        let start_rss = rss()?;
        table.push_str(&format!("| {name} | 0 | 1 | {} | | | |\n", mib(start_rss)));
        for wave in 0..WAVES {
            let mut tasks = JoinSet::new();
            for i in 0..WAVE {
                let mut client = adapter.client(&format!("bench:w{wave}c{i}"));
                tasks.spawn(async move {
                    client.ask("hello").await?;
                    anyhow::Ok(())
                });
            }
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
            let live = runtime.handle().status().await?.conversations;
            let after_wave = rss()?;
            let seen = (wave + 1) * WAVE;
            let Some(target) = settle_to else {
                table.push_str(&format!("| {name} | {seen} | {live} | {} | | | |\n", mib(after_wave)));
                continue;
            };
            let started = Instant::now();
            let settled = loop {
                let live = runtime.handle().status().await?.conversations;
                if live <= target || started.elapsed() > Duration::from_secs(120) {
                    break live;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let took = started.elapsed();
            table.push_str(&format!(
                "| {name} | {seen} | {live} | {} | {settled} | {} | {:.1} s |\n",
                mib(after_wave),
                mib(rss()?),
                took.as_secs_f64()
            ));
        }
        runtime.shutdown().await;
    }
    Ok(table)
}

//! Example: a Spacebot agent running inside another Rust program.
//!
//! [`run`] is the whole embedding, in the order a host program does it:
//!
//! 1. a conversation log: [`SqliteLog::open_in_memory`] (or `SqliteLog::open(path)` to keep
//!    conversations across restarts);
//! 2. an agent: [`AgentProfile`] with a model and one custom tool, [`DiceRoll`], given to its
//!    workers; [`ChannelEngine`] runs it;
//! 3. an adapter: [`ConsoleAdapter`] carries lines in and replies out over channels;
//! 4. [`Runtime::builder`] wires the three and starts; [`Runtime::shutdown`] stops it.
//!
//! The model is any [`LanguageModel`]: `main.rs` uses [`DemoModel`] (offline, deterministic)
//! unless `EMBED_OPENAI_URL` points at an OpenAI-compatible server. `docs/embedding.md` walks
//! through it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;

use spacebot_agent::{AgentProfile, ChannelEngine, TaskToolSettings};
use spacebot_core::{LanguageModel, ProcessChange, Runtime, RuntimeEvent};
use spacebot_memory::SqliteLog;

mod console;
mod demo_model;
mod dice;
mod error;

pub use console::{CONSOLE, CONVERSATION, ConsoleAdapter, ConsoleIo};
pub use demo_model::DemoModel;
pub use dice::{DICE_ROLL_TOOL, DiceRoll, Roll, parse_dice};
pub use error::{Error, Result};

/// The agent's id.
pub const AGENT: &str = "assistant";

/// After the input ends and nothing runs any more, how long the program waits for a relay of
/// background results before it shuts down anyway.
const QUIET_LIMIT: Duration = Duration::from_secs(10);

/// Runs the assistant: each line of `input` is a message, each reply a line of `output`
/// (`assistant: ...`). Returns once the input has ended and the agent has answered everything,
/// background work included, after a graceful shutdown.
pub async fn run(
    model: Arc<dyn LanguageModel>,
    dice: Arc<DiceRoll>,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<()> {
    // 1. Where messages and replies are recorded.
    let log = Arc::new(SqliteLog::open_in_memory().await?);

    // 2. The agent. Its workers get the dice and nothing else: no shell, files or web.
    let profile = AgentProfile::new(AGENT)
        .with_model(model)
        .with_task_tools(TaskToolSettings::default().with_web_fetch(None))
        .with_worker_tool(dice);

    // 3. The adapter, and our ends of it.
    let (adapter, mut console) = ConsoleAdapter::new();

    // 4. The runtime.
    let runtime = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new([profile])))
        .log(log)
        .adapter(Arc::new(adapter))
        .agent(AGENT)
        .start()
        .await?;
    let mut events = runtime.handle().subscribe();

    let mut lines = input.lines();
    let mut input_open = true;
    let mut work = Work::default();
    let quiet = tokio::time::sleep(QUIET_LIMIT);
    tokio::pin!(quiet);
    let outcome: Result<()> = async {
        loop {
            if !input_open && work.settled() {
                // The events may lag the log: read the log first, then every event published
                // before that read, and only then decide.
                let unanswered = runtime.handle().log().unhandled().await?;
                loop {
                    match events.try_recv() {
                        Ok(event) => work.observe(event),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                if unanswered.is_empty() && work.settled() {
                    break;
                }
            }
            tokio::select! {
                line = lines.next_line(), if input_open => match line? {
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        work.sent();
                        // The receiver lives in the adapter, which lives as long as the runtime.
                        let _ = console.input.send(line);
                    }
                    None => input_open = false,
                },
                Some(reply) = console.output.recv() => {
                    output.write_all(format!("{AGENT}: {reply}\n").as_bytes()).await?;
                    output.flush().await?;
                }
                event = events.recv() => {
                    // A lagging receiver misses events; the quiet limit still ends the wait.
                    if let Ok(event) = event {
                        work.observe(event);
                    }
                    quiet.as_mut().reset(tokio::time::Instant::now() + QUIET_LIMIT);
                }
                // A relay that never comes (past the relay limit, results go to history silently).
                () = &mut quiet, if !input_open && work.idle() => break,
            }
        }
        // Replies delivered just before the last turn ended.
        while let Ok(reply) = console.output.try_recv() {
            output.write_all(format!("{AGENT}: {reply}\n").as_bytes()).await?;
        }
        output.flush().await?;
        Ok(())
    }
    .await;
    runtime.shutdown().await;
    outcome
}

/// What the agent still owes, read from the runtime's events: lines sent but not yet recorded, a
/// turn in progress, running workers and branches, and the relay turn owed once one has ended.
#[derive(Debug, Default)]
struct Work {
    sent: usize,
    received: usize,
    in_turn: bool,
    live: HashSet<spacebot_core::ProcessId>,
    relay_owed: bool,
    /// Whether the turn in progress started after the last process ended, so it relays it.
    turn_relays: bool,
}

impl Work {
    fn sent(&mut self) {
        self.sent += 1;
    }

    fn observe(&mut self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::MessageReceived { .. } => self.received += 1,
            RuntimeEvent::TurnStarted { .. } => {
                self.in_turn = true;
                self.turn_relays = self.relay_owed;
            }
            RuntimeEvent::TurnFinished { .. } => {
                self.in_turn = false;
                if self.turn_relays {
                    self.relay_owed = false;
                }
            }
            RuntimeEvent::Process(process) => match process.change {
                ProcessChange::Started { .. } => {
                    self.live.insert(process.process);
                }
                ProcessChange::Finished { .. } => {
                    self.live.remove(&process.process);
                    self.relay_owed = true;
                    self.turn_relays = false;
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Nothing is running and nothing is queued; only a relay may still be owed.
    fn idle(&self) -> bool {
        self.sent == self.received && !self.in_turn && self.live.is_empty()
    }

    fn settled(&self) -> bool {
        self.idle() && !self.relay_owed
    }
}

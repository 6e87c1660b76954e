//! One trial: a fresh data dir and fake model, messages sent while the daemon is killed (SIGKILL)
//! or stopped (SIGTERM) at seeded moments and restarted, then a quiet spell, a clean stop and the
//! checks.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use spacebot_testing::FakeLlmServer;
use tokio::sync::{Mutex, mpsc};

use crate::check::{self, Findings};
use crate::daemon::{Daemon, Home};
use crate::model::{Behaviour, Call, Heard};
use crate::rng::Rng;

/// Where in the daemon's work a stop lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Moment {
    /// Right after a message was accepted, before its turn answered.
    BeforeReply,
    /// While a channel turn waits for the model.
    MidTurn,
    /// While a worker runs, or just after it finished and before its relay.
    MidWorker,
    /// While a compaction summary is being written.
    MidCompaction,
    /// While a branch saves a memory.
    MidMemorySave,
}

pub(crate) const MOMENTS: &[Moment] =
    &[Moment::BeforeReply, Moment::MidTurn, Moment::MidWorker, Moment::MidCompaction, Moment::MidMemorySave];

impl Moment {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::BeforeReply => "before the reply",
            Self::MidTurn => "mid-turn",
            Self::MidWorker => "mid-worker",
            Self::MidCompaction => "mid-compaction",
            Self::MidMemorySave => "mid-memory-save",
        }
    }

    /// The model call this moment waits for.
    fn call(self) -> Option<Call> {
        match self {
            Self::BeforeReply => None,
            Self::MidTurn => Some(Call::Turn),
            Self::MidWorker => Some(Call::Worker),
            Self::MidCompaction => Some(Call::Compaction),
            Self::MidMemorySave => Some(Call::MemorySave),
        }
    }
}

/// How a stop is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Kill,
    Term,
}

/// Knobs of a run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) binary: std::path::PathBuf,
    pub(crate) stops: u32,
    pub(crate) messages: u32,
    pub(crate) idle: Duration,
}

/// One stop made in a trial.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stop {
    pub(crate) moment: Moment,
    pub(crate) signal: Signal,
    /// Whether the awaited call came; if not, the stop happened after the messages anyway.
    pub(crate) hit: bool,
}

/// What a trial did and found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) accepted: u64,
    pub(crate) stops: Vec<Stop>,
    pub(crate) idle_calls: u64,
    pub(crate) model_calls: u64,
    pub(crate) calls: crate::model::Counts,
    /// Whether the trial ran chronicle compaction (else rolling).
    pub(crate) chronicle: bool,
    pub(crate) panics: u64,
    pub(crate) unclean_exit: u64,
    pub(crate) not_quiet: u64,
    pub(crate) findings: Findings,
    pub(crate) elapsed: Duration,
    /// The kept data dir of a trial with violations.
    pub(crate) kept: Option<std::path::PathBuf>,
}

impl Outcome {
    pub(crate) fn violations(&self) -> Vec<String> {
        let mut all = self.findings.violations.clone();
        if self.idle_calls > 0 {
            all.push(format!("idle model calls: {} while nothing was asked", self.idle_calls));
        }
        if self.panics > 0 {
            all.push(format!("panics: {} panic line(s) in the log", self.panics));
        }
        if self.unclean_exit > 0 {
            all.push("exit: the final SIGTERM did not end the daemon cleanly".to_owned());
        }
        if self.not_quiet > 0 {
            all.push("quiet: the daemon did not settle (answers, processes, model calls) in time".to_owned());
        }
        all
    }
}

/// The config of a trial: the fake model, short timeouts, chronicle or rolling compaction with
/// small thresholds so compaction runs often.
fn config(model: &FakeLlmServer, chronicle: bool) -> String {
    let (mode, window) = if chronicle {
        ("mode = \"chronicle\"\ninterval_messages = 4\nrollup_threshold = 3\nrollup_batch = 2\n", 128_000)
    } else {
        ("mode = \"rolling\"\n", 1_000)
    };
    format!(
        r#"shutdown_grace_secs = 1

[api]
bind = "127.0.0.1:0"

[llm.providers.main]
kind = "openai"
base_url = "{base}"
api_key = "sk-soak"
timeout_secs = 5
max_retries = 1
retry_backoff_ms = 10
context_window = {window}

[llm.models]
channel = "main/fake"

[[agents]]
id = "main"

[agents.compaction]
{mode}"#,
        base = model.openai_base_url()
    )
}

/// Runs trial `number` with its own generator.
pub(crate) async fn run(settings: &Settings, number: u64, mut rng: Rng) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let model = FakeLlmServer::start().await;
    let (behaviour, mut heard) = Behaviour::new(Rng::new(rng.next_u64()));
    let responder = Arc::clone(&behaviour);
    model.respond_with(move |request| responder.respond(request));
    let chronicle = rng.chance(50);
    let home = Home::new(&config(&model, chronicle))?;
    let conversations: Vec<String> = (0..rng.range(1, 3)).map(|c| format!("t{number}c{c}")).collect();
    let mut outcome = Outcome { chronicle, ..Outcome::default() };
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    let mut daemon = Daemon::start(&settings.binary, &home).await?;
    for cycle in 0..settings.stops {
        let moment = *rng.pick(MOMENTS);
        let signal = if rng.chance(70) { Signal::Kill } else { Signal::Term };
        while heard.try_recv().is_ok() {}
        let stop = Arc::new(AtomicBool::new(false));
        let (first_accepted, mut on_accept) = mpsc::unbounded_channel::<()>();
        let plan = Plan {
            trial: number,
            cycle,
            conversations: conversations.clone(),
            count: settings.messages,
            rng: Rng::new(rng.next_u64()),
        };
        let sender = send_messages(&daemon, plan, Arc::clone(&accepted), Arc::clone(&stop), first_accepted);
        let wait_for_moment = async {
            match moment.call() {
                None => {
                    let nth = rng.range(1, u64::from(settings.messages.max(1)));
                    let mut seen = 0;
                    loop {
                        if on_accept.recv().await.is_none() {
                            break false;
                        }
                        seen += 1;
                        if seen >= nth {
                            break true;
                        }
                    }
                }
                Some(call) => {
                    let nth = rng.range(1, 2);
                    let mut seen = 0;
                    loop {
                        let Some(Heard { call: got, delay }) = heard.recv().await else { break false };
                        if got != call {
                            continue;
                        }
                        seen += 1;
                        if seen >= nth {
                            // Land inside the call, or just after its answer (a worker done and
                            // not yet relayed, a memory being written).
                            let spread = u64::try_from(delay.as_millis()).unwrap_or(0) + 60;
                            tokio::time::sleep(Duration::from_millis(rng.range(0, spread))).await;
                            break true;
                        }
                    }
                }
            }
        };
        // Send while waiting for the moment; if it never comes, stop a little after the last
        // message, with work probably still in flight.
        let hit = {
            tokio::pin!(sender);
            tokio::pin!(wait_for_moment);
            let mut sent = false;
            loop {
                tokio::select! {
                    hit = &mut wait_for_moment => break hit,
                    () = &mut sender, if !sent => sent = true,
                    () = tokio::time::sleep(Duration::from_millis(1500)), if sent => break false,
                }
            }
        };
        stop.store(true, Ordering::SeqCst);
        outcome.stops.push(Stop { moment, signal, hit });
        let log = match signal {
            Signal::Kill => daemon.kill().await?,
            Signal::Term => daemon.terminate().await?.log,
        };
        outcome.panics += count_panics(&log);
        daemon = Daemon::start(&settings.binary, &home).await?;
    }

    // After the last restart: a run of messages in one conversation, so that compaction comes
    // round again (with chronicle, rollups pile up between checkpoints: the state in which an
    // idle daemon once called its model in a loop), then everything must settle.
    let plan = Plan {
        trial: number,
        cycle: settings.stops,
        conversations: conversations[..1].to_vec(),
        count: 10,
        rng: Rng::new(rng.next_u64()),
    };
    let (first_accepted, _on_accept) = mpsc::unbounded_channel::<()>();
    send_messages(&daemon, plan, Arc::clone(&accepted), Arc::new(AtomicBool::new(false)), first_accepted).await;
    let accepted = accepted.lock().await.clone();
    outcome.accepted = u64::try_from(accepted.len()).unwrap_or(0);
    if !settle(&daemon, &model, &conversations, &accepted).await {
        outcome.not_quiet = 1;
    }
    let before = model.request_count();
    tokio::time::sleep(settings.idle).await;
    outcome.idle_calls = u64::try_from(model.request_count().saturating_sub(before)).unwrap_or(0);
    let stopped = daemon.terminate().await?;
    outcome.panics += count_panics(&stopped.log);
    if !stopped.status.success() {
        outcome.unclean_exit = 1;
    }
    outcome.model_calls = u64::try_from(model.request_count()).unwrap_or(0);
    outcome.calls = behaviour.counts();
    outcome.findings = check::check(&home.data_dir(), &accepted).await.context("can't read the databases")?;
    outcome.elapsed = started.elapsed();
    if !outcome.violations().is_empty() {
        outcome.kept = Some(home.keep());
    }
    drop(behaviour);
    Ok(outcome)
}

fn count_panics(log: &[String]) -> u64 {
    u64::try_from(log.iter().filter(|line| line.contains("panicked")).count()).unwrap_or(0)
}

/// The messages of one cycle.
struct Plan {
    trial: u64,
    cycle: u32,
    conversations: Vec<String>,
    count: u32,
    rng: Rng,
}

/// Sends the cycle's messages with seeded gaps until done or told to stop; records each accepted
/// one and tells `on_accept`.
async fn send_messages(
    daemon: &Daemon,
    mut plan: Plan,
    accepted: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    on_accept: mpsc::UnboundedSender<()>,
) {
    for index in 0..plan.count {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let conversation = plan.rng.pick(&plan.conversations).clone();
        let token = format!("#m{}_{}_{index}#", plan.trial, plan.cycle);
        let kind = match plan.rng.range(0, 9) {
            0..=4 => "hello",
            5..=7 => "work: compute something",
            _ => "remember: a fact",
        };
        let text = format!("{token} {kind}");
        if let Some(id) = daemon.say(&conversation, &text).await {
            accepted.lock().await.push((id, token));
            let _ = on_accept.send(());
        }
        tokio::time::sleep(Duration::from_millis(plan.rng.range(0, 120))).await;
    }
}

/// Waits until every accepted message is answered, no process runs and the model has been quiet
/// for a second; false after 30 s.
async fn settle(
    daemon: &Daemon,
    model: &FakeLlmServer,
    conversations: &[String],
    accepted: &[(String, String)],
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_count = model.request_count();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = model.request_count();
        if count != last_count {
            last_count = count;
            quiet_since = Instant::now();
            continue;
        }
        if quiet_since.elapsed() < Duration::from_secs(1) {
            continue;
        }
        if daemon.live_processes().await != Some(0) {
            continue;
        }
        if all_answered(daemon, conversations, accepted).await {
            return true;
        }
        // Unanswered but quiet for long: a lost answer, which the checks will name.
        if quiet_since.elapsed() > Duration::from_secs(5) {
            return true;
        }
    }
    false
}

async fn all_answered(daemon: &Daemon, conversations: &[String], accepted: &[(String, String)]) -> bool {
    let mut texts = Vec::new();
    for conversation in conversations {
        let Some(messages) = daemon.messages(conversation).await else { return false };
        texts.extend(
            messages.iter().filter(|m| m["role"] == "assistant").filter_map(|m| m["text"].as_str().map(str::to_owned)),
        );
    }
    accepted.iter().all(|(_, token)| texts.iter().any(|text| text.starts_with("ack ") && text.contains(token.as_str())))
}

/// The data dir of a kept trial, for the report.
pub(crate) fn describe_kept(path: &Path) -> String {
    format!("{} (config.toml, data/)", path.display())
}

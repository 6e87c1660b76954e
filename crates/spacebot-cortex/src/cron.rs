//! Cron: durable scheduled jobs, run by [`CronScheduler`].
//!
//! Jobs live in a [`CronStore`] beside the conversation log (the config's jobs are upserted at
//! start; the channel's `cron` tool, the CLI and the API add more through [`CronJobs`]). The
//! scheduler keeps no schedule in memory that the store doesn't have: each pass reads the jobs,
//! plans those without a next run, and runs those due. A run is *claimed* before it starts, by
//! moving the job's next run forward with a compare-and-set ([`CronStore::claim`]), so a restart
//! neither repeats a run nor skips one; a job that fell due while the daemon was down runs once
//! at start (not once per missed slot); a run-once job is spent by its claim, so it fires at most
//! once even if the daemon dies during the run. A job whose previous run is still going skips
//! the run (recorded as `overlapped`, and logged). After three consecutive failures (a failed or
//! timed-out turn, or a failed delivery) the breaker disables the job and says so once in its
//! target. Each run happens in a fresh conversation (`run.rs`) and is recorded when it starts and
//! when it ends. The scheduler makes no model call of its own; the runs are agent turns.

mod adapter;
mod run;
mod schedule;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use spacebot_core::{AgentId, ConversationLog, CronError, CronJob, CronJobs, CronStore, RuntimeHandle};

pub use adapter::{CRON_ADAPTER, CronAdapter};

use run::Runner;
use schedule::Schedule;

/// Where the scheduler reads the time. The daemon uses the system clock; tests use one that
/// follows tokio's (paused) clock, so schedules can be tested without waiting.
#[derive(Clone)]
pub struct CronClock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl CronClock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that reads `start` now and then moves with tokio's clock (paused in tests).
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        let base = tokio::time::Instant::now();
        Self(Arc::new(move || start + chrono::Duration::from_std(base.elapsed()).unwrap_or_default()))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for CronClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CronClock")
    }
}

/// How the scheduler runs jobs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CronSettings {
    /// Consecutive failures that disable a job.
    pub breaker_limit: u32,
    /// How long a run may take when its job sets no timeout.
    pub default_timeout: Duration,
    /// The longest the scheduler sleeps before it reads the jobs again (a job changed in the
    /// store by another process is seen within this).
    pub poll: Duration,
    /// Where it reads the time.
    pub clock: CronClock,
}

impl Default for CronSettings {
    /// Three failures, ten minutes a run, a pass at least every minute, the system clock.
    fn default() -> Self {
        Self {
            breaker_limit: 3,
            default_timeout: Duration::from_secs(600),
            poll: Duration::from_secs(60),
            clock: CronClock::system(),
        }
    }
}

impl CronSettings {
    /// Reads the time from `clock`.
    pub fn with_clock(mut self, clock: CronClock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the timeout of runs whose job sets none.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }
}

/// What the API and tools ask of the running loop.
enum Command {
    RunNow(CronJob),
}

/// The cron scheduler: a [`CronJobs`] service over a [`CronStore`], and the loop that runs the
/// jobs ([`run`](Self::run)). Cheap to clone; clones share the loop.
#[derive(Clone)]
pub struct CronScheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CronStore>,
    settings: CronSettings,
    wake: Notify,
    commands: mpsc::UnboundedSender<Command>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

/// Checks a job's definition as the scheduler will read it; the error names the field at fault.
pub fn validate_job(job: &CronJob) -> Result<(), CronError> {
    Schedule::of(job).map(|_| ())
}

impl CronScheduler {
    /// A scheduler over `store`; it runs nothing until [`run`](Self::run).
    pub fn new(store: Arc<dyn CronStore>, settings: CronSettings) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                store,
                settings,
                wake: Notify::new(),
                commands,
                receiver: Mutex::new(Some(receiver)),
            }),
        }
    }

    /// Upserts the config's jobs (source `config`) and deletes the config jobs of `agents` that
    /// the config no longer has. An unchanged job keeps its state, so a spent run-once job stays
    /// spent across restarts.
    pub async fn upsert_config(&self, agents: &[AgentId], jobs: Vec<CronJob>) -> Result<(), CronError> {
        for job in &jobs {
            validate_job(job)?;
        }
        for job in &jobs {
            let mut job = job.clone().with_source("config");
            job.enabled = true;
            job.next_run = None;
            self.inner.store.upsert_job(&job).await?;
        }
        for old in self.inner.store.jobs(None).await? {
            let kept = jobs.iter().any(|job| job.agent == old.agent && job.id == old.id);
            if old.source == "config" && agents.contains(&old.agent) && !kept {
                tracing::info!(agent = %old.agent, job = old.id, "deleting a cron job the config no longer has");
                self.inner.store.delete_job(&old.agent, &old.id).await?;
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Records the runs the last stop interrupted as such, and marks each one's message handled
    /// in `log`, so the restarted runtime does not answer it again: a run is not repeated, a
    /// run-once job's least of all. Call it before the runtime starts (it resumes unhandled
    /// messages at start); [`run`](Self::run) calls it again, which then finds nothing.
    pub async fn settle_interrupted(&self, log: &dyn ConversationLog) {
        let runs = match self.inner.store.interrupt_unfinished(self.inner.settings.clock.now()).await {
            Ok(runs) => runs,
            Err(error) => {
                tracing::error!(%error, "can't settle the cron runs the last stop interrupted");
                return;
            }
        };
        if !runs.is_empty() {
            tracing::warn!(count = runs.len(), "cron runs were interrupted by the last stop");
        }
        for run in runs {
            let message = run::run_message_id(&run.id);
            if let Err(error) = log.mark_handled(&run.agent, std::slice::from_ref(&message)).await {
                tracing::error!(run = run.id, %error, "can't retire an interrupted cron run's message");
            }
        }
    }

    /// Runs the jobs until `shutdown`: first settles the runs the last stop interrupted, then
    /// plans, claims and starts runs as they fall due. Runs in flight at shutdown are abandoned
    /// (their turns are the runtime's to end) and recorded as interrupted at the next start.
    /// Spawn it and keep the handle; a second call returns at once.
    pub async fn run(self, handle: RuntimeHandle, shutdown: CancellationToken) {
        let receiver = self.inner.receiver.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut commands) = receiver else {
            tracing::warn!("the cron scheduler is already running");
            return;
        };
        let inner = &self.inner;
        self.settle_interrupted(&**handle.log()).await;
        let runner = Runner { store: inner.store.clone(), settings: inner.settings.clone(), handle: handle.clone() };
        let mut running: JoinSet<(AgentId, String)> = JoinSet::new();
        let mut busy: HashSet<(AgentId, String)> = HashSet::new();
        loop {
            let wait = self.pass(&runner, &mut running, &mut busy).await;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = running.join_next() => {
                    match done {
                        Ok(key) => { busy.remove(&key); }
                        Err(error) => tracing::error!(%error, "a cron run's task failed"),
                    }
                }
                Some(Command::RunNow(job)) = commands.recv() => {
                    start(&runner, &mut running, &mut busy, job).await;
                }
                () = inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        running.shutdown().await;
    }

    /// One pass over the jobs: plans, claims and starts what is due. Returns how long to sleep.
    async fn pass(
        &self,
        runner: &Runner,
        running: &mut JoinSet<(AgentId, String)>,
        busy: &mut HashSet<(AgentId, String)>,
    ) -> Duration {
        let settings = &self.inner.settings;
        let store = &self.inner.store;
        if !runner.handle.is_accepting() {
            // Shutting down: claim nothing that could not run.
            return settings.poll;
        }
        let now = settings.clock.now();
        let mut wake_at = now + chrono::Duration::from_std(settings.poll).unwrap_or(chrono::Duration::MAX);
        let jobs = match store.jobs(None).await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::error!(%error, "can't read the cron jobs");
                return settings.poll;
            }
        };
        for job in jobs.into_iter().filter(|job| job.enabled && runner.handle.has_agent(&job.agent)) {
            let schedule = match Schedule::of(&job) {
                Ok(schedule) => schedule,
                Err(error) => {
                    tracing::warn!(agent = %job.agent, job = job.id, %error, "skipping an invalid cron job");
                    continue;
                }
            };
            let planned = match job.next_run {
                Some(due) if due > now => Some(due),
                None => {
                    let first = schedule.first_after(now);
                    claim(store.as_ref(), &job, None, first, false).await;
                    first
                }
                Some(due) => {
                    let next = schedule.next_after(due, now);
                    let active = schedule.is_active(due.max(now));
                    // A run-once job due outside its active hours waits for them.
                    let spend = job.run_once && active;
                    if claim(store.as_ref(), &job, Some(due), if spend { None } else { next }, spend).await {
                        if active {
                            start(runner, running, busy, job).await;
                        } else {
                            tracing::debug!(job = job.id, "cron run skipped: outside the job's active hours");
                        }
                    }
                    if spend { None } else { next }
                }
            };
            if let Some(at) = planned {
                wake_at = wake_at.min(at);
            }
        }
        (wake_at - settings.clock.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

/// Claims a run, logging a failure; returns whether this call won it.
async fn claim(
    store: &dyn CronStore,
    job: &CronJob,
    expected: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
    spend: bool,
) -> bool {
    match store.claim(&job.agent, &job.id, expected, next, spend).await {
        Ok(won) => won,
        Err(error) => {
            tracing::error!(agent = %job.agent, job = job.id, %error, "can't claim a cron run");
            false
        }
    }
}

/// Starts a run of `job`, unless its previous run is still going (then the skip is recorded).
async fn start(
    runner: &Runner,
    running: &mut JoinSet<(AgentId, String)>,
    busy: &mut HashSet<(AgentId, String)>,
    job: CronJob,
) {
    let key = (job.agent.clone(), job.id.clone());
    if busy.contains(&key) {
        runner.overlapped(&job).await;
        return;
    }
    busy.insert(key.clone());
    let runner = runner.clone();
    running.spawn(async move {
        runner.run(job).await;
        key
    });
}

#[async_trait]
impl CronJobs for CronScheduler {
    async fn create(&self, job: CronJob) -> Result<CronJob, CronError> {
        validate_job(&job)?;
        let mut job = job;
        job.enabled = true;
        job.next_run = None;
        job.consecutive_failures = 0;
        // A job created again starts afresh, even with an unchanged definition (re-enabling
        // one the breaker disabled); the config's upsert at start is what keeps state.
        self.inner.store.delete_job(&job.agent, &job.id).await?;
        self.inner.store.upsert_job(&job).await?;
        self.inner.wake.notify_one();
        Ok(job)
    }

    async fn list(&self, agent: &AgentId) -> Result<Vec<CronJob>, CronError> {
        Ok(self.inner.store.jobs(Some(agent)).await?)
    }

    async fn delete(&self, agent: &AgentId, id: &str) -> Result<bool, CronError> {
        let deleted = self.inner.store.delete_job(agent, id).await?;
        self.inner.wake.notify_one();
        Ok(deleted)
    }

    async fn run_now(&self, agent: &AgentId, id: &str) -> Result<(), CronError> {
        let jobs = self.inner.store.jobs(Some(agent)).await?;
        let job = jobs.into_iter().find(|job| job.id == id).ok_or_else(|| CronError::NotFound(id.to_owned()))?;
        self.inner.commands.send(Command::RunNow(job)).map_err(|_| CronError::Stopped)
    }
}

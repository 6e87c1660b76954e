//! The cron scheduler against the real runtime and channel engine, on tokio's paused clock (the
//! scheduler's clock follows it): schedules, a time zone across a daylight-saving change, active
//! hours, overlapping runs, the circuit breaker, and restarts (a missed run made up once, a
//! run-once job never repeated).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use spacebot_agent::{AgentProfile, CRON_TOOL, ChannelEngine, ChannelSettings, REPLY_TOOL};
use spacebot_core::{AgentId, CronJob, CronJobs, CronOutcome, InboundMessage, LlmErrorKind, Role, Runtime, Sender};
use spacebot_cortex::{CronAdapter, CronClock, CronScheduler, CronSettings};
use spacebot_testing::{CapturingAdapter, MemoryCronStore, MemoryLog, ScriptedModel, ScriptedTurn};

const AGENT: &str = "main";
const TARGET: &str = "test:c9";

struct Setup {
    runtime: Runtime,
    adapter: Arc<CapturingAdapter>,
    model: Arc<ScriptedModel>,
    log: Arc<MemoryLog>,
    store: MemoryCronStore,
    scheduler: CronScheduler,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

async fn setup(start: DateTime<Utc>, store: MemoryCronStore, jobs: Vec<CronJob>) -> Setup {
    setup_with(start, store, jobs, &[]).await
}

/// A setup whose agent has the `cron` tool, and these admins.
async fn setup_with(start: DateTime<Utc>, store: MemoryCronStore, jobs: Vec<CronJob>, admins: &[&str]) -> Setup {
    let model = Arc::new(ScriptedModel::new());
    let settings = ChannelSettings::default()
        .with_turn_timeout(Duration::from_secs(3600))
        .with_admins(admins.iter().map(|a| (*a).to_owned()));
    let settings_clock = CronSettings::default()
        .with_clock(CronClock::following_tokio(start))
        .with_default_timeout(Duration::from_secs(600));
    let scheduler = CronScheduler::new(Arc::new(store.clone()), settings_clock);
    let profile = AgentProfile::new(AGENT)
        .with_model(model.clone())
        .with_settings(settings)
        .with_cron(Arc::new(scheduler.clone()));
    let adapter = Arc::new(CapturingAdapter::new("test"));
    let log = Arc::new(MemoryLog::new());
    let runtime = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new([profile])))
        .log(log.clone())
        .adapter(adapter.clone())
        .adapter(Arc::new(CronAdapter))
        .agent(AGENT)
        .start()
        .await
        .expect("runtime starts");
    scheduler.upsert_config(&[AgentId::new(AGENT)], jobs).await.expect("the config's jobs are valid");
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.clone().run(runtime.handle(), stop.clone()));
    Setup { runtime, adapter, model, log, store, scheduler, stop, task }
}

impl Setup {
    fn runs(&self) -> Vec<spacebot_core::CronRun> {
        self.store.all_runs()
    }

    fn outcomes(&self) -> Vec<Option<CronOutcome>> {
        self.runs().iter().map(|r| r.outcome).collect()
    }

    async fn finish(self) {
        self.stop.cancel();
        self.task.await.expect("the scheduler ends");
        self.runtime.shutdown().await;
    }
}

fn reply(text: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": text }))
}

fn every(id: &str, secs: u64) -> CronJob {
    CronJob::new(AGENT, id, "Report the news.", TARGET).with_every(Duration::from_secs(secs))
}

async fn sleep(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn an_interval_job_runs_on_time_in_a_fresh_conversation_and_delivers_its_reply() {
    let s = setup(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![every("news", 60)]).await;
    s.model.push_all([reply("Nothing new."), reply("Still nothing.")]);

    sleep(59).await;
    assert!(s.runs().is_empty(), "the first run is one interval after it was planned");
    sleep(2).await;
    assert_eq!(s.adapter.texts_for(TARGET), ["Nothing new."], "the reply goes to `deliver_to`");
    sleep(60).await;
    assert_eq!(s.adapter.texts_for(TARGET), ["Nothing new.", "Still nothing."]);

    let runs = s.runs();
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0].conversation, runs[1].conversation, "each run has a fresh conversation");
    assert!(runs[0].conversation.as_str().starts_with("cron:news:"), "{}", runs[0].conversation);
    assert_eq!(runs[0].started_at, utc(2026, 1, 5, 12, 1));
    assert_eq!(runs[0].outcome, Some(CronOutcome::Replied));
    assert_eq!(runs[0].delivery.as_deref(), Some("delivered"));
    let target: Vec<_> = s.log.messages().into_iter().filter(|m| m.conversation.as_str() == TARGET).collect();
    assert_eq!(target.len(), 2, "deliveries are recorded in the target conversation");
    assert_eq!(target[0].role, Role::Assistant);
    let request = s.model.requests().remove(0);
    assert!(format!("{request:?}").contains("Report the news."), "the run's turn gets the prompt");
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_berlin_job_follows_local_time_across_the_spring_change() {
    // 17:00 in Berlin is 16:00 UTC until 2026-03-29, and 15:00 UTC from then on.
    let job = CronJob::new(AGENT, "evening", "Evening summary.", TARGET)
        .with_cron("0 17 * * *")
        .with_timezone("Europe/Berlin");
    let s = setup(utc(2026, 3, 28, 12, 0), MemoryCronStore::new(), vec![job]).await;
    s.model.respond_with(|_| reply("Summary."));

    sleep(4 * 3600 + 1).await;
    assert_eq!(s.runs().len(), 1);
    sleep(23 * 3600 - 2).await;
    assert_eq!(s.runs().len(), 1, "not at 16:00 UTC on the day of the change");
    sleep(2).await;
    let starts: Vec<_> = s.runs().iter().map(|r| r.started_at).collect();
    assert_eq!(starts, [utc(2026, 3, 28, 16, 0), utc(2026, 3, 29, 15, 0)]);
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn runs_outside_the_active_hours_are_skipped() {
    let job = every("office", 3600).with_active_hours(9, 12);
    let s = setup(utc(2026, 1, 5, 7, 30), MemoryCronStore::new(), vec![job]).await;
    s.model.respond_with(|_| reply("Tick."));

    sleep(24 * 3600).await;
    let starts: Vec<_> = s.runs().iter().map(|r| r.started_at).collect();
    assert_eq!(starts, [utc(2026, 1, 5, 9, 30), utc(2026, 1, 5, 10, 30), utc(2026, 1, 5, 11, 30)]);
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_due_while_the_last_is_still_going_is_skipped_and_recorded() {
    let s = setup(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![every("slow", 10)]).await;
    s.model.push(reply("Done at last.").delay(Duration::from_secs(25)));
    s.model.respond_with(|_| reply("Quick."));

    sleep(36).await;
    assert_eq!(
        s.outcomes(),
        [Some(CronOutcome::Replied), Some(CronOutcome::Overlapped), Some(CronOutcome::Overlapped)],
        "runs due at 20 s and 30 s found the 10 s run still going"
    );
    assert_eq!(s.adapter.texts_for(TARGET), ["Done at last."]);
    assert_eq!(s.model.request_count(), 1, "a skipped run makes no model call");
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn three_failures_in_a_row_disable_the_job_and_say_so_once() {
    let s = setup(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![every("flaky", 10)]).await;
    s.model.respond_with(|_| ScriptedTurn::error(LlmErrorKind::Auth));

    sleep(100).await;
    assert_eq!(s.outcomes(), [Some(CronOutcome::Failed); 3], "no run after the breaker trips");
    let job = s.store.job(AGENT, "flaky").unwrap();
    assert!(!job.enabled && job.consecutive_failures == 3, "{job:?}");
    let told = s.adapter.texts_for(TARGET);
    assert_eq!(told.len(), 1, "the target is told once: {told:?}");
    assert!(told[0].contains("`flaky` failed 3 times in a row") && told[0].contains("disabled"), "{told:?}");

    // Created again, it runs again; a success resets the count.
    s.model.respond_with(|_| reply("Fine now."));
    s.scheduler.create(every("flaky", 10)).await.unwrap();
    sleep(11).await;
    assert_eq!(s.adapter.texts_for(TARGET).last().map(String::as_str), Some("Fine now."));
    assert_eq!(s.store.job(AGENT, "flaky").unwrap().consecutive_failures, 0);
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_that_outlives_its_timeout_counts_as_failed() {
    let job = every("stuck", 3600).with_timeout(Duration::from_secs(30));
    let s = setup(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![job]).await;
    s.model.push(ScriptedTurn::hang());

    sleep(3600 + 31).await;
    assert_eq!(s.outcomes(), [Some(CronOutcome::TimedOut)]);
    assert_eq!(s.store.job(AGENT, "stuck").unwrap().consecutive_failures, 1);
    assert!(s.adapter.texts_for(TARGET).is_empty(), "nothing to deliver");
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_missed_while_down_runs_once_at_start_and_the_grid_resumes() {
    let store = MemoryCronStore::new();
    let start = utc(2026, 1, 5, 12, 0);
    // What the last daemon left: a ten-minute job due an hour ago (six slots missed).
    let mut job = every("digest", 600).with_source("config");
    job.next_run = Some(start - chrono::Duration::hours(1));
    store.put(job.clone());
    let s = setup(start, store, vec![every("digest", 600)]).await;
    s.model.respond_with(|_| reply("Digest."));

    sleep(1).await;
    assert_eq!(s.runs().len(), 1, "one run for all the missed slots");
    assert_eq!(s.runs()[0].started_at, start);
    assert_eq!(s.store.job(AGENT, "digest").unwrap().next_run, Some(start + chrono::Duration::minutes(10)));
    sleep(600).await;
    assert_eq!(s.runs().len(), 2);
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_once_job_is_claimed_before_it_runs_so_a_crash_never_repeats_it() {
    let store = MemoryCronStore::new();
    let start = utc(2026, 1, 5, 12, 0);
    let once = || every("once", 10).with_run_once(true);
    let s = setup(start, store.clone(), vec![once()]).await;
    s.model.push(ScriptedTurn::hang());
    sleep(11).await;
    assert_eq!(s.runs().len(), 1, "it started");
    assert!(!s.store.job(AGENT, "once").unwrap().enabled, "spent by its claim, before it ended");
    // The daemon dies mid-run: nothing is shut down in order.
    s.task.abort();
    drop(s.runtime);

    let again = setup(start, store.clone(), vec![once()]).await;
    again.model.respond_with(|_| reply("Again?"));
    sleep(60).await;
    assert_eq!(again.outcomes(), [Some(CronOutcome::Interrupted)], "never run a second time");
    assert!(again.adapter.texts_for(TARGET).is_empty());
    again.finish().await;
}

#[tokio::test(start_paused = true)]
async fn run_now_starts_a_run_outside_the_schedule() {
    let s = setup(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![every("daily", 86_400)]).await;
    s.model.respond_with(|_| reply("On demand."));
    s.scheduler.run_now(&AgentId::new(AGENT), "daily").await.unwrap();
    sleep(1).await;
    assert_eq!(s.adapter.texts_for(TARGET), ["On demand."]);
    assert!(s.scheduler.run_now(&AgentId::new(AGENT), "nope").await.is_err());
    assert_eq!(s.scheduler.list(&AgentId::new(AGENT)).await.unwrap().len(), 1);
    assert!(s.scheduler.delete(&AgentId::new(AGENT), "daily").await.unwrap());
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_conversation_creates_lists_and_deletes_its_jobs_with_the_cron_tool() {
    let s = setup_with(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![], &[]).await;
    let cron = |args: serde_json::Value| ScriptedTurn::tool_call(CRON_TOOL, args);
    s.model.push_all([
        cron(json!({ "action": "create", "id": "standup", "prompt": "Post the standup reminder.", "every": "30s" })),
        reply("Scheduled."),
    ]);
    s.adapter.inject(InboundMessage::text("test", "test:c1", Sender::new("alice"), "remind us").with_direct(true));
    assert_eq!(s.adapter.wait_for_texts("test:c1", 1, Duration::from_secs(5)).await, ["Scheduled."]);
    let job = s.store.job(AGENT, "standup").expect("created");
    assert_eq!((job.deliver_to.as_str(), job.source.as_str()), ("test:c1", "conversation"));
    assert_eq!(job.conversation.as_ref().map(|c| c.as_str()), Some("test:c1"));

    s.model.push(reply("Standup time!"));
    sleep(31).await;
    assert_eq!(s.adapter.texts_for("test:c1"), ["Scheduled.", "Standup time!"], "the run delivers here");

    s.model.push_all([
        cron(json!({ "action": "list" })),
        cron(json!({ "action": "delete", "id": "standup" })),
        reply("Done."),
    ]);
    s.adapter.inject(InboundMessage::text("test", "test:c1", Sender::new("alice"), "stop it").with_direct(true));
    s.adapter.wait_for_texts("test:c1", 3, Duration::from_secs(5)).await;
    let results = format!("{:?}", s.model.last_request().unwrap().messages);
    assert!(results.contains("`standup`: every 30 s"), "list shows the job: {results}");
    assert!(results.contains("Deleted `standup`."), "{results}");
    assert!(s.store.job(AGENT, "standup").is_none());
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn only_admins_may_create_jobs_when_the_agent_has_admins() {
    let s = setup_with(utc(2026, 1, 5, 12, 0), MemoryCronStore::new(), vec![], &["test:boss"]).await;
    let create = json!({ "action": "create", "id": "spam", "prompt": "Say hi.", "every": "10s" });
    s.model.push_all([ScriptedTurn::tool_call(CRON_TOOL, create.clone()), reply("I can't.")]);
    s.adapter.inject(InboundMessage::text("test", "test:c1", Sender::new("mallory"), "spam us").with_direct(true));
    s.adapter.wait_for_texts("test:c1", 1, Duration::from_secs(5)).await;
    assert!(s.store.job(AGENT, "spam").is_none(), "a non-admin's job is refused");
    let results = format!("{:?}", s.model.last_request().unwrap().messages);
    assert!(results.contains("only the agent's admins"), "{results}");

    s.model.push_all([ScriptedTurn::tool_call(CRON_TOOL, create), reply("Done.")]);
    s.adapter.inject(InboundMessage::text("test", "test:c1", Sender::new("boss"), "say hi").with_direct(true));
    s.adapter.wait_for_texts("test:c1", 2, Duration::from_secs(5)).await;
    assert!(s.store.job(AGENT, "spam").is_some(), "an admin's is created");
    s.finish().await;
}

//! Cron jobs on SQLite and PostgreSQL: upserts keep an unchanged job's state, claims are
//! compare-and-set (a run-once claim spends the job), the breaker trips once, and runs left
//! unfinished by a crash are settled as interrupted after a reopen.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use chrono::{Duration as Span, TimeZone, Utc};

use spacebot_core::{AgentId, BreakerChange, CronJob, CronOutcome, CronRun, CronStore};

use crate::support::{TestDb, on_both_backends};

on_both_backends!(
    an_unchanged_upsert_keeps_the_state_and_a_changed_one_resets_it,
    claims_are_compare_and_set,
    the_breaker_trips_once_at_the_limit_and_a_success_resets_the_count,
    unfinished_runs_are_settled_as_interrupted_after_a_reopen,
);

fn job(id: &str) -> CronJob {
    CronJob::new("main", id, "say hi", "webhook:c1").with_every(std::time::Duration::from_secs(60))
}

async fn an_unchanged_upsert_keeps_the_state_and_a_changed_one_resets_it<D: TestDb>(db: D) {
    let store = db.open().await;
    let agent = AgentId::new("main");
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    store.upsert_job(&job("a").with_run_once(true)).await.unwrap();
    assert!(store.claim(&agent, "a", None, Some(at), false).await.unwrap());
    assert!(store.claim(&agent, "a", Some(at), None, true).await.unwrap(), "the run-once claim wins");
    assert!(!store.claim(&agent, "a", None, None, true).await.unwrap(), "a spent job can't be claimed again");

    store.upsert_job(&job("a").with_run_once(true)).await.unwrap();
    let jobs = store.jobs(Some(&agent)).await.unwrap();
    assert!(!jobs[0].enabled, "the config's upsert at start must not revive a spent run-once job: {jobs:?}");

    store.upsert_job(&job("a").with_run_once(true).with_timezone("Europe/Berlin")).await.unwrap();
    let jobs = store.jobs(None).await.unwrap();
    assert!(jobs[0].enabled && jobs[0].next_run.is_none(), "a changed definition starts afresh: {jobs:?}");
    assert_eq!(jobs[0].timezone.as_deref(), Some("Europe/Berlin"));
    assert!(store.delete_job(&agent, "a").await.unwrap());
    assert!(!store.delete_job(&agent, "a").await.unwrap());
}

async fn claims_are_compare_and_set<D: TestDb>(db: D) {
    let store = db.open().await;
    let agent = AgentId::new("main");
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    store.upsert_job(&job("b")).await.unwrap();
    assert!(store.claim(&agent, "b", None, Some(t0), false).await.unwrap());
    assert!(store.claim(&agent, "b", Some(t0), Some(t0 + Span::minutes(1)), false).await.unwrap());
    assert!(
        !store.claim(&agent, "b", Some(t0), Some(t0 + Span::minutes(1)), false).await.unwrap(),
        "a second claim of the same run loses"
    );
    assert_eq!(store.jobs(None).await.unwrap()[0].next_run, Some(t0 + Span::minutes(1)));
}

async fn the_breaker_trips_once_at_the_limit_and_a_success_resets_the_count<D: TestDb>(db: D) {
    let store = db.open().await;
    let agent = AgentId::new("main");
    store.upsert_job(&job("c")).await.unwrap();
    assert_eq!(store.count_outcome(&agent, "c", true, 3).await.unwrap(), BreakerChange::None);
    assert_eq!(store.count_outcome(&agent, "c", false, 3).await.unwrap(), BreakerChange::None);
    assert_eq!(store.count_outcome(&agent, "c", true, 3).await.unwrap(), BreakerChange::None);
    assert_eq!(store.count_outcome(&agent, "c", true, 3).await.unwrap(), BreakerChange::None);
    assert_eq!(store.count_outcome(&agent, "c", true, 3).await.unwrap(), BreakerChange::Tripped);
    assert_eq!(store.count_outcome(&agent, "c", true, 3).await.unwrap(), BreakerChange::None, "tripped once");
    let jobs = store.jobs(None).await.unwrap();
    assert!(!jobs[0].enabled);
    assert_eq!(jobs[0].consecutive_failures, 4);
}

async fn unfinished_runs_are_settled_as_interrupted_after_a_reopen<D: TestDb>(db: D) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    {
        let store = db.open().await;
        store.run_started(&CronRun::new("r1", "main", "d", "cron:d:r1", t0)).await.unwrap();
        store.run_started(&CronRun::new("r2", "main", "d", "cron:d:r2", t0 + Span::seconds(1))).await.unwrap();
        store.run_finished("r1", CronOutcome::Replied, Some("delivered"), t0 + Span::seconds(2)).await.unwrap();
        store.run_finished("r1", CronOutcome::Failed, None, t0 + Span::seconds(3)).await.unwrap();
    }
    let store = db.open().await;
    let settled = store.interrupt_unfinished(t0 + Span::seconds(9)).await.unwrap();
    assert_eq!(settled.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r2"]);
    assert!(store.interrupt_unfinished(t0 + Span::seconds(10)).await.unwrap().is_empty(), "settled once");
    let runs = store.runs(&AgentId::new("main"), "d", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].id.as_str(), runs[0].outcome), ("r2", Some(CronOutcome::Interrupted)));
    assert_eq!((runs[1].outcome, runs[1].delivery.as_deref()), (Some(CronOutcome::Replied), Some("delivered")));
}

//! An idle agent makes no model calls: once the work messages called for is done, an hour of
//! silence costs nothing, in either compaction mode, with rollups sitting between checkpoints,
//! and even when the compactor model keeps failing.

use std::sync::Arc;
use std::time::Duration;

use spacebot_agent::{BackgroundBudgetSettings, ChronicleSettings, CompactionMode, CompactionSettings};
use spacebot_core::{Checkpoint, LlmErrorKind};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{CONV, Harness, WindowedAgent, idle, start, windowed_agent};

/// A window large enough that only message counts trigger chronicle checkpoints.
const LARGE: usize = 10_000_000;
const HOUR: Duration = Duration::from_secs(3600);

/// More compactor calls than any of these conversations can need: past it the compactor hangs,
/// so a runaway loop stops (and the test fails on the count) instead of spinning forever on the
/// paused clock.
const FUSE: usize = 200;

/// Makes `compactor` answer with `answer`, until the fuse blows.
fn compactor_answers(compactor: &Arc<ScriptedModel>, answer: fn() -> ScriptedTurn) {
    let counted = compactor.clone();
    compactor.respond_with(move |_| if counted.request_count() > FUSE { ScriptedTurn::hang() } else { answer() });
}

fn summary() -> ScriptedTurn {
    ScriptedTurn::text("TITLE: A stretch\n\nAlice sent numbered messages.")
}

fn server_error() -> ScriptedTurn {
    ScriptedTurn::error(LlmErrorKind::ServerError)
}

async fn say(h: &mut Harness, count: usize) {
    for i in 0..count {
        h.say(CONV, &format!("message {i:02} {}", "x".repeat(380)));
        h.wait_turns(1).await;
    }
}

/// Lets the background work the messages called for finish, then checks that an hour of
/// silence brings no model call at all. Returns the calls made before the hour.
async fn an_idle_hour_is_free(h: &Harness, models: [&ScriptedModel; 2]) -> [usize; 2] {
    // Background work (cuts, rollups, summaries) finishes within a few retry delays.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let before = models.map(ScriptedModel::request_count);
    tokio::time::sleep(HOUR).await;
    idle().await;
    let after = models.map(ScriptedModel::request_count);
    assert!(before[1] <= FUSE, "the compactor was called {} times: a runaway loop", before[1]);
    assert_eq!(after, before, "model calls while idle (channel, compactor); {} responses sent", h.adapter.sent().len());
    before
}

fn small_chronicle() -> CompactionSettings {
    CompactionSettings::default()
        .with_mode(CompactionMode::Chronicle)
        .with_chronicle(ChronicleSettings::default().with_interval(4, 0.9).with_rollups(3, 2))
}

#[tokio::test(start_paused = true)]
async fn chronicle_mode_with_rollups_between_checkpoints_rests_when_idle() {
    let WindowedAgent { channel, compactor, profile, .. } = windowed_agent(small_chronicle(), "ok", LARGE);
    compactor_answers(&compactor, summary);
    let log = Arc::new(MemoryLog::new());
    let mut h = start(profile, log.clone()).await;
    say(&mut h, 20).await;

    let [_, compactor_calls] = an_idle_hour_is_free(&h, [&channel, &compactor]).await;
    let checkpoints: Vec<Checkpoint> = log.checkpoints();
    let rollups = checkpoints.iter().filter(|c| c.level == 1).count();
    assert!(rollups >= 2, "rollups keep being made after the first one: {checkpoints:#?}");
    let waiting = checkpoints.iter().filter(|c| c.level == 0 && c.rolled_up_into.is_none()).count();
    assert!(waiting < 3, "no rollup is left undone: {checkpoints:#?}");
    // One summary call per checkpoint and rollup: nothing was thrown away and redone.
    assert_eq!(compactor_calls, checkpoints.len(), "{checkpoints:#?}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn chronicle_mode_rests_when_idle_even_if_the_compactor_always_fails() {
    let WindowedAgent { channel, compactor, profile, .. } = windowed_agent(small_chronicle(), "ok", LARGE);
    compactor_answers(&compactor, server_error);
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;
    say(&mut h, 20).await;
    an_idle_hour_is_free(&h, [&channel, &compactor]).await;
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rolling_mode_rests_when_idle_even_if_the_compactor_always_fails() {
    // A small window: every turn leaves the context over the background threshold.
    let WindowedAgent { channel, compactor, profile, .. } = windowed_agent(CompactionSettings::default(), "ok", 2_000);
    compactor_answers(&compactor, server_error);
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;
    say(&mut h, 12).await;
    an_idle_hour_is_free(&h, [&channel, &compactor]).await;
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rolling_mode_rests_when_idle() {
    let WindowedAgent { channel, compactor, profile, .. } = windowed_agent(CompactionSettings::default(), "ok", 2_000);
    compactor_answers(&compactor, || ScriptedTurn::text("Alice sent numbered messages."));
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;
    say(&mut h, 12).await;
    let [_, compactor_calls] = an_idle_hour_is_free(&h, [&channel, &compactor]).await;
    assert!(compactor_calls >= 1, "the small window called for summaries");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_compactor_that_keeps_failing_trips_the_agents_breaker_and_status_says_so() {
    // Summaries are retried after a second, so without the breaker every turn would call.
    let settings = CompactionSettings::default().with_retry_delay(Duration::from_secs(1));
    let WindowedAgent { channel, compactor, profile, .. } = windowed_agent(settings, "ok", 2_000);
    let profile =
        profile.with_background_budget(BackgroundBudgetSettings::default().with_breaker(3, Duration::from_secs(900)));
    compactor_answers(&compactor, server_error);
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;
    for i in 0..16 {
        h.say(CONV, &format!("message {i:02} {}", "x".repeat(380)));
        h.wait_turns(1).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(compactor.request_count(), 3, "the breaker stops background calls after 3 failures in a row");
    let status = h.runtime.handle().status().await.expect("status");
    assert!(status.notices.iter().any(|notice| notice.contains("paused")), "{:?}", status.notices);
    assert_eq!(channel.request_count(), 16, "the conversation is answered all along");

    // After the cooldown the breaker lets calls through again (half-open; see the budget's unit
    // tests), and status no longer reports it.
    tokio::time::sleep(Duration::from_secs(900)).await;
    let status = h.runtime.handle().status().await.expect("status");
    assert!(status.notices.is_empty(), "{:?}", status.notices);
    h.shutdown().await;
}

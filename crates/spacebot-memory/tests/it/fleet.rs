//! The fleet's leases on PostgreSQL (`PgLeases`): one holder per conversation even when members
//! race, expiry by the database's clock, renewal that reports what was lost, the messages a
//! member may take, hand-over signals, and member names that can't be shared.

use std::time::Duration;

use spacebot_core::{Claim, ConversationId, ConversationLog, Leases};
use spacebot_memory::{PgLeases, PgLog};
use spacebot_testing::PgServer;

use crate::support::{agent, inbound, reply_to};

const LEASE: Duration = Duration::from_secs(2);

async fn member(log: &PgLog, name: &str) -> PgLeases {
    PgLeases::join(log, name, Some(&format!("http://{name}:8080")), LEASE, &[agent("main")]).await.expect("joins")
}

fn conversation(name: &str) -> ConversationId {
    ConversationId::new(name)
}

#[tokio::test]
async fn of_members_racing_for_a_lease_exactly_one_gets_it_until_it_expires() {
    let url = PgServer::shared().await.create_database().await;
    // Each on its own connections, as daemons are.
    let mut logs = Vec::new();
    for _ in 0..8 {
        logs.push(PgLog::connect(&url).await.unwrap());
    }
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let members: Vec<PgLeases> =
        futures::future::join_all(logs.iter().zip(&names).map(|(log, name)| member(log, name))).await;
    let main = agent("main");

    for round in 0..10 {
        let c = conversation(&format!("c{round}"));
        let claims = futures::future::join_all(members.iter().map(|m| m.acquire(&main, &c))).await;
        let claims: Vec<Claim> = claims.into_iter().map(|claim| claim.expect("no error")).collect();
        let winners: Vec<usize> = (0..claims.len()).filter(|&i| claims[i] == Claim::Held).collect();
        assert_eq!(winners.len(), 1, "round {round}: {claims:?}");
        let winner = format!("m{}", winners[0]);
        for claim in &claims {
            assert!(*claim == Claim::Held || *claim == Claim::HeldBy(winner.clone()), "{claims:?}");
        }
    }

    // The holder keeps it by taking it again; another gets it only once it expired.
    let (a, b) = (&members[0], &members[1]);
    let c = conversation("solo");
    assert_eq!(a.acquire(&agent("main"), &c).await.unwrap(), Claim::Held);
    assert_eq!(a.acquire(&agent("main"), &c).await.unwrap(), Claim::Held);
    assert_eq!(b.acquire(&agent("main"), &c).await.unwrap(), Claim::HeldBy("m0".into()));
    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
    assert_eq!(b.acquire(&agent("main"), &c).await.unwrap(), Claim::Held);
    assert_eq!(a.acquire(&agent("main"), &c).await.unwrap(), Claim::HeldBy("m1".into()));

    let grants: Vec<String> =
        sqlx::query_scalar("SELECT holder FROM lease_grants WHERE conversation = 'solo' ORDER BY seq")
            .fetch_all(&sqlx::PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(grants, ["m0", "m1"], "a change of hands is recorded once, renewals not at all");
}

#[tokio::test]
async fn renewal_keeps_leases_alive_and_reports_those_taken_away() {
    let url = PgServer::shared().await.create_database().await;
    let log = PgLog::connect(&url).await.unwrap();
    let (a, b) = (member(&log, "a").await, member(&log, "b").await);
    let (kept, taken) = (conversation("kept"), conversation("taken"));
    assert_eq!(a.acquire(&agent("main"), &kept).await.unwrap(), Claim::Held);
    assert_eq!(a.acquire(&agent("main"), &taken).await.unwrap(), Claim::Held);

    // a renews `kept` past the first expiry; `taken` it does not, and b takes it.
    tokio::time::sleep(LEASE / 2).await;
    let lost = a.renew(&[(agent("main"), kept.clone())]).await.unwrap();
    assert!(lost.is_empty());
    tokio::time::sleep(LEASE / 2 + Duration::from_millis(200)).await;
    assert_eq!(b.acquire(&agent("main"), &kept).await.unwrap(), Claim::HeldBy("a".into()), "renewed");
    assert_eq!(b.acquire(&agent("main"), &taken).await.unwrap(), Claim::Held, "expired");

    let both = [(agent("main"), kept.clone()), (agent("main"), taken.clone())];
    assert_eq!(a.renew(&both).await.unwrap(), [(agent("main"), taken)], "the one b took is reported lost");

    let status = a.status().await.unwrap();
    assert_eq!(status.member, "a");
    let members: Vec<(&str, u64)> = status.members.iter().map(|m| (m.member.as_str(), m.conversations)).collect();
    assert_eq!(members, [("a", 1), ("b", 1)]);
    assert_eq!(status.members[0].address.as_deref(), Some("http://a:8080"));

    a.release_all().await.unwrap();
    assert_eq!(b.acquire(&agent("main"), &kept).await.unwrap(), Claim::Held, "given back at once");
    let listed: Vec<String> = b.status().await.unwrap().members.into_iter().map(|m| m.member).collect();
    assert_eq!(listed, ["b"], "a member that left is not listed");
}

#[tokio::test]
async fn a_member_may_take_the_messages_of_free_expired_and_own_conversations_and_is_told_of_handovers() {
    let url = PgServer::shared().await.create_database().await;
    let log = PgLog::connect(&url).await.unwrap();
    let (a, b) = (member(&log, "a").await, member(&log, "b").await);
    for (conversation, id) in [("free", "m1"), ("of-a", "m2"), ("of-b", "m3"), ("of-a", "m4"), ("answered", "m5")] {
        log.record_inbound(&inbound("main", conversation, id, "hi")).await.unwrap();
    }
    log.record_inbound(&inbound("other-agent", "free", "m6", "not hosted here")).await.unwrap();
    let answered = inbound("main", "answered", "m5", "hi");
    log.record_reply(&reply_to(&answered, "done"), std::slice::from_ref(&answered.id)).await.unwrap();
    a.acquire(&agent("main"), &conversation("of-a")).await.unwrap();
    b.acquire(&agent("main"), &conversation("of-b")).await.unwrap();

    let ids = |messages: Vec<spacebot_core::InboundMessage>| -> Vec<String> {
        messages.into_iter().map(|m| m.id.to_string()).collect()
    };
    assert_eq!(ids(a.claimable().await.unwrap()), ["m1", "m2", "m4"], "free and own, oldest first");
    assert_eq!(ids(b.claimable().await.unwrap()), ["m1", "m3"]);
    let in_a = log.unhandled_messages_in(&agent("main"), &conversation("of-a")).await.unwrap();
    assert_eq!(ids(in_a), ["m2", "m4"]);

    // A hand-over wakes the member it names, not another.
    b.hand_over(&agent("main"), &conversation("of-a"), "a").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), a.handed()).await.expect("a is told");
    assert!(tokio::time::timeout(Duration::from_millis(300), b.handed()).await.is_err(), "b is not");

    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
    assert_eq!(ids(b.claimable().await.unwrap()), ["m1", "m2", "m3", "m4"], "a's lease expired");
}

#[tokio::test]
async fn a_name_in_use_by_a_running_member_is_refused_but_a_dead_ones_is_taken_over() {
    let url = PgServer::shared().await.create_database().await;
    let log = PgLog::connect(&url).await.unwrap();
    let running = member(&log, "twin").await;
    // The running member renews while the newcomer waits to see whether it does.
    let renewing = async {
        for _ in 0..6 {
            tokio::time::sleep(LEASE / 4).await;
            running.renew(&[]).await.unwrap();
        }
    };
    let agents = [agent("main")];
    let (joined, ()) = tokio::join!(PgLeases::join(&log, "twin", None, LEASE, &agents), renewing);
    let error = joined.expect_err("refused").to_string();
    assert!(error.contains("twin") && error.contains("[fleet] member"), "{error}");

    // Killed: it stops renewing. A new run under the name takes over its leases.
    running.acquire(&agent("main"), &conversation("c")).await.unwrap();
    drop(running);
    let again = PgLeases::join(&log, "twin", None, LEASE, &[agent("main")]).await.expect("taken over");
    assert_eq!(again.acquire(&agent("main"), &conversation("c")).await.unwrap(), Claim::Held);
}

/// An engine that answers nothing: the test below is about what the runtime does at start.
struct Idle;

impl spacebot_core::ConversationEngine for Idle {
    fn run_conversation(
        &self,
        _ctx: spacebot_core::ConversationContext,
        mut inbox: spacebot_core::Inbox,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { while inbox.recv().await.is_some() {} })
    }
}

#[tokio::test]
async fn a_starting_member_settles_only_the_interrupted_runs_no_live_member_holds() {
    use spacebot_core::{ProcessId, ProcessKind, ProcessRun, ProcessRuns, Runtime};
    use std::sync::Arc;

    let url = PgServer::shared().await.create_database().await;
    let log = PgLog::connect(&url).await.unwrap();
    let run = |id: &str, conversation: &str| {
        ProcessRun::new(ProcessId::new(id), agent("main"), conversation.into(), ProcessKind::Worker, "a task", None)
    };
    log.started(&run("of-b", "held")).await.unwrap();
    log.started(&run("orphan", "free")).await.unwrap();
    // b runs `held`, and is alive.
    let b = member(&log, "b").await;
    b.acquire(&agent("main"), &conversation("held")).await.unwrap();

    let a_log = PgLog::connect(&url).await.unwrap();
    let a = member(&a_log, "a").await;
    let runtime = Runtime::builder()
        .engine(Arc::new(Idle))
        .log(Arc::new(a_log.clone()))
        .agent("main")
        .leases(Arc::new(a))
        .start()
        .await
        .unwrap();
    let unfinished = || async {
        let mut ids: Vec<String> = log.unfinished().await.unwrap().into_iter().map(|r| r.process.to_string()).collect();
        ids.sort();
        ids
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while unfinished().await.contains(&"orphan".to_owned()) {
        assert!(tokio::time::Instant::now() < deadline, "the orphaned run was never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(unfinished().await, ["of-b"], "b's run is b's: it still runs");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_member_taking_a_conversation_over_settles_what_the_dead_one_left_running() {
    use spacebot_core::{ProcessId, ProcessKind, ProcessRun, ProcessRuns, Runtime};
    use std::sync::Arc;

    let url = PgServer::shared().await.create_database().await;
    let log = PgLog::connect(&url).await.unwrap();
    // b ran conversation c and a worker in it for alice's message, then died (it stops renewing).
    let b = member(&log, "b").await;
    b.acquire(&agent("main"), &conversation("c")).await.unwrap();
    let asked = inbound("main", "c", "m-1", "summarise the report");
    log.record_inbound(&asked).await.unwrap();
    let worker = ProcessRun::new(
        ProcessId::new("w-of-b"),
        agent("main"),
        conversation("c"),
        ProcessKind::Worker,
        "summarise the report",
        Some(asked),
    );
    log.started(&worker).await.unwrap();
    drop(b);

    let a_log = PgLog::connect(&url).await.unwrap();
    let runtime = Runtime::builder()
        .engine(Arc::new(Idle))
        .log(Arc::new(a_log.clone()))
        .agent("main")
        .leases(Arc::new(member(&a_log, "a").await))
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !log.unfinished().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "b's worker was never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = log.history(&agent("main"), &conversation("c"), 10).await.unwrap();
    assert!(
        history.iter().any(|m| m.text.contains("interrupted by a restart") && m.text.contains("summarise the report")),
        "the conversation is told: {history:?}"
    );
    runtime.shutdown().await;
}

//! Runtimes sharing one log as a fleet: each conversation runs in one member at a time under a
//! lease, messages received by another member reach the holder, a member that dies loses its
//! conversations to the others after the lease time, and one that lost a lease stops answering.
//!
//! The leases are an in-memory table on tokio's paused clock; the PostgreSQL implementation has
//! its own tests (`spacebot-memory`), and the daemon's fleet test runs three real daemons.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use spacebot_core::{
    AgentId, Claim, ConversationId, ConversationLog, FleetMember, FleetStatus, InboundMessage, Leases, Runtime,
    StoreError,
};

use crate::support::{EchoEngine, FakeAdapter, MemoryLog, message};

const LEASE: Duration = Duration::from_secs(6);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Key = (AgentId, ConversationId);

/// The shared lease table, as the database would hold it.
#[derive(Default)]
struct Table {
    leases: Mutex<HashMap<Key, (String, Instant)>>,
    /// Each member's "you were handed a message" signal.
    signals: Mutex<HashMap<String, Arc<Notify>>>,
    /// Every change of holder, in order.
    grants: Mutex<Vec<(Key, String)>>,
    /// The connection leases, by adapter name.
    connections: Mutex<HashMap<String, (String, Instant)>>,
}

impl Table {
    fn holder(&self, conversation: &str) -> Option<String> {
        let key = (AgentId::new("main"), ConversationId::new(conversation));
        lock(&self.leases).get(&key).map(|(holder, _)| holder.clone())
    }

    /// Gives a lease to `member` whatever its state, as another member taking an expired lease
    /// would while its holder could not renew.
    fn force(&self, conversation: &str, member: &str) {
        let key = (AgentId::new("main"), ConversationId::new(conversation));
        lock(&self.leases).insert(key, (member.to_owned(), Instant::now() + LEASE));
    }
}

struct MemoryLeases {
    table: Arc<Table>,
    member: String,
    log: Arc<MemoryLog>,
    handed: Arc<Notify>,
    /// When set, `claimable` says it has read the log on the first, and waits for the second
    /// before it returns what it read: a test runs a race in between.
    gate: Mutex<Option<(Arc<Notify>, Arc<Notify>)>>,
}

impl MemoryLeases {
    fn new(table: &Arc<Table>, member: &str, log: &Arc<MemoryLog>) -> Arc<Self> {
        let handed = Arc::new(Notify::new());
        lock(&table.signals).insert(member.to_owned(), handed.clone());
        Arc::new(Self {
            table: table.clone(),
            member: member.to_owned(),
            log: log.clone(),
            handed,
            gate: Mutex::default(),
        })
    }
}

#[async_trait]
impl Leases for MemoryLeases {
    fn member(&self) -> &str {
        &self.member
    }

    fn lease_time(&self) -> Duration {
        LEASE
    }

    async fn acquire(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let key = (agent.clone(), conversation.clone());
        let mut leases = lock(&self.table.leases);
        match leases.get(&key) {
            Some((holder, expires)) if holder != &self.member && *expires > now => Ok(Claim::HeldBy(holder.clone())),
            current => {
                if current.is_none_or(|(holder, _)| holder != &self.member) {
                    lock(&self.table.grants).push((key.clone(), self.member.clone()));
                }
                leases.insert(key, (self.member.clone(), now + LEASE));
                Ok(Claim::Held)
            }
        }
    }

    async fn renew(&self, conversations: &[Key]) -> Result<Vec<Key>, StoreError> {
        let now = Instant::now();
        let mut leases = lock(&self.table.leases);
        let mut lost = Vec::new();
        for key in conversations {
            match leases.get_mut(key) {
                Some((holder, expires)) if holder == &self.member => *expires = now + LEASE,
                _ => lost.push(key.clone()),
            }
        }
        Ok(lost)
    }

    async fn claimable(&self) -> Result<Vec<InboundMessage>, StoreError> {
        let now = Instant::now();
        let unhandled = self.log.unhandled().await?;
        let gate = lock(&self.gate).take();
        if let Some((read, go)) = gate {
            read.notify_one();
            go.notified().await;
        }
        let leases = lock(&self.table.leases);
        Ok(unhandled
            .into_iter()
            .filter(|m| {
                let key = (m.agent.clone().expect("recorded with an agent"), m.conversation.clone());
                leases.get(&key).is_none_or(|(holder, expires)| holder == &self.member || *expires <= now)
            })
            .collect())
    }

    async fn hand_over(
        &self,
        _agent: &AgentId,
        _conversation: &ConversationId,
        holder: &str,
    ) -> Result<(), StoreError> {
        if let Some(signal) = lock(&self.table.signals).get(holder) {
            signal.notify_one();
        }
        Ok(())
    }

    async fn handed(&self) {
        self.handed.notified().await;
    }

    async fn acquire_connection(&self, adapter: &str) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut connections = lock(&self.table.connections);
        match connections.get(adapter) {
            Some((holder, expires)) if holder != &self.member && *expires > now => Ok(Claim::HeldBy(holder.clone())),
            _ => {
                connections.insert(adapter.to_owned(), (self.member.clone(), now + LEASE));
                Ok(Claim::Held)
            }
        }
    }

    async fn release_connection(&self, adapter: &str) -> Result<(), StoreError> {
        lock(&self.table.connections).retain(|name, (holder, _)| name != adapter || holder != &self.member);
        Ok(())
    }

    async fn address(&self, member: &str) -> Result<Option<String>, StoreError> {
        Ok(Some(format!("http://{member}")))
    }

    async fn release_all(&self) -> Result<(), StoreError> {
        lock(&self.table.leases).retain(|_, (holder, _)| holder != &self.member);
        lock(&self.table.connections).retain(|_, (holder, _)| holder != &self.member);
        Ok(())
    }

    async fn status(&self) -> Result<FleetStatus, StoreError> {
        let held = lock(&self.table.leases).values().filter(|(holder, _)| holder == &self.member).count();
        Ok(FleetStatus::new(
            &self.member,
            LEASE,
            vec![FleetMember::new(&self.member, None, 0, u64::try_from(held).unwrap_or(0), Vec::new())],
        ))
    }
}

/// One member: its engine, its adapter and its runtime, on the shared log and table.
struct Member {
    engine: Arc<EchoEngine>,
    adapter: Arc<FakeAdapter>,
    runtime: Runtime,
}

async fn member(name: &str, table: &Arc<Table>, log: &Arc<MemoryLog>) -> Member {
    member_with(name, table, log, FakeAdapter::new("chat")).await
}

async fn member_with(name: &str, table: &Arc<Table>, log: &Arc<MemoryLog>, adapter: Arc<FakeAdapter>) -> Member {
    member_with_leases(MemoryLeases::new(table, name, log), log, adapter).await
}

async fn member_with_leases(leases: Arc<MemoryLeases>, log: &Arc<MemoryLog>, adapter: Arc<FakeAdapter>) -> Member {
    let engine = EchoEngine::new();
    let runtime = Runtime::builder()
        .engine(engine.clone())
        .log(log.clone())
        .adapter(adapter.clone())
        .agent("main")
        .leases(leases)
        .start()
        .await
        .expect("the runtime starts");
    Member { engine, adapter, runtime }
}

#[tokio::test(start_paused = true)]
async fn a_conversation_runs_in_one_member_wherever_its_messages_arrive() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let a = member("a", &table, &log).await;
    let b = member("b", &table, &log).await;

    let texts: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        let to = if i % 2 == 0 { &a } else { &b };
        to.runtime.handle().submit(message("chat:c1", text)).await.expect("recorded");
    }
    a.adapter.until_delivered("echo: m19").await;

    assert_eq!(a.engine.seen_texts("chat:c1"), texts, "the first to take the lease answers all, in order");
    assert!(b.engine.seen().is_empty(), "the other member ran nothing");
    assert!(b.adapter.delivered_texts().is_empty());
    assert_eq!(table.holder("chat:c1").as_deref(), Some("a"));
    for inbound in log.inbound() {
        assert!(log.is_handled(&inbound.id), "{} answered", inbound.content.text());
    }

    // Conversations spread: one that b receives first is b's.
    b.runtime.handle().submit(message("chat:c2", "hello b")).await.expect("recorded");
    b.adapter.until_delivered("echo: hello b").await;
    assert_eq!(table.holder("chat:c2").as_deref(), Some("b"));
    let status = b.runtime.handle().status().await.expect("status");
    assert_eq!(status.fleet.expect("a member reports the fleet").member, "b");

    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
    assert_eq!(table.holder("chat:c1"), None, "shutdown gives the leases back");
}

#[tokio::test(start_paused = true)]
async fn a_dead_members_conversation_moves_on_after_the_lease_time() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let a = member("a", &table, &log).await;
    let b = member("b", &table, &log).await;
    a.runtime.handle().submit(message("chat:c1", "first")).await.expect("recorded");
    a.adapter.until_delivered("echo: first").await;

    // a dies without giving anything back (its tasks aborted, as by kill -9), holding the lease.
    let Member { runtime, engine: a_engine, .. } = a;
    drop(runtime);
    let died = Instant::now();
    b.runtime.handle().submit(message("chat:c1", "second")).await.expect("recorded");
    b.adapter.until_delivered("echo: second").await;
    let moved = died.elapsed();

    assert!(moved + Duration::from_millis(100) >= LEASE, "not before the lease expired: {moved:?}");
    assert!(moved <= LEASE + LEASE / 3 + Duration::from_millis(100), "within the lease and one look: {moved:?}");
    assert_eq!(b.engine.seen_texts("chat:c1"), ["second"], "the answered message is not answered again");
    assert_eq!(a_engine.seen_texts("chat:c1"), ["first"]);
    let grants: Vec<String> = lock(&table.grants).iter().map(|(_, holder)| holder.clone()).collect();
    assert_eq!(grants, ["a", "b"]);
    b.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn messages_a_dead_member_accepted_are_answered_by_the_next_holder_in_order() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let a = member("a", &table, &log).await;
    let b = member("b", &table, &log).await;
    // a takes the conversation and dies in the middle of its first (slow) turn; two more messages
    // queue behind it.
    for text in ["slow", "queued 1", "queued 2"] {
        a.runtime.handle().submit(message("chat:c1", text)).await.expect("recorded");
    }
    a.engine.until_seen_text("slow").await;
    drop(a.runtime);

    b.adapter.until_delivered("echo: queued 2").await;
    assert_eq!(b.engine.seen_texts("chat:c1"), ["slow", "queued 1", "queued 2"], "nothing lost, nothing reordered");
    b.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_member_that_lost_a_lease_stops_running_the_conversation() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let a = member("a", &table, &log).await;
    let b = member("b", &table, &log).await;
    a.runtime.handle().submit(message("chat:c1", "one")).await.expect("recorded");
    a.adapter.until_delivered("echo: one").await;
    assert_eq!(a.engine.live(), 1);

    // b took the lease while a could not renew it (a partition, say).
    table.force("chat:c1", "b");
    tokio::time::sleep(LEASE / 3 + Duration::from_millis(10)).await;
    assert_eq!(a.engine.live(), 0, "a ended its task at its next renewal");

    a.runtime.handle().submit(message("chat:c1", "two")).await.expect("recorded");
    b.adapter.until_delivered("echo: two").await;
    assert_eq!(a.engine.seen_texts("chat:c1"), ["one"]);
    let answered: HashSet<String> = b.engine.seen_texts("chat:c1").into_iter().collect();
    assert_eq!(answered, HashSet::from(["two".to_owned()]));
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_the_platform_gives_once_runs_in_one_member_and_moves_when_it_dies() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let exclusive = || {
        let adapter = FakeAdapter::new("chat");
        adapter.make_exclusive();
        adapter
    };
    let a = member_with("a", &table, &log, exclusive()).await;
    a.adapter.until_connected(1).await;
    let b = member_with("b", &table, &log, exclusive()).await;
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(a.adapter.start_calls(), 1, "a holds the connection and renews it");
    assert!(a.adapter.stream_is_open());
    assert_eq!(b.adapter.start_calls(), 0, "b waits for it");

    // a dies holding it: b starts it once the lease expired, within a third more.
    drop(a.runtime);
    let died = Instant::now();
    b.adapter.until_connected(1).await;
    let moved = died.elapsed();
    assert!(moved <= LEASE + LEASE / 3 + Duration::from_millis(100), "{moved:?}");
    assert_eq!(lock(&table.connections).get("chat").map(|(holder, _)| holder.clone()).as_deref(), Some("b"));

    // A message it receives is answered as any other.
    b.adapter.push(message("chat:c1", "over the platform"));
    b.adapter.until_delivered("echo: over the platform").await;

    // Taken away (b could not renew, say): b stops it at its next renewal.
    lock(&table.connections).insert("chat".to_owned(), ("c".to_owned(), Instant::now() + LEASE));
    tokio::time::sleep(LEASE / 3 + Duration::from_millis(10)).await;
    assert!(!b.adapter.stream_is_open(), "b closed its connection");
    b.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_routed_while_the_member_looks_at_the_log_is_answered_once() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let leases = MemoryLeases::new(&table, "a", &log);
    let a = member_with_leases(leases.clone(), &log, FakeAdapter::new("chat")).await;
    // The conversation is live and busy for a while: five slow turns queue up.
    for _ in 0..5 {
        a.runtime.handle().submit(message("chat:c1", "slow")).await.expect("recorded");
    }
    a.engine.until_seen_text("slow").await;

    // The next look reads the log; a message is routed before that look's result arrives.
    let (read, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *lock(&leases.gate) = Some((read.clone(), go.clone()));
    read.notified().await;
    a.runtime.handle().submit(message("chat:c1", "raced")).await.expect("recorded");
    tokio::time::sleep(Duration::from_millis(10)).await;
    go.notify_one();

    // Looks go on while it waits behind the slow turns; it is answered once.
    a.adapter.until_delivered("echo: raced").await;
    tokio::time::sleep(LEASE).await;
    let raced = a.engine.seen_texts("chat:c1").into_iter().filter(|text| text == "raced").count();
    assert_eq!(raced, 1, "{:?}", a.engine.seen_texts("chat:c1"));
    a.runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_whose_lease_is_lost_while_it_connects_stops_connecting() {
    let (table, log) = (Arc::new(Table::default()), MemoryLog::new());
    let adapter = FakeAdapter::new("chat");
    adapter.make_exclusive();
    adapter.hang_starts();
    let a = member_with("a", &table, &log, adapter).await;
    a.adapter.until_start_calls(1).await;

    // Another member takes the lease while a is still connecting: a gives up connecting, waits
    // for the lease, and connects again once it has it back (the other never renews).
    lock(&table.connections).insert("chat".to_owned(), ("x".to_owned(), Instant::now() + LEASE));
    tokio::time::sleep(LEASE / 3 + Duration::from_millis(10)).await;
    assert_eq!(a.adapter.start_calls(), 1, "not while x holds it");
    a.adapter.until_start_calls(2).await;
    assert_eq!(lock(&table.connections).get("chat").map(|(holder, _)| holder.clone()).as_deref(), Some("a"));
    a.runtime.shutdown().await;
}

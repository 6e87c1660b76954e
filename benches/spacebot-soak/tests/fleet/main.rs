//! The fleet measured (`docs/benchmarks.md`, "A fleet"): messages answered per second by 1, 2 and
//! 3 real daemons on one PostgreSQL database with an instant fake model, and how long the
//! conversations of a daemon killed with SIGKILL wait before another answers them.
//!
//! ```sh
//! cargo build --release -p spacebot
//! cargo test --release -p spacebot-soak --test fleet -- target/release/spacebot [MESSAGES] [CONVERSATIONS]
//! ```
//!
//! Each run takes a fresh database on a throwaway PostgreSQL server (`PgServer`, Debian's
//! PostgreSQL). Clients send every message of a conversation one after the other without waiting
//! for its answer, each to the next daemon in turn, all conversations at once; the figure is the
//! messages divided by the time from the first send to the last answer recorded. Everything runs
//! on this machine, the database and the clients included, so the figures compare with each
//! other, not with another machine.

#[path = "../soak/daemon.rs"]
#[allow(dead_code, reason = "the soak harness's daemon driver; the fleet needs only part of it")]
mod daemon;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, PgServer};

use crate::daemon::{Daemon, Home};

/// The lease time of the failover run (the default).
const LEASE_SECS: u64 = 6;
/// How long the answers may take to arrive once everything is sent.
const DRAIN: Duration = Duration::from_secs(300);

/// The config of a member; with no `member`, of a daemon alone on the database (no `[fleet]`).
fn config(model: &FakeLlmServer, url: &str, member: Option<&str>, lease_secs: u64) -> String {
    let fleet = member.map(|member| format!("[fleet]\nmember = \"{member}\"\nlease_secs = {lease_secs}\n"));
    format!(
        r#"
[api]
bind = "127.0.0.1:0"

[llm.providers.fake]
kind = "openai"
base_url = "{}"
api_key = "sk-fleet"

[llm.models]
channel = "fake/fake"

[storage]
url = "{url}"

{}"#,
        model.openai_base_url(),
        fleet.unwrap_or_default()
    )
}

/// A daemon with its own instant fake model, which signs its replies.
struct Member {
    daemon: Daemon,
    _home: Home,
    _model: FakeLlmServer,
}

async fn member(
    binary: &std::path::Path,
    url: &str,
    name: &'static str,
    fleet: bool,
    lease_secs: u64,
) -> anyhow::Result<Member> {
    let model = FakeLlmServer::start().await;
    model.respond_with(move |request| {
        let text = request.last_user_text().unwrap_or_default();
        let tag = text.rsplit(' ').next().unwrap_or_default();
        FakeReply::tool_call("reply", json!({ "content": format!("{name} answers {tag}") }))
    });
    let home = Home::new(&config(&model, url, fleet.then_some(name), lease_secs))?;
    let daemon = Daemon::start(binary, &home).await?;
    Ok(Member { daemon, _home: home, _model: model })
}

/// Sends `per` messages to each of `conversations`, conversation `c`'s `i`-th to daemon
/// `(c + i) % n`; returns when all are accepted.
async fn send_all(bases: Arc<Vec<String>>, prefix: &str, conversations: usize, per: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..conversations {
        let (http, bases, prefix) = (http.clone(), bases.clone(), prefix.to_owned());
        senders.spawn(async move {
            for i in 0..per {
                let base = &bases[(c + i) % bases.len()];
                let body =
                    json!({ "conversation": format!("{prefix}{c}"), "sender": "fleet", "text": format!("m{i}") });
                let response = http.post(format!("{base}/webhook/main")).json(&body).send().await?;
                if response.status().as_u16() != 202 {
                    bail!("{base} refused a message: {}", response.status());
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.context("a sender task")??;
    }
    Ok(())
}

/// Waits until every conversation holds `per` answers, read through `reader`.
async fn answered(reader: &Daemon, prefix: &str, conversations: usize, per: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN;
    for c in 0..conversations {
        loop {
            let messages = reader.messages(&format!("{prefix}{c}")).await.unwrap_or_default();
            if messages.iter().filter(|m| m["role"] == "assistant").count() >= per {
                break;
            }
            if Instant::now() > deadline {
                bail!("{prefix}{c} not answered within {DRAIN:?}: {messages:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

async fn throughput(
    binary: &std::path::Path,
    daemons: usize,
    fleet: bool,
    messages: usize,
    conversations: usize,
) -> anyhow::Result<f64> {
    let url = PgServer::shared().await.create_database().await;
    let names = ["f0", "f1", "f2"];
    let mut members = Vec::new();
    for name in names.into_iter().take(daemons) {
        members.push(member(binary, &url, name, fleet, LEASE_SECS).await?);
    }
    let bases = Arc::new(members.iter().map(|m| m.daemon.base.clone()).collect::<Vec<_>>());
    let per = messages / conversations;
    let started = Instant::now();
    send_all(bases, "t", conversations, per).await?;
    answered(&members[0].daemon, "t", conversations, per).await?;
    let seconds = started.elapsed().as_secs_f64();
    for member in members {
        member.daemon.terminate().await?;
    }
    Ok((per * conversations) as f64 / seconds)
}

/// Three daemons; the one holding conversation `k0` is killed; then a message to each of its
/// conversations goes to another daemon. Returns the seconds until each was answered.
async fn failover(binary: &std::path::Path, conversations: usize) -> anyhow::Result<Vec<f64>> {
    let url = PgServer::shared().await.create_database().await;
    let mut members = Vec::new();
    for name in ["f0", "f1", "f2"] {
        members.push(member(binary, &url, name, true, LEASE_SECS).await?);
    }
    // f1 takes every conversation: their first message goes to it.
    let f1 = Arc::new(vec![members[1].daemon.base.clone()]);
    send_all(f1, "k", conversations, 1).await?;
    answered(&members[0].daemon, "k", conversations, 1).await?;
    let killed = members.remove(1);
    let at = Instant::now();
    killed.daemon.kill().await?;
    let survivors = Arc::new(members.iter().map(|m| m.daemon.base.clone()).collect::<Vec<_>>());
    let http = reqwest::Client::new();
    for c in 0..conversations {
        let body = json!({ "conversation": format!("k{c}"), "sender": "fleet", "text": "after the kill" });
        http.post(format!("{}/webhook/main", survivors[c % survivors.len()])).json(&body).send().await?;
    }
    let mut waits = Vec::new();
    for c in 0..conversations {
        loop {
            let messages: Vec<Value> = members[0].daemon.messages(&format!("k{c}")).await.unwrap_or_default();
            if messages.iter().filter(|m| m["role"] == "assistant").count() >= 2 {
                waits.push(at.elapsed().as_secs_f64());
                break;
            }
            if at.elapsed() > DRAIN {
                bail!("k{c} not answered after the kill: {messages:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for member in members {
        member.daemon.terminate().await?;
    }
    Ok(waits)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1).filter(|arg| !arg.starts_with("--"));
    let binary = PathBuf::from(args.next().context("usage: fleet BIN [MESSAGES] [CONVERSATIONS]")?);
    let messages: usize = args.next().map_or(Ok(1000), |n| n.parse()).context("MESSAGES")?;
    let conversations: usize = args.next().map_or(Ok(100), |n| n.parse()).context("CONVERSATIONS")?;

    println!("| daemons | messages | answered per second |");
    println!("|---|---|---|");
    let rate = throughput(&binary, 1, false, messages, conversations).await?;
    println!("| 1, alone (no `[fleet]`) | {messages} over {conversations} conversations | {rate:.0} |");
    for daemons in 1..=3 {
        let rate = throughput(&binary, daemons, true, messages, conversations).await?;
        println!("| {daemons} in a fleet | {messages} over {conversations} conversations | {rate:.0} |");
    }
    let waits = failover(&binary, 20).await?;
    let (first, last) = (waits.iter().copied().fold(f64::MAX, f64::min), waits.iter().copied().fold(0.0, f64::max));
    println!();
    println!(
        "failover after SIGKILL (lease {LEASE_SECS} s, 20 conversations): answered {first:.2} to {last:.2} s after the kill"
    );
    Ok(())
}

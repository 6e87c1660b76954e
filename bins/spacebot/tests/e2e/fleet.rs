//! A fleet (`[fleet]`): three real daemons on one PostgreSQL database answer 1,000 messages over
//! 100 conversations sent to all three; one is killed with `kill -9` in the middle of the run and
//! started again later. Every accepted message gets exactly one reply, no conversation is
//! answered by two daemons at once (each reply is checked against the lease grants the database
//! recorded), and the killed daemon's conversations go on elsewhere within the lease time. And a
//! memory saved through one daemon is recalled through another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use spacebot_testing::{FakeLlmServer, FakeReply, PgServer};

use crate::daemon::{Daemon, Home, openai_config, run_cli};

const CONVERSATIONS: usize = 100;
const PER_CONVERSATION: usize = 10;
const MEMBERS: [&str; 3] = ["d0", "d1", "d2"];
const LEASE_SECS: u64 = 2;
/// How long the test waits for every accepted message to be answered once sending is done.
const DRAIN: Duration = Duration::from_secs(90);

fn config(fake: &FakeLlmServer, url: &str, member: &str) -> String {
    format!(
        "{}\n[storage]\nurl = \"{url}\"\n\n[fleet]\nmember = \"{member}\"\nlease_secs = {LEASE_SECS}\n",
        openai_config(&fake.openai_base_url())
    )
}

/// Each daemon's model signs its replies, so the log says who answered.
fn signed(fake: &FakeLlmServer, member: &'static str) {
    fake.respond_with(move |request| {
        // The channel shows the model `[time | sender] text`; the tag is the last word.
        let text = request.last_user_text().unwrap_or_default();
        let tag = text.rsplit(' ').next().unwrap_or_default();
        FakeReply::tool_call("reply", json!({ "content": format!("{member} answers {tag}") }))
    });
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 time").timestamp_millis()
}

/// Where each member's API is, `None` while it is down.
type Bases = Arc<Mutex<[Option<String>; 3]>>;

fn bases(bases: &Bases) -> std::sync::MutexGuard<'_, [Option<String>; 3]> {
    bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends the messages of conversation `c` one after the other, each to the member its number
/// picks, or the next one up when that one is down or refuses; returns the tags accepted, in
/// order.
async fn send_conversation(c: usize, bases_now: Bases, accepted: Arc<Mutex<usize>>) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut tags = Vec::new();
    for i in 0..PER_CONVERSATION {
        let tag = format!("c{c}-m{i}");
        // The tag is the message's key too: a send retried after its answer was lost (the
        // member died first) is recorded once.
        let body = json!({ "conversation": format!("c{c}"), "sender": "alice", "text": tag, "id": tag });
        let mut sent = false;
        for attempt in 0..30 {
            let index = (c + i + attempt) % MEMBERS.len();
            let Some(base) = bases(&bases_now)[index].clone() else { continue };
            let response = http.post(format!("{base}/webhook/main")).json(&body).send().await;
            if response.is_ok_and(|response| response.status().as_u16() == 202) {
                sent = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sent, "no member accepted {tag}");
        tags.push(tag);
        *accepted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        tokio::time::sleep(Duration::from_millis(40 + (c as u64 * 7 + i as u64 * 13) % 40)).await;
    }
    tags
}

async fn wait_until(accepted: &Arc<Mutex<usize>>, count: usize) {
    let deadline = Instant::now() + DRAIN;
    while *accepted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) < count {
        assert!(Instant::now() < deadline, "fewer than {count} messages accepted in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_answer_every_message_once_and_survive_a_kill() {
    let server = PgServer::shared().await;
    let url = server.create_database().await;
    let mut fakes = Vec::new();
    let mut homes = Vec::new();
    for member in MEMBERS {
        let fake = FakeLlmServer::start().await;
        signed(&fake, member);
        homes.push(Home::new(&config(&fake, &url, member)));
        fakes.push(fake);
    }
    let mut daemons: Vec<Option<Daemon>> = Vec::new();
    for home in &homes {
        let mut daemon = Daemon::start(home).await;
        daemon.wait_for_log("member of a fleet", Duration::from_secs(10)).await;
        daemons.push(Some(daemon));
    }
    let bases_now: Bases = Arc::new(Mutex::new([0, 1, 2].map(|i| daemons[i].as_ref().map(|d| d.base.clone()))));

    // `spacebot status` through the API: every member sees the three.
    let status: Value = reqwest::get(format!("{}/api/status", daemons[0].as_ref().expect("up").base))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    let members: Vec<&str> = status["fleet"]["members"]
        .as_array()
        .expect("a fleet in the status")
        .iter()
        .filter_map(|m| m["member"].as_str())
        .collect();
    assert_eq!(members, MEMBERS, "{status}");
    let base = daemons[2].as_ref().expect("up").base.clone();
    let dir = homes[2].dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || run_cli(&["status", "--url", &base], &[], &dir)).await.unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("fleet: member d2 of 3"), "{printed}");
    for member in MEMBERS {
        assert!(
            printed.lines().any(|line| line.trim_start().starts_with(&format!("{member} at http://127.0.0.1:"))),
            "{printed}"
        );
    }

    let started = Instant::now();
    let accepted = Arc::new(Mutex::new(0_usize));
    let senders: Vec<_> =
        (0..CONVERSATIONS).map(|c| tokio::spawn(send_conversation(c, bases_now.clone(), accepted.clone()))).collect();

    // Mid-run, d1 dies without a word; what it held is read just before.
    let total = CONVERSATIONS * PER_CONVERSATION;
    wait_until(&accepted, total * 2 / 5).await;
    let held_by_d1: Vec<String> = server
        .rows(&url, "SELECT conversation FROM leases WHERE holder = 'd1' AND expires_at > spacebot_now_ms()")
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    bases(&bases_now)[1] = None;
    let killed_at = now_ms();
    daemons[1].take().expect("d1 runs").crash().await;
    let dead_at = now_ms();

    // Later it comes back under the same name and takes its share again: once its conversations
    // had the time to move (back sooner, it would take its own expired leases back first).
    wait_until(&accepted, total * 7 / 10).await;
    tokio::time::sleep(
        Duration::from_secs(LEASE_SECS * 2)
            .saturating_sub(Duration::from_millis(u64::try_from(now_ms() - dead_at).unwrap_or(0))),
    )
    .await;
    let restarted_at = now_ms();
    let mut again = Daemon::start(&homes[1]).await;
    again.wait_for_log("member of a fleet", Duration::from_secs(10)).await;
    bases(&bases_now)[1] = Some(again.base.clone());
    daemons[1] = Some(again);

    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for (c, sender) in senders.into_iter().enumerate() {
        sent.insert(format!("webhook:c{c}"), sender.await.expect("sender task"));
    }
    let sending = started.elapsed();

    // Every accepted message answered, read from the log through d0.
    let reader = daemons[0].as_ref().expect("d0 runs");
    let deadline = Instant::now() + DRAIN;
    let mut logs: HashMap<String, Vec<Value>> = HashMap::new();
    for c in 0..CONVERSATIONS {
        loop {
            let messages = reader.messages("main", &format!("c{c}")).await;
            let answers = messages.iter().filter(|m| m["role"] == "assistant").count();
            if answers >= PER_CONVERSATION {
                logs.insert(format!("webhook:c{c}"), messages);
                break;
            }
            assert!(Instant::now() < deadline, "c{c} has {answers} answers of {PER_CONVERSATION}: {messages:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let answered_in = started.elapsed();
    // Anything answered twice would arrive late: give it a moment, then read again.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;

    let grants = server.rows(&url, "SELECT conversation, holder, granted_at FROM lease_grants ORDER BY seq").await;
    let mut grants_of: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for row in grants {
        grants_of.entry(row[0].clone()).or_default().push((row[2].parse().expect("a time"), row[1].clone()));
    }
    let mut failovers = Vec::new();
    let mut moved = 0;
    for (conversation, tags) in &sent {
        let name = conversation.trim_start_matches("webhook:");
        let messages = reader.messages("main", name).await;
        let users: Vec<&str> =
            messages.iter().filter(|m| m["role"] == "user").filter_map(|m| m["text"].as_str()).collect();
        assert_eq!(users, *tags, "{conversation}: the log holds exactly the accepted messages, in order");
        let replies: Vec<(&str, &str, i64)> = messages
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| {
                let text = m["text"].as_str().expect("text");
                let (member, tag) = text.split_once(" answers ").unwrap_or_else(|| panic!("a signed reply: {text}"));
                (member, tag, millis(m["created_at"].as_str().expect("created_at")))
            })
            .collect();
        let answered: Vec<&str> = replies.iter().map(|(_, tag, _)| *tag).collect();
        assert_eq!(answered, *tags, "{conversation}: one reply per message, in order: {messages:#?}");

        // Each reply was written by the member holding the lease at that moment.
        let grants = &grants_of[conversation];
        for (member, tag, at) in &replies {
            let holder =
                grants.iter().rev().find(|(granted_at, _)| granted_at <= at).map(|(_, holder)| holder.as_str());
            assert_eq!(holder, Some(*member), "{conversation}: {tag} answered by {member} at {at}; grants {grants:?}");
        }
        // Nothing is answered by d1 while it is dead (its replies a moment before SIGKILL landed
        // aside); its conversations go on elsewhere.
        let while_dead = replies.iter().find(|(member, _, at)| *member == "d1" && *at > dead_at && *at < restarted_at);
        assert!(while_dead.is_none(), "{conversation}: {while_dead:?} while d1 was dead");
        if held_by_d1.contains(conversation)
            && let Some((_, _, at)) = replies.iter().find(|(member, _, at)| *member != "d1" && *at > killed_at)
        {
            failovers.push(at - killed_at);
            moved += 1;
        }
    }
    assert!(moved > 0, "some of d1's conversations had messages after the kill: {held_by_d1:?}");
    failovers.sort_unstable();
    let worst = *failovers.last().expect("at least one");
    let lease_ms = i64::try_from(LEASE_SECS * 1000).expect("fits");
    // The lease runs out, the others look every third of it, and then the two survivors restart
    // d1's thirty-odd conversations at once and answer their backlogs on two cores: 3.3-4.2 s
    // worst when this test runs alone in a debug build (nextest runs it so, see
    // `.config/nextest.toml`). A takeover that waited a second lease period would still show.
    assert!(worst <= lease_ms + lease_ms / 3 + 2500, "failover took {worst} ms (lease {lease_ms} ms): {failovers:?}");
    eprintln!(
        "fleet: {total} messages in {sending:.1?} (all answered after {answered_in:.1?}); d1 held {} conversations, \
         {moved} went on elsewhere after the kill: first reply {} ms median, {worst} ms worst (lease {lease_ms} ms)",
        held_by_d1.len(),
        failovers[failovers.len() / 2]
    );

    // A request that waits for its reply is answered by the member running the conversation,
    // whichever member it reaches: d0 takes `openai:bob`, d2 passes bob's next request to it.
    let first = complete(daemons[0].as_ref().expect("d0 runs"), "hello", false).await;
    assert_eq!(first, "d0 answers hello");
    let second = complete(daemons[2].as_ref().expect("d2 runs"), "again", false).await;
    assert_eq!(second, "d0 answers again", "d2 forwarded it to d0");
    let streamed = complete(daemons[1].as_ref().expect("d1 runs"), "streamed", true).await;
    assert_eq!(streamed, "d0 answers streamed", "streamed back through d1");
    // A request one member sent another is never sent on again: the member that gets it for a
    // conversation it doesn't run says so.
    let d2 = daemons[2].as_ref().expect("d2 runs");
    let body = json!({ "model": "main", "user": "bob", "messages": [{ "role": "user", "content": "loop?" }] });
    let response = d2
        .http
        .post(format!("{}/v1/chat/completions", d2.base))
        .header("x-spacebot-forwarded", "d1")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 503);
    let error: Value = response.json().await.expect("an OpenAI error");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("d0")), "{error}");

    for daemon in daemons.into_iter().flatten() {
        daemon.stop().await;
    }
}

/// Bob's chat completion through `daemon`: the reply's text, whole or put together from the
/// streamed chunks.
async fn complete(daemon: &Daemon, text: &str, stream: bool) -> String {
    let body =
        json!({ "model": "main", "user": "bob", "stream": stream, "messages": [{ "role": "user", "content": text }] });
    let response =
        daemon.http.post(format!("{}/v1/chat/completions", daemon.base)).json(&body).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    if !stream {
        let answer: Value = response.json().await.expect("JSON");
        return answer["choices"][0]["message"]["content"].as_str().expect("content").to_owned();
    }
    let events = response.text().await.expect("events");
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
    events
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).expect("a chunk"))
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// The agents' memories are in the database a fleet shares: a memory a branch saves in one
/// daemon is in the knowledge render of another daemon's new conversation with the same person,
/// and that daemon's memory search (its own in-memory copies, caught up from the change log)
/// finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_saved_through_one_daemon_is_recalled_through_another() {
    let url = PgServer::shared().await.create_database().await;
    let model = FakeLlmServer::start().await;
    model.respond_with(crate::memory::script);
    let homes = [Home::new(&config(&model, &url, "m0")), Home::new(&config(&model, &url, "m1"))];
    let saver = Daemon::start(&homes[0]).await;
    let reader = Daemon::start(&homes[1]).await;

    // The reader's copies are loaded before the save, so finding it means catching up.
    let search = |query: &'static str| {
        let base = reader.base.clone();
        async move {
            let body: Value = reqwest::get(format!("{base}/api/agents/main/memories?q={query}&limit=5"))
                .await
                .expect("memory search")
                .json()
                .await
                .expect("memory search JSON");
            let hits = body["hits"].as_array().expect("hits");
            hits.iter().filter_map(|hit| hit["memory"]["content"].as_str().map(str::to_owned)).collect::<Vec<_>>()
        }
    };
    assert!(search("green%20tea").await.is_empty(), "nothing saved yet");

    saver.say("main", "tea", "alice", "please remember that I like green tea").await;
    let deadline = Instant::now() + crate::daemon::PATIENCE;
    while !saver.wait_for_answers("main", "tea", 1).await.iter().any(|m| m.to_string().contains("Noted for later.")) {
        assert!(Instant::now() < deadline, "the saver's branch never reported back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let hits = search("green%20tea").await;
    assert!(hits.iter().any(|content| content == "Alice likes green tea"), "{hits:?}");

    let before = model.request_count();
    reader.say("main", "hello", "alice", "hi from alice").await;
    reader.wait_for_answers("main", "hello", 1).await;
    let system = model.requests()[before..]
        .iter()
        .find(|r| r.last_user_text().unwrap_or_default().contains("hi from alice"))
        .and_then(|r| r.system_text())
        .expect("the reader's request for Alice's new conversation");
    assert!(system.contains("Alice likes green tea"), "{system}");

    for daemon in [saver, reader] {
        let (status, _) = daemon.stop().await;
        assert!(status.success());
    }

    // `spacebot memory` on the config of either opens the graph in the database.
    let config = homes[1].config_path();
    let data_dir = homes[1].data_dir();
    let out = run_cli(
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "memory",
            "search",
            "--local",
            "green",
            "tea",
        ],
        &[],
        homes[1].dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("Alice likes green tea"), "{stdout}\n{:?}", out.stderr);
}

//! The invariants, read from the two SQLite files after the daemon has stopped (read-only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::model::tokens;

/// What the stored state says about one trial.
#[derive(Debug, Default, Clone)]
pub(crate) struct Findings {
    /// Accepted messages found answered exactly once.
    pub(crate) answered_once: u64,
    /// Accepted messages never answered.
    pub(crate) unanswered: u64,
    /// Messages (accepted or not) answered more than once.
    pub(crate) answered_twice: u64,
    /// Accepted messages missing from the log.
    pub(crate) lost: u64,
    /// Branch and worker runs with a recorded end.
    pub(crate) settled: u64,
    /// ... and their results or interruptions told to the conversation exactly once.
    pub(crate) relayed_once: u64,
    /// ... told never.
    pub(crate) not_relayed: u64,
    /// ... told more than once.
    pub(crate) relayed_twice: u64,
    /// Runs with no recorded end after a clean stop.
    pub(crate) unsettled: u64,
    /// Background tasks started more than once.
    pub(crate) run_twice: u64,
    /// Databases whose `PRAGMA integrity_check` is not `ok`.
    pub(crate) integrity_failures: u64,
    /// Whether live memories, vectors and full-text rows disagree.
    pub(crate) memory_mismatch: u64,
    /// Live memories at the end.
    pub(crate) memories: u64,
    /// One line per violation.
    pub(crate) violations: Vec<String>,
}

/// One stored message.
struct Stored {
    id: String,
    conversation: String,
    role: String,
    text: String,
    handled: bool,
    inbound: bool,
}

/// One process run.
struct Run {
    conversation: String,
    kind: String,
    description: String,
    state: Option<String>,
}

async fn open(path: &Path) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?.read_only(true);
    options.connect().await.with_context(|| format!("can't open {}", path.display()))
}

async fn integrity(connection: &mut SqliteConnection, name: &str, findings: &mut Findings) -> anyhow::Result<()> {
    let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&mut *connection).await?;
    let verdict: Vec<String> = rows.iter().map(|row| row.get::<String, _>(0)).collect();
    if verdict != ["ok"] {
        findings.integrity_failures += 1;
        findings.violations.push(format!("integrity: {name}: {}", verdict.join("; ")));
    }
    Ok(())
}

/// Checks the data dir of a stopped daemon against the messages the harness had accepted
/// (`accepted`: message id and token).
pub(crate) async fn check(data_dir: &Path, accepted: &[(String, String)]) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    let mut log = open(&data_dir.join("spacebot.db")).await?;
    integrity(&mut log, "spacebot.db", &mut findings).await?;
    let stored: Vec<Stored> = sqlx::query(
        "SELECT id, conversation, role, text, handled_at IS NOT NULL AS handled, inbound_json IS NOT NULL AS inbound \
         FROM messages WHERE agent = 'main' ORDER BY seq",
    )
    .fetch_all(&mut log)
    .await?
    .iter()
    .map(|row| Stored {
        id: row.get("id"),
        conversation: row.get("conversation"),
        role: row.get("role"),
        text: row.get("text"),
        handled: row.get("handled"),
        inbound: row.get("inbound"),
    })
    .collect();
    let runs: Vec<Run> = sqlx::query(
        "SELECT conversation, kind, description, state FROM process_runs \
         WHERE agent = 'main' AND kind IN ('branch', 'worker') ORDER BY started_at",
    )
    .fetch_all(&mut log)
    .await?
    .iter()
    .map(|row| Run {
        conversation: row.get("conversation"),
        kind: row.get("kind"),
        description: row.get("description"),
        state: row.get("state"),
    })
    .collect();
    log.close().await?;

    check_answers(&stored, accepted, &mut findings);
    check_runs(&stored, &runs, &mut findings);

    let memory_db = data_dir.join("agents").join("main").join("memory.db");
    if memory_db.exists() {
        let mut memory = open(&memory_db).await?;
        integrity(&mut memory, "agents/main/memory.db", &mut findings).await?;
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        let live = count("SELECT count(*) FROM memories WHERE forgotten_at IS NULL").fetch_one(&mut memory).await?;
        let vectors = count("SELECT count(*) FROM memory_vectors").fetch_one(&mut memory).await?;
        // One docsize row per document the full-text index holds.
        let indexed = count("SELECT count(*) FROM memories_fts_docsize").fetch_one(&mut memory).await?;
        memory.close().await?;
        findings.memories = u64::try_from(live).unwrap_or(0);
        if live != vectors || live != indexed {
            findings.memory_mismatch += 1;
            findings
                .violations
                .push(format!("memory: {live} live memories, {vectors} vectors, {indexed} full-text rows"));
        }
    }
    Ok(findings)
}

/// Every accepted message stored, handled and answered exactly once; no message answered twice.
fn check_answers(stored: &[Stored], accepted: &[(String, String)], findings: &mut Findings) {
    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    for message in stored.iter().filter(|m| m.role == "assistant" && m.text.starts_with("ack ")) {
        for token in tokens(&message.text) {
            *answers.entry(token).or_default() += 1;
        }
    }
    for (id, token) in accepted {
        let Some(message) = stored.iter().find(|m| &m.id == id && m.inbound) else {
            findings.lost += 1;
            findings.violations.push(format!("lost: accepted message {token} ({id}) is not in the log"));
            continue;
        };
        let count = answers.get(token).copied().unwrap_or(0);
        match count {
            0 => {
                findings.unanswered += 1;
                let handled = if message.handled { "marked handled" } else { "not handled" };
                findings
                    .violations
                    .push(format!("unanswered: accepted message {token} in {} ({handled})", message.conversation));
            }
            1 => findings.answered_once += 1,
            _ => {}
        }
    }
    for (token, count) in &answers {
        if *count > 1 {
            findings.answered_twice += 1;
            findings.violations.push(format!("answered twice: {token} got {count} answers"));
        }
    }
}

/// Every settled branch or worker told once (its result relayed, or a notice that it stopped);
/// no task started twice; nothing left unsettled.
fn check_runs(stored: &[Stored], runs: &[Run], findings: &mut Findings) {
    let mut started: BTreeMap<(String, String), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        started.entry((run.conversation.clone(), run.description.clone())).or_default().push(run);
    }
    let mut told_tokens: BTreeSet<String> = BTreeSet::new();
    for ((conversation, description), copies) in &started {
        let Some(token) = tokens(description).into_iter().next() else { continue };
        if copies.len() > 1 {
            findings.run_twice += 1;
            findings.violations.push(format!(
                "run twice: {} {token} in {conversation} started {} times",
                copies[0].kind,
                copies.len()
            ));
        }
        if !told_tokens.insert(token.clone()) {
            continue;
        }
        let settled = copies.iter().filter(|run| run.state.is_some()).count();
        let unsettled = copies.len() - settled;
        if unsettled > 0 {
            findings.unsettled += 1;
            findings.violations.push(format!("unsettled: {token} has no recorded end after a clean stop"));
        }
        if settled == 0 {
            continue;
        }
        findings.settled += 1;
        let told = stored
            .iter()
            .filter(|m| &m.conversation == conversation && m.role != "user" && !m.text.starts_with("ack "))
            .filter(|m| tokens(&m.text).contains(&token))
            .count();
        let states: Vec<&str> = copies.iter().filter_map(|run| run.state.as_deref()).collect();
        match told.cmp(&settled) {
            std::cmp::Ordering::Equal => findings.relayed_once += 1,
            std::cmp::Ordering::Less => {
                findings.not_relayed += 1;
                findings.violations.push(format!(
                    "not relayed: {} {token} in {conversation} ended {} and the conversation was told {told} time(s)",
                    copies[0].kind,
                    states.join(", ")
                ));
            }
            std::cmp::Ordering::Greater => {
                findings.relayed_twice += 1;
                findings.violations.push(format!(
                    "relayed twice: {} {token} in {conversation} ended {} and the conversation was told {told} times",
                    copies[0].kind,
                    states.join(", ")
                ));
            }
        }
    }
}

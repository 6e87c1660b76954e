//! `spacebot memory list|search|add|forget|reindex|import`: an agent's memory, from the command
//! line. Works on the agent's memory file directly (`DATA_DIR/agents/<agent>/memory.db`), so it
//! runs with or without the daemon; a running daemon sees the changes on its next read. `search`
//! asks the running daemon first (`GET /api/agents/{agent}/memories`: no second model load),
//! and opens the file itself when no daemon answers or with `--local`. `--json` prints every
//! field for other programs; `import` reads text, markdown and JSON Lines and says how many
//! memories it stored, merged and skipped.
//!
//! The embedder is the daemon's: the config's `[memory]` section, built by the same
//! [`memory_setup::embedder`]. Flags or `SPACEBOT_EMBEDDER`,
//! `SPACEBOT_EMBEDDING_URL`, `SPACEBOT_EMBEDDING_MODEL`, `SPACEBOT_EMBEDDING_DIMENSIONS`,
//! `SPACEBOT_EMBEDDING_API_KEY` override it, with a warning when the result differs from the
//! daemon's (its next start reindexes back). When the embedder differs from the one the memories
//! were embedded with, the command reindexes first, with a progress bar.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

use spacebot_core::{
    AgentId, Embedder, ListOrder, ListQuery, MemoryId, MemoryScope, MemoryStore, MemoryType, NewEdge, NewMemory,
    RecallQuery, RelationKind, SaveStatus, Visibility,
};
use spacebot_memory::{ImportMark, MemoryGraph, chunk_text, text_hash};

use crate::cli::{EmbedderArgs, EmbedderKind, GlobalArgs, MemoryArgs, MemoryCommand};
use crate::config::{self, Config, EmbedderSettings};
use crate::memory_setup;

/// Chunks saved per transaction during an import.
const IMPORT_BATCH: usize = 32;

/// Memories embedded per transaction during a reindex.
const REINDEX_BATCH: usize = 64;

pub(crate) fn run(global: &GlobalArgs, args: MemoryArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&global.location())?.with_embedded_default();
    // Warnings (a query that could not be embedded, a reindex) reach stderr as the daemon's do.
    crate::start::init_tracing(spacebot_core::Scrubber::new().with_secrets(config.secrets()), "warn");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("can't start tokio")?;
    runtime.block_on(async {
        // A search is the running daemon's when there is one: no second model load, no second
        // copy of the indexes.
        if let MemoryCommand::Search { limit, json, query, local: false } = &args.command {
            let client = crate::client::Client::new(global)?;
            if let Some(hits) = client.memory_search(&args.agent, &query.join(" "), *limit).await? {
                print_hits(&hits, *json)?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        let embedder = build_embedder(&config.memory.embedder, &args.embedder)?;
        let store = match &config.storage {
            crate::config::StorageSettings::Sqlite => {
                MemoryGraph::open(&config.data_dir.memory_db(&args.agent), embedder).await?
            }
            crate::config::StorageSettings::Postgres { url } => {
                MemoryGraph::on_postgres(&spacebot_memory::PgLog::connect(url).await?, embedder).await?
            }
        };
        let result = command(&store, &AgentId::from(args.agent.as_str()), args.command).await;
        store.close().await;
        result
    })
}

fn build_embedder(daemon: &EmbedderSettings, args: &EmbedderArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    let settings = embedder_settings(daemon, args)?;
    if settings != *daemon {
        eprintln!(
            "warning: the embedder flags (or SPACEBOT_EMBEDDER/SPACEBOT_EMBEDDING_*) differ from the \
             config's [memory] embedder; the daemon's next start reindexes these memories back"
        );
    }
    memory_setup::embedder(&settings)
}

/// The daemon's embedder settings with the flags that are set laid over them.
fn embedder_settings(daemon: &EmbedderSettings, args: &EmbedderArgs) -> anyhow::Result<EmbedderSettings> {
    let daemon_dimensions = match daemon {
        EmbedderSettings::Hashing { dimensions } | EmbedderSettings::OpenAi { dimensions, .. } => *dimensions,
        // The model fixes its own length; 384 is the config's default for the others.
        #[cfg(feature = "local-embeddings")]
        EmbedderSettings::Local { .. } => 384,
    };
    let dimensions = args.embedding_dimensions.unwrap_or(daemon_dimensions);
    if !(8..=8192).contains(&dimensions) {
        bail!("--embedding-dimensions must be between 8 and 8192, not {dimensions}");
    }
    let openai = match (args.embedder, daemon) {
        (Some(EmbedderKind::Hashing), _) | (None, EmbedderSettings::Hashing { .. }) => false,
        (Some(EmbedderKind::Openai), _) | (None, EmbedderSettings::OpenAi { .. }) => true,
        // No flag picks the local model, so without --embedder the daemon's is kept as it is.
        #[cfg(feature = "local-embeddings")]
        (None, EmbedderSettings::Local { .. }) => return Ok(daemon.clone()),
    };
    if !openai {
        return Ok(EmbedderSettings::Hashing { dimensions });
    }
    let (daemon_url, daemon_model, daemon_key) = match daemon {
        EmbedderSettings::OpenAi { base_url, model, api_key, .. } => {
            (Some(base_url.clone()), Some(model.clone()), api_key.clone())
        }
        EmbedderSettings::Hashing { .. } => (None, None, None),
        #[cfg(feature = "local-embeddings")]
        EmbedderSettings::Local { .. } => (None, None, None),
    };
    let Some(base_url) = args.embedding_url.clone().or(daemon_url) else {
        bail!(
            "--embedding-url (or SPACEBOT_EMBEDDING_URL, or `memory.embedding_base_url` in the config) is required \
             with --embedder openai"
        )
    };
    Ok(EmbedderSettings::OpenAi {
        base_url,
        model: args
            .embedding_model
            .clone()
            .or(daemon_model)
            .unwrap_or_else(|| config::DEFAULT_EMBEDDING_MODEL.to_owned()),
        dimensions,
        api_key: args.embedding_api_key.clone().or(daemon_key),
    })
}

async fn command(store: &MemoryGraph, agent: &AgentId, command: MemoryCommand) -> anyhow::Result<ExitCode> {
    if !matches!(command, MemoryCommand::Reindex) && store.pending_reindex().await? > 0 {
        eprintln!("the embedder changed: reindexing first");
        reindex(store).await?;
    }
    match command {
        MemoryCommand::List { kind, limit, forgotten, json } => {
            let mut query = ListQuery::new(agent.clone())
                .with_visibility(Visibility::Operator)
                .with_order(ListOrder::Recent)
                .with_page(limit, 0);
            if let Some(kind) = kind {
                query = query.with_kinds([parse_type(&kind)?]);
            }
            if forgotten {
                query = query.including_forgotten();
            }
            let memories = store.list(query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&memories)?);
            } else {
                for memory in memories {
                    println!("{}", line(&memory));
                }
            }
        }
        MemoryCommand::Search { query, limit, json, .. } => {
            let query = RecallQuery::new(agent.clone(), query.join(" "))
                .with_visibility(Visibility::Operator)
                .with_limit(limit)
                .without_access_recording();
            print_hits(&store.recall(query).await?, json)?;
        }
        MemoryCommand::Add { kind, importance, private_to, links, text } => {
            let kind = parse_type(&kind)?;
            let scope = match private_to {
                Some(human) => MemoryScope::private_to(agent.clone(), human),
                None => MemoryScope::agent(agent.clone()),
            };
            let mut memory = NewMemory::new(kind, text.join(" "), scope).with_source("cli");
            if let Some(importance) = importance {
                if !(0.0..=1.0).contains(&importance) {
                    bail!("--importance {importance} must be between 0 and 1");
                }
                memory = memory.with_importance(importance);
            }
            for link in links {
                let (relation, target) = parse_link(&link)?;
                if store.get(agent, &target).await?.is_none() {
                    bail!("--link {link}: agent {agent} has no memory {target}");
                }
                memory.edges.push(NewEdge::new(target, relation));
            }
            let outcome = store.save(memory).await?;
            println!("{} {:?}", outcome.id, outcome.status);
        }
        MemoryCommand::Forget { id } => {
            if !store.forget(agent, &MemoryId::from(id.as_str())).await? {
                bail!("agent {agent} has no memory {id} (or it is already forgotten)");
            }
            println!("forgotten {id}");
        }
        MemoryCommand::Reindex => {
            let done = reindex(store).await?;
            println!("reindexed {done} memories with {}", store.embedder().model_id());
        }
        MemoryCommand::Import { kind, chunk_bytes, files } => {
            let kind = parse_type(&kind)?;
            let mut tally = Tally::default();
            for file in files {
                let extension = file.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
                if matches!(extension.as_str(), "jsonl" | "ndjson") {
                    import_lines(store, agent, kind, &file, &mut tally).await?;
                } else {
                    import(store, agent, kind, chunk_bytes, &file, &mut tally).await?;
                }
            }
            println!(
                "imported: {} stored, {} merged into similar memories, {} skipped (already stored)",
                tally.stored, tally.merged, tally.skipped
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn reindex(store: &MemoryGraph) -> anyhow::Result<u64> {
    let mut bar = Progress::new("reindex");
    let done = store.reindex(REINDEX_BATCH, &mut |done, total| bar.show(done, total)).await?;
    bar.finish();
    Ok(done)
}

/// What an import did, memory by memory.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// New memories.
    stored: u64,
    /// Near-duplicates absorbed by a memory already there.
    merged: u64,
    /// Already stored (the same content, or a chunk an earlier run imported).
    skipped: u64,
}

impl Tally {
    fn count(&mut self, outcomes: &[spacebot_core::SaveOutcome]) {
        for outcome in outcomes {
            match outcome.status {
                SaveStatus::Created => self.stored += 1,
                SaveStatus::Merged => self.merged += 1,
                _ => self.skipped += 1,
            }
        }
    }
}

/// One memory of a JSON Lines import: the content, and optionally where it came from, its type
/// and importance, and when it was said.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    content: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    importance: Option<f32>,
    #[serde(default)]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Imports a JSON Lines file, one memory per line (`{"content": ..., "source": ..., "type":
/// ..., "importance": ..., "created_at": RFC 3339}`); the whole file is checked before anything
/// is saved, so a bad line (named with its number) saves nothing.
async fn import_lines(
    store: &MemoryGraph,
    agent: &AgentId,
    kind: MemoryType,
    file: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let text = tokio::fs::read_to_string(file).await.with_context(|| format!("can't read {}", file.display()))?;
    let mut memories = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", file.display(), number + 1);
        let item: ImportLine = serde_json::from_str(line).with_context(|| format!("can't read {}", at()))?;
        let kind = match &item.kind {
            Some(label) => parse_type(label).with_context(at)?,
            None => kind,
        };
        let mut memory = NewMemory::new(kind, item.content, MemoryScope::agent(agent.clone()))
            .with_source(item.source.unwrap_or_else(|| format!("file:{}#{}", file.display(), number + 1)));
        if let Some(importance) = item.importance {
            if !(0.0..=1.0).contains(&importance) {
                bail!("{}: importance {importance} must be between 0 and 1", at());
            }
            memory = memory.with_importance(importance);
        }
        if let Some(at) = item.created_at {
            memory = memory.with_created_at(at);
        }
        memories.push(memory);
    }
    let mut bar = Progress::new(&file.display().to_string());
    let total = memories.len() as u64;
    let mut done = 0;
    bar.show(done, total);
    let mut memories = memories.into_iter().peekable();
    while memories.peek().is_some() {
        let batch: Vec<NewMemory> = memories.by_ref().take(IMPORT_BATCH).collect();
        done += batch.len() as u64;
        let outcomes = store.save_batch(batch).await.with_context(|| format!("can't import {}", file.display()))?;
        tally.count(&outcomes);
        bar.show(done, total);
    }
    bar.finish();
    Ok(())
}

/// Prints search hits: one line each, or a JSON array of every field (the memory, the fused
/// score and the rank each list gave it).
fn print_hits(hits: &[spacebot_core::RecallHit], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no memory matches");
    }
    for hit in hits {
        println!("{:.4}  {}", hit.score, line(&hit.memory));
    }
    Ok(())
}

/// Imports one text or markdown file, in chunks, resuming after the chunks already saved.
async fn import(
    store: &MemoryGraph,
    agent: &AgentId,
    kind: MemoryType,
    chunk_bytes: usize,
    file: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let extension = file.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    if !matches!(extension.as_str(), "txt" | "md" | "markdown" | "text" | "") {
        bail!(
            "can't import {}: only text and markdown files (.txt, .md, .markdown) and JSON Lines (.jsonl) are supported",
            file.display()
        );
    }
    let text = tokio::fs::read_to_string(file).await.with_context(|| format!("can't read {}", file.display()))?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
    let hash = text_hash(&text);
    let chunks = chunk_text(&text, chunk_bytes);
    let done = store.imported_chunks(agent, &hash).await?;
    let total = chunks.len() as u64;
    let mut bar = Progress::new(&name);
    let mut saved = done.len() as u64;
    tally.skipped += saved;
    bar.show(saved, total);
    let pending: Vec<(usize, String)> =
        chunks.into_iter().enumerate().filter(|(index, _)| !done.contains(index)).collect();
    for batch in pending.chunks(IMPORT_BATCH) {
        let items = batch
            .iter()
            .map(|(index, chunk)| {
                let memory = NewMemory::new(kind, chunk.clone(), MemoryScope::agent(agent.clone()))
                    .with_source(format!("file:{name}#{}", index + 1));
                (memory, ImportMark::new(hash.clone(), *index))
            })
            .collect();
        let outcomes = store.save_imported(items).await.with_context(|| format!("can't import {}", file.display()))?;
        tally.count(&outcomes);
        saved += batch.len() as u64;
        bar.show(saved, total);
    }
    bar.finish();
    Ok(())
}

fn parse_type(label: &str) -> anyhow::Result<MemoryType> {
    MemoryType::from_label(label).with_context(|| {
        let labels: Vec<&str> = MemoryType::ALL.iter().map(|kind| kind.label()).collect();
        format!("unknown memory type `{label}`; use one of: {}", labels.join(", "))
    })
}

/// `RELATION:ID` of `--link`.
fn parse_link(link: &str) -> anyhow::Result<(RelationKind, MemoryId)> {
    let labels = || RelationKind::ALL.iter().map(|kind| kind.label()).collect::<Vec<_>>().join(", ");
    let (relation, id) = link
        .split_once(':')
        .filter(|(_, id)| !id.trim().is_empty())
        .with_context(|| format!("--link {link}: write RELATION:ID, with a relation among {}", labels()))?;
    let relation = RelationKind::from_label(relation.trim())
        .with_context(|| format!("--link {link}: unknown relation `{relation}`; use one of: {}", labels()))?;
    Ok((relation, MemoryId::from(id.trim())))
}

fn line(memory: &spacebot_core::Memory) -> String {
    let first = memory.content.lines().next().unwrap_or_default();
    let scope = match (&memory.scope.human, memory.scope.private) {
        (Some(human), true) => format!(" private:{human}"),
        (None, true) => " private:conversation".to_owned(),
        _ => String::new(),
    };
    let forgotten = if memory.forgotten { " (forgotten)" } else { "" };
    format!(
        "{}  {:<11} {:.2}  {}{scope}{forgotten}  {first}",
        memory.id,
        memory.kind.label(),
        memory.importance,
        memory.created_at.format("%Y-%m-%d")
    )
}

/// A one-line progress bar on stderr, redrawn in place on a terminal.
struct Progress {
    label: String,
    terminal: bool,
    drawn: bool,
}

impl Progress {
    fn new(label: &str) -> Self {
        Self { label: label.to_owned(), terminal: std::io::stderr().is_terminal(), drawn: false }
    }

    fn show(&mut self, done: u64, total: u64) {
        const WIDTH: u64 = 30;
        let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
        // Both are at most WIDTH, so they fit in usize.
        let bar = format!("{}{}", "#".repeat(filled as usize), " ".repeat((WIDTH - filled) as usize));
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r{} [{bar}] {done}/{total}", self.label);
        } else if done == total {
            let _ = writeln!(stderr, "{} [{bar}] {done}/{total}", self.label);
        }
        let _ = stderr.flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.terminal && self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_a_relation_and_a_memory() {
        let (relation, id) = parse_link("updates:m-123").unwrap();
        assert_eq!((relation, id.as_str()), (RelationKind::Updates, "m-123"));
        assert!(parse_link("m-123").unwrap_err().to_string().contains("write RELATION:ID"));
        assert!(parse_link("updates:").unwrap_err().to_string().contains("write RELATION:ID"));
        let unknown = parse_link("likes:m-1").unwrap_err().to_string();
        assert!(unknown.contains("unknown relation `likes`") && unknown.contains("related_to"), "{unknown}");
    }

    fn no_flags() -> EmbedderArgs {
        EmbedderArgs {
            embedder: None,
            embedding_url: None,
            embedding_model: None,
            embedding_dimensions: None,
            embedding_api_key: None,
        }
    }

    fn openai() -> EmbedderSettings {
        EmbedderSettings::OpenAi {
            base_url: "http://embed".into(),
            model: "m".into(),
            dimensions: 64,
            api_key: Some("k".into()),
        }
    }

    #[test]
    fn without_flags_the_cli_uses_the_daemons_embedder() {
        let hashing = EmbedderSettings::Hashing { dimensions: 64 };
        assert_eq!(embedder_settings(&hashing, &no_flags()).unwrap(), hashing);
        assert_eq!(embedder_settings(&openai(), &no_flags()).unwrap(), openai());
        let daemon = memory_setup::embedder(&hashing).unwrap();
        let cli = memory_setup::embedder(&embedder_settings(&hashing, &no_flags()).unwrap()).unwrap();
        assert_eq!(daemon.model_id(), cli.model_id());
    }

    #[test]
    fn flags_override_field_by_field() {
        let args = EmbedderArgs { embedding_dimensions: Some(32), ..no_flags() };
        assert_eq!(
            embedder_settings(&EmbedderSettings::Hashing { dimensions: 384 }, &args).unwrap(),
            EmbedderSettings::Hashing { dimensions: 32 }
        );
        let args = EmbedderArgs { embedding_model: Some("other".into()), ..no_flags() };
        let EmbedderSettings::OpenAi { base_url, model, api_key, .. } = embedder_settings(&openai(), &args).unwrap()
        else {
            panic!("still openai")
        };
        assert_eq!((base_url.as_str(), model.as_str(), api_key.as_deref()), ("http://embed", "other", Some("k")));
        let args = EmbedderArgs { embedder: Some(EmbedderKind::Hashing), ..no_flags() };
        assert_eq!(embedder_settings(&openai(), &args).unwrap(), EmbedderSettings::Hashing { dimensions: 64 });
        let args = EmbedderArgs { embedder: Some(EmbedderKind::Openai), ..no_flags() };
        let error = embedder_settings(&EmbedderSettings::Hashing { dimensions: 384 }, &args).unwrap_err();
        assert!(error.to_string().contains("--embedding-url"), "{error}");
        let args = EmbedderArgs { embedding_dimensions: Some(0), ..no_flags() };
        assert!(embedder_settings(&openai(), &args).is_err());
    }
}

//! The in-memory copies recall reads, under one lock and one generation: the vectors of the
//! current model (`vectors.rs`) and the words of every live memory (`text.rs`).
//!
//! SQLite holds the truth. The copies are loaded at open and updated by the writer right after
//! each commit, while it still holds the store's write lock, so they follow the database commit
//! by commit. Another process writing the same file bumps `memory_meta.generation`; a reader
//! that sees a generation other than the copies' catches them up before using them: it re-reads
//! the memories logged in `memory_changes` since the copies' stamp (migration 0006), or, when
//! that log was trimmed past the stamp or lists more than a quarter of the copy, reloads
//! everything. Rows the copies point to are re-read from SQLite with the full visibility
//! filter, so a stale copy can cost ranking quality, never correctness.

use std::sync::Arc;

use futures::TryStreamExt;

use spacebot_core::{MemoryId, MemoryType};

use crate::memory::Stamp;
use crate::memory::db::{Db, on_tx};
use crate::memory::rows::decode_vector_into;
use crate::memory::text::TextIndex;
use crate::memory::vectors::{Entry, VectorIndex};

/// The copies and the stamp of the file they reflect.
#[derive(Debug)]
pub(crate) struct Indexes {
    /// `None` until loaded.
    synced: Option<Stamp>,
    pub(crate) vectors: VectorIndex,
    pub(crate) text: TextIndex,
    /// How many full loads the copies of this store have had (the first at open): catching up
    /// from the change log does not count.
    pub(crate) loads: u32,
}

impl Indexes {
    /// Empty copies for vectors of `dimensions`, to be loaded.
    pub(crate) fn new(dimensions: usize) -> Self {
        Self { synced: None, vectors: VectorIndex::new(dimensions), text: TextIndex::new(), loads: 0 }
    }

    /// The stamp of the file the copies reflect exactly.
    pub(crate) fn synced(&self) -> Option<Stamp> {
        self.synced
    }

    pub(crate) fn set_synced(&mut self, stamp: Option<Stamp>) {
        self.synced = stamp;
    }

    /// Applies what [`changes_since`] read: every changed memory leaves the copies, those still
    /// live come back as they are now.
    pub(crate) fn apply(&mut self, changes: Changes) {
        for seq in changes.changed {
            self.remove(seq);
        }
        for (entry, content, vector) in changes.live {
            self.insert(entry, &content, vector.as_deref());
        }
        self.synced = Some(changes.stamp);
    }

    /// Adds a memory that a commit created: its words, and its vector when it has one.
    pub(crate) fn insert(&mut self, entry: Entry, content: &str, vector: Option<&[f32]>) {
        if let Some(vector) = vector {
            self.vectors.upsert(entry.clone(), vector);
        }
        self.text.insert(entry, content);
    }

    /// Drops a memory that a commit forgot.
    pub(crate) fn remove(&mut self, seq: i64) {
        self.vectors.remove(seq);
        self.text.remove(seq);
    }
}

/// The columns of a memory that its [`Entry`] holds, as every query feeding the copies selects
/// them (`m.seq, m.id, m.agent, m.kind, m.private, m.human, m.conversation, m.scope_key,
/// m.created_at`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct EntryRow {
    pub(crate) seq: i64,
    id: String,
    agent: String,
    kind: String,
    private: i64,
    human: Option<String>,
    conversation: Option<String>,
    scope_key: String,
    created_at: i64,
}

impl EntryRow {
    /// The entry; `agents` shares agent strings (files usually hold one agent's memories).
    pub(crate) fn into_entry(self, agents: &mut Vec<Arc<str>>) -> Entry {
        let agent = match agents.iter().find(|known| ***known == *self.agent) {
            Some(known) => known.clone(),
            None => {
                let agent: Arc<str> = Arc::from(self.agent.as_str());
                agents.push(agent.clone());
                agent
            }
        };
        Entry {
            seq: self.seq,
            id: MemoryId::from(self.id),
            agent,
            kind: MemoryType::from_label(&self.kind).unwrap_or(MemoryType::Fact),
            private: self.private != 0,
            human: self.human.map(Arc::from),
            conversation: self.conversation.map(Arc::from),
            scope_key: Arc::from(self.scope_key),
            created_at: self.created_at,
            partition: 0,
        }
    }
}

#[derive(sqlx::FromRow)]
struct LoadRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    content: String,
    vector: Option<Vec<u8>>,
}

/// The live memories' columns the copies hold, with the vector of the model bound as `$1`,
/// followed by the rest of the statement.
macro_rules! load_select {
    ($rest:literal) => {
        concat!(
            "SELECT m.seq, m.id, m.agent, m.kind, m.private, m.human, m.conversation, m.scope_key,
                    m.created_at, m.content, v.vector
             FROM memories m LEFT JOIN memory_vectors v ON v.memory_seq = m.seq AND v.model = $1
             WHERE m.forgotten_at IS NULL ",
            $rest
        )
    };
}

/// What changed in the file since a stamp, as [`Indexes::apply`] takes it.
#[derive(Debug)]
pub(crate) struct Changes {
    stamp: Stamp,
    /// Every memory the log names, live or not.
    changed: Vec<i64>,
    /// Those still live, as they are now.
    live: Vec<(Entry, String, Option<Vec<f32>>)>,
}

impl Changes {
    /// How many memories changed.
    pub(crate) fn len(&self) -> usize {
        self.changed.len()
    }
}

/// The memories logged as changed after `since`, read in one snapshot; `None` when the log no
/// longer reaches back to `since` (maintenance trimmed it) or names more than `limit` memories:
/// the caller reloads everything then.
pub(crate) async fn changes_since(
    db: &Db,
    model: &str,
    dimensions: usize,
    since: Stamp,
    limit: usize,
) -> Result<Option<Changes>, sqlx::Error> {
    let mut snapshot = db.begin_snapshot().await?;
    let stamp = snapshot.read_stamp().await?;
    if stamp.change < since.change || stamp.generation < since.generation {
        // The file went back (restored from a copy, say): nothing in it relates to the copies.
        return Ok(None);
    }
    if stamp.change == since.change {
        snapshot.commit().await?;
        return Ok(Some(Changes { stamp, changed: Vec::new(), live: Vec::new() }));
    }
    let oldest: Option<i64> =
        on_tx!(&mut snapshot, |conn| sqlx::query_scalar("SELECT MIN(id) FROM memory_changes").fetch_one(conn).await)?;
    if oldest.is_none_or(|oldest| oldest > since.change + 1) {
        return Ok(None);
    }
    let changed: Vec<i64> = on_tx!(&mut snapshot, |conn| sqlx::query_scalar(
        "SELECT DISTINCT seq FROM memory_changes WHERE id > $1 LIMIT $2"
    )
    .bind(since.change)
    .bind(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await)?;
    if changed.len() > limit {
        return Ok(None);
    }
    let changed_json = serde_json::Value::from(changed.clone()).to_string();
    let rows: Vec<LoadRow> = on_tx!(&mut snapshot, |conn| sqlx::query_as(load_select!(
        "AND m.seq IN (SELECT CAST(value AS BIGINT) FROM json_each($2))"
    ))
    .bind(model)
    .bind(&changed_json)
    .fetch_all(conn)
    .await)?;
    snapshot.commit().await?;
    let mut agents = Vec::new();
    let mut vector = Vec::new();
    let live = rows
        .into_iter()
        .map(|row| {
            let LoadRow { entry, content, vector: bytes } = row;
            let entry = entry.into_entry(&mut agents);
            let vector =
                bytes.filter(|bytes| decode_vector_into(bytes, dimensions, &mut vector)).map(|_| vector.clone());
            (entry, content, vector)
        })
        .collect();
    Ok(Some(Changes { stamp, changed, live }))
}

/// Rows handed from the reading task to the building thread at a time.
const LOAD_CHUNK: usize = 512;

/// Every live memory's words and its vector of `model`, with the generation they reflect, read
/// in one snapshot. Rows are streamed, never all held at once, and the copies are built on a
/// blocking thread while the rows are read (so a load, seconds at 100,000 memories, never
/// holds up an async worker).
pub(crate) async fn load(db: &Db, model: &str, dimensions: usize) -> Result<Indexes, sqlx::Error> {
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<LoadRow>>(4);
    let builder = tokio::task::spawn_blocking(move || {
        let mut indexes = Indexes::new(dimensions);
        let mut agents: Vec<Arc<str>> = Vec::new();
        let mut vector = Vec::with_capacity(dimensions);
        while let Some(chunk) = received.blocking_recv() {
            for row in chunk {
                let LoadRow { entry, content, vector: bytes } = row;
                let entry = entry.into_entry(&mut agents);
                let has_vector = bytes.is_some_and(|bytes| decode_vector_into(&bytes, dimensions, &mut vector));
                indexes.insert(entry, &content, has_vector.then_some(vector.as_slice()));
            }
        }
        indexes.vectors.shrink_to_fit();
        indexes.text.shrink_to_fit();
        indexes
    });
    let read = async {
        let mut snapshot = db.begin_snapshot().await?;
        let stamp = snapshot.read_stamp().await?;
        on_tx!(&mut snapshot, |conn| {
            let mut rows = sqlx::query_as::<_, LoadRow>(load_select!("ORDER BY m.seq")).bind(model).fetch(conn);
            let mut chunk = Vec::with_capacity(LOAD_CHUNK);
            while let Some(row) = rows.try_next().await? {
                chunk.push(row);
                if chunk.len() == LOAD_CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK));
                    // A closed channel means the builder panicked, which the join below reports.
                    if chunks.send(full).await.is_err() {
                        break;
                    }
                }
            }
            let _ = chunks.send(chunk).await;
        });
        drop(chunks);
        snapshot.commit().await?;
        Ok::<Stamp, sqlx::Error>(stamp)
    };
    let stamp = read.await;
    let mut indexes =
        builder.await.map_err(|error| sqlx::Error::Protocol(format!("building the memory index failed: {error}")))?;
    indexes.set_synced(Some(stamp?));
    indexes.loads = 1;
    Ok(indexes)
}

#[cfg(test)]
mod tests {
    use spacebot_core::{
        AgentId, MaintenanceOptions, MemoryScope, MemoryStore, MemoryType, NewMemory, RecallQuery, Visibility,
    };

    use crate::embed::HashingEmbedder;
    use crate::memory::MemoryGraph;

    async fn open(path: &std::path::Path) -> MemoryGraph {
        MemoryGraph::open(path, std::sync::Arc::new(HashingEmbedder::new(32))).await.unwrap().with_merge_similarity(2.0)
    }

    async fn recall(store: &MemoryGraph, text: &str, visibility: Visibility) -> Vec<String> {
        let query = RecallQuery::new("main", text).with_visibility(visibility).without_access_recording();
        let hits = store.recall(query).await.unwrap();
        // Only what the copies found by words counts here: the rows step would hide a copy
        // that still held a forgotten memory.
        hits.into_iter().filter(|hit| hit.text_rank.is_some()).map(|hit| hit.memory.content).collect()
    }

    /// Another process's saves, forgets and identity links reach this store's copies through
    /// the change log, without a reload; once maintenance trimmed the log past them, they reload.
    #[tokio::test]
    async fn another_process_s_writes_are_caught_up_from_the_change_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.db");
        let daemon = open(&path).await;
        let cli = open(&path).await;
        let agent = AgentId::from("main");
        for i in 0..30 {
            daemon
                .save(NewMemory::new(MemoryType::Fact, format!("filler number {i}"), MemoryScope::agent("main")))
                .await
                .unwrap();
        }
        assert_eq!(daemon.read_index().loads, 1);

        let saved = cli
            .save(NewMemory::new(MemoryType::Fact, "the pager rota lives in the wiki", MemoryScope::agent("main")))
            .await
            .unwrap();
        let private = NewMemory::new(
            MemoryType::Preference,
            "prefers tea to coffee",
            MemoryScope::private_to("main", "discord:42"),
        );
        cli.save(private).await.unwrap();
        assert_eq!(recall(&daemon, "pager rota", Visibility::Shared).await, ["the pager rota lives in the wiki"]);
        assert_eq!(daemon.read_index().text.len(), 32);
        assert_eq!(daemon.read_index().vectors.len(), 32);

        cli.forget(&agent, &saved.id).await.unwrap();
        // The private memory moves to the person discord:42 is, so a conversation with that
        // person's other account sees it.
        cli.link_identity(&agent, "discord:42", "alice").await.unwrap();
        assert!(recall(&daemon, "pager rota", Visibility::Shared).await.is_empty());
        let with_alice = Visibility::conversation("slack:T1:C1", ["alice"]);
        assert_eq!(recall(&daemon, "tea", with_alice).await, ["prefers tea to coffee"]);
        assert_eq!(daemon.read_index().text.len(), 31);
        assert_eq!(daemon.read_index().loads, 1, "caught up, not reloaded");

        // Maintenance trims the log to its newest entries; a copy older than those reloads.
        cli.save(NewMemory::new(MemoryType::Fact, "the build runs nightly", MemoryScope::agent("main"))).await.unwrap();
        sqlx::query("DELETE FROM memory_changes").execute(cli.sqlite_pool()).await.unwrap();
        assert_eq!(recall(&daemon, "nightly build", Visibility::Shared).await, ["the build runs nightly"]);
        assert_eq!(daemon.read_index().loads, 2, "reloaded");
        // And the reloaded copies catch up again from there.
        cli.save(NewMemory::new(MemoryType::Fact, "deploys happen on tuesdays", MemoryScope::agent("main")))
            .await
            .unwrap();
        assert_eq!(recall(&daemon, "deploys tuesdays", Visibility::Shared).await, ["deploys happen on tuesdays"]);
        assert_eq!(daemon.read_index().loads, 2);
        let report = cli.maintain(&agent, MaintenanceOptions::default()).await.unwrap();
        assert!(report.complete);
    }

    /// A file that went back under a running store (restored from an older copy) is reloaded,
    /// not caught up: its change log says nothing about what the copies hold.
    #[tokio::test]
    async fn a_file_restored_to_an_older_copy_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.db");
        let backup = dir.path().join("backup.db");
        let daemon = open(&path).await;
        daemon.save(NewMemory::new(MemoryType::Fact, "kept in the backup", MemoryScope::agent("main"))).await.unwrap();
        sqlx::query("VACUUM INTO $1")
            .bind(backup.to_string_lossy().into_owned())
            .execute(daemon.sqlite_pool())
            .await
            .unwrap();
        for i in 0..5 {
            let memory = NewMemory::new(MemoryType::Fact, format!("after the backup {i}"), MemoryScope::agent("main"));
            daemon.save(memory).await.unwrap();
        }
        assert_eq!(daemon.read_index().text.len(), 6);
        // The restored file, as a store that opens it sees it: behind the daemon's copies.
        let restored = open(&backup).await;
        assert_eq!(restored.read_index().text.len(), 1);
        let stamp = restored.read_index().synced().unwrap();
        let ahead = daemon.read_index().synced().unwrap();
        assert!(stamp.change < ahead.change && stamp.generation < ahead.generation);
        let model = restored.embedder().model_id().to_owned();
        let changes = super::changes_since(&restored.db, &model, 32, ahead, 1_000).await.unwrap();
        assert!(changes.is_none(), "a file behind the copies is not caught up from");
    }
}

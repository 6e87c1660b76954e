//! The in-memory copies recall reads, under one lock and one generation: the vectors of the
//! current model (`vectors.rs`) and the words of every live memory (`text.rs`).
//!
//! SQLite holds the truth. The copies are loaded at open and updated by the writer right after
//! each commit, while it still holds the store's write lock, so they follow the database commit
//! by commit. Another process writing the same file bumps `memory_meta.generation`; a reader
//! that sees a generation other than the copies' reloads them before using them. Rows the
//! copies point to are re-read from SQLite with the full visibility filter, so a stale copy can
//! cost ranking quality, never correctness.

use std::sync::Arc;

use futures::TryStreamExt;
use sqlx::SqlitePool;

use spacebot_core::{MemoryId, MemoryType};

use crate::memory::read_generation;
use crate::memory::rows::decode_vector_into;
use crate::memory::text::TextIndex;
use crate::memory::vectors::{Entry, VectorIndex};

/// The copies and the database generation they reflect.
#[derive(Debug)]
pub(crate) struct Indexes {
    /// `None` when they must be reloaded.
    generation: Option<i64>,
    pub(crate) vectors: VectorIndex,
    pub(crate) text: TextIndex,
}

impl Indexes {
    /// Empty copies for vectors of `dimensions`, to be loaded.
    pub(crate) fn new(dimensions: usize) -> Self {
        Self { generation: None, vectors: VectorIndex::new(dimensions), text: TextIndex::new() }
    }

    pub(crate) fn generation(&self) -> Option<i64> {
        self.generation
    }

    pub(crate) fn set_generation(&mut self, generation: Option<i64>) {
        self.generation = generation;
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

#[derive(sqlx::FromRow)]
struct LoadRow {
    seq: i64,
    id: String,
    agent: String,
    kind: String,
    private: i64,
    human: Option<String>,
    conversation: Option<String>,
    scope_key: String,
    created_at: i64,
    content: String,
    vector: Option<Vec<u8>>,
}

/// Rows handed from the reading task to the building thread at a time.
const LOAD_CHUNK: usize = 512;

/// Every live memory's words and its vector of `model`, with the generation they reflect, read
/// in one snapshot. Rows are streamed, never all held at once, and the copies are built on a
/// blocking thread while the rows are read (so a load, seconds at 100,000 memories, never
/// holds up an async worker).
pub(crate) async fn load(pool: &SqlitePool, model: &str, dimensions: usize) -> Result<Indexes, sqlx::Error> {
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<LoadRow>>(4);
    let builder = tokio::task::spawn_blocking(move || {
        let mut indexes = Indexes::new(dimensions);
        let mut agents: Vec<Arc<str>> = Vec::new();
        let mut vector = Vec::with_capacity(dimensions);
        while let Some(chunk) = received.blocking_recv() {
            for row in chunk {
                // Share the agent string: files usually hold one agent's memories.
                let agent = match agents.iter().find(|known| ***known == *row.agent) {
                    Some(known) => known.clone(),
                    None => {
                        let agent: Arc<str> = Arc::from(row.agent.as_str());
                        agents.push(agent.clone());
                        agent
                    }
                };
                let entry = Entry {
                    seq: row.seq,
                    id: MemoryId::from(row.id),
                    agent,
                    kind: MemoryType::from_label(&row.kind).unwrap_or(MemoryType::Fact),
                    private: row.private != 0,
                    human: row.human.map(Arc::from),
                    conversation: row.conversation.map(Arc::from),
                    scope_key: Arc::from(row.scope_key),
                    created_at: row.created_at,
                    partition: 0,
                };
                let has_vector = row.vector.is_some_and(|bytes| decode_vector_into(&bytes, dimensions, &mut vector));
                indexes.insert(entry, &row.content, has_vector.then_some(vector.as_slice()));
            }
        }
        indexes.vectors.shrink_to_fit();
        indexes.text.shrink_to_fit();
        indexes
    });
    let read = async {
        let mut snapshot = pool.begin().await?;
        let generation = read_generation(&mut *snapshot).await?;
        {
            let mut rows = sqlx::query_as::<_, LoadRow>(
                "SELECT m.seq, m.id, m.agent, m.kind, m.private, m.human, m.conversation, m.scope_key, m.created_at,
                        m.content, v.vector
                 FROM memories m LEFT JOIN memory_vectors v ON v.memory_seq = m.seq AND v.model = ?1
                 WHERE m.forgotten_at IS NULL
                 ORDER BY m.seq",
            )
            .bind(model)
            .fetch(&mut *snapshot);
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
        }
        drop(chunks);
        snapshot.commit().await?;
        Ok::<i64, sqlx::Error>(generation)
    };
    let generation = read.await;
    let mut indexes =
        builder.await.map_err(|error| sqlx::Error::Protocol(format!("building the memory index failed: {error}")))?;
    indexes.set_generation(Some(generation?));
    Ok(indexes)
}

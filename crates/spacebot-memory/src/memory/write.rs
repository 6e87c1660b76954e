//! Writes: save (idempotent, merging near-duplicates of the same type and scope), forget, edges,
//! identity anchors. Each is one transaction; the vector copy follows after the commit.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tracing::Instrument;

use spacebot_core::{AgentId, Edge, MemoryId, MemoryScope, MemoryType, NewMemory, SaveOutcome, SaveStatus, StoreError};

use crate::error::store_error;
use crate::memory::db::{Db, Dialect, Tx, on_db, on_tx};
use crate::memory::rows::encode_vector;
use crate::memory::vectors::{Entry, NewVectors};
use crate::memory::{MemoryGraph, Stamp, invalid, millis};

/// The longest content a memory may have, in bytes.
pub const MAX_CONTENT_BYTES: usize = 50_000;

/// Marks a saved memory as chunk `chunk` of an imported file, in the save's own transaction, so
/// an interrupted import resumes after the last chunk that was really saved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportMark {
    /// SHA-256 (hex) of the file's text.
    pub file_hash: String,
    /// The chunk's index in the file.
    pub chunk: usize,
}

impl ImportMark {
    /// A mark for chunk `chunk` of the file whose text hashes to `file_hash`.
    pub fn new(file_hash: impl Into<String>, chunk: usize) -> Self {
        Self { file_hash: file_hash.into(), chunk }
    }
}

/// A validated save, with its canonical scope and hash.
struct Prepared {
    memory: NewMemory,
    human: Option<String>,
    scope_key: String,
    hash: String,
    mark: Option<ImportMark>,
}

/// SHA-256 (hex) of `content` with runs of whitespace collapsed to one space.
pub(crate) fn content_hash(content: &str) -> String {
    let normalized = content.split_whitespace().collect::<Vec<_>>().join(" ");
    hex(&Sha256::digest(normalized.as_bytes()))
}

/// SHA-256 (hex) of a whole text (for imported files).
pub fn text_hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The canonical scope: idempotency and merges compare it, so they never cross scopes.
fn scope_key(scope: &MemoryScope, human: Option<&str>) -> Option<String> {
    if !scope.private {
        return Some("shared".to_owned());
    }
    match (human, &scope.conversation) {
        (Some(human), _) => Some(format!("human:{human}")),
        (None, Some(conversation)) => Some(format!("conversation:{conversation}")),
        (None, None) => None,
    }
}

fn validate(memory: &NewMemory) -> Result<(), String> {
    let content = memory.content.trim();
    if content.is_empty() {
        return Err("the content is empty".to_owned());
    }
    if content.len() > MAX_CONTENT_BYTES {
        return Err(format!("the content is {} bytes, more than the {MAX_CONTENT_BYTES} allowed", content.len()));
    }
    if !(0.0..=1.0).contains(&memory.importance) {
        return Err(format!("importance {} is outside 0..=1", memory.importance));
    }
    if memory.scope.private && memory.scope.human.is_none() && memory.scope.conversation.is_none() {
        return Err("a private memory needs the person or the conversation it is private to".to_owned());
    }
    if memory.scope.human.as_deref().is_some_and(|human| human.trim().is_empty()) {
        return Err("the person id is empty".to_owned());
    }
    Ok(())
}

impl MemoryGraph {
    /// Saves chunks of an imported file in one transaction, each with its [`ImportMark`], so a
    /// resumed import skips exactly the chunks that were saved.
    ///
    /// # Errors
    ///
    /// As [`MemoryStore::save_batch`](spacebot_core::MemoryStore::save_batch); nothing is saved.
    pub async fn save_imported(&self, chunks: Vec<(NewMemory, ImportMark)>) -> Result<Vec<SaveOutcome>, StoreError> {
        self.save_marked(chunks.into_iter().map(|(memory, mark)| (memory, Some(mark))).collect()).await
    }

    /// The chunk indices of the file whose text hashes to `file_hash` already imported for `agent`.
    ///
    /// # Errors
    ///
    /// When the database can't be read.
    pub async fn imported_chunks(
        &self,
        agent: &AgentId,
        file_hash: &str,
    ) -> Result<std::collections::BTreeSet<usize>, StoreError> {
        let chunks: Vec<i64> = on_db!(&self.db, |pool| sqlx::query_scalar(
            "SELECT chunk_index FROM memory_imports WHERE agent = $1 AND file_hash = $2"
        )
        .bind(agent.as_str())
        .bind(file_hash)
        .fetch_all(pool)
        .await)
        .map_err(|error| store_error("read the import progress", error))?;
        Ok(chunks.into_iter().filter_map(|chunk| usize::try_from(chunk).ok()).collect())
    }

    /// Saves memories (each optionally marked as an imported chunk) in one transaction.
    pub(crate) async fn save_marked(
        &self,
        memories: Vec<(NewMemory, Option<ImportMark>)>,
    ) -> Result<Vec<SaveOutcome>, StoreError> {
        const OPERATION: &str = "save memories";
        if memories.is_empty() {
            return Ok(Vec::new());
        }
        let agent = memories[0].0.scope.agent.clone();
        if memories.iter().any(|(memory, _)| memory.scope.agent != agent) {
            return Err(invalid(OPERATION, "one batch must belong to one agent"));
        }
        let prepared = self.prepare(&agent, memories).instrument(tracing::trace_span!("save.prepare")).await?;

        // Embed outside the write lock (an embedder may be a remote call), skipping content
        // that is already stored.
        let known = self.known_hashes(&agent, &prepared).instrument(tracing::trace_span!("save.known")).await?;
        let to_embed: Vec<String> = prepared
            .iter()
            .filter(|p| !known.contains_key(&(p.memory.kind, p.scope_key.clone(), p.hash.clone())))
            .map(|p| p.memory.content.clone())
            .collect();
        let mut vectors =
            if to_embed.is_empty() {
                Vec::new()
            } else {
                self.embedder.embed(&to_embed).instrument(tracing::trace_span!("save.embed")).await.map_err(
                    |error| StoreError::new(format!("can't save memories: {error}"), false).with_source(error),
                )?
            };
        if vectors.len() != to_embed.len() || vectors.iter().any(|v| v.len() != self.embedder.dimensions()) {
            return Err(invalid(OPERATION, "the embedder returned vectors of the wrong number or length"));
        }
        for vector in &mut vectors {
            crate::embed::normalize(vector);
        }
        let mut vectors = vectors.into_iter();

        let lock_span = tracing::trace_span!("save.lock");
        let _writer = self.writer.lock().instrument(lock_span.clone()).await;
        self.ensure_index_locked().instrument(lock_span).await?;
        let now = millis(self.now());
        // Outcomes, vectors and words of the new rows, and the generation the commit made.
        type Committed<'a> = (Vec<SaveOutcome>, NewVectors, Vec<(Entry, &'a str)>, Stamp);
        let result: Result<Committed<'_>, sqlx::Error> = async {
            let mut transaction = self.begin_write().instrument(tracing::trace_span!("save.begin")).await?;
            // What is stored now, under the write lock (`known` was read before it).
            let stored = stored_hashes_in(&mut transaction, &agent, &prepared)
                .instrument(tracing::trace_span!("save.lookup"))
                .await?;
            let mut outcomes = Vec::with_capacity(prepared.len());
            // Rows to insert, in batch order, with the index of their vector in `created`.
            let mut inserts: Vec<Insert<'_>> = Vec::new();
            let mut created: Vec<(Entry, Vec<f32>)> = Vec::new();
            let mut batch_ids: HashMap<HashKey, MemoryId> = HashMap::new();
            let mut batch_contents: HashMap<MemoryId, &str> = HashMap::new();
            for item in &prepared {
                let key = (item.memory.kind, item.scope_key.clone(), item.hash.clone());
                let existing = batch_ids.get(&key).or_else(|| stored.get(&key)).cloned();
                let was_known = known.contains_key(&key);
                let vector = if was_known { None } else { vectors.next() };
                let outcome = if let Some(id) = existing {
                    SaveOutcome::new(id, SaveStatus::Unchanged)
                } else if let Some(vector) = vector {
                    let similar = tracing::trace_span!("save.dedup")
                        .in_scope(|| self.near_duplicate(&agent, item, &vector, &created, &batch_contents));
                    let merged = match similar {
                        Some(into) => match inserts.iter_mut().find(|insert| insert.id == into) {
                            // Created earlier in this batch, not inserted yet: merge into the row.
                            Some(insert) => {
                                insert.absorb(item, now);
                                Some(into)
                            }
                            None => {
                                let mut merged = None;
                                // The nearest may be another speaker's or about another name;
                                // then the next few near-duplicates are tried.
                                let mut candidates = vec![into];
                                let mut widened = false;
                                while let Some(candidate) = candidates.pop() {
                                    if merge_into_stored(&mut transaction, &candidate, item, now).await? {
                                        merged = Some(candidate);
                                        break;
                                    }
                                    if !widened {
                                        widened = true;
                                        candidates = self.more_duplicates(&agent, item, &vector, &candidate);
                                    }
                                }
                                merged
                            }
                        },
                        None => None,
                    };
                    match merged {
                        Some(into) => SaveOutcome::new(into, SaveStatus::Merged),
                        None => {
                            let id = MemoryId::generate();
                            let insert = Insert::new(&id, item, Some(created.len()), now);
                            // The sequence number is known after the insert.
                            created.push((entry_for(0, &id, &agent, item, insert.created_at), vector));
                            batch_contents.insert(id.clone(), item.memory.content.as_str());
                            inserts.push(insert);
                            SaveOutcome::new(id, SaveStatus::Created)
                        }
                    }
                } else {
                    // Known before the lock but gone since (forgotten by another writer): store it
                    // without a vector; a reindex embeds it.
                    let id = MemoryId::generate();
                    inserts.push(Insert::new(&id, item, None, now));
                    SaveOutcome::new(id, SaveStatus::Created)
                };
                batch_ids.insert(key, outcome.id.clone());
                outcomes.push(outcome);
            }
            let seqs = insert_memories(&mut transaction, &inserts, now)
                .instrument(tracing::trace_span!("save.insert"))
                .await?;
            // Every inserted row's words go to the text copy, vector or not.
            let mut words: Vec<(Entry, &str)> = Vec::with_capacity(inserts.len());
            for insert in &inserts {
                let Some(&seq) = seqs.get(insert.id.as_str()) else { continue };
                words.push((
                    entry_for(seq, &insert.id, &agent, insert.item, insert.created_at),
                    insert.item.memory.content.as_str(),
                ));
                if let Some((entry, _)) = insert.vector.and_then(|slot| created.get_mut(slot)) {
                    entry.seq = seq;
                }
            }
            let with_vectors: Vec<(i64, &Vec<f32>)> =
                created.iter().map(|(entry, vector)| (entry.seq, vector)).collect();
            insert_vectors(&mut transaction, self.embedder.model_id(), &with_vectors)
                .instrument(tracing::trace_span!("save.vector_insert"))
                .await?;
            // Edges and import marks after every row of the batch exists.
            for (item, outcome) in prepared.iter().zip(&outcomes) {
                for edge in &item.memory.edges {
                    insert_edge(
                        &mut transaction,
                        &agent,
                        &outcome.id,
                        edge.kind.label(),
                        edge.weight,
                        &edge.target,
                        now,
                    )
                    .await?;
                }
                if let Some(mark) = &item.mark {
                    on_tx!(&mut transaction, |conn| sqlx::query(
                        "INSERT INTO memory_imports (agent, file_hash, chunk_index, memory_id, created_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(agent.as_str())
                    .bind(&mark.file_hash)
                    .bind(i64::try_from(mark.chunk).unwrap_or(i64::MAX))
                    .bind(outcome.id.as_str())
                    .bind(now)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected()))?;
                }
            }
            let generation = transaction.bump_generation().await?;
            transaction.commit().instrument(tracing::trace_span!("save.commit")).await?;
            Ok((outcomes, created, words, generation))
        }
        .await;
        let (outcomes, created, words, generation) = result.map_err(|error| store_error(OPERATION, error))?;
        let _index_span = tracing::trace_span!("save.index").entered();
        self.apply_to_index(generation, |index| {
            for (entry, vector) in created {
                index.vectors.upsert(entry, &vector);
            }
            for (entry, content) in words {
                index.text.insert(entry, content);
            }
        });
        Ok(outcomes)
    }

    /// Validates the memories and computes their canonical scope and content hash.
    async fn prepare(
        &self,
        agent: &AgentId,
        memories: Vec<(NewMemory, Option<ImportMark>)>,
    ) -> Result<Vec<Prepared>, StoreError> {
        for (memory, _) in &memories {
            validate(memory).map_err(|reason| invalid("save a memory", reason))?;
        }
        let humans = self
            .canonical_humans(agent, memories.iter().filter_map(|(memory, _)| memory.scope.human.as_deref()))
            .await?;
        let mut prepared = Vec::with_capacity(memories.len());
        for (mut memory, mark) in memories {
            memory.content = memory.content.trim().to_owned();
            let human = memory.scope.human.as_deref().map(|human| match humans.get(human) {
                Some(mapped) => mapped.clone(),
                None => human.to_owned(),
            });
            // `validate` checked that a private memory names a person or a conversation.
            let scope_key = scope_key(&memory.scope, human.as_deref())
                .ok_or_else(|| invalid("save a memory", "it has no scope"))?;
            let hash = content_hash(&memory.content);
            prepared.push(Prepared { memory, human, scope_key, hash, mark });
        }
        Ok(prepared)
    }

    /// The ids of live memories that already hold some of the prepared contents.
    async fn known_hashes(
        &self,
        agent: &AgentId,
        prepared: &[Prepared],
    ) -> Result<HashMap<HashKey, MemoryId>, StoreError> {
        stored_hashes(&self.db, agent, prepared).await.map_err(|error| store_error("look up saved contents", error))
    }

    /// A live memory of the same agent, type and scope at least `merge_at_write` similar, among
    /// the stored ones and those created earlier in this batch.
    fn near_duplicate(
        &self,
        agent: &AgentId,
        item: &Prepared,
        vector: &[f32],
        created: &[(Entry, Vec<f32>)],
        batch_contents: &HashMap<MemoryId, &str>,
    ) -> Option<MemoryId> {
        if self.merge_at_write > 1.0 {
            return None;
        }
        let same_partition = |entry: &Entry| {
            *entry.agent == *agent.as_str() && entry.kind == item.memory.kind && *entry.scope_key == *item.scope_key
        };
        let in_batch = created
            .iter()
            .filter(|(entry, _)| same_partition(entry))
            .filter(|(entry, _)| {
                // A batch's created memories are inserted in `created` order, with these contents.
                batch_contents.get(&entry.id).is_some_and(|content| may_merge(content, &item.memory.content))
            })
            .map(|(entry, other)| (entry, crate::embed::dot(vector, other)))
            .filter(|(_, score)| *score >= self.merge_at_write)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(entry, score)| (entry.id.clone(), score));
        let stored = {
            let index = &self.read_index().vectors;
            index.partition_of(agent.as_str(), item.memory.kind, &item.scope_key).and_then(|partition| {
                index
                    .nearest_in_partition(vector, partition, self.merge_at_write)
                    .map(|(entry, score)| (entry.id, score))
            })
        };
        match (in_batch, stored) {
            (Some(a), Some(b)) => Some(if a.1 > b.1 { a.0 } else { b.0 }),
            (a, b) => a.or(b).map(|(id, _)| id),
        }
    }

    /// Live memories of the same agent, type and scope at least `merge_at_write` similar other
    /// than `tried`, the most similar last (a few at most).
    fn more_duplicates(&self, agent: &AgentId, item: &Prepared, vector: &[f32], tried: &MemoryId) -> Vec<MemoryId> {
        const MORE: usize = 8;
        let index = &self.read_index().vectors;
        let Some(partition) = index.partition_of(agent.as_str(), item.memory.kind, &item.scope_key) else {
            return Vec::new();
        };
        let mut found: Vec<MemoryId> = index
            .nearest_within(vector, MORE + 1, self.merge_at_write, |entry| entry.partition == partition)
            .into_iter()
            .map(|(entry, _)| entry.id)
            .filter(|id| id != tried)
            .collect();
        found.reverse();
        found
    }

    /// The people the platform ids among `humans` belong to, for those an anchor maps (one
    /// query for a whole batch); an id missing from the result is its own person.
    async fn canonical_humans(
        &self,
        agent: &AgentId,
        humans: impl Iterator<Item = &str>,
    ) -> Result<HashMap<String, String>, StoreError> {
        let humans: std::collections::BTreeSet<&str> = humans.collect();
        if humans.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String)> = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT platform_id, human FROM human_identities
             WHERE agent = $1 AND platform_id IN (SELECT value FROM json_each($2))",
        )
        .bind(agent.as_str())
        .bind(serde_json::Value::from(humans.into_iter().collect::<Vec<_>>()).to_string())
        .fetch_all(pool)
        .await)
        .map_err(|error| store_error("resolve identities", error))?;
        Ok(rows.into_iter().collect())
    }

    /// As `ensure_index`, for a caller that holds the write lock.
    pub(crate) async fn ensure_index_locked(&self) -> Result<(), StoreError> {
        let current = self.db.read_stamp().await.map_err(|error| store_error("read the memory generation", error))?;
        if self.read_index().synced().is_some_and(|synced| synced.generation == current.generation) {
            return Ok(());
        }
        self.sync_index_locked().await
    }

    pub(crate) async fn forget_one(&self, agent: &AgentId, id: &MemoryId) -> Result<bool, StoreError> {
        let operation = || format!("forget memory {id}");
        let _writer = self.writer.lock().await;
        self.ensure_index_locked().await?;
        let now = millis(self.now());
        let result: Result<(Option<i64>, Stamp), sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            let seq: Option<i64> = on_tx!(&mut transaction, |conn| sqlx::query_scalar(
                "UPDATE memories SET forgotten_at = $1 WHERE id = $2 AND agent = $3 AND forgotten_at IS NULL
                 RETURNING seq",
            )
            .bind(now)
            .bind(id.as_str())
            .bind(agent.as_str())
            .fetch_optional(conn)
            .await)?;
            let generation = transaction.bump_generation().await?;
            transaction.commit().await?;
            Ok((seq, generation))
        }
        .await;
        let (seq, generation) = result.map_err(|error| store_error(operation(), error))?;
        self.apply_to_index(generation, |index| {
            if let Some(seq) = seq {
                index.remove(seq);
            }
        });
        Ok(seq.is_some())
    }

    pub(crate) async fn link_edge(&self, agent: &AgentId, edge: Edge) -> Result<(), StoreError> {
        let operation = || format!("link {} -{}-> {}", edge.source, edge.kind, edge.target);
        if edge.source == edge.target {
            return Err(invalid(&operation(), "a memory can't be linked to itself"));
        }
        let result: Result<bool, sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            let live: i64 = on_tx!(&mut transaction, |conn| sqlx::query_scalar(
                "SELECT COUNT(*) FROM memories WHERE agent = $1 AND forgotten_at IS NULL AND id IN ($2, $3)",
            )
            .bind(agent.as_str())
            .bind(edge.source.as_str())
            .bind(edge.target.as_str())
            .fetch_one(conn)
            .await)?;
            if live != 2 {
                return Ok(false);
            }
            let now = millis(self.now());
            insert_edge(&mut transaction, agent, &edge.source, edge.kind.label(), edge.weight, &edge.target, now)
                .await?;
            transaction.commit().await?;
            Ok(true)
        }
        .await;
        match result.map_err(|error| store_error(operation(), error))? {
            true => Ok(()),
            false => Err(invalid(&operation(), "both memories must exist and not be forgotten")),
        }
    }

    pub(crate) async fn link_identity_inner(
        &self,
        agent: &AgentId,
        platform_id: &str,
        human: &str,
    ) -> Result<(), StoreError> {
        let operation = || format!("link identity {platform_id} to {human}");
        if platform_id.trim().is_empty() || human.trim().is_empty() {
            return Err(invalid(&operation(), "the platform id and the person must not be empty"));
        }
        let _writer = self.writer.lock().await;
        let now = millis(self.now());
        let result: Result<(), sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            on_tx!(&mut transaction, |conn| sqlx::query(
                "INSERT INTO human_identities (agent, platform_id, human, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (agent, platform_id) DO UPDATE SET human = excluded.human",
            )
            .bind(agent.as_str())
            .bind(platform_id)
            .bind(human)
            .bind(now)
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
            if platform_id != human {
                // Memories saved under the platform id now belong to the person. One that would
                // duplicate a memory the person already has stays behind and is forgotten.
                on_tx!(&mut transaction, |conn| sqlx::query(
                    "UPDATE memories
                     SET human = $3, scope_key = CASE WHEN private = 1 THEN 'human:' || $3 ELSE scope_key END
                     WHERE agent = $1 AND human = $2
                       AND NOT (private = 1 AND forgotten_at IS NULL AND EXISTS (
                           SELECT 1 FROM memories kept
                           WHERE kept.agent = memories.agent AND kept.kind = memories.kind
                             AND kept.scope_key = 'human:' || $3 AND kept.content_hash = memories.content_hash
                             AND kept.forgotten_at IS NULL))",
                )
                .bind(agent.as_str())
                .bind(platform_id)
                .bind(human)
                .execute(conn)
                .await
                .map(|done| done.rows_affected()))?;
                on_tx!(&mut transaction, |conn| sqlx::query(
                    "UPDATE memories SET forgotten_at = $3
                     WHERE agent = $1 AND human = $2 AND forgotten_at IS NULL",
                )
                .bind(agent.as_str())
                .bind(platform_id)
                .bind(now)
                .execute(conn)
                .await
                .map(|done| done.rows_affected()))?;
            }
            transaction.bump_generation().await?;
            transaction.commit().await
        }
        .await;
        result.map_err(|error| store_error(operation(), error))?;
        // Scopes changed under the copies: the next read catches them up from the change log.
        Ok(())
    }
}

/// The idempotency key of a memory: type, canonical scope, content hash.
type HashKey = (MemoryType, String, String);

/// Rows per multi-row `INSERT` (13 parameters each, far below SQLite's limit of 32,766); a fixed
/// size keeps the statement text, and so its prepared statement, the same from batch to batch.
const ROWS_PER_INSERT: usize = 100;

/// A memory row a save inserts.
struct Insert<'a> {
    id: MemoryId,
    item: &'a Prepared,
    /// Raised by near-duplicates later in the same batch that merge into this one.
    importance: f32,
    /// The memory's date: the item's own, else the save's; a later near-duplicate merged into
    /// it moves it forward.
    created_at: i64,
    /// The item's source, then those of the near-duplicates merged into it.
    source: Option<String>,
    /// Its vector's index among the batch's created vectors, if it has one.
    vector: Option<usize>,
}

impl<'a> Insert<'a> {
    fn new(id: &MemoryId, item: &'a Prepared, vector: Option<usize>, now: i64) -> Self {
        Self {
            id: id.clone(),
            item,
            importance: item.memory.importance,
            created_at: item.memory.created_at.map_or(now, millis),
            source: item.memory.source.clone(),
            vector,
        }
    }

    /// Merges a near-duplicate saved later in the same batch: the higher importance, the newer
    /// date, both sources.
    fn absorb(&mut self, item: &Prepared, now: i64) {
        self.importance = self.importance.max(item.memory.importance);
        self.created_at = self.created_at.max(item.memory.created_at.map_or(now, millis));
        self.source = joined_sources(self.source.as_deref(), item.memory.source.as_deref());
    }
}

/// The most bytes of sources a merged memory keeps; the oldest go first.
const MAX_SOURCE_BYTES: usize = 512;

/// `old; new`, each source once, cut from the front to [`MAX_SOURCE_BYTES`].
pub(crate) fn joined_sources(old: Option<&str>, new: Option<&str>) -> Option<String> {
    let (old, new) = match (old, new) {
        (old, None) => return old.map(str::to_owned),
        (None, new) => return new.map(str::to_owned),
        (Some(old), Some(new)) => (old, new),
    };
    if old.split("; ").any(|known| known == new) {
        return Some(old.to_owned());
    }
    let mut joined = format!("{old}; {new}");
    while joined.len() > MAX_SOURCE_BYTES {
        match joined.find("; ") {
            Some(cut) => joined.replace_range(..cut + 2, ""),
            None => break,
        }
    }
    Some(joined)
}

/// Who said a memory, when its content starts as a dialog turn does (`Nate: Bye Joanna!`): a
/// short label of words before `": "`. Two turns of different speakers never merge, however
/// alike their words.
pub(crate) fn speaker_of(content: &str) -> Option<&str> {
    let (label, rest) = content.split_once(':')?;
    let label = label.trim();
    let looks_like_a_name = !label.is_empty()
        && label.len() <= 40
        && label.split_whitespace().count() <= 4
        && label.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\'' | '@'));
    (looks_like_a_name && rest.starts_with(' ')).then_some(label)
}

/// Whether two near-duplicate contents may merge: the same speaker (see [`speaker_of`]) and
/// the same particulars, the names and numbers that make a statement a different fact although
/// its words are alike ("Theo asked me to paint the sign" is not "Lena asked me to paint the
/// sign", "in 2023" is not "in 2024").
pub(crate) fn may_merge(a: &str, b: &str) -> bool {
    speaker_of(a) == speaker_of(b) && mentions_all(b, &particulars(a)) && mentions_all(a, &particulars(b))
}

/// A content without its speaker label.
pub(crate) fn body(content: &str) -> &str {
    match speaker_of(content) {
        Some(_) => content.split_once(':').map_or(content, |(_, rest)| rest),
        None => content,
    }
}

/// The names and numbers of a content, lowercased: words holding a digit, and capitalised
/// words longer than one letter that are not common words ("The", "We"), the speaker label
/// left out.
pub(crate) fn particulars(content: &str) -> Vec<String> {
    body(content)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| {
            word.chars().any(|c| c.is_ascii_digit())
                || word.chars().count() > 1
                    && word.chars().next().is_some_and(char::is_uppercase)
                    && !crate::memory::recall::is_stop_word(&word.to_lowercase())
        })
        .map(str::to_lowercase)
        .collect()
}

/// Whether every one of `words` is a word of `content` (case-insensitively).
fn mentions_all(content: &str, words: &[String]) -> bool {
    let present: std::collections::HashSet<String> =
        body(content).split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect();
    words.iter().all(|word| present.contains(word))
}

/// Merges `item` into the stored memory `into` when it is live and said by the same speaker:
/// the higher importance, the newer date, both sources. Returns whether it merged.
async fn merge_into_stored(
    transaction: &mut Tx,
    into: &MemoryId,
    item: &Prepared,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let stored: Option<(String, Option<String>)> = on_tx!(transaction, |conn| sqlx::query_as(
        "SELECT content, source FROM memories WHERE id = $1 AND forgotten_at IS NULL"
    )
    .bind(into.as_str())
    .fetch_optional(conn)
    .await)?;
    let Some((content, source)) = stored else { return Ok(false) };
    if !may_merge(&content, &item.memory.content) {
        return Ok(false);
    }
    let source = joined_sources(source.as_deref(), item.memory.source.as_deref());
    let updated = on_tx!(transaction, |conn| sqlx::query(
        "UPDATE memories SET importance = CASE WHEN importance > $1 THEN importance ELSE $1 END, updated_at = $2,
                             created_at = CASE WHEN created_at > $3 THEN created_at ELSE $3 END, source = $4
         WHERE id = $5 AND forgotten_at IS NULL",
    )
    .bind(f64::from(item.memory.importance))
    .bind(now)
    .bind(item.memory.created_at.map_or(now, millis))
    .bind(source.as_deref())
    .bind(into.as_str())
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(updated == 1)
}

/// The idempotency keys of the prepared contents, as the JSON list [`Dialect::STORED_HASHES`]
/// unpacks.
fn hash_keys(prepared: &[Prepared]) -> String {
    let keys: Vec<serde_json::Value> =
        prepared.iter().map(|p| serde_json::json!([p.memory.kind.label(), p.scope_key, p.hash])).collect();
    serde_json::Value::from(keys).to_string()
}

fn stored_hash_rows(rows: Vec<(String, String, String, String)>) -> HashMap<HashKey, MemoryId> {
    rows.into_iter()
        .filter_map(|(kind, scope, hash, id)| Some(((MemoryType::from_label(&kind)?, scope, hash), MemoryId::from(id))))
        .collect()
}

/// The ids of the live memories of `agent` holding the prepared contents, by idempotency key:
/// one query, one lookup in the idempotency index per content.
async fn stored_hashes(
    db: &Db,
    agent: &AgentId,
    prepared: &[Prepared],
) -> Result<HashMap<HashKey, MemoryId>, sqlx::Error> {
    let keys = hash_keys(prepared);
    let rows = on_db!(db, |pool, Database| sqlx::query_as(<Database as Dialect>::STORED_HASHES)
        .bind(agent.as_str())
        .bind(&keys)
        .fetch_all(pool)
        .await)?;
    Ok(stored_hash_rows(rows))
}

/// As [`stored_hashes`], in a transaction.
async fn stored_hashes_in(
    transaction: &mut Tx,
    agent: &AgentId,
    prepared: &[Prepared],
) -> Result<HashMap<HashKey, MemoryId>, sqlx::Error> {
    let keys = hash_keys(prepared);
    let rows = on_tx!(transaction, |conn, Database| sqlx::query_as(<Database as Dialect>::STORED_HASHES)
        .bind(agent.as_str())
        .bind(&keys)
        .fetch_all(conn)
        .await)?;
    Ok(stored_hash_rows(rows))
}

/// Inserts the rows, a few multi-row statements per batch; returns each one's sequence number
/// by id.
async fn insert_memories(
    transaction: &mut Tx,
    inserts: &[Insert<'_>],
    now: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut seqs = HashMap::with_capacity(inserts.len());
    for chunk in inserts.chunks(ROWS_PER_INSERT) {
        let rows: Vec<(String, i64)> = on_tx!(&mut *transaction, |conn, Database| {
            let mut query = sqlx::QueryBuilder::<Database>::new(
                "INSERT INTO memories (id, agent, kind, content, content_hash, importance, created_at, updated_at,
                                       accessed_at, decayed_at, source, conversation, human, private, scope_key) ",
            );
            query.push_values(chunk, |mut row, insert| {
                let memory = &insert.item.memory;
                row.push_bind(insert.id.as_str())
                    .push_bind(memory.scope.agent.as_str())
                    .push_bind(memory.kind.label())
                    .push_bind(memory.content.as_str())
                    .push_bind(insert.item.hash.as_str())
                    .push_bind(f64::from(insert.importance))
                    .push_bind(insert.created_at)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(insert.source.as_deref())
                    .push_bind(memory.scope.conversation.as_ref().map(|c| c.as_str()))
                    .push_bind(insert.item.human.as_deref())
                    .push_bind(i64::from(memory.scope.private))
                    .push_bind(insert.item.scope_key.as_str());
            });
            query.push(" RETURNING id, seq");
            query.build_query_as().fetch_all(conn).await
        })?;
        seqs.extend(rows);
    }
    Ok(seqs)
}

/// Inserts the vectors of `model` (`(memory seq, vector)`), a few multi-row statements per batch.
async fn insert_vectors(transaction: &mut Tx, model: &str, vectors: &[(i64, &Vec<f32>)]) -> Result<(), sqlx::Error> {
    for chunk in vectors.chunks(ROWS_PER_INSERT) {
        on_tx!(&mut *transaction, |conn, Database| {
            let mut query =
                sqlx::QueryBuilder::<Database>::new("INSERT INTO memory_vectors (memory_seq, model, vector) ");
            query.push_values(chunk, |mut row, (seq, vector)| {
                row.push_bind(*seq).push_bind(model).push_bind(encode_vector(vector));
            });
            query.build().execute(conn).await.map(|done| done.rows_affected())
        })?;
    }
    Ok(())
}

/// Inserts `source -kind-> target` (or updates its weight) when the target is a live memory of
/// the agent; a missing target is skipped, as a model may name an id that was since forgotten.
async fn insert_edge(
    transaction: &mut Tx,
    agent: &AgentId,
    source: &MemoryId,
    kind: &str,
    weight: f32,
    target: &MemoryId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let result = on_tx!(transaction, |conn| sqlx::query(
        "INSERT INTO memory_edges (source, target, kind, weight, created_at)
         SELECT $1, t.id, $2, $3, $4 FROM memories t
         WHERE t.id = $5 AND t.agent = $6 AND t.forgotten_at IS NULL AND t.id <> $1
         ON CONFLICT (source, target, kind) DO UPDATE SET weight = excluded.weight",
    )
    .bind(source.as_str())
    .bind(kind)
    .bind(f64::from(weight.clamp(0.0, 1.0)))
    .bind(now)
    .bind(target.as_str())
    .bind(agent.as_str())
    .execute(conn)
    .await
    .map(|done| done.rows_affected()))?;
    if result == 0 {
        tracing::warn!(%source, %target, kind, "edge target is not a live memory; edge skipped");
    }
    Ok(result > 0)
}

fn entry_for(seq: i64, id: &MemoryId, agent: &AgentId, item: &Prepared, created_at: i64) -> Entry {
    Entry {
        seq,
        id: id.clone(),
        agent: Arc::from(agent.as_str()),
        kind: item.memory.kind,
        private: item.memory.scope.private,
        human: item.human.as_deref().map(Arc::from),
        conversation: item.memory.scope.conversation.as_ref().map(|c| Arc::from(c.as_str())),
        scope_key: Arc::from(item.scope_key.as_str()),
        created_at,
        partition: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_ignore_whitespace_differences_only() {
        assert_eq!(content_hash("Alice  likes\ttea\n"), content_hash("Alice likes tea"));
        assert_ne!(content_hash("Alice likes tea"), content_hash("alice likes tea"));
        assert_eq!(content_hash("").len(), 64);
    }

    #[test]
    fn scope_keys_separate_people_and_conversations() {
        let shared = MemoryScope::agent("main").with_human("alice");
        assert_eq!(scope_key(&shared, Some("alice")).as_deref(), Some("shared"));
        let private = MemoryScope::private_to("main", "discord:1");
        assert_eq!(scope_key(&private, Some("alice")).as_deref(), Some("human:alice"));
        let conversation = MemoryScope::private_to_conversation("main", "c1");
        assert_eq!(scope_key(&conversation, None).as_deref(), Some("conversation:c1"));
    }
}

//! Writes: save (idempotent, merging near-duplicates of the same type and scope), forget, edges,
//! identity anchors. Each is one transaction; the vector copy follows after the commit.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use spacebot_core::{AgentId, Edge, MemoryId, MemoryScope, MemoryType, NewMemory, SaveOutcome, SaveStatus, StoreError};

use crate::error::store_error;
use crate::memory::rows::encode_vector;
use crate::memory::vectors::{Entry, NewVectors};
use crate::memory::{SqliteMemory, bump_generation, invalid, millis};

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

impl SqliteMemory {
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
        let chunks: Vec<i64> =
            sqlx::query_scalar("SELECT chunk_index FROM memory_imports WHERE agent = ?1 AND file_hash = ?2")
                .bind(agent.as_str())
                .bind(file_hash)
                .fetch_all(&self.pool)
                .await
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
        let mut prepared = Vec::with_capacity(memories.len());
        for (mut memory, mark) in memories {
            validate(&memory).map_err(|reason| invalid("save a memory", reason))?;
            memory.content = memory.content.trim().to_owned();
            let human = match &memory.scope.human {
                Some(human) => Some(self.canonical_human(&agent, human).await?),
                None => None,
            };
            // `validate` checked that a private memory names a person or a conversation.
            let scope_key = scope_key(&memory.scope, human.as_deref())
                .ok_or_else(|| invalid("save a memory", "it has no scope"))?;
            let hash = content_hash(&memory.content);
            prepared.push(Prepared { memory, human, scope_key, hash, mark });
        }

        // Embed outside the write lock (an embedder may be a remote call), skipping content
        // that is already stored.
        let known = self.known_hashes(&agent, &prepared).await?;
        let to_embed: Vec<String> = prepared
            .iter()
            .filter(|p| !known.contains_key(&(p.memory.kind, p.scope_key.clone(), p.hash.clone())))
            .map(|p| p.memory.content.clone())
            .collect();
        let mut vectors = if to_embed.is_empty() {
            Vec::new()
        } else {
            self.embedder
                .embed(&to_embed)
                .await
                .map_err(|error| StoreError::new(format!("can't save memories: {error}"), false).with_source(error))?
        };
        if vectors.len() != to_embed.len() || vectors.iter().any(|v| v.len() != self.embedder.dimensions()) {
            return Err(invalid(OPERATION, "the embedder returned vectors of the wrong number or length"));
        }
        for vector in &mut vectors {
            crate::embed::normalize(vector);
        }
        let mut vectors = vectors.into_iter();

        let _writer = self.writer.lock().await;
        self.ensure_index_locked().await?;
        let now = millis(self.now());
        let result: Result<(Vec<SaveOutcome>, NewVectors, i64), sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            let mut outcomes = Vec::with_capacity(prepared.len());
            let mut created: Vec<(Entry, Vec<f32>)> = Vec::new();
            let mut batch_ids: HashMap<(MemoryType, String, String), MemoryId> = HashMap::new();
            for item in &prepared {
                let key = (item.memory.kind, item.scope_key.clone(), item.hash.clone());
                let existing = match batch_ids.get(&key) {
                    Some(id) => Some(id.clone()),
                    None => sqlx::query_scalar::<_, String>(
                        "SELECT id FROM memories
                         WHERE agent = ?1 AND kind = ?2 AND scope_key = ?3 AND content_hash = ?4
                           AND forgotten_at IS NULL",
                    )
                    .bind(agent.as_str())
                    .bind(item.memory.kind.label())
                    .bind(&item.scope_key)
                    .bind(&item.hash)
                    .fetch_optional(&mut *transaction)
                    .await?
                    .map(MemoryId::from),
                };
                let was_known = known.contains_key(&key);
                let vector = if was_known { None } else { vectors.next() };
                let outcome = if let Some(id) = existing {
                    SaveOutcome::new(id, SaveStatus::Unchanged)
                } else if let Some(vector) = vector {
                    let similar = self.near_duplicate(&agent, item, &vector, &created);
                    let merged = match similar {
                        Some(into) => {
                            let updated = sqlx::query(
                                "UPDATE memories SET importance = MAX(importance, ?1), updated_at = ?2
                                 WHERE id = ?3 AND forgotten_at IS NULL",
                            )
                            .bind(f64::from(item.memory.importance))
                            .bind(now)
                            .bind(into.as_str())
                            .execute(&mut *transaction)
                            .await?;
                            (updated.rows_affected() == 1).then_some(into)
                        }
                        None => None,
                    };
                    match merged {
                        Some(into) => SaveOutcome::new(into, SaveStatus::Merged),
                        None => {
                            let id = MemoryId::generate();
                            let seq = insert_memory(&mut transaction, &id, item, now).await?;
                            sqlx::query("INSERT INTO memory_vectors (memory_seq, model, vector) VALUES (?1, ?2, ?3)")
                                .bind(seq)
                                .bind(self.embedder.model_id())
                                .bind(encode_vector(&vector))
                                .execute(&mut *transaction)
                                .await?;
                            created.push((entry_for(seq, &id, &agent, item, now), vector));
                            SaveOutcome::new(id, SaveStatus::Created)
                        }
                    }
                } else {
                    // Known before the lock but gone since (forgotten by another writer): store it
                    // without a vector; a reindex embeds it.
                    let id = MemoryId::generate();
                    insert_memory(&mut transaction, &id, item, now).await?;
                    SaveOutcome::new(id, SaveStatus::Created)
                };
                batch_ids.insert(key, outcome.id.clone());
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
                    sqlx::query(
                        "INSERT INTO memory_imports (agent, file_hash, chunk_index, memory_id, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    )
                    .bind(agent.as_str())
                    .bind(&mark.file_hash)
                    .bind(i64::try_from(mark.chunk).unwrap_or(i64::MAX))
                    .bind(outcome.id.as_str())
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
                }
                outcomes.push(outcome);
            }
            let generation = bump_generation(&mut transaction).await?;
            transaction.commit().await?;
            Ok((outcomes, created, generation))
        }
        .await;
        let (outcomes, created, generation) = result.map_err(|error| store_error(OPERATION, error))?;
        self.apply_to_index(generation, |index| {
            for (entry, vector) in created {
                index.upsert(entry, &vector);
            }
        });
        Ok(outcomes)
    }

    /// The ids of live memories that already hold some of the prepared contents.
    async fn known_hashes(
        &self,
        agent: &AgentId,
        prepared: &[Prepared],
    ) -> Result<HashMap<(MemoryType, String, String), MemoryId>, StoreError> {
        let hashes: Vec<&str> = prepared.iter().map(|p| p.hash.as_str()).collect();
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT kind, scope_key, content_hash, id FROM memories
             WHERE agent = ?1 AND forgotten_at IS NULL AND content_hash IN (SELECT value FROM json_each(?2))",
        )
        .bind(agent.as_str())
        .bind(serde_json::Value::from(hashes).to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|error| store_error("look up saved contents", error))?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, scope, hash, id)| {
                Some(((MemoryType::from_label(&kind)?, scope, hash), MemoryId::from(id)))
            })
            .collect())
    }

    /// A live memory of the same agent, type and scope at least `merge_at_write` similar, among
    /// the stored ones and those created earlier in this batch.
    fn near_duplicate(
        &self,
        agent: &AgentId,
        item: &Prepared,
        vector: &[f32],
        created: &[(Entry, Vec<f32>)],
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
            .map(|(entry, other)| (entry, crate::embed::dot(vector, other)))
            .filter(|(_, score)| *score >= self.merge_at_write)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(entry, score)| (entry.id.clone(), score));
        let stored = {
            let index = self.read_index();
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

    /// The person a platform id belongs to, or the id itself when no anchor maps it.
    async fn canonical_human(&self, agent: &AgentId, human: &str) -> Result<String, StoreError> {
        let mapped: Option<String> =
            sqlx::query_scalar("SELECT human FROM human_identities WHERE agent = ?1 AND platform_id = ?2")
                .bind(agent.as_str())
                .bind(human)
                .fetch_optional(&self.pool)
                .await
                .map_err(|error| store_error("resolve an identity", error))?;
        Ok(mapped.unwrap_or_else(|| human.to_owned()))
    }

    /// As `ensure_index`, for a caller that holds the write lock.
    pub(crate) async fn ensure_index_locked(&self) -> Result<(), StoreError> {
        let current = crate::memory::read_generation(&self.pool)
            .await
            .map_err(|error| store_error("read the memory generation", error))?;
        if self.read_index().generation() == Some(current) {
            return Ok(());
        }
        self.reload_index_locked().await
    }

    pub(crate) async fn forget_one(&self, agent: &AgentId, id: &MemoryId) -> Result<bool, StoreError> {
        let operation = || format!("forget memory {id}");
        let _writer = self.writer.lock().await;
        self.ensure_index_locked().await?;
        let now = millis(self.now());
        let result: Result<(Option<i64>, i64), sqlx::Error> = async {
            let mut transaction = self.begin_write().await?;
            let seq: Option<i64> = sqlx::query_scalar(
                "UPDATE memories SET forgotten_at = ?1 WHERE id = ?2 AND agent = ?3 AND forgotten_at IS NULL
                 RETURNING seq",
            )
            .bind(now)
            .bind(id.as_str())
            .bind(agent.as_str())
            .fetch_optional(&mut *transaction)
            .await?;
            let generation = bump_generation(&mut transaction).await?;
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
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM memories WHERE agent = ?1 AND forgotten_at IS NULL AND id IN (?2, ?3)",
            )
            .bind(agent.as_str())
            .bind(edge.source.as_str())
            .bind(edge.target.as_str())
            .fetch_one(&mut *transaction)
            .await?;
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
            sqlx::query(
                "INSERT INTO human_identities (agent, platform_id, human, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent, platform_id) DO UPDATE SET human = excluded.human",
            )
            .bind(agent.as_str())
            .bind(platform_id)
            .bind(human)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
            if platform_id != human {
                // Memories saved under the platform id now belong to the person. One that would
                // duplicate a memory the person already has stays behind and is forgotten.
                sqlx::query(
                    "UPDATE OR IGNORE memories
                     SET human = ?3, scope_key = CASE WHEN private = 1 THEN 'human:' || ?3 ELSE scope_key END
                     WHERE agent = ?1 AND human = ?2",
                )
                .bind(agent.as_str())
                .bind(platform_id)
                .bind(human)
                .execute(&mut *transaction)
                .await?;
                sqlx::query(
                    "UPDATE memories SET forgotten_at = ?3
                     WHERE agent = ?1 AND human = ?2 AND forgotten_at IS NULL",
                )
                .bind(agent.as_str())
                .bind(platform_id)
                .bind(now)
                .execute(&mut *transaction)
                .await?;
            }
            bump_generation(&mut transaction).await?;
            transaction.commit().await
        }
        .await;
        result.map_err(|error| store_error(operation(), error))?;
        // Scopes changed under the copy: reload it on next use.
        self.write_index().set_generation(None);
        Ok(())
    }
}

async fn insert_memory(
    transaction: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    id: &MemoryId,
    item: &Prepared,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let memory = &item.memory;
    sqlx::query_scalar(
        "INSERT INTO memories (id, agent, kind, content, content_hash, importance, created_at, updated_at,
                               accessed_at, decayed_at, source, conversation, human, private, scope_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?7, ?8, ?9, ?10, ?11, ?12)
         RETURNING seq",
    )
    .bind(id.as_str())
    .bind(memory.scope.agent.as_str())
    .bind(memory.kind.label())
    .bind(&memory.content)
    .bind(&item.hash)
    .bind(f64::from(memory.importance))
    .bind(now)
    .bind(memory.source.as_deref())
    .bind(memory.scope.conversation.as_ref().map(|c| c.as_str().to_owned()))
    .bind(item.human.as_deref())
    .bind(i64::from(memory.scope.private))
    .bind(&item.scope_key)
    .fetch_one(&mut **transaction)
    .await
}

/// Inserts `source -kind-> target` (or updates its weight) when the target is a live memory of
/// the agent; a missing target is skipped, as a model may name an id that was since forgotten.
async fn insert_edge(
    transaction: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    agent: &AgentId,
    source: &MemoryId,
    kind: &str,
    weight: f32,
    target: &MemoryId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO memory_edges (source, target, kind, weight, created_at)
         SELECT ?1, t.id, ?2, ?3, ?4 FROM memories t
         WHERE t.id = ?5 AND t.agent = ?6 AND t.forgotten_at IS NULL AND t.id <> ?1
         ON CONFLICT (source, target, kind) DO UPDATE SET weight = excluded.weight",
    )
    .bind(source.as_str())
    .bind(kind)
    .bind(f64::from(weight.clamp(0.0, 1.0)))
    .bind(now)
    .bind(target.as_str())
    .bind(agent.as_str())
    .execute(&mut **transaction)
    .await?;
    if result.rows_affected() == 0 {
        tracing::warn!(%source, %target, kind, "edge target is not a live memory; edge skipped");
    }
    Ok(result.rows_affected() > 0)
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

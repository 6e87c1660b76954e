//! Reading memories: row mapping, single reads, listings, edges, and the vector encoding.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use spacebot_core::{
    AgentId, ConversationId, Edge, ListOrder, ListQuery, Memory, MemoryId, MemoryScope, MemoryType, RelationKind,
};

use crate::memory::audience::Filter;
use crate::memory::db::{Db, on_db};

/// The columns every memory read selects, from the table aliased `m`.
pub(crate) const COLUMNS: &str = "m.id, m.agent, m.kind, m.content, m.importance, m.access_count, \
     m.created_at, m.updated_at, m.accessed_at, m.source, m.conversation, m.human, m.private, m.forgotten_at";

/// One row of `memories` as reads select it ([`COLUMNS`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemoryRow {
    pub(crate) id: String,
    pub(crate) agent: String,
    pub(crate) kind: String,
    pub(crate) content: String,
    pub(crate) importance: f64,
    pub(crate) access_count: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) accessed_at: i64,
    pub(crate) source: Option<String>,
    pub(crate) conversation: Option<String>,
    pub(crate) human: Option<String>,
    pub(crate) private: i64,
    pub(crate) forgotten_at: Option<i64>,
}

pub(crate) fn from_millis(millis: i64) -> DateTime<Utc> {
    // Stored times come from `DateTime::timestamp_millis`, so they are in range; a damaged value
    // reads as the epoch rather than failing the whole read.
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

impl MemoryRow {
    pub(crate) fn into_memory(self) -> Memory {
        // The CHECK constraint admits only known labels; a row written by a newer version with a
        // type this one does not know reads as a fact.
        let kind = MemoryType::from_label(&self.kind).unwrap_or(MemoryType::Fact);
        let mut scope = MemoryScope::agent(AgentId::from(self.agent));
        scope.conversation = self.conversation.map(ConversationId::from);
        scope.human = self.human;
        scope.private = self.private != 0;
        let mut memory = Memory::new(MemoryId::from(self.id), kind, self.content, scope);
        memory.importance = self.importance as f32;
        memory.source = self.source;
        memory.access_count = u64::try_from(self.access_count).unwrap_or(0);
        memory.created_at = from_millis(self.created_at);
        memory.updated_at = from_millis(self.updated_at);
        memory.accessed_at = from_millis(self.accessed_at);
        memory.forgotten = self.forgotten_at.is_some();
        memory
    }
}

/// One memory of `agent` by id, forgotten or not.
pub(crate) async fn get(db: &Db, agent: &AgentId, id: &MemoryId) -> Result<Option<Memory>, sqlx::Error> {
    let row: Option<MemoryRow> = on_db!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM memories m WHERE m.id = $1 AND m.agent = $2"
    )))
    .bind(id.as_str())
    .bind(agent.as_str())
    .fetch_optional(pool)
    .await)?;
    Ok(row.map(MemoryRow::into_memory))
}

/// Live memories among `ids` that `filter` admits, in no particular order.
pub(crate) async fn load_admitted(db: &Db, filter: &Filter, ids: &[MemoryId]) -> Result<Vec<MemoryRow>, sqlx::Error> {
    let ids: Vec<&str> = ids.iter().map(MemoryId::as_str).collect();
    let ids = serde_json::Value::from(ids).to_string();
    on_db!(db, |pool, Database| {
        let mut query = QueryBuilder::<Database>::new(format!(
            "SELECT {COLUMNS} FROM memories m WHERE m.forgotten_at IS NULL AND m.id IN (SELECT value FROM json_each("
        ));
        query.push_bind(ids.as_str()).push("))");
        filter.push_sql_for(&mut query, false);
        query.build_query_as().fetch_all(pool).await
    })
}

/// The first `limit` live memories among `ids` that `filter` admits, in the order of `ids`.
///
/// Ordering and limit happen in SQLite, so only the rows a caller keeps cross over to Rust (each
/// row is a message from the connection's worker thread). The ids are looked up a window at a
/// time, the first twice `limit` long: recall's lists are filtered as they are ranked, so the
/// first ids are nearly always admitted and the rest (a hundred, typically) need no lookup.
pub(crate) async fn load_first_admitted(
    db: &Db,
    filter: &Filter,
    ids: &[MemoryId],
    limit: usize,
) -> Result<Vec<MemoryRow>, sqlx::Error> {
    let mut found = Vec::new();
    let mut rest = ids;
    let mut window = limit.saturating_mul(2).max(8);
    while found.len() < limit && !rest.is_empty() {
        let (looked_up, after) = rest.split_at(window.min(rest.len()));
        let listed: Vec<&str> = looked_up.iter().map(MemoryId::as_str).collect();
        // CROSS JOIN keeps the id list as the outer loop: one lookup by id per listed memory.
        let listed = serde_json::Value::from(listed).to_string();
        let wanted = i64::try_from(limit - found.len()).unwrap_or(i64::MAX);
        found.extend(on_db!(db, |pool, Database| {
            let mut query = QueryBuilder::<Database>::new(format!("SELECT {COLUMNS} FROM json_each("));
            query
                .push_bind(listed.as_str())
                .push(") AS listed CROSS JOIN memories m WHERE m.id = listed.value AND m.forgotten_at IS NULL");
            filter.push_sql_for(&mut query, false);
            query.push(" ORDER BY listed.key LIMIT ").push_bind(wanted);
            query.build_query_as::<MemoryRow>().fetch_all(pool).await
        })?);
        rest = after;
        window = window.saturating_mul(4);
    }
    Ok(found)
}

/// A listing (see [`ListQuery`]).
pub(crate) async fn list(db: &Db, filter: &Filter, list: &ListQuery) -> Result<Vec<Memory>, sqlx::Error> {
    let rows: Vec<MemoryRow> = on_db!(db, |pool, Database| {
        let mut query = QueryBuilder::<Database>::new(format!("SELECT {COLUMNS} FROM memories m WHERE 1 = 1"));
        if !list.include_forgotten {
            query.push(" AND m.forgotten_at IS NULL");
        }
        filter.push_sql(&mut query);
        query.push(match list.order {
            ListOrder::Importance => " ORDER BY m.importance DESC, m.created_at DESC, m.id",
            ListOrder::MostAccessed => " ORDER BY m.access_count DESC, m.created_at DESC, m.id",
            _ => " ORDER BY m.created_at DESC, m.id",
        });
        query.push(" LIMIT ").push_bind(i64::try_from(list.limit).unwrap_or(i64::MAX));
        query.push(" OFFSET ").push_bind(i64::try_from(list.offset).unwrap_or(i64::MAX));
        query.build_query_as().fetch_all(pool).await
    })?;
    Ok(rows.into_iter().map(MemoryRow::into_memory).collect())
}

#[derive(sqlx::FromRow)]
struct EdgeRow {
    source: String,
    target: String,
    kind: String,
    weight: f64,
}

impl EdgeRow {
    fn into_edge(self) -> Edge {
        let kind = RelationKind::from_label(&self.kind).unwrap_or(RelationKind::RelatedTo);
        Edge::new(MemoryId::from(self.source), MemoryId::from(self.target), kind, self.weight as f32)
    }
}

/// Every edge touching `id`, outgoing first, in a stable order.
pub(crate) async fn edges(db: &Db, agent: &AgentId, id: &MemoryId) -> Result<Vec<Edge>, sqlx::Error> {
    let rows: Vec<EdgeRow> = on_db!(db, |pool| sqlx::query_as(
        "SELECT e.source, e.target, e.kind, e.weight FROM memory_edges e
         JOIN memories m ON m.id = $1 AND m.agent = $2
         WHERE e.source = $1 OR e.target = $1
         ORDER BY e.source <> $1, e.source, e.target, e.kind",
    )
    .bind(id.as_str())
    .bind(agent.as_str())
    .fetch_all(pool)
    .await)?;
    Ok(rows.into_iter().map(EdgeRow::into_edge).collect())
}

/// Little-endian f32s, as stored.
pub(crate) fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes the vector in `bytes` into `into` (replacing what it held); false, leaving it empty,
/// unless `bytes` holds `dimensions` floats.
pub(crate) fn decode_vector_into(bytes: &[u8], dimensions: usize, into: &mut Vec<f32>) -> bool {
    into.clear();
    if bytes.len() != dimensions * 4 {
        return false;
    }
    into.extend(bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_encoding() {
        let vector = vec![0.25, -1.5, 3.0e-8];
        let mut decoded = vec![9.0];
        assert!(decode_vector_into(&encode_vector(&vector), 3, &mut decoded));
        assert_eq!(decoded, vector);
        assert!(!decode_vector_into(&[0, 0, 0], 1, &mut decoded));
        assert!(decoded.is_empty());
    }

    /// Ids the filter drops (forgotten, or another person's private memory) are skipped, across
    /// as many lookup windows as it takes, and the order of the ids is kept.
    #[tokio::test]
    async fn the_first_admitted_rows_come_in_order_across_windows() {
        use spacebot_core::{MemoryScope, MemoryStore, NewMemory, Visibility};

        use crate::embed::HashingEmbedder;
        use crate::memory::MemoryGraph;

        let store = MemoryGraph::open_in_memory(std::sync::Arc::new(HashingEmbedder::new(32))).await.unwrap();
        let agent = AgentId::from("main");
        let memories: Vec<NewMemory> = (0..60)
            .map(|i| {
                let scope =
                    if i % 3 == 0 { MemoryScope::agent("main") } else { MemoryScope::private_to("main", "someone") };
                NewMemory::new(MemoryType::Fact, format!("memory number {i}"), scope)
            })
            .collect();
        let ids: Vec<MemoryId> =
            store.save_batch(memories).await.unwrap().into_iter().map(|outcome| outcome.id).collect();
        // The first shared memory is forgotten: the first admitted one is the fourth shared.
        store.forget(&agent, &ids[0]).await.unwrap();
        let mut listed: Vec<MemoryId> = ids.clone();
        listed.reverse();
        let filter = Filter::new(agent, Visibility::Shared);
        let rows = load_first_admitted(&store.db, &filter, &listed, 5).await.unwrap();
        let expected: Vec<&str> =
            listed.iter().enumerate().filter(|(i, _)| (59 - i) % 3 == 0).map(|(_, id)| id.as_str()).take(5).collect();
        assert_eq!(rows.iter().map(|row| row.id.as_str()).collect::<Vec<_>>(), expected);
        // Asked for more than there are: every admitted one, down to the end of the list.
        let rows = load_first_admitted(&store.db, &filter, &listed, 100).await.unwrap();
        assert_eq!(rows.len(), 19);
        assert_eq!(rows.last().map(|row| row.id.as_str()), Some(ids[3].as_str()));
    }
}

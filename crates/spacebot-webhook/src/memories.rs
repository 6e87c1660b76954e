//! `GET /api/agents/{agent}/memories?q=...&limit=...&type=...&person=...`: hybrid recall over an
//! agent's memory, as `spacebot memory search` runs it, answered by the running daemon so the
//! command needs no second model load and does not reopen the store; without `q`, the newest
//! memories. `type` keeps memories of those types (comma-separated), `person` those whose scope
//! names that person. Every memory is searched, private ones included, so the route needs the
//! `admin` scope for the agent.
//!
//! `GET /api/agents/{agent}/memories/{id}`: one memory, its edges, and the memory at the other
//! end of each (the portal draws them as a graph).
//!
//! `DELETE /api/agents/{agent}/memories/{id}`: forgets a memory (the portal's forget button), with
//! the same scope.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use spacebot_core::{
    AgentId, ListQuery, Memory, MemoryId, MemoryStore, MemoryType, RecallHit, RecallQuery, Visibility,
};

use crate::access::{Caller, Scope};
use crate::api::AppState;
use crate::error::ApiError;

/// The most results one search returns.
const MAX_LIMIT: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
    /// Comma-separated memory types.
    #[serde(rename = "type", default)]
    kinds: String,
    person: Option<String>,
}

impl SearchQuery {
    fn kinds(&self) -> Result<Vec<MemoryType>, ApiError> {
        self.kinds
            .split(',')
            .map(str::trim)
            .filter(|label| !label.is_empty())
            .map(|label| {
                MemoryType::from_label(label).ok_or_else(|| {
                    let labels: Vec<&str> = MemoryType::ALL.iter().map(|kind| kind.label()).collect();
                    ApiError::BadRequest(format!("unknown memory type `{label}`; use one of: {}", labels.join(", ")))
                })
            })
            .collect()
    }
}

/// The memory of `agent` after the caller may reach it (an admin of that agent), or a 404.
fn store_of<'a>(state: &'a AppState, agent: &AgentId) -> Result<&'a Arc<dyn MemoryStore>, ApiError> {
    state
        .config
        .memories
        .get(agent)
        .ok_or_else(|| ApiError::NotFound(format!("no agent `{agent}` with a memory on this server")))
}

pub(crate) async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agent): Path<String>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let agent = AgentId::from(agent.as_str());
    caller.require(Scope::Admin, &agent)?;
    let Query(query) = query.map_err(|error| ApiError::BadRequest(format!("invalid query: {}", error.body_text())))?;
    let limit = query.limit.unwrap_or(10);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("query `limit` must be between 1 and {MAX_LIMIT}, got {limit}")));
    }
    let kinds = query.kinds()?;
    let person = query.person.as_deref().map(str::trim).filter(|person| !person.is_empty());
    let store = store_of(&state, &agent)?;
    // A person filter is applied to the results, so ask for as many as may be kept.
    let wanted = if person.is_some() { MAX_LIMIT } else { limit };
    let failed = |error| ApiError::Internal(format!("can't search the memory of `{agent}`: {error}"));
    let mut hits: Vec<RecallHit> = if query.q.trim().is_empty() {
        let list =
            ListQuery::new(agent.clone()).with_visibility(Visibility::Operator).with_kinds(kinds).with_page(wanted, 0);
        store.list(list).await.map_err(failed)?.into_iter().map(|memory| RecallHit::new(memory, 0.0)).collect()
    } else {
        let mut recall = RecallQuery::new(agent.clone(), query.q)
            .with_visibility(Visibility::Operator)
            .with_limit(wanted)
            .without_access_recording();
        recall.kinds = kinds;
        store.recall(recall).await.map_err(failed)?
    };
    if let Some(person) = person {
        hits.retain(|hit| hit.memory.scope.human.as_deref() == Some(person));
    }
    hits.truncate(limit);
    serde_json::to_value(&hits)
        .map(|hits| Json(json!({ "agent": agent.as_str(), "hits": hits })))
        .map_err(|error| ApiError::Internal(format!("can't encode the results: {error}")))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let agent = AgentId::from(agent.as_str());
    caller.require(Scope::Admin, &agent)?;
    let store = store_of(&state, &agent)?;
    let failed = |error| ApiError::Internal(format!("can't read memory `{id}` of `{agent}`: {error}"));
    let memory_id = MemoryId::new(id.as_str());
    let Some(memory) = store.get(&agent, &memory_id).await.map_err(failed)? else {
        return Err(ApiError::NotFound(format!("agent `{agent}` has no memory `{id}`")));
    };
    let mut edges = Vec::new();
    for edge in store.edges(&agent, &memory_id).await.map_err(failed)? {
        let other_id = if edge.source == memory_id { &edge.target } else { &edge.source };
        let other: Option<Memory> = store.get(&agent, other_id).await.map_err(failed)?;
        edges.push(json!({
            "source": edge.source,
            "target": edge.target,
            "kind": edge.kind.label(),
            "weight": edge.weight,
            "other": other.map(|other| json!({
                "id": other.id,
                "kind": other.kind.label(),
                "content": other.content,
                "forgotten": other.forgotten,
            })),
        }));
    }
    let memory = serde_json::to_value(&memory).map_err(|error| ApiError::Internal(format!("can't encode: {error}")))?;
    Ok(Json(json!({ "agent": agent.as_str(), "memory": memory, "edges": edges })))
}

pub(crate) async fn forget(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let agent = AgentId::from(agent.as_str());
    caller.require(Scope::Admin, &agent)?;
    let store = store_of(&state, &agent)?;
    let forgotten = store
        .forget(&agent, &MemoryId::new(id.as_str()))
        .await
        .map_err(|error| ApiError::Internal(format!("can't forget memory `{id}` of `{agent}`: {error}")))?;
    if !forgotten {
        return Err(ApiError::NotFound(format!("agent `{agent}` has no memory `{id}` to forget")));
    }
    tracing::info!(%agent, memory = %id, "memory forgotten through the API");
    Ok(Json(serde_json::json!({ "agent": agent.as_str(), "memory": id, "forgotten": true })))
}

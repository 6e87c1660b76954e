//! `GET /api/agents/{agent}/memories?q=...&limit=...`: hybrid recall over an agent's memory, as
//! `spacebot memory search` runs it, answered by the running daemon so the command needs no
//! second model load and does not reopen the store. Every memory is searched, private ones
//! included, so the route needs the `admin` scope for the agent.
//!
//! `DELETE /api/agents/{agent}/memories/{id}`: forgets a memory (the portal's forget button), with
//! the same scope.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use spacebot_core::{AgentId, MemoryId, RecallQuery, Visibility};

use crate::access::{Caller, Scope};
use crate::api::AppState;
use crate::error::ApiError;

/// The most results one search returns.
const MAX_LIMIT: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    q: String,
    limit: Option<usize>,
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
    if query.q.trim().is_empty() {
        return Err(ApiError::BadRequest("query `q` must not be empty".to_owned()));
    }
    let limit = query.limit.unwrap_or(10);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("query `limit` must be between 1 and {MAX_LIMIT}, got {limit}")));
    }
    let Some(store) = state.config.memories.get(&agent) else {
        return Err(ApiError::NotFound(format!("no agent `{agent}` with a memory on this server")));
    };
    let recall = RecallQuery::new(agent.clone(), query.q)
        .with_visibility(Visibility::Operator)
        .with_limit(limit)
        .without_access_recording();
    let hits = store
        .recall(recall)
        .await
        .map_err(|error| ApiError::Internal(format!("can't search the memory of `{agent}`: {error}")))?;
    serde_json::to_value(&hits)
        .map(|hits| Json(serde_json::json!({ "agent": agent.as_str(), "hits": hits })))
        .map_err(|error| ApiError::Internal(format!("can't encode the results: {error}")))
}

pub(crate) async fn forget(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let agent = AgentId::from(agent.as_str());
    caller.require(Scope::Admin, &agent)?;
    let Some(store) = state.config.memories.get(&agent) else {
        return Err(ApiError::NotFound(format!("no agent `{agent}` with a memory on this server")));
    };
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

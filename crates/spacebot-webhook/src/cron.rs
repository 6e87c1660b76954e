//! `GET|POST /api/agents/{agent}/cron`, `GET|DELETE /api/agents/{agent}/cron/{id}` and
//! `POST /api/agents/{agent}/cron/{id}/run`: an agent's cron jobs, through the [`CronJobs`]
//! service the daemon hands the API. A `POST` body has the fields of `[[agents.cron]]`, as JSON.
//! Every route needs the `admin` scope for the agent.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::{Value, json};

use spacebot_core::{AgentId, CronError, CronJob, CronJobSpec, CronJobs};

use crate::access::{Caller, Scope};
use crate::api::{AppState, read_json_body};
use crate::error::ApiError;

/// The service and the agent, once the caller may manage the agent's jobs.
fn service(
    state: &AppState,
    caller: &Caller,
    agent: &str,
) -> Result<(std::sync::Arc<dyn CronJobs>, AgentId), ApiError> {
    let agent = AgentId::new(agent);
    if !state.runtime.has_agent(&agent) {
        return Err(ApiError::NotFound(format!("no agent named '{agent}'")));
    }
    caller.require(Scope::Admin, &agent)?;
    let Some(cron) = state.config.cron.clone() else {
        return Err(ApiError::NotFound("cron jobs are not kept on this server".to_owned()));
    };
    Ok((cron, agent))
}

fn api_error(error: CronError) -> ApiError {
    match error {
        CronError::Invalid(_) => ApiError::BadRequest(error.to_string()),
        CronError::NotFound(_) => ApiError::NotFound(error.to_string()),
        CronError::Stopped => ApiError::Unavailable,
        other => ApiError::Internal(other.to_string()),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agent): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (cron, agent) = service(&state, &caller, &agent)?;
    let jobs = cron.list(&agent).await.map_err(api_error)?;
    Ok(Json(json!({ "jobs": jobs })))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, id)): Path<(String, String)>,
) -> Result<Json<CronJob>, ApiError> {
    let (cron, agent) = service(&state, &caller, &agent)?;
    let jobs = cron.list(&agent).await.map_err(api_error)?;
    jobs.into_iter().find(|job| job.id == id).map(Json).ok_or_else(|| api_error(CronError::NotFound(id)))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CronJob>), ApiError> {
    let (cron, agent) = service(&state, &caller, &agent)?;
    let bytes = read_json_body(&headers, body, state.config.max_body_bytes).await?;
    let spec: CronJobSpec =
        serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))?;
    let job = spec.into_job(agent).map_err(api_error)?.with_source("api");
    let job = cron.create(job).await.map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(job)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (cron, agent) = service(&state, &caller, &agent)?;
    if cron.delete(&agent, &id).await.map_err(api_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(api_error(CronError::NotFound(id)))
    }
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agent, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (cron, agent) = service(&state, &caller, &agent)?;
    cron.run_now(&agent, &id).await.map_err(api_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "started": id }))))
}

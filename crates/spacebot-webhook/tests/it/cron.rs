//! `/api/agents/{agent}/cron` over the real router: the admin scope (for the agent) manages jobs,
//! other scopes are refused; bodies have the fields of `[[agents.cron]]`; errors name the field.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::json;

use spacebot_core::{AgentId, CronError, CronJob, CronJobs};
use spacebot_webhook::{ApiConfig, Scope, ScopedToken, ServeLimits};

use crate::support::{RawResponse, Served, SilentEngine, exchange};

const ADMIN: &str = "admin-token-123";
const READ: &str = "read-token-12345";
const OTHER_ADMIN: &str = "other-admin-123";

/// Jobs kept in a list; "validation" refuses an `every` of zero, as the scheduler would.
#[derive(Default)]
struct Jobs {
    jobs: Mutex<Vec<CronJob>>,
    runs: Mutex<Vec<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl CronJobs for Jobs {
    async fn create(&self, job: CronJob) -> Result<CronJob, CronError> {
        if job.every.is_some_and(|e| e.is_zero()) {
            return Err(CronError::Invalid("`every` 0ns is shorter than one second".to_owned()));
        }
        let mut jobs = lock(&self.jobs);
        jobs.retain(|j| j.id != job.id);
        jobs.push(job.clone());
        Ok(job)
    }

    async fn list(&self, agent: &AgentId) -> Result<Vec<CronJob>, CronError> {
        Ok(lock(&self.jobs).iter().filter(|j| &j.agent == agent).cloned().collect())
    }

    async fn delete(&self, agent: &AgentId, id: &str) -> Result<bool, CronError> {
        let mut jobs = lock(&self.jobs);
        let before = jobs.len();
        jobs.retain(|j| !(&j.agent == agent && j.id == id));
        Ok(jobs.len() < before)
    }

    async fn run_now(&self, agent: &AgentId, id: &str) -> Result<(), CronError> {
        if !lock(&self.jobs).iter().any(|j| &j.agent == agent && j.id == id) {
            return Err(CronError::NotFound(id.to_owned()));
        }
        lock(&self.runs).push(id.to_owned());
        Ok(())
    }
}

async fn call(served: &Served, method: &str, path: &str, token: &str, body: Option<serde_json::Value>) -> RawResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = served.connect().await;
    exchange(&mut stream, &request).await
}

#[tokio::test]
async fn admins_manage_an_agent_s_jobs_and_other_scopes_are_refused() {
    let jobs = Arc::new(Jobs::default());
    let api = ApiConfig::default()
        .with_token(Some(ADMIN.to_owned()))
        .with_scoped_tokens([
            ScopedToken::new("dashboard", READ, [Scope::Read]),
            ScopedToken::new("ops", OTHER_ADMIN, [Scope::Admin]).with_agents([AgentId::new("other")]),
        ])
        .with_cron(jobs.clone());
    let served = Served::start_with(ServeLimits::default(), Arc::new(SilentEngine), api).await;

    let body = json!({ "id": "ping", "prompt": "Check the build", "every": "30m", "deliver_to": "webhook:builds" });
    let created = call(&served, "POST", "/api/agents/main/cron", ADMIN, Some(body.clone())).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["every"], 1800.0);
    assert_eq!(created.json()["source"], "api");

    for token in [READ, OTHER_ADMIN] {
        let refused = call(&served, "GET", "/api/agents/main/cron", token, None).await;
        assert_eq!(refused.status, 403, "{refused:?}");
        let refused = call(&served, "POST", "/api/agents/main/cron", token, Some(body.clone())).await;
        assert_eq!(refused.status, 403, "{refused:?}");
    }

    let listed = call(&served, "GET", "/api/agents/main/cron", ADMIN, None).await;
    assert_eq!(listed.json()["jobs"][0]["id"], "ping", "{listed:?}");
    assert_eq!(
        call(&served, "GET", "/api/agents/main/cron/ping", ADMIN, None).await.json()["prompt"],
        "Check the build"
    );
    assert_eq!(call(&served, "GET", "/api/agents/main/cron/nope", ADMIN, None).await.status, 404);
    assert_eq!(call(&served, "GET", "/api/agents/ghost/cron", ADMIN, None).await.status, 404);

    let ran = call(&served, "POST", "/api/agents/main/cron/ping/run", ADMIN, None).await;
    assert_eq!(ran.status, 202, "{ran:?}");
    assert_eq!(*jobs.runs.lock().unwrap(), ["ping"]);
    assert_eq!(call(&served, "POST", "/api/agents/main/cron/nope/run", ADMIN, None).await.status, 404);

    for (bad, field) in [
        (json!({ "id": "x", "prompt": "p", "every": "soon", "deliver_to": "webhook:c" }), "`every`"),
        (json!({ "id": "x", "prompt": "p", "every": 0, "deliver_to": "webhook:c" }), "`every`"),
        (json!({ "id": "x", "every": "1m", "deliver_to": "webhook:c" }), "prompt"),
        (json!({ "id": "x", "prompt": "p", "every": "1m", "deliver_to": "webhook:c", "when": 1 }), "when"),
    ] {
        let refused = call(&served, "POST", "/api/agents/main/cron", ADMIN, Some(bad)).await;
        assert_eq!(refused.status, 400, "{refused:?}");
        assert!(refused.json()["error"].as_str().is_some_and(|e| e.contains(field)), "{field}: {refused:?}");
    }

    assert_eq!(call(&served, "DELETE", "/api/agents/main/cron/ping", ADMIN, None).await.status, 204);
    assert_eq!(call(&served, "DELETE", "/api/agents/main/cron/ping", ADMIN, None).await.status, 404);
    served.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn without_a_cron_service_the_routes_answer_404() {
    let served = Served::start_with(ServeLimits::default(), Arc::new(SilentEngine), ApiConfig::default()).await;
    let missing = call(&served, "GET", "/api/agents/main/cron", "", None).await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.json()["error"].as_str().is_some_and(|e| e.contains("cron jobs are not kept")), "{missing:?}");
    served.stop(std::time::Duration::from_secs(5)).await;
}

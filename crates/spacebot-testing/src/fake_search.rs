//! [`FakeSearch`]: a real HTTP server on `127.0.0.1` speaking one web search API, SearXNG's
//! JSON API (`GET /search?q=..&format=json`) or the Brave Search API
//! (`GET /res/v1/web/search?q=..&count=..` with the key in `X-Subscription-Token`), so a search
//! client can be tested without the network.
//!
//! It answers with the results a test set ([`FakeSearch::set_results`]), else three made from
//! the query; it records every request, refuses what the real service refuses (SearXNG without
//! `format=json`, Brave without the right token) and fails, answers garbage or hangs on demand.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One search result the fake answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The page's title.
    pub title: String,
    /// Its URL.
    pub url: String,
    /// The snippet (SearXNG's `content`, Brave's `description`).
    pub snippet: String,
}

impl SearchHit {
    /// A result.
    pub fn new(title: impl Into<String>, url: impl Into<String>, snippet: impl Into<String>) -> Self {
        Self { title: title.into(), url: url.into(), snippet: snippet.into() }
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// The path asked for.
    pub path: String,
    /// The `q` parameter.
    pub query: String,
    /// Every query parameter, in order.
    pub params: Vec<(String, String)>,
    /// The `X-Subscription-Token` header, if any.
    pub token: Option<String>,
}

impl SearchRequest {
    /// The value of query parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
    }
}

/// What the next request gets instead of results.
#[derive(Debug, Clone, Copy)]
enum Mishap {
    Status(u16),
    Garbage,
    Hang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Api {
    Searxng,
    Brave { token: String },
}

#[derive(Debug, Default)]
struct Shared {
    requests: Vec<SearchRequest>,
    results: Option<Vec<SearchHit>>,
    mishaps: Vec<Mishap>,
}

#[derive(Clone)]
struct AppState {
    api: Arc<Api>,
    shared: Arc<Mutex<Shared>>,
}

/// A fake web search API (see the module docs). Stops when dropped.
#[derive(Debug)]
pub struct FakeSearch {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl FakeSearch {
    /// A fake SearXNG instance with the JSON format enabled.
    ///
    /// # Panics
    ///
    /// When it can't listen on 127.0.0.1 (a test can't go on without it).
    pub async fn searxng() -> Self {
        Self::start(Api::Searxng).await
    }

    /// A fake Brave Search API that accepts only `token` as the subscription token.
    ///
    /// # Panics
    ///
    /// When it can't listen on 127.0.0.1.
    pub async fn brave(token: impl Into<String>) -> Self {
        Self::start(Api::Brave { token: token.into() }).await
    }

    async fn start(api: Api) -> Self {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(listener) => listener,
            Err(error) => panic!("fake search: can't listen on 127.0.0.1: {error}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => panic!("fake search: no local address: {error}"),
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let path = match api {
            Api::Searxng => "/search",
            Api::Brave { .. } => "/res/v1/web/search",
        };
        let app =
            Router::new().route(path, get(search)).with_state(AppState { api: Arc::new(api), shared: shared.clone() });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake search server stopped");
            }
        });
        Self { addr, shared, task }
    }

    /// The base URL to configure a client with (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every search from now on with these results (empty: no results).
    pub fn set_results(&self, results: Vec<SearchHit>) {
        self.lock().results = Some(results);
    }

    /// The results the fake gives `query` when none were set: three, each naming the query.
    pub fn default_results(query: &str) -> Vec<SearchHit> {
        (1..=3)
            .map(|n| {
                SearchHit::new(
                    format!("{query}: result {n}"),
                    format!("https://example.com/{n}?q={}", query.replace(' ', "+")),
                    format!("What the web says about {query}, part {n}."),
                )
            })
            .collect()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SearchRequest> {
        self.lock().requests.clone()
    }

    /// Makes the next request fail with `status` (queued with the other mishaps).
    pub fn fail_next(&self, status: u16) {
        self.lock().mishaps.push(Mishap::Status(status));
    }

    /// Makes the next request get a `200` whose body is not JSON.
    pub fn answer_garbage_next(&self) {
        self.lock().mishaps.push(Mishap::Garbage);
    }

    /// Makes the next request wait forever for its answer.
    pub fn hang_next(&self) {
        self.lock().mishaps.push(Mishap::Hang);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeSearch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn search(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let query = params.iter().find(|(key, _)| key == "q").map(|(_, value)| value.clone()).unwrap_or_default();
    let token = headers.get("x-subscription-token").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let request = SearchRequest { path: uri.path().to_owned(), query: query.clone(), params, token: token.clone() };
    let (mishap, results) = {
        let mut shared = state.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.requests.push(request.clone());
        let mishap = (!shared.mishaps.is_empty()).then(|| shared.mishaps.remove(0));
        (mishap, shared.results.clone().unwrap_or_else(|| FakeSearch::default_results(&query)))
    };
    match mishap {
        Some(Mishap::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "injected failure").into_response();
        }
        Some(Mishap::Garbage) => return (StatusCode::OK, "<html>not json</html>").into_response(),
        Some(Mishap::Hang) => std::future::pending::<()>().await,
        None => {}
    }
    if query.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "the query parameter q is required");
    }
    match state.api.as_ref() {
        Api::Searxng => {
            // A real instance answers 403 to a format its settings don't enable.
            if request.param("format").as_deref() != Some("json") {
                return (StatusCode::FORBIDDEN, "Forbidden").into_response();
            }
            let results: Vec<Value> = results
                .iter()
                .map(|hit| json!({ "title": hit.title, "url": hit.url, "content": hit.snippet, "engine": "fake", "score": 1.0 }))
                .collect();
            Json(json!({
                "query": query,
                "number_of_results": results.len(),
                "results": results,
                "answers": [],
                "suggestions": [],
                "unresponsive_engines": []
            }))
            .into_response()
        }
        Api::Brave { token: expected } => {
            if token.as_deref() != Some(expected.as_str()) {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({
                        "type": "ErrorResponse",
                        "error": { "code": "SUBSCRIPTION_TOKEN_INVALID", "status": 401, "detail": "The provided subscription token is invalid." }
                    })),
                )
                    .into_response();
            }
            let count = request.param("count").and_then(|count| count.parse::<usize>().ok()).unwrap_or(20).min(20);
            let results: Vec<Value> = results
                .iter()
                .take(count)
                .map(|hit| json!({ "type": "search_result", "title": hit.title, "url": hit.url, "description": hit.snippet }))
                .collect();
            Json(json!({
                "type": "search",
                "query": { "original": query },
                "web": { "type": "search", "results": results }
            }))
            .into_response()
        }
    }
}

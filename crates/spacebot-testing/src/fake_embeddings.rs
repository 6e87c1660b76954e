//! [`FakeEmbeddingsServer`]: a real HTTP server on `127.0.0.1` speaking OpenAI's embeddings API
//! (`POST /v1/embeddings`), answering each input with a deterministic vector derived from its
//! words, so tests of an embeddings client (and of recall through it) need no network or model.
//!
//! It records every request, and can be told to fail the next requests with a status code.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    /// The `model` field.
    pub model: String,
    /// The `input` texts.
    pub input: Vec<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Vec<EmbeddingsRequest>,
    failures: Vec<u16>,
}

/// A fake OpenAI-compatible embeddings server (see the module docs). Stops when dropped.
#[derive(Debug)]
pub struct FakeEmbeddingsServer {
    addr: SocketAddr,
    dimensions: usize,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    dimensions: usize,
    shared: Arc<Mutex<Shared>>,
}

impl FakeEmbeddingsServer {
    /// Starts a server whose vectors have `dimensions` floats.
    ///
    /// # Panics
    ///
    /// When it can't listen on 127.0.0.1 (a test can't go on without it).
    pub async fn start(dimensions: usize) -> Self {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(listener) => listener,
            Err(error) => panic!("fake embeddings server: can't listen on 127.0.0.1: {error}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => panic!("fake embeddings server: no local address: {error}"),
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(AppState { dimensions, shared: shared.clone() });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake embeddings server stopped");
            }
        });
        Self { addr, dimensions, shared, task }
    }

    /// The base URL to configure a client with (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The vector length it answers with.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<EmbeddingsRequest> {
        self.lock().requests.clone()
    }

    /// Makes the next request fail with `status` (queued: call it twice to fail two requests).
    pub fn fail_next(&self, status: u16) {
        self.lock().failures.push(status);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The vector the server gives `text`: each word adds 1 to a bucket picked by a stable hash.
    /// Texts sharing words get similar vectors; the client is expected to normalise them.
    pub fn vector_for(text: &str, dimensions: usize) -> Vec<f32> {
        let mut vector = vec![0.0f32; dimensions.max(1)];
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
            let hash = word.to_lowercase().bytes().fold(5381u64, |hash, byte| hash.wrapping_mul(33) ^ u64::from(byte));
            // The remainder is below the vector length, which is a usize.
            let bucket = (hash % vector.len() as u64) as usize;
            vector[bucket] += 1.0;
        }
        vector
    }
}

impl Drop for FakeEmbeddingsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn embeddings(State(state): State<AppState>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let input: Vec<String> = match body.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "input is required"}}))).into_response();
        }
    };
    let authorization = headers.get("authorization").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let failure = {
        let mut shared = state.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.requests.push(EmbeddingsRequest { model: model.clone(), input: input.clone(), authorization });
        (!shared.failures.is_empty()).then(|| shared.failures.remove(0))
    };
    if let Some(status) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, Json(json!({"error": {"message": "injected failure"}}))).into_response();
    }
    // Answer in reverse order: clients must place vectors by `index`, not by position.
    let data: Vec<Value> = input
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": FakeEmbeddingsServer::vector_for(text, state.dimensions)})
        })
        .collect();
    Json(json!({"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 0, "total_tokens": 0}}))
        .into_response()
}

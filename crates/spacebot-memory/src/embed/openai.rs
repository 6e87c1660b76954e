//! [`OpenAiEmbedder`]: any server speaking OpenAI's embeddings API (`POST {base}/embeddings`):
//! OpenAI, vLLM, llama.cpp server, Ollama, LM Studio, ...

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use spacebot_core::{EmbedError, Embedder};

use crate::embed::normalize;

/// Texts per request; servers cap the batch size, and smaller requests fail less expensively.
const MAX_BATCH: usize = 128;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An embedder that calls an OpenAI-compatible `/embeddings` endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    dimensions: usize,
    model_id: String,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// An embedder for `model` at `base_url` (for example `https://api.openai.com/v1`), whose
    /// vectors have `dimensions` floats. Responses of another length are an error.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, dimensions: usize) -> Self {
        let base_url = base_url.into();
        let model = model.into();
        let url = format!("{}/embeddings", base_url.trim_end_matches('/'));
        let model_id = format!("openai:{model}:{dimensions}");
        Self {
            client: reqwest::Client::builder()
                .tls_backend_preconfigured(spacebot_core::tls::client_config())
                .build()
                .unwrap_or_default(),
            url,
            model,
            api_key: None,
            dimensions,
            model_id,
        }
    }

    /// Sends `Authorization: Bearer <key>` with each request.
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let failed = |what: String| EmbedError::new(format!("can't embed with {} at {}: {what}", self.model, self.url));
        let mut request = self.client.post(&self.url).timeout(REQUEST_TIMEOUT).json(&Request {
            model: &self.model,
            input: texts,
            encoding_format: "float",
        });
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response =
            request.send().await.map_err(|error| failed("the request failed".to_owned()).with_source(error))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(failed(format!("the server answered {status}: {body}")));
        }
        let body: Response = response
            .json()
            .await
            .map_err(|error| failed("the response is not an embeddings list".to_owned()).with_source(error))?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for datum in body.data {
            if datum.embedding.len() != self.dimensions {
                return Err(failed(format!(
                    "expected vectors of {} floats, got {}",
                    self.dimensions,
                    datum.embedding.len()
                )));
            }
            let slot =
                vectors.get_mut(datum.index).ok_or_else(|| failed(format!("unexpected index {}", datum.index)))?;
            let mut vector = datum.embedding;
            normalize(&mut vector);
            *slot = Some(vector);
        }
        vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| vector.ok_or_else(|| failed(format!("no vector for input {index}"))))
            .collect()
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(MAX_BATCH) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }
}

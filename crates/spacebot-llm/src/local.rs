//! [`LocalModel`]: a GGUF chat model run in-process on the CPU with candle (cargo feature
//! `local-model`, provider kind `local`).
//!
//! The file is checked (exists, a supported architecture) when the model is built, and loaded on
//! first use on a blocking thread, so start-up stays fast and `/health` answers during the load.
//! One generation runs at a time, on a blocking thread: a request that finds the model busy waits
//! its turn (logged, and the caller's turn stays open, so its typing indicator stays on). Tokens
//! are streamed through a bounded channel as they are sampled; when the caller drops the stream
//! (`/stop`, a turn timeout, shutdown) the generation sees the channel closed before its next
//! token and ends. Every generation is bounded by `max_tokens`.
//!
//! The decoder (`transformer`) keeps the weights quantized as in the file, and keeps its
//! attention cache between generations: a prompt is read from where it stops sharing a prefix
//! with the tokens the cache holds, so the next turn of a conversation reads only what is new.
//!
//! Tools are never offered to it: small models don't call them reliably, and the channel sends a
//! text-only answer as its reply.

mod gguf;
mod template;
mod transformer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokio::sync::{OnceCell, Semaphore, mpsc};

use spacebot_core::{ChatRequest, ChatResponse, ChatStream, LanguageModel, LlmError, LlmErrorKind, StreamEvent, Usage};

use crate::error::Error;
use gguf::{Loaded, ModelInfo};
use transformer::Transformer;

/// How a [`LocalModel`] runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LocalSettings {
    /// The GGUF file.
    pub path: PathBuf,
    /// The most tokens one answer may have (a request asking for fewer gets fewer).
    pub max_tokens: u32,
    /// The context window reported to the harness; `0` means the file's own context length,
    /// capped at [`LocalSettings::DEFAULT_CONTEXT_CAP`] (a CPU reads a long prompt slowly).
    pub context_window: usize,
    /// The sampling temperature when a request sets none; `0` picks the likeliest token.
    pub temperature: f64,
    /// The sampler's seed: the same prompt gets the same answer.
    pub seed: u64,
}

impl LocalSettings {
    /// The context window used when none is set and the file's is longer.
    pub const DEFAULT_CONTEXT_CAP: usize = 4096;

    /// Settings for the file at `path`: 256 tokens an answer, the file's context length,
    /// temperature 0.3.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), max_tokens: 256, context_window: 0, temperature: 0.3, seed: 299_792_458 }
    }

    /// Sets the most tokens one answer may have.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens.max(1);
        self
    }

    /// Sets the context window reported to the harness (`0`: the file's).
    pub fn with_context_window(mut self, context_window: usize) -> Self {
        self.context_window = context_window;
        self
    }

    /// Sets the default sampling temperature.
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }
}

/// What a model file is, read from its metadata without loading it (see [`LocalModel::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalModelInfo {
    /// The model's name (`general.name`, else the file's stem).
    pub name: String,
    /// `llama` or `qwen2`.
    pub architecture: String,
    /// The context length it was trained for.
    pub context_length: usize,
    /// The chat template family its prompt is laid out in.
    pub template: String,
}

impl From<&ModelInfo> for LocalModelInfo {
    fn from(info: &ModelInfo) -> Self {
        Self {
            name: info.name.clone(),
            architecture: format!("{:?}", info.architecture).to_ascii_lowercase(),
            context_length: info.context_length,
            template: info.template.name().to_owned(),
        }
    }
}

/// A chat model in a GGUF file, run in-process (see the `local` module docs).
pub struct LocalModel {
    name: String,
    settings: LocalSettings,
    info: ModelInfo,
    /// One permit: one generation at a time.
    queue: Arc<Semaphore>,
    loaded: OnceCell<Arc<Loaded>>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel").field("name", &self.name).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl LocalModel {
    /// A model named `name` (`provider/model`, for logs) running `settings.path`.
    ///
    /// Reads the file's metadata (not its weights): fails, naming the file, when it is missing,
    /// not GGUF, or of an architecture or tokenizer this build can't run.
    pub fn new(name: impl Into<String>, settings: LocalSettings) -> Result<Self, Error> {
        let info = gguf::inspect(&settings.path)?;
        Ok(Self { name: name.into(), settings, info, queue: Arc::new(Semaphore::new(1)), loaded: OnceCell::new() })
    }

    /// What the file at `path` holds, from its metadata; the same checks as [`new`](Self::new).
    pub fn inspect(path: &Path) -> Result<LocalModelInfo, Error> {
        gguf::inspect(path).map(|info| LocalModelInfo::from(&info))
    }

    /// What its file holds.
    pub fn info(&self) -> LocalModelInfo {
        LocalModelInfo::from(&self.info)
    }

    /// Whether the weights are loaded yet (they load on the first request).
    pub fn is_loaded(&self) -> bool {
        self.loaded.initialized()
    }

    fn error(&self, kind: LlmErrorKind, detail: impl std::fmt::Display) -> LlmError {
        LlmError::new(
            kind,
            format!("the local model {} ({}) failed: {detail}", self.name, self.settings.path.display()),
        )
    }

    /// The loaded model, loading it on a blocking thread the first time.
    async fn loaded(&self) -> Result<Arc<Loaded>, LlmError> {
        self.loaded
            .get_or_try_init(|| async {
                let path = self.settings.path.clone();
                let context = self.context_window();
                tracing::info!(model = %self.name, path = %path.display(), "loading the local model");
                let started = std::time::Instant::now();
                let loaded = tokio::task::spawn_blocking(move || gguf::load(&path, context))
                    .await
                    .map_err(|error| {
                        self.error(LlmErrorKind::InvalidResponse, format!("its loading thread failed: {error}"))
                    })?
                    .map_err(|error| LlmError::new(LlmErrorKind::NotConfigured, error.to_string()))?;
                tracing::info!(
                    model = %self.name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    template = loaded.info.template.name(),
                    "local model loaded"
                );
                Ok(Arc::new(loaded))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl LanguageModel for LocalModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn context_window(&self) -> usize {
        match self.settings.context_window {
            0 => self.info.context_length.min(LocalSettings::DEFAULT_CONTEXT_CAP),
            window => window.min(self.info.context_length),
        }
    }

    /// Small local models don't call tools reliably, so none are read from the request: the
    /// model answers in text, and the channel sends its text as the reply.
    fn calls_tools(&self) -> bool {
        false
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        use futures::StreamExt;
        let mut stream = self.stream(request).await?;
        while let Some(event) = stream.next().await {
            if let StreamEvent::Done(response) = event? {
                return Ok(response);
            }
        }
        Err(self.error(LlmErrorKind::InvalidResponse, "its answer ended early"))
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let permit = match Arc::clone(&self.queue).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::info!(model = %self.name, "the local model is answering another conversation; this one waits its turn");
                Arc::clone(&self.queue)
                    .acquire_owned()
                    .await
                    .map_err(|_| self.error(LlmErrorKind::InvalidResponse, "its queue was closed"))?
            }
        };
        let loaded = self.loaded().await?;
        let max_tokens =
            request.max_tokens.map_or(self.settings.max_tokens, |asked| asked.min(self.settings.max_tokens));
        let job = Job {
            name: self.name.clone(),
            path: self.settings.path.clone(),
            temperature: request.temperature.unwrap_or(self.settings.temperature),
            seed: self.settings.seed,
            max_tokens: max_tokens as usize,
            context: self.context_window(),
            request,
        };
        let (events, receiver) = mpsc::channel(64);
        let generation = tokio::task::spawn_blocking(move || {
            // Held until the generation ends, not just until its stream is dropped.
            let _permit = permit;
            job.run(&loaded, &events);
        });
        let state = StreamState { receiver, generation: Some(generation), name: self.name.clone() };
        Ok(Box::pin(futures::stream::unfold(state, |mut state| async move {
            if let Some(event) = state.receiver.recv().await {
                return Some((event, state));
            }
            // The generation ended: join it, so a panic is an error rather than a silent end.
            let generation = state.generation.take()?;
            match generation.await {
                Ok(()) => None,
                Err(error) => {
                    let message =
                        format!("the local model {} failed: its generation thread ended ({error})", state.name);
                    Some((Err(LlmError::new(LlmErrorKind::InvalidResponse, message)), state))
                }
            }
        })))
    }
}

/// Prompt tokens read at once. What is left of a prompt after the prefix the attention cache
/// already holds goes in as its first `len % 64` tokens, then chunks of 64: a cancelled request
/// is noticed between chunks, and a chunk's attention scores stay at most 64 rows.
const PREFILL_CHUNK: usize = 64;

/// Reads `prompt` from `start` on (the cache holds the tokens before it) and returns the logits
/// for the first answer token, or `None` when the caller went away meanwhile.
fn prefill(
    weights: &mut Transformer,
    prompt: &[u32],
    start: usize,
    events: &mpsc::Sender<Result<StreamEvent, LlmError>>,
) -> Result<Option<Tensor>, String> {
    let mut logits = None;
    let mut position = start;
    while position < prompt.len() {
        if events.is_closed() {
            return Ok(None);
        }
        let size = match (position == start, (prompt.len() - start) % PREFILL_CHUNK) {
            (true, head) if head > 0 => head,
            _ => PREFILL_CHUNK,
        };
        logits = Some(weights.forward(&prompt[position..position + size]).map_err(|e| e.to_string())?);
        position += size;
    }
    logits.map(Some).ok_or_else(|| "the prompt is empty".to_owned())
}

/// The stream's side of a generation.
struct StreamState {
    receiver: mpsc::Receiver<Result<StreamEvent, LlmError>>,
    /// The blocking task; joined once its events are drained.
    generation: Option<tokio::task::JoinHandle<()>>,
    name: String,
}

/// One generation, run on a blocking thread.
struct Job {
    name: String,
    path: PathBuf,
    temperature: f64,
    seed: u64,
    max_tokens: usize,
    context: usize,
    request: ChatRequest,
}

impl Job {
    fn run(self, loaded: &Loaded, events: &mpsc::Sender<Result<StreamEvent, LlmError>>) {
        let result = self.generate(loaded, events);
        if let Err(detail) = result {
            let message = format!("the local model {} ({}) failed: {detail}", self.name, self.path.display());
            let _ = events.blocking_send(Err(LlmError::new(LlmErrorKind::InvalidResponse, message)));
        }
    }

    /// The prompt's tokens: the whole history when it fits beside the answer, else the oldest
    /// messages dropped (the system prompt and the last message stay), else its tail.
    fn prompt(&self, loaded: &Loaded) -> Result<Vec<u32>, String> {
        let budget = self.context.saturating_sub(self.max_tokens).max(16);
        let messages = &self.request.messages;
        let mut skip = 0;
        loop {
            let text = loaded.info.template.render(&self.request.system, &messages[skip..]);
            let encoding =
                loaded.tokenizer.encode(text, false).map_err(|error| format!("can't tokenize the prompt: {error}"))?;
            let ids = encoding.get_ids();
            if ids.len() <= budget {
                return Ok(ids.to_vec());
            }
            if skip + 1 >= messages.len() {
                return Ok(ids[ids.len() - budget..].to_vec());
            }
            skip += 1;
        }
    }

    fn generate(&self, loaded: &Loaded, events: &mpsc::Sender<Result<StreamEvent, LlmError>>) -> Result<(), String> {
        let started = std::time::Instant::now();
        let prompt = self.prompt(loaded)?;
        let mut weights = match loaded.weights.lock() {
            Ok(weights) => weights,
            // A generation panicked mid-read: its attention cache may hold part of a chunk, so
            // it is emptied, and the lock is usable again.
            Err(poisoned) => {
                let mut weights = poisoned.into_inner();
                weights.clear();
                loaded.weights.clear_poison();
                weights
            }
        };
        // The last generation's cache serves the prefix this prompt shares with it: the system
        // prompt and the history up to the last answer, when it is the same conversation.
        let reused = weights.reuse_prefix(&prompt).map_err(|e| e.to_string())?;
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::TopP { p: 0.9, temperature: self.temperature }
        };
        let mut sampler = LogitsProcessor::from_sampling(self.seed, sampling);
        let Some(mut logits) = prefill(&mut weights, &prompt, reused, events)? else {
            tracing::info!(model = %self.name, tokens = 0, "local generation cancelled");
            return Ok(());
        };
        let prompt_done = started.elapsed();
        let mut generated: Vec<u32> = Vec::new();
        let mut text = String::new();
        loop {
            // The cancellation check: the caller dropped the stream (`/stop`, a timeout).
            if events.is_closed() {
                tracing::info!(model = %self.name, tokens = generated.len(), "local generation cancelled");
                return Ok(());
            }
            if generated.len() >= self.max_tokens {
                break;
            }
            let recent = &generated[generated.len().saturating_sub(64)..];
            let penalised =
                candle_transformers::utils::apply_repeat_penalty(&logits, 1.1, recent).map_err(|e| e.to_string())?;
            let next = sampler.sample(&penalised).map_err(|e| e.to_string())?;
            if loaded.stop_ids.contains(&next) {
                break;
            }
            generated.push(next);
            let decoded =
                loaded.tokenizer.decode(&generated, true).map_err(|error| format!("can't decode: {error}"))?;
            // A multi-byte character split across tokens decodes to U+FFFD until it is whole.
            if !decoded.ends_with('\u{FFFD}')
                && let Some(delta) = decoded.get(text.len()..).filter(|delta| !delta.is_empty())
            {
                let delta = delta.to_owned();
                text.push_str(&delta);
                if events.blocking_send(Ok(StreamEvent::TextDelta(delta))).is_err() {
                    return Ok(());
                }
            }
            logits = weights.forward(&[next]).map_err(|e| e.to_string())?;
        }
        drop(weights);
        let elapsed = started.elapsed();
        let generating = elapsed.saturating_sub(prompt_done).as_secs_f64();
        tracing::info!(
            model = %self.name,
            prompt_tokens = prompt.len(),
            reused_tokens = reused,
            tokens = generated.len(),
            prompt_ms = prompt_done.as_millis() as u64,
            tokens_per_second = if generating > 0.0 { generated.len() as f64 / generating } else { 0.0 },
            "local generation done"
        );
        let usage = Usage::new(prompt.len() as u64, generated.len() as u64);
        let response = ChatResponse::text(text.trim()).with_usage(usage);
        let _ = events.blocking_send(Ok(StreamEvent::Done(response)));
        Ok(())
    }
}

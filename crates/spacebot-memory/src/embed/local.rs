//! [`LocalEmbedder`]: a BERT sentence-embedding model (the all-MiniLM-L6-v2 layout:
//! `model.safetensors`, `config.json`, `tokenizer.json`) run in-process on the CPU with candle.
//! Pure Rust: no network, no C++, no Python.
//!
//! A sentence vector is the mean of the model's token vectors, L2-normalised, as
//! sentence-transformers computes it. The mean is taken over real tokens only, with the attention
//! mask: the shipped `tokenizer.json` pads every input to a fixed 128 tokens, and a plain mean over
//! that padding drags every sentence towards the same vector (unrelated sentences then score
//! about 0.5). The file's padding is turned off; texts are sorted by length and each batch is
//! padded to its own longest text, so a short memory costs a few tokens rather than 128, and a
//! text's vector does not depend on what it was batched with. Long texts are cut at the model's
//! maximum (`max_seq_length` from `sentence_bert_config.json` when present, else the position
//! table's size).
//!
//! Inference is CPU-bound, so it runs on tokio's blocking pool, never on a runtime thread.
//!
//! The model id fingerprints the files' contents (see [`fingerprint`]), not their path, so the
//! same model in another directory keeps its vectors, and a different model in the same directory
//! triggers a reindex.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Encoding, Tokenizer, TruncationParams};
use tokio::sync::OnceCell;

use spacebot_core::{BoxError, EmbedError, Embedder};

use crate::embed::normalize;

/// The weights, in safetensors format.
const WEIGHTS_FILE: &str = "model.safetensors";
/// The model's Hugging Face config (`BertConfig`).
const CONFIG_FILE: &str = "config.json";
/// The Hugging Face tokenizer.
const TOKENIZER_FILE: &str = "tokenizer.json";
/// sentence-transformers' settings; optional, read for `max_seq_length`.
const SENTENCE_CONFIG_FILE: &str = "sentence_bert_config.json";

/// Texts per forward pass: large enough to keep the matrix kernels busy, small enough that one
/// long text pads few others.
const MAX_BATCH: usize = 32;

/// Bytes of the files' SHA-256 kept in the model id (as hex).
const FINGERPRINT_BYTES: usize = 8;
/// The fingerprint hashes [`SAMPLE_BYTES`] of every this many bytes of weights.
const SAMPLE_STRIDE: usize = 1 << 20;
/// Bytes hashed per [`SAMPLE_STRIDE`] of weights.
const SAMPLE_BYTES: usize = 4096;

/// A failure to load a local embedding model. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalModelError {
    /// A required file is not in the model directory.
    #[error("can't load the embedding model: {} is missing", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("can't load the embedding model: can't read {}: {source}", path.display())]
    Read {
        /// The unreadable file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` (or `sentence_bert_config.json`) is not a BERT config.
    #[error("can't load the embedding model: {} is not a valid BERT config: {source}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// `tokenizer.json` is not a tokenizer this crate can use.
    #[error("can't load the embedding model: {} is not a usable tokenizer: {source}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What the tokenizers library said.
        #[source]
        source: BoxError,
    },
    /// `model.safetensors` is not a safetensors file holding the weights `config.json` describes.
    #[error("can't load the embedding model: {} does not hold the model's weights: {source}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What candle said.
        #[source]
        source: candle_core::Error,
    },
}

impl LocalModelError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing { path }
            | Self::Read { path, .. }
            | Self::Config { path, .. }
            | Self::Tokenizer { path, .. }
            | Self::Weights { path, .. } => path,
        }
    }
}

/// A BERT sentence-embedding model (all-MiniLM-L6-v2 layout) loaded from a local directory and
/// run on the CPU with candle: masked mean pooling over each text's real tokens, then L2
/// normalisation; texts cut at the model's maximum length; inference on tokio's blocking pool.
/// Its model id (`local:bert:<fingerprint>:<dimensions>`) depends on the files' contents, not
/// their path.
///
/// [`open`](Self::open) reads only what the model id and the vector length need; the weights and
/// the tokenizer are loaded on first use (about 90 MB for all-MiniLM-L6-v2), on tokio's blocking
/// pool, so a daemon that has not embedded anything yet does not hold them.
///
/// Cheap to clone: clones share the model, and load it once.
#[derive(Clone)]
pub struct LocalEmbedder {
    model: Arc<OnceCell<Arc<Model>>>,
    dir: PathBuf,
    dimensions: usize,
    max_tokens: usize,
    model_id: String,
}

/// What inference needs; shared between clones and moved into blocking tasks.
struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    pad_id: u32,
    device: Device,
}

#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

impl LocalEmbedder {
    /// Loads the model in `dir` (`model.safetensors`, `config.json`, `tokenizer.json`, as
    /// `scripts/fetch-models` lays them out), weights included: [`open`](Self::open), then the
    /// load that would otherwise wait for the first text.
    ///
    /// Blocking: it reads the weights (about 90 MB for all-MiniLM-L6-v2, a fraction of a second). From async code, call it through
    /// [`tokio::task::spawn_blocking`].
    ///
    /// # Errors
    ///
    /// When a file is missing, unreadable or malformed; the error names the file.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LocalModelError> {
        let embedder = Self::open(dir)?;
        let model = Model::load(&embedder.dir, embedder.max_tokens)?;
        // A fresh cell: nothing else can have filled it.
        let _ = embedder.model.set(Arc::new(model));
        Ok(embedder)
    }

    /// Opens the model in `dir` without loading it: checks its files are there, reads its config
    /// (the vector length and the longest input) and fingerprints the files for the model id,
    /// reading only samples of the weights. The weights and tokenizer are loaded when the first
    /// texts are embedded; a tokenizer or weights file that turns out broken then fails that
    /// call, naming the file.
    ///
    /// Blocking, but brief (it reads the config, the tokenizer file and about 1% of the weights).
    ///
    /// # Errors
    ///
    /// When a file is missing or unreadable, the config is not a BERT config, or the weights
    /// file has no valid safetensors header; the error names the file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LocalModelError> {
        let dir = dir.as_ref().to_path_buf();
        for file in crate::embed::LOCAL_MODEL_FILES {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(LocalModelError::Missing { path });
            }
        }

        let config_path = dir.join(CONFIG_FILE);
        let config_bytes = read(&config_path)?;
        let config: BertConfig = serde_json::from_slice(&config_bytes)
            .map_err(|source| LocalModelError::Config { path: config_path.clone(), source })?;
        let max_tokens = max_tokens(&dir, &config)?;
        let tokenizer_bytes = read(&dir.join(TOKENIZER_FILE))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        let read_error = |source| LocalModelError::Read { path: weights_path.clone(), source };
        let mut weights = std::fs::File::open(&weights_path).map_err(read_error)?;
        let length = weights.metadata().map_err(read_error)?.len();
        let fingerprint = fingerprint(&config_bytes, &tokenizer_bytes, &mut weights, length).map_err(read_error)?;
        check_header(&mut weights, length).map_err(|source| LocalModelError::Weights { path: weights_path, source })?;

        let dimensions = config.hidden_size;
        let model_id = format!("local:bert:{fingerprint}:{dimensions}");
        Ok(Self { model: Arc::new(OnceCell::new()), dir, dimensions, max_tokens, model_id })
    }

    /// Whether the weights are loaded (by [`load`](Self::load), or by a first embedding).
    pub fn is_loaded(&self) -> bool {
        self.model.initialized()
    }

    /// The model, loaded on the blocking pool by the first caller; the others wait for it.
    async fn model(&self) -> Result<Arc<Model>, EmbedError> {
        let loaded = self
            .model
            .get_or_try_init(|| async {
                let (dir, max_tokens) = (self.dir.clone(), self.max_tokens);
                let started = std::time::Instant::now();
                let model = tokio::task::spawn_blocking(move || Model::load(&dir, max_tokens))
                    .await
                    .map_err(|error| EmbedError::new("the task loading the local model failed").with_source(error))?
                    .map_err(|error| EmbedError::new(error.to_string()).with_source(error))?;
                tracing::info!(dir = %self.dir.display(), model = %self.model_id,
                    took_ms = started.elapsed().as_millis(), "local embedding model loaded");
                Ok::<_, EmbedError>(Arc::new(model))
            })
            .await?;
        Ok(Arc::clone(loaded))
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The longest input, in tokens; longer texts are cut.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dir", &self.dir)
            .field("model_id", &self.model_id)
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model().await?;
        let texts = texts.to_vec();
        let vectors = tokio::task::spawn_blocking(move || model.embed(texts))
            .await
            .map_err(|error| EmbedError::new("the local model's inference task failed").with_source(error))??;
        Ok(vectors)
    }
}

impl Model {
    /// Reads the tokenizer and the weights in `dir`, inputs cut at `max_tokens`.
    fn load(dir: &Path, max_tokens: usize) -> Result<Self, LocalModelError> {
        let config_path = dir.join(CONFIG_FILE);
        let config: BertConfig = serde_json::from_slice(&read(&config_path)?)
            .map_err(|source| LocalModelError::Config { path: config_path, source })?;

        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let tokenizer_error = |source: BoxError| LocalModelError::Tokenizer { path: tokenizer_path.clone(), source };
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?).map_err(tokenizer_error)?;
        // The file pads to a fixed length; batches are padded here, each to its longest text.
        let pad_id = tokenizer.get_padding().map_or(0, |padding| padding.pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..TruncationParams::default() }))
            .map_err(tokenizer_error)?;

        // Buffered rather than memory-mapped: mapping a file is `unsafe` (another process could
        // change it under us), and the workspace forbids unsafe code. The buffer is dropped once
        // the tensors are built, so the steady-state memory is the same.
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = read(&weights_path)?;
        let device = Device::Cpu;
        let weights_error = |source| LocalModelError::Weights { path: weights_path.clone(), source };
        let builder = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device).map_err(weights_error)?;
        let bert = BertModel::load(builder, &config).map_err(weights_error)?;
        Ok(Self { bert, tokenizer, pad_id, device })
    }

    /// Embeds `texts`, shortest first in batches of [`MAX_BATCH`], and returns the vectors in
    /// input order. Runs on the calling thread.
    fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|error| EmbedError::new("the local model can't tokenize the text").with_source(error))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&index| encodings[index].get_ids().len());
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); encodings.len()];
        for batch in order.chunks(MAX_BATCH) {
            let batch_encodings: Vec<&Encoding> = batch.iter().map(|&index| &encodings[index]).collect();
            let pooled = self
                .forward(&batch_encodings)
                .map_err(|error| EmbedError::new("the local model's inference failed").with_source(error))?;
            for (&index, mut vector) in batch.iter().zip(pooled) {
                normalize(&mut vector);
                vectors[index] = vector;
            }
        }
        Ok(vectors)
    }

    /// One forward pass over `encodings` (padded here to the longest), mean-pooled over each
    /// text's real tokens.
    fn forward(&self, encodings: &[&Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let rows = encodings.len();
        // Never zero: the tokenizer adds [CLS] and [SEP] to every text, even an empty one.
        let width = encodings.iter().map(|encoding| encoding.get_ids().len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for encoding in encodings {
            let real = encoding.get_ids();
            ids.extend_from_slice(real);
            ids.extend(std::iter::repeat_n(self.pad_id, width - real.len()));
            mask.extend(std::iter::repeat_n(1u32, real.len()));
            mask.extend(std::iter::repeat_n(0u32, width - real.len()));
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;

        // Mean over real tokens: sum(hidden * mask) / count(mask), per text.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1.0, f64::INFINITY)?;
        summed.broadcast_div(&counts)?.to_vec2::<f32>()
    }
}

/// A stable fingerprint of the model files: SHA-256 over the config, the tokenizer, the weights'
/// length and safetensors header (every tensor's name, type, shape and offset), and a
/// [`SAMPLE_BYTES`] sample of every [`SAMPLE_STRIDE`] of the weights themselves, read from
/// `weights` (`length` bytes long) without reading the rest.
///
/// Sampled rather than whole because hashing 90 MB takes seconds in a debug build; a model that
/// was trained differently differs in practically every weight, so the samples tell it apart.
fn fingerprint(
    config: &[u8],
    tokenizer: &[u8],
    weights: &mut (impl Read + Seek),
    length: u64,
) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    for part in [config, tokenizer] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(length.to_le_bytes());
    let header = read_header(weights, length)?;
    hasher.update(&header);
    let mut sample = vec![0u8; SAMPLE_BYTES];
    let mut at = header.len() as u64;
    while at < length {
        let take = usize::try_from(length - at).map_or(SAMPLE_BYTES, |left| left.min(SAMPLE_BYTES));
        weights.seek(SeekFrom::Start(at))?;
        weights.read_exact(&mut sample[..take])?;
        hasher.update(&sample[..take]);
        at += SAMPLE_STRIDE as u64;
    }
    Ok(hasher.finalize().iter().take(FINGERPRINT_BYTES).map(|byte| format!("{byte:02x}")).collect())
}

/// A safetensors file's start: the header's length (u64, little-endian) and the header, cut at
/// the end of the file (a short or odd file is read as far as it goes).
fn read_header(weights: &mut (impl Read + Seek), length: u64) -> std::io::Result<Vec<u8>> {
    weights.seek(SeekFrom::Start(0))?;
    let mut prefix = [0u8; 8];
    if length < 8 {
        let mut short = vec![0u8; usize::try_from(length).unwrap_or(0)];
        weights.read_exact(&mut short)?;
        return Ok(short);
    }
    weights.read_exact(&mut prefix)?;
    let end = u64::from_le_bytes(prefix).saturating_add(8).min(length);
    let mut header = prefix.to_vec();
    header.resize(usize::try_from(end).unwrap_or(8), 0);
    weights.read_exact(&mut header[8..])?;
    Ok(header)
}

/// Checks the weights file starts with a safetensors header that is a JSON object, so a file that
/// is not one fails at open rather than at the first text.
fn check_header(weights: &mut (impl Read + Seek), length: u64) -> Result<(), candle_core::Error> {
    let header = read_header(weights, length)?;
    let valid = header.len() > 8
        && matches!(serde_json::from_slice::<serde_json::Value>(&header[8..]), Ok(serde_json::Value::Object(_)));
    if valid { Ok(()) } else { Err(candle_core::Error::Msg("no safetensors header".to_owned())) }
}

/// Reads a whole file, naming it on failure.
fn read(path: &Path) -> Result<Vec<u8>, LocalModelError> {
    std::fs::read(path).map_err(|source| LocalModelError::Read { path: path.to_path_buf(), source })
}

/// The longest input in tokens: sentence-transformers' `max_seq_length` when the directory has
/// its config, never more than the model's position table.
fn max_tokens(dir: &Path, config: &BertConfig) -> Result<usize, LocalModelError> {
    let limit = config.max_position_embeddings.max(1);
    let path = dir.join(SENTENCE_CONFIG_FILE);
    if !path.is_file() {
        return Ok(limit);
    }
    let bytes = read(&path)?;
    let sentence: SentenceConfig =
        serde_json::from_slice(&bytes).map_err(|source| LocalModelError::Config { path, source })?;
    Ok(sentence.max_seq_length.map_or(limit, |length| length.clamp(1, limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_covers_header_and_sampled_weights_but_not_unsampled_bytes() {
        let fingerprint = |config: &[u8], tokenizer: &[u8], weights: &[u8]| {
            super::fingerprint(config, tokenizer, &mut std::io::Cursor::new(weights), weights.len() as u64).unwrap()
        };
        let mut weights = 16u64.to_le_bytes().to_vec();
        weights.extend_from_slice(b"{\"a\":\"header\"} ");
        weights.resize(3 * SAMPLE_STRIDE, 7);
        let base = fingerprint(b"config", b"tokenizer", &weights);
        assert_eq!(base.len(), 2 * FINGERPRINT_BYTES);
        assert_eq!(base, fingerprint(b"config", b"tokenizer", &weights), "stable");
        assert_ne!(base, fingerprint(b"config2", b"tokenizer", &weights));
        assert_ne!(base, fingerprint(b"config", b"tokenizer2", &weights));
        let mut header = weights.clone();
        header[10] = b'b';
        assert_ne!(base, fingerprint(b"config", b"tokenizer", &header));
        let mut sampled = weights.clone();
        sampled[24 + SAMPLE_STRIDE + 5] = 8;
        assert_ne!(base, fingerprint(b"config", b"tokenizer", &sampled));
        let mut longer = weights.clone();
        longer.push(7);
        assert_ne!(base, fingerprint(b"config", b"tokenizer", &longer));
        let mut unsampled = weights;
        unsampled[24 + SAMPLE_BYTES + 5] = 8;
        assert_eq!(base, fingerprint(b"config", b"tokenizer", &unsampled), "only samples are hashed");
        assert_eq!(fingerprint(b"", b"", b"").len(), 2 * FINGERPRINT_BYTES, "a short file is not an error");
    }
}

//! The decoder the local model runs: the llama-family transformer of the `llama` and `qwen2`
//! GGUF architectures, on candle's tensors and quantized matrix products.
//!
//! Two things set it apart from the ready-made models of `candle-transformers`:
//!
//! - **The token embeddings stay quantized.** A prompt's rows are dequantized as its tokens are
//!   read. Dequantizing the whole table at load, as candle's models do, costs
//!   `vocabulary × width × 4` bytes: 108 MiB for SmolLM2-135M's 49,152 × 576, more than the
//!   whole 94 MiB file.
//! - **The attention cache outlives a request.** [`Transformer::reuse_prefix`] keeps the keys and
//!   values of the longest prefix a new prompt shares with the tokens the cache holds. A channel's
//!   system prompt is stable and its history only grows, so the next turn of a conversation reads
//!   only what is new since the last one (its message, and the answer as re-tokenized).

use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

use super::gguf::Architecture;

/// The shape of the attention heads.
#[derive(Debug, Clone, Copy)]
struct Heads {
    /// Query heads.
    queries: usize,
    /// Key and value heads (fewer than `queries` with grouped-query attention).
    keys: usize,
    /// The width of one head.
    width: usize,
}

/// A matrix product with an optional bias (qwen2's query, key and value projections have one).
struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

/// Rotary position embeddings: the cosines and sines of every position up to the context length.
struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// llama's GGUF files rotate adjacent pairs `(2i, 2i+1)`; qwen2's the two halves `(i, i + w/2)`.
    interleaved: bool,
}

impl Rope {
    fn new(width: usize, base: f32, positions: usize, interleaved: bool) -> Result<Self> {
        let frequencies: Vec<f32> = (0..width / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / width as f32)).collect();
        let angles: Vec<f32> = (0..positions).flat_map(|p| frequencies.iter().map(move |f| p as f32 * f)).collect();
        let angles = Tensor::from_vec(angles, (positions, width / 2), &Device::Cpu)?;
        Ok(Self { cos: angles.cos()?, sin: angles.sin()?, interleaved })
    }

    /// Rotates `x` (`[batch, heads, len, width]`), whose first row is at `position`.
    fn apply(&self, x: &Tensor, position: usize) -> Result<Tensor> {
        let (_, _, len, _) = x.dims4()?;
        let cos = self.cos.narrow(0, position, len)?;
        let sin = self.sin.narrow(0, position, len)?;
        let x = x.contiguous()?;
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        }
    }

    fn positions(&self) -> usize {
        self.cos.dims()[0]
    }
}

/// One transformer block and its attention cache.
struct Block {
    attention_norm: RmsNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: QMatMul,
    ffn_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    /// The keys and values of the tokens read so far, `[1, key heads, tokens, width]` each.
    cache: Option<(Tensor, Tensor)>,
}

impl Block {
    /// `x` (`[1, len, model width]`) through the block; its tokens start at `position`.
    fn forward(
        &mut self,
        x: &Tensor,
        position: usize,
        mask: Option<&Tensor>,
        rope: &Rope,
        heads: Heads,
    ) -> Result<Tensor> {
        let (batch, len, _) = x.dims3()?;
        let split = |t: Tensor, count: usize| t.reshape((batch, len, count, heads.width))?.transpose(1, 2);

        let h = self.attention_norm.forward(x)?;
        let q = rope.apply(&split(self.query.forward(&h)?, heads.queries)?, position)?;
        let k = rope.apply(&split(self.key.forward(&h)?, heads.keys)?, position)?;
        let v = split(self.value.forward(&h)?, heads.keys)?.contiguous()?;
        let (k, v) = match self.cache.take() {
            Some((cached_k, cached_v)) => (Tensor::cat(&[&cached_k, &k], 2)?, Tensor::cat(&[&cached_v, &v], 2)?),
            None => (k, v),
        };
        self.cache = Some((k.clone(), v.clone()));

        let group = heads.queries / heads.keys;
        let k = candle_transformers::utils::repeat_kv(k, group)?;
        let v = candle_transformers::utils::repeat_kv(v, group)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (heads.width as f64).sqrt()))?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let attention = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let attention = attention.transpose(1, 2)?.reshape((batch, len, heads.queries * heads.width))?;
        let x = (x + self.attention_output.forward(&attention)?)?;

        let h = self.ffn_norm.forward(&x)?;
        let feed_forward = (self.gate.forward(&h)?.silu()? * self.up.forward(&h)?)?;
        x + self.down.forward(&feed_forward)?
    }

    /// Keeps the first `tokens` of the cache.
    fn truncate_cache(&mut self, tokens: usize) -> Result<()> {
        if let Some((k, v)) = self.cache.take() {
            self.cache = Some((k.narrow(2, 0, tokens)?, v.narrow(2, 0, tokens)?));
        }
        Ok(())
    }
}

/// A loaded decoder with its attention cache (see the module docs).
pub(crate) struct Transformer {
    /// `[vocabulary, width]`, quantized; also the output projection when the file ties them.
    embeddings: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: QMatMul,
    rope: Rope,
    heads: Heads,
    /// The tokens whose keys and values the blocks' caches hold, in order.
    cached: Vec<u32>,
}

impl Transformer {
    /// Reads the weights `content` describes from `reader`. `context_length` bounds the
    /// positions it can read.
    pub(crate) fn from_gguf<R: std::io::Read + std::io::Seek>(
        architecture: Architecture,
        content: &Content,
        reader: &mut R,
        context_length: usize,
    ) -> Result<Self> {
        let key = |name: &str| format!("{}.{name}", architecture.key());
        let number = |name: &str| -> Result<usize> {
            match content.metadata.get(&key(name)) {
                Some(value) => value.to_u32().map(|n| n as usize),
                None => candle_core::bail!("its metadata has no {}", key(name)),
            }
        };
        let queries = number("attention.head_count")?;
        let keys = number("attention.head_count_kv").or_else(|_| number("attention.head_count"))?;
        let model_width = number("embedding_length")?;
        let block_count = number("block_count")?;
        if queries == 0 || keys == 0 || queries % keys != 0 || model_width % queries != 0 {
            candle_core::bail!(
                "its attention shape is inconsistent ({queries} heads, {keys} key heads, width {model_width})"
            );
        }
        let heads = Heads { queries, keys, width: model_width / queries };
        if let Ok(rotated) = number("rope.dimension_count")
            && rotated != heads.width
        {
            candle_core::bail!(
                "it rotates {rotated} of each head's {} dimensions, and only whole heads are supported",
                heads.width
            );
        }
        let epsilon = match content.metadata.get(&key("attention.layer_norm_rms_epsilon")) {
            Some(value) => f64::from(value.to_f32()?),
            None => 1e-5,
        };
        let base = content.metadata.get(&key("rope.freq_base")).and_then(|value: &Value| value.to_f32().ok());
        let rope = Rope::new(
            heads.width,
            base.unwrap_or(10_000.0),
            context_length.max(1),
            architecture == Architecture::Llama,
        )?;

        let mut weights = Weights { content, reader };
        let embeddings = Arc::new(weights.tensor("token_embd.weight")?);
        let norm = weights.norm("output_norm.weight", epsilon)?;
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => weights.matrix("output.weight")?,
            false => QMatMul::from_arc(Arc::clone(&embeddings))?,
        };
        let mut blocks = Vec::with_capacity(block_count);
        for index in 0..block_count {
            let name = |part: &str| format!("blk.{index}.{part}.weight");
            blocks.push(Block {
                attention_norm: weights.norm(&name("attn_norm"), epsilon)?,
                query: weights.linear(&format!("blk.{index}.attn_q"))?,
                key: weights.linear(&format!("blk.{index}.attn_k"))?,
                value: weights.linear(&format!("blk.{index}.attn_v"))?,
                attention_output: weights.matrix(&name("attn_output"))?,
                ffn_norm: weights.norm(&name("ffn_norm"), epsilon)?,
                gate: weights.matrix(&name("ffn_gate"))?,
                up: weights.matrix(&name("ffn_up"))?,
                down: weights.matrix(&name("ffn_down"))?,
                cache: None,
            });
        }
        Ok(Self { embeddings, blocks, norm, output, rope, heads, cached: Vec::new() })
    }

    /// Reads `tokens` after the ones the cache holds and returns the logits of the token that
    /// follows them (`[vocabulary]`). On an error the cache is emptied, so it never holds a
    /// partly read chunk.
    pub(crate) fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let result = self.read(tokens);
        match result {
            Ok(logits) => {
                self.cached.extend_from_slice(tokens);
                Ok(logits)
            }
            Err(error) => {
                self.clear();
                Err(error)
            }
        }
    }

    fn read(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let position = self.cached.len();
        let len = tokens.len();
        if len == 0 {
            candle_core::bail!("no tokens to read");
        }
        if position + len > self.rope.positions() {
            candle_core::bail!(
                "{} tokens are more than its context of {} tokens",
                position + len,
                self.rope.positions()
            );
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self.embeddings.embedding(&ids)?.unsqueeze(0)?;
        let mask = if len > 1 { Some(causal_mask(len, position)?) } else { None };
        for block in &mut self.blocks {
            x = block.forward(&x, position, mask.as_ref(), &self.rope, self.heads)?;
        }
        let last = self.norm.forward(&x)?.narrow(1, len - 1, 1)?.squeeze(1)?;
        self.output.forward(&last)?.squeeze(0)
    }

    /// Keeps the cache of the longest prefix `prompt` shares with the tokens it holds, up to all
    /// of `prompt` but its last token (whose logits the caller needs), and returns that prefix's
    /// length: the caller reads `prompt[length..]`.
    pub(crate) fn reuse_prefix(&mut self, prompt: &[u32]) -> Result<usize> {
        let shared = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let shared = shared.min(prompt.len().saturating_sub(1));
        if shared == 0 {
            self.clear();
            return Ok(0);
        }
        if shared < self.cached.len() {
            for block in &mut self.blocks {
                if let Err(error) = block.truncate_cache(shared) {
                    self.clear();
                    return Err(error);
                }
            }
            self.cached.truncate(shared);
        }
        Ok(shared)
    }

    /// Empties the attention cache.
    pub(crate) fn clear(&mut self) {
        for block in &mut self.blocks {
            block.cache = None;
        }
        self.cached.clear();
    }

    /// How many tokens the attention cache holds.
    #[cfg(test)]
    pub(crate) fn cached_tokens(&self) -> usize {
        self.cached.len()
    }

    /// The bytes its weights take in memory (quantized as in the file, the norms and biases in
    /// f32), without the attention cache.
    #[cfg(test)]
    pub(crate) fn weight_bytes(&self) -> usize {
        let matrix = |m: &QMatMul| match m {
            QMatMul::QTensor(q) if Arc::ptr_eq(q, &self.embeddings) => 0,
            QMatMul::QTensor(q) => q.storage_size_in_bytes(),
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.elem_count() * t.dtype().size_in_bytes(),
        };
        let linear = |l: &Linear| matrix(&l.weight) + l.bias.as_ref().map_or(0, |b| b.elem_count() * 4);
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                linear(&b.query)
                    + linear(&b.key)
                    + linear(&b.value)
                    + [&b.attention_output, &b.gate, &b.up, &b.down].into_iter().map(matrix).sum::<usize>()
            })
            .sum();
        self.embeddings.storage_size_in_bytes() + matrix(&self.output) + blocks
    }
}

/// Reads named tensors from a GGUF file.
struct Weights<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
}

impl<R: std::io::Read + std::io::Seek> Weights<'_, R> {
    fn tensor(&mut self, name: &str) -> Result<QTensor> {
        self.content.tensor(self.reader, name, &Device::Cpu)
    }

    fn matrix(&mut self, name: &str) -> Result<QMatMul> {
        QMatMul::from_qtensor(self.tensor(name)?)
    }

    fn norm(&mut self, name: &str, epsilon: f64) -> Result<RmsNorm> {
        RmsNorm::from_qtensor(self.tensor(name)?, epsilon)
    }

    /// `{prefix}.weight`, and `{prefix}.bias` when the file has one.
    fn linear(&mut self, prefix: &str) -> Result<Linear> {
        let weight = self.matrix(&format!("{prefix}.weight"))?;
        let bias_name = format!("{prefix}.bias");
        let bias = match self.content.tensor_infos.contains_key(&bias_name) {
            true => Some(self.tensor(&bias_name)?.dequantize(&Device::Cpu)?),
            false => None,
        };
        Ok(Linear { weight, bias })
    }
}

/// The additive mask of `len` queries starting at `position` over `position + len` keys: a query
/// sees the keys up to its own position (`0`), not those after it (`-inf`).
fn causal_mask(len: usize, position: usize) -> Result<Tensor> {
    let keys = position + len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|query| (0..keys).map(move |key| if key > position + query { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (len, keys), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use candle_core::DType;
    use candle_core::quantized::{GgmlDType, gguf_file};
    use candle_transformers::models::{quantized_llama, quantized_qwen2};

    use super::*;

    const VOCABULARY: usize = 96;
    const WIDTH: usize = 64;
    const FEED_FORWARD: usize = 128;
    const BLOCKS: usize = 2;

    /// A small model of random weights in a GGUF file: 4 query heads sharing 2 key heads, Q8_0
    /// matrices. `qwen2` gets its biases and an output projection of its own; `llama` ties the
    /// output to the token embeddings, as SmolLM2 does.
    fn tiny_model(dir: &Path, architecture: Architecture) -> PathBuf {
        let arch = architecture.key();
        let random = |shape: &[usize], scale: f64| {
            Tensor::randn(0f32, 1.0, shape, &Device::Cpu).and_then(|t| t * scale).unwrap()
        };
        let matrix =
            |rows: usize, columns: usize| QTensor::quantize(&random(&[rows, columns], 0.2), GgmlDType::Q8_0).unwrap();
        let vector = |len: usize, around: f64| {
            QTensor::quantize(&(random(&[len], 0.1) + around).unwrap(), GgmlDType::F32).unwrap()
        };
        let mut tensors: Vec<(String, QTensor)> = vec![
            ("token_embd.weight".into(), matrix(VOCABULARY, WIDTH)),
            ("output_norm.weight".into(), vector(WIDTH, 1.0)),
        ];
        if architecture == Architecture::Qwen2 {
            tensors.push(("output.weight".into(), matrix(VOCABULARY, WIDTH)));
        }
        for index in 0..BLOCKS {
            let name = |part: &str| format!("blk.{index}.{part}");
            tensors.extend([
                (name("attn_norm.weight"), vector(WIDTH, 1.0)),
                (name("attn_q.weight"), matrix(WIDTH, WIDTH)),
                (name("attn_k.weight"), matrix(WIDTH / 2, WIDTH)),
                (name("attn_v.weight"), matrix(WIDTH / 2, WIDTH)),
                (name("attn_output.weight"), matrix(WIDTH, WIDTH)),
                (name("ffn_norm.weight"), vector(WIDTH, 1.0)),
                (name("ffn_gate.weight"), matrix(FEED_FORWARD, WIDTH)),
                (name("ffn_up.weight"), matrix(FEED_FORWARD, WIDTH)),
                (name("ffn_down.weight"), matrix(WIDTH, FEED_FORWARD)),
            ]);
            if architecture == Architecture::Qwen2 {
                tensors.extend([
                    (name("attn_q.bias"), vector(WIDTH, 0.0)),
                    (name("attn_k.bias"), vector(WIDTH / 2, 0.0)),
                    (name("attn_v.bias"), vector(WIDTH / 2, 0.0)),
                ]);
            }
        }
        let metadata: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(arch.into())),
            (format!("{arch}.context_length"), Value::U32(256)),
            (format!("{arch}.embedding_length"), Value::U32(WIDTH as u32)),
            (format!("{arch}.feed_forward_length"), Value::U32(FEED_FORWARD as u32)),
            (format!("{arch}.block_count"), Value::U32(BLOCKS as u32)),
            (format!("{arch}.attention.head_count"), Value::U32(4)),
            (format!("{arch}.attention.head_count_kv"), Value::U32(2)),
            (format!("{arch}.rope.dimension_count"), Value::U32(16)),
            (format!("{arch}.rope.freq_base"), Value::F32(10_000.0)),
            (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        ];
        let path = dir.join(format!("tiny-{arch}.gguf"));
        let mut file = std::fs::File::create(&path).unwrap();
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(key, value)| (key.as_str(), value)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)).collect();
        gguf_file::write(&mut file, &metadata, &tensors).unwrap();
        path
    }

    fn content(path: &Path) -> (Content, std::io::BufReader<std::fs::File>) {
        let mut reader = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        (Content::read(&mut reader).unwrap(), reader)
    }

    fn ours(path: &Path, architecture: Architecture, context: usize) -> Transformer {
        let (content, mut reader) = content(path);
        Transformer::from_gguf(architecture, &content, &mut reader, context).unwrap()
    }

    /// candle's own model of the architecture, as the reference.
    fn reference(path: &Path, architecture: Architecture) -> impl FnMut(&[u32], usize) -> Tensor {
        let (content, mut reader) = content(path);
        enum Model {
            Llama(quantized_llama::ModelWeights),
            Qwen2(quantized_qwen2::ModelWeights),
        }
        let mut model = match architecture {
            Architecture::Llama => {
                Model::Llama(quantized_llama::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap())
            }
            Architecture::Qwen2 => {
                Model::Qwen2(quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap())
            }
        };
        move |tokens, position| {
            let input = Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let logits = match &mut model {
                Model::Llama(model) => model.forward(&input, position),
                Model::Qwen2(model) => model.forward(&input, position),
            };
            logits.unwrap().squeeze(0).unwrap()
        }
    }

    fn largest_difference(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    fn argmax(logits: &Tensor) -> u32 {
        logits.argmax(0).unwrap().to_scalar::<u32>().unwrap()
    }

    /// A prompt read in two chunks, then three tokens one at a time, against candle's model.
    fn matches_the_reference(architecture: Architecture) {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_model(dir.path(), architecture);
        let mut model = ours(&path, architecture, 256);
        let mut reference = reference(&path, architecture);
        let prompt = [5, 17, 3, 88, 42, 9, 60];
        let steps: [(&[u32], usize); 5] = [(&prompt[..4], 0), (&prompt[4..], 4), (&[11], 7), (&[95], 8), (&[0], 9)];
        for (tokens, position) in steps {
            let ours = model.forward(tokens).unwrap();
            let theirs = reference(tokens, position);
            assert_eq!(ours.dims(), [VOCABULARY]);
            let difference = largest_difference(&ours, &theirs);
            assert!(difference < 1e-3, "{architecture:?} at {position}: logits differ by {difference}");
        }
        assert_eq!(model.cached_tokens(), 10);
    }

    #[test]
    fn llama_reads_as_candles_own_model_does() {
        matches_the_reference(Architecture::Llama);
    }

    #[test]
    fn qwen2_reads_as_candles_own_model_does() {
        matches_the_reference(Architecture::Qwen2);
    }

    #[test]
    fn a_reused_prefix_gives_the_logits_of_a_fresh_read() {
        let dir = tempfile::tempdir().unwrap();
        for architecture in [Architecture::Llama, Architecture::Qwen2] {
            let path = tiny_model(dir.path(), architecture);
            let mut model = ours(&path, architecture, 256);
            // A first turn: its prompt, then two answer tokens.
            let first = [1, 2, 3, 4, 5, 6, 7, 8];
            model.forward(&first).unwrap();
            model.forward(&[30]).unwrap();
            model.forward(&[31]).unwrap();

            // The next prompt shares the first six tokens, then goes its own way.
            let next = [1, 2, 3, 4, 5, 6, 70, 71, 72];
            assert_eq!(model.reuse_prefix(&next).unwrap(), 6);
            assert_eq!(model.cached_tokens(), 6);
            let reused = model.forward(&next[6..]).unwrap();
            let fresh = ours(&path, architecture, 256).forward(&next).unwrap();
            let difference = largest_difference(&reused, &fresh);
            assert!(difference < 1e-4, "{architecture:?}: logits differ by {difference}");

            // The same prompt again: all but its last token are reused (its logits are needed).
            assert_eq!(model.reuse_prefix(&next).unwrap(), next.len() - 1);
            let again = model.forward(&next[next.len() - 1..]).unwrap();
            assert!(largest_difference(&again, &fresh) < 1e-4);

            // Nothing shared: the cache is emptied.
            assert_eq!(model.reuse_prefix(&[9, 9, 9]).unwrap(), 0);
            assert_eq!(model.cached_tokens(), 0);
        }
    }

    /// Reading past the context, or a token outside the vocabulary, is an error (not a panic)
    /// that empties the cache, and the model reads again afterwards.
    #[test]
    fn a_failed_read_is_an_error_that_empties_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_model(dir.path(), Architecture::Llama);
        let mut model = ours(&path, Architecture::Llama, 8);
        let failures: [(&[u32], &str); 2] =
            [(&[7, 8, 9], "9 tokens are more than its context of 8 tokens"), (&[1, VOCABULARY as u32], "out of range")];
        for (tokens, expected) in failures {
            model.forward(&[1, 2, 3, 4, 5, 6]).unwrap();
            let error = model.forward(tokens).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert_eq!(model.cached_tokens(), 0);
        }
        model.forward(&[1, 2]).unwrap();
        assert_eq!(model.cached_tokens(), 2);
    }

    #[test]
    fn smollm2_reads_as_candles_own_model_does_in_less_memory_than_its_file() {
        let path = spacebot_testing::models::chat_model_file();
        let mut model = ours(&path, Architecture::Llama, 512);
        let file_size = std::fs::metadata(&path).unwrap().len() as usize;
        // Dequantized, the token embeddings alone would be 49,152 × 576 × 4 bytes = 108 MiB.
        assert!(
            model.weight_bytes() <= file_size,
            "the weights take {} bytes, the file {file_size}",
            model.weight_bytes()
        );
        let mut reference = reference(&path, Architecture::Llama);
        let (content, _) = content(&path);
        let tokenizer = super::super::gguf::tokenizer(&path, &content).unwrap();
        let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
        let prompt = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        let ours = model.forward(&prompt).unwrap();
        let theirs = reference(&prompt, 0);
        assert_eq!(ours.dtype(), DType::F32);
        assert_eq!(argmax(&ours), argmax(&theirs));
        let difference = largest_difference(&ours, &theirs);
        assert!(difference < 1e-2, "logits differ by {difference}");
        let next = argmax(&ours);
        let ours = model.forward(&[next]).unwrap();
        let theirs = reference(&[next], prompt.len());
        assert!(largest_difference(&ours, &theirs) < 1e-2);
    }
}

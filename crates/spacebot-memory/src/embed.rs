//! Embedders: text to vectors for similarity search, behind [`spacebot_core::Embedder`].
//!
//! - [`HashingEmbedder`]: dependency-free feature hashing of words and character trigrams. No
//!   model, no network, deterministic; catches lexical overlap and misspellings, not synonyms.
//!   The fallback when nothing better is configured, and what tests use.
//! - [`OpenAiEmbedder`]: any server speaking OpenAI's `POST /v1/embeddings`.
//! - `LocalEmbedder` (cargo feature `local-embeddings`): a sentence-embedding model run in pure
//!   Rust with candle, from a local directory in the all-MiniLM-L6-v2 layout.
//!
//! Every vector a store keeps is L2-normalised ([`normalize`]), so cosine similarity is a dot
//! product.

mod hashing;
#[cfg(feature = "local-embeddings")]
mod local;
mod openai;

pub use hashing::HashingEmbedder;
#[cfg(feature = "local-embeddings")]
pub use local::{LocalEmbedder, LocalModelError};
pub use openai::OpenAiEmbedder;

/// The files a `LocalEmbedder` loads from its model directory. Defined whether or not the
/// `local-embeddings` feature is on, so a configuration can be checked without the model code.
pub const LOCAL_MODEL_FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// Scales `vector` to unit length in place; a zero vector stays zero.
pub fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in vector.iter_mut() {
            *x /= norm;
        }
    }
}

/// The dot product of two equally long vectors (the cosine similarity of unit vectors).
///
/// Sixteen independent accumulators let the compiler keep several SIMD additions in flight.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_naive_sum_for_any_length() {
        for len in [0usize, 1, 7, 8, 9, 384, 385] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-3, "len {len}: {} vs {naive}", dot(&a, &b));
        }
    }

    #[test]
    fn normalize_gives_unit_vectors_and_leaves_zero_alone() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 4];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 4]);
    }
}

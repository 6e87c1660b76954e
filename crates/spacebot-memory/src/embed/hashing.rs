//! [`HashingEmbedder`]: feature hashing of words and character trigrams into a fixed-length
//! vector. No dependencies and no model files; similarity reflects shared words and word pieces.

use async_trait::async_trait;

use spacebot_core::{EmbedError, Embedder};

use crate::embed::normalize;

/// Weight of a whole word; trigrams of the word share the rest.
const WORD_WEIGHT: f32 = 1.0;
/// Weight of one character trigram of a word.
const TRIGRAM_WEIGHT: f32 = 0.35;

/// A deterministic, dependency-free embedder (see the module docs).
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
    model_id: String,
}

impl HashingEmbedder {
    /// An embedder producing vectors of `dimensions` floats (at least 1).
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(1);
        Self { dimensions, model_id: format!("hashing-v1-{dimensions}") }
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimensions];
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
            let word = word.to_lowercase();
            self.add(&mut vector, word.as_bytes(), WORD_WEIGHT);
            let padded: Vec<char> = std::iter::once('^').chain(word.chars()).chain(std::iter::once('$')).collect();
            for window in padded.windows(3) {
                let trigram: String = window.iter().collect();
                self.add(&mut vector, trigram.as_bytes(), TRIGRAM_WEIGHT);
            }
        }
        normalize(&mut vector);
        vector
    }

    fn add(&self, vector: &mut [f32], feature: &[u8], weight: f32) {
        let hash = fnv1a(feature);
        // The dimension count fits in u64, and the remainder is below it, so it fits in usize.
        let bucket = (hash % self.dimensions as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[bucket] += sign * weight;
    }
}

impl Default for HashingEmbedder {
    /// 384 dimensions, the size of the common small sentence-embedding models.
    fn default() -> Self {
        Self::new(384)
    }
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|text| self.embed_one(text)).collect())
    }
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases (unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::dot;

    #[tokio::test]
    async fn vectors_are_deterministic_unit_length_and_sized() {
        let embedder = HashingEmbedder::new(64);
        let vectors = embedder.embed(&["Alice likes tea".to_owned(), "Alice likes tea".to_owned()]).await.unwrap();
        assert_eq!(vectors[0], vectors[1]);
        assert_eq!(vectors[0].len(), 64);
        assert!((dot(&vectors[0], &vectors[0]) - 1.0).abs() < 1e-5);
        assert_eq!(embedder.model_id(), "hashing-v1-64");
    }

    #[test]
    fn shared_words_make_texts_similar() {
        let embedder = HashingEmbedder::default();
        let tea = embedder.embed_one("Alice drinks green tea every morning");
        let tea_again = embedder.embed_one("Every morning Alice drinks green tea.");
        let unrelated = embedder.embed_one("The quarterly revenue report is due Friday");
        assert!(dot(&tea, &tea_again) > 0.95, "{}", dot(&tea, &tea_again));
        assert!(dot(&tea, &unrelated) < 0.3, "{}", dot(&tea, &unrelated));
    }

    #[test]
    fn fnv_is_the_reference_function() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

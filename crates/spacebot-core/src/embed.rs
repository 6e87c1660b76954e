//! The embedder contract: text in, vectors out, for similarity search.

use async_trait::async_trait;

use crate::error::EmbedError;

/// Turns text into vectors for similarity search.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// A stable name for the model and its settings; when it changes, stored vectors are rebuilt.
    fn model_id(&self) -> &str;

    /// The vector length.
    fn dimensions(&self) -> usize;

    /// One vector per input text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

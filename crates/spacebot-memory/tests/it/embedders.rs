//! The OpenAI-compatible embeddings client against a local fake server, and recall through it.

use std::sync::Arc;

use spacebot_core::{Embedder, MemoryStore, MemoryType, NewMemory, RecallQuery};
use spacebot_memory::{MemoryGraph, OpenAiEmbedder, dot};
use spacebot_testing::FakeEmbeddingsServer;

use crate::memory_support::shared;

#[tokio::test]
async fn the_client_sends_the_model_and_key_and_orders_vectors_by_index() {
    let server = FakeEmbeddingsServer::start(16).await;
    let embedder = OpenAiEmbedder::new(server.base_url(), "text-embedding-test", 16).with_api_key("sk-test");
    let texts = vec!["alpha beta".to_owned(), "gamma".to_owned()];
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 2);
    let mut expected = FakeEmbeddingsServer::vector_for("gamma", 16);
    spacebot_memory::normalize(&mut expected);
    assert_eq!(vectors[1], expected, "the second vector is the second input's, although it came first");
    assert!((dot(&vectors[0], &vectors[0]) - 1.0).abs() < 1e-5, "vectors are normalised");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].model, "text-embedding-test");
    assert_eq!(requests[0].input, texts);
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(embedder.model_id(), "openai:text-embedding-test:16");
}

#[tokio::test]
async fn server_errors_and_wrong_dimensions_are_errors() {
    let server = FakeEmbeddingsServer::start(8).await;
    server.fail_next(500);
    let embedder = OpenAiEmbedder::new(server.base_url(), "m", 8);
    let error = embedder.embed(&["x".to_owned()]).await.unwrap_err();
    assert!(error.to_string().contains("500"), "{error}");
    let wrong = OpenAiEmbedder::new(server.base_url(), "m", 4);
    let error = wrong.embed(&["x".to_owned()]).await.unwrap_err();
    assert!(error.to_string().contains("expected vectors of 4"), "{error}");
}

/// Anchor behaviour: a save whose embedding fails leaves nothing behind.
#[tokio::test]
async fn a_save_whose_embedding_fails_stores_nothing() {
    let server = FakeEmbeddingsServer::start(32).await;
    let store = MemoryGraph::open_in_memory(Arc::new(OpenAiEmbedder::new(server.base_url(), "m", 32))).await.unwrap();
    server.fail_next(503);
    let memory = NewMemory::new(MemoryType::Fact, "The on-call rota is in PagerDuty", shared());
    assert!(store.save(memory.clone()).await.is_err());
    assert!(store.list(spacebot_core::ListQuery::new("main")).await.unwrap().is_empty());
    store.save(memory).await.unwrap();
    let hits = store.recall(RecallQuery::new("main", "who is on call? PagerDuty rota")).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].vector_rank, Some(1));
}

/// An embeddings endpoint that fails on a recall's query costs the vector list, not the recall:
/// the memory is found by its words, and the next recall uses vectors again.
#[tokio::test]
async fn a_recall_whose_query_embedding_fails_falls_back_to_words() {
    let server = FakeEmbeddingsServer::start(32).await;
    let store = MemoryGraph::open_in_memory(Arc::new(OpenAiEmbedder::new(server.base_url(), "m", 32))).await.unwrap();
    let saved =
        store.save(NewMemory::new(MemoryType::Fact, "The on-call rota is in PagerDuty", shared())).await.unwrap();
    server.fail_next(503);
    let hits = store.recall(RecallQuery::new("main", "where is the rota kept?")).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].memory.id, saved.id);
    assert_eq!((hits[0].text_rank, hits[0].vector_rank), (Some(1), None), "found by words only");
    let hits = store.recall(RecallQuery::new("main", "where is the rota kept?")).await.unwrap();
    assert_eq!((hits[0].text_rank, hits[0].vector_rank), (Some(1), Some(1)), "vectors are back");
}

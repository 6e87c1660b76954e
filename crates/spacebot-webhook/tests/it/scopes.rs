//! Scoped API tokens over the real router: each scope opens exactly its routes, for its agents,
//! speaking as its senders; the admin token opens everything; a wrong token nothing.

use std::sync::Arc;

use serde_json::json;

use spacebot_core::{AgentId, MemoryScope, MemoryStore, MemoryType, NewMemory};
use spacebot_webhook::{ApiConfig, OpenAiAdapter, Scope, ScopedToken, ServeLimits};

use crate::support::{RawResponse, Served, SilentEngine, exchange};

const ADMIN: &str = "admin-token-123";
const WEBHOOK: &str = "webhook-token-123";
const READ: &str = "read-token-12345";

async fn served() -> Served {
    let api = ApiConfig::default()
        .with_token(Some(ADMIN.to_owned()))
        .with_scoped_tokens([
            ScopedToken::new("ci", WEBHOOK, [Scope::Webhook])
                .with_agents([AgentId::new("main")])
                .with_senders(["ci-bot".to_owned()]),
            ScopedToken::new("dashboard", READ, [Scope::Read]),
        ])
        .with_openai(OpenAiAdapter::new())
        .with_memories([(AgentId::new("main"), memory().await)])
        .with_effective_config(json!({ "api": { "token": "[redacted]" } }));
    Served::start_with(ServeLimits::default(), Arc::new(SilentEngine), api).await
}

/// The agent's memory: a private memory of Alice's, which only an admin may search, and one of
/// Bob's linked to it.
async fn memory() -> Arc<dyn MemoryStore> {
    let memory = spacebot_testing::FakeMemory::new();
    let tea = NewMemory::new(MemoryType::Preference, "Alice likes green tea", MemoryScope::private_to("main", "alice"));
    let tea = memory.save(tea).await.expect("saved").id;
    let brew =
        NewMemory::new(MemoryType::Fact, "Bob brews the tea for standup", MemoryScope::private_to("main", "bob"))
            .with_edge(spacebot_core::NewEdge::new(tea, spacebot_core::RelationKind::RelatedTo));
    memory.save(brew).await.expect("saved");
    Arc::new(memory)
}

/// The contents of the memories a search as admin found, in order.
async fn found(served: &Served, query: &str) -> Vec<String> {
    let response = call(served, "GET", &format!("/api/agents/main/memories{query}"), ADMIN, None).await;
    assert_eq!(response.status, 200, "{query}: {response:?}");
    let hits = response.json()["hits"].as_array().cloned().unwrap_or_default();
    hits.iter().map(|hit| hit["memory"]["content"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn memories_are_filtered_by_type_and_person_and_one_is_shown_with_its_edges() {
    let served = served().await;
    let (alice, bob) = ("Alice likes green tea", "Bob brews the tea for standup");
    assert_eq!(found(&served, "?q=tea").await, [alice, bob]);
    assert_eq!(found(&served, "?q=tea&type=fact").await, [bob]);
    assert_eq!(found(&served, "?q=tea&type=fact,%20preference&person=alice").await, [alice]);
    assert_eq!(found(&served, "?q=tea&person=carol").await, Vec::<String>::new());
    // Without a query: the newest first, filtered the same way.
    assert_eq!(found(&served, "").await, [bob, alice]);
    assert_eq!(found(&served, "?type=preference").await, [alice]);
    assert_eq!(found(&served, "?person=bob&limit=1").await, [bob]);
    let bad = call(&served, "GET", "/api/agents/main/memories?type=gossip", ADMIN, None).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.json()["error"].as_str().is_some_and(|e| e.contains("unknown memory type `gossip`")), "{bad:?}");

    let listed = call(&served, "GET", "/api/agents/main/memories?person=bob", ADMIN, None).await;
    let id = listed.json()["hits"][0]["memory"]["id"].as_str().expect("an id").to_owned();
    let path = format!("/api/agents/main/memories/{id}");
    assert_eq!(call(&served, "GET", &path, READ, None).await.status, 403);
    let shown = call(&served, "GET", &path, ADMIN, None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let shown = shown.json();
    assert_eq!(shown["memory"]["content"], bob);
    let edges = shown["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{shown:#}");
    assert_eq!((edges[0]["kind"].as_str(), edges[0]["source"].as_str()), (Some("related_to"), Some(id.as_str())));
    assert_eq!(edges[0]["other"]["content"], alice);
    let missing = call(&served, "GET", "/api/agents/main/memories/no-such-id", ADMIN, None).await;
    assert_eq!(missing.status, 404, "{missing:?}");
    served.stop(std::time::Duration::from_secs(5)).await;
}

async fn call(served: &Served, method: &str, path: &str, token: &str, body: Option<serde_json::Value>) -> RawResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = served.connect().await;
    exchange(&mut stream, &request).await
}

fn message(sender: &str) -> Option<serde_json::Value> {
    Some(json!({ "conversation": "c1", "sender": sender, "text": "hello" }))
}

#[tokio::test]
async fn a_webhook_token_sends_as_its_sender_and_reads_nothing() {
    let served = served().await;
    let sent = call(&served, "POST", "/webhook/main", WEBHOOK, message("ci-bot")).await;
    assert_eq!(sent.status, 202, "{sent:?}");

    let as_alice = call(&served, "POST", "/webhook/main", WEBHOOK, message("alice")).await;
    assert_eq!(as_alice.status, 403, "{as_alice:?}");
    assert!(as_alice.json()["error"].as_str().is_some_and(|e| e.contains("may not speak as 'alice'")));

    for path in [
        "/api/agents/main/conversations/webhook:c1/messages",
        "/api/status",
        "/api/events",
        "/metrics",
        "/api/usage",
        "/api/agents/main/memories?q=tea",
    ] {
        let refused = call(&served, "GET", path, WEBHOOK, None).await;
        assert_eq!(refused.status, 403, "{path}: {refused:?}");
        assert!(refused.json()["error"].as_str().is_some_and(|e| e.contains("token `ci`")), "{path}: {refused:?}");
    }
    let chat = json!({ "model": "main", "user": "alice", "messages": [{ "role": "user", "content": "hi" }] });
    let refused = call(&served, "POST", "/v1/chat/completions", WEBHOOK, Some(chat)).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.json()["error"]["type"], "permission_error");
    served.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_read_token_reads_but_cannot_send_and_the_admin_token_does_everything() {
    let served = served().await;
    assert_eq!(call(&served, "POST", "/webhook/main", ADMIN, message("alice")).await.status, 202);
    let read = call(&served, "GET", "/api/agents/main/conversations/webhook:c1/messages", READ, None).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.json()[0]["text"], "hello");
    assert_eq!(call(&served, "POST", "/webhook/main", READ, message("alice")).await.status, 403);
    assert_eq!(call(&served, "GET", "/api/status", READ, None).await.status, 403);
    // Memory search reads every person's private memories: admin only.
    assert_eq!(call(&served, "GET", "/api/agents/main/memories?q=tea", READ, None).await.status, 403);
    let found = call(&served, "GET", "/api/agents/main/memories?q=green%20tea&limit=5", ADMIN, None).await;
    assert_eq!(found.status, 200, "{found:?}");
    assert_eq!(found.json()["hits"][0]["memory"]["content"], "Alice likes green tea");
    let bad = call(&served, "GET", "/api/agents/main/memories?q=tea&limit=0", ADMIN, None).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(call(&served, "GET", "/api/agents/ops/memories?q=tea", ADMIN, None).await.status, 404);
    for path in ["/api/status", "/api/usage", "/api/agents/main/conversations/webhook:c1/messages"] {
        let allowed = call(&served, "GET", path, ADMIN, None).await;
        assert_ne!(allowed.status, 403, "{path}: {allowed:?}");
        assert_ne!(allowed.status, 401, "{path}: {allowed:?}");
    }
    // The effective config is daemon-wide: admin only.
    assert_eq!(call(&served, "GET", "/api/config", READ, None).await.status, 403);
    let config = call(&served, "GET", "/api/config", ADMIN, None).await;
    assert_eq!(config.status, 200, "{config:?}");
    assert_eq!(config.json(), json!({ "api": { "token": "[redacted]" } }));
    let wrong = call(&served, "GET", "/api/status", "read-token-1234", None).await;
    assert_eq!(wrong.status, 401);
    served.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn only_an_admin_forgets_a_memory_and_a_forgotten_one_is_gone() {
    let served = served().await;
    let found = call(&served, "GET", "/api/agents/main/memories?q=green%20tea", ADMIN, None).await;
    let id = found.json()["hits"][0]["memory"]["id"].as_str().expect("an id").to_owned();
    let path = format!("/api/agents/main/memories/{id}");
    assert_eq!(call(&served, "DELETE", &path, READ, None).await.status, 403);
    assert_eq!(call(&served, "DELETE", &path, WEBHOOK, None).await.status, 403);
    let forgotten = call(&served, "DELETE", &path, ADMIN, None).await;
    assert_eq!(forgotten.status, 200, "{forgotten:?}");
    assert_eq!(forgotten.json()["forgotten"], true);
    let again = call(&served, "DELETE", &path, ADMIN, None).await;
    assert_eq!(again.status, 404, "{again:?}");
    assert!(again.json()["error"].as_str().is_some_and(|e| e.contains(&id)), "{again:?}");
    let found = call(&served, "GET", "/api/agents/main/memories?q=green%20tea", ADMIN, None).await;
    assert_eq!(found.json()["hits"], json!([]), "{found:?}");
    served.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn only_an_admin_cancels_a_running_process_and_it_ends_cancelled() {
    use spacebot_core::{
        ConversationId, DeliveryPolicy, Lifecycle, Outbox, ProcessId, ProcessKind, ProcessRecord, TerminalState,
    };
    use tokio_util::sync::CancellationToken;

    let served = served().await;
    let registry = served.runtime.handle().processes().clone();
    let (bus, _announced) = tokio::sync::broadcast::channel(16);
    let outbox = Outbox::new(Arc::default(), bus, DeliveryPolicy::default());
    let (notify, mut ends) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let record = ProcessRecord::new(
        AgentId::new("main"),
        ConversationId::new("webhook:c1"),
        ProcessId::new("worker-1"),
        ProcessKind::Worker,
        Lifecycle::new(),
        cancel.clone(),
        outbox,
    )
    .with_notify(notify);
    let _registration = registry.register(record);

    assert_eq!(call(&served, "POST", "/api/processes/worker-1/cancel", READ, None).await.status, 403);
    assert!(!cancel.is_cancelled(), "a refused call changes nothing");
    let cancelled = call(&served, "POST", "/api/processes/worker-1/cancel", ADMIN, None).await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.json()["cancelled"], true);
    assert!(cancel.is_cancelled());
    let end = ends.recv().await.expect("the owner hears of it");
    assert_eq!(end.state, TerminalState::Cancelled);
    assert_eq!(call(&served, "POST", "/api/processes/worker-1/cancel", ADMIN, None).await.status, 404);
    assert_eq!(call(&served, "POST", "/api/processes/nothing/cancel", ADMIN, None).await.status, 404);
    served.stop(std::time::Duration::from_secs(5)).await;
}

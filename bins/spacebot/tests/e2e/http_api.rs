//! The HTTP surface: shapes, validation and authentication, through the real binary.

use serde_json::{Value, json};

use crate::daemon::{Daemon, Home};

#[tokio::test]
async fn health_and_status_answer() {
    let home = Home::new("[[agents]]\nid = \"main\"\n\n[[agents]]\nid = \"ops\"\n");
    let daemon = Daemon::start(&home).await;
    let health: Value = daemon.http.get(format!("{}/health", daemon.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    let status: Value =
        daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["agents"], json!(["main", "ops"]));
    assert_eq!(status["adapters"], json!(["webhook"]));
    daemon.stop().await;
}

#[tokio::test]
async fn malformed_webhook_input_is_refused_with_a_named_problem() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;
    let url = format!("{}/webhook/main", daemon.base);

    let cases: Vec<(Value, &str)> = vec![
        (json!({"sender": "a", "text": "t"}), "missing field `conversation`"),
        (json!({"conversation": "c", "text": "t"}), "missing field `sender`"),
        (json!({"conversation": "c", "sender": "a"}), "missing field `text`"),
        (json!({"conversation": "c", "sender": "a", "text": ""}), "field `text` must not be empty"),
        (json!({"conversation": "c", "sender": "a", "text": 42}), "field `text` must be a string"),
        (json!({"conversation": "c", "sender": "a", "text": "t", "extra": 1}), "unknown field `extra`"),
        (json!(["not", "an", "object"]), "invalid JSON body"),
    ];
    for (body, expected) in cases {
        let (status, answer) = daemon.post_json("main", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{body}: expected {expected:?} in {error:?}");
    }

    let response = daemon
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"conversation\": \"c\", \"sender\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("invalid JSON body"), "{answer}");

    let response = daemon.http.post(&url).body("hello").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert!(response.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("JSON"));

    let huge = "x".repeat(300 * 1024);
    let (status, answer) = daemon.post_json("main", &json!({"conversation": "c", "sender": "a", "text": huge})).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("limit"));

    let (status, answer) = daemon.post_json("nobody", &json!({"conversation": "c", "sender": "a", "text": "t"})).await;
    assert_eq!(status, 404);
    assert_eq!(answer["error"], "no agent named 'nobody'");

    // None of the refused requests reached a conversation, and the daemon is still healthy.
    assert!(daemon.messages("main", "c").await.is_empty());
    let health = daemon.http.get(format!("{}/health", daemon.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    daemon.stop().await;
}

#[tokio::test]
async fn a_configured_token_guards_api_and_webhook_but_not_health() {
    let home = Home::new("[api]\ntoken = \"env:TEST_API_TOKEN\"\n");
    let mut daemon = Daemon::start_with(&home, &[("TEST_API_TOKEN", "s3cret")]).await;
    let body = json!({"conversation": "c", "sender": "a", "text": "t"});

    let (status, answer) = daemon.post_json("main", &body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "missing or invalid bearer token");
    daemon.token = Some("wrong".to_owned());
    assert_eq!(daemon.post_json("main", &body).await.0, 401);
    let status = daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 401);

    let health = daemon.http.get(format!("{}/health", daemon.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    daemon.token = Some("s3cret".to_owned());
    assert_eq!(daemon.post_json("main", &body).await.0, 202);
    let stored = daemon.messages("main", "c").await;
    assert_eq!(stored[0]["text"], "t", "{stored:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn the_messages_route_takes_the_bare_conversation_id_the_caller_sent() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;
    let (status, accepted) =
        daemon.post_json("main", &json!({"conversation": "c1", "sender": "alice", "text": "hello"})).await;
    assert_eq!(status, 202, "{accepted}");
    // The prefixed id stays canonical: it is what the 202 names.
    assert_eq!(accepted["conversation"], "webhook:c1");

    let read = |conversation: &'static str| {
        let url = format!("{}/api/agents/main/conversations/{conversation}/messages", daemon.base);
        let request = daemon.http.get(url);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Vec<Value>>().await.unwrap()
        }
    };
    let bare = read("c1").await;
    let prefixed = read("webhook:c1").await;
    assert_eq!(bare.first().map(|m| m["text"].clone()), Some(json!("hello")), "bare id: {bare:?}");
    assert_eq!(bare.first().map(|m| m["id"].clone()), Some(accepted["message_id"].clone()));
    assert_eq!(bare, prefixed, "both ids name the same conversation");
    // An id nobody used is still an empty conversation, not an error.
    assert!(read("c2").await.is_empty());
    daemon.stop().await;
}

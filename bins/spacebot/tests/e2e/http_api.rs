//! The HTTP surface: shapes, validation and authentication, through the real binary.

use serde_json::{Value, json};

use crate::daemon::{Daemon, Home, PATIENCE};

#[tokio::test]
async fn health_and_status_answer() {
    let home = Home::new("[[agents]]\nid = \"main\"\n\n[[agents]]\nid = \"ops\"\n");
    let daemon = Daemon::start(&home).await;
    let health: Value = daemon.http.get(format!("{}/health", daemon.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    let status: Value =
        daemon.http.get(format!("{}/api/status", daemon.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["agents"], json!(["main", "ops"]));
    assert_eq!(status["adapters"], json!(["webhook", "openai", "cron"]), "cron runs answer through the `cron` adapter");
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
    // Wait for the answer (a notice: no model is configured), so both reads see the same log.
    daemon.wait_for_answers("main", "c1", 1).await;

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

#[tokio::test]
async fn a_send_repeated_with_its_id_is_recorded_and_answered_once() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;
    let body = json!({"conversation": "c1", "sender": "alice", "text": "hello", "id": "send-7"});
    let (status, first) = daemon.post_json("main", &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = daemon.post_json("main", &body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(first["message_id"], again["message_id"], "the same message");
    // The same key in another conversation is another message.
    let other = json!({"conversation": "c2", "sender": "alice", "text": "hello", "id": "send-7"});
    let (status, elsewhere) = daemon.post_json("main", &other).await;
    assert_eq!(status, 202);
    assert_ne!(elsewhere["message_id"], first["message_id"]);

    daemon.wait_for_answers("main", "c1", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let messages = daemon.messages("main", "c1").await;
    let users = messages.iter().filter(|m| m["role"] == "user").count();
    let answers = messages.iter().filter(|m| m["role"] != "user").count();
    assert_eq!((users, answers), (1, 1), "{messages:#?}");

    for bad in [json!(""), json!(7), json!("x".repeat(129)), json!("a\0b")] {
        let body = json!({"conversation": "c1", "sender": "alice", "text": "hi", "id": bad});
        let (status, answer) = daemon.post_json("main", &body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("`id`")), "{answer}");
    }
    for field in ["conversation", "sender"] {
        let mut body = json!({"conversation": "c1", "sender": "alice", "text": "hi"});
        body[field] = json!("tab\there");
        let (status, answer) = daemon.post_json("main", &body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("control characters")), "{answer}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn the_content_type_is_parsed_as_a_media_type() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;
    let url = format!("{}/webhook/main", daemon.base);
    let body = json!({"conversation": "ct", "sender": "a", "text": "t"}).to_string();
    let cases = [
        ("application/json", 202),
        ("APPLICATION/JSON", 202),
        ("Application/Json; charset=UTF-8", 202),
        ("application/json ; charset=\"utf-8\"", 202),
        ("application/jsonx", 415),
        ("application/json-seq", 415),
        ("text/json", 415),
        ("application/", 415),
        ("", 415),
    ];
    for (content_type, expected) in cases {
        let response =
            daemon.http.post(&url).header("content-type", content_type).body(body.clone()).send().await.unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "content-type {content_type:?}: {answer}");
        if expected == 415 {
            assert!(answer["error"].as_str().is_some_and(|e| e.contains("application/json")), "{answer}");
        }
    }
    daemon.stop().await;
}

#[tokio::test]
async fn every_error_answer_is_json() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;

    // 405: a known route, the wrong method. The `Allow` header stays.
    let response = daemon.http.get(format!("{}/webhook/main", daemon.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let answer: Value = response.json().await.expect("a JSON body on 405");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("GET") && error.contains("POST"), "{answer}");

    let response = daemon.http.delete(format!("{}/health", daemon.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert!(response.json::<Value>().await.expect("a JSON body on 405")["error"].is_string());

    // 404: an unknown route.
    let response = daemon.http.get(format!("{}/no/such/route", daemon.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "no such route");

    // 400 from a query the route can't parse.
    let url = format!("{}/api/agents/main/conversations/c/messages?limit=lots", daemon.base);
    let response = daemon.http.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("limit"));
    daemon.stop().await;
}

#[tokio::test]
async fn a_text_of_only_invisible_characters_is_refused() {
    let home = Home::new("");
    let daemon = Daemon::start(&home).await;
    for text in ["\u{200B}", "\u{200B}\u{200C}\u{200D}", " \u{FEFF}\t\u{2060}\n", "\u{00A0}\u{3000}\u{200B}"] {
        let (status, answer) =
            daemon.post_json("main", &json!({"conversation": "z", "sender": "a", "text": text})).await;
        assert_eq!(status, 400, "{text:?}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("`text`"), "{text:?}: {error}");
    }
    // Visible text with zero-width characters in it is fine.
    let (status, answer) =
        daemon.post_json("main", &json!({"conversation": "z", "sender": "a", "text": "hi\u{200B}there"})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(daemon.messages("main", "z").await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn idle_connections_past_the_cap_and_oversized_heads_do_not_take_the_daemon_down() {
    let home = Home::new("");
    let mut daemon = Daemon::start(&home).await;
    let addr = daemon.base.trim_start_matches("http://").to_owned();

    // More idle connections than the default cap (512): the daemon makes way for new ones.
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let health = daemon.http.get(format!("{}/health", daemon.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, answer) = daemon.post_json("main", &json!({"conversation": "c", "sender": "a", "text": "t"})).await;
    assert_eq!(status, 202, "{answer}");
    daemon.wait_for_log("HTTP connection cap reached", PATIENCE).await;
    drop(idle);

    // A request head over the default 16 KiB limit.
    let response =
        daemon.http.get(format!("{}/health", daemon.base)).header("x-big", "a".repeat(20 * 1024)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 431);
    daemon.stop().await;
}

#[tokio::test]
async fn a_webhook_scoped_token_sends_but_reads_nothing() {
    let home = Home::new(
        "[api]\ntoken = \"e2e-admin-token\"\n[[api.tokens]]\nname = \"ci\"\ntoken = \"e2e-webhook-token\"\nscopes = [\"webhook\"]\nsenders = [\"ci-bot\"]\n",
    );
    let daemon = Daemon::start(&home).await;
    let send = |sender: &str| {
        daemon
            .http
            .post(format!("{}/webhook/main", daemon.base))
            .bearer_auth("e2e-webhook-token")
            .json(&json!({"conversation": "c1", "sender": sender, "text": "hello"}))
            .send()
    };
    assert_eq!(send("ci-bot").await.unwrap().status(), 202);
    assert_eq!(send("alice").await.unwrap().status(), 403, "it can't claim to be someone else");
    for path in
        ["/api/agents/main/conversations/webhook:c1/messages", "/api/status", "/api/events", "/metrics", "/api/usage"]
    {
        let response =
            daemon.http.get(format!("{}{path}", daemon.base)).bearer_auth("e2e-webhook-token").send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let admin = daemon
        .http
        .get(format!("{}/api/agents/main/conversations/webhook:c1/messages", daemon.base))
        .bearer_auth("e2e-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    daemon.stop().await;
}

/// `spacebot tokens ARGS` on `home`'s config and data dir.
fn tokens(home: &Home, args: &[&str]) -> std::process::Output {
    let config = home.config_path();
    let data_dir = home.data_dir();
    let mut all =
        vec!["--config", config.to_str().expect("utf-8"), "--data-dir", data_dir.to_str().expect("utf-8"), "tokens"];
    all.extend_from_slice(args);
    crate::daemon::run_cli(&all, &[], home.dir.path())
}

#[tokio::test]
async fn a_token_kept_in_the_data_dir_works_without_a_restart_and_only_its_digest_is_stored() {
    let home = Home::new("[api]\ntoken = \"e2e-admin-token\"\n");
    let daemon = Daemon::start(&home).await;
    let send = |token: String| {
        daemon
            .http
            .post(format!("{}/webhook/main", daemon.base))
            .bearer_auth(token)
            .json(&json!({"conversation": "c1", "sender": "ci-bot", "text": "hello"}))
            .send()
    };
    let read = |token: String| {
        daemon
            .http
            .get(format!("{}/api/agents/main/conversations/webhook:c1/messages", daemon.base))
            .bearer_auth(token)
            .send()
    };

    // An unknown agent or scope is refused, naming it; nothing is written.
    let refused = tokens(&home, &["add", "ci", "--scope", "webhook", "--agent", "nobody"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("agent `nobody` is not configured"));
    let refused = tokens(&home, &["add", "ci", "--scope", "owner"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown scope `owner`"));
    assert!(!home.data_dir().join("api-tokens.json").exists());

    let added = tokens(&home, &["add", "ci", "--scope", "webhook", "--agent", "main", "--sender", "ci-bot"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8(added.stdout).expect("utf-8").trim().to_owned();
    assert!(token.starts_with("sbt_"), "{token}");
    let file = std::fs::read_to_string(home.data_dir().join("api-tokens.json")).expect("token file");
    assert!(!file.contains(&token) && !file.contains(&token["sbt_".len()..]), "only the digest is kept: {file}");

    // The running daemon takes it up within a second or so: the webhook scope sends, reads are
    // refused.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let status = send(token.clone()).await.unwrap().status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 401, "before it is seen the token is unknown");
        assert!(std::time::Instant::now() < deadline, "the daemon never accepted the new token");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(read(token.clone()).await.unwrap().status(), 403, "a webhook token reads nothing");
    assert_eq!(read("e2e-admin-token".to_owned()).await.unwrap().status(), 200);

    let listed = tokens(&home, &["list", "--json"]);
    let rows: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(rows[0]["name"], "ci");
    assert_eq!(rows[0]["scopes"], json!(["webhook"]));
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&token));

    // Withdrawn: refused again, without a restart.
    assert!(tokens(&home, &["rm", "ci"]).status.success());
    let deadline = std::time::Instant::now() + PATIENCE;
    while send(token.clone()).await.unwrap().status() != 401 {
        assert!(std::time::Instant::now() < deadline, "the removed token kept working");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!tokens(&home, &["rm", "ci"]).status.success(), "removing it twice is an error");
    daemon.stop().await;
}

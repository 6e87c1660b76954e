//! Hostile bodies, generated: any JSON (shaped like what the routes expect, or not) posted to the
//! webhook and the OpenAI endpoint gets an answer that is not a server error, and the server
//! keeps answering. A few dozen cases run in the normal test run; `PROPTEST_CASES=...` runs more.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value};

use spacebot_webhook::{ApiConfig, OpenAiAdapter, ServeLimits};

use crate::support::{Served, SilentEngine, exchange, health};

/// JSON built from the keys and values the routes read, and anything else.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("model".to_owned()),
        Just("messages".to_owned()),
        Just("role".to_owned()),
        Just("content".to_owned()),
        Just("user".to_owned()),
        Just("stream".to_owned()),
        Just("conversation".to_owned()),
        Just("sender".to_owned()),
        Just("text".to_owned()),
        Just("type".to_owned()),
        "[a-z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::String("main".to_owned())),
        Just(Value::String("user".to_owned())),
        Just(Value::String("/status".to_owned())),
        Just(Value::String("\u{200B}".to_owned())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn no_body_makes_a_server_error() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // A valid completion waits for an answer the silent engine never gives: a short wait ends it
    // (504, the one server error that is expected).
    let api = ApiConfig::default().with_openai(OpenAiAdapter::new()).with_reply_timeout(Duration::from_millis(20));
    let served = runtime.block_on(Served::start_with(ServeLimits::default(), Arc::new(SilentEngine), api));
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(64);
    let config = ProptestConfig { cases, ..ProptestConfig::default() };
    proptest!(config, |(body in json(), raw in any::<bool>())| {
        // Half the time the JSON is cut short, which must be a 400 like any malformed body.
        let text = body.to_string();
        let text = if raw { text.chars().take(text.chars().count() / 2).collect() } else { text };
        for path in ["/webhook/main", "/v1/chat/completions"] {
            let response = runtime.block_on(async {
                let mut stream = served.connect().await;
                exchange(&mut stream, &post(path, &text)).await
            });
            prop_assert!(
                response.status < 500 || response.status == 504,
                "{} answered {} to {}: {}", path, response.status, text, response.body
            );
            let stream = response.header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
            prop_assert!(stream || serde_json::from_str::<Value>(&response.body).is_ok(), "not JSON: {:?}", response);
        }
    });
    assert_eq!(runtime.block_on(health(&served)).status, 200);
    runtime.block_on(served.stop(Duration::from_secs(5)));
}

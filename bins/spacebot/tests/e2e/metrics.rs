//! `GET /metrics` through the real binary, read with a Prometheus text-format parser: the
//! figures move after a turn (turns, their latency, model requests and tokens), processes are
//! listed by kind, and the route needs the API token like the rest.

use prometheus_parse::{Sample, Scrape, Value};
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config};

const TOKEN: &str = "e2e-metrics-token";

async fn scrape(daemon: &Daemon) -> Vec<Sample> {
    let response = daemon.http.get(format!("{}/metrics", daemon.base)).bearer_auth(TOKEN).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.expect("body");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text format").samples
}

/// The value of the sample named `metric` whose labels include `labels` (a histogram's count).
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(key, want)| s.labels.get(key) == Some(*want)))?;
    Some(match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        Value::Summary(_) => panic!("no summaries are served"),
    })
}

#[tokio::test]
async fn metrics_move_after_a_turn_and_need_the_token() {
    let fake = FakeLlmServer::start().await;
    fake.respond_with(|_| FakeReply::text("metered answer").with_usage(120, 7));
    let config = format!("{}\n[api]\ntoken = \"{TOKEN}\"\n", openai_config(&fake.openai_base_url()));
    let home = Home::new(&config);
    let mut daemon = Daemon::start(&home).await;
    daemon.token = Some(TOKEN.to_owned());

    let refused = daemon.http.get(format!("{}/metrics", daemon.base)).send().await.expect("scrape");
    assert_eq!(refused.status(), 401);

    let before = scrape(&daemon).await;
    let replied = [("agent", "main"), ("outcome", "replied")];
    assert_eq!(value(&before, "spacebot_turns_total", &replied), None, "no turn yet");
    assert_eq!(value(&before, "spacebot_processes", &[("agent", "main"), ("kind", "worker")]), Some(0.0));

    daemon.say("main", "m1", "alice", "hello").await;
    daemon.wait_for_answers("main", "m1", 1).await;
    // The turn's end event reaches the metrics reader a moment after the reply is stored.
    let deadline = std::time::Instant::now() + crate::daemon::PATIENCE;
    let after = loop {
        let samples = scrape(&daemon).await;
        if value(&samples, "spacebot_turns_total", &replied).is_some() {
            break samples;
        }
        assert!(std::time::Instant::now() < deadline, "no turn counted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(value(&after, "spacebot_turns_total", &replied), Some(1.0));
    assert_eq!(value(&after, "spacebot_turn_duration_seconds", &[("agent", "main")]), Some(1.0));
    let model = [("agent", "main"), ("model", "main/fake-gpt")];
    let ok = [model[0], model[1], ("status", "ok")];
    assert_eq!(value(&after, "spacebot_model_requests_total", &ok), Some(1.0));
    assert_eq!(value(&after, "spacebot_model_request_duration_seconds", &model), Some(1.0));
    let input = [model[0], model[1], ("direction", "input")];
    let output = [model[0], model[1], ("direction", "output")];
    assert_eq!(value(&after, "spacebot_model_tokens_total", &input), Some(120.0));
    assert_eq!(value(&after, "spacebot_model_tokens_total", &output), Some(7.0));
    assert_eq!(value(&after, "spacebot_conversations", &[]), Some(1.0));

    // The same turn in the recent list the portal plots, with its duration.
    let turns = |agent: &'static str| {
        let request = daemon.http.get(format!("{}/api/turns?agent={agent}", daemon.base)).bearer_auth(TOKEN);
        async move { request.send().await.expect("turns").json::<serde_json::Value>().await.expect("turns as JSON") }
    };
    let main = turns("main").await;
    let listed = main["turns"].as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{main:#}");
    assert_eq!(
        (listed[0]["conversation"].as_str(), listed[0]["outcome"].as_str()),
        (Some("webhook:m1"), Some("replied"))
    );
    assert!(listed[0]["seconds"].as_f64().is_some_and(|seconds| seconds > 0.0 && seconds < 30.0), "{main:#}");
    assert_eq!(turns("ops").await["turns"], serde_json::json!([]));
    daemon.stop().await;
}

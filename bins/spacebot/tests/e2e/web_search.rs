//! `web_search` through the real binary: a worker the fake model drives searches through a local
//! fake of each backend (SearXNG's JSON API, the Brave Search API with its key read from the
//! environment), and the model reads the numbered results.

use serde_json::json;

use spacebot_testing::{FakeLlmServer, FakeSearch};

use crate::daemon::{Daemon, Home, openai_config, worker_calls, worker_tool_results, worker_tool_specs};

/// What the worker's model was given for the query `rust async` from the fake's default results.
fn expected_results() -> String {
    let hits = FakeSearch::default_results("rust async");
    let mut text = "Results for \"rust async\":".to_owned();
    for (index, hit) in hits.iter().enumerate() {
        text.push_str(&format!("\n{}. {}\n   {}\n   {}", index + 1, hit.title, hit.url, hit.snippet));
    }
    text
}

/// Runs one message whose worker searches for `rust async`, and checks what the model read.
async fn search_through_a_worker(search_config: &str, env: &[(&str, &str)]) -> (FakeLlmServer, Vec<String>) {
    let model = FakeLlmServer::start().await;
    worker_calls(&model, "web_search", json!({ "query": "rust async" }));
    let config = format!("{}\n[tools]\nweb_search = {search_config}\n", openai_config(&model.openai_base_url()));
    let home = Home::new(&config);
    let daemon = Daemon::start_with(&home, env).await;
    daemon.say("main", "search", "alice", "what is new in rust async?").await;
    let answers = daemon.wait_for_answers("main", "search", 2).await;
    let replies: Vec<String> = answers.iter().map(|a| a["text"].as_str().unwrap_or_default().to_owned()).collect();
    let (status, _) = daemon.stop().await;
    assert!(status.success());
    (model, replies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_searches_searxng_and_the_model_reads_the_results() {
    let search = FakeSearch::searxng().await;
    let (model, replies) =
        search_through_a_worker(&format!("{{ backend = \"searxng\", base_url = \"{}\" }}", search.base_url()), &[])
            .await;

    let results = worker_tool_results(&model);
    assert!(results.contains(&expected_results()), "the worker's model read: {results:#?}");
    let specs = worker_tool_specs(&model);
    assert!(specs.iter().any(|spec| spec["function"]["name"] == "web_search"), "{specs:#?}");
    let requests = search.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!((requests[0].query.as_str(), requests[0].param("format").as_deref()), ("rust async", Some("json")));
    // The relay turn answered with the worker's outcome.
    assert!(replies.iter().any(|reply| reply.contains("rust async: result 1")), "{replies:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_searches_brave_with_the_key_from_the_environment() {
    let search = FakeSearch::brave("brave-e2e-subscription-token").await;
    let (model, replies) = search_through_a_worker(
        &format!(
            "{{ backend = \"brave\", base_url = \"{}\", api_key = \"env:BRAVE_E2E_KEY\", max_results = 2 }}",
            search.base_url()
        ),
        &[("BRAVE_E2E_KEY", "brave-e2e-subscription-token")],
    )
    .await;

    let results = worker_tool_results(&model);
    let expected: String = expected_results().lines().take(7).collect::<Vec<_>>().join("\n");
    assert!(results.contains(&expected), "two results, as configured; the worker's model read: {results:#?}");
    let requests = search.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].token.as_deref(), Some("brave-e2e-subscription-token"));
    assert_eq!(requests[0].param("count").as_deref(), Some("2"));
    assert!(replies.iter().any(|reply| reply.contains("rust async: result 2")), "{replies:#?}");
    // The key is a secret: nothing the model was sent carries it.
    let sent = model.requests().iter().map(|request| request.body.to_string()).collect::<String>();
    assert!(!sent.contains("brave-e2e-subscription-token"));
}

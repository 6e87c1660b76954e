//! Failures on `complete()`: which are retried, how often, with what wait, and the kind and
//! message each ends in.

use std::time::{Duration, Instant};

use spacebot_core::{LanguageModel, LlmErrorKind};
use spacebot_llm::ProviderKind;
use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::support::{KINDS, base_url, config, config_at, hello, init, model, model_with};

#[tokio::test]
async fn rate_limit_then_success_is_retried() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(429));
        server.push(FakeReply::text("after the limit"));
        let answer = model(&server, kind).complete(hello()).await.expect("an answer");
        assert_eq!(answer.content, "after the limit", "{kind}");
        assert_eq!(server.request_count(), 2, "{kind}");
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.respond_with(|_| FakeReply::status(500).with_message("the model fell over"));
        let config = config(&server, kind).with_max_retries(2);
        let error = model_with(config).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::ServerError, "{kind}: {error}");
        assert_eq!(server.request_count(), 3, "{kind}: max_retries + 1 attempts");
        let message = error.to_string();
        let url = base_url(&server, kind);
        assert_eq!(
            message,
            format!(
                "provider 'fake' at {url} failed with a server error (HTTP 500): the model fell over (gave up after 3 attempts)"
            ),
        );
    }
}

#[tokio::test]
async fn garbage_is_an_invalid_response_and_not_retried() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::garbage("this is not json"));
        server.push(FakeReply::text("never sent"));
        let error = model(&server, kind).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::InvalidResponse, "{kind}: {error}");
        assert_eq!(server.request_count(), 1, "{kind}: the same server would send the same garbage");
        assert!(error.to_string().contains("sent a reply that can't be read"), "{error}");
    }
}

#[tokio::test]
async fn a_reply_of_the_wrong_shape_is_an_invalid_response() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::garbage(r#"{"unexpected": true}"#));
        let error = model(&server, kind).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::InvalidResponse, "{kind}: {error}");
        assert_eq!(server.request_count(), 1, "{kind}");
    }
}

#[tokio::test]
async fn a_hanging_provider_times_out_per_attempt() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::hang());
        server.push(FakeReply::hang());
        let config = config(&server, kind).with_timeout(Duration::from_millis(300)).with_max_retries(1);
        let started = Instant::now();
        let error = model_with(config).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::Timeout, "{kind}: {error}");
        assert_eq!(server.request_count(), 2, "{kind}: a timeout is retried");
        assert!(started.elapsed() >= Duration::from_millis(600), "{kind}: two full timeouts");
        assert!(started.elapsed() < Duration::from_secs(5), "{kind}");
        assert!(error.to_string().contains("timed out: no answer within 300ms"), "{error}");
    }
}

#[tokio::test]
async fn an_unreachable_provider_names_its_url() {
    init();
    // A port nothing listens on: bind one, then free it.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port();
    for kind in KINDS {
        let url = match kind {
            ProviderKind::OpenAi => format!("http://127.0.0.1:{port}/v1"),
            _ => format!("http://127.0.0.1:{port}"),
        };
        let config = config_at(kind, &url).with_max_retries(1);
        let error = model_with(config).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::Unreachable, "{kind}: {error}");
        assert_eq!(
            error.to_string(),
            format!("can't reach provider 'fake' at {url}: connection refused (gave up after 2 attempts)")
        );
    }
}

#[tokio::test]
async fn bad_credentials_fail_at_once() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(401).with_message("invalid x-api-key"));
        server.push(FakeReply::text("never sent"));
        let error = model(&server, kind).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::Auth, "{kind}: {error}");
        assert_eq!(server.request_count(), 1, "{kind}");
        let url = base_url(&server, kind);
        assert_eq!(
            error.to_string(),
            format!("provider 'fake' at {url} rejected the API key (HTTP 401): invalid x-api-key")
        );
    }
}

#[tokio::test]
async fn other_client_errors_are_invalid_requests() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(400).with_message("messages: too long"));
        let error = model(&server, kind).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::InvalidRequest, "{kind}: {error}");
        assert_eq!(server.request_count(), 1, "{kind}");
        assert!(error.to_string().ends_with("rejected the request (HTTP 400): messages: too long"), "{error}");
    }
}

#[tokio::test]
async fn retry_after_is_waited_out() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(429).with_header("retry-after", "0.3"));
        server.push(FakeReply::text("ok"));
        let config = config(&server, kind).with_max_backoff(Duration::from_secs(1));
        let started = Instant::now();
        model_with(config).complete(hello()).await.expect("an answer");
        assert!(started.elapsed() >= Duration::from_millis(300), "{kind}: {:?}", started.elapsed());
        assert_eq!(server.request_count(), 2);
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_longest_backoff_is_handed_to_the_caller() {
    init();
    for kind in KINDS {
        let server = FakeLlmServer::start().await;
        server.push(FakeReply::status(429).with_header("retry-after", "120"));
        server.push(FakeReply::text("never sent"));
        let error = model(&server, kind).complete(hello()).await.expect_err("an error");
        assert_eq!(error.kind(), LlmErrorKind::RateLimited, "{kind}: {error}");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
        assert_eq!(server.request_count(), 1, "{kind}");
    }
}

//! `serve` against slow, idle, oversized and too many clients, on tokio's paused clock.
//!
//! The clock only moves when every task waits, so a timeout fires exactly when the server would
//! otherwise wait forever, and a test that sees an answer at time `t` knows which limit gave it.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use spacebot_webhook::ServeLimits;

use crate::support::{Served, capture_logs, closed_within, exchange, health, read_response};

/// Far longer than any limit under test: a test waiting this long has found a hang.
const HANG: Duration = Duration::from_secs(3600);

/// The log line the server writes when its connection cap is reached.
const CAP_LINE: &str = "HTTP connection cap reached";

#[tokio::test(start_paused = true)]
async fn idle_connections_beyond_the_cap_make_way_and_health_still_answers() {
    let (logs, _guard) = capture_logs();
    let limits = ServeLimits::default().with_max_connections(4).with_header_read_timeout(Duration::from_secs(60));
    let served = Served::start(limits).await;
    let started = Instant::now();

    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(served.connect().await);
    }
    let answer = health(&served).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"status": "ok"}));

    // The longest-idle connections made way, at once (not by the header timeout); the newest
    // three are still open beside the one that asked for /health.
    for (i, stream) in idle.iter_mut().enumerate() {
        let closed = closed_within(stream, Duration::from_secs(1)).await;
        assert_eq!(closed, i < 7, "idle connection {i}: closed = {closed}");
    }
    assert!(started.elapsed() < Duration::from_secs(60), "evictions waited for a timeout: {:?}", started.elapsed());

    // Seven evictions within the log interval: one line, with the count.
    let lines = logs.lines_with(CAP_LINE);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("max_connections=4"), "{}", lines[0]);
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn busy_connections_are_never_evicted_and_one_over_the_cap_gets_503() {
    let (logs, _guard) = capture_logs();
    let served = Served::start(ServeLimits::default().with_max_connections(2)).await;

    // Two event streams: requests in progress for as long as they stay open.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = served.connect().await;
        stream.write_all(b"GET /api/events HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
        let head = read_response(&mut stream).await.expect("the event stream starts");
        assert_eq!(head.status, 200);
        streams.push(stream);
    }

    for _ in 0..5 {
        let refused = health(&served).await;
        assert_eq!(refused.status, 503, "{refused:?}");
        assert!(refused.json()["error"].as_str().is_some_and(|e| e.contains("connections")), "{refused:?}");
        assert_eq!(refused.header("connection"), Some("close"));
    }
    for stream in &mut streams {
        assert!(!closed_within(stream, Duration::from_secs(1)).await, "an event stream was cut to make room");
    }
    assert_eq!(logs.lines_with(CAP_LINE).len(), 1, "one line for a burst of refusals");

    // A minute on, the next refusal is logged again, counting the four that went unlogged.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(health(&served).await.status, 503);
    let lines = logs.lines_with(CAP_LINE);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("refused=1") && lines[1].contains("refused=5"), "{lines:#?}");

    // When an event stream ends, there is room again.
    drop(streams.pop());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = health(&served).await;
        if answer.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a stream ended: {answer:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // An event stream doesn't end at shutdown by itself; the server notices its reader left at
    // the next keep-alive comment (every 15 s).
    drop(streams);
    served.stop(Duration::from_secs(20)).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_head_is_answered_408_after_the_header_timeout() {
    let served = Served::start(ServeLimits::default().with_header_read_timeout(Duration::from_secs(5))).await;
    let mut stream = served.connect().await;
    let started = Instant::now();
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: te").await.unwrap();

    let answer = tokio::time::timeout(HANG, read_response(&mut stream))
        .await
        .expect("a slow head is cut, not waited for forever")
        .expect("answered before the close");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.json()["error"].as_str().is_some_and(|e| e.contains("5 s")), "{answer:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "cut after {waited:?}");
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await, "the connection is closed after a 408");
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let served = Served::start(ServeLimits::default().with_header_read_timeout(Duration::from_secs(5))).await;
    let mut stream = served.connect().await;
    let started = Instant::now();
    assert!(closed_within(&mut stream, HANG).await, "an idle connection is closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "closed after {waited:?}");

    // Between two requests of a kept-alive connection the same limit holds.
    let mut stream = served.connect().await;
    let answer = exchange(&mut stream, "GET /health HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert_eq!(answer.status, 200);
    let answer = exchange(&mut stream, "GET /health HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert_eq!(answer.status, 200, "keep-alive serves a second request");
    let started = Instant::now();
    assert!(closed_within(&mut stream, HANG).await);
    assert!(started.elapsed() < Duration::from_secs(6), "kept alive for {:?}", started.elapsed());
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_oversized_request_head_is_answered_431() {
    let served = Served::start(ServeLimits::default().with_max_header_bytes(4096)).await;
    let mut stream = served.connect().await;
    let big = format!("GET /health HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n", "a".repeat(8192));
    let answer = tokio::time::timeout(HANG, exchange(&mut stream, &big)).await.expect("answered");
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await);

    // A head within the limit is served as usual.
    let mut stream = served.connect().await;
    let fits = format!("GET /health HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n", "a".repeat(3000));
    assert_eq!(exchange(&mut stream, &fits).await.status, 200);
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_body_is_answered_408_after_the_body_timeout() {
    let served = Served::start(ServeLimits::default().with_body_read_timeout(Duration::from_secs(7))).await;
    let mut stream = served.connect().await;
    let started = Instant::now();
    stream
        .write_all(b"POST /webhook/main HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"conver")
        .await
        .unwrap();
    let answer = tokio::time::timeout(HANG, read_response(&mut stream))
        .await
        .expect("a slow body is cut, not waited for forever")
        .expect("answered before the close");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.json()["error"].as_str().is_some_and(|e| e.contains("body") && e.contains("7 s")), "{answer:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(7) && waited < Duration::from_secs(8), "cut after {waited:?}");
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_idle_connections_and_serve_returns() {
    let served = Served::start(ServeLimits::default()).await;
    let mut idle = served.connect().await;
    let mut used = served.connect().await;
    assert_eq!(exchange(&mut used, "GET /health HTTP/1.1\r\nhost: test\r\n\r\n").await.status, 200);
    served.stop(Duration::from_secs(1)).await;
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
    assert!(closed_within(&mut used, Duration::from_secs(1)).await);
}

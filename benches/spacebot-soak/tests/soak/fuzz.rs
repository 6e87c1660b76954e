//! The HTTP fuzz pass: hostile requests (malformed, oversized, wrong types and encodings, odd
//! paths and methods, bytes that aren't HTTP), slow clients and a crowd of idle connections
//! against one daemon, which must answer every well-formed request with a JSON 4xx or a 2xx,
//! never a 5xx, keep `/health` and the webhook answering, and stop cleanly.

use std::time::{Duration, Instant};

use anyhow::Context;
use spacebot_testing::{FakeLlmServer, FakeReply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::daemon::{Daemon, Home};
use crate::rng::Rng;

/// The fuzz daemon's connection cap: small, so the idle crowd passes it.
const MAX_CONNECTIONS: usize = 32;

/// What the pass saw.
#[derive(Debug, Default)]
pub(crate) struct FuzzReport {
    pub(crate) requests: u64,
    pub(crate) answered_2xx: u64,
    pub(crate) answered_4xx: u64,
    pub(crate) server_errors: u64,
    pub(crate) not_json: u64,
    pub(crate) unanswered: u64,
    pub(crate) slow_clients: u64,
    pub(crate) idle_connections: u64,
    pub(crate) violations: Vec<String>,
    pub(crate) elapsed: Duration,
}

/// One hostile request: its bytes and whether it is well-formed HTTP (so the answer must be JSON).
struct Hostile {
    bytes: Vec<u8>,
    http: bool,
    what: String,
}

fn request(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n");
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Bodies a webhook must refuse or take, never choke on.
fn bodies(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let random: Vec<u8> = (0..rng.range(1, 2000)).map(|_| u8::try_from(rng.range(0, 255)).unwrap_or(0)).collect();
    let nested = "[".repeat(usize::try_from(rng.range(100, 100_000)).unwrap_or(100));
    vec![
        ("random bytes".to_owned(), random),
        ("truncated JSON".to_owned(), br#"{"conversation": "f", "sender": "s", "text": "hel"#.to_vec()),
        ("deep nesting".to_owned(), nested.into_bytes()),
        (
            "over the body limit".to_owned(),
            format!(r#"{{"conversation":"f","sender":"s","text":"{}"}}"#, "x".repeat(70_000)).into_bytes(),
        ),
        (
            "text over 64 KiB".to_owned(),
            format!(r#"{{"conversation":"f","sender":"s","text":"{}"}}"#, "y".repeat(65_600)).into_bytes(),
        ),
        ("wrong types".to_owned(), br#"{"conversation": 7, "sender": ["s"], "text": {"a": 1}}"#.to_vec()),
        ("unknown field".to_owned(), br#"{"conversation": "f", "sender": "s", "text": "t", "admin": true}"#.to_vec()),
        ("empty fields".to_owned(), br#"{"conversation": "", "sender": " ", "text": ""}"#.to_vec()),
        (
            "zero-width text".to_owned(),
            "{\"conversation\": \"f\", \"sender\": \"s\", \"text\": \"\u{200b}\u{200b}\u{feff}\"}".as_bytes().to_vec(),
        ),
        (
            "NUL and control characters".to_owned(),
            br#"{"conversation": "f\u0000", "sender": "s\u0007", "text": "a\u0000b"}"#.to_vec(),
        ),
        ("invalid UTF-8".to_owned(), b"{\"conversation\": \"f\xff\xfe\", \"sender\": \"s\", \"text\": \"t\"}".to_vec()),
        ("lone surrogate".to_owned(), br#"{"conversation": "f", "sender": "s", "text": "\ud800"}"#.to_vec()),
        (
            "huge number".to_owned(),
            format!(r#"{{"conversation": "f", "sender": "s", "text": {}}}"#, "9".repeat(5000)).into_bytes(),
        ),
        (
            "duplicate keys".to_owned(),
            br#"{"conversation": "f", "conversation": "g", "sender": "s", "text": "t"}"#.to_vec(),
        ),
        ("missing field".to_owned(), br#"{"conversation": "f", "text": "t"}"#.to_vec()),
        ("an array".to_owned(), br#"[{"conversation": "f", "sender": "s", "text": "t"}]"#.to_vec()),
        ("null".to_owned(), b"null".to_vec()),
        ("empty".to_owned(), Vec::new()),
        (
            "long conversation id".to_owned(),
            format!(r#"{{"conversation": "{}", "sender": "s", "text": "t"}}"#, "c".repeat(300)).into_bytes(),
        ),
        ("a valid message".to_owned(), br#"{"conversation": "fuzz", "sender": "s", "text": "hello"}"#.to_vec()),
    ]
}

fn hostile(rng: &mut Rng) -> Hostile {
    const CONTENT_TYPES: &[Option<&str>] = &[
        Some("application/json"),
        Some("APPLICATION/JSON; charset=utf-8"),
        Some("application/jsonx"),
        Some("text/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some(""),
        None,
    ];
    match rng.range(0, 9) {
        0..=5 => {
            let mut bodies = bodies(rng);
            let index = usize::try_from(rng.range(0, u64::try_from(bodies.len()).unwrap_or(1) - 1)).unwrap_or(0);
            let (what, body) = bodies.swap_remove(index.min(bodies.len() - 1));
            let content_type = *rng.pick(CONTENT_TYPES);
            let agent = *rng.pick(&["main", "main", "nobody", "%00", "..%2F..", "m%C3%A4in"]);
            let bytes = request("POST", &format!("/webhook/{agent}"), content_type, &body);
            Hostile { bytes, http: true, what: format!("POST /webhook/{agent} {what} as {content_type:?}") }
        }
        6 | 7 => {
            let (method, path) = *rng.pick(&[
                ("GET", "/webhook/main"),
                ("DELETE", "/health"),
                ("PUT", "/api/status"),
                ("GET", "/api/agents/main/conversations/webhook:fuzz/messages?limit=-1"),
                ("GET", "/api/agents/main/conversations/webhook:fuzz/messages?limit=abc"),
                ("GET", "/api/agents/main/conversations/webhook:fuzz/messages?limit=99999999999999999999"),
                ("GET", "/api/agents/nobody/conversations/x/messages"),
                ("GET", "/api/agents/main/conversations/%ff%fe/messages"),
                ("GET", "/../../../etc/passwd"),
                ("GET", "/api/agents/main/conversations/webhook:fuzz/messages?limit=0"),
                ("OPTIONS", "/webhook/main"),
                ("GET", "/nowhere"),
            ]);
            Hostile { bytes: request(method, path, None, b""), http: true, what: format!("{method} {path}") }
        }
        8 => {
            let mut bytes: Vec<u8> =
                (0..rng.range(1, 500)).map(|_| u8::try_from(rng.range(0, 255)).unwrap_or(0)).collect();
            bytes.extend_from_slice(b"\r\n\r\n");
            Hostile { bytes, http: false, what: "bytes that aren't HTTP".to_owned() }
        }
        _ => {
            let header =
                format!("X-Big: {}\r\n", "h".repeat(usize::try_from(rng.range(17_000, 40_000)).unwrap_or(17_000)));
            let bytes = format!("GET /health HTTP/1.1\r\nHost: soak\r\n{header}\r\n").into_bytes();
            Hostile { bytes, http: false, what: "an oversized head".to_owned() }
        }
    }
}

/// Sends raw bytes and reads the answer: its status code and body, or none.
async fn exchange(addr: &str, bytes: &[u8]) -> anyhow::Result<Option<(u16, Vec<u8>)>> {
    let mut stream = TcpStream::connect(addr).await?;
    // The server may answer and close before taking everything (a 413, a 431): that's fine.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    Ok(parse(&answer))
}

fn parse(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let text = String::from_utf8_lossy(answer);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
    Some((status, answer[body_at..].to_vec()))
}

/// Runs the pass with `count` hostile requests.
pub(crate) async fn run(binary: &std::path::Path, count: u64, mut rng: Rng) -> anyhow::Result<FuzzReport> {
    let started = Instant::now();
    let model = FakeLlmServer::start().await;
    model.respond_with(|_: &spacebot_testing::RecordedRequest| {
        FakeReply::tool_call("reply", serde_json::json!({"content": "ok"}))
    });
    let config = format!(
        "shutdown_grace_secs = 1\n\n[api]\nbind = \"127.0.0.1:0\"\nmax_body_bytes = 65536\nmax_connections = \
         {MAX_CONNECTIONS}\nheader_read_timeout_secs = 1\nbody_read_timeout_secs = 1\n\n[llm.providers.main]\nkind = \
         \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-soak\"\n\n[llm.models]\nchannel = \"main/fake\"\n",
        model.openai_base_url()
    );
    let home = Home::new(&config)?;
    let daemon = Daemon::start(binary, &home).await?;
    let addr = daemon.base.trim_start_matches("http://").to_owned();
    let mut report = FuzzReport::default();

    for _ in 0..count {
        let request = hostile(&mut rng);
        report.requests += 1;
        let sent = Instant::now();
        let answer = exchange(&addr, &request.bytes).await?;
        if std::env::var_os("SOAK_DEBUG").is_some() {
            eprintln!("{:?} {} -> {:?}", sent.elapsed(), request.what, answer.as_ref().map(|(s, _)| *s));
        }
        match answer {
            None => report.unanswered += 1,
            Some((status, body)) => {
                match status {
                    200..=299 => report.answered_2xx += 1,
                    400..=499 => report.answered_4xx += 1,
                    _ => {
                        report.server_errors += 1;
                        report.violations.push(format!("fuzz: {} answered {status}", request.what));
                    }
                }
                let json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
                if request.http && status >= 400 && status != 431 && !json {
                    report.not_json += 1;
                    report.violations.push(format!(
                        "fuzz: {} answered {status} without a JSON body: {:?}",
                        request.what,
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        }
    }

    slow_clients(&addr, &mut report).await?;
    idle_crowd(&daemon, &addr, &mut report).await?;

    let stopped = daemon.terminate().await?;
    if !stopped.status.success() {
        report.violations.push(format!("fuzz: the daemon's stop was not clean: {}", stopped.status));
    }
    let panics = stopped.log.iter().filter(|line| line.contains("panicked")).count();
    if panics > 0 {
        report.violations.push(format!("fuzz: {panics} panic line(s) in the log"));
    }
    let findings =
        crate::check::check(&home.data_dir(), &[]).await.context("can't read the fuzz daemon's databases")?;
    report.violations.extend(findings.violations.into_iter().filter(|v| v.starts_with("integrity")));
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A head and a body sent too slowly: each gets a `408` (or, for a head not started, a close).
async fn slow_clients(addr: &str, report: &mut FuzzReport) -> anyhow::Result<()> {
    let partial_head = b"POST /webhook/main HTTP/1.1\r\nHost: soak\r\nContent-Type: app".to_vec();
    let partial_body =
        b"POST /webhook/main HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"con"
            .to_vec();
    for (what, bytes) in [("a head", partial_head), ("a body", partial_body)] {
        let mut stream = TcpStream::connect(addr).await?;
        // Dribbled: a byte every 100 ms would take far longer than the 1 s limit.
        for byte in &bytes[..bytes.len().min(5)] {
            let _ = stream.write_all(&[*byte]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stream.write_all(&bytes[bytes.len().min(5)..]).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        report.slow_clients += 1;
        match (read, parse(&answer)) {
            (Ok(_), Some((408, _))) => {}
            (Err(_), _) => report.violations.push(format!("fuzz: a slow client sending {what} was held past 5 s")),
            (Ok(_), other) => report
                .violations
                .push(format!("fuzz: a slow client sending {what} got {:?} instead of 408", other.map(|(s, _)| s))),
        }
    }
    Ok(())
}

/// More idle connections than the cap, then `/health` and the webhook must still answer.
async fn idle_crowd(daemon: &Daemon, addr: &str, report: &mut FuzzReport) -> anyhow::Result<()> {
    let mut crowd = Vec::new();
    for _ in 0..MAX_CONNECTIONS * 3 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            crowd.push(stream);
        }
    }
    report.idle_connections = u64::try_from(crowd.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health =
        tokio::time::timeout(Duration::from_secs(3), daemon.http.get(format!("{}/health", daemon.base)).send()).await;
    if !matches!(&health, Ok(Ok(response)) if response.status().is_success()) {
        report.violations.push(format!("fuzz: /health did not answer behind {} idle connections", crowd.len()));
    }
    let said = tokio::time::timeout(Duration::from_secs(3), daemon.say("crowd", "still there?")).await;
    if !matches!(said, Ok(Some(_))) {
        report.violations.push(format!("fuzz: the webhook refused a message behind {} idle connections", crowd.len()));
    }
    drop(crowd);
    Ok(())
}

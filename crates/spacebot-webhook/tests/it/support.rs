//! A served API over an in-memory runtime, raw TCP clients, and captured logs.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use spacebot_core::{ConversationContext, ConversationEngine, Inbox, Runtime};
use spacebot_testing::MemoryLog;
use spacebot_webhook::{ApiConfig, ServeLimits, WebhookAdapter};

/// An engine that takes every message and never answers: these tests are about the HTTP side.
pub(crate) struct SilentEngine;

impl ConversationEngine for SilentEngine {
    fn run_conversation(&self, _ctx: ConversationContext, mut inbox: Inbox) -> BoxFuture<'static, ()> {
        Box::pin(async move { while inbox.recv().await.is_some() {} })
    }
}

/// The API served by `spacebot_webhook::serve` on an ephemeral port.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    pub(crate) runtime: Runtime,
}

impl Served {
    pub(crate) async fn start(limits: ServeLimits) -> Self {
        Self::start_with(limits, Arc::new(SilentEngine), ApiConfig::default()).await
    }

    /// The API over `engine`, with `api`'s settings; its OpenAI adapter, if any, is registered.
    pub(crate) async fn start_with(limits: ServeLimits, engine: Arc<dyn ConversationEngine>, api: ApiConfig) -> Self {
        let mut builder =
            Runtime::builder().engine(engine).log(Arc::new(MemoryLog::new())).adapter(Arc::new(WebhookAdapter));
        if let Some(openai) = &api.openai {
            builder = builder.adapter(Arc::new(openai.clone()));
        }
        let runtime = builder.agent("main").start().await.expect("runtime starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let router = spacebot_webhook::router(runtime.handle(), api);
        let stop = CancellationToken::new();
        let task = tokio::spawn(spacebot_webhook::serve(listener, router, limits, stop.clone()));
        Self { addr, stop, task, runtime }
    }

    pub(crate) async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    /// Cancels the server and waits (within `bound`) for `serve` to return.
    pub(crate) async fn stop(self, bound: Duration) {
        self.stop.cancel();
        let result = tokio::time::timeout(bound, self.task).await.expect("serve returns after shutdown");
        result.expect("serve task").expect("serve ends cleanly");
        self.runtime.shutdown().await;
    }
}

/// One HTTP response read off a raw connection.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl RawResponse {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {self:?}"))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads one response (head, then a `content-length` body) off `stream`; `None` on a close
/// before a whole head arrived.
pub(crate) async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let mut response = RawResponse { status, head, body: String::new() };
    let length: usize = response.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.expect("read body");
        assert!(read > 0, "closed mid-body: {response:?}");
        body.extend_from_slice(&chunk[..read]);
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Some(response)
}

/// Sends `request` whole and reads the answer.
pub(crate) async fn exchange(stream: &mut TcpStream, request: &str) -> RawResponse {
    stream.write_all(request.as_bytes()).await.expect("write request");
    read_response(stream).await.unwrap_or_else(|| panic!("no answer to {request:?}"))
}

/// `GET /health` on a fresh connection.
pub(crate) async fn health(served: &Served) -> RawResponse {
    let mut stream = served.connect().await;
    exchange(&mut stream, "GET /health HTTP/1.1\r\nhost: test\r\n\r\n").await
}

/// Whether the peer closed `stream` within `wait` (reading no data, or only data before the
/// close); `false` if it is still open then.
pub(crate) async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut sink)).await.is_ok()
}

/// Log lines written while the returned guard lives (on this thread: the tests' runtime is
/// single-threaded, so the server's tasks log here too).
pub(crate) fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<String> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes).lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

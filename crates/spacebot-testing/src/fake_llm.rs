//! A fake model provider over real HTTP (dev-only test support).
//!
//! [`FakeLlmServer`] listens on `127.0.0.1` on a free port and speaks two wire formats, so the real
//! provider clients run end to end against it:
//!
//! - OpenAI chat completions: `POST /v1/chat/completions` (also `/chat/completions`);
//! - Anthropic messages: `POST /v1/messages`.
//!
//! Each request is recorded, then answered by the next [`FakeReply`] of a FIFO script shared by
//! both formats, or by the responder closure when the script is empty, or with HTTP 500
//! "fake model: script exhausted" when there is neither, so a test that under-scripts fails
//! loudly instead of hanging. Answers are streamed as server-sent events when the request says
//! `"stream": true`.
//!
//! ```no_run
//! # async fn example() {
//! use spacebot_testing::{FakeLlmServer, FakeReply};
//!
//! let server = FakeLlmServer::start().await;
//! server.push(FakeReply::tool_call("reply", serde_json::json!({"text": "hi"})));
//! server.push(FakeReply::text("done"));
//! // Point an OpenAI client at server.openai_base_url() or an Anthropic one at
//! // server.anthropic_base_url(), then inspect server.requests().
//! # }
//! ```

mod anthropic;
mod openai;
mod reply;
mod request;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::Listener;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub use self::reply::FakeReply;
use self::reply::ReplyKind;
pub use self::request::{RecordedRequest, Wire};

/// What answers a request when the script is empty.
type Responder = Arc<dyn Fn(&RecordedRequest) -> FakeReply + Send + Sync>;

/// A fake OpenAI / Anthropic server on `127.0.0.1`, scripted per test.
///
/// Dropping it stops the server and closes every open connection, including hanging ones.
pub struct FakeLlmServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The state the handlers share with the test.
#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<FakeReply>>,
    responder: Mutex<Option<Responder>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Numbers answers, for response and tool-call ids.
    answers: AtomicU64,
    /// Every streamed event sent, with when it was handed to the connection.
    streamed: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
}

impl FakeLlmServer {
    /// Starts a server on `127.0.0.1` on a free port.
    ///
    /// # Panics
    ///
    /// When no local port can be bound; use [`try_start`](Self::try_start) to handle that.
    pub async fn start() -> FakeLlmServer {
        match Self::try_start().await {
            Ok(server) => server,
            Err(error) => panic!("fake model server: can't listen on 127.0.0.1: {error}"),
        }
    }

    /// Starts a server on `127.0.0.1` on a free port, or says why it could not.
    pub async fn try_start() -> io::Result<FakeLlmServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .fallback(unknown_route)
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&shared));
        let listener = StoppableListener { inner: listener, stop: stop.clone() };
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake model server stopped");
            }
        });
        Ok(FakeLlmServer { addr, shared, stop, task })
    }

    /// The base URL for OpenAI-compatible clients: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL for Anthropic clients: `http://127.0.0.1:PORT`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a reply to the script. Each request, in either format, takes the oldest one.
    pub fn push(&self, reply: FakeReply) {
        lock(&self.shared.script).push_back(reply);
    }

    /// Answers requests with `responder` whenever the script is empty.
    pub fn respond_with(&self, responder: impl Fn(&RecordedRequest) -> FakeReply + Send + Sync + 'static) {
        *lock(&self.shared.responder) = Some(Arc::new(responder));
    }

    /// Every request received so far, in arrival order, failed ones included.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Every event of every streamed answer sent so far (`data: ...` with its blank line), with
    /// the moment it was handed to the connection: for measuring how soon what the model
    /// streams reaches the client.
    pub fn streamed_events(&self) -> Vec<(std::time::Instant, String)> {
        lock(&self.shared.streamed).clone()
    }

    /// How many scripted replies are still queued.
    pub fn pending_replies(&self) -> usize {
        lock(&self.shared.script).len()
    }
}

impl Drop for FakeLlmServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeLlmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlmServer")
            .field("addr", &self.addr)
            .field("requests", &self.request_count())
            .field("pending_replies", &self.pending_replies())
            .finish()
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the data (a script, a log) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn openai(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    answer(&shared, Wire::OpenAi, &uri, &headers, &body).await
}

async fn anthropic(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    answer(&shared, Wire::Anthropic, &uri, &headers, &body).await
}

async fn unknown_route(uri: Uri) -> Response {
    let message = format!("fake model: no route for {uri}; use /v1/chat/completions or /v1/messages");
    (StatusCode::NOT_FOUND, axum::Json(openai::error(404, &message))).into_response()
}

/// Records the request, then answers it from the script, the responder, or with a 500.
async fn answer(shared: &Arc<Shared>, wire: Wire, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let request = RecordedRequest::new(wire, uri.path(), headers, body);
    let number = {
        let mut requests = lock(&shared.requests);
        requests.push(request.clone());
        requests.len()
    };
    if !request.body.is_object() {
        return error_response(wire, 400, "fake model: the request body is not a JSON object");
    }
    let scripted = lock(&shared.script).pop_front();
    let reply = match scripted {
        Some(reply) => reply,
        None => {
            let responder = lock(&shared.responder).clone();
            match responder {
                Some(responder) => responder(&request),
                None => {
                    let message = format!("fake model: script exhausted (request {number} to {})", request.path);
                    return error_response(wire, 500, &message);
                }
            }
        }
    };
    let seq = shared.answers.fetch_add(1, Ordering::Relaxed) + 1;
    render(reply, wire, &request, body.len(), seq, Arc::clone(&shared.streamed)).await
}

/// A successful answer as the wire formats render it.
struct Answer {
    seq: u64,
    created: u64,
    model: String,
    text: String,
    calls: Vec<(String, Value)>,
    input_tokens: u64,
    output_tokens: u64,
}

/// Turns a scripted reply into the HTTP response, after its delay.
async fn render(
    reply: FakeReply,
    wire: Wire,
    request: &RecordedRequest,
    body_len: usize,
    seq: u64,
    streamed: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
) -> Response {
    let FakeReply { kind, delay, chunk_delay, headers, usage } = reply;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = match kind {
        ReplyKind::Hang => return std::future::pending().await,
        ReplyKind::Status { code, message } => {
            let message = message.unwrap_or_else(|| format!("fake model: scripted HTTP {code}"));
            error_response(wire, code, &message)
        }
        ReplyKind::Garbage(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        ReplyKind::Answer { text, calls } => {
            let output_len =
                text.len() + calls.iter().map(|(name, args)| name.len() + args.to_string().len()).sum::<usize>();
            let (input_tokens, output_tokens) =
                usage.unwrap_or((estimate_tokens(body_len), estimate_tokens(output_len)));
            let answer = Answer {
                seq,
                created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()),
                model: request.model().unwrap_or("fake-model").to_owned(),
                text,
                calls,
                input_tokens,
                output_tokens,
            };
            match (wire, request.stream) {
                (Wire::OpenAi, false) => axum::Json(openai::completion(&answer)).into_response(),
                (Wire::Anthropic, false) => axum::Json(anthropic::message(&answer)).into_response(),
                (Wire::OpenAi, true) => event_stream(openai::events(&answer), chunk_delay, streamed),
                (Wire::Anthropic, true) => event_stream(anthropic::events(&answer), chunk_delay, streamed),
            }
        }
    };
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Four bytes per token, at least one.
fn estimate_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes / 4).unwrap_or(u64::MAX).max(1)
}

/// A provider-style JSON error response.
fn error_response(wire: Wire, code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match wire {
        Wire::OpenAi => openai::error(status.as_u16(), message),
        Wire::Anthropic => anthropic::error(status.as_u16(), message),
    };
    (status, axum::Json(body)).into_response()
}

/// A `text/event-stream` response sending each event as its own chunk, noting each in
/// `streamed` as it goes.
fn event_stream(
    events: Vec<String>,
    pace: Option<std::time::Duration>,
    streamed: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
) -> Response {
    let chunks = futures::stream::iter(events).then(move |event| {
        let streamed = Arc::clone(&streamed);
        async move {
            if let Some(pace) = pace {
                tokio::time::sleep(pace).await;
            }
            lock(&streamed).push((std::time::Instant::now(), event.clone()));
            Ok::<_, Infallible>(Bytes::from(event))
        }
    });
    let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
    (headers, Body::from_stream(chunks)).into_response()
}

/// A TCP listener whose connections all fail once the server stops, so dropping the server also
/// ends requests that are still being answered (a hanging reply, a slow stream).
struct StoppableListener {
    inner: TcpListener,
    stop: CancellationToken,
}

impl Listener for StoppableListener {
    type Io = StoppableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        (StoppableStream { inner: stream, stopped: Box::pin(self.stop.clone().cancelled_owned()) }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that reads and writes as its TCP stream until the server stops, then fails.
struct StoppableStream {
    inner: TcpStream,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl StoppableStream {
    /// Ready with an error once the server has stopped, registering for the wake-up otherwise.
    fn poll_stopped(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.stopped.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::ConnectionAborted, "fake model server stopped"))
    }
}

impl AsyncRead for StoppableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StoppableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_stopped(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

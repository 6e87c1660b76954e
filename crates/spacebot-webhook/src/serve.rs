//! Serving the API over TCP: one task per connection, under a cap, with timeouts for clients
//! that are slow or send nothing.
//!
//! `axum::serve` has neither a connection limit nor read timeouts, so a few thousand idle
//! connections once made `/health` stop answering, silently. This loop drives hyper's HTTP/1
//! connections itself:
//!
//! - **Header read timeout.** A client has `header_read_timeout` to send a request head, from
//!   the accept or from the end of its previous response: a partial head is answered `408`, a
//!   connection that sent nothing is closed without an answer (as an idle keep-alive connection
//!   is).
//! - **Body read timeout.** The body must arrive within `body_read_timeout` of the head; a
//!   handler reading it past that gets [`BodyReadTimeout`] and answers `408`.
//! - **Head size.** A head over `max_header_bytes` is answered `431` by hyper's parser.
//! - **Connection cap.** At `max_connections`, a new connection takes the place of the one idle
//!   longest (no request in progress: nothing sent yet, a slow head, or kept alive between
//!   requests), which is closed. Only when every connection has a request in progress (event
//!   streams) is the newcomer answered `503` and closed. Reaching the cap is logged, at most once
//!   a minute, with counts, never once per connection.
//!
//! Shutdown stops accepting and asks every connection to close once its request is answered.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::Service;

/// At most one "connection cap reached" (or accept failure) line per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The pause after a failed `accept` (out of file descriptors, say), so the loop doesn't spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long writing a `408` to a connection that is being closed may take.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// How much a refused connection's early request is drained before the close, so the close is a
/// FIN the client reads after the `503`, not a reset that may discard it.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// How much the HTTP server lets a client hold, and for how long.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeLimits {
    /// Most connections open at once (at least 1). At the cap a new connection replaces the
    /// connection idle longest; if every one has a request in progress, it is answered `503`.
    pub max_connections: usize,
    /// How long a client has to send a request head, counted from the accept or from the end of
    /// the previous response on the connection; a partial head is then answered `408`, an idle
    /// connection closed.
    pub header_read_timeout: Duration,
    /// How long a client has to send a request body, counted from the end of its head; a
    /// handler still reading then answers `408`.
    pub body_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; beyond it, `431`.
    pub max_header_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ServeLimits {
    /// Sets the connection cap (a cap of 0 counts as 1).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets how long a client has to send a request head.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets how long a client has to send a request body.
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Sets the largest accepted request head, in bytes.
    pub fn with_max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }
}

/// The error a request body gives when it did not arrive within the body read timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub(crate) struct BodyReadTimeout(pub(crate) Duration);

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled; then stops
/// accepting, lets each connection finish the request it is answering, and returns when every
/// connection is closed (an event stream never ends by itself: callers bound the wait).
///
/// Returns an error only if the listener's address can't be read; failed accepts are logged and
/// retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        body_read_timeout = ?limits.body_read_timeout,
        max_header_bytes = limits.max_header_bytes,
        "HTTP API listening"
    );
    let mut server = Server::new(router, limits, shutdown.clone());
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(ended) = server.tasks.join_next_with_id() => server.reap(ended),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => server.admit(stream, peer),
                Err(error) => {
                    server.accept_failed(&error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    // Each connection task saw the same cancellation and is closing its connection.
    while let Some(ended) = server.tasks.join_next_with_id().await {
        server.reap(ended);
    }
    Ok(())
}

/// The accept loop's state: the connection tasks and what it knows of each.
struct Server {
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// The live (not evicted) connections, by task.
    connections: HashMap<tokio::task::Id, Arc<Activity>>,
    /// Orders activity: a connection's `idle_since` is a tick of this clock, so ties can't happen.
    ticks: Arc<AtomicU64>,
    cap: CapLog,
    accept_log: Option<Instant>,
}

impl Server {
    fn new(router: Router, limits: ServeLimits, shutdown: CancellationToken) -> Self {
        Self {
            router,
            limits,
            shutdown,
            tasks: JoinSet::new(),
            connections: HashMap::new(),
            ticks: Arc::new(AtomicU64::new(0)),
            cap: CapLog::default(),
            accept_log: None,
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let cap = self.limits.max_connections.max(1);
        if self.connections.len() >= cap {
            match self.longest_idle() {
                Some(id) => {
                    if let Some(activity) = self.connections.remove(&id) {
                        activity.evict.cancel();
                    }
                    self.cap.evicted += 1;
                    self.cap.note(cap, self.connections.len());
                }
                None => {
                    refuse(stream);
                    self.cap.refused += 1;
                    self.cap.note(cap, self.connections.len());
                    return;
                }
            }
        }
        let activity = Arc::new(Activity::new(self.ticks.clone()));
        let connection = Connection {
            stream,
            peer,
            router: self.router.clone(),
            limits: self.limits.clone(),
            activity: activity.clone(),
            shutdown: self.shutdown.clone(),
        };
        let handle = self.tasks.spawn(connection.run());
        self.connections.insert(handle.id(), activity);
    }

    /// The connection with no request in progress that has been idle longest.
    fn longest_idle(&self) -> Option<tokio::task::Id> {
        self.connections
            .iter()
            .filter(|(_, activity)| activity.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, activity)| activity.idle_since.load(Ordering::Acquire))
            .map(|(id, _)| *id)
    }

    fn reap(&mut self, ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        match ended {
            Ok((id, ())) => {
                self.connections.remove(&id);
            }
            Err(error) => {
                // A handler panicked (axum doesn't catch panics) and took its connection down.
                self.connections.remove(&error.id());
                tracing::error!(%error, "an HTTP connection task failed");
            }
        }
    }

    fn accept_failed(&mut self, error: &std::io::Error) {
        let now = Instant::now();
        if self.accept_log.is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL) {
            self.accept_log = Some(now);
            tracing::warn!(%error, open_connections = self.connections.len(), "can't accept HTTP connections");
        }
    }
}

/// Counts of what the cap did since the last log line about it.
#[derive(Default)]
struct CapLog {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
}

impl CapLog {
    fn note(&mut self, max_connections: usize, open: usize) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_INTERVAL) {
            return;
        }
        tracing::warn!(
            max_connections,
            open,
            evicted = self.evicted,
            refused = self.refused,
            "HTTP connection cap reached: closed the longest-idle connections (evicted) and answered 503 when \
             all were busy (refused), counted since the last such line"
        );
        self.last = Some(now);
        self.evicted = 0;
        self.refused = 0;
    }
}

/// What the accept loop knows of a connection, updated by its task.
struct Activity {
    /// Requests being answered, their response bodies included.
    in_flight: AtomicUsize,
    /// The tick at which the connection last became idle (accepted, or a response ended).
    idle_since: AtomicU64,
    ticks: Arc<AtomicU64>,
    /// Cancelled to close the connection at once, to make room for a new one.
    evict: CancellationToken,
}

impl Activity {
    fn new(ticks: Arc<AtomicU64>) -> Self {
        let idle_since = AtomicU64::new(ticks.fetch_add(1, Ordering::AcqRel));
        Self { in_flight: AtomicUsize::new(0), idle_since, ticks, evict: CancellationToken::new() }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// A request in progress; dropped when its response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.ticks.fetch_add(1, Ordering::AcqRel), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServeLimits,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self) {
        let Self { stream, peer, router, limits, activity, shutdown } = self;
        let service =
            ConnectionService { router, peer, activity: activity.clone(), body_read_timeout: limits.body_read_timeout };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes);
        let mut connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                biased;
                // Dropping the connection closes the socket at once.
                () = activity.evict.cancelled() => return,
                () = shutdown.cancelled(), if !closing => {
                    closing = true;
                    Pin::new(&mut connection).graceful_shutdown();
                }
                result = &mut connection => break result,
            }
        };
        let Err(error) = result else { return };
        if error.is_timeout() {
            // hyper gave up on a partial head (an idle connection ends without an error): say
            // why before closing.
            let mut stream = connection.into_parts().io.into_inner();
            let answer = raw_answer(
                "408 Request Timeout",
                &format!(
                    "the request head did not arrive within {} s; send it whole, then the body",
                    limits.header_read_timeout.as_secs_f64()
                ),
            );
            let farewell = async {
                stream.write_all(&answer).await?;
                stream.shutdown().await
            };
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, farewell).await;
        } else {
            tracing::debug!(%peer, %error, "HTTP connection ended with an error");
        }
    }
}

/// Answers `503` to a connection over the cap and closes it, without waiting on the client.
fn refuse(stream: TcpStream) {
    let answer =
        raw_answer("503 Service Unavailable", "the server has too many open connections, all busy; try again shortly");
    // A fresh socket's send buffer takes this small answer whole; if it somehow doesn't, the
    // client gets the close alone.
    let _ = stream.try_write(&answer);
    let mut drained = 0;
    let mut buffer = [0u8; 4096];
    while drained < REFUSAL_DRAIN_BYTES {
        match stream.try_read(&mut buffer) {
            Ok(read) if read > 0 => drained += read,
            _ => break,
        }
    }
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// A whole HTTP/1.1 answer with a JSON error body, closing the connection.
fn raw_answer(status: &str, message: &str) -> Vec<u8> {
    let body = json!({ "error": message }).to_string();
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if status.starts_with("503") {
        answer.push_str("retry-after: 1\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    answer.into_bytes()
}

/// The router as hyper sees it on one connection: it marks each request in progress until its
/// response body is done, puts a deadline on the request body, and tells handlers the peer.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let deadline = self.body_read_timeout;
        let mut request = request.map(|body| Body::new(DeadlineBody::new(body, deadline)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Box::pin(async move {
            // `Router` is always ready, so `call` needs no `poll_ready` first.
            let response = router.call(request).await?;
            Ok(response.map(|body| Body::new(TrackedBody { body, _in_flight: in_flight })))
        })
    }
}

/// A response body that keeps its request counted as in progress until it is done.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyReadTimeout`] if it is still arriving at its deadline.
struct DeadlineBody {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(body: Incoming, timeout: Duration) -> Self {
        Self { body, deadline: Box::pin(tokio::time::sleep(timeout)), timeout }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyReadTimeout(self.timeout).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

//! In a fleet, a request that waits for its conversation's reply (`POST /v1/chat/completions`)
//! is answered by the member running the conversation: the runtime says which one
//! ([`RuntimeHandle::runner_elsewhere`]), and the request goes there as it came, its answer
//! (streamed or whole) coming back as the member sends it.
//!
//! A forwarded request carries [`FORWARDED`], and is never forwarded again: a member that gets
//! one for a conversation it no longer runs answers `503` rather than pass it on. When the member
//! running the conversation can't be reached (it died, and its lease has not expired yet) the
//! request waits and asks again every second, so it is answered here once the lease expired and
//! this member took the conversation, within the lease time.
//!
//! [`RuntimeHandle::runner_elsewhere`]: spacebot_core::RuntimeHandle::runner_elsewhere

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use tokio::time::Instant;

use spacebot_core::{AgentId, ConversationId, RuntimeHandle};

/// The header that marks a request one member sent another.
pub(crate) const FORWARDED: &str = "x-spacebot-forwarded";

/// How long to wait before asking again who runs a conversation whose member can't be reached.
const RETRY: Duration = Duration::from_secs(1);

/// How long a member may take to answer the headers of a forwarded request (its body may take
/// as long as the turn).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The request headers that go along: who asks, what the body is, which conversation.
const KEPT: [HeaderName; 2] = [header::AUTHORIZATION, header::CONTENT_TYPE];

/// Why a request could not be forwarded.
#[derive(Debug)]
pub(crate) enum NotForwarded {
    /// It was forwarded here already, and this member does not run the conversation either.
    Again(String),
    /// The member running the conversation announced no address.
    NoAddress(String),
    /// The member running the conversation could not be reached before `deadline`.
    Unreachable(String, String),
    /// The leases could not be read.
    Store(spacebot_core::Error),
}

impl std::fmt::Display for NotForwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Again(member) => {
                write!(
                    f,
                    "this conversation moved to fleet member {member} while the request was on its way; send it again"
                )
            }
            Self::NoAddress(member) => write!(
                f,
                "this conversation runs on fleet member {member}, which announced no address ([fleet] address)"
            ),
            Self::Unreachable(member, error) => {
                write!(f, "this conversation runs on fleet member {member}, which can't be reached: {error}")
            }
            Self::Store(error) => write!(f, "can't tell which fleet member runs this conversation: {error}"),
        }
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(spacebot_core::tls::client_config())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "can't build the HTTP client that forwards requests in a fleet; using the default");
                reqwest::Client::new()
            })
    })
}

/// Sends the request to the member running the conversation when that is another one; `None`
/// when this member runs it (it holds the lease now), or outside a fleet.
pub(crate) async fn to_runner(
    runtime: &RuntimeHandle,
    agent: &AgentId,
    conversation: &ConversationId,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    deadline: Instant,
) -> Result<Option<Response>, NotForwarded> {
    let forwarded = headers.get(FORWARDED).and_then(|value| value.to_str().ok()).map(str::to_owned);
    loop {
        let Some((member, address)) =
            runtime.runner_elsewhere(agent, conversation).await.map_err(NotForwarded::Store)?
        else {
            return Ok(None);
        };
        if forwarded.is_some() {
            return Err(NotForwarded::Again(member));
        }
        let Some(address) = address else { return Err(NotForwarded::NoAddress(member)) };
        let mut request = client()
            .post(format!("{}{path}", address.trim_end_matches('/')))
            .header(FORWARDED, runtime.member().unwrap_or_default())
            .body(body.clone());
        for name in KEPT.iter().chain(headers.keys().filter(|name| name.as_str().starts_with("x-spacebot-"))) {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => {
                tracing::debug!(%agent, %conversation, %member, "request forwarded to the member running the conversation");
                return Ok(Some(response(answer)));
            }
            Err(error) if Instant::now() + RETRY < deadline => {
                tracing::warn!(%agent, %conversation, %member, %error,
                    "can't reach the member running this conversation; asking again once its lease may have expired");
                tokio::time::sleep(RETRY).await;
            }
            Err(error) => return Err(NotForwarded::Unreachable(member, error.to_string())),
        }
    }
}

/// The member's answer, passed on as it arrives.
fn response(answer: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    if let Some(content_type) = content_type.and_then(|value| header::HeaderValue::from_bytes(value.as_bytes()).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response
}

//! Turning rig's errors into [`LlmErrorKind`]s and one-sentence messages.
//!
//! Classification reads structure, never message text:
//! - a reply the provider made carries its HTTP status ([`ProviderError::provider_response_status`]):
//!   401/403 → `Auth`, 408 → `Timeout`, 429 → `RateLimited`, 5xx → `ServerError`, other 4xx →
//!   `InvalidRequest`; its headers give `Retry-After`;
//! - an error reported inside a successful reply (Anthropic's streamed `error` event) has no
//!   status; its machine code (`error.type` / `error.code` in the body, which rig extracts) decides,
//!   else rig's own retry verdict;
//! - a transport failure without a reply is a `reqwest::Error` inside rig's
//!   `http_client::Error::Instance`: `is_timeout()` → `Timeout`, a certificate rustls refused
//!   (`rustls::Error::InvalidCertificate` in the chain) → `Untrusted`, which is not retried,
//!   anything else (connect refused, DNS, reset) → `Unreachable`, except a client that could not
//!   be built (`is_builder()`);
//! - a body rig could not decode (`Json`, `Response`, wrong content type) → `InvalidResponse`,
//!   which is not retried: the same server will most likely send the same garbage again;
//! - a reply that never reached the provider's end (`Truncated`) depends on how it was read: a
//!   whole (unary) body that holds no complete answer (`{}`, an unknown shape) is an
//!   `InvalidResponse`; an event stream that stopped early was cut off (a dropped connection, a
//!   crashed server), a `ServerError`, which is retried.

use std::error::Error as StdError;
use std::time::Duration;

use rig_core::error::ProviderError;
use rig_core::http_client;

use spacebot_core::{BoxError, LlmError, LlmErrorKind};

/// The longest piece of a provider's error body quoted in a message.
const MAX_DETAIL_CHARS: usize = 300;

/// One failed attempt, classified, before it is phrased for a provider.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong.
    pub(crate) kind: LlmErrorKind,
    /// The HTTP status of the provider's reply, when there was one.
    pub(crate) status: Option<u16>,
    /// A short cause, quoted at the end of the message.
    pub(crate) detail: String,
    /// How long the provider asked us to wait.
    pub(crate) retry_after: Option<Duration>,
    /// The underlying error.
    pub(crate) source: Option<BoxError>,
}

impl Failure {
    /// A failure with no underlying error.
    pub(crate) fn new(kind: LlmErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, status: None, detail: detail.into(), retry_after: None, source: None }
    }

    /// Our own per-attempt deadline passed.
    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::new(LlmErrorKind::Timeout, format!("no answer within {}", format_duration(after)))
    }

    /// The error for `provider` at `base_url`, after `attempts` attempts.
    pub(crate) fn into_error(self, provider: &str, base_url: &str, attempts: u32) -> LlmError {
        let status = self.status.map(|status| format!(" (HTTP {status})")).unwrap_or_default();
        let detail = if self.detail.is_empty() { String::new() } else { format!(": {}", self.detail) };
        let at = format!("provider '{provider}' at {base_url}");
        let mut message = match self.kind {
            LlmErrorKind::Unreachable => format!("can't reach {at}{detail}"),
            LlmErrorKind::Untrusted => format!(
                "{at} presented a TLS certificate that isn't trusted{detail} (trust its authority in the system's \
                 store or name a bundle with SSL_CERT_FILE, or fix `base_url`)"
            ),
            LlmErrorKind::Timeout => format!("{at} timed out{status}{detail}"),
            LlmErrorKind::RateLimited => format!("{at} is rate limiting requests{status}{detail}"),
            LlmErrorKind::ServerError => format!("{at} failed with a server error{status}{detail}"),
            LlmErrorKind::Auth => format!("{at} rejected the API key{status}{detail}"),
            LlmErrorKind::InvalidRequest if self.status.is_some() => {
                format!("{at} rejected the request{status}{detail}")
            }
            LlmErrorKind::InvalidRequest => format!("can't build a request for {at}{detail}"),
            LlmErrorKind::InvalidResponse => format!("{at} sent a reply that can't be read{status}{detail}"),
            _ => format!("{at} failed{status}{detail}"),
        };
        if attempts > 1 {
            message.push_str(&format!(" (gave up after {attempts} attempts)"));
        }
        let mut error = LlmError::new(self.kind, message);
        if let Some(retry_after) = self.retry_after {
            error = error.with_retry_after(retry_after);
        }
        if let Some(source) = self.source {
            error = error.with_source(source);
        }
        error
    }
}

/// How the failed reply was being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// One whole body.
    Unary,
    /// An event stream.
    Streaming,
}

/// Classifies one rig error from a reply read as `reading`.
pub(crate) fn classify(error: ProviderError, reading: Reading) -> Failure {
    let (kind, status, detail) = match &error {
        ProviderError::Http(transport) => {
            let (kind, detail) = classify_transport(transport);
            (kind, transport.non_success_status().map(|s| s.as_u16()), detail)
        }
        ProviderError::InvalidAuthentication(response) => {
            (LlmErrorKind::Auth, response.status.map(|s| s.as_u16()), body_detail(&response.body))
        }
        ProviderError::ProviderResponse(response) => {
            let status = response.status.filter(|status| !status.is_success()).map(|s| s.as_u16());
            let kind = match status {
                Some(status) => kind_for_status(status),
                None => kind_for_code(response.machine_code().as_deref(), error.is_retryable()),
            };
            (kind, status, body_detail(&response.body))
        }
        ProviderError::Relayed(report) => {
            let status = report.http_status.filter(|status| !(200..300).contains(status));
            let kind = match status {
                Some(status) => kind_for_status(status),
                None => kind_for_code(report.code.as_deref(), report.retryable),
            };
            (kind, status, one_line(&report.message))
        }
        ProviderError::Json(inner) => (LlmErrorKind::InvalidResponse, None, format!("invalid JSON ({inner})")),
        ProviderError::Response(message) => (LlmErrorKind::InvalidResponse, None, one_line(message)),
        ProviderError::Truncated if reading == Reading::Unary => {
            (LlmErrorKind::InvalidResponse, None, "the body holds no complete answer".to_owned())
        }
        ProviderError::Truncated => {
            (LlmErrorKind::ServerError, None, "the stream ended before the provider finished its answer".to_owned())
        }
        ProviderError::Url(inner) => (LlmErrorKind::InvalidRequest, None, one_line(&inner.to_string())),
        ProviderError::Request(inner) => (LlmErrorKind::InvalidRequest, None, one_line(&inner.to_string())),
        ProviderError::UnsupportedOption(option) => (LlmErrorKind::InvalidRequest, None, one_line(&option.to_string())),
        ProviderError::CacheExpired { response, .. } => {
            (LlmErrorKind::InvalidRequest, response.status.map(|s| s.as_u16()), body_detail(&response.body))
        }
        other => (LlmErrorKind::InvalidResponse, None, one_line(&other.to_string())),
    };
    let retry_after = error.provider_response_headers().and_then(retry_after);
    Failure { kind, status, detail, retry_after, source: Some(Box::new(error)) }
}

/// The kind for a non-success HTTP status.
fn kind_for_status(status: u16) -> LlmErrorKind {
    match status {
        401 | 403 => LlmErrorKind::Auth,
        408 => LlmErrorKind::Timeout,
        429 => LlmErrorKind::RateLimited,
        500..=599 => LlmErrorKind::ServerError,
        400..=499 => LlmErrorKind::InvalidRequest,
        _ => LlmErrorKind::InvalidResponse,
    }
}

/// The kind for an error reported without an HTTP status, from the machine code the provider put
/// in its error body (OpenAI's `error.code`/`error.type`, Anthropic's `error.type`).
fn kind_for_code(code: Option<&str>, retryable: bool) -> LlmErrorKind {
    match code {
        Some("rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota") => LlmErrorKind::RateLimited,
        Some("overloaded_error" | "api_error" | "server_error" | "service_unavailable") => LlmErrorKind::ServerError,
        Some("authentication_error" | "permission_error" | "invalid_api_key") => LlmErrorKind::Auth,
        Some("invalid_request_error" | "not_found_error" | "request_too_large") => LlmErrorKind::InvalidRequest,
        _ if retryable => LlmErrorKind::ServerError,
        _ => LlmErrorKind::InvalidResponse,
    }
}

/// Classifies a failure that produced no reply.
fn classify_transport(error: &http_client::Error) -> (LlmErrorKind, String) {
    match error {
        http_client::Error::InvalidStatusCodeWithDetails { status, body, .. } => {
            (kind_for_status(status.as_u16()), body_detail(body))
        }
        http_client::Error::InvalidContentType(content_type) => (
            LlmErrorKind::InvalidResponse,
            format!("expected an event stream, got content type {:?}", content_type.to_str().unwrap_or("?")),
        ),
        http_client::Error::NoHeaders => (LlmErrorKind::InvalidResponse, one_line(&error.to_string())),
        http_client::Error::Protocol(_) | http_client::Error::InvalidHeaderValue(_) => {
            (LlmErrorKind::InvalidRequest, one_line(&error.to_string()))
        }
        http_client::Error::StreamEnded => (LlmErrorKind::Unreachable, "the connection closed early".to_owned()),
        http_client::Error::Instance(inner) => match find_reqwest(inner.as_ref()) {
            Some(reqwest) if reqwest.is_timeout() => (LlmErrorKind::Timeout, root_cause(inner.as_ref())),
            Some(reqwest) if reqwest.is_builder() => (LlmErrorKind::InvalidRequest, root_cause(inner.as_ref())),
            _ if let Some(refused) = refused_certificate(inner.as_ref()) => {
                (LlmErrorKind::Untrusted, format!("invalid peer certificate: {refused:?}"))
            }
            Some(reqwest) if reqwest.is_connect() => (LlmErrorKind::Unreachable, connect_cause(inner.as_ref())),
            // A failure after connecting (a reset, a body cut off): no reply, worth retrying.
            _ => (LlmErrorKind::Unreachable, format!("the connection failed: {}", root_cause(inner.as_ref()))),
        },
    }
}

/// The `reqwest::Error` in `error`'s chain, if any.
fn find_reqwest<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a reqwest::Error> {
    let mut current = Some(error);
    while let Some(link) = current {
        if let Some(found) = link.downcast_ref::<reqwest::Error>() {
            return Some(found);
        }
        current = link.source();
    }
    None
}

/// The reason rustls refused the server's certificate, if that is what `error` comes down to.
/// rustls reports it inside an `io::Error` (which hyper wraps in another), and an `io::Error`'s
/// `source()` skips the error it wraps, so the walk opens each `io::Error` instead.
fn refused_certificate<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::CertificateError> {
    let mut current = Some(error);
    while let Some(link) = current {
        if let Some(rustls::Error::InvalidCertificate(reason)) = link.downcast_ref::<rustls::Error>() {
            return Some(reason);
        }
        current = match link.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
            None => link.source(),
        };
    }
    None
}

/// Why a connection could not be made, shortly: the OS error's kind when there is one, else the
/// innermost message (a DNS failure's, say).
fn connect_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = Some(error);
    while let Some(link) = current {
        if let Some(io) = link.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => return "connection timed out".to_owned(),
                _ => {}
            }
        }
        current = link.source();
    }
    root_cause(error)
}

/// The innermost error's message.
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut innermost = error;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    one_line(&innermost.to_string())
}

/// The useful part of an error body: `error.message` (OpenAI, Anthropic), a top-level `message`
/// or string `error`, else the body itself, shortened to one line.
fn body_detail(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value
            .pointer("/error/message")
            .or_else(|| value.get("message"))
            .or_else(|| value.get("error").filter(|error| error.is_string()))
            .or_else(|| value.get("detail"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    });
    one_line(&message.unwrap_or_else(|| body.to_owned()))
}

/// `text` on one line, at most [`MAX_DETAIL_CHARS`] characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= MAX_DETAIL_CHARS {
        return joined;
    }
    let mut shortened: String = joined.chars().take(MAX_DETAIL_CHARS).collect();
    shortened.push('…');
    shortened
}

/// The delay a reply asks for: `retry-after-ms` (OpenAI, Azure), then `Retry-After` as seconds or
/// an HTTP date.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    if let Some(millis) = header("retry-after-ms").and_then(|value| value.parse::<f64>().ok())
        && millis.is_finite()
        && millis >= 0.0
    {
        return Some(Duration::from_secs_f64(millis / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A duration as people write it: `300ms`, `2s`, `1.5s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_unary(error: ProviderError) -> Failure {
        classify(error, Reading::Unary)
    }

    fn response_error(status: u16, body: &str) -> ProviderError {
        ProviderError::from_http_response(http::StatusCode::from_u16(status).unwrap(), body)
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(classify_unary(response_error(429, "{}")).kind, LlmErrorKind::RateLimited);
        assert_eq!(classify_unary(response_error(503, "")).kind, LlmErrorKind::ServerError);
        assert_eq!(classify_unary(response_error(401, "")).kind, LlmErrorKind::Auth);
        assert_eq!(classify_unary(response_error(403, "")).kind, LlmErrorKind::Auth);
        assert_eq!(classify_unary(response_error(408, "")).kind, LlmErrorKind::Timeout);
        assert_eq!(classify_unary(response_error(400, "")).kind, LlmErrorKind::InvalidRequest);
        assert_eq!(classify_unary(response_error(404, "")).kind, LlmErrorKind::InvalidRequest);
        assert_eq!(classify(ProviderError::Truncated, Reading::Streaming).kind, LlmErrorKind::ServerError);
        assert_eq!(classify_unary(ProviderError::Truncated).kind, LlmErrorKind::InvalidResponse);
        assert_eq!(classify_unary(ProviderError::Response("bad".into())).kind, LlmErrorKind::InvalidResponse);
    }

    #[test]
    fn statusless_errors_use_the_body_code() {
        let overloaded = ProviderError::from_provider_body(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let failure = classify(overloaded, Reading::Streaming);
        assert_eq!(failure.kind, LlmErrorKind::ServerError);
        assert_eq!(failure.detail, "Overloaded");
        let invalid = ProviderError::from_provider_body(r#"{"error":{"type":"invalid_request_error","message":"no"}}"#);
        assert_eq!(classify(invalid, Reading::Streaming).kind, LlmErrorKind::InvalidRequest);
    }

    #[test]
    fn messages_name_provider_url_status_and_cause() {
        let failure = classify_unary(response_error(401, r#"{"error":{"message":"Incorrect API key provided"}}"#));
        let error = failure.into_error("main", "http://127.0.0.1:1/v1", 1);
        assert_eq!(
            error.to_string(),
            "provider 'main' at http://127.0.0.1:1/v1 rejected the API key (HTTP 401): Incorrect API key provided"
        );
        let error = classify_unary(response_error(500, "boom\n  again")).into_error("main", "http://x", 4);
        assert_eq!(
            error.to_string(),
            "provider 'main' at http://x failed with a server error (HTTP 500): boom again (gave up after 4 attempts)"
        );
    }

    #[test]
    fn retry_after_reads_seconds_millis_and_dates() {
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", http::HeaderValue::from_static("150"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", http::HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn retry_after_reaches_the_error() {
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("3"));
        let error = response_error(429, "slow down").with_response_headers(Some(headers));
        let failure = classify_unary(error);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(failure.into_error("p", "u", 1).retry_after(), Some(Duration::from_secs(3)));
    }

    /// A transport failure as rig reports it: `error` wrapped the way hyper and tokio-rustls wrap
    /// a failed handshake (an `io::Error` inside a connection error).
    fn transport_failure(error: std::io::Error) -> ProviderError {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Connect(#[source] std::io::Error);
        ProviderError::Http(http_client::Error::instance(Connect(error)).into())
    }

    #[test]
    fn a_refused_certificate_is_untrusted_and_not_retried_while_other_failures_are() {
        // As hyper reports it: tokio-rustls's `io::Error` inside one of hyper's own.
        let refused = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let failure = classify_unary(transport_failure(refused));
        assert_eq!(failure.kind, LlmErrorKind::Untrusted);
        assert!(!failure.kind.is_transient());
        let message = failure.into_error("main", "https://10.0.0.5/v1", 1).to_string();
        assert!(message.contains("provider 'main' at https://10.0.0.5/v1"), "{message}");
        assert!(message.contains("isn't trusted: invalid peer certificate: UnknownIssuer"), "{message}");
        assert!(message.contains("SSL_CERT_FILE"), "{message}");

        // Another handshake failure (the server speaks no TLS) is still worth retrying.
        let garbled = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(classify_unary(transport_failure(garbled)).kind, LlmErrorKind::Unreachable);
        let refused_connection = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_unary(transport_failure(refused_connection)).kind, LlmErrorKind::Unreachable);
    }

    #[test]
    fn long_bodies_are_shortened() {
        let detail = body_detail(&"x".repeat(1000));
        assert_eq!(detail.chars().count(), MAX_DETAIL_CHARS + 1);
    }
}

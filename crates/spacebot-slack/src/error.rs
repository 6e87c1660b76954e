//! Turning slack-morphism's errors into [`AdapterError`]s with a kind decided here.

use slack_morphism::errors::SlackClientError;

use spacebot_core::{AdapterError, AdapterErrorKind};

/// Slack error codes worth retrying (Slack documents these per method; all others mean the call
/// itself is wrong: bad auth, unknown channel, missing scope).
const TRANSIENT_CODES: &[&str] =
    &["ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"];

/// Classifies a Web API or Socket Mode error from the adapter `adapter`.
///
/// Transient: rate limits, HTTP 5xx, connection failures, Slack's documented temporary error
/// codes. Permanent: every other Slack error code (`invalid_auth`, `channel_not_found`,
/// `not_in_channel`, ...), other 4xx, and responses that don't parse. Decided on the error
/// variant, the HTTP status and Slack's error code, never on message text.
pub fn classify(adapter: &str, error: SlackClientError) -> AdapterError {
    let kind = match &error {
        SlackClientError::ApiError(api) if TRANSIENT_CODES.contains(&api.code.as_str()) => AdapterErrorKind::Transient,
        SlackClientError::ApiError(_) => AdapterErrorKind::Permanent,
        SlackClientError::HttpError(http) => {
            let status = http.status_code.as_u16();
            if status == 429 || status >= 500 { AdapterErrorKind::Transient } else { AdapterErrorKind::Permanent }
        }
        SlackClientError::ProtocolError(_) => AdapterErrorKind::Permanent,
        SlackClientError::RateLimitError(_)
        | SlackClientError::HttpProtocolError(_)
        | SlackClientError::EndOfStream(_)
        | SlackClientError::SystemError(_)
        | SlackClientError::SocketModeProtocolError(_) => AdapterErrorKind::Transient,
    };
    AdapterError::new(kind, adapter, format!("Slack call failed: {error}")).with_source(error)
}

#[cfg(test)]
mod tests {
    use slack_morphism::errors::{SlackClientApiError, SlackClientHttpError, SlackRateLimitError};

    use super::*;

    #[test]
    fn kinds_follow_codes_and_statuses() {
        let api = |code: &str| SlackClientError::ApiError(SlackClientApiError::new(code.to_owned()));
        assert_eq!(classify("slack", api("channel_not_found")).kind(), AdapterErrorKind::Permanent);
        assert_eq!(classify("slack", api("invalid_auth")).kind(), AdapterErrorKind::Permanent);
        assert_eq!(classify("slack", api("internal_error")).kind(), AdapterErrorKind::Transient);
        let http = |status: u16| {
            SlackClientError::HttpError(SlackClientHttpError::new(http::StatusCode::from_u16(status).unwrap()))
        };
        assert_eq!(classify("slack", http(503)).kind(), AdapterErrorKind::Transient);
        assert_eq!(classify("slack", http(404)).kind(), AdapterErrorKind::Permanent);
        let limited = SlackClientError::RateLimitError(SlackRateLimitError::new());
        assert_eq!(classify("slack", limited).kind(), AdapterErrorKind::Transient);
    }
}

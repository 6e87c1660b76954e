//! API errors: each is a status code and a one-sentence JSON `{"error": "..."}` body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed; the text names the field or problem.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The token is valid but may not do this; the text says what it lacks.
    #[error("{0}")]
    Forbidden(String),
    /// No such agent.
    #[error("{0}")]
    NotFound(String),
    /// The body is over the limit.
    #[error("request body is larger than the {0}-byte limit")]
    TooLarge(usize),
    /// The body is not JSON.
    #[error("expected a JSON body with content-type application/json")]
    UnsupportedMediaType,
    /// The client was too slow sending its request (the body, past the body read timeout).
    #[error("{0}")]
    RequestTimeout(String),
    /// The runtime is shutting down.
    #[error("the daemon is shutting down")]
    Unavailable,
    /// Something failed inside the daemon.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A result whose error is an [`ApiError`] unless said otherwise.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl From<spacebot_core::Error> for ApiError {
    fn from(error: spacebot_core::Error) -> Self {
        match error {
            spacebot_core::Error::UnknownAgent(_) => Self::NotFound(error.to_string()),
            spacebot_core::Error::ShuttingDown => Self::Unavailable,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(message) = &self {
            tracing::error!(%message, "API request failed");
        }
        let mut response = (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::RequestTimeout(_)) {
            // The rest of the body may still be on its way: don't read it as the next request.
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}

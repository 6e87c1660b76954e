//! Turning Bot API failures into [`AdapterError`]s, and waiting out rate limits.

use std::future::Future;
use std::time::Duration;

use crate::client::CallError as Error;

use spacebot_core::{AdapterError, AdapterErrorKind};

/// The longest `retry_after` waited out inside one call; a longer one is returned as a transient
/// error for the outbox to retry later.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// Classifies a Bot API error from the adapter `adapter`.
///
/// Transient: 429 (rate limited), 5xx, connection failures and answers that are not the Bot API's
/// JSON (a proxy's error page while Telegram is unreachable). Permanent: every other error code
/// (401 bad token, 400 bad request, 403 blocked by the user, 404, 409 another poller or a
/// webhook). Decided on the error code, never on message text.
pub fn classify(adapter: &str, error: Error) -> AdapterError {
    let (kind, what) = match &error {
        Error::Api(api) => {
            let transient = api.error_code == 429 || api.error_code >= 500;
            let kind = if transient { AdapterErrorKind::Transient } else { AdapterErrorKind::Permanent };
            let mut what = format!("Telegram refused the call ({}: {})", api.error_code, api.description);
            if let Some(chat) = api.parameters.as_ref().and_then(|p| p.migrate_to_chat_id) {
                what.push_str(&format!("; the group is now the supergroup {chat}"));
            }
            (kind, what)
        }
        Error::Http(_) | Error::Decode { .. } => {
            (AdapterErrorKind::Transient, format!("Telegram could not be reached: {error}"))
        }
        _ => (AdapterErrorKind::Permanent, format!("Telegram call failed: {error}")),
    };
    AdapterError::new(kind, adapter, what).with_source(error)
}

/// How long Telegram asks to wait before the next call, when it rate limited this one.
pub(crate) fn retry_after(error: &Error) -> Option<Duration> {
    match error {
        Error::Api(api) if api.error_code == 429 => {
            let seconds = api.parameters.as_ref().and_then(|p| p.retry_after).unwrap_or(1);
            Some(Duration::from_secs(u64::from(seconds.max(1))))
        }
        _ => None,
    }
}

/// Runs `call`, waiting out up to `retries` rate limits for as long as Telegram's `retry_after`
/// says (each at most [`MAX_RETRY_WAIT`]).
pub(crate) async fn with_retries<T, F, Fut>(retries: usize, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => match retry_after(&error) {
                Some(wait) if attempt < retries && wait <= MAX_RETRY_WAIT => {
                    tracing::debug!(wait_secs = wait.as_secs(), attempt, "Telegram rate limited a call; waiting");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use frankenstein::response::{ErrorResponse, ResponseParameters};

    use super::*;

    fn api(code: u64, retry_after: Option<u16>) -> Error {
        Error::Api(ErrorResponse {
            ok: false,
            description: "test".into(),
            error_code: code,
            parameters: Some(ResponseParameters { migrate_to_chat_id: None, retry_after }),
        })
    }

    #[test]
    fn kinds_follow_error_codes() {
        assert_eq!(classify("telegram", api(429, Some(3))).kind(), AdapterErrorKind::Transient);
        assert_eq!(classify("telegram", api(502, None)).kind(), AdapterErrorKind::Transient);
        assert_eq!(classify("telegram", api(401, None)).kind(), AdapterErrorKind::Permanent);
        assert_eq!(classify("telegram", api(400, None)).kind(), AdapterErrorKind::Permanent);
        assert_eq!(classify("telegram", api(409, None)).kind(), AdapterErrorKind::Permanent);
        let decode = Error::Decode {
            source: serde_json::from_str::<u8>("<html>").expect_err("not JSON"),
            input: "<html>".into(),
        };
        assert_eq!(classify("telegram", decode).kind(), AdapterErrorKind::Transient);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_are_waited_out_for_as_long_as_telegram_says() {
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let result = with_retries(3, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(api(429, Some(7))) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.ok(), Some(2));
        assert_eq!(started.elapsed(), Duration::from_secs(14), "two waits of retry_after = 7 s");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_run_out_and_long_waits_are_not_taken() {
        let calls = AtomicUsize::new(0);
        let result: Result<(), Error> = with_retries(2, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(api(429, Some(1))) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the call and two retries");

        let started = tokio::time::Instant::now();
        let result: Result<(), Error> = with_retries(5, || async { Err(api(429, Some(3600))) }).await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO, "an hour's wait is the outbox's to schedule");

        let other: Result<(), Error> = with_retries(5, || async { Err(api(400, None)) }).await;
        assert!(matches!(other, Err(Error::Api(ref e)) if e.error_code == 400), "other errors are not retried");
    }
}

//! When to retry and how long to wait.
//!
//! Only transient kinds ([`LlmErrorKind::is_transient`](spacebot_core::LlmErrorKind::is_transient):
//! rate limited, server error, timeout, unreachable) are retried, at most `max_retries` times.
//! The wait is the provider's `Retry-After` when it sent one, else an exponential backoff
//! (`initial_backoff * 2^(retry-1)`, capped at `max_backoff`) with jitter in its upper half, so
//! many conversations hitting one limit don't retry in lockstep. A `Retry-After` longer than
//! `max_backoff` is not waited out: the error goes back to the caller at once, carrying the delay.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::classify::Failure;

/// The retry settings of one provider.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub(crate) max_retries: u32,
    /// The first backoff.
    pub(crate) initial_backoff: Duration,
    /// The longest wait.
    pub(crate) max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based) after `failure`, or `None` to give up.
    pub(crate) fn wait_before(&self, retry: u32, failure: &Failure) -> Option<Duration> {
        if !failure.kind.is_transient() || retry > self.max_retries {
            return None;
        }
        match failure.retry_after {
            Some(asked) if asked > self.max_backoff => None,
            Some(asked) => Some(asked),
            None => Some(jitter(self.backoff(retry))),
        }
    }

    /// The backoff before retry number `retry`, without jitter.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// A random duration in `(wait / 2, wait]`.
fn jitter(wait: Duration) -> Duration {
    // A fresh `RandomState` is randomly keyed: a dependency-free source of a few random bits.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let fraction = 0.5 + 0.5 * ((random % 1_000_001) as f64 / 1_000_000.0);
    wait.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacebot_core::LlmErrorKind;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = policy();
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn only_transient_failures_are_retried_and_only_so_often() {
        let policy = policy();
        let server = Failure::new(LlmErrorKind::ServerError, "");
        let wait = policy.wait_before(1, &server).unwrap();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(policy.wait_before(3, &server).is_some());
        assert!(policy.wait_before(4, &server).is_none());
        assert!(policy.wait_before(1, &Failure::new(LlmErrorKind::Auth, "")).is_none());
        assert!(policy.wait_before(1, &Failure::new(LlmErrorKind::InvalidResponse, "")).is_none());
    }

    #[test]
    fn retry_after_is_honoured_unless_it_is_too_long() {
        let policy = policy();
        let mut limited = Failure::new(LlmErrorKind::RateLimited, "");
        limited.retry_after = Some(Duration::from_millis(300));
        assert_eq!(policy.wait_before(1, &limited), Some(Duration::from_millis(300)));
        limited.retry_after = Some(Duration::from_secs(60));
        assert_eq!(policy.wait_before(1, &limited), None);
    }
}

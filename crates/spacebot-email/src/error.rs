//! Turning IMAP and SMTP failures into [`AdapterError`]s with a kind decided here.

use spacebot_core::{AdapterError, AdapterErrorKind};

/// Classifies an IMAP error. Transient: connection failures, a lost connection, answers that
/// don't parse. Permanent: the server refused the command (`NO`, `BAD`: a wrong password, a
/// mailbox that does not exist).
pub fn classify_imap(adapter: &str, doing: &str, error: async_imap::error::Error) -> AdapterError {
    use async_imap::error::Error;
    let kind = match &error {
        Error::No(_) | Error::Bad(_) => AdapterErrorKind::Permanent,
        _ => AdapterErrorKind::Transient,
    };
    AdapterError::new(kind, adapter, format!("IMAP {doing} failed: {error}")).with_source(error)
}

/// Classifies an SMTP error on its reply code: 5xx (and a TLS or client-side failure) is
/// permanent, 4xx, time-outs and connection failures transient.
pub fn classify_smtp(adapter: &str, error: lettre::transport::smtp::Error) -> AdapterError {
    let kind = if error.is_permanent() || error.is_tls() || error.is_client() {
        AdapterErrorKind::Permanent
    } else {
        AdapterErrorKind::Transient
    };
    AdapterError::new(kind, adapter, format!("SMTP failed: {error}")).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_permanent_and_lost_connections_transient() {
        use async_imap::error::Error;
        let refused = classify_imap("email", "login", Error::No("[AUTHENTICATIONFAILED] bad".into()));
        assert_eq!(refused.kind(), AdapterErrorKind::Permanent);
        assert!(refused.to_string().contains("login"), "{refused}");
        assert_eq!(classify_imap("email", "idle", Error::ConnectionLost).kind(), AdapterErrorKind::Transient);
        let io = Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(classify_imap("email", "fetch", io).kind(), AdapterErrorKind::Transient);
    }
}

//! The process's TLS crypto provider (cargo feature `tls`).
//!
//! The workspace builds reqwest without a crypto provider of its own (`rustls-no-provider`), so
//! the binary links one crypto library (ring), not two. reqwest then panics when it builds a
//! client while no provider is installed. Every crate that builds an HTTP client calls
//! [`ensure_crypto_provider`] first, so a program embedding Spacebot that installed none gets
//! ring instead of that panic.

/// Installs ring as the process's rustls crypto provider, unless one is installed already (a
/// program's own choice is kept).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one in between; either way one is installed after this.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_installed_afterwards_and_a_second_call_keeps_it() {
        ensure_crypto_provider();
        let first = rustls::crypto::CryptoProvider::get_default().expect("a provider is installed");
        ensure_crypto_provider();
        let second = rustls::crypto::CryptoProvider::get_default().expect("still installed");
        assert!(std::sync::Arc::ptr_eq(first, second), "the installed provider was replaced");
    }
}

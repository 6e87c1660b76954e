//! TLS for the HTTP clients the crates build (cargo feature `tls`).
//!
//! Every crate that builds a reqwest client gives it [`client_config`]
//! (`ClientBuilder::tls_backend_preconfigured`), for two reasons:
//!
//! - **One crypto library.** The workspace builds reqwest without a crypto provider of its own
//!   (`rustls-no-provider`), so the binary links ring alone. A client built while no provider is
//!   installed would panic; [`client_config`] installs ring first ([`ensure_crypto_provider`]),
//!   so a program embedding Spacebot that installed none gets ring instead of that panic.
//! - **The system's trusted roots, read once and only when needed.** reqwest's own default reads
//!   them each time it builds a client: on Debian, every certificate of
//!   `/etc/ssl/certs/ca-certificates.crt` and again each file of `/etc/ssl/certs`, about 3.7 ms.
//!   That was a quarter of the daemon's start, and it was paid again for each web fetch and each
//!   image download, which build a client each. [`client_config`] is one process-wide
//!   configuration whose verifier reads the roots when it checks its first server certificate,
//!   then keeps them: a daemon whose providers are all on plain `http` never reads them.
//!
//! The roots are the platform's, checked as `rustls-platform-verifier` checks them (what reqwest
//! does by default), so `SSL_CERT_FILE` and `SSL_CERT_DIR` work as before. They are read once per
//! process: a certificate added to the system store is trusted after a restart.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Installs ring as the process's rustls crypto provider, unless one is installed already (a
/// program's own choice is kept).
pub fn ensure_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Another thread may install one in between; either way one is installed after this.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The TLS configuration every HTTP client of the process shares (its session cache too), for
/// reqwest's `ClientBuilder::tls_backend_preconfigured`: the installed crypto provider (ring when
/// none is), TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 offered, and the system's roots read on the
/// first certificate checked (see the module docs).
///
/// reqwest's own TLS settings (`tls_*`, `danger_*`, `http1_only`) do not apply to a client built
/// with it.
pub fn client_config() -> ClientConfig {
    static SHARED: OnceLock<ClientConfig> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            ensure_crypto_provider();
            let installed = CryptoProvider::get_default().cloned();
            installed
                .and_then(|provider| {
                    configure(provider)
                        .inspect_err(|error| {
                            tracing::warn!(%error, "the installed crypto provider can't make a TLS configuration; using ring");
                        })
                        .ok()
                })
                .unwrap_or_else(|| {
                    // Cannot fail: ring's default provider has cipher suites for both TLS 1.2
                    // and 1.3, which is all `with_safe_default_protocol_versions` checks.
                    configure(Arc::new(rustls::crypto::ring::default_provider()))
                        .expect("ring's provider supports TLS 1.2 and 1.3")
                })
        })
        .clone()
}

/// A client configuration on `provider`, checking certificates against the system's roots.
fn configure(provider: Arc<CryptoProvider>) -> Result<ClientConfig, rustls::Error> {
    let verifier = SystemRoots::new(provider.clone());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks server certificates against the system's trusted roots, which it reads on the first
/// certificate it is asked about.
#[derive(Debug)]
struct SystemRoots {
    /// The provider's signature algorithms, for the handshake signatures (no roots needed).
    algorithms: WebPkiSupportedAlgorithms,
    provider: Arc<CryptoProvider>,
    /// The platform's verifier over the roots, once they have been read.
    loaded: OnceLock<rustls_platform_verifier::Verifier>,
}

impl SystemRoots {
    fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { algorithms: provider.signature_verification_algorithms, provider, loaded: OnceLock::new() }
    }

    /// The verifier over the system's roots, reading them now if this is the first certificate.
    /// A failure (no trusted root found at all) is not kept: the next connection reads again.
    fn verifier(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        if let Some(verifier) = self.loaded.get() {
            return Ok(verifier);
        }
        let started = std::time::Instant::now();
        let verifier = rustls_platform_verifier::Verifier::new(self.provider.clone())
            .inspect_err(|error| tracing::warn!(%error, "can't read the system's trusted TLS roots"))?;
        tracing::debug!(elapsed_us = started.elapsed().as_micros(), "read the system's trusted TLS roots");
        // Two first connections at once may both read them; one verifier is kept.
        Ok(self.loaded.get_or_init(|| verifier))
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_installed_afterwards_and_a_second_call_keeps_it() {
        ensure_crypto_provider();
        let first = CryptoProvider::get_default().expect("a provider is installed");
        ensure_crypto_provider();
        let second = CryptoProvider::get_default().expect("still installed");
        assert!(Arc::ptr_eq(first, second), "the installed provider was replaced");
    }

    #[test]
    fn the_configuration_offers_both_http_versions_on_the_installed_provider() {
        let config = client_config();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let installed = CryptoProvider::get_default().expect("installed on the way");
        assert!(Arc::ptr_eq(config.crypto_provider(), installed));
    }

    #[test]
    fn the_roots_are_read_on_the_first_certificate_and_kept() {
        ensure_crypto_provider();
        let provider = CryptoProvider::get_default().expect("installed").clone();
        let roots = SystemRoots::new(provider);
        assert!(roots.loaded.get().is_none(), "made without reading the roots");
        assert!(!roots.supported_verify_schemes().is_empty());

        let name = ServerName::try_from("example.com").expect("a name");
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let error =
            roots.verify_server_cert(&garbage, &[], &name, &[], UnixTime::now()).expect_err("not a certificate");
        assert!(matches!(error, rustls::Error::InvalidCertificate(_)), "{error:?}");
        // This machine has a system store (the https tests need one too), so the roots are kept.
        let first = roots.loaded.get().map(std::ptr::from_ref).expect("read on the first certificate");
        let _ = roots.verify_server_cert(&garbage, &[], &name, &[], UnixTime::now());
        assert_eq!(roots.loaded.get().map(std::ptr::from_ref), Some(first), "read once");
    }
}

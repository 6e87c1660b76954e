//! A provider over https: the daemon's TLS (rustls on ring, the system's trusted certificates)
//! reaches a server whose certificate a trusted authority signed, and refuses one it cannot trust
//! at once, without retrying, telling the user why.
//!
//! The certificates are made with the `openssl` command; the fake model sits behind a TLS
//! terminator of the test's own (tokio-rustls), since the fake speaks plain HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config};

/// A certificate authority and a server certificate it signed for 127.0.0.1, as PEM files.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn make() -> Self {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let openssl = |args: &[&str]| {
            let output =
                Command::new("openssl").args(args).current_dir(dir.path()).output().expect(
                    "this test needs the openssl command (Debian: apt-get install openssl; .ci/run installs it)",
                );
            assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Spacebot test CA"];
        openssl(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
        openssl(
            &[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
        );
        std::fs::write(dir.path().join("server.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
            .expect("write the extensions");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Accepts TLS on a port of its own with `cert`/`key` and passes each connection's bytes to
/// `upstream` (the fake model's plain HTTP port). Counts the connections it accepts.
async fn terminate_tls(
    cert: &Path,
    key: &Path,
    upstream: SocketAddr,
) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).expect("server.pem").collect::<Result<_, _>>().expect("certificates");
    let key = PrivateKeyDer::from_pem_file(key).expect("server.key");
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).expect("config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let Ok(mut plain) = TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, accepted, task)
}

fn upstream(model: &FakeLlmServer) -> SocketAddr {
    let base = model.openai_base_url();
    let host = base.trim_start_matches("http://").split('/').next().expect("host:port");
    host.parse().expect("the fake's address")
}

#[tokio::test]
async fn a_provider_over_https_is_reached_when_trusted_and_refused_when_not() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates = Certificates::make();
    let model = FakeLlmServer::start().await;
    model.push(FakeReply::tool_call("reply", json!({"content": "over https"})));
    let (addr, connections, terminator) =
        terminate_tls(&certificates.path("server.pem"), &certificates.path("server.key"), upstream(&model)).await;
    let home = Home::new(&openai_config(&format!("https://{addr}/v1")));

    // The test's authority is the only one trusted (rustls-native-certs reads SSL_CERT_FILE).
    let ca = certificates.path("ca.pem");
    let daemon = Daemon::start_with(&home, &[("SSL_CERT_FILE", ca.to_str().expect("a UTF-8 path"))]).await;
    daemon.say("main", "tls", "erin", "hello over TLS").await;
    let answers = daemon.wait_for_answers("main", "tls", 1).await;
    assert_eq!(answers[0]["text"], "over https", "{answers:#?}");
    assert_eq!(model.request_count(), 1);
    daemon.stop().await;

    // Trusting only the server's own certificate, which no authority in the file signed: the
    // handshake fails, the model is never asked, the user is told, and the daemon does not retry
    // (three attempts would not change the certificate).
    let before = connections.load(Ordering::SeqCst);
    let daemon =
        Daemon::start_with(&home, &[("SSL_CERT_FILE", certificates.path("server.pem").to_str().expect("utf-8"))]).await;
    daemon.say("main", "untrusted", "erin", "hello again").await;
    let answers = daemon.wait_for_answers("main", "untrusted", 1).await;
    assert_eq!(answers[0]["role"], "system", "{answers:#?}");
    let told = answers[0]["text"].as_str().unwrap_or_default();
    assert!(told.contains("certificate isn't trusted"), "the user is not told why: {told}");
    assert_eq!(model.request_count(), 1, "a request went past an untrusted certificate");
    assert_eq!(connections.load(Ordering::SeqCst) - before, 1, "an untrusted certificate was tried again");
    let mut daemon = daemon;
    let logs = daemon.logs_so_far();
    assert!(
        logs.contains("presented a TLS certificate that isn't trusted: invalid peer certificate: UnknownIssuer"),
        "the log does not say why:\n{logs}"
    );
    daemon.stop().await;
    terminator.abort();
}

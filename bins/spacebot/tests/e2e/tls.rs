//! A provider over https: the daemon's TLS (rustls on ring, the system's trusted certificates)
//! reaches a server whose certificate a trusted authority signed, and refuses one it cannot trust
//! at once, without retrying, telling the user why. Slack's Web API goes through the same
//! trust (`spacebot_core::tls`).
//!
//! The certificates are made with the `openssl` command; the fakes sit behind a TLS terminator of
//! the test's own (tokio-rustls), since they speak plain HTTP.

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

use spacebot_testing::{FakeLlmServer, FakeReply, FakeSlack, SlackMessage};

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

/// The address of a fake's plain `http://host:port/...` base URL.
fn upstream(base: &str) -> SocketAddr {
    let host = base.trim_start_matches("http://").split('/').next().expect("host:port");
    host.parse().expect("the fake's address")
}

#[tokio::test]
async fn a_provider_over_https_is_reached_when_trusted_and_refused_when_not() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates = Certificates::make();
    let model = FakeLlmServer::start().await;
    model.push(FakeReply::tool_call("reply", json!({"content": "over https"})));
    let (addr, connections, terminator) = terminate_tls(
        &certificates.path("server.pem"),
        &certificates.path("server.key"),
        upstream(&model.openai_base_url()),
    )
    .await;
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

/// The Slack adapter's Web API calls (`auth.test` at start, `chat.postMessage` for a reply) go
/// over https with the daemon's shared trust: the authority `SSL_CERT_FILE` names is trusted.
/// (Socket Mode itself is the fake's plain `ws://` address, as `apps.connections.open` gives it.)
#[tokio::test]
async fn slack_web_api_calls_go_over_https_with_the_shared_trust() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates = Certificates::make();
    let model = FakeLlmServer::start().await;
    let slack = FakeSlack::start().await;
    let (addr, connections, terminator) =
        terminate_tls(&certificates.path("server.pem"), &certificates.path("server.key"), upstream(&slack.api_url()))
            .await;
    let config = format!(
        "{}\n[messaging.slack]\nbot_token = \"xoxb-test\"\napp_token = \"xapp-test\"\napi_url = \"https://{addr}/api\"\n",
        openai_config(&model.openai_base_url()),
    );
    let home = Home::new(&config);
    let ca = certificates.path("ca.pem");
    let daemon = Daemon::start_with(&home, &[("SSL_CERT_FILE", ca.to_str().expect("a UTF-8 path"))]).await;
    let wait = std::time::Duration::from_secs(20);
    slack.wait_for("a Socket Mode connection", wait, |f| f.connections() >= 1).await;

    model.push(FakeReply::tool_call("reply", json!({"content": "Over https to Slack."})));
    slack.post(SlackMessage::new("C1", "U1", "a question"));
    slack.wait_for("the reply", wait, |f| !f.calls_to("chat.postMessage").is_empty()).await;
    assert_eq!(slack.calls_to("chat.postMessage")[0].body["text"], json!("Over https to Slack."));
    assert!(!slack.calls_to("auth.test").is_empty(), "the adapter did not check its token");
    assert!(connections.load(Ordering::SeqCst) >= 1, "the Web API calls did not go through the TLS terminator");
    daemon.stop().await;
    terminator.abort();
}

//! The IMAP side: connecting and logging in, then the intake loop that hands each unseen message
//! in and marks it seen only once the runtime recorded it.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_imap::Session;
use async_imap::extensions::idle::IdleResponse;
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use spacebot_core::{AdapterError, AdapterErrorKind, Handoff};

use crate::error::classify_imap;
use crate::inbound::{Skip, map_message};
use crate::settings::{EmailSettings, Security};

/// How long connecting (and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one command (other than IDLE) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait between reconnections after the server failed.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A byte stream IMAP runs over: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

pub(crate) type ImapSession = Session<Box<dyn Io>>;

/// Connects and logs in.
pub(crate) async fn login(settings: &EmailSettings) -> Result<ImapSession, AdapterError> {
    let name = settings.name.as_str();
    let server = &settings.imap;
    let unreachable = |e: std::io::Error| {
        AdapterError::transient(name, format!("can't reach the IMAP server {}:{}", server.host, server.port))
            .with_source(e)
    };
    let timed_out = || {
        AdapterError::transient(name, format!("the IMAP server {}:{} did not answer in time", server.host, server.port))
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((server.host.as_str(), server.port)))
        .await
        .map_err(|_| timed_out())?
        .map_err(unreachable)?;
    let io: Box<dyn Io> = match server.security {
        Security::Plain => Box::new(tcp),
        Security::Tls => {
            let connector = tls_connector(name)?;
            let host = rustls::pki_types::ServerName::try_from(server.host.clone()).map_err(|e| {
                AdapterError::permanent(name, format!("`{}` is not a host name TLS can check", server.host))
                    .with_source(e)
            })?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(host, tcp))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| {
                    AdapterError::permanent(name, format!("TLS with {} failed", server.host)).with_source(e)
                })?;
            Box::new(tls)
        }
        Security::StartTls => {
            return Err(AdapterError::permanent(
                name,
                "IMAP over STARTTLS is not supported; use security = \"tls\" (port 993) for the IMAP server",
            ));
        }
    };
    let mut client = async_imap::Client::new(io);
    let greeting = tokio::time::timeout(CONNECT_TIMEOUT, client.read_response()).await.map_err(|_| timed_out())?;
    match greeting {
        Ok(Some(_)) => {}
        Ok(None) => return Err(AdapterError::transient(name, "the IMAP server closed the connection before greeting")),
        Err(e) => return Err(unreachable(e)),
    }
    let user = server.username.as_deref().unwrap_or_default();
    let password = server.password.as_deref().unwrap_or_default();
    let session = tokio::time::timeout(COMMAND_TIMEOUT, client.login(user, password))
        .await
        .map_err(|_| timed_out())?
        .map_err(|(error, _)| classify_imap(name, &format!("login as `{user}`"), error))?;
    Ok(session)
}

fn tls_connector(name: &str) -> Result<tokio_rustls::TlsConnector, AdapterError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(AdapterError::permanent(
            name,
            "no root certificates found on this system to check the IMAP server's",
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AdapterError::permanent(name, "can't set up TLS").with_source(e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Runs one command with the command time limit.
async fn timed<T>(
    settings: &EmailSettings,
    doing: &str,
    command: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, AdapterError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => result.map_err(|e| classify_imap(&settings.name, doing, e)),
        Err(_) => Err(AdapterError::transient(&settings.name, format!("IMAP {doing} timed out"))),
    }
}

/// Why an intake session ended without an error.
enum Ended {
    /// The runtime's stream is gone: stop.
    StreamGone,
}

/// The intake task: sessions one after another, reconnecting with backoff after transient
/// failures. A permanent failure (the password was changed) ends the stream, and the runtime
/// starts the adapter again after its own backoff.
pub(crate) async fn intake(settings: EmailSettings, handoff: Handoff, first: ImapSession) {
    let mut backoff = Duration::from_secs(1);
    let mut session = Some(first);
    // Messages the runtime took whose `\Seen` flag was not stored (the connection dropped in
    // between): the next session marks them without handing them in again.
    let mut unmarked = HashSet::new();
    loop {
        let result = match session.take() {
            Some(session) => run_session(&settings, &handoff, session, &mut unmarked).await,
            None => match login(&settings).await {
                Ok(session) => {
                    backoff = Duration::from_secs(1);
                    run_session(&settings, &handoff, session, &mut unmarked).await
                }
                Err(error) => Err(error),
            },
        };
        match result {
            Ok(Ended::StreamGone) => return,
            Err(error) if error.kind() == AdapterErrorKind::Permanent => {
                tracing::error!(adapter = %settings.name, %error, "reading mail failed; reconnecting later");
                return;
            }
            Err(error) => {
                tracing::warn!(adapter = %settings.name, %error, retry_in_secs = backoff.as_secs(), "reading mail failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn run_session(
    settings: &EmailSettings,
    handoff: &Handoff,
    mut session: ImapSession,
    unmarked: &mut HashSet<String>,
) -> Result<Ended, AdapterError> {
    let mailbox = timed(settings, &format!("select `{}`", settings.mailbox), session.select(&settings.mailbox)).await?;
    let validity = mailbox.uid_validity.unwrap_or(0);
    let idle = timed(settings, "capability", session.capabilities()).await?.has_str("IDLE");
    tracing::info!(adapter = %settings.name, mailbox = %settings.mailbox, idle, "reading mail");
    // Messages looked at and not handed in (not from an allowed sender, automatic): left unseen
    // for the people who share the mailbox, and not read again in this session.
    let mut passed: HashSet<u32> = HashSet::new();
    loop {
        let unseen = timed(settings, "search", session.uid_search("UNSEEN")).await?;
        let mut unseen: Vec<u32> = unseen.into_iter().filter(|uid| !passed.contains(uid)).collect();
        unseen.sort_unstable();
        for uid in unseen {
            let raw = fetch(settings, &mut session, uid).await?;
            let Some(raw) = raw else {
                passed.insert(uid);
                continue;
            };
            match map_message(settings, &raw, &format!("{validity}.{uid}")) {
                Ok(message) => {
                    let id = message.id.to_string();
                    if !unmarked.contains(&id) {
                        if handoff.hand_in(message).await.is_err() {
                            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
                            return Ok(Ended::StreamGone);
                        }
                        unmarked.insert(id.clone());
                    }
                    // Recorded: only now is it marked seen, so a crash before this reads it again
                    // (and its id makes that a no-op).
                    mark_seen(settings, &mut session, uid).await?;
                    unmarked.remove(&id);
                    tracing::debug!(adapter = %settings.name, %id, uid, "mail handed in and marked seen");
                }
                Err(skip) => {
                    match &skip {
                        Skip::NotAllowed(sender) => {
                            tracing::info!(adapter = %settings.name, %sender, uid, "mail from a sender not in allowed_senders left unread")
                        }
                        other => tracing::debug!(adapter = %settings.name, ?other, uid, "mail not handed in"),
                    }
                    passed.insert(uid);
                }
            }
        }
        if handoff.is_closed() {
            return Ok(Ended::StreamGone);
        }
        session = if idle {
            wait_idle(settings, session).await?
        } else {
            tokio::time::sleep(settings.poll_interval).await;
            timed(settings, "noop", session.noop()).await?;
            session
        };
    }
}

/// Waits in IDLE until the server reports news or the renewal time passes.
async fn wait_idle(settings: &EmailSettings, session: ImapSession) -> Result<ImapSession, AdapterError> {
    let mut handle = session.idle();
    timed(settings, "idle", handle.init()).await?;
    let (wait, _interrupt) = handle.wait_with_timeout(settings.idle_renewal);
    let outcome = wait.await.map_err(|e| classify_imap(&settings.name, "idle", e))?;
    if let IdleResponse::NewData(_) = outcome {
        tracing::debug!(adapter = %settings.name, "the mailbox changed");
    }
    timed(settings, "idle done", handle.done()).await
}

async fn fetch(settings: &EmailSettings, session: &mut ImapSession, uid: u32) -> Result<Option<Vec<u8>>, AdapterError> {
    let fetching = async {
        let fetched: Vec<_> = session.uid_fetch(uid.to_string(), "BODY.PEEK[]").await?.try_collect().await?;
        Ok(fetched.into_iter().find_map(|fetch| fetch.body().map(<[u8]>::to_vec)))
    };
    timed(settings, &format!("fetch of message {uid}"), fetching).await
}

async fn mark_seen(settings: &EmailSettings, session: &mut ImapSession, uid: u32) -> Result<(), AdapterError> {
    let storing = async {
        let _: Vec<_> = session.uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)").await?.try_collect().await?;
        Ok(())
    };
    timed(settings, &format!("marking message {uid} seen"), storing).await
}

//! [`EmailAdapter`]: IMAP in, SMTP out.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::task::JoinHandle;

use spacebot_core::{AdapterError, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse};

use crate::error::classify_smtp;
use crate::outbound::{File, reply};
use crate::settings::{EmailSettings, Security};

/// Messages buffered between the mailbox and the runtime.
const INBOUND_BUFFER: usize = 16;
/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A mailbox the bot reads and answers from, as a [`MessagingAdapter`].
pub struct EmailAdapter {
    settings: EmailSettings,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    /// The intake task.
    intake: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EmailAdapter {
    /// An adapter for these settings. Nothing connects until `start`.
    ///
    /// # Errors
    ///
    /// When the SMTP transport can't be set up (TLS to a host name TLS can't check).
    pub fn new(settings: EmailSettings) -> Result<Self, AdapterError> {
        let smtp_server = &settings.smtp;
        let host = smtp_server.host.as_str();
        let builder = match smtp_server.security {
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            Security::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
        }
        .map_err(|e| AdapterError::permanent(&settings.name, format!("can't set up SMTP to {host}")).with_source(e))?;
        let mut builder = builder.port(smtp_server.port).timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&smtp_server.username, &smtp_server.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self { smtp: builder.build(), settings, intake: Mutex::new(None) })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &EmailSettings {
        &self.settings
    }

    fn stop_intake(&self) {
        if let Some(task) = lock(&self.intake).take() {
            task.abort();
        }
    }

    async fn send_mail(&self, target: &InboundMessage, text: &str, file: Option<File>) -> Result<(), AdapterError> {
        let message = reply(&self.settings, target, text, file)?;
        self.smtp.send(message).await.map(|_| ()).map_err(|e| classify_smtp(&self.settings.name, e))
    }
}

impl std::fmt::Debug for EmailAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailAdapter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Drop for EmailAdapter {
    fn drop(&mut self) {
        self.stop_intake();
    }
}

#[async_trait]
impl MessagingAdapter for EmailAdapter {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// In a fleet, one member at a time runs it: one reader of the mailbox.
    fn exclusive(&self) -> bool {
        true
    }

    /// Logs in first, so a wrong password fails `start` instead of a silent retry loop, then
    /// reads the mailbox on a task the adapter owns.
    async fn start(&self) -> Result<InboundStream, AdapterError> {
        self.stop_intake();
        let session = crate::imap::login(&self.settings).await?;
        let (handoff, stream) = spacebot_core::handoff(INBOUND_BUFFER);
        let task = tokio::spawn(crate::imap::intake(self.settings.clone(), handoff, session));
        *lock(&self.intake) = Some(task);
        tracing::info!(adapter = %self.settings.name, address = %self.settings.address, "connected to the mailbox");
        Ok(stream)
    }

    async fn send(&self, target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        match response {
            OutboundResponse::Text { text } | OutboundResponse::ThreadReply { text, .. } => {
                self.send_mail(target, &text, None).await
            }
            OutboundResponse::File { filename, mime_type, data, caption } => {
                let text = caption.unwrap_or_else(|| format!("{filename} is attached."));
                self.send_mail(target, &text, Some(File { filename, mime_type, data })).await
            }
            // Email shows no typing; there is nothing to show, which is not an error.
            OutboundResponse::Status { .. } => Ok(()),
            other => Err(AdapterError::unsupported(&self.settings.name, format!("email can't carry {other:?}"))),
        }
    }

    /// Logs into IMAP and opens an SMTP conversation (with the login, when one is configured).
    async fn health_check(&self) -> Result<(), AdapterError> {
        let mut session = crate::imap::login(&self.settings).await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
        match self.smtp.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(AdapterError::transient(&self.settings.name, "the SMTP server did not accept a connection"))
            }
            Err(error) => Err(classify_smtp(&self.settings.name, error)),
        }
    }

    async fn shutdown(&self) {
        self.stop_intake();
    }
}

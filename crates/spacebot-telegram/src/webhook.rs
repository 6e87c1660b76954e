//! Webhook mode: Telegram posts each update to a URL the adapter serves.
//!
//! The listener answers an update only once the runtime took its message (recorded it), so an
//! update whose message was not taken gets a 503 and Telegram sends it again. `setWebhook` asks
//! for one connection at a time, which keeps a chat's messages in order. A request without the
//! configured secret in `X-Telegram-Bot-Api-Secret-Token` is refused.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use frankenstein::AsyncTelegramApi;
use frankenstein::methods::SetWebhookParams;
use frankenstein::types::AllowedUpdate;
use frankenstein::updates::Update;
use tokio::task::JoinHandle;

use spacebot_core::{AdapterError, Handoff};

use crate::adapter::Inner;
use crate::error::classify;
use crate::inbound::{Identity, map_update};
use crate::settings::WebhookSettings;

/// The header Telegram echoes the secret in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// How long a delivery waits for the runtime to take its message before Telegram is told to retry.
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest update body read.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
struct Hook {
    inner: Arc<Inner>,
    identity: Identity,
    handoff: Handoff,
    secret: Arc<str>,
}

/// Binds the listener, registers the webhook, and serves it on a task the adapter owns.
pub(crate) async fn start(
    inner: Arc<Inner>,
    webhook: WebhookSettings,
    identity: Identity,
    handoff: Handoff,
) -> Result<JoinHandle<()>, AdapterError> {
    let name = inner.name().to_owned();
    let listener = tokio::net::TcpListener::bind(webhook.listen).await.map_err(|e| {
        AdapterError::transient(&name, format!("can't listen for the webhook on {}", webhook.listen)).with_source(e)
    })?;
    let params = SetWebhookParams::builder()
        .url(webhook.url.clone())
        .secret_token(webhook.secret_token.clone())
        .max_connections(1)
        .allowed_updates(vec![AllowedUpdate::Message])
        .build();
    inner.bot.set_webhook(&params).await.map_err(|e| classify(&name, e))?;
    let hook = Hook { inner, identity, handoff, secret: webhook.secret_token.as_str().into() };
    let app = Router::new()
        .route(&webhook.path(), post(deliver))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(hook);
    tracing::info!(adapter = %name, listen = %webhook.listen, url = %webhook.url, "Telegram webhook listening");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(adapter = %name, %error, "the Telegram webhook listener stopped");
        }
    }))
}

async fn deliver(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !same_secret(given, hook.secret.as_bytes()) {
        tracing::warn!(adapter = hook.inner.name(), "refused a webhook request without the secret");
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            // Sent again it would fail again: answer 200 so Telegram moves on.
            tracing::warn!(adapter = hook.inner.name(), %error, "a webhook update did not parse; skipped");
            return StatusCode::OK;
        }
    };
    let Some(message) = map_update(&hook.inner.settings, &hook.identity, &update) else { return StatusCode::OK };
    let message = crate::images::fetch_images(&hook.inner, message).await;
    match tokio::time::timeout(TAKE_TIMEOUT, hook.handoff.hand_in(message)).await {
        Ok(Ok(())) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_must_match_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}

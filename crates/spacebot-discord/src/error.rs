//! Turning serenity's errors into [`AdapterError`]s with a kind decided here, where the failure
//! is understood: the runtime retries transient ones and gives up on the rest.

use serenity::gateway::GatewayError;
use serenity::http::HttpError;

use spacebot_core::{AdapterError, AdapterErrorKind};

/// Classifies a serenity error from the adapter `adapter`.
///
/// Transient: rate limits (429), Discord's 5xx, connection failures, dropped gateways. Permanent:
/// rejected credentials or intents, missing permissions, unknown channels and messages (other
/// 4xx), payloads Discord refuses. Decided on status codes and error variants, never on text.
pub fn classify(adapter: &str, error: serenity::Error) -> AdapterError {
    let (kind, what) = match &error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => {
            let status = response.status_code.as_u16();
            let kind =
                if status == 429 || status >= 500 { AdapterErrorKind::Transient } else { AdapterErrorKind::Permanent };
            (kind, format!("Discord answered {status} to {} {}", response.method, response.url))
        }
        serenity::Error::Http(HttpError::Request(_)) => (AdapterErrorKind::Transient, "can't reach Discord".to_owned()),
        serenity::Error::Http(_) => (AdapterErrorKind::Permanent, "invalid request to Discord".to_owned()),
        serenity::Error::Gateway(
            GatewayError::InvalidAuthentication
            | GatewayError::InvalidGatewayIntents
            | GatewayError::DisallowedGatewayIntents
            | GatewayError::InvalidShardData
            | GatewayError::OverloadedShard,
        ) => (AdapterErrorKind::Permanent, "the gateway refused the bot".to_owned()),
        serenity::Error::Gateway(_) | serenity::Error::Tungstenite(_) | serenity::Error::Io(_) => {
            (AdapterErrorKind::Transient, "the gateway connection failed".to_owned())
        }
        serenity::Error::Model(_) | serenity::Error::Json(_) | serenity::Error::Url(_) => {
            (AdapterErrorKind::Permanent, "Discord can't take this".to_owned())
        }
        _ => (AdapterErrorKind::Transient, "Discord call failed".to_owned()),
    };
    AdapterError::new(kind, adapter, format!("{what}: {error}")).with_source(error)
}

//! Fetching a message's image files, so a vision-capable model can be shown them.
//!
//! Slack gives shared files by `url_private`, readable with the bot token. Before a message is
//! handed in, each image file is downloaded up to [`MAX_IMAGE_BYTES`] (counted as the bytes come:
//! Slack's event carries no size); one that is too large, or whose download fails or is slow, is
//! handed in with the reason instead, for the note the model gets. Other files stay references.
//! The envelope is acknowledged only after the message is taken, so the downloads are bounded
//! tighter than Discord's.

use std::time::Duration;

use spacebot_core::{Attachment, InboundMessage, MAX_IMAGE_BYTES};

/// Longest one image's download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The client that fetches attachments; `None` when it can't be built (no TLS backend), and then
/// images are handed in with that reason.
pub(crate) fn client() -> Option<reqwest::Client> {
    match reqwest::Client::builder()
        .tls_backend_preconfigured(spacebot_core::tls::client_config())
        .timeout(FETCH_TIMEOUT)
        .user_agent("spacebot-slack")
        .build()
    {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::warn!(%error, "can't build the attachment client; images won't be shown to models");
            None
        }
    }
}

/// `message` with its image files fetched with the bot token (or the reason one was not). The
/// token goes only to Slack's own hosts (`slack.com` and its subdomains, over https), or to the
/// host of `api_url` when one is configured (a test's fake Slack).
pub(crate) async fn fetch_images(
    client: Option<&reqwest::Client>,
    bot_token: &str,
    api_url: Option<&str>,
    mut message: InboundMessage,
) -> InboundMessage {
    for attachment in message.images_mut() {
        let outcome = match client {
            Some(_) if !is_slack_file_host(&attachment.url, api_url) => {
                Err("it is not on Slack's file host, so the bot token was not sent there".to_owned())
            }
            Some(client) => fetch(client, bot_token, attachment).await,
            None => Err("the adapter has no HTTP client to download it".to_owned()),
        };
        attachment.fetched(outcome);
    }
    message
}

/// The bytes of `attachment`, or why they are not here.
async fn fetch(client: &reqwest::Client, bot_token: &str, attachment: &Attachment) -> Result<Vec<u8>, String> {
    let too_large =
        |bytes: u64| format!("it is {}, over the {} limit", megabytes(bytes), megabytes(MAX_IMAGE_BYTES as u64));
    if let Some(size) = attachment.size_bytes.filter(|size| *size > MAX_IMAGE_BYTES as u64) {
        return Err(too_large(size));
    }
    let download = async {
        let mut response = client
            .get(&attachment.url)
            .bearer_auth(bot_token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("it could not be downloaded ({})", error.without_url()))?;
        let mut bytes = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|error| format!("it could not be downloaded ({})", error.without_url()))?
        {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(format!("it is larger than the {} limit", megabytes(MAX_IMAGE_BYTES as u64)));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    tokio::time::timeout(FETCH_TIMEOUT, download)
        .await
        .unwrap_or_else(|_| Err(format!("its download took longer than {} s", FETCH_TIMEOUT.as_secs())))
}

/// Whether `url` is one of Slack's hosts (https) or on the configured API's host: the only
/// places the bot token may go (file downloads, and the upload URLs Slack hands out).
pub(crate) fn is_slack_file_host(url: &str, api_url: Option<&str>) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let Some(host) = url.host_str() else { return false };
    let slack = url.scheme() == "https" && (host == "slack.com" || host.ends_with(".slack.com"));
    let configured = api_url
        .and_then(|api| reqwest::Url::parse(api).ok())
        .is_some_and(|api| api.host_str() == Some(host) && api.port_or_known_default() == url.port_or_known_default());
    slack || configured
}

/// `bytes` as people read a file size: `7.0 MB`.
fn megabytes(bytes: u64) -> String {
    // A file size fits an f64's 52-bit mantissa for any size a chat platform allows.
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use spacebot_core::MessageContent;

    use super::*;

    #[test]
    fn the_bot_token_goes_only_to_slack() {
        assert!(is_slack_file_host("https://files.slack.com/files-pri/T1-F1/a.png", None));
        assert!(!is_slack_file_host("http://files.slack.com/a.png", None), "never in clear");
        assert!(!is_slack_file_host("https://files.slack.com.evil.example/a.png", None));
        assert!(!is_slack_file_host("https://evil.example/slack.com/a.png", None));
        assert!(!is_slack_file_host("not a url", None));
        assert!(is_slack_file_host("http://127.0.0.1:4000/files/a.png", Some("http://127.0.0.1:4000/api")));
        assert!(!is_slack_file_host("http://127.0.0.1:5000/files/a.png", Some("http://127.0.0.1:4000/api")));
    }

    #[test]
    fn sizes_read_in_megabytes() {
        assert_eq!(megabytes(7 * 1024 * 1024), "7.0 MB");
        assert_eq!(megabytes(MAX_IMAGE_BYTES as u64), "3.8 MB");
    }

    #[tokio::test]
    async fn an_image_larger_than_the_cap_is_not_downloaded() {
        let mut big = Attachment::new("big.png", "http://127.0.0.1:9/never").with_mime_type("image/png");
        big.size_bytes = Some(7 * 1024 * 1024);
        let message = InboundMessage::text("slack", "c", spacebot_core::Sender::new("u"), "").with_content(
            MessageContent::Media { text: None, attachments: vec![big, Attachment::new("a.txt", "http://x/a.txt")] },
        );
        let fetched = fetch_images(client().as_ref(), "xoxb-test", Some("http://127.0.0.1:9"), message).await;
        let MessageContent::Media { attachments, .. } = fetched.content else { panic!("media") };
        assert_eq!(attachments[0].skipped.as_deref(), Some("it is 7.0 MB, over the 3.8 MB limit"));
        assert!(attachments[0].data.is_none());
        assert_eq!((attachments[1].data.as_ref(), attachments[1].skipped.as_ref()), (None, None), "not an image");
    }
}

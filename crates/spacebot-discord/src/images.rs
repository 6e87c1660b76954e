//! Fetching a message's image attachments, so a vision-capable model can be shown them.
//!
//! Discord gives attachments by URL (its CDN). Before a message is handed in, each image
//! attachment no larger than [`MAX_IMAGE_BYTES`] is downloaded (the size Discord reports is
//! checked first, the bytes received as they come); one that is too large, or whose download
//! fails or is slow, is handed in with the reason instead, for the note the model gets. Other
//! files stay references.

use std::time::Duration;

use spacebot_core::{Attachment, InboundMessage, MAX_IMAGE_BYTES};
/// Longest one image's download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The client that fetches attachments; `None` when it can't be built (no TLS backend), and then
/// images are handed in with that reason.
pub(crate) fn client() -> Option<reqwest::Client> {
    match reqwest::Client::builder()
        .tls_backend_preconfigured(spacebot_core::tls::client_config())
        .timeout(FETCH_TIMEOUT)
        .user_agent("spacebot-discord")
        .build()
    {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::warn!(%error, "can't build the attachment client; images won't be shown to models");
            None
        }
    }
}

/// `message` with its image attachments fetched (or the reason one was not).
pub(crate) async fn fetch_images(client: Option<&reqwest::Client>, mut message: InboundMessage) -> InboundMessage {
    for attachment in message.images_mut() {
        let outcome = match client {
            Some(client) => fetch(client, attachment).await,
            None => Err("the adapter has no HTTP client to download it".to_owned()),
        };
        attachment.fetched(outcome);
    }
    message
}

/// The bytes of `attachment`, or why they are not here.
async fn fetch(client: &reqwest::Client, attachment: &Attachment) -> Result<Vec<u8>, String> {
    let too_large =
        |bytes: u64| format!("it is {}, over the {} limit", megabytes(bytes), megabytes(MAX_IMAGE_BYTES as u64));
    if let Some(size) = attachment.size_bytes.filter(|size| *size > MAX_IMAGE_BYTES as u64) {
        return Err(too_large(size));
    }
    let download = async {
        let mut response = client
            .get(&attachment.url)
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
    fn sizes_read_in_megabytes() {
        assert_eq!(megabytes(7 * 1024 * 1024), "7.0 MB");
        assert_eq!(megabytes(MAX_IMAGE_BYTES as u64), "3.8 MB");
    }

    #[tokio::test]
    async fn an_image_larger_than_the_cap_is_not_downloaded() {
        let mut big = Attachment::new("big.png", "http://127.0.0.1:9/never").with_mime_type("image/png");
        big.size_bytes = Some(7 * 1024 * 1024);
        let message = InboundMessage::text("discord", "c", spacebot_core::Sender::new("u"), "").with_content(
            MessageContent::Media { text: None, attachments: vec![big, Attachment::new("a.txt", "http://x/a.txt")] },
        );
        let fetched = fetch_images(client().as_ref(), message).await;
        let MessageContent::Media { attachments, .. } = fetched.content else { panic!("media") };
        assert_eq!(attachments[0].skipped.as_deref(), Some("it is 7.0 MB, over the 3.8 MB limit"));
        assert!(attachments[0].data.is_none());
        assert_eq!((attachments[1].data.as_ref(), attachments[1].skipped.as_ref()), (None, None), "not an image");
    }
}

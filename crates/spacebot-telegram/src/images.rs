//! Fetching a message's images, so a vision-capable model can be shown them.
//!
//! Telegram gives files by id: `getFile` names a path, and the bytes come from
//! `{api}/file/bot{token}/{path}`. Before a message is handed in, each image (a photo, or a
//! document with an image type) is downloaded up to [`MAX_IMAGE_BYTES`] (Telegram says the size
//! first, and the download is counted too); one that is too large, or whose download fails or is
//! slow, is handed in with the reason instead, for the note the model gets. Other files stay
//! references. The download URL carries the bot token: it never leaves this module, and errors
//! are stripped of it.

use std::time::Duration;

use frankenstein::AsyncTelegramApi;
use frankenstein::methods::GetFileParams;

use spacebot_core::{Attachment, InboundMessage, MAX_IMAGE_BYTES};

use crate::adapter::Inner;
use crate::inbound::FILE_PREFIX;

/// Longest one image's lookup and download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// `message` with its images fetched (or the reason one was not).
pub(crate) async fn fetch_images(inner: &Inner, mut message: InboundMessage) -> InboundMessage {
    for attachment in message.images_mut() {
        let outcome = match tokio::time::timeout(FETCH_TIMEOUT, fetch(inner, attachment)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("its download took longer than {} s", FETCH_TIMEOUT.as_secs())),
        };
        attachment.fetched(outcome);
    }
    message
}

async fn fetch(inner: &Inner, attachment: &Attachment) -> Result<Vec<u8>, String> {
    let too_large = |size: u64| format!("it is {size} bytes, over the {MAX_IMAGE_BYTES}-byte limit for images");
    if let Some(size) = attachment.size_bytes.filter(|size| *size > MAX_IMAGE_BYTES as u64) {
        return Err(too_large(size));
    }
    let file_id = attachment.url.strip_prefix(FILE_PREFIX).ok_or("it is not a Telegram file")?;
    let params = GetFileParams::builder().file_id(file_id).build();
    let file = inner.bot.get_file(&params).await.map_err(|e| format!("Telegram could not find it ({e})"))?.result;
    let path = file.file_path.ok_or("Telegram gave no path to download it from")?;
    let settings = &inner.settings;
    let url = format!("{}/file/bot{}/{path}", settings.api_base(), settings.token);
    let mut response =
        inner.http.get(url).send().await.map_err(|e| format!("its download failed ({})", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("its download failed (HTTP {})", response.status().as_u16()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("its download failed ({})", e.without_url()))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
    }
    Ok(bytes)
}

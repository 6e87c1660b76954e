//! The Bot API client: frankenstein's typed methods ([`AsyncTelegramApi`]) sent over our own
//! reqwest client.
//!
//! frankenstein's own reqwest client would pull in reqwest's `rustls` feature, and with it a
//! second TLS crypto library (aws-lc) that the daemon never uses: it installs ring. This one is
//! the same few lines of HTTP over the workspace's reqwest, with an error type of our own.

use std::path::PathBuf;

use async_trait::async_trait;
use frankenstein::AsyncTelegramApi;
use frankenstein::response::ErrorResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a Bot API call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Telegram answered with an error (its `error_code` and `description`).
    #[error("Telegram refused the call ({}: {})", .0.error_code, .0.description)]
    Api(ErrorResponse),
    /// The request did not get an answer: a connection failure, a timeout. The URL, which holds
    /// the bot token, is left out.
    #[error("HTTP error: {0}")]
    Http(#[source] reqwest::Error),
    /// The answer was not the Bot API's JSON (a proxy's error page while Telegram is unreachable).
    #[error("an answer that is not the Bot API's JSON ({source}): {input}")]
    Decode {
        /// What the JSON reader said.
        source: serde_json::Error,
        /// The answer as received.
        input: String,
    },
    /// The call's parameters could not be written as JSON.
    #[error("can't encode the call's parameters: {0}")]
    Encode(#[source] serde_json::Error),
    /// A file to upload could not be read.
    #[error("can't read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<reqwest::Error> for CallError {
    fn from(error: reqwest::Error) -> Self {
        // The URL holds the bot token.
        Self::Http(error.without_url())
    }
}

/// Reads a Bot API answer: the `result` on success, Telegram's error otherwise.
pub(crate) fn decode<Output: DeserializeOwned>(success: bool, body: String) -> Result<Output, CallError> {
    let parsed = if success {
        serde_json::from_str::<Output>(&body).map_err(|source| (source, body))
    } else {
        match serde_json::from_str::<ErrorResponse>(&body) {
            Ok(error) => return Err(CallError::Api(error)),
            Err(source) => Err((source, body)),
        }
    };
    parsed.map_err(|(source, input)| CallError::Decode { source, input })
}

/// A Bot API client: `{api_url}/{method}` (the URL ends in `/bot{token}`) over `client`.
#[derive(Debug, Clone)]
pub(crate) struct Bot {
    api_url: String,
    client: reqwest::Client,
}

impl Bot {
    pub(crate) fn new(api_url: String, client: reqwest::Client) -> Self {
        Self { api_url, client }
    }

    async fn send<Output: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<Output, CallError> {
        let response = request.send().await?;
        let success = response.status().is_success();
        let body = response.text().await?;
        decode(success, body)
    }
}

#[async_trait]
impl AsyncTelegramApi for Bot {
    type Error = CallError;

    async fn request<Params, Output>(&self, method: &str, params: Option<Params>) -> Result<Output, CallError>
    where
        Params: Serialize + std::fmt::Debug + Send,
        Output: DeserializeOwned,
    {
        let mut request = self.client.post(format!("{}/{method}", self.api_url));
        if let Some(params) = params {
            let body = serde_json::to_vec(&params).map_err(CallError::Encode)?;
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        self.send(request).await
    }

    async fn request_with_form_data<Params, Output>(
        &self,
        method: &str,
        params: Params,
        files: Vec<(&str, PathBuf)>,
    ) -> Result<Output, CallError>
    where
        Params: Serialize + std::fmt::Debug + Send,
        Output: DeserializeOwned,
    {
        let fields = match serde_json::to_value(&params).map_err(CallError::Encode)? {
            serde_json::Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        let mut form = reqwest::multipart::Form::new();
        for (key, value) in fields {
            if files.iter().any(|(file_key, _)| *file_key == key) {
                continue;
            }
            form = match value {
                serde_json::Value::String(text) => form.text(key, text),
                other => form.text(key, other.to_string()),
            };
        }
        for (key, path) in files {
            let bytes =
                tokio::fs::read(&path).await.map_err(|source| CallError::ReadFile { path: path.clone(), source })?;
            let name = path.file_name().map_or_else(|| key.to_owned(), |name| name.to_string_lossy().into_owned());
            form = form.part(key.to_owned(), reqwest::multipart::Part::bytes(bytes).file_name(name));
        }
        self.send(self.client.post(format!("{}/{method}", self.api_url)).multipart(form)).await
    }
}

#[cfg(test)]
mod tests {
    use frankenstein::methods::SendDocumentParams;
    use frankenstein::response::MethodResponse;
    use frankenstein::types::User;
    use spacebot_testing::fake_telegram::{FakeTelegram, TOKEN};

    use super::*;

    fn bot(fake: &FakeTelegram) -> Bot {
        Bot::new(
            format!("{}/bot{TOKEN}", fake.api_url()),
            reqwest::Client::builder()
                .tls_backend_preconfigured(spacebot_core::tls::client_config())
                .build()
                .unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn a_file_goes_up_as_a_multipart_form_beside_the_other_parameters() {
        let fake = FakeTelegram::start().await;
        let path = std::env::temp_dir().join(format!("spacebot-telegram-upload-{}.txt", std::process::id()));
        std::fs::write(&path, b"the report").expect("write the file");
        let params = SendDocumentParams::builder().chat_id(42).document(path.clone()).caption("weekly").build();
        let sent = bot(&fake).send_document(&params).await;
        std::fs::remove_file(&path).expect("remove the file");
        assert_eq!(sent.expect("Telegram took the document").result.chat.id, 42);

        let documents = fake.documents();
        assert_eq!(documents.len(), 1, "{documents:?}");
        assert_eq!(documents[0].bytes, b"the report");
        assert_eq!(documents[0].caption.as_deref(), Some("weekly"));
        assert_eq!(documents[0].filename, path.file_name().expect("a name").to_string_lossy());

        let missing = SendDocumentParams::builder().chat_id(42).document(path.clone()).build();
        let error = bot(&fake).send_document(&missing).await.expect_err("the file is gone");
        assert!(matches!(error, CallError::ReadFile { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_refused_call_is_telegrams_error_with_its_code() {
        let fake = FakeTelegram::start().await;
        fake.set_token("4242:another");
        match bot(&fake).get_me().await {
            Err(CallError::Api(error)) => assert_eq!(error.error_code, 401),
            other => panic!("not a 401 from Telegram: {other:?}"),
        }
    }

    /// nextest runs each test in a process of its own: nothing installed a provider before.
    #[test]
    fn a_client_builds_in_a_process_that_installed_no_crypto_provider() {
        reqwest::Client::builder()
            .tls_backend_preconfigured(spacebot_core::tls::client_config())
            .build()
            .expect("reqwest builds a client on the installed provider");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn answers_are_read_as_results_or_as_telegrams_errors() {
        let ok: MethodResponse<User> = decode(
            true,
            r#"{"ok":true,"result":{"id":7,"is_bot":true,"first_name":"B","username":"b_bot"}}"#.to_owned(),
        )
        .expect("a result");
        assert_eq!(ok.result.id, 7);

        let refused = decode::<MethodResponse<User>>(
            false,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":3}}"#
                .to_owned(),
        );
        match refused {
            Err(CallError::Api(error)) => {
                assert_eq!(error.error_code, 429);
                assert_eq!(error.parameters.and_then(|p| p.retry_after), Some(3));
            }
            other => panic!("not Telegram's error: {other:?}"),
        }

        let page = decode::<MethodResponse<User>>(false, "<html>Bad Gateway</html>".to_owned());
        assert!(matches!(page, Err(CallError::Decode { ref input, .. }) if input.contains("Bad Gateway")), "{page:?}");
        let page = decode::<MethodResponse<User>>(true, "<html>".to_owned());
        assert!(matches!(page, Err(CallError::Decode { .. })), "{page:?}");
    }
}

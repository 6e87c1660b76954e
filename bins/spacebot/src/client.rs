//! A small HTTP client of the running daemon, for `send`, `chat` and `status`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::config::Config;

/// A connection to the daemon's HTTP API.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Accepted {
    pub(crate) message_id: String,
    pub(crate) conversation: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) id: String,
    pub(crate) role: String,
    pub(crate) text: String,
}

impl Client {
    /// A client for the daemon named by `--url`, else by `api.bind` in the config.
    pub(crate) fn new(global: &GlobalArgs) -> anyhow::Result<Self> {
        let (base, config_token) = match &global.url {
            Some(url) => (url.trim_end_matches('/').to_owned(), None),
            None => {
                let config = Config::load(&global.location())?;
                (format!("http://{}", config.api.bind), config.api.token)
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("can't build the HTTP client")?;
        Ok(Self { http, base, token: global.token.clone().or(config_token) })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send_checked(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|error| {
            if error.is_connect() {
                anyhow::anyhow!("spacebot is not running at {} (start it with `spacebot start`)", self.base)
            } else {
                anyhow::anyhow!("request to {} failed: {error}", self.base)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let reason = body.get("error").and_then(|e| e.as_str()).unwrap_or("no details");
        bail!("the daemon answered {status}: {reason}")
    }

    /// `GET /api/status`.
    pub(crate) async fn status(&self) -> anyhow::Result<serde_json::Value> {
        let response = self.send_checked(self.request(reqwest::Method::GET, "/api/status")).await?;
        response.json().await.context("the daemon sent an unreadable status")
    }

    /// `POST /webhook/{agent}`.
    pub(crate) async fn post(
        &self,
        agent: &str,
        conversation: &str,
        sender: &str,
        text: &str,
    ) -> anyhow::Result<Accepted> {
        let body = json!({ "conversation": conversation, "sender": sender, "text": text });
        let request = self.request(reqwest::Method::POST, &format!("/webhook/{agent}")).json(&body);
        let response = self.send_checked(request).await?;
        response.json().await.context("the daemon sent an unreadable answer")
    }

    /// The replies stored after message `after`, waiting up to `timeout` for at least one.
    pub(crate) async fn wait_for_reply(
        &self,
        agent: &str,
        accepted: &Accepted,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Message>> {
        let path = format!("/api/agents/{agent}/conversations/{}/messages?limit=500", accepted.conversation);
        let deadline = Instant::now() + timeout;
        loop {
            let response = self.send_checked(self.request(reqwest::Method::GET, &path)).await?;
            let messages: Vec<Message> = response.json().await.context("the daemon sent unreadable messages")?;
            let replies: Vec<Message> = messages
                .into_iter()
                .skip_while(|m| m.id != accepted.message_id)
                .skip(1)
                .filter(|m| m.role != "user")
                .collect();
            if !replies.is_empty() {
                return Ok(replies);
            }
            if Instant::now() >= deadline {
                bail!("no reply within {} seconds (the agent may have chosen not to answer)", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The name messages from this terminal are sent under.
pub(crate) fn local_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "cli".to_owned())
}

/// A small runtime for client commands.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("can't start tokio")?;
    Ok(runtime.block_on(future))
}

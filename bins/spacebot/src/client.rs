//! A small HTTP client of the running daemon, for `send`, `chat`, `status`, `usage` and
//! `memory search`.
//!
//! Replies are awaited on the daemon's event stream (`GET /api/events`, server-sent events), not
//! by polling: the client subscribes before it posts, so no event is missed, and reads the
//! conversation's messages once an event says something was sent there.

use std::time::Duration;

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
                anyhow::Error::new(NotRunning { base: self.base.clone() })
            } else {
                anyhow::anyhow!("request to {} failed: {error}", self.base)
            }
        })?;
        self.checked(response).await
    }

    /// The response when it is a success, else an error with the daemon's reason.
    async fn checked(&self, response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
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

    /// `GET /api/agents/{agent}/memories`: the running daemon's recall of `query`, or `None`
    /// when no daemon listens (or it has no such route or agent), so the caller opens the memory
    /// file itself.
    pub(crate) async fn memory_search(
        &self,
        agent: &str,
        query: &str,
        limit: usize,
    ) -> anyhow::Result<Option<Vec<spacebot_core::RecallHit>>> {
        let mut url = reqwest::Url::parse(&format!("{}/api/agents/{agent}/memories", self.base))
            .with_context(|| format!("`{}` is not a URL", self.base))?;
        url.query_pairs_mut().append_pair("q", query).append_pair("limit", &limit.to_string());
        let request = self.http.get(url);
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Ok(None),
            Err(error) => bail!("request to {} failed: {error}", self.base),
        };
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.checked(response).await?;
        let mut body: serde_json::Value =
            response.json().await.context("the daemon sent an unreadable memory search")?;
        let hits = serde_json::from_value(body["hits"].take()).context("the daemon sent unreadable memory hits")?;
        Ok(Some(hits))
    }

    /// `GET /api/usage` with `query` (`days=N` or `since=YYYY-MM-DD`, already URL-safe; may be empty).
    pub(crate) async fn usage(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        let path = if query.is_empty() { "/api/usage".to_owned() } else { format!("/api/usage?{query}") };
        let response = self.send_checked(self.request(reqwest::Method::GET, &path)).await?;
        response.json().await.context("the daemon sent an unreadable usage report")
    }

    /// `method` on an API `path`, with a JSON `body` if given; the answer's JSON, or `Null` when
    /// it has none (`204`).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send_checked(request).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(serde_json::Value::Null);
        }
        response.json().await.context("the daemon sent an unreadable answer")
    }

    /// `GET /api/mcp`: the MCP servers' state and tools.
    pub(crate) async fn mcp(&self) -> anyhow::Result<serde_json::Value> {
        let response = self.send_checked(self.request(reqwest::Method::GET, "/api/mcp")).await?;
        response.json().await.context("the daemon sent an unreadable MCP report")
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

    /// Subscribes to the daemon's events (`GET /api/events`); the subscription exists once this
    /// returns, so subscribe before posting the message whose reply to wait for. The stream is
    /// read for at most `within`.
    pub(crate) async fn subscribe(&self, within: Duration) -> anyhow::Result<Events> {
        let request = self.request(reqwest::Method::GET, "/api/events").timeout(within + Duration::from_secs(5));
        let response = self.send_checked(request).await?;
        Ok(Events { response, buffer: String::new() })
    }

    /// The messages of the conversation of `accepted` stored after it that are not the user's.
    async fn replies(&self, agent: &str, accepted: &Accepted) -> anyhow::Result<Vec<Message>> {
        let path = format!("/api/agents/{agent}/conversations/{}/messages?limit=500", accepted.conversation);
        let response = self.send_checked(self.request(reqwest::Method::GET, &path)).await?;
        let messages: Vec<Message> = response.json().await.context("the daemon sent unreadable messages")?;
        Ok(messages
            .into_iter()
            .skip_while(|m| m.id != accepted.message_id)
            .skip(1)
            .filter(|m| m.role != "user")
            .collect())
    }

    /// The replies stored after message `accepted`, waiting up to `timeout` for at least one.
    ///
    /// `events` must have been opened before the message was posted. The messages are read each
    /// time the stream says a response was sent to (or a turn finished in) the conversation, or
    /// that it lost events; so a reply is printed the moment it is recorded and delivered.
    pub(crate) async fn wait_for_reply(
        &self,
        events: &mut Events,
        agent: &str,
        accepted: &Accepted,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => {
                    bail!("no reply within {} seconds (the agent may have chosen not to answer)", timeout.as_secs())
                }
                Ok(Err(error)) => bail!("lost the event stream of the daemon at {}: {error}", self.base),
                Ok(Ok(None)) => {
                    bail!("the daemon at {} closed its event stream before the reply arrived (did it stop?)", self.base)
                }
                Ok(Ok(Some(event))) => event,
            };
            if event.concerns(agent, &accepted.conversation) {
                let replies = self.replies(agent, accepted).await?;
                if !replies.is_empty() {
                    return Ok(replies);
                }
            }
        }
    }
}

/// An open `GET /api/events` stream.
pub(crate) struct Events {
    response: reqwest::Response,
    /// Received text not yet split into events.
    buffer: String,
}

/// One server-sent event.
#[derive(Debug, PartialEq)]
struct Event {
    /// The `event:` field: `runtime`, or `lagged` when the daemon dropped events for this client.
    name: String,
    /// The `data:` lines, joined.
    data: String,
}

impl Events {
    /// The next event, or `None` when the daemon ended the stream.
    async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = take_event(&mut self.buffer) {
                return Ok(Some(event));
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes).replace('\r', "")),
                None => return Ok(None),
            }
        }
    }
}

impl Event {
    /// Whether the conversation's messages may have changed: a response was sent (or failed to
    /// be) or a turn finished in it, or events were lost and anything may have happened.
    fn concerns(&self, agent: &str, conversation: &str) -> bool {
        if self.name == "lagged" {
            return true;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&self.data) else { return false };
        let kind = event["type"].as_str().unwrap_or_default();
        let relevant = match kind {
            // Typing indicators say nothing about the messages.
            "response_sent" => event["response"]["type"] != "status",
            "delivery_failed" | "turn_finished" => true,
            _ => false,
        };
        relevant && event["agent"] == agent && event["conversation"] == conversation
    }
}

/// Splits the first complete event (ended by a blank line) off `buffer`. Comments (keep-alives)
/// and events without data are skipped.
fn take_event(buffer: &mut String) -> Option<Event> {
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut event = Event { name: "message".to_owned(), data: String::new() };
        let mut has_data = false;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.name = value.to_owned(),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
        if has_data {
            return Some(event);
        }
    }
    None
}

/// No daemon answers at the client's address (the connection was refused).
#[derive(Debug)]
pub(crate) struct NotRunning {
    base: String,
}

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spacebot is not running at {} (start it with `spacebot start`)", self.base)
    }
}

impl std::error::Error for NotRunning {}

/// The name messages from this terminal are sent under.
pub(crate) fn local_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "cli".to_owned())
}

/// A small runtime for client commands.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("can't start tokio")?;
    Ok(runtime.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_at_blank_lines_and_keep_alives_skipped() {
        let mut buffer =
            ": keep-alive\n\nevent: runtime\ndata: {\"a\":1}\n\nevent: lagged\ndata: x\ndata: y\n\nevent: runt"
                .to_owned();
        assert_eq!(take_event(&mut buffer), Some(Event { name: "runtime".into(), data: "{\"a\":1}".into() }));
        assert_eq!(take_event(&mut buffer), Some(Event { name: "lagged".into(), data: "x\ny".into() }));
        assert_eq!(take_event(&mut buffer), None, "an event is complete only at its blank line");
        assert_eq!(buffer, "event: runt");
    }

    #[test]
    fn only_sent_responses_and_finished_turns_of_the_conversation_concern_it() {
        let runtime = |data: serde_json::Value| Event { name: "runtime".into(), data: data.to_string() };
        let sent = |conversation: &str, kind: &str| {
            runtime(json!({"type": "response_sent", "agent": "main", "conversation": conversation,
                "adapter": "webhook", "response": {"type": kind}}))
        };
        assert!(sent("webhook:c", "text").concerns("main", "webhook:c"));
        assert!(!sent("webhook:c", "status").concerns("main", "webhook:c"), "typing is not a reply");
        assert!(!sent("webhook:other", "text").concerns("main", "webhook:c"));
        assert!(!sent("webhook:c", "text").concerns("ops", "webhook:c"));
        let finished = runtime(json!({"type": "turn_finished", "agent": "main", "conversation": "webhook:c"}));
        assert!(finished.concerns("main", "webhook:c"));
        let received = runtime(json!({"type": "message_received", "agent": "main", "conversation": "webhook:c"}));
        assert!(!received.concerns("main", "webhook:c"));
        assert!(Event { name: "lagged".into(), data: "{}".into() }.concerns("main", "webhook:c"));
    }
}

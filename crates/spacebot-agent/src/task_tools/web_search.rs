//! `web_search`: a web search through the search API the operator configured, a SearXNG
//! instance (its JSON API, `GET {base}/search?q=..&format=json`) or the Brave Search API
//! (`GET {base}/res/v1/web/search?q=..`, the key in `X-Subscription-Token`).
//!
//! The backend's address is the operator's, not the model's, so unlike `web_fetch` it is not
//! checked against private addresses (a SearXNG instance often runs on the same machine). The
//! model gets a compact numbered list (title, URL, snippet), capped in count and length; every
//! failure (unreachable, slow, refused key, rate limit, an answer that is not the backend's JSON)
//! becomes a tool error that says what happened, never a panic.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{ToolError, TypedTool};

use crate::error::TaskToolError;

/// Most results a search may return, whatever the settings say (Brave's own limit per request).
pub const MAX_SEARCH_RESULTS: usize = 20;
/// Characters of a result's title the model sees.
const TITLE_CHARS: usize = 200;
/// Characters of a result's snippet the model sees.
const SNIPPET_CHARS: usize = 300;
/// Bytes of a backend's answer read at most; a larger one is refused.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Characters of an error answer quoted to the model.
const ERROR_BODY_CHARS: usize = 200;

/// Which search API `web_search` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchBackend {
    /// A SearXNG instance with the JSON format enabled (`search.formats` lists `json`).
    Searxng,
    /// The Brave Search API, with a subscription token.
    Brave,
}

impl SearchBackend {
    /// The name the config and error messages use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Searxng => "searxng",
            Self::Brave => "brave",
        }
    }
}

/// Settings of `web_search`. `Debug` leaves the key out.
#[derive(Clone)]
#[non_exhaustive]
pub struct WebSearchSettings {
    /// The API asked.
    pub backend: SearchBackend,
    /// Its base URL, without the API's path (`http://127.0.0.1:8888`, `https://api.search.brave.com`).
    pub base_url: String,
    /// Brave's subscription token.
    pub api_key: Option<String>,
    /// Most results one search returns (at most [`MAX_SEARCH_RESULTS`]).
    pub max_results: usize,
    /// Longest a search may take.
    pub timeout: Duration,
}

impl fmt::Debug for WebSearchSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSearchSettings")
            .field("backend", &self.backend)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("max_results", &self.max_results)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WebSearchSettings {
    /// Where the Brave Search API lives.
    pub const BRAVE_BASE_URL: &'static str = "https://api.search.brave.com";

    /// Searches through the SearXNG instance at `base_url`.
    pub fn searxng(base_url: impl Into<String>) -> Self {
        Self {
            backend: SearchBackend::Searxng,
            base_url: base_url.into(),
            api_key: None,
            max_results: 5,
            timeout: Duration::from_secs(15),
        }
    }

    /// Searches through the Brave Search API at `base_url` with the subscription token `api_key`.
    pub fn brave(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self { backend: SearchBackend::Brave, api_key: Some(api_key.into()), ..Self::searxng(base_url) }
    }

    /// Sets the most results a search returns (kept between 1 and [`MAX_SEARCH_RESULTS`]).
    pub fn with_max_results(mut self, max_results: usize) -> Self {
        self.max_results = max_results.clamp(1, MAX_SEARCH_RESULTS);
        self
    }

    /// Sets the time limit of a search.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchArgs {
    #[serde(alias = "q")]
    query: String,
    #[serde(default)]
    count: Option<usize>,
}

/// One result, as the model reads it.
#[derive(Debug, Clone, PartialEq)]
struct Hit {
    title: String,
    url: String,
    snippet: String,
}

#[derive(Debug, Deserialize)]
struct SearxngAnswer {
    #[serde(default)]
    results: Vec<SearxngResult>,
}

#[derive(Debug, Deserialize)]
struct SearxngResult {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BraveAnswer {
    #[serde(default)]
    web: Option<BraveWeb>,
}

#[derive(Debug, Deserialize)]
struct BraveWeb {
    #[serde(default)]
    results: Vec<BraveResult>,
}

#[derive(Debug, Deserialize)]
struct BraveResult {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// The `web_search` tool.
pub(crate) struct WebSearch {
    settings: WebSearchSettings,
    client: reqwest::Client,
}

impl WebSearch {
    /// The tool; fails when the HTTP client can't be built (no TLS backend).
    pub(crate) fn new(settings: WebSearchSettings) -> Result<Self, TaskToolError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(spacebot_core::tls::client_config())
            .timeout(settings.timeout)
            .user_agent("spacebot-web-search")
            .build()
            .map_err(|source| TaskToolError::WebSearchClient { source })?;
        Ok(Self { settings, client })
    }

    fn backend_name(&self) -> &'static str {
        match self.settings.backend {
            SearchBackend::Searxng => "SearXNG",
            SearchBackend::Brave => "Brave Search",
        }
    }

    /// The request for `query`, asking for `count` results.
    fn request(&self, query: &str, count: usize) -> Result<reqwest::RequestBuilder, ToolError> {
        let base = self.settings.base_url.trim_end_matches('/');
        let (path, params): (&str, Vec<(&str, String)>) = match self.settings.backend {
            SearchBackend::Searxng => ("/search", vec![("q", query.to_owned()), ("format", "json".to_owned())]),
            SearchBackend::Brave => ("/res/v1/web/search", vec![("q", query.to_owned()), ("count", count.to_string())]),
        };
        let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), &params).map_err(|error| {
            ToolError::Failed(format!("web search is misconfigured: `{base}` is not a base URL ({error})"))
        })?;
        let mut request = self.client.get(url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(key) = &self.settings.api_key {
            request = request.header("X-Subscription-Token", key);
        }
        Ok(request)
    }

    async fn search(&self, query: &str, count: usize) -> Result<Vec<Hit>, ToolError> {
        let backend = self.backend_name();
        let mut response = self.request(query, count)?.send().await.map_err(|error| {
            if error.is_timeout() {
                self.timed_out()
            } else {
                ToolError::Failed(format!("can't reach {backend} at {}: {error}", self.settings.base_url))
            }
        })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            if error.is_timeout() {
                self.timed_out()
            } else {
                ToolError::Failed(format!("can't read {backend}'s answer: {error}"))
            }
        })? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ToolError::Failed(format!(
                    "{backend} answered more than {MAX_RESPONSE_BYTES} bytes; search with a narrower query"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(self.refused(status, &body));
        }
        let unreadable = |error: serde_json::Error| {
            ToolError::Failed(format!("{backend} answered something that is not its JSON results ({error})"))
        };
        let hits: Vec<Hit> = match self.settings.backend {
            SearchBackend::Searxng => serde_json::from_slice::<SearxngAnswer>(&body)
                .map_err(unreadable)?
                .results
                .into_iter()
                .filter_map(|result| hit(result.title, result.url, result.content))
                .collect(),
            SearchBackend::Brave => serde_json::from_slice::<BraveAnswer>(&body)
                .map_err(unreadable)?
                .web
                .map(|web| web.results)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|result| hit(result.title, result.url, result.description))
                .collect(),
        };
        Ok(hits.into_iter().take(count).collect())
    }

    fn timed_out(&self) -> ToolError {
        ToolError::Failed(format!(
            "{} did not answer within {} s; try again later, or go on without searching",
            self.backend_name(),
            self.settings.timeout.as_secs_f64()
        ))
    }

    /// The error for an answer with a failure status.
    fn refused(&self, status: reqwest::StatusCode, body: &[u8]) -> ToolError {
        let backend = self.backend_name();
        let code = status.as_u16();
        let message = match (self.settings.backend, code) {
            (SearchBackend::Brave, 401 | 403) => format!(
                "{backend} refused the API key (HTTP {code}); web search is unavailable until the operator fixes \
                 `tools.web_search.api_key`"
            ),
            (SearchBackend::Searxng, 403) => format!(
                "{backend} refused to answer in JSON (HTTP 403); web search is unavailable until the instance lists \
                 `json` under `search.formats` in its settings.yml"
            ),
            (_, 429) => format!("{backend} is rate limiting searches (HTTP 429); try again later"),
            _ => {
                let text = clean(&String::from_utf8_lossy(body), ERROR_BODY_CHARS);
                if text.is_empty() {
                    format!("{backend} failed the search (HTTP {code})")
                } else {
                    format!("{backend} failed the search (HTTP {code}): {text}")
                }
            }
        };
        ToolError::Failed(message)
    }
}

/// A result, when it has a URL.
fn hit(title: Option<String>, url: Option<String>, snippet: Option<String>) -> Option<Hit> {
    let url = url.map(|url| url.trim().to_owned()).filter(|url| !url.is_empty())?;
    Some(Hit {
        title: clean(title.as_deref().unwrap_or_default(), TITLE_CHARS),
        url,
        snippet: clean(snippet.as_deref().unwrap_or_default(), SNIPPET_CHARS),
    })
}

/// `text` without HTML tags (Brave marks the matched words with `<strong>`), with the common
/// entities decoded and whitespace collapsed, cut at `max` characters with an ellipsis.
fn clean(text: &str, max: usize) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            _ => plain.push(c),
        }
    }
    let decoded = plain
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    let collapsed = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The numbered list the model reads.
fn render(query: &str, hits: &[Hit]) -> String {
    if hits.is_empty() {
        return format!("No results for \"{query}\".");
    }
    let mut text = format!("Results for \"{query}\":");
    for (index, hit) in hits.iter().enumerate() {
        let title = if hit.title.is_empty() { "(no title)" } else { hit.title.as_str() };
        text.push_str(&format!("\n{}. {title}\n   {}", index + 1, hit.url));
        if !hit.snippet.is_empty() {
            text.push_str(&format!("\n   {}", hit.snippet));
        }
    }
    text
}

#[async_trait]
impl TypedTool for WebSearch {
    const NAME: &'static str = "web_search";
    type Args = SearchArgs;

    fn description(&self) -> String {
        format!(
            "Search the web. Returns up to {} results as a numbered list of title, URL and snippet; fetch a page \
             with `web_fetch` to read it.",
            self.settings.max_results
        )
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "what to search for" },
                "count": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.settings.max_results,
                    "description": format!("how many results (default and most: {})", self.settings.max_results)
                }
            },
            "required": ["query"]
        })
    }

    async fn run(&self, args: SearchArgs) -> Result<String, ToolError> {
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments("`query` is empty; say what to search for".to_owned()));
        }
        let count = args.count.unwrap_or(self.settings.max_results).clamp(1, self.settings.max_results);
        // The client's own timeout covers the connection and each read; this one bounds the whole.
        match tokio::time::timeout(self.settings.timeout, self.search(query, count)).await {
            Ok(hits) => Ok(render(query, &hits?)),
            Err(_) => Err(self.timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use spacebot_core::Tool;
    use spacebot_testing::{FakeSearch, SearchHit};

    use super::*;

    fn hits() -> Vec<SearchHit> {
        vec![
            SearchHit::new(
                "Rust <strong>async</strong> book",
                "https://rust-lang.github.io/async-book/",
                "Asynchronous &amp; fast",
            ),
            SearchHit::new("Tokio", "https://tokio.rs/", "An asynchronous runtime for Rust."),
            SearchHit::new("Third", "https://example.org/3", ""),
        ]
    }

    #[tokio::test]
    async fn searxng_results_come_back_as_a_numbered_list() {
        let fake = FakeSearch::searxng().await;
        fake.set_results(hits());
        let tool = WebSearch::new(WebSearchSettings::searxng(fake.base_url())).unwrap();
        let text = tool.call(json!({ "query": "rust async" })).await.unwrap();
        assert_eq!(
            text,
            "Results for \"rust async\":\n\
             1. Rust async book\n   https://rust-lang.github.io/async-book/\n   Asynchronous & fast\n\
             2. Tokio\n   https://tokio.rs/\n   An asynchronous runtime for Rust.\n\
             3. Third\n   https://example.org/3"
        );
        let requests = fake.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        assert_eq!(requests[0].path, "/search");
        assert_eq!(requests[0].query, "rust async");
        assert_eq!(requests[0].param("format").as_deref(), Some("json"));
        assert_eq!(requests[0].token, None, "SearXNG gets no key");

        // SearXNG has no count parameter: the tool cuts the list itself.
        let two = WebSearch::new(WebSearchSettings::searxng(fake.base_url()).with_max_results(2)).unwrap();
        let text = two.call(json!({ "query": "rust async" })).await.unwrap();
        assert!(text.contains("\n2. Tokio\n") && !text.contains("\n3. "), "{text}");
    }

    #[tokio::test]
    async fn brave_gets_the_key_and_the_count_and_results_are_capped() {
        let fake = FakeSearch::brave("brave-key-123").await;
        fake.set_results(hits());
        let tool =
            WebSearch::new(WebSearchSettings::brave(fake.base_url(), "brave-key-123").with_max_results(2)).unwrap();
        let text = tool.call(json!({ "query": "tokio" })).await.unwrap();
        assert!(text.starts_with("Results for \"tokio\":\n1. Rust async book\n"), "{text}");
        assert!(text.contains("\n2. Tokio\n") && !text.contains("3."), "capped at two: {text}");
        let requests = fake.requests();
        assert_eq!(requests[0].path, "/res/v1/web/search");
        assert_eq!(requests[0].token.as_deref(), Some("brave-key-123"));
        assert_eq!(requests[0].param("count").as_deref(), Some("2"));

        // The model may ask for fewer, never for more.
        let one = tool.call(json!({ "query": "tokio", "count": 1 })).await.unwrap();
        assert!(one.contains("1. Rust") && !one.contains("2."), "{one}");
        let many = tool.call(json!({ "query": "tokio", "count": 50 })).await.unwrap();
        assert!(many.contains("2. Tokio") && !many.contains("3."), "{many}");
    }

    #[tokio::test]
    async fn a_wrong_brave_key_is_a_clear_tool_error() {
        let fake = FakeSearch::brave("the-right-key").await;
        let tool = WebSearch::new(WebSearchSettings::brave(fake.base_url(), "a-wrong-key")).unwrap();
        let error = tool.call(json!({ "query": "anything" })).await.unwrap_err().to_string();
        assert!(error.contains("refused the API key (HTTP 401)"), "{error}");
        assert!(!error.contains("a-wrong-key"), "the key is not repeated: {error}");
    }

    #[tokio::test]
    async fn backend_failures_are_tool_errors_that_say_what_happened() {
        let fake = FakeSearch::searxng().await;
        let tool = WebSearch::new(WebSearchSettings::searxng(fake.base_url())).unwrap();
        fake.fail_next(429);
        let error = tool.call(json!({ "query": "x" })).await.unwrap_err().to_string();
        assert!(error.contains("rate limiting") && error.contains("429"), "{error}");
        fake.fail_next(500);
        let error = tool.call(json!({ "query": "x" })).await.unwrap_err().to_string();
        assert!(error.starts_with("SearXNG failed the search (HTTP 500): injected failure"), "{error}");
        fake.fail_next(403);
        let error = tool.call(json!({ "query": "x" })).await.unwrap_err().to_string();
        assert!(error.contains("search.formats"), "{error}");
        fake.answer_garbage_next();
        let error = tool.call(json!({ "query": "x" })).await.unwrap_err().to_string();
        assert!(error.contains("not its JSON results"), "{error}");

        let empty = tool.call(json!({ "query": "   " })).await.unwrap_err().to_string();
        assert!(empty.contains("`query` is empty"), "{empty}");
        assert_eq!(fake.requests().len(), 4, "an empty query is not sent");

        // No result at all is an answer, not an error.
        fake.set_results(Vec::new());
        assert_eq!(tool.call(json!({ "query": "nothing" })).await.unwrap(), "No results for \"nothing\".");
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_a_tool_error() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tool = WebSearch::new(
            WebSearchSettings::searxng(format!("http://127.0.0.1:{port}")).with_timeout(Duration::from_secs(5)),
        )
        .unwrap();
        let error = tool.call(json!({ "query": "x" })).await.unwrap_err().to_string();
        assert!(error.starts_with(&format!("can't reach SearXNG at http://127.0.0.1:{port}")), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_hangs_times_out() {
        let fake = FakeSearch::brave("k").await;
        fake.hang_next();
        let tool = WebSearch::new(WebSearchSettings::brave(fake.base_url(), "k").with_timeout(Duration::from_secs(5)))
            .unwrap();
        let started = tokio::time::Instant::now();
        let error = tool.call(json!({ "query": "slow" })).await.unwrap_err().to_string();
        assert!(error.contains("did not answer within 5 s"), "{error}");
        assert!(started.elapsed() >= Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn snippets_are_plain_short_text() {
        assert_eq!(clean("  a <b>bold</b>\n\n move &quot;x&quot; ", 100), "a bold move \"x\"");
        let long = clean(&"word ".repeat(100), 20);
        assert_eq!(long.chars().count(), 20, "{long}");
        assert!(long.ends_with('…'), "{long}");
        assert_eq!(clean("é".repeat(10).as_str(), 5), "éééé…");
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let settings = WebSearchSettings::brave("https://api.search.brave.com", "secret-key");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("secret-key") && shown.contains("[redacted]"), "{shown}");
    }
}

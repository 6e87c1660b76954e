//! `web_fetch`: an HTTP(S) GET with a size cap, guarded against requests into private networks.
//!
//! A worker's model chooses the URL, so the URL is untrusted: it must not reach the machine's own
//! services, the local network or a cloud metadata endpoint. The host is resolved first and every
//! address it resolves to must be public; the request then goes to exactly those addresses (no
//! second lookup an attacker could answer differently), and each redirect is checked the same
//! way. Hosts on the configured allow-list skip the address check (tests use it for loopback).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{ToolError, TypedTool};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// Settings of `web_fetch`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebFetchSettings {
    /// Bytes of a response body kept; the rest is cut.
    pub max_bytes: usize,
    /// Longest a fetch (all redirects included) may take.
    pub timeout: Duration,
    /// Hosts (`example.internal`, `127.0.0.1`, or `host:port`) fetched even though they resolve
    /// to private addresses.
    pub allow_hosts: Vec<String>,
}

impl Default for WebFetchSettings {
    fn default() -> Self {
        Self { max_bytes: 512 * 1024, timeout: Duration::from_secs(30), allow_hosts: Vec::new() }
    }
}

impl WebFetchSettings {
    /// Sets the body size cap.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allows a host that resolves to a private address.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allow_hosts.push(host.into());
        self
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct FetchArgs {
    #[serde(alias = "link", alias = "href")]
    url: String,
}

/// The `web_fetch` tool.
pub(crate) struct WebFetch {
    settings: WebFetchSettings,
}

impl WebFetch {
    pub(crate) fn new(settings: WebFetchSettings) -> Self {
        Self { settings }
    }

    fn allowed(&self, host: &str, port: u16) -> bool {
        let with_port = format!("{host}:{port}");
        self.settings
            .allow_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host) || allowed.eq_ignore_ascii_case(&with_port))
    }

    /// The addresses to connect to for `url`, all checked.
    async fn addresses(&self, url: &reqwest::Url) -> Result<(String, Vec<SocketAddr>), ToolError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::InvalidArguments(format!("only http and https URLs can be fetched, not {url}")));
        }
        let host = url.host_str().ok_or_else(|| ToolError::InvalidArguments(format!("{url} has no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|error| ToolError::Failed(format!("can't resolve {host}: {error}")))?
            .collect();
        if addresses.is_empty() {
            return Err(ToolError::Failed(format!("{host} resolves to no address")));
        }
        if !self.allowed(&host, port)
            && let Some(private) = addresses.iter().find(|address| !is_public(address.ip()))
        {
            return Err(ToolError::Failed(format!(
                "refused: {host} resolves to {}, a private, local or metadata address",
                private.ip()
            )));
        }
        Ok((host, addresses))
    }

    async fn fetch(&self, start: &str) -> Result<String, ToolError> {
        let mut url = reqwest::Url::parse(start.trim())
            .map_err(|error| ToolError::InvalidArguments(format!("`{start}` is not a URL: {error}")))?;
        for _ in 0..=MAX_REDIRECTS {
            let (host, addresses) = self.addresses(&url).await?;
            let mut builder = reqwest::Client::builder()
                .tls_backend_preconfigured(spacebot_core::tls::client_config())
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(self.settings.timeout)
                .user_agent("spacebot-web-fetch");
            if host.parse::<IpAddr>().is_err() {
                builder = builder.resolve_to_addrs(&host, &addresses);
            }
            let client = builder.build().map_err(|error| ToolError::Failed(format!("can't fetch: {error}")))?;
            let mut response = client
                .get(url.clone())
                .send()
                .await
                .map_err(|error| ToolError::Failed(format!("can't fetch {url}: {error}")))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| ToolError::Failed(format!("{url} redirected without a location")))?;
                url = url
                    .join(location)
                    .map_err(|error| ToolError::Failed(format!("{url} redirected to a bad location: {error}")))?;
                continue;
            }
            let status = response.status();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("unknown")
                .to_owned();
            let mut body = Vec::new();
            let mut cut = false;
            while let Some(chunk) =
                response.chunk().await.map_err(|error| ToolError::Failed(format!("can't read {url}: {error}")))?
            {
                let room = self.settings.max_bytes.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    cut = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            let mut text = format!(
                "status: {}\ncontent-type: {content_type}\n\n{}",
                status.as_u16(),
                String::from_utf8_lossy(&body)
            );
            if cut {
                text.push_str(&format!("\n[cut at {} bytes]", self.settings.max_bytes));
            }
            return Ok(text);
        }
        Err(ToolError::Failed(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

#[async_trait]
impl TypedTool for WebFetch {
    const NAME: &'static str = "web_fetch";
    type Args = FetchArgs;

    fn description(&self) -> String {
        format!(
            "Fetch a public http(s) URL with GET; returns the status, content type and body (cut at {} bytes). \
             Private and local addresses are refused.",
            self.settings.max_bytes
        )
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": { "url": { "type": "string" } },
            "required": ["url"]
        })
    }

    async fn run(&self, args: FetchArgs) -> Result<String, ToolError> {
        match tokio::time::timeout(self.settings.timeout, self.fetch(&args.url)).await {
            Ok(result) => result,
            Err(_) => Err(ToolError::Failed(format!("{} did not answer in time", args.url))),
        }
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local (cloud
/// metadata lives there), carrier-grade NAT, multicast, documentation, reserved or unspecified.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 198 && (b & 0xfe) == 18)
        || (a == 192 && b == 0 && c == 0))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) embeds an IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || segments[..6] == [0, 0, 0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use spacebot_core::Tool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-connection-at-a-time HTTP server answering every request with `response(path)`.
    async fn serve(
        response: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0u8; 4096];
                let read = socket.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..read]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let _ = socket.write_all(response(&path).as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (address, task)
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn private_local_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must not count as public");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let (address, server) = serve(|_| ok("hello")).await;
        let url = format!("http://{address}/page");
        let refused = WebFetch::new(WebFetchSettings::default());
        let error = refused.call(json!({ "url": url })).await.unwrap_err().to_string();
        assert!(error.contains("refused") && error.contains("127.0.0.1"), "{error}");
        let localhost = refused.call(json!({ "url": format!("http://localhost:{}/", address.port()) })).await;
        assert!(localhost.unwrap_err().to_string().contains("refused"));

        let allowed = WebFetch::new(WebFetchSettings::default().allow_host("127.0.0.1"));
        let text = allowed.call(json!({ "url": url })).await.unwrap();
        assert_eq!(text, "status: 200\ncontent-type: text/plain\n\nhello");
        server.abort();
    }

    #[tokio::test]
    async fn bodies_are_capped() {
        let (address, server) = serve(|_| ok(&"y".repeat(10_000))).await;
        let fetch = WebFetch::new(WebFetchSettings::default().allow_host("127.0.0.1").with_max_bytes(100));
        let text = fetch.call(json!({ "url": format!("http://{address}/") })).await.unwrap();
        assert!(text.ends_with(&format!("{}\n[cut at 100 bytes]", "y".repeat(100))), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn redirects_are_checked_like_the_first_request() {
        // An allowed host redirecting to a host that is not allowed (the metadata address).
        let (address, server) = serve(|path| {
            if path == "/go" {
                "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data\r\ncontent-length: 0\r\n\r\n"
                    .to_owned()
            } else {
                ok("fine")
            }
        })
        .await;
        let fetch = WebFetch::new(WebFetchSettings::default().allow_host(format!("127.0.0.1:{}", address.port())));
        let error = fetch.call(json!({ "url": format!("http://{address}/go") })).await.unwrap_err().to_string();
        assert!(error.contains("refused") && error.contains("169.254.169.254"), "{error}");
        server.abort();
    }

    #[tokio::test]
    async fn other_schemes_are_refused() {
        let fetch = WebFetch::new(WebFetchSettings::default());
        let error = fetch.call(json!({"url": "file:///etc/passwd"})).await.unwrap_err().to_string();
        assert!(error.contains("only http and https"), "{error}");
    }
}

//! The portal: a small web page for people, served at `GET /` from files compiled into the
//! binary (`portal/` beside `src/`: plain HTML, CSS and JavaScript, no build step). It chats with
//! an agent, shows what is running and the event stream, searches memory and plots token usage,
//! all through the same API as any client, with the same token (`docs/portal.md`).
//!
//! The page itself holds no data, so it is served without a token; every call it makes is
//! checked like any other. A strict content security policy allows only the portal's own script,
//! style and API.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../portal/index.html");
const SCRIPT: &str = include_str!("../portal/app.js");
const STYLE: &str = include_str!("../portal/style.css");

/// Only the portal's own files and API; no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /`.
pub(crate) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /portal/app.js`.
pub(crate) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /portal/style.css`.
pub(crate) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The files change with the binary: revalidate rather than keep an old page after an upgrade.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        // Every file the page names is one this module serves, and nothing inline runs.
        assert!(INDEX.contains(r#"src="/portal/app.js""#) && INDEX.contains(r#"href="/portal/style.css""#));
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="), "inline code would be refused by the policy");
        assert!(!SCRIPT.contains("innerHTML"), "text goes in through textContent, never as markup");
    }
}

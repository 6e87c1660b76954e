//! From the Markdown models write to the HTML Telegram parses, in parts it accepts.
//!
//! Telegram refuses a whole message whose formatting does not parse ("can't parse entities"), so
//! the adapter never sends model text as Telegram Markdown, where a stray `_` or `*` is an error.
//! It sends HTML instead, whose only special characters are `<`, `>` and `&`: everything is
//! escaped, and the few constructs recognised are turned into tags this module opens and closes
//! itself, so the output is always well formed. Recognised: fenced code blocks (with their
//! language), inline code, `**bold**`, `~~strike~~`, `[text](https://...)` links, and `#`
//! headings (bold). Anything else, single `*` and `_` included, stays as written.
//!
//! Splitting happens on the Markdown, before rendering, with core's splitter (never inside a word
//! or a code block); rendering only removes characters, so a part within the limit stays within
//! it. Telegram counts the limit in UTF-16 code units, so a part that is short in characters but
//! long in UTF-16 (many emoji) is split again.

use spacebot_core::{SplitOptions, split_message_with};

/// Splits Markdown `text` into parts of at most `limit` characters and UTF-16 code units each.
pub(crate) fn split(text: &str, limit: usize) -> Vec<String> {
    split_message_with(text, SplitOptions::new(limit))
        .into_iter()
        .flat_map(|part| {
            if part.encode_utf16().count() <= limit {
                vec![part]
            } else {
                // Every character is at most two UTF-16 units.
                split_message_with(&part, SplitOptions::new((limit / 2).max(1)))
            }
        })
        .collect()
}

/// Escapes text for Telegram HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders Markdown as Telegram HTML.
pub(crate) fn to_html(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + 32);
    let mut code: Option<(String, String)> = None; // (language, body)
    for line in markdown.split('\n') {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut code, fence) {
            (None, Some(info)) => {
                let language: String = info.trim().chars().take_while(|c| is_language_char(*c)).collect();
                code = Some((language, String::new()));
            }
            (Some(_), Some(_)) => {
                if let Some((language, body)) = code.take() {
                    push_code_block(&mut out, &language, &body);
                }
            }
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {
                push_line(&mut out, line);
                out.push('\n');
            }
        }
    }
    // A block the text never closed is closed here.
    if let Some((language, body)) = code.take() {
        push_code_block(&mut out, &language, &body);
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

fn is_language_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '#' | '-' | '_' | '.')
}

fn push_code_block(out: &mut String, language: &str, body: &str) {
    let body = body.trim_end_matches('\n');
    if language.is_empty() {
        out.push_str(&format!("<pre>{}</pre>\n", escape(body)));
    } else {
        out.push_str(&format!("<pre><code class=\"language-{language}\">{}</code></pre>\n", escape(body)));
    }
}

fn push_line(out: &mut String, line: &str) {
    let trimmed = line.trim_start();
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
        out.push_str("<b>");
        push_inline(out, trimmed[hashes..].trim());
        out.push_str("</b>");
    } else {
        push_inline(out, line);
    }
}

/// Inline code first (nothing inside it is formatting), then links, bold and strike-through.
fn push_inline(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        match after.find('`') {
            Some(end) if end > 0 => {
                push_spans(out, &rest[..start]);
                out.push_str("<code>");
                out.push_str(&escape(&after[..end]));
                out.push_str("</code>");
                rest = &after[end + 1..];
            }
            _ => break,
        }
    }
    push_spans(out, rest);
}

fn push_spans(out: &mut String, text: &str) {
    let mut rest = text;
    loop {
        let next = [find_link(rest), find_delimited(rest, "**"), find_delimited(rest, "~~")]
            .into_iter()
            .flatten()
            .min_by_key(|span| span.start);
        let Some(span) = next else { break };
        out.push_str(&escape(&rest[..span.start]));
        match span.kind {
            Kind::Link(url) => {
                out.push_str(&format!("<a href=\"{}\">{}</a>", escape(url), escape(span.inner)));
            }
            Kind::Tag(tag) => {
                out.push_str(&format!("<{tag}>"));
                push_spans(out, span.inner);
                out.push_str(&format!("</{tag}>"));
            }
        }
        rest = &rest[span.end..];
    }
    out.push_str(&escape(rest));
}

struct Span<'a> {
    start: usize,
    end: usize,
    inner: &'a str,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Link(&'a str),
    Tag(&'static str),
}

/// `[text](http...)`: a link only to an http(s) URL, with non-empty text.
fn find_link(text: &str) -> Option<Span<'_>> {
    let mut from = 0;
    while let Some(open) = text[from..].find('[').map(|i| i + from) {
        from = open + 1;
        let close = text[open..].find("](").map(|i| i + open)?;
        let inner = &text[open + 1..close];
        if inner.is_empty() || inner.contains('[') {
            continue;
        }
        let url_start = close + 2;
        let Some(url_end) = text[url_start..].find(')').map(|i| i + url_start) else { continue };
        let url = &text[url_start..url_end];
        let web = url.starts_with("https://") || url.starts_with("http://");
        if web && !url.contains(char::is_whitespace) {
            return Some(Span { start: open, end: url_end + 1, inner, kind: Kind::Link(url) });
        }
    }
    None
}

/// `**bold**` or `~~strike~~`: non-empty, not starting or ending with a space.
fn find_delimited<'a>(text: &'a str, marker: &str) -> Option<Span<'a>> {
    let tag = if marker == "**" { "b" } else { "s" };
    let mut from = 0;
    while let Some(open) = text[from..].find(marker).map(|i| i + from) {
        let inner_start = open + marker.len();
        let close = text[inner_start..].find(marker).map(|i| i + inner_start)?;
        let inner = &text[inner_start..close];
        if !inner.is_empty() && !inner.starts_with(' ') && !inner.ends_with(' ') {
            return Some(Span { start: open, end: close + marker.len(), inner, kind: Kind::Tag(tag) });
        }
        from = inner_start;
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spacebot_testing::fake_telegram::parse_html;

    use super::*;

    #[test]
    fn text_is_escaped_and_stray_markers_stay_as_written() {
        assert_eq!(to_html("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(to_html("snake_case and 2*3*4 and _x_"), "snake_case and 2*3*4 and _x_");
        assert_eq!(to_html("a **bold** move"), "a <b>bold</b> move");
        assert_eq!(to_html("** not bold **"), "** not bold **");
        assert_eq!(to_html("~~gone~~"), "<s>gone</s>");
        assert_eq!(to_html("# Title"), "<b>Title</b>");
    }

    #[test]
    fn code_keeps_its_characters_and_language() {
        assert_eq!(to_html("run `a<b && **c**`"), "run <code>a&lt;b &amp;&amp; **c**</code>");
        assert_eq!(
            to_html("before\n```rust\nlet x = a < b;\n```\nafter"),
            "before\n<pre><code class=\"language-rust\">let x = a &lt; b;</code></pre>\nafter"
        );
        assert_eq!(to_html("```\nplain\n"), "<pre>plain</pre>", "an unclosed block is closed");
        assert_eq!(to_html("```js\"><script>\nx\n```"), "<pre><code class=\"language-js\">x</code></pre>");
    }

    #[test]
    fn links_go_only_to_web_urls() {
        assert_eq!(
            to_html("see [the docs](https://example.com/a?b=1&c=2)"),
            "see <a href=\"https://example.com/a?b=1&amp;c=2\">the docs</a>"
        );
        assert_eq!(to_html("[x](javascript:alert(1))"), "[x](javascript:alert(1))");
        assert_eq!(
            to_html("[a] [b](http://e.x) **[c](https://f.x)**"),
            "[a] <a href=\"http://e.x\">b</a> <b><a href=\"https://f.x\">c</a></b>"
        );
    }

    #[test]
    fn parts_fit_in_utf16_units_too() {
        let emoji = "😀 ".repeat(3000);
        let parts = split(&emoji, 4096);
        assert!(parts.len() >= 2);
        for part in &parts {
            assert!(part.encode_utf16().count() <= 4096, "{} units", part.encode_utf16().count());
        }
        let words: Vec<&str> = parts.iter().flat_map(|p| p.split_whitespace()).collect();
        assert_eq!(words.len(), 3000, "no emoji lost");
    }

    proptest! {
        /// Whatever a model writes, the HTML parses (Telegram would otherwise refuse the message),
        /// and is no longer than the Markdown once parsed.
        #[test]
        fn any_text_renders_to_html_telegram_parses(text in "[a-z<>&\"'`*_~\\[\\]()#:/. \n-]{0,200}") {
            let html = to_html(&text);
            let parsed = parse_html(&html);
            prop_assert!(parsed.is_ok(), "{html:?} does not parse: {parsed:?}");
            let visible = parsed.unwrap_or_default();
            prop_assert!(visible.chars().count() <= text.chars().count(), "{text:?} became {visible:?}");
        }
    }
}

//! Checks shared by every section of the config: URLs that must be http(s), limits that must be
//! positive, TOML that must parse; and where a key's value came from, so an error names the file
//! (or the environment variable) as well as the key.

use std::fmt::Display;
use std::path::Path;

use anyhow::bail;
use figment::Figment;
use figment::providers::{Format, Toml};

/// `value` of config key `key` when it is an absolute http(s) URL with a host and no query or
/// fragment (base URLs get paths appended), as every client built from one needs.
pub(super) fn http_url(value: &str, key: &str) -> anyhow::Result<String> {
    let problem = match reqwest::Url::parse(value) {
        Err(error) => Some(error.to_string()),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Some("the scheme must be http or https".to_owned()),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("it names no host".to_owned()),
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            Some("it can't have a query or fragment".to_owned())
        }
        Ok(_) => None,
    };
    match problem {
        Some(problem) => {
            bail!(
                "config key `{key}` must be an http(s) URL like https://api.example.com/v1, not `{value}` ({problem})"
            )
        }
        None => Ok(value.to_owned()),
    }
}

/// `value` of config key `key`, refused when it is set to zero: a limit of nothing makes every
/// request, turn or command fail.
pub(super) fn positive<T: Copy + PartialOrd + From<u8> + Display>(
    value: Option<T>,
    key: &str,
) -> anyhow::Result<Option<T>> {
    match value {
        Some(value) if value < T::from(1) => bail!("config key `{key}` must be at least 1, not {value}"),
        value => Ok(value),
    }
}

/// Reads and parses the config file, so a syntax error is one sentence: the file, the line and
/// column, and what is wrong (figment would print the TOML parser's multi-line snippet).
pub(super) fn parse_toml(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("can't read config file {}: {error}", path.display()))?;
    let Err(error) = Toml::from_str::<figment::value::Dict>(&text) else { return Ok(()) };
    let what = error.message().lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ");
    match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(&text, span.start);
            bail!("config file {} is not valid TOML: line {line}, column {column}: {what}", path.display())
        }
        None => bail!("config file {} is not valid TOML: {what}", path.display()),
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// Where config key `key` got its value: ` in FILE`, ` (from SPACEBOT_...)`, or nothing for a
/// default. An indexed key (`agents[0].id`) is looked up by its table (`agents`).
pub(super) fn origin(figment: &Figment, key: &str) -> String {
    let table = key.split('[').next().unwrap_or(key);
    let Some(metadata) = figment.find_metadata(table) else { return String::new() };
    match &metadata.source {
        Some(figment::Source::File(path)) => format!(" in {}", path.display()),
        _ if metadata.name.contains("environment") => {
            format!(" (from environment variable SPACEBOT_{})", table.to_ascii_uppercase().replace('.', "__"))
        }
        _ => String::new(),
    }
}

/// `message`, an error of the config's own checks, with where its key's value came from: they
/// all start with ``config key `K` ``, and the origin goes right after the key (after the whole
/// sentence for ``config keys `K`, ...``).
pub(super) fn with_origin(message: &str, figment: &Figment) -> String {
    if let Some(rest) = message.strip_prefix("config key `")
        && let Some((key, tail)) = rest.split_once('`')
    {
        return format!("config key `{key}`{}{tail}", origin(figment, key));
    }
    if let Some(rest) = message.strip_prefix("config keys `")
        && let Some((key, _)) = rest.split_once('`')
    {
        return format!("{message}{}", origin(figment, key));
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_http_with_a_host() {
        assert_eq!(http_url("http://127.0.0.1:9/v1", "k").unwrap(), "http://127.0.0.1:9/v1");
        for (bad, why) in [
            ("127.0.0.1:8080/v1", "relative URL"),
            ("localhost:8080/v1", "scheme must be http or https"),
            ("ftp://example.com", "scheme must be http or https"),
            ("http://", "empty host"),
            ("http://exa mple.com", "invalid"),
            ("http://example.com/v1?key=1", "query or fragment"),
            ("", "relative URL"),
        ] {
            let error = http_url(bad, "llm.providers.main.base_url").unwrap_err().to_string();
            assert!(error.starts_with("config key `llm.providers.main.base_url` must be an http(s) URL"), "{error}");
            assert!(error.contains(&format!("not `{bad}`")) && error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn zero_limits_are_refused() {
        assert_eq!(positive(Some(3u64), "k").unwrap(), Some(3));
        assert_eq!(positive(None::<usize>, "k").unwrap(), None);
        let error = positive(Some(0usize), "api.max_body_bytes").unwrap_err().to_string();
        assert_eq!(error, "config key `api.max_body_bytes` must be at least 1, not 0");
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[api]\nbind = \"127.0.0.1:1\"\n\n[llm\nkind = 1\n").unwrap();
        let error = parse_toml(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("config file {} is not valid TOML: line 4, column 5: ", path.display())),
            "{error}"
        );
        assert_eq!(error.lines().count(), 1, "{error}");
        std::fs::write(&path, "a = 1\n").unwrap();
        parse_toml(&path).unwrap();
    }

    #[test]
    fn lines_and_columns_count_from_one_in_characters() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncé\nx", 6), (2, 3));
        assert_eq!(line_and_column("ab\ncé\nx", 7), (3, 1));
    }

    #[test]
    fn the_origin_follows_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[api]\nbind = \"x\"\n[[agents]]\nid = \"a\"\n").unwrap();
        let figment = Figment::new().merge(Toml::file_exact(&path));
        let file = path.display();
        assert_eq!(
            with_origin("config key `api.bind` must be an address", &figment),
            format!("config key `api.bind` in {file} must be an address")
        );
        assert_eq!(
            with_origin("config keys `agents[0].compaction.background`, `.aggressive` must not decrease", &figment),
            format!("config keys `agents[0].compaction.background`, `.aggressive` must not decrease in {file}")
        );
        assert_eq!(
            with_origin("config key `llm.models.channel` is empty", &figment),
            "config key `llm.models.channel` is empty"
        );
        assert_eq!(with_origin("can't read x", &figment), "can't read x");
    }
}

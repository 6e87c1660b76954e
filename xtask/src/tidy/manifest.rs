//! Internal dependencies are inherited from `[workspace.dependencies]`.
//!
//! `cargo metadata` can't tell whether a dependency was written as `foo.workspace = true` or with
//! its own `path`, so this reads the manifest text. It understands the forms our manifests use
//! (`name.workspace = true`, inline tables, `[dependencies.name]` tables, `package = "..."`
//! renames, `[target.'cfg(..)'.dependencies]`) without a TOML parser, to keep xtask lean.

use std::collections::HashSet;

use super::Violation;

/// The dependency tables, by the key that names them.
const TABLE_KINDS: &[&str] = &["dependencies", "dev-dependencies", "build-dependencies"];

/// Where the parser is in the manifest.
enum Section {
    /// Not a dependency table.
    Other,
    /// A table of dependencies, one per key (`[dependencies]`).
    Many { table: String },
    /// A table for one dependency (`[dependencies.spacebot-core]`).
    One { table: String, key: String },
}

/// One dependency as written, found so far.
struct Entry {
    table: String,
    /// The key it is written under (the alias, for renamed dependencies).
    key: String,
    /// The package it names.
    package: String,
    /// Whether it says `workspace = true`.
    inherited: bool,
}

/// Checks that every workspace crate named in a dependency table of `text` is inherited with
/// `workspace = true`. `location` names the manifest in messages; `internal` holds the workspace
/// package names.
pub(crate) fn check(location: &str, text: &str, internal: &HashSet<&str>) -> Vec<Violation> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut section = Section::Other;
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = parse_header(line);
            if let Section::One { table, key } = &section {
                entry(&mut entries, table, key);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        match &section {
            Section::Other => {}
            Section::Many { table } => {
                let (name, field) = match key.split_once('.') {
                    Some((name, field)) => (unquote(name), Some(unquote(field))),
                    None => (unquote(key), None),
                };
                let entry = entry(&mut entries, table, name);
                match field {
                    Some("workspace") => entry.inherited |= value == "true",
                    Some("package") => entry.package = unquote(value).to_owned(),
                    Some(_) => {}
                    None => {
                        entry.inherited |= inline_field(value, "workspace").is_some_and(|v| v == "true");
                        if let Some(package) = inline_field(value, "package") {
                            entry.package = unquote(package).to_owned();
                        }
                    }
                }
            }
            Section::One { table, key: name } => {
                let entry = entry(&mut entries, table, name);
                match unquote(key) {
                    "workspace" => entry.inherited |= value == "true",
                    "package" => entry.package = unquote(value).to_owned(),
                    _ => {}
                }
            }
        }
    }

    entries
        .iter()
        .filter(|e| internal.contains(e.package.as_str()) && !e.inherited)
        .map(|e| {
            let written = if e.key == e.package { e.key.clone() } else { format!("{} (package {})", e.key, e.package) };
            Violation::new(
                location,
                format!(
                    "{} {written}: workspace crates must be inherited with `{}.workspace = true`, not given a path or version here",
                    e.table, e.key
                ),
            )
        })
        .collect()
}

fn entry<'a>(entries: &'a mut Vec<Entry>, table: &str, key: &str) -> &'a mut Entry {
    let index = match entries.iter().position(|e| e.table == table && e.key == key) {
        Some(index) => index,
        None => {
            entries.push(Entry {
                table: table.to_owned(),
                key: key.to_owned(),
                package: key.to_owned(),
                inherited: false,
            });
            entries.len() - 1
        }
    };
    &mut entries[index]
}

fn parse_header(line: &str) -> Section {
    let inner = line.trim_start_matches('[').trim_end_matches(']').trim();
    // `[workspace.dependencies]` declares the crates; it is not a member's dependency list.
    if inner.starts_with("workspace") {
        return Section::Other;
    }
    for kind in TABLE_KINDS {
        let at_segment = |pos: usize| pos == 0 || inner[..pos].ends_with('.');
        if inner.ends_with(kind) && at_segment(inner.len() - kind.len()) {
            return Section::Many { table: format!("[{inner}]") };
        }
        let prefix = format!("{kind}.");
        if let Some(pos) = inner.rfind(&prefix).filter(|&pos| at_segment(pos)) {
            let table = format!("[{}]", &inner[..pos + kind.len()]);
            return Section::One { table, key: unquote(&inner[pos + prefix.len()..]).to_owned() };
        }
    }
    Section::Other
}

/// The value of `field` in an inline table such as `{ workspace = true, features = ["x"] }`.
fn inline_field<'a>(value: &'a str, field: &str) -> Option<&'a str> {
    let body = value.strip_prefix('{')?.trim_end().strip_suffix('}')?;
    body.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (unquote(key.trim()) == field).then(|| value.trim())
    })
}

fn unquote(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        .unwrap_or(text)
}

/// `line` without a trailing `# comment`; a `#` inside a string is kept.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(text: &str) -> Vec<String> {
        let internal = HashSet::from(["spacebot-core", "spacebot-testing"]);
        check("crates/x/Cargo.toml", text, &internal).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn inherited_forms_pass() {
        let text = r#"
[package]
name = "x"

[dependencies]
spacebot-core.workspace = true
serde = { version = "1", features = ["derive"] } # external crates are not our business
tokio = { workspace = true, features = ["sync"] }

[dev-dependencies]
spacebot-testing = { workspace = true, features = ["fake-server"] }

[target.'cfg(unix)'.dependencies.spacebot-core]
workspace = true
"#;
        assert_eq!(violations(text), Vec::<String>::new());
    }

    #[test]
    fn a_path_dependency_fails() {
        let text = "[dependencies]\nspacebot-core = { path = \"../spacebot-core\" }\n";
        let found = violations(text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("crates/x/Cargo.toml: [dependencies] spacebot-core:"), "{found:#?}");
        assert!(found[0].contains("`spacebot-core.workspace = true`"), "{found:#?}");
    }

    #[test]
    fn a_version_dependency_fails() {
        let found = violations("[dependencies]\n\"spacebot-core\" = \"0.1\"\n");
        assert_eq!(found.len(), 1, "{found:#?}");
    }

    #[test]
    fn a_dotted_path_key_fails() {
        let found = violations("[dev-dependencies]\nspacebot-testing.path = \"../spacebot-testing\"\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("[dev-dependencies] spacebot-testing"), "{found:#?}");
    }

    #[test]
    fn a_dependency_table_without_workspace_fails() {
        let text = "[dev-dependencies.spacebot-testing]\npath = \"../spacebot-testing\"\n# workspace = true\n";
        let found = violations(text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("[dev-dependencies] spacebot-testing"), "{found:#?}");
    }

    #[test]
    fn a_renamed_dependency_is_found_by_package() {
        let found = violations("[build-dependencies]\ncore = { package = \"spacebot-core\", path = \"../core\" }\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("core (package spacebot-core)"), "{found:#?}");
    }

    #[test]
    fn target_tables_are_dependency_tables() {
        let found = violations("[target.'cfg(windows)'.dependencies]\nspacebot-core = { path = \"x\" }\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("[target.'cfg(windows)'.dependencies] spacebot-core"), "{found:#?}");
    }

    #[test]
    fn workspace_dependency_declarations_are_not_member_dependencies() {
        let text =
            "[workspace.dependencies]\nspacebot-core = { path = \"crates/spacebot-core\", version = \"0.1.0\" }\n";
        assert_eq!(violations(text), Vec::<String>::new());
    }

    #[test]
    fn comments_are_stripped_outside_strings_only() {
        assert_eq!(strip_comment("a = \"#x\" # note"), "a = \"#x\" ");
        assert_eq!(strip_comment("# all comment"), "");
    }
}

//! Paths the documentation spells out exist: a code span in a Markdown document that starts at a
//! top-level directory of the repository (`` `crates/spacebot-core/src/runtime.rs` ``,
//! `` `docs/memory.md` ``) names a file or directory that is there, so a move or a removal that
//! forgets the docs is caught.
//!
//! Only whole paths from the root are checked; spans with a placeholder or a pattern (`<crate>`,
//! `*`, `{a,b}`, `...`) or a space are prose, not paths. File names alone (`runtime.rs`) are the code
//! map's business ([`super::codemap`]).

use std::path::Path;

use super::Violation;

/// The documents checked, relative to the workspace root, besides every `.md` file in `docs/`.
pub(crate) const DOCUMENTS: &[&str] =
    &["AGENTS.md", "README.md", "RUST_STYLE_GUIDE.md", "crates/README.md", "examples/README.md"];

/// The top-level directories a checked path starts with.
const ROOTS: &[&str] =
    &["crates/", "bins/", "benches/", "examples/", "xtask/", "fuzz/", "docs/", "migrations/", "scripts/", ".ci/"];

/// The documents to check under `root`: [`DOCUMENTS`] that exist and every `.md` file in `docs/`,
/// as paths relative to `root`.
pub(crate) fn list(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut documents: Vec<String> =
        DOCUMENTS.iter().filter(|doc| root.join(doc).is_file()).map(|doc| (*doc).to_owned()).collect();
    let dir = root.join("docs");
    if dir.is_dir() {
        let mut in_docs = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("can't list {}: {e}", dir.display()))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                in_docs.push(format!("docs/{name}"));
            }
        }
        in_docs.sort();
        documents.extend(in_docs);
    }
    Ok(documents)
}

/// Checks one document's text; `exists` says whether a path relative to the root exists.
pub(crate) fn check(document: &str, text: &str, exists: &dyn Fn(&str) -> bool) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (line, span) in spans(text) {
        if is_path(span) && !exists(span.trim_end_matches('/')) {
            violations.push(Violation::new(
                format!("{document}:{line}"),
                format!("`{span}` is no file or directory: update the document after a move or a removal"),
            ));
        }
    }
    violations
}

/// Every inline code span with the line it starts on. Fenced code blocks are skipped: they hold
/// commands and output, not references.
fn spans(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        found.extend(line.split('`').skip(1).step_by(2).map(|span| (number + 1, span)));
    }
    found
}

/// Whether a code span is a path from the repository root, rather than prose or a pattern.
fn is_path(span: &str) -> bool {
    ROOTS.iter().any(|root| span.starts_with(root))
        && !span.contains(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '*' | '{' | '}' | '|' | '$'))
        && !span.contains("...")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        let exists = |path: &str| ["crates/spacebot-core/src/runtime.rs", "docs/memory.md", "docs"].contains(&path);
        check("docs/x.md", text, &exists).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn paths_that_exist_pass() {
        let text = "See `crates/spacebot-core/src/runtime.rs`, `docs/memory.md` and `docs/`.\n";
        assert_eq!(messages(text), Vec::<String>::new());
    }

    #[test]
    fn a_path_that_does_not_exist_is_reported_with_its_line() {
        let text = "# Title\n\nThe store is `crates/spacebot-core/src/store.rs`.\n";
        assert_eq!(
            messages(text),
            vec![
                "docs/x.md:3: `crates/spacebot-core/src/store.rs` is no file or directory: update the document after \
             a move or a removal"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn prose_patterns_and_code_blocks_are_not_paths() {
        let text = "`runtime.rs`, `crates/<crate>/tests/it/main.rs`, `crates/*`, `docs/{a,b}.md`, `docs/...`, \
                    `cargo run -p spacebot`\n```sh\ncat `crates/nothing.rs`\n```\n";
        assert_eq!(messages(text), Vec::<String>::new());
    }
}

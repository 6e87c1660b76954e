//! `cargo xtask tidy`: repository rules that review should not have to catch.
//!
//! The rules live in one module each, most as a table, so a new crate or file rule is one line:
//! - [`deps::RULES`]: which workspace crates each package may depend on, and which external
//!   crates must never appear in its normal dependency tree (read from `cargo metadata`);
//! - [`manifest`]: internal dependencies are inherited with `name.workspace = true`;
//! - [`files`]: every `.rs` file opens with a `//!` comment, no `mod.rs`, line budgets;
//! - [`codemap`]: `docs/ARCHITECTURE.md`'s code map names every source file, and only files
//!   that exist;
//! - [`docs`]: every path from the root that a document spells out exists.
//!
//! The same checks run as the `tidy` test below, so `cargo test --workspace` enforces them and CI
//! needs no extra step.

mod codemap;
mod deps;
mod docs;
mod files;
mod manifest;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// One broken rule, printed as a single line: where, then what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The file or manifest at fault, relative to the workspace root.
    pub(crate) location: String,
    /// What is wrong and, where it is not obvious, how to fix it.
    pub(crate) message: String,
}

impl Violation {
    fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self { location: location.into(), message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Runs every check against the workspace at `root` and returns what it found.
///
/// An error means a check could not run (cargo metadata failed, a file was unreadable); that is
/// different from a rule being broken.
pub(crate) fn run(root: &Path) -> anyhow::Result<Vec<Violation>> {
    let sources = files::list(root)?;
    let mut violations = files::check_tree(root, &sources)?;
    let map = std::fs::read_to_string(root.join(codemap::DOC))
        .map_err(|e| anyhow::anyhow!("can't read {}: {e}", codemap::DOC))?;
    violations.extend(codemap::check(&map, &sources));
    for document in docs::list(root)? {
        let text =
            std::fs::read_to_string(root.join(&document)).map_err(|e| anyhow::anyhow!("can't read {document}: {e}"))?;
        violations.extend(docs::check(&document, &text, &|path: &str| root.join(path).exists()));
    }

    let metadata = deps::Metadata::load(root)?;
    let internal: HashSet<&str> = metadata.members().iter().map(|m| m.name.as_str()).collect();
    for member in metadata.members() {
        let text = std::fs::read_to_string(&member.manifest_path)
            .map_err(|e| anyhow::anyhow!("can't read {}: {e}", member.manifest_path.display()))?;
        violations.extend(manifest::check(&metadata.relative(&member.manifest_path), &text, &internal));
    }
    violations.extend(deps::check(&metadata, deps::RULES));
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real workspace obeys every rule.
    #[test]
    fn tidy() {
        let violations = run(&crate::project_root()).expect("tidy could not run");
        let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "tidy found {} violation(s):\n{}", violations.len(), listed.join("\n"));
    }
}

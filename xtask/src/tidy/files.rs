//! Rules about source files: a `//!` header on every file, no `mod.rs`, line budgets, and a
//! binary `main.rs` that only calls into its library.

use std::path::Path;

use anyhow::Context;

use super::Violation;

/// The directories whose `.rs` files the rules cover, relative to the workspace root.
pub(crate) const ROOTS: &[&str] = &["crates", "bins", "benches", "xtask", "examples", "fuzz"];

/// Files that must stay small, with their budget in lines.
///
/// The daemon's `main.rs` hands over to the `spacebot` library (`src/lib.rs`), where the command
/// line and the daemon assembly live so tests and embedders can run them in-process.
const LINE_BUDGETS: &[(&str, usize)] = &[("bins/spacebot/src/main.rs", 30)];

/// Binary entry points that declare no modules of their own: everything is in the library.
const THIN_MAINS: &[&str] = &["bins/spacebot/src/main.rs"];

/// Every `.rs` file under [`ROOTS`], relative to `root` with `/` separators, sorted; build output
/// and hidden directories are skipped.
pub(crate) fn list(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for dir in ROOTS {
        collect(&root.join(dir), &mut files)?;
    }
    let mut relative: Vec<String> =
        files.iter().map(|path| path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")).collect();
    relative.sort();
    Ok(relative)
}

/// Checks every file of `files` (as [`list`] returns them).
pub(crate) fn check_tree(root: &Path, files: &[String]) -> anyhow::Result<Vec<Violation>> {
    let mut violations = Vec::new();
    for relative in files {
        let path = root.join(relative);
        let text = std::fs::read_to_string(&path).with_context(|| format!("can't read {}", path.display()))?;
        violations.extend(check_file(relative, &text));
    }
    Ok(violations)
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("can't list {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect(&path, files)?;
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// Checks one file, given its path relative to the workspace root (with `/` separators).
pub(crate) fn check_file(relative: &str, text: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    if relative == "mod.rs" || relative.ends_with("/mod.rs") {
        violations.push(Violation::new(
            relative,
            "no mod.rs files: name the module file after the module (`foo.rs` beside `foo/`)",
        ));
    }
    if !text.starts_with("//!") {
        violations.push(Violation::new(relative, "the first line must be a `//!` comment saying what the file is for"));
    }
    for (path, budget) in LINE_BUDGETS {
        let lines = text.lines().count();
        if relative == *path && lines > *budget {
            violations.push(Violation::new(
                relative,
                format!("{lines} lines, over the budget of {budget}: move logic into a module or a library crate"),
            ));
        }
    }
    if THIN_MAINS.contains(&relative) && text.lines().any(declares_module) {
        violations.push(Violation::new(
            relative,
            "a binary's main.rs declares no modules: put them in the library (src/lib.rs) and call into it",
        ));
    }
    violations
}

/// Whether a line declares a module (`mod x;`, `pub(crate) mod x {`), ignoring comments.
fn declares_module(line: &str) -> bool {
    let line = line.trim_start();
    let line = line.strip_prefix("pub").map_or(line, |rest| {
        let rest = rest.trim_start();
        match rest.strip_prefix('(') {
            Some(scoped) => scoped.split_once(')').map_or(rest, |(_, after)| after),
            None => rest,
        }
    });
    line.trim_start().strip_prefix("mod").is_some_and(|rest| rest.starts_with(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(relative: &str, text: &str) -> Vec<String> {
        check_file(relative, text).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_file_with_a_header_passes() {
        assert_eq!(messages("crates/spacebot-core/src/ids.rs", "//! Ids.\n\nfn f() {}\n"), Vec::<String>::new());
    }

    #[test]
    fn a_file_without_a_header_fails() {
        let found = messages("crates/spacebot-agent/src/channel.rs", "use std::fmt;\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("crates/spacebot-agent/src/channel.rs: the first line must be a `//!`"));
    }

    #[test]
    fn the_header_comes_first() {
        assert_eq!(messages("xtask/src/x.rs", "#![allow(dead_code)]\n//! Late.\n").len(), 1);
        assert_eq!(messages("xtask/src/x.rs", "/// Item docs are not a header.\nfn f() {}\n").len(), 1);
        assert_eq!(messages("xtask/src/x.rs", "").len(), 1);
    }

    #[test]
    fn mod_rs_fails() {
        let found = messages("crates/spacebot-agent/tests/common/mod.rs", "//! Helpers.\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("no mod.rs files"), "{found:#?}");
    }

    #[test]
    fn the_binary_main_has_a_line_budget() {
        let at_budget = format!("//! Main.\n{}", "\n".repeat(29));
        assert_eq!(at_budget.lines().count(), 30);
        assert_eq!(messages("bins/spacebot/src/main.rs", &at_budget), Vec::<String>::new());

        let over = format!("{at_budget}fn main() {{}}\n");
        let found = messages("bins/spacebot/src/main.rs", &over);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("31 lines, over the budget of 30"), "{found:#?}");

        // Other files have no budget.
        assert_eq!(messages("crates/spacebot-agent/src/main.rs", &over), Vec::<String>::new());
    }

    #[test]
    fn the_binary_main_declares_no_modules() {
        let thin =
            "//! Main.\n// mod comments are fine\nfn main() -> std::process::ExitCode {\n    spacebot::main()\n}\n";
        assert_eq!(messages("bins/spacebot/src/main.rs", thin), Vec::<String>::new());
        for declaration in ["mod start;", "pub mod start;", "pub(crate) mod cli {", "  mod  x;"] {
            let text = format!("//! Main.\n{declaration}\nfn main() {{}}\n");
            let found = messages("bins/spacebot/src/main.rs", &text);
            assert_eq!(found.len(), 1, "{declaration}: {found:#?}");
            assert!(found[0].contains("declares no modules"), "{found:#?}");
        }
        assert_eq!(messages("bins/spacebot/src/main.rs", "//! Main.\nfn model() {}\n"), Vec::<String>::new());
        // Libraries and other binaries declare modules as they like.
        assert_eq!(messages("bins/spacebot/src/lib.rs", "//! Lib.\nmod start;\n"), Vec::<String>::new());
    }
}

//! The code map in `docs/ARCHITECTURE.md` names every source file, and names only files that
//! exist.
//!
//! The map is the `## Code map` section: one `###` section per crate (or group of crates), whose
//! heading names the crate's directory in backticks (`` ### `crates/spacebot-core` ``, or
//! `` ### `examples/` `` for everything under it). A file counts as named when a backticked path
//! in its section ends with the file's path on a `/` boundary (`ids.rs`, `memory/indexes.rs`,
//! `src/lib.rs`) and names no other file of the same package, or when the map anywhere spells the
//! file's whole path from the repository root. One brace group expands, so
//! `` `channel/{turn,delegation}.rs` `` names two files.
//!
//! Covered: every `.rs` file under a package's `src/`, and its `build.rs`, except the crate roots
//! `src/lib.rs` and `src/main.rs` (the section heading names the crate). Integration tests
//! (`tests/`) are not required, one module per area of a crate's single test binary; the map may
//! still name them, and a name it uses must exist.
//!
//! The other direction keeps the map honest: a `.rs` name in the map that matches no file is
//! reported (stale after a move), and so is one that matches two files of a package (write more
//! of the path).

use std::collections::BTreeSet;

use super::Violation;

/// Where the map lives, relative to the workspace root.
pub(crate) const DOC: &str = "docs/ARCHITECTURE.md";

/// The heading of the map's section.
const HEADING: &str = "## Code map";

/// One `###` section of the map: the directories its heading names, and the `.rs` names in it.
#[derive(Debug)]
struct Section {
    roots: Vec<String>,
    names: Vec<String>,
}

/// Checks `doc` (the text of [`DOC`]) against `files`, every `.rs` file of the workspace as a path
/// relative to the root with `/` separators.
pub(crate) fn check(doc: &str, files: &[String]) -> Vec<Violation> {
    let Some(map) = code_map(doc) else {
        return vec![Violation::new(DOC, format!("no `{HEADING}` section: the code map names every source file"))];
    };
    let sections = sections(map);
    let mut violations = Vec::new();

    // What each name stands for: one file per package of its section, or nothing (stale), or
    // two files (ambiguous). A whole path from the root names its file wherever it appears.
    let mut named: BTreeSet<&str> = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for section in &sections {
        let packages: BTreeSet<&str> =
            files.iter().filter(|file| section.covers(file)).map(|file| package(file)).collect();
        for name in &section.names {
            let mut found = false;
            for package in &packages {
                match resolve(name, package, files) {
                    Resolution::None => {}
                    Resolution::One(file) => {
                        found = true;
                        named.insert(file);
                    }
                    Resolution::Ambiguous(one, other) => {
                        found = true;
                        if reported.insert(name.clone()) {
                            violations.push(Violation::new(
                                DOC,
                                format!("the code map's `{name}` could be {one} or {other}: write more of the path"),
                            ));
                        }
                    }
                }
            }
            if let Some(file) = files.iter().find(|file| *file == name) {
                named.insert(file);
                found = true;
            }
            // Another crate's file, named in passing ("core's `process.rs`"), is not stale.
            if !found && !files.iter().any(|file| names(name, file)) && reported.insert(name.clone()) {
                violations.push(Violation::new(
                    DOC,
                    format!("the code map names `{name}`, which is no file: update the map after a move or a removal"),
                ));
            }
        }
    }

    // Every covered file is named in its section.
    for file in files.iter().filter(|file| is_covered(file) && !named.contains(file.as_str())) {
        let message = match section_of(&sections, file) {
            Some(section) => format!(
                "not named in the code map ({DOC}, section `{}`): say there what it is for",
                section.roots.join("`, `")
            ),
            None => format!(
                "no section of the code map in {DOC} covers this file: add one whose heading names `{}`",
                package(file)
            ),
        };
        violations.push(Violation::new(file.as_str(), message));
    }
    violations
}

/// What a name in the map stands for within one package.
#[derive(Debug, PartialEq, Eq)]
enum Resolution<'a> {
    None,
    One(&'a str),
    Ambiguous(&'a str, &'a str),
}

/// Resolves `name` among the files of `package`. Its exact path under the package (`build.rs`,
/// `src/lib.rs`, `tests/it/main.rs`) or under `src/` (`channel.rs`, `memory/indexes.rs`) wins;
/// else it is a shorthand that must end the path of one source file (`indexes.rs`), or, naming
/// no source file, of one other file (a test module).
fn resolve<'a>(name: &str, package: &str, files: &'a [String]) -> Resolution<'a> {
    let inside = |file: &'a String| -> Option<&'a str> {
        file.strip_prefix(package).and_then(|rest| rest.strip_prefix('/')).filter(|_| self::package(file) == package)
    };
    let candidates: Vec<(&'a str, &'a str)> =
        files.iter().filter_map(|file| Some((file.as_str(), inside(file)?))).collect();
    if let Some((file, _)) =
        candidates.iter().find(|(_, path)| *path == name || path.strip_prefix("src/") == Some(name))
    {
        return Resolution::One(file);
    }
    let is_source = |path: &str| path.starts_with("src/") || path == "build.rs";
    for sources in [true, false] {
        let mut matches = candidates.iter().filter(|(_, path)| is_source(path) == sources && names(name, path));
        match (matches.next(), matches.next()) {
            (Some((one, _)), None) => return Resolution::One(one),
            (Some((one, _)), Some((other, _))) => return Resolution::Ambiguous(one, other),
            _ => {}
        }
    }
    Resolution::None
}

/// The text of the code map section: from its heading to the next `## ` heading.
fn code_map(doc: &str) -> Option<&str> {
    let start = doc.lines().position(|line| line.trim_end() == HEADING)?;
    let mut offset = 0;
    let mut begin = None;
    for (i, line) in doc.split_inclusive('\n').enumerate() {
        if i == start {
            begin = Some(offset + line.len());
        } else if let Some(begin) = begin
            && line.starts_with("## ")
        {
            return Some(&doc[begin..offset]);
        }
        offset += line.len();
    }
    begin.map(|begin| &doc[begin..])
}

/// Splits the map into its `###` sections. Code spans may wrap lines, so each section's names are
/// read from its whole text.
fn sections(map: &str) -> Vec<Section> {
    let mut sections: Vec<(Section, String)> = Vec::new();
    for line in map.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            let roots = backticked(heading).into_iter().map(|root| root.trim_end_matches('/').to_owned()).collect();
            sections.push((Section { roots, names: Vec::new() }, String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections
        .into_iter()
        .map(|(mut section, body)| {
            section.names = backticked(&body).into_iter().filter(|span| is_rs_name(span)).flat_map(expand).collect();
            section
        })
        .collect()
}

/// The spans between pairs of backticks in `text`.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Whether a code span is a path or file name of Rust source: `foo.rs`, `a/b.rs`, `a/{b,c}.rs`.
fn is_rs_name(span: &str) -> bool {
    span.ends_with(".rs") && !span.contains(char::is_whitespace)
}

/// Expands one `{a,b}` group: `channel/{turn,delegation}.rs` is `channel/turn.rs` and
/// `channel/delegation.rs`.
fn expand(name: &str) -> Vec<String> {
    let Some((before, rest)) = name.split_once('{') else { return vec![name.to_owned()] };
    let Some((group, after)) = rest.split_once('}') else { return vec![name.to_owned()] };
    group.split(',').map(|part| format!("{before}{}{after}", part.trim())).collect()
}

/// Whether `name` names `file`: equal, or a suffix of it starting after a `/`.
fn names(name: &str, file: &str) -> bool {
    file == name || file.strip_suffix(name).is_some_and(|head| head.ends_with('/'))
}

/// The package directory of a file: the path before its `src/`, `tests/`, `benches/`,
/// `examples/` or `build.rs`.
fn package(file: &str) -> &str {
    let parts: Vec<&str> = file.split('/').collect();
    // The package directory is one (xtask) or two (crates/x) components deep; its first part
    // below the package is one of these.
    for depth in [1, 2] {
        if let Some(next) = parts.get(depth)
            && (matches!(*next, "src" | "tests" | "benches" | "examples" | "build.rs"))
            && parts.len() > depth + usize::from(*next != "build.rs")
        {
            let len: usize = parts[..depth].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
            return &file[..len];
        }
    }
    file.rsplit_once('/').map_or(file, |(dir, _)| dir)
}

/// Whether the rule requires `file` to be named: sources under `src/` and `build.rs`, except
/// the crate roots.
fn is_covered(file: &str) -> bool {
    let package = package(file);
    let Some(inside) = file.strip_prefix(package).and_then(|rest| rest.strip_prefix('/')) else { return false };
    inside == "build.rs" || (inside.starts_with("src/") && inside != "src/lib.rs" && inside != "src/main.rs")
}

impl Section {
    /// The length of the longest directory of the heading that contains `file`, if any does.
    fn depth(&self, file: &str) -> Option<usize> {
        self.roots.iter().filter(|root| names_dir(root, file)).map(|root| root.len()).max()
    }

    fn covers(&self, file: &str) -> bool {
        self.depth(file).is_some()
    }
}

/// The section covering `file`: the one whose heading names the longest directory containing it.
fn section_of<'a>(sections: &'a [Section], file: &str) -> Option<&'a Section> {
    sections
        .iter()
        .filter_map(|section| Some((section.depth(file)?, section)))
        .max_by_key(|(len, _)| *len)
        .map(|(_, section)| section)
}

/// Whether `file` lies under the directory `dir`.
fn names_dir(dir: &str, file: &str) -> bool {
    !dir.is_empty() && file.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
# Architecture

## Code map

### `crates/spacebot-core` (API Boundary)

The contract: `ids.rs`, `memory.rs` (types in `memory/`: `model.rs`), `src/runtime.rs`.

### `crates/spacebot-agent`

`channel.rs` with `channel/{turn,delegation}.rs`; `context/chronicle.rs`.

### `examples/`

`custom-adapter/` with `adapter.rs`; `embed/` with `dice.rs`.

## Cross-cutting concerns

`crates/spacebot-agent/src/unlisted.rs` is mentioned here, which does not count.
";

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|f| (*f).to_owned()).collect()
    }

    /// The files `MAP` names, plus crate roots and tests it need not name.
    fn complete() -> Vec<String> {
        files(&[
            "crates/spacebot-core/src/lib.rs",
            "crates/spacebot-core/src/ids.rs",
            "crates/spacebot-core/src/memory.rs",
            "crates/spacebot-core/src/memory/model.rs",
            "crates/spacebot-core/src/runtime.rs",
            "crates/spacebot-core/tests/it/main.rs",
            "crates/spacebot-agent/src/lib.rs",
            "crates/spacebot-agent/src/channel.rs",
            "crates/spacebot-agent/src/channel/turn.rs",
            "crates/spacebot-agent/src/channel/delegation.rs",
            "crates/spacebot-agent/src/channel/chronicle.rs",
            "crates/spacebot-agent/src/context/chronicle.rs",
            "examples/custom-adapter/src/adapter.rs",
            "examples/embed/src/main.rs",
            "examples/embed/src/dice.rs",
        ])
    }

    fn messages(doc: &str, files: &[String]) -> Vec<String> {
        check(doc, files).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_map_naming_every_file_passes() {
        // `channel/chronicle.rs` is covered: `MAP` names `channel.rs`, whose suffix check must not
        // match it, so the map below adds it.
        let doc = MAP.replace("`context/chronicle.rs`", "`context/chronicle.rs`, `channel/chronicle.rs`");
        assert_eq!(messages(&doc, &complete()), Vec::<String>::new());
    }

    #[test]
    fn a_map_missing_a_file_reports_it() {
        let mut all = complete();
        all.push("crates/spacebot-agent/src/unlisted.rs".to_owned());
        let found = messages(MAP, &all);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("crates/spacebot-agent/src/channel/chronicle.rs: not named in the code map"));
        assert!(
            found[1].starts_with(
                "crates/spacebot-agent/src/unlisted.rs: not named in the code map (docs/ARCHITECTURE.md, section \
                 `crates/spacebot-agent`)"
            ),
            "a name outside the code map section does not count: {found:#?}"
        );
    }

    #[test]
    fn a_file_no_section_covers_is_reported() {
        let mut all = complete();
        all.push("bins/spacebot/src/daemon.rs".to_owned());
        let found =
            messages(&MAP.replace("`context/chronicle.rs`", "`context/chronicle.rs`, `channel/chronicle.rs`"), &all);
        assert_eq!(
            found,
            vec![
            "bins/spacebot/src/daemon.rs: no section of the code map in docs/ARCHITECTURE.md covers this file: add one \
             whose heading names `bins/spacebot`"
                .to_owned()
        ]
        );
    }

    #[test]
    fn a_name_that_matches_no_file_is_stale() {
        let mut all = complete();
        all.retain(|f| !f.ends_with("memory/model.rs"));
        let doc = MAP.replace("`context/chronicle.rs`", "`context/chronicle.rs`, `channel/chronicle.rs`");
        assert_eq!(
            messages(&doc, &all),
            vec![
            "docs/ARCHITECTURE.md: the code map names `model.rs`, which is no file: update the map after a move or a \
             removal"
                .to_owned()
        ]
        );
    }

    #[test]
    fn an_ambiguous_name_names_neither_file() {
        let doc = MAP.replace("`context/chronicle.rs`", "`chronicle.rs`");
        let found = messages(&doc, &complete());
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].contains("`chronicle.rs` could be crates/spacebot-agent/src/channel/chronicle.rs or"));
        assert!(found[1].starts_with("crates/spacebot-agent/src/channel/chronicle.rs: not named"));
        assert!(found[2].starts_with("crates/spacebot-agent/src/context/chronicle.rs: not named"));
    }

    #[test]
    fn a_source_file_wins_over_a_test_and_an_exact_path_over_a_shorthand() {
        let all = files(&[
            "crates/spacebot-webhook/src/serve.rs",
            "crates/spacebot-webhook/tests/it/serve.rs",
            "crates/spacebot-webhook/tests/it/support.rs",
            "crates/spacebot-agent/src/channel.rs",
            "crates/spacebot-agent/src/tools/channel.rs",
        ]);
        let webhook = "crates/spacebot-webhook";
        assert_eq!(resolve("serve.rs", webhook, &all), Resolution::One("crates/spacebot-webhook/src/serve.rs"));
        assert_eq!(resolve("it/serve.rs", webhook, &all), Resolution::One("crates/spacebot-webhook/tests/it/serve.rs"));
        assert_eq!(
            resolve("support.rs", webhook, &all),
            Resolution::One("crates/spacebot-webhook/tests/it/support.rs")
        );
        assert_eq!(resolve("lib.rs", webhook, &all), Resolution::None);
        let agent = "crates/spacebot-agent";
        assert_eq!(resolve("channel.rs", agent, &all), Resolution::One("crates/spacebot-agent/src/channel.rs"));
        assert_eq!(
            resolve("tools/channel.rs", agent, &all),
            Resolution::One("crates/spacebot-agent/src/tools/channel.rs")
        );
        assert_eq!(resolve("serve.rs", agent, &all), Resolution::None, "another package's file");
    }

    #[test]
    fn another_crates_file_named_in_passing_is_not_stale() {
        let doc =
            MAP.replace("`context/chronicle.rs`", "`context/chronicle.rs`, `channel/chronicle.rs` (core's `ids.rs`)");
        assert_eq!(messages(&doc, &complete()), Vec::<String>::new());
    }

    #[test]
    fn tests_and_crate_roots_need_no_name_but_build_scripts_do() {
        assert!(!is_covered("crates/spacebot-core/tests/it/main.rs"));
        assert!(!is_covered("crates/spacebot-core/src/lib.rs"));
        assert!(!is_covered("bins/spacebot/src/main.rs"));
        assert!(is_covered("bins/spacebot/src/daemon.rs"));
        assert!(is_covered("crates/spacebot-memory/build.rs"));
        assert!(is_covered("xtask/src/tidy/codemap.rs"));
        assert!(!is_covered("xtask/src/main.rs"));
    }

    #[test]
    fn packages_are_one_or_two_directories_deep() {
        assert_eq!(package("xtask/src/tidy/deps.rs"), "xtask");
        assert_eq!(package("crates/spacebot-core/src/memory/model.rs"), "crates/spacebot-core");
        assert_eq!(package("crates/spacebot-memory/build.rs"), "crates/spacebot-memory");
        assert_eq!(package("examples/embed/tests/it/main.rs"), "examples/embed");
        assert_eq!(package("benches/spacebot-bench/src/main.rs"), "benches/spacebot-bench");
    }

    #[test]
    fn a_code_span_may_wrap_a_line() {
        let doc = "## Code map\n\n### `crates/a`\n\nSee `Runtime::builder()\n.start()`, then `x.rs`.\n";
        assert_eq!(messages(doc, &files(&["crates/a/src/x.rs"])), Vec::<String>::new());
    }

    #[test]
    fn one_brace_group_expands() {
        assert_eq!(expand("channel/{turn, delegation}.rs"), vec!["channel/turn.rs", "channel/delegation.rs"]);
        assert_eq!(expand("lib.rs"), vec!["lib.rs"]);
    }

    #[test]
    fn the_map_ends_at_the_next_top_level_heading() {
        let map = code_map(MAP).expect("a code map");
        assert!(map.contains("### `examples/`") && !map.contains("Cross-cutting"), "{map}");
        assert!(code_map("# Nothing\n\n## Other\n").is_none());
    }
}

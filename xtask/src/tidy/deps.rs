//! Dependency direction, checked against `cargo metadata`.
//!
//! Rules are per package in [`RULES`]; two cross-cutting ones apply to everybody: test support
//! ([`DEV_ONLY`]) is only ever a dev-dependency, and nothing depends on the packages at the top of
//! the graph ([`TOPS`]).
//!
//! Banned crates are searched for in cargo's resolved graph, which unifies features across the
//! whole workspace. That can only over-report (a feature another member turned on may pull in a
//! crate this package alone would not), never miss one; `cargo tree -p <pkg> -e normal -i <crate>`
//! confirms a finding.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::Violation;

/// Which workspace crates a package may use in one kind of dependency table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Allowed {
    /// Only these.
    Only(&'static [&'static str]),
    /// Any workspace crate, except the cross-cutting bans.
    Any,
}

impl Allowed {
    fn permits(self, name: &str) -> bool {
        match self {
            Self::Only(list) => list.contains(&name),
            Self::Any => true,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Only([]) => "no workspace crate".to_owned(),
            Self::Only(list) => list.join(", "),
            Self::Any => "any workspace crate".to_owned(),
        }
    }
}

/// One row of the dependency table.
#[derive(Debug)]
pub(crate) struct CrateRule {
    /// The package name.
    name: &'static str,
    /// Workspace crates allowed in `[dependencies]` and `[build-dependencies]`.
    normal: Allowed,
    /// Workspace crates allowed in `[dev-dependencies]`.
    dev: Allowed,
    /// External crates that must not appear anywhere in the normal dependency tree.
    banned: &'static [&'static str],
}

const fn rule(name: &'static str, normal: Allowed, dev: Allowed, banned: &'static [&'static str]) -> CrateRule {
    CrateRule { name, normal, dev, banned }
}

use Allowed::{Any, Only};

const CORE: &[&str] = &["spacebot-core"];

/// A database, an HTTP stack, a model provider or a chat platform: what the contract crate must
/// stay free of, so a third party can build against it alone.
const IO_STACKS: &[&str] = &["rig-core", "rig", "sqlx", "serenity", "slack-morphism", "axum", "reqwest", "hyper"];

/// The engine runs on whatever model and stores it is handed, so it never links them.
const MODEL_AND_STORE: &[&str] = &["rig-core", "rig", "sqlx", "serenity", "slack-morphism"];

/// What each package may depend on. Adding a crate to the workspace means adding a row here;
/// tidy reports a package without one.
#[rustfmt::skip]
pub(crate) const RULES: &[CrateRule] = &[
    //    package              [dependencies]                          [dev-dependencies]  never in the normal tree
    rule("spacebot-core",     Only(&[]),                              Only(&[]),          IO_STACKS),
    rule("spacebot-memory",   Only(CORE),                             Any,                &["serenity", "slack-morphism"]),
    rule("spacebot-llm",      Only(CORE),                             Any,                &["sqlx", "serenity", "slack-morphism"]),
    rule("spacebot-agent",    Only(CORE),                             Any,                MODEL_AND_STORE),
    rule("spacebot-cortex",   Only(CORE),                             Any,                MODEL_AND_STORE),
    rule("spacebot-discord",  Only(CORE),                             Any,                &["rig-core", "rig", "sqlx", "slack-morphism"]),
    rule("spacebot-slack",    Only(CORE),                             Any,                &["rig-core", "rig", "sqlx", "serenity"]),
    rule("spacebot-email",    Only(CORE),                             Any,                &["rig-core", "rig", "sqlx", "serenity", "slack-morphism"]),
    rule("spacebot-telegram", Only(CORE),                             Any,                &["rig-core", "rig", "sqlx", "serenity", "slack-morphism"]),
    rule("spacebot-webhook",  Only(CORE),                             Any,                &["rig-core", "rig", "sqlx", "serenity", "slack-morphism"]),
    rule("spacebot-mcp",      Only(CORE),                             Any,                MODEL_AND_STORE),
    rule("spacebot-testing",  Only(CORE),                             Any,                &[]),
    rule("spacebot",          Any,                                    Any,                &[]),
    rule("spacebot-bench",    Only(&["spacebot-core", "spacebot-memory", "spacebot-agent"]), Any, &[]),
    rule("spacebot-eval",     Only(&["spacebot-core", "spacebot-memory"]), Any,        &[]),
    // The soak harness drives the built binary; it needs only the fake model (a dev-dependency).
    rule("spacebot-soak",     Only(&[]),                              Any,                &[]),
    rule("xtask",             Only(&[]),                              Only(&[]),          &[]),
    // The examples show what a third party builds: an adapter on the contract alone, and a
    // program that embeds an agent with the crates it needs.
    rule("example-custom-adapter", Only(CORE), Only(&["spacebot-core", "spacebot-testing"]), MODEL_AND_STORE),
    rule("example-embed",     Only(&["spacebot-core", "spacebot-agent", "spacebot-memory", "spacebot-llm"]), Any, &["serenity", "slack-morphism"]),
];

/// Test support: allowed in `[dev-dependencies]` only, whatever a row says.
const DEV_ONLY: &[&str] = &["spacebot-testing"];

/// The top of the graph: nothing may depend on these, in any kind of table.
const TOPS: &[&str] = &[
    "spacebot",
    "spacebot-bench",
    "spacebot-eval",
    "spacebot-soak",
    "xtask",
    "example-custom-adapter",
    "example-embed",
];

/// Where the table lives, for violations about the table itself.
const TABLE_LOCATION: &str = "xtask/src/tidy/deps.rs";

/// The kind of a dependency edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Dev,
    Build,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Self::Normal => "[dependencies]",
            Self::Dev => "[dev-dependencies]",
            Self::Build => "[build-dependencies]",
        }
    }
}

/// A dependency of a workspace package on another workspace package.
#[derive(Debug)]
struct InternalDep {
    name: String,
    kind: Kind,
}

/// A workspace package.
#[derive(Debug)]
pub(crate) struct Member {
    /// The package name.
    pub(crate) name: String,
    /// The absolute path of its `Cargo.toml`.
    pub(crate) manifest_path: PathBuf,
    id: String,
    deps: Vec<InternalDep>,
}

/// What the rules need from `cargo metadata`.
#[derive(Debug)]
pub(crate) struct Metadata {
    root: PathBuf,
    members: Vec<Member>,
    /// Package id to package name, for every package in the graph.
    names: HashMap<String, String>,
    /// Package id to the ids of its normal dependencies, as resolved.
    normal_edges: HashMap<String, Vec<String>>,
}

impl Metadata {
    /// Runs `cargo metadata` (with the resolved graph) in `root`.
    pub(crate) fn load(root: &Path) -> anyhow::Result<Self> {
        let output = Command::new(crate::cargo())
            .args(["metadata", "--format-version", "1"])
            .current_dir(root)
            .output()
            .context("can't run `cargo metadata`")?;
        if !output.status.success() {
            bail!("`cargo metadata` failed:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        let json: Value = serde_json::from_slice(&output.stdout).context("`cargo metadata` printed invalid JSON")?;
        Self::parse(&json)
    }

    /// Reads the parts the rules need from `cargo metadata --format-version 1` output.
    fn parse(json: &Value) -> anyhow::Result<Self> {
        let root = PathBuf::from(str_at(json, "workspace_root")?);
        let member_ids: HashSet<&str> = array_at(json, "workspace_members")?.iter().filter_map(Value::as_str).collect();
        let packages = array_at(json, "packages")?;

        let mut names = HashMap::new();
        for package in packages {
            names.insert(str_at(package, "id")?.to_owned(), str_at(package, "name")?.to_owned());
        }
        let member_names: HashSet<&str> =
            member_ids.iter().filter_map(|id| names.get(*id)).map(String::as_str).collect();

        let mut members = Vec::new();
        for package in packages {
            let id = str_at(package, "id")?;
            if !member_ids.contains(id) {
                continue;
            }
            let mut deps = Vec::new();
            for dep in array_at(package, "dependencies")? {
                let name = str_at(dep, "name")?;
                if !member_names.contains(name) {
                    continue;
                }
                let kind = match dep.get("kind").and_then(Value::as_str) {
                    None => Kind::Normal,
                    Some("dev") => Kind::Dev,
                    Some("build") => Kind::Build,
                    Some(other) => bail!("unknown dependency kind `{other}` in cargo metadata"),
                };
                deps.push(InternalDep { name: name.to_owned(), kind });
            }
            members.push(Member {
                name: str_at(package, "name")?.to_owned(),
                manifest_path: PathBuf::from(str_at(package, "manifest_path")?),
                id: id.to_owned(),
                deps,
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));

        let nodes = json
            .get("resolve")
            .and_then(|resolve| resolve.get("nodes"))
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("cargo metadata has no resolved graph (was it run with --no-deps?)"))?;
        let mut normal_edges = HashMap::new();
        for node in nodes {
            let mut normal = Vec::new();
            for dep in array_at(node, "deps")? {
                let is_normal = array_at(dep, "dep_kinds")?.iter().any(|k| k.get("kind").is_none_or(Value::is_null));
                if is_normal {
                    normal.push(str_at(dep, "pkg")?.to_owned());
                }
            }
            normal_edges.insert(str_at(node, "id")?.to_owned(), normal);
        }

        Ok(Self { root, members, names, normal_edges })
    }

    /// The workspace packages, by name.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// `path` relative to the workspace root, with `/` separators, for messages.
    pub(crate) fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().replace('\\', "/")
    }

    fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    /// For each banned crate reachable from `start` through normal edges, one shortest chain of
    /// package names leading to it. The search stops at a banned crate, so only the first one on
    /// each path is reported.
    fn banned_chains(&self, start: &str, banned: &[&str]) -> Vec<(String, Vec<String>)> {
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut found = Vec::new();
        while let Some(id) = queue.pop_front() {
            for next in self.normal_edges.get(id).into_iter().flatten() {
                let next = next.as_str();
                if !seen.insert(next) {
                    continue;
                }
                parent.insert(next, id);
                let name = self.name_of(next);
                if banned.contains(&name) {
                    let mut chain = vec![name.to_owned()];
                    let mut at = id;
                    loop {
                        chain.push(self.name_of(at).to_owned());
                        match parent.get(at) {
                            Some(up) => at = up,
                            None => break,
                        }
                    }
                    chain.reverse();
                    found.push((name.to_owned(), chain));
                } else {
                    queue.push_back(next);
                }
            }
        }
        found.sort();
        found
    }
}

/// Checks every workspace package against `rules`.
pub(crate) fn check(metadata: &Metadata, rules: &[CrateRule]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for member in metadata.members() {
        let location = metadata.relative(&member.manifest_path);
        let Some(rule) = rules.iter().find(|r| r.name == member.name) else {
            violations.push(Violation::new(
                &location,
                format!(
                    "`{}` has no row in the dependency table in {TABLE_LOCATION}; add one saying what it may depend on",
                    member.name
                ),
            ));
            continue;
        };

        for dep in &member.deps {
            let (who, on, table) = (&member.name, &dep.name, dep.kind.table());
            let allowed = if dep.kind == Kind::Dev { rule.dev } else { rule.normal };
            let message = if TOPS.contains(&on.as_str()) {
                format!("`{who}` depends on `{on}` in {table}; nothing may depend on `{on}`")
            } else if dep.kind != Kind::Dev && DEV_ONLY.contains(&on.as_str()) {
                format!("`{who}` has `{on}` in {table}; it is test support: move it to [dev-dependencies]")
            } else if !allowed.permits(on) {
                format!("`{who}` may not depend on `{on}` in {table}; allowed there: {}", allowed.describe())
            } else {
                continue;
            };
            violations.push(Violation::new(&location, message));
        }

        for (banned, chain) in metadata.banned_chains(&member.id, rule.banned) {
            violations.push(Violation::new(
                &location,
                format!(
                    "`{}` must not pull in `{banned}`, but its normal dependencies do: {}",
                    member.name,
                    chain.join(" -> ")
                ),
            ));
        }
    }

    for rule in rules {
        if !metadata.members().iter().any(|m| m.name == rule.name) {
            violations.push(Violation::new(
                TABLE_LOCATION,
                format!("the dependency table has a row for `{}`, which is not a workspace package", rule.name),
            ));
        }
    }
    violations
}

fn str_at<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    value.get(key).and_then(Value::as_str).ok_or_else(|| anyhow!("cargo metadata: missing string `{key}`"))
}

fn array_at<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    value.get(key).and_then(Value::as_array).ok_or_else(|| anyhow!("cargo metadata: missing array `{key}`"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A dependency kind as cargo metadata writes it: `None` for normal, `Some("dev")`,
    /// `Some("build")`.
    type RawKind = Option<&'static str>;

    /// A fake workspace: members with their internal dependencies, and the resolved graph's
    /// edges `(from, to, kind)`.
    struct Fake {
        members: Vec<(String, Vec<(String, RawKind)>)>,
        edges: Vec<(String, String, RawKind)>,
    }

    impl Fake {
        /// A workspace that obeys [`RULES`].
        fn good() -> Self {
            let mut fake = Self { members: Vec::new(), edges: Vec::new() };
            fake.member("spacebot-core", &[]);
            for name in [
                "spacebot-memory",
                "spacebot-llm",
                "spacebot-discord",
                "spacebot-slack",
                "spacebot-telegram",
                "spacebot-email",
                "spacebot-webhook",
            ] {
                fake.member(name, &[("spacebot-core", None), ("spacebot-testing", Some("dev"))]);
            }
            fake.member("spacebot-agent", &[("spacebot-core", None), ("spacebot-testing", Some("dev"))]);
            fake.member("spacebot-cortex", &[("spacebot-core", None), ("spacebot-agent", Some("dev"))]);
            fake.member("spacebot-mcp", &[("spacebot-core", None)]);
            fake.member("spacebot-testing", &[("spacebot-core", None)]);
            fake.member(
                "spacebot",
                &[
                    ("spacebot-core", None),
                    ("spacebot-memory", None),
                    ("spacebot-llm", None),
                    ("spacebot-agent", None),
                    ("spacebot-webhook", None),
                    ("spacebot-testing", Some("dev")),
                ],
            );
            fake.member("xtask", &[]);
            fake.member("spacebot-eval", &[("spacebot-core", None), ("spacebot-memory", None)]);
            fake.member(
                "spacebot-bench",
                &[("spacebot-core", None), ("spacebot-memory", None), ("spacebot-agent", None)],
            );
            fake.member("spacebot-soak", &[("spacebot-testing", Some("dev"))]);
            fake.member("example-custom-adapter", &[("spacebot-core", None), ("spacebot-testing", Some("dev"))]);
            fake.member(
                "example-embed",
                &[("spacebot-core", None), ("spacebot-agent", None), ("spacebot-memory", None), ("spacebot-llm", None)],
            );
            fake.edge("spacebot-core", "tokio", None);
            fake.edge("spacebot-core", "serde", None);
            fake.edge("spacebot-llm", "rig-core", None);
            fake.edge("rig-core", "reqwest", None);
            fake.edge("reqwest", "hyper", None);
            fake.edge("spacebot-memory", "sqlx", None);
            fake.edge("spacebot-webhook", "axum", None);
            fake.edge("axum", "hyper", None);
            fake
        }

        fn member(&mut self, name: &str, deps: &[(&str, RawKind)]) {
            self.members.retain(|(n, _)| n != name);
            let deps: Vec<_> = deps.iter().map(|(d, k)| ((*d).to_owned(), *k)).collect();
            for (dep, kind) in &deps {
                self.edges.push((name.to_owned(), dep.clone(), *kind));
            }
            self.members.push((name.to_owned(), deps));
        }

        fn dep(&mut self, from: &str, on: &str, kind: RawKind) {
            let Some((_, deps)) = self.members.iter_mut().find(|(n, _)| n == from) else {
                panic!("no member {from}");
            };
            deps.push((on.to_owned(), kind));
            self.edges.push((from.to_owned(), on.to_owned(), kind));
        }

        fn edge(&mut self, from: &str, to: &str, kind: RawKind) {
            self.edges.push((from.to_owned(), to.to_owned(), kind));
        }

        fn metadata(&self) -> Metadata {
            let id = |name: &str| format!("path+file:///ws/{name}#0.1.0");
            let mut all: Vec<&str> = self.members.iter().map(|(n, _)| n.as_str()).collect();
            for (from, to, _) in &self.edges {
                all.push(from);
                all.push(to);
            }
            all.sort_unstable();
            all.dedup();
            let packages: Vec<Value> = all
                .iter()
                .map(|name| {
                    let deps: Vec<Value> = self
                        .members
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, deps)| deps.iter().map(|(d, k)| json!({ "name": d, "kind": k })).collect())
                        .unwrap_or_default();
                    json!({
                        "name": name,
                        "id": id(name),
                        "manifest_path": format!("/ws/crates/{name}/Cargo.toml"),
                        "dependencies": deps,
                    })
                })
                .collect();
            let nodes: Vec<Value> = all
                .iter()
                .map(|name| {
                    let deps: Vec<Value> = self
                        .edges
                        .iter()
                        .filter(|(from, _, _)| from == name)
                        .map(|(_, to, kind)| json!({ "pkg": id(to), "dep_kinds": [{ "kind": kind }] }))
                        .collect();
                    json!({ "id": id(name), "deps": deps })
                })
                .collect();
            let json = json!({
                "workspace_root": "/ws",
                "workspace_members": self.members.iter().map(|(n, _)| id(n)).collect::<Vec<_>>(),
                "packages": packages,
                "resolve": { "nodes": nodes },
            });
            Metadata::parse(&json).unwrap()
        }

        fn violations(&self) -> Vec<String> {
            check(&self.metadata(), RULES).iter().map(ToString::to_string).collect()
        }
    }

    /// Asserts exactly one violation, containing every fragment.
    fn assert_one(violations: &[String], fragments: &[&str]) {
        assert_eq!(violations.len(), 1, "expected one violation, got {violations:#?}");
        for fragment in fragments {
            assert!(violations[0].contains(fragment), "`{}` does not mention `{fragment}`", violations[0]);
        }
    }

    /// Asserts that some violation contains every fragment.
    fn assert_found(violations: &[String], fragments: &[&str]) {
        assert!(
            violations.iter().any(|v| fragments.iter().all(|f| v.contains(f))),
            "no violation mentions all of {fragments:?}: {violations:#?}"
        );
    }

    #[test]
    fn a_workspace_that_follows_the_table_passes() {
        assert_eq!(Fake::good().violations(), Vec::<String>::new());
    }

    #[test]
    fn core_depends_on_no_workspace_crate() {
        let mut fake = Fake::good();
        fake.dep("spacebot-core", "spacebot-agent", None);
        assert_one(
            &fake.violations(),
            &[
                "crates/spacebot-core/Cargo.toml",
                "`spacebot-core` may not depend on `spacebot-agent`",
                "no workspace crate",
            ],
        );
    }

    #[test]
    fn core_does_not_even_dev_depend_on_workspace_crates() {
        let mut fake = Fake::good();
        fake.dep("spacebot-core", "spacebot-testing", Some("dev"));
        assert_one(&fake.violations(), &["`spacebot-core` may not depend on `spacebot-testing` in [dev-dependencies]"]);
    }

    #[test]
    fn core_tree_must_not_reach_io_stacks_even_transitively() {
        let mut fake = Fake::good();
        fake.edge("tokio", "some-helper", None);
        fake.edge("some-helper", "hyper", None);
        assert_one(&fake.violations(), &["must not pull in `hyper`", "spacebot-core -> tokio -> some-helper -> hyper"]);
    }

    #[test]
    fn banned_crates_in_dev_or_build_edges_are_not_in_the_normal_tree() {
        let mut fake = Fake::good();
        fake.edge("spacebot-core", "axum", Some("dev"));
        fake.edge("spacebot-core", "sqlx", Some("build"));
        assert_eq!(fake.violations(), Vec::<String>::new());
    }

    #[test]
    fn adapters_depend_on_core_only() {
        let mut fake = Fake::good();
        fake.dep("spacebot-discord", "spacebot-memory", None);
        let violations = fake.violations();
        // The edge itself, and the store arriving through it.
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert_found(
            &violations,
            &[
                "`spacebot-discord` may not depend on `spacebot-memory` in [dependencies]",
                "allowed there: spacebot-core",
            ],
        );
        assert_found(&violations, &["spacebot-discord -> spacebot-memory -> sqlx"]);
    }

    #[test]
    fn adapters_never_link_a_model_or_store_crate() {
        let mut fake = Fake::good();
        fake.edge("spacebot-webhook", "sqlx", None);
        assert_one(&fake.violations(), &["`spacebot-webhook` must not pull in `sqlx`"]);
    }

    #[test]
    fn agent_depends_on_core_traits_not_on_memory_or_llm() {
        let mut fake = Fake::good();
        fake.dep("spacebot-agent", "spacebot-llm", None);
        let violations = fake.violations();
        // The edge itself, and rig-core arriving through it (the cortex has the agent in its
        // dev-dependencies only, so its normal tree stays clean).
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert_found(&violations, &["`spacebot-agent` may not depend on `spacebot-llm`"]);
        assert_found(&violations, &["spacebot-agent -> spacebot-llm -> rig-core"]);
    }

    #[test]
    fn agent_may_use_other_crates_in_its_tests() {
        let mut fake = Fake::good();
        fake.dep("spacebot-agent", "spacebot-memory", Some("dev"));
        assert_eq!(fake.violations(), Vec::<String>::new());
    }

    #[test]
    fn testing_is_dev_only_everywhere_even_in_the_binary() {
        let mut fake = Fake::good();
        fake.dep("spacebot", "spacebot-testing", None);
        assert_one(
            &fake.violations(),
            &["`spacebot` has `spacebot-testing` in [dependencies]", "move it to [dev-dependencies]"],
        );
        let mut fake = Fake::good();
        fake.dep("spacebot-webhook", "spacebot-testing", Some("build"));
        assert_one(&fake.violations(), &["`spacebot-webhook` has `spacebot-testing` in [build-dependencies]"]);
    }

    #[test]
    fn nothing_depends_on_the_binary_or_xtask() {
        let mut fake = Fake::good();
        fake.dep("spacebot-testing", "spacebot", Some("dev"));
        assert_one(
            &fake.violations(),
            &["`spacebot-testing` depends on `spacebot`", "nothing may depend on `spacebot`"],
        );
        let mut fake = Fake::good();
        fake.dep("spacebot-cortex", "xtask", None);
        assert_one(&fake.violations(), &["nothing may depend on `xtask`"]);
    }

    #[test]
    fn xtask_depends_on_no_workspace_crate() {
        let mut fake = Fake::good();
        fake.dep("xtask", "spacebot-core", None);
        assert_one(&fake.violations(), &["`xtask` may not depend on `spacebot-core`"]);
    }

    #[test]
    fn llm_and_memory_depend_on_core_only() {
        let mut fake = Fake::good();
        fake.dep("spacebot-llm", "spacebot-memory", None);
        let violations = fake.violations();
        assert_found(&violations, &["`spacebot-llm` may not depend on `spacebot-memory`"]);
        assert_found(&violations, &["`spacebot-llm` must not pull in `sqlx`"]);
        let mut fake = Fake::good();
        fake.dep("spacebot-memory", "spacebot-llm", None);
        assert_one(&fake.violations(), &["`spacebot-memory` may not depend on `spacebot-llm`"]);
    }

    #[test]
    fn cortex_depends_on_core_only_and_uses_the_agent_in_tests_alone() {
        let mut fake = Fake::good();
        fake.dep("spacebot-cortex", "spacebot-agent", None);
        assert_one(&fake.violations(), &["`spacebot-cortex` may not depend on `spacebot-agent`", "spacebot-core"]);
        let mut fake = Fake::good();
        fake.dep("spacebot-cortex", "spacebot-memory", None);
        let violations = fake.violations();
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert_found(&violations, &["`spacebot-cortex` may not depend on `spacebot-memory`"]);
        assert_found(&violations, &["spacebot-cortex -> spacebot-memory -> sqlx"]);
    }

    #[test]
    fn every_package_needs_a_row_and_every_row_a_package() {
        let mut fake = Fake::good();
        fake.member("spacebot-matrix", &[("spacebot-core", None)]);
        fake.members.retain(|(n, _)| n != "spacebot-slack");
        let violations = fake.violations();
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert!(violations[0].contains("`spacebot-matrix` has no row in the dependency table"), "{violations:#?}");
        assert!(
            violations[1].contains("row for `spacebot-slack`, which is not a workspace package"),
            "{violations:#?}"
        );
    }

    #[test]
    fn the_adapter_example_builds_on_core_alone() {
        let mut fake = Fake::good();
        fake.dep("example-custom-adapter", "spacebot-agent", None);
        assert_one(
            &fake.violations(),
            &["`example-custom-adapter` may not depend on `spacebot-agent`", "allowed there: spacebot-core"],
        );
        let mut fake = Fake::good();
        fake.edge("example-custom-adapter", "sqlx", None);
        assert_one(&fake.violations(), &["`example-custom-adapter` must not pull in `sqlx`"]);
    }

    #[test]
    fn the_embedding_example_uses_test_support_only_in_tests() {
        let mut fake = Fake::good();
        fake.dep("example-embed", "spacebot-testing", Some("dev"));
        assert_eq!(fake.violations(), Vec::<String>::new());
        fake.dep("example-embed", "spacebot-testing", None);
        assert_one(&fake.violations(), &["`example-embed` has `spacebot-testing` in [dependencies]"]);
        let mut fake = Fake::good();
        fake.dep("spacebot", "example-embed", Some("dev"));
        assert_one(&fake.violations(), &["nothing may depend on `example-embed`"]);
    }

    #[test]
    fn metadata_without_a_resolved_graph_is_an_error() {
        let json = json!({ "workspace_root": "/ws", "workspace_members": [], "packages": [], "resolve": null });
        let error = Metadata::parse(&json).unwrap_err().to_string();
        assert!(error.contains("--no-deps"), "{error}");
    }
}

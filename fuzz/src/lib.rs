//! Coverage-guided fuzz targets for Spacebot, on the stable toolchain with libFuzzer
//! (`libfuzzer-sys`).
//!
//! Each target is a plain function here, `check_<target>(data: &[u8])`, that feeds the bytes to
//! the code under test and panics when a promise is broken; `fuzz_targets/<target>.rs` only hands
//! libFuzzer's inputs to it. So a corpus or a regression can be replayed by a normal test (this
//! file's tests do, for `corpus/` and `regressions/`), and a finding becomes a unit test in the
//! crate where the bug is.
//!
//! `cargo xtask fuzz [TARGET...] [--seconds N | --runs N]` builds the targets with the coverage
//! instrumentation and runs them; `docs/security.md` has the figures of the long runs. This crate
//! is a workspace of its own, so the main workspace's builds never compile libFuzzer.

mod config;
mod http;
mod mcp;
mod platforms;
mod text;

pub use config::check_config;
pub use http::check_http_bodies;
pub use mcp::check_mcp;
pub use platforms::{check_discord, check_slack};
pub use text::{check_scrub, check_split};

/// A target's property: panics when `data` breaks it.
pub type Check = fn(&[u8]);

/// Every target, by the name of its binary, with its check.
pub const TARGETS: [(&str, Check); 7] = [
    ("split", check_split),
    ("scrub", check_scrub),
    ("http_bodies", check_http_bodies),
    ("config", check_config),
    ("discord", check_discord),
    ("slack", check_slack),
    ("mcp", check_mcp),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every file of `corpus/<target>/` and `regressions/<target>/`, with its check: the seeds
    /// and every input that once failed still pass, without the instrumentation.
    #[test]
    fn the_corpus_and_the_regressions_pass_their_checks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut replayed = 0;
        for (target, check) in TARGETS {
            for kind in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
                for entry in entries {
                    let path = entry.unwrap().path();
                    if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.')) {
                        continue;
                    }
                    check(&std::fs::read(&path).unwrap());
                    replayed += 1;
                }
            }
            assert!(root.join("corpus").join(target).is_dir(), "no seed corpus for {target}");
        }
        assert!(replayed >= TARGETS.len(), "replayed only {replayed} files");
    }

    /// The seeds are what the platforms really send: each maps to a message or converts to
    /// something, so the fuzzer starts from inputs that reach the mapping's end.
    #[test]
    fn the_platform_and_mcp_seeds_reach_the_mapping() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let discord = spacebot_discord::DiscordSettings::new("token").with_dm_users(["7"]);
        let slack = spacebot_slack::SlackSettings::new("xoxb-token", "xapp-token").with_dm_users(["U1"]);
        for name in ["message_create.json", "message_dm.json", "interaction_command.json"] {
            let payload = std::fs::read(root.join("discord").join(name)).unwrap();
            let mapped = spacebot_discord::fuzzing::map_payload(&discord, 42, None, &payload);
            assert!(mapped.is_some(), "discord/{name} maps to no message");
        }
        for name in ["event_callback_message.json", "app_mention.json", "slash_command.json"] {
            let payload = std::fs::read(root.join("slack").join(name)).unwrap();
            assert!(spacebot_slack::fuzzing::map_payload(&slack, "UBOT", &payload).is_some(), "slack/{name}");
        }
        let list = std::fs::read(root.join("mcp/tools_list_result.json")).unwrap();
        let converted = spacebot_mcp::fuzzing::convert("files", &list);
        assert!(converted.message && !converted.tools.is_empty(), "{converted:?}");
        let call = std::fs::read(root.join("mcp/tools_call_result.json")).unwrap();
        let converted = spacebot_mcp::fuzzing::convert("files", &call);
        assert!(converted.texts.iter().any(|text| text.contains("hello world")), "{converted:?}");
    }

    #[test]
    fn short_and_empty_inputs_pass_every_check() {
        for (_, check) in TARGETS {
            for input in [&b""[..], b"\0", b"{", b"[]", b"null", b"\xff\xfe"] {
                check(input);
            }
        }
    }
}

//! `spacebot tokens add|list|rm`: scoped API tokens kept in the data dir's token file
//! (`DATA_DIR/api-tokens.json`, digests only; `spacebot_webhook::TokenFile`). The running daemon
//! notices a change within a second, so a token can be handed out or withdrawn without a restart.
//! Tokens written in the config (`[[api.tokens]]`) are listed too, but changed only there.

use std::process::ExitCode;

use anyhow::{Context, bail};
use ring::rand::{SecureRandom, SystemRandom};
use spacebot_webhook::{NewToken, Scope, TokenFile};

use crate::cli::{GlobalArgs, TokensArgs, TokensCommand};
use crate::config::Config;

pub(crate) fn run(global: &GlobalArgs, args: &TokensArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        TokensCommand::Add { name, scopes, agents, senders } => {
            // The config names the agents and the config's own tokens, which a new name must
            // not shadow.
            let config = Config::load(&global.location())?;
            let scopes = scopes
                .iter()
                .map(|scope| {
                    Scope::parse(scope).with_context(|| {
                        format!("unknown scope `{scope}`; the scopes are `webhook`, `read` and `admin`")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for agent in agents {
                if !config.agents.iter().any(|configured| configured.id == *agent) {
                    let known: Vec<&str> = config.agents.iter().map(|a| a.id.as_str()).collect();
                    bail!("agent `{agent}` is not configured; the agents are: {}", known.join(", "));
                }
            }
            if config.api.tokens.iter().any(|token| token.name() == name) {
                bail!("a token named `{name}` is already in the config ([[api.tokens]]); choose another name");
            }
            let mut file = TokenFile::load(config.data_dir.api_tokens_file())?;
            let mut random = [0u8; 32];
            SystemRandom::new().fill(&mut random).map_err(|_| anyhow::anyhow!("no randomness for a new token"))?;
            let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let new = NewToken { name: name.clone(), scopes, agents: agents.clone(), senders: senders.clone() };
            let token = file.add(new, random, created)?;
            file.save()?;
            // The token alone on stdout, so a script can capture it; the rest on stderr.
            println!("{token}");
            eprintln!(
                "made token `{name}`: shown this once, kept only as its SHA-256 digest in {}; a running daemon accepts it within a second",
                file.path().display()
            );
        }
        TokensCommand::List { json } => {
            let data_dir = crate::config::data_dir_for(&global.location())?;
            let file = TokenFile::load(data_dir.api_tokens_file())?;
            // The config's tokens when it loads; the file's alone otherwise (a config that
            // doesn't load shouldn't hide which tokens exist).
            let configured: Vec<String> = Config::load(&global.location())
                .map(|config| config.api.tokens.iter().map(|token| token.name().to_owned()).collect())
                .unwrap_or_default();
            if *json {
                let mut rows: Vec<serde_json::Value> = file
                    .records()
                    .iter()
                    .map(|record| {
                        serde_json::json!({
                            "name": record.name,
                            "scopes": record.scopes,
                            "agents": record.agents,
                            "senders": record.senders,
                            "created": record.created,
                            "source": "data_dir",
                        })
                    })
                    .collect();
                rows.extend(configured.iter().map(|name| serde_json::json!({ "name": name, "source": "config" })));
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            if file.records().is_empty() && configured.is_empty() {
                println!("no scoped tokens (add one with `spacebot tokens add NAME --scope webhook`)");
            }
            let all = |list: &[String], none: &str| if list.is_empty() { none.to_owned() } else { list.join(",") };
            for record in file.records() {
                println!(
                    "{}  scopes {}  agents {}  senders {}  created {}",
                    record.name,
                    record.scopes.join(","),
                    all(&record.agents, "all"),
                    all(&record.senders, "any"),
                    record.created
                );
            }
            for name in configured {
                println!("{name}  (in the config's [[api.tokens]])");
            }
        }
        TokensCommand::Rm { name } => {
            let data_dir = crate::config::data_dir_for(&global.location())?;
            let mut file = TokenFile::load(data_dir.api_tokens_file())?;
            if !file.remove(name) {
                let in_config = Config::load(&global.location())
                    .is_ok_and(|config| config.api.tokens.iter().any(|token| token.name() == name));
                if in_config {
                    bail!("token `{name}` is written in the config ([[api.tokens]]); remove it there");
                }
                bail!("no token named `{name}` in {}", file.path().display());
            }
            file.save()?;
            println!("removed token `{name}`; a running daemon refuses it within a second");
        }
    }
    Ok(ExitCode::SUCCESS)
}

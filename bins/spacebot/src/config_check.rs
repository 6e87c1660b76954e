//! `spacebot config check`: load and validate the config, and summarise it.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::config;

pub(crate) fn run(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&crate::start::location(global))?;
    match &config.source {
        Some(path) => println!("config: {} (valid)", path.display()),
        None => println!("config: none found; using built-in defaults"),
    }
    println!("data dir: {}", config.data_dir.display());
    println!(
        "api: http://{}{}",
        config.api.bind,
        if config.api.token.is_some() { " (bearer token required)" } else { "" }
    );
    for (name, provider) in &config.providers {
        println!("provider {name}: {} at {}", provider.kind, provider.effective_base_url());
    }
    for agent in &config.agents {
        match &agent.model {
            Some(model) => println!("agent {}: model {model}", agent.id),
            None => println!(
                "agent {}: no model (set llm.models.channel; until then it answers every message with an error)",
                agent.id
            ),
        }
    }
    for section in &config.inactive_sections {
        println!("note: [{section}] is configured but not used by this version yet");
    }
    Ok(ExitCode::SUCCESS)
}

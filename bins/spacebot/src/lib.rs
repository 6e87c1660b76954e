//! Spacebot's daemon and command line, as a library.
//!
//! The `spacebot` binary is one call into [`main`], which parses the command line and runs a
//! subcommand (one module each). The daemon itself is assembled here too, so it can run
//! in-process: load a [`Config`], [`Daemon::start`] it, talk to it over HTTP at
//! [`Daemon::addr`] (or through [`Daemon::handle`]), and [`Daemon::shutdown`] it.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use spacebot::{Config, Daemon, Location};
//!
//! let config = Config::load(&Location::new().with_config("spacebot.toml").with_data_dir("/tmp/spacebot"))?;
//! let daemon = Daemon::start(&config).await?;
//! println!("the API listens on http://{}", daemon.addr());
//! daemon.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! This is the only crate that reads the config file, the environment and argv, and the only one
//! that knows every concrete type; the library crates get plain values and trait objects.

mod adapters;
mod chat;
mod cli;
mod client;
mod config;
mod config_check;
mod cron_cmd;
mod daemon;
mod data_dir;
mod doctor;
mod mcp_cmd;
mod mcp_setup;
mod memory_cmd;
mod memory_setup;
mod secrets;
mod start;
mod status;
mod tokens_cmd;
mod usage;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, McpCommand};

pub use config::{Config, Location};
pub use daemon::{Daemon, run};
pub use data_dir::{DataDir, Unusable};

/// The `spacebot` command line: parses argv, runs the subcommand, and maps the outcome to an
/// exit code. An error is printed as one sentence (with its causes) on stderr.
pub fn main() -> ExitCode {
    // rustls's crypto comes from ring alone (reqwest is built without a provider of its own):
    // install it before any TLS client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => start::run(&cli.global, args),
        Command::Send(args) => chat::send(&cli.global, args),
        Command::Chat(args) => chat::interactive(&cli.global, args),
        Command::Status => status::run(&cli.global),
        Command::Doctor => doctor::run(&cli.global),
        Command::Memory(args) => memory_cmd::run(&cli.global, args),
        Command::Usage(args) => usage::run(&cli.global, &args),
        Command::Mcp { command: McpCommand::List } => mcp_cmd::list(&cli.global),
        Command::Secrets(args) => secrets::run(&cli.global, &args),
        Command::Cron(args) => cron_cmd::run(&cli.global, &args),
        Command::Tokens(args) => tokens_cmd::run(&cli.global, &args),
        Command::Config { command: ConfigCommand::Check } => config_check::run(&cli.global),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                message.push_str(": ");
                message.push_str(&cause.to_string());
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

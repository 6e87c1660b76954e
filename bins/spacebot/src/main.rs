//! `spacebot`: the daemon and its command line.
//!
//! This file only parses arguments and maps outcomes to exit codes; each subcommand lives in a
//! module of its own, and the work happens in the library crates.

mod adapters;
mod chat;
mod cli;
mod client;
mod config;
mod config_check;
mod doctor;
mod memory_cmd;
mod memory_setup;
mod start;
mod status;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand};

fn main() -> ExitCode {
    // Two rustls crypto providers end up in the dependency tree; pick one before any TLS client
    // is built, or rustls panics when asked to choose.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => start::run(&cli.global, args),
        Command::Send(args) => chat::send(&cli.global, args),
        Command::Chat(args) => chat::interactive(&cli.global, args),
        Command::Status => status::run(&cli.global),
        Command::Doctor => doctor::run(&cli.global),
        Command::Memory(args) => memory_cmd::run(&cli.global, args),
        Command::Config { command: ConfigCommand::Check } => config_check::run(&cli.global),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // One sentence (with its causes) on stderr, non-zero exit.
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

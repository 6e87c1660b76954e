//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Spacebot: AI agents for teams and communities.
#[derive(Debug, Parser)]
#[command(name = "spacebot", version, about)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The config file (default: DATA_DIR/config.toml if it exists, else built-in defaults).
    #[arg(long, short = 'c', global = true, env = "SPACEBOT_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The data directory (overrides `data_dir`; default ~/.spacebot).
    #[arg(long, global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The daemon's URL for client commands (default: http://{api.bind} from the config).
    #[arg(long, global = true, env = "SPACEBOT_URL")]
    pub(crate) url: Option<String>,
    /// Bearer token for client commands (default: `api.token` from the config).
    #[arg(long, global = true, env = "SPACEBOT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon in the foreground until SIGINT or SIGTERM.
    Start(StartArgs),
    /// Send one message to the running daemon and print the reply.
    Send(SendArgs),
    /// Talk to an agent interactively in the terminal.
    Chat(ChatArgs),
    /// Show whether the daemon is running, and what it hosts.
    Status,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The agent to talk to.
    #[arg(long, default_value = "main")]
    pub(crate) agent: String,
    /// The conversation (stored as `webhook:<conversation>`).
    #[arg(long, default_value = "cli")]
    pub(crate) conversation: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 180)]
    pub(crate) timeout: u64,
    /// The message.
    #[arg(required = true, num_args = 1..)]
    pub(crate) text: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The agent to talk to.
    #[arg(long, default_value = "main")]
    pub(crate) agent: String,
    /// The conversation (default: `chat-<your user name>`).
    #[arg(long)]
    pub(crate) conversation: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Load and validate the config, and say what the daemon would run.
    Check,
}

//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Location;

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

impl GlobalArgs {
    /// Where the config and data are, from these flags.
    pub(crate) fn location(&self) -> Location {
        Location { config: self.config.clone(), data_dir: self.data_dir.clone() }
    }
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
    /// Check the config, the data dir, the models and every adapter's credentials.
    Doctor,
    /// Inspect and edit an agent's memory.
    Memory(MemoryArgs),
    /// Show the tokens (and cost, where `[llm.prices]` sets one) the agents' model calls used.
    Usage(UsageArgs),
    /// Manage the encrypted secret store that `secret:NAME` config values read.
    Secrets(SecretsArgs),
    /// Manage an agent's scheduled (cron) jobs on the running daemon.
    Cron(CronArgs),
    /// Manage scoped API tokens kept (as digests) in the data dir; the daemon picks up changes
    /// within a second.
    Tokens(TokensArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect the MCP servers whose tools workers get.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// Each server's state and tools: the running daemon's, else from connecting to each now.
    List,
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {}

#[derive(Debug, Args)]
pub(crate) struct SecretsArgs {
    #[command(subcommand)]
    pub(crate) command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Store a secret; its value is read from stdin (prompted for without echo on a terminal),
    /// never from the command line.
    Set {
        /// Letters, digits and underscores.
        name: String,
    },
    /// List the stored secrets' names (never their values).
    List,
    /// Remove a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TokensArgs {
    #[command(subcommand)]
    pub(crate) command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Make a token and print it, this once: only its SHA-256 digest is kept.
    Add {
        /// Letters, digits, '-', '_' or '.'.
        name: String,
        /// `webhook` (send only), `read` (read conversations) or `admin`; repeat for several.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// An agent it may reach; repeat for several (default: every agent).
        #[arg(long = "agent", value_name = "AGENT")]
        agents: Vec<String>,
        /// A sender it may speak as; repeat for several (default: anyone).
        #[arg(long = "sender", value_name = "SENDER")]
        senders: Vec<String>,
    },
    /// List the tokens (names and rights, never a token), the config's included.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: it stops working within a second.
    Rm {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CronArgs {
    /// The agent whose jobs to manage.
    #[arg(long, default_value = "main", global = true)]
    pub(crate) agent: String,
    #[command(subcommand)]
    pub(crate) command: CronCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CronCommand {
    /// List the agent's jobs, with their schedule, state and next run.
    List,
    /// Create a job, or replace the one with this id.
    Add(CronAddArgs),
    /// Delete a job.
    Rm {
        /// The job's id.
        id: String,
    },
    /// Run a job now, outside its schedule.
    Run {
        /// The job's id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CronAddArgs {
    /// The job's id: letters, digits, '-', '_' or '.'.
    pub(crate) id: String,
    /// The message each run starts with.
    #[arg(long)]
    pub(crate) prompt: String,
    /// A cron expression (five fields, or six with seconds first), like "0 17 * * 1-5".
    #[arg(long, required_unless_present = "every", conflicts_with = "every")]
    pub(crate) cron: Option<String>,
    /// Or an interval, like 30m, 1h30m or 45s.
    #[arg(long)]
    pub(crate) every: Option<String>,
    /// The IANA time zone of the schedule and active hours (default UTC).
    #[arg(long)]
    pub(crate) timezone: Option<String>,
    /// Run only between these local hours, as START-END (like 9-18).
    #[arg(long)]
    pub(crate) active_hours: Option<String>,
    /// Run once, at the first due time.
    #[arg(long)]
    pub(crate) run_once: bool,
    /// How long a run may take, like 10m.
    #[arg(long)]
    pub(crate) timeout: Option<String>,
    /// Where each run's reply goes: adapter:target (discord:123456789, webhook:c1).
    #[arg(long)]
    pub(crate) deliver_to: String,
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// The last this many days, today included (default: all recorded usage).
    #[arg(long, conflicts_with = "since", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) days: Option<u64>,
    /// From this day on, as YYYY-MM-DD.
    #[arg(long)]
    pub(crate) since: Option<String>,
}

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

#[derive(Debug, Args)]
pub(crate) struct MemoryArgs {
    /// The agent whose memory to use.
    #[arg(long, default_value = "main", global = true)]
    pub(crate) agent: String,
    #[command(flatten)]
    pub(crate) embedder: EmbedderArgs,
    #[command(subcommand)]
    pub(crate) command: MemoryCommand,
}

/// Which embedder turns memories into vectors. Unset, each comes from the config's `[memory]`
/// section, as the daemon's does; a set one overrides it (and the daemon reindexes back at start).
#[derive(Debug, Args)]
pub(crate) struct EmbedderArgs {
    /// `hashing` (built in, no model) or `openai` (any OpenAI-compatible /v1/embeddings server).
    #[arg(long, value_enum, env = "SPACEBOT_EMBEDDER", global = true)]
    pub(crate) embedder: Option<EmbedderKind>,
    /// Base URL of the embeddings server (for example https://api.openai.com/v1).
    #[arg(long, env = "SPACEBOT_EMBEDDING_URL", global = true)]
    pub(crate) embedding_url: Option<String>,
    /// Embedding model name.
    #[arg(long, env = "SPACEBOT_EMBEDDING_MODEL", global = true)]
    pub(crate) embedding_model: Option<String>,
    /// Vector length.
    #[arg(long, env = "SPACEBOT_EMBEDDING_DIMENSIONS", global = true)]
    pub(crate) embedding_dimensions: Option<usize>,
    /// API key for the embeddings server.
    #[arg(long, env = "SPACEBOT_EMBEDDING_API_KEY", hide_env_values = true, global = true)]
    pub(crate) embedding_api_key: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum EmbedderKind {
    Hashing,
    Openai,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemoryCommand {
    /// List memories, newest first (private ones included).
    List {
        /// Only this type (fact, preference, decision, identity, event, observation, goal, todo).
        #[arg(long = "type")]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Include forgotten memories.
        #[arg(long)]
        forgotten: bool,
        /// Print a JSON array with every field of each memory.
        #[arg(long)]
        json: bool,
    },
    /// Hybrid search (full text, vectors, graph), as recall does, without counting accesses.
    Search {
        /// At most this many results.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print a JSON array: each memory with every field, its score and its rank in each list.
        #[arg(long)]
        json: bool,
        /// Search the memory file here even when the daemon runs (it is asked first otherwise).
        #[arg(long)]
        local: bool,
        /// What to look for.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
    },
    /// Save a memory.
    Add {
        /// Its type.
        #[arg(long = "type", default_value = "fact")]
        kind: String,
        /// Importance in 0..=1 (default: the type's).
        #[arg(long)]
        importance: Option<f32>,
        /// Make it private to this person (a platform id such as discord:123, or a person id).
        #[arg(long)]
        private_to: Option<String>,
        /// Link it to another memory, as `RELATION:ID` (relations: related_to, updates,
        /// contradicts, caused_by, part_of); repeat for several.
        #[arg(long = "link", value_name = "RELATION:ID")]
        links: Vec<String>,
        /// The content.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Forget a memory by id.
    Forget {
        /// The memory id.
        id: String,
    },
    /// Re-embed memories that have no vector of the current embedder.
    Reindex,
    /// Import text and markdown files as memories, chunk by chunk (an interrupted import
    /// resumes), and JSON Lines files (`.jsonl`) one memory per line: `{"content": ...,
    /// "source": ..., "type": ..., "importance": ..., "created_at": "2023-05-08T12:00:00Z"}`.
    Import {
        /// The type of the imported memories.
        #[arg(long = "type", default_value = "fact")]
        kind: String,
        /// The largest chunk, in bytes (whole lines; a longer line is its own chunk).
        #[arg(long, default_value_t = 2000)]
        chunk_bytes: usize,
        /// The files.
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
}

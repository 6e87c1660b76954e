//! The Spacebot conversation engine: the channel process and its tools.
//!
//! [`ChannelEngine`] implements [`spacebot_core::ConversationEngine`]. The runtime gives it one
//! inbox per conversation; the engine runs a *channel* for each: a tokio task that owns the
//! conversation's history (no shared mutable state, no locks), answers one message per turn, and
//! ends every turn in a reply, an explicit skip or an error the user can see.
//!
//! A turn is our own loop, not a provider's: the channel calls the model with its tools, runs the
//! tools it asks for, and calls again, within a per-turn budget of model calls and a wall-clock
//! limit. The channel tools are `reply`, `skip`, `react`, `branch`, `spawn_worker`, `route` and
//! `cancel`, with `send_file` when the agent has a workspace; plain text from the model is sent as a fallback reply unless it looks like tool
//! syntax or carries a secret.
//!
//! The channel never does long work: *branches* (forks of its context that think) and *workers*
//! (tasks done with shell, file and web tools) run as tasks the channel owns and never awaits.
//! Each reaches exactly one terminal state; their results are merged within a short window into
//! one *relay* turn. Bursts of messages in group conversations are answered in one turn, and
//! control commands (`/stop`, `/status`, ...) act even in the middle of a turn. The *compactor*
//! keeps each channel's context within its model's window: background summaries from 80%, an
//! immediate truncation at 95%, never pausing the channel. In *chronicle* mode (for long sessions)
//! it cuts durable, contiguous checkpoints of the conversation log instead, rolls them up, shows
//! them in the system prompt as the "Session Chronicle" and lets the model open them with the
//! `chronicle` tool. See `docs/processes.md`.
//!
//! This crate depends on the core traits only: it runs on whatever `Arc<dyn LanguageModel>` and
//! `Arc<dyn ConversationLog>` it is given.

mod branch;
mod budget;
mod channel;
mod context;
mod engine;
mod error;
mod identity;
mod memory_tools;
mod processes;
mod prompt;
mod task_tools;
mod tools;
mod worker;

pub use budget::{BackgroundBudget, BackgroundBudgetSettings};
pub use context::chronicle::{CHRONICLE_TOOL, ChronicleSettings, CompactionMode};
pub use context::compactor::CompactionSettings;
pub use engine::{AgentProfile, ChannelEngine, ChannelSettings, CoalesceSettings, ToolSource};
pub use error::{Result, TaskToolError};
pub use identity::{FileState, IDENTITY_FILES, IdentityDir, MAX_FILE_BYTES};
pub use memory_tools::{MEMORY_DELETE_TOOL, MEMORY_RECALL_TOOL, MEMORY_SAVE_TOOL, MemoryToolContext, memory_tools};
pub use task_tools::{
    DEFAULT_MAX_SEND_BYTES, Launcher, MAX_SEARCH_RESULTS, Mounts, SEND_FILE_TOOL, Sandbox, SearchBackend,
    TaskToolSettings, WebFetchSettings, WebSearchSettings, bubblewrap_available, task_tools,
};
pub use tools::{
    BRANCH_TOOL, CANCEL_TOOL, CRON_TOOL, REACT_TOOL, REPLY_TOOL, ROUTE_TOOL, SET_STATUS_TOOL, SKIP_TOOL,
    SPAWN_WORKER_TOOL,
};

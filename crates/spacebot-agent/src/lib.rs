//! The Spacebot conversation engine: the channel process and its tools.
//!
//! [`ChannelEngine`] implements [`spacebot_core::ConversationEngine`]. The runtime gives it one
//! inbox per conversation; the engine runs a *channel* for each: a tokio task that owns the
//! conversation's history (no shared mutable state, no locks), answers one message per turn, and
//! ends every turn in a reply, an explicit skip or an error the user can see.
//!
//! A turn is our own loop, not a provider's: the channel calls the model with its tools, runs the
//! tools it asks for, and calls again, within a per-turn budget of model calls and a wall-clock
//! limit. The channel tools today are `reply` and `skip`; plain text from the model is sent as a
//! fallback reply unless it looks like tool syntax or carries a secret.
//!
//! Branches, workers, the compactor and burst coalescing arrive with the process-model work; the
//! turn loop is shaped so they slot in as more tools and more inbox inputs.
//!
//! This crate depends on the core traits only: it runs on whatever `Arc<dyn LanguageModel>` and
//! `Arc<dyn ConversationLog>` it is given.

mod channel;
mod engine;
mod prompt;
mod tools;

pub use engine::{AgentProfile, ChannelEngine, ChannelSettings};
pub use tools::{REPLY_TOOL, SKIP_TOOL};

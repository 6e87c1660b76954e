//! The Spacebot contract and kernel.
//!
//! This crate is what everything else is written against: the message types adapters produce and
//! consume, the traits that put a model ([`LanguageModel`]), a platform ([`MessagingAdapter`]),
//! storage ([`ConversationLog`] with its [`Chronicle`] of checkpoints, [`MemoryStore`], [`Embedder`]), a tool ([`Tool`]) and a
//! conversation engine ([`ConversationEngine`]) behind `Arc<dyn Trait>`, and the [`Runtime`]
//! that wires them: it records each inbound message, routes it to one task per conversation,
//! delivers responses through the adapter the message came from, and shuts everything down in
//! bounded time.
//!
//! It depends on no database, HTTP, model-provider or chat-platform crate, so a third party can
//! write an adapter, a tool, a model or a store against it alone. Public types are
//! `#[non_exhaustive]` with constructors, so the contract can grow without breaking them.
//!
//! # Embedding
//!
//! ```no_run
//! # async fn example(
//! #     engine: std::sync::Arc<dyn spacebot_core::ConversationEngine>,
//! #     log: std::sync::Arc<dyn spacebot_core::ConversationLog>,
//! # ) -> Result<(), spacebot_core::Error> {
//! use spacebot_core::{InboundMessage, Runtime, Sender};
//!
//! let runtime = Runtime::builder().engine(engine).log(log).agent("main").start().await?;
//! let handle = runtime.handle();
//! handle.submit(InboundMessage::text("cli", "cli:me", Sender::new("me"), "hello")).await?;
//! runtime.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod adapter;
mod binding;
mod chronicle;
mod cron;
mod embed;
mod engine;
mod error;
mod event;
mod fallback;
mod handoff;
mod ids;
mod inbox;
mod journal;
mod lease;
mod llm;
mod log;
mod memory;
mod message;
mod outbox;
mod process;
mod runs;
mod runtime;
mod scrub;
mod split;
mod supervision;
#[cfg(feature = "tls")]
pub mod tls;
mod tool;
mod usage;

pub use adapter::{InboundStream, MessagingAdapter};
pub use binding::{
    Binding, CHANNEL_KEY, GUILD_KEY, PARENT_CHANNEL_KEY, RESPONSE_MODE_KEY, ResponseMode, matching_binding,
    resolve_binding,
};
pub use chronicle::{
    Checkpoint, CheckpointKind, Chronicle, ChronicleError, LogTail, LoggedMessage, NewCheckpoint, NewRollup,
};
pub use cron::{
    BreakerChange, CronJob, CronJobSpec, CronJobs, CronOutcome, CronRun, CronStore, DurationText, parse_duration,
};
pub use embed::Embedder;
pub use engine::{ControlCommand, ConversationContext, ConversationEngine, ConversationInput};
pub use error::{
    AdapterError, AdapterErrorKind, BoxError, CronError, EmbedError, Error, LlmError, LlmErrorKind, Result, StoreError,
    ToolError,
};
pub use event::{RuntimeEvent, TurnOutcome};
pub use fallback::FallbackModel;
pub use handoff::{Handoff, NotTaken, handoff};
pub use ids::{AgentId, ConversationId, MemoryId, MessageId, ProcessId};
pub use inbox::Inbox;
pub use lease::{Claim, FleetMember, FleetStatus, Leases};
pub use llm::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, ImagePart, LanguageModel, StreamEvent, ToolCall, ToolSpec,
    Usage, replayed,
};
pub use log::ConversationLog;
pub use memory::{
    Edge, KnowledgeQuery, ListOrder, ListQuery, MaintenanceOptions, MaintenanceReport, Memory, MemoryScope,
    MemoryStore, MemoryType, NewEdge, NewMemory, RecallHit, RecallQuery, RelationKind, SaveOutcome, SaveStatus,
    ScopeView, Visibility,
};
pub use message::{
    Attachment, InboundMessage, MAX_IMAGE_BYTES, MENTIONS_BOT_KEY, MessageContent, OutboundResponse, Role, Sender,
    StatusUpdate, StoredMessage,
};
pub use outbox::{AdapterSet, DeliveryPolicy, Outbox};
pub use process::{Lifecycle, ProcessChange, ProcessEvent, ProcessKind, Terminal, TerminalState};
pub use runs::{Owed, ProcessRun, ProcessRuns, RecordedRun};
pub use runtime::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIVE, Runtime, RuntimeBuilder, RuntimeHandle, RuntimeSettings, RuntimeStatus,
};
pub use scrub::{DraftScrubber, MIN_SECRET_LEN, REDACTED, Scrubber};
pub use split::{SplitOptions, split_message, split_message_with};
pub use supervision::{OWNER_ENDED, ProcessInfo, ProcessRecord, ProcessRegistry, Registration, SupervisorEnd};
pub use tool::{Tool, TypedTool, parse_tool_args};
pub use usage::{UsageLedger, UsageRow};

//! The model contract: a chat request with tools in, text and tool calls out.
//!
//! The harness owns the agentic loop (call the model, run tools, call again), so this trait is a
//! single round trip. That keeps cancellation, budgets and tests in the harness's hands, and lets
//! anything that can answer a chat request (a provider over HTTP, a local model, a scripted fake)
//! drive every process.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;

/// A tool the model may call: its name, what it does, and a JSON schema for its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// A tool spec.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: serde_json::Value) -> Self {
        Self { name: name.into(), description: description.into(), parameters }
    }
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// The provider's id for the call, echoed back with the result.
    pub id: String,
    /// The tool name.
    pub name: String,
    /// The arguments object.
    pub arguments: serde_json::Value,
}

impl ToolCall {
    /// A tool call.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: serde_json::Value) -> Self {
        Self { id: id.into(), name: name.into(), arguments }
    }
}

/// An image shown to the model inside a user message, as its bytes.
///
/// Only models configured as vision-capable get these; the agent puts a note in the text instead
/// for the others. Providers encode them in their wire format (OpenAI `image_url` parts with a
/// data URL, Anthropic base64 image blocks).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImagePart {
    /// The MIME type: `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub media_type: String,
    /// The image file's bytes; shared, since a request is built for every model call.
    pub data: Arc<[u8]>,
}

impl ImagePart {
    /// The image types every vision model here reads.
    pub const MEDIA_TYPES: &'static [&'static str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

    /// An image of `media_type` with these bytes.
    pub fn new(media_type: impl Into<String>, data: impl Into<Arc<[u8]>>) -> Self {
        Self { media_type: media_type.into(), data: data.into() }
    }

    /// Whether a model can be shown this type (see [`MEDIA_TYPES`](Self::MEDIA_TYPES)).
    pub fn is_supported_type(media_type: &str) -> bool {
        Self::MEDIA_TYPES.contains(&media_type)
    }
}

impl std::fmt::Debug for ImagePart {
    // The bytes would flood every log line that prints a request.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePart").field("media_type", &self.media_type).field("bytes", &self.data.len()).finish()
    }
}

/// One message of a chat request's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChatMessage {
    /// Input from people (or the harness speaking as the environment).
    User {
        /// The text.
        content: String,
        /// Images shown with the text (vision-capable models only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<ImagePart>,
    },
    /// What the model said and which tools it called.
    Assistant {
        /// Its text (may be empty when it only called tools).
        content: String,
        /// Its tool calls.
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call.
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The result text (or error text) shown to the model.
        content: String,
    },
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::User { content: content.into(), images: Vec::new() }
    }

    /// A user message with images.
    pub fn user_with_images(content: impl Into<String>, images: Vec<ImagePart>) -> Self {
        Self::User { content: content.into(), images }
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::Assistant { content: content.into(), tool_calls: Vec::new() }
    }

    /// An assistant message with tool calls.
    pub fn assistant_with_calls(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self::Assistant { content: content.into(), tool_calls }
    }

    /// The message without its images (a user message keeps its text, which names them).
    pub fn without_images(self) -> Self {
        match self {
            Self::User { content, .. } => Self::User { content, images: Vec::new() },
            other => other,
        }
    }

    /// A tool result.
    pub fn tool_result(call_id: impl Into<String>, name: impl Into<String>, content: impl Into<String>) -> Self {
        Self::ToolResult { call_id: call_id.into(), name: name.into(), content: content.into() }
    }

    /// A rough size in characters, for context budgeting.
    pub fn char_len(&self) -> usize {
        match self {
            // An image costs a model roughly what a page of text does.
            Self::User { content, images } => content.len() + images.len() * IMAGE_CHARS,
            Self::Assistant { content, tool_calls } => {
                content.len() + tool_calls.iter().map(|c| c.name.len() + c.arguments.to_string().len()).sum::<usize>()
            }
            Self::ToolResult { content, name, .. } => content.len() + name.len(),
        }
    }
}

/// What an image counts for in [`ChatMessage::char_len`]: about 1,000 tokens, what providers
/// charge for a mid-sized image.
const IMAGE_CHARS: usize = 4_000;

/// One round trip to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The system prompt.
    pub system: String,
    /// The history, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call. Shared: a process offers the same tools on every call, so
    /// building a request does not copy their schemas.
    pub tools: Arc<[ToolSpec]>,
    /// Upper bound on output tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
}

impl ChatRequest {
    /// A request with a system prompt and history, no tools.
    pub fn new(system: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self { system: system.into(), messages, tools: Arc::default(), max_tokens: None, temperature: None }
    }

    /// Sets the tools (a `Vec`, or an `Arc<[ToolSpec]>` shared between requests).
    pub fn with_tools(mut self, tools: impl Into<Arc<[ToolSpec]>>) -> Self {
        self.tools = tools.into();
        self
    }

    /// Sets the output token bound.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
}

/// Token counts the provider reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Usage from token counts.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self { input_tokens, output_tokens }
    }
}

/// The model's answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// Its text (may be empty when it only called tools).
    pub content: String,
    /// Its tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Token usage.
    pub usage: Usage,
}

impl ChatResponse {
    /// A text-only answer.
    pub fn text(content: impl Into<String>) -> Self {
        Self { content: content.into(), ..Self::default() }
    }

    /// An answer with tool calls.
    pub fn with_tool_calls(mut self, tool_calls: Vec<ToolCall>) -> Self {
        self.tool_calls = tool_calls;
        self
    }

    /// Sets the usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// More text.
    TextDelta(String),
    /// A tool call opened: the model named its tool, and its arguments follow as
    /// [`ToolArguments`](Self::ToolArguments). Providers that stream arguments send it; the
    /// complete call still comes as [`ToolCall`](Self::ToolCall).
    ToolCallStarted {
        /// Identifies the call within this answer (its position among the answer's parts).
        call: usize,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's argument JSON: the fragments of one `call`, joined, are the
    /// arguments as the model wrote them.
    ToolArguments {
        /// The call, as its [`ToolCallStarted`](Self::ToolCallStarted) said.
        call: usize,
        /// The fragment.
        json: String,
    },
    /// A complete tool call.
    ToolCall(ToolCall),
    /// The whole answer; always the last event of a successful stream.
    Done(ChatResponse),
}

/// A streamed answer.
pub type ChatStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// Something that answers chat requests: a provider, a local model, a scripted fake.
///
/// Implementations retry transient failures themselves (they know the provider's limits) and
/// return an error only when the request cannot be answered; its
/// [`LlmErrorKind`](crate::LlmErrorKind) tells the caller what went wrong.
#[async_trait]
pub trait LanguageModel: Send + Sync + 'static {
    /// The model's name for logs, as `provider/model`.
    fn name(&self) -> &str;

    /// The context window in tokens, for compaction thresholds.
    fn context_window(&self) -> usize {
        128_000
    }

    /// Whether the model calls tools. A model that only writes text (a small local model says
    /// `false`) answers in text, so its text is its reply as it is written.
    fn calls_tools(&self) -> bool {
        true
    }

    /// Answers one request.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Answers one request as a stream of events ending in [`StreamEvent::Done`].
    ///
    /// The default calls [`complete`](Self::complete) and replays the answer as events.
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        Ok(replayed(self.complete(request).await?))
    }
}

/// A whole answer as a stream: its text as one delta, each tool call, then
/// [`StreamEvent::Done`].
pub fn replayed(response: ChatResponse) -> ChatStream {
    let mut events = Vec::with_capacity(response.tool_calls.len() + 2);
    if !response.content.is_empty() {
        events.push(Ok(StreamEvent::TextDelta(response.content.clone())));
    }
    events.extend(response.tool_calls.iter().cloned().map(|call| Ok(StreamEvent::ToolCall(call))));
    events.push(Ok(StreamEvent::Done(response)));
    Box::pin(futures::stream::iter(events))
}

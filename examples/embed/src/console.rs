//! [`ConsoleAdapter`]: an in-process adapter. The host program hands it lines; it hands the
//! runtime messages, and the agent's replies back to the program, over channels.

use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use spacebot_core::{
    AdapterError, AdapterErrorKind, InboundMessage, InboundStream, MessagingAdapter, OutboundResponse, Sender,
};

/// The adapter's runtime key and the platform name of its messages.
pub const CONSOLE: &str = "console";
/// The one conversation the console holds.
pub const CONVERSATION: &str = "console:local";

/// The program's side of a [`ConsoleAdapter`].
#[derive(Debug)]
pub struct ConsoleIo {
    /// Lines the person typed go in here.
    pub input: mpsc::UnboundedSender<String>,
    /// What the agent says comes out here.
    pub output: mpsc::UnboundedReceiver<String>,
}

/// An adapter for one person typing into the host program.
#[derive(Debug)]
pub struct ConsoleAdapter {
    /// Taken by the first `start`.
    lines: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    output: mpsc::UnboundedSender<String>,
}

impl ConsoleAdapter {
    /// The adapter and the program's ends of its channels.
    pub fn new() -> (Self, ConsoleIo) {
        let (input, lines) = mpsc::unbounded_channel();
        let (output_tx, output) = mpsc::unbounded_channel();
        (Self { lines: Mutex::new(Some(lines)), output: output_tx }, ConsoleIo { input, output })
    }

    fn say(&self, text: String) -> Result<(), AdapterError> {
        self.output.send(text).map_err(|_| AdapterError::permanent(CONSOLE, "the console was closed"))
    }
}

#[async_trait]
impl MessagingAdapter for ConsoleAdapter {
    fn name(&self) -> &str {
        CONSOLE
    }

    async fn start(&self) -> Result<InboundStream, AdapterError> {
        let lines = self.lines.lock().ok().and_then(|mut lines| lines.take());
        let Some(lines) = lines else {
            // The input ended (the runtime restarts an adapter whose stream ends); nothing more
            // will come, so wait quietly until shutdown.
            return Ok(Box::pin(futures::stream::pending()));
        };
        let messages = UnboundedReceiverStream::new(lines).map(|line: String| {
            // A direct message: one person, answered message by message.
            InboundMessage::text(CONSOLE, CONVERSATION, Sender::new("you"), line).with_direct(true)
        });
        Ok(Box::pin(messages))
    }

    async fn send(&self, _target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
        match response {
            OutboundResponse::Text { text } | OutboundResponse::ThreadReply { text, .. } => self.say(text),
            OutboundResponse::Reaction { emoji } => self.say(format!("({emoji})")),
            // No typing indicator on a console.
            OutboundResponse::Status { .. } => Ok(()),
            _ => Err(AdapterError::new(AdapterErrorKind::Unsupported, CONSOLE, "the console shows text only")),
        }
    }
}

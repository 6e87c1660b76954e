//! Why the embedded assistant could not run.

/// An error from [`run`](crate::run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The conversation log could not be opened.
    #[error("can't open the conversation log: {0}")]
    Store(#[from] spacebot_memory::Error),
    /// The conversation log could not be read.
    #[error("can't read the conversation log: {0}")]
    Log(#[from] spacebot_core::StoreError),
    /// The runtime refused to start or to take a message.
    #[error("the agent runtime failed: {0}")]
    Runtime(#[from] spacebot_core::Error),
    /// Reading the input or writing the output failed.
    #[error("can't read the input or write the output: {0}")]
    Io(#[from] std::io::Error),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

//! Identifiers shared by every crate: agents, conversations, messages, processes and memories.
//!
//! Each id is a cheap-to-clone wrapper around an `Arc<str>`, so ids can be passed between tasks
//! and stored in maps without copying strings, and distinct types keep an agent id from being
//! passed where a conversation id is expected.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Declares an id type: a newtype over `Arc<str>` that serializes as a plain string and displays
/// as one. With `generated`, it also gets `generate()`, a fresh UUIDv7, so generated ids sort by
/// creation time.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, generated) => {
        string_id!($(#[$doc])* $name);

        impl $name {
            /// A fresh, time-ordered id (a UUIDv7).
            pub fn generate() -> Self {
                Self::new(uuid::Uuid::now_v7().to_string())
            }
        }
    };
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string as this id.
            pub fn new(value: impl Into<Arc<str>>) -> Self {
                Self(value.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The id of an agent, as written in `[[agents]] id = "..."`.
    AgentId
);
string_id!(
    /// The id of a conversation, unique within an agent (for example `webhook:support-42`).
    ConversationId
);
string_id!(
    /// The id of a stored message. Generated ids are UUIDv7, so they sort by creation time.
    MessageId,
    generated
);
string_id!(
    /// The id of a process (channel turn, branch, worker) for events and supervision.
    ProcessId,
    generated
);
string_id!(
    /// The id of a memory (a UUIDv7 for memories this crate's users create, so ids sort by creation).
    MemoryId,
    generated
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_ordered() {
        let a = MessageId::generate();
        let b = MessageId::generate();
        assert_ne!(a, b);
        assert!(a < b, "UUIDv7 ids sort by creation time: {a} !< {b}");
        let (a, b) = (ProcessId::generate(), ProcessId::generate());
        assert!(a < b, "UUIDv7 ids sort by creation time: {a} !< {b}");
        let (a, b) = (MemoryId::generate(), MemoryId::generate());
        assert!(a < b, "UUIDv7 ids sort by creation time: {a} !< {b}");
    }

    #[test]
    fn memory_ids_display_serialize_and_debug_as_the_other_ids() {
        let id = MemoryId::from("0190-abc");
        assert_eq!(id.to_string(), "0190-abc");
        assert_eq!(format!("{id:?}"), "MemoryId(\"0190-abc\")");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"0190-abc\"");
        assert_eq!(serde_json::from_str::<MemoryId>("\"0190-abc\"").unwrap(), id);
        assert_eq!(MemoryId::generate().as_str().len(), 36, "a hyphenated UUID");
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = AgentId::new("main");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"main\"");
        let back: AgentId = serde_json::from_str("\"main\"").unwrap();
        assert_eq!(back, id);
    }
}

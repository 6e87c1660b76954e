//! Compile-time checks that the public handles are `Send + Sync` and the futures of their async
//! methods are `Send`, in the manner of tokio's `tests/async_send_sync.rs`. Embedders move these
//! into spawned tasks and share them across threads, so losing either is a breaking change.
//! Nothing here runs: if a type or a future loses `Send`, this test binary no longer compiles.

use spacebot_core::{
    AdapterError, AdapterSet, AgentId, ConversationContext, ConversationId, ConversationInput, EmbedError, Error,
    FallbackModel, InboundMessage, Inbox, Lifecycle, LlmError, OutboundResponse, Outbox, ProcessRegistry, Registration,
    Runtime, RuntimeBuilder, RuntimeEvent, RuntimeHandle, StoreError, ToolError,
};

fn require_send_sync<T: Send + Sync>() {}

fn require_send<T: Send>(_: &T) {}

/// Each type is `Send + Sync`.
macro_rules! assert_send_sync {
    ($($ty:ty),* $(,)?) => {
        const _: fn() = || {
            $(require_send_sync::<$ty>();)*
        };
    };
}

/// The future a call returns is `Send`; the closure's parameters are the values it takes.
macro_rules! assert_send_future {
    (|$($arg:ident: $ty:ty),*| $call:expr) => {
        #[allow(unused_mut)]
        const _: fn($($ty),*) = |$(mut $arg),*| require_send(&$call);
    };
}

assert_send_sync!(
    Runtime,
    RuntimeBuilder,
    RuntimeHandle,
    Outbox,
    AdapterSet,
    Inbox,
    ProcessRegistry,
    Registration,
    Lifecycle,
    ConversationContext,
    ConversationInput,
    FallbackModel,
    InboundMessage,
    RuntimeEvent,
    Error,
    AdapterError,
    LlmError,
    StoreError,
    EmbedError,
    ToolError,
);

assert_send_future!(|builder: RuntimeBuilder| builder.start());
assert_send_future!(|runtime: Runtime| runtime.shutdown());
assert_send_future!(|handle: RuntimeHandle, message: InboundMessage| handle.submit(message));
assert_send_future!(|handle: RuntimeHandle| handle.status());
assert_send_future!(
    |handle: RuntimeHandle, agent: AgentId, id: ConversationId| handle.restart_conversation(&agent, &id, "hung")
);
assert_send_future!(
    |outbox: Outbox, message: InboundMessage, response: OutboundResponse| outbox.send(&message, response)
);
assert_send_future!(|inbox: Inbox| inbox.recv());
assert_send_future!(|inbox: Inbox| inbox.recv_control());

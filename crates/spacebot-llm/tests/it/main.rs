//! Integration tests: the real rig clients against the fake model server from
//! `spacebot-testing`, for both wires (OpenAI chat completions and Anthropic messages).
//!
//! One test binary; modules by concern. Every test installs the ring rustls provider first,
//! as the daemon does.

mod failures;
#[cfg(feature = "local-model")]
mod local;
mod streaming;
mod support;
mod wire;

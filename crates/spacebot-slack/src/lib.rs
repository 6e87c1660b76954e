//! The Slack adapter for Spacebot: a `spacebot_core::MessagingAdapter` over slack-morphism in
//! Socket Mode.
//!
//! **Status: not built yet.** It arrives with the platform-adapters work: Socket Mode intake of
//! channel messages, threads and DMs, acknowledged only once durably recorded; mrkdwn-aware
//! splitting; reactions; allow-lists; control commands. Like every adapter it will depend on
//! `spacebot-core` alone. Until then a `[messaging.slack]` section in the config is accepted and
//! reported as not yet used. This crate has no public items yet.

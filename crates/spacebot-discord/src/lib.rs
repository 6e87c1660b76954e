//! The Discord adapter for Spacebot: a `spacebot_core::MessagingAdapter` over serenity.
//!
//! **Status: not built yet.** It arrives with the platform-adapters work: gateway intake of guild
//! messages, threads and DMs; replies split at Discord's limit; reactions and typing; allow-lists;
//! native slash commands; reconnect with backoff. Like every adapter it will depend on
//! `spacebot-core` alone. Until then a `[messaging.discord]` section in the config is accepted and
//! reported as not yet used. This crate has no public items yet.

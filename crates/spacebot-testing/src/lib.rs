//! Dev-only test support for Spacebot. Never a dependency of a shipped crate: depend on it from
//! `[dev-dependencies]` only.
//!
//! It fakes the things a Spacebot test needs to control:
//!
//! - [`fake_llm`]: [`FakeLlmServer`], a real HTTP server on `127.0.0.1` speaking OpenAI chat
//!   completions and Anthropic messages (plain and streamed, text and tool calls), answering from
//!   a per-test script of [`FakeReply`]s, with failures (429, 500, garbage, hangs) on demand. It
//!   exercises the real provider clients end to end.
//! - [`scripted`]: [`ScriptedModel`], an in-process [`LanguageModel`](spacebot_core::LanguageModel)
//!   answering from a script of [`ScriptedTurn`]s, for unit tests that need no HTTP.
//! - [`adapter`]: [`CapturingAdapter`], a [`MessagingAdapter`](spacebot_core::MessagingAdapter)
//!   that takes injected inbound messages and records everything sent back.
//! - [`log`]: [`MemoryLog`], an in-memory [`ConversationLog`](spacebot_core::ConversationLog)
//!   with the same semantics as the SQLite one, for runtime tests without a database.
//! - [`cron_store`]: [`MemoryCronStore`], an in-memory [`CronStore`](spacebot_core::CronStore)
//!   with the SQLite store's semantics, for scheduler tests on the paused clock.
//! - [`fake_memory`]: [`FakeMemory`], an in-process [`MemoryStore`](spacebot_core::MemoryStore)
//!   applying core's visibility rule, with substring recall and a plain knowledge render, that
//!   records saves, renders and maintenance passes.
//!
//! - [`fake_discord`] and [`fake_slack`]: [`FakeDiscord`] and [`FakeSlack`], real local servers
//!   (REST and gateway websocket; Web API and Socket Mode websocket) the real client libraries
//!   talk to, scripted per test, with failures and dropped connections on demand.
//! - [`fake_telegram`]: [`FakeTelegram`], a real local server speaking the Telegram Bot API
//!   (`getUpdates` long polling with offsets, sending with strict HTML validation through
//!   [`fake_telegram::parse_html`], multipart document uploads, file downloads), with scripted
//!   errors and dropped polls on demand.
//! - [`fake_search`]: [`FakeSearch`], a real local server speaking SearXNG's JSON API or the
//!   Brave Search API, for the `web_search` tool.
//! - [`mail_server`]: [`MailServer`], real Dovecot (IMAP with IDLE) and Postfix (SMTP) on free
//!   loopback ports, each instance on a throwaway configuration in its own temp dir, with users,
//!   SMTP submission and direct reads of the delivered Maildir as [`StoredMail`]s (needs root and
//!   `dovecot-imapd dovecot-lmtpd postfix`).
//! - [`pg_server`]: [`PgServer`], a real PostgreSQL server on a free loopback port with a
//!   throwaway cluster, one per test process ([`PgServer::shared`]), a fresh database per test
//!   (needs the Debian package `postgresql`).
//! - [`binary`]: a command for the built `spacebot` binary that ignores the developer's own
//!   settings, and the address of its `spacebot ready` line (end-to-end tests, the soak harness).
//! - [`conformance`]: one suite any [`MessagingAdapter`](spacebot_core::MessagingAdapter) runs
//!   through a [`conformance::Platform`] harness over its fake.
//!
//! Everything here records what it was asked, so tests can assert on the prompts, tools and
//! replies that crossed each boundary. When a script runs out, each fake fails loudly (an HTTP 500,
//! an `InvalidResponse` error) rather than hanging.

pub mod adapter;
pub mod binary;
pub mod conformance;
pub mod cron_store;
pub mod fake_discord;
pub mod fake_embeddings;
pub mod fake_llm;
pub mod fake_memory;
pub mod fake_search;
pub mod fake_slack;
pub mod fake_telegram;
pub mod log;
pub mod mail_server;
pub mod models;
pub mod pg_server;
pub mod scripted;

mod chunk;
mod daemons;
mod form;

pub use adapter::CapturingAdapter;
pub use cron_store::MemoryCronStore;
pub use fake_discord::{DiscordRequest, FakeDiscord, FakeMessage};
pub use fake_embeddings::{EmbeddingsRequest, FakeEmbeddingsServer};
pub use fake_llm::{FakeLlmServer, FakeReply, RecordedRequest, Wire};
pub use fake_memory::FakeMemory;
pub use fake_search::{FakeSearch, SearchHit, SearchRequest};
pub use fake_slack::{FakeSlack, SlackCall, SlackMessage};
pub use fake_telegram::{FakeTelegram, SentDocument, SentMessage, SentReaction, TelegramCall, TelegramMessage};
pub use log::MemoryLog;
pub use mail_server::{MailServer, StoredMail};
pub use pg_server::PgServer;
pub use scripted::{ScriptedModel, ScriptedTurn};

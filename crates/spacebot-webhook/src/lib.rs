//! Spacebot's HTTP surface: the webhook adapter and the API (axum).
//!
//! - `GET /`: the portal, a web page for people (`portal.rs`; no token needed for the page, its
//!   calls are checked like any other).
//! - `GET /health`: `200 {"status":"ok"}` while the runtime accepts messages, `503` after.
//! - `POST /webhook/{agent}` with `{"conversation", "sender", "text"}`: records the message and
//!   answers `202 {"message_id", "conversation"}` once it is durable. The conversation id is
//!   namespaced as `webhook:<conversation>` so webhook callers can't write into another
//!   platform's conversations.
//! - `GET /api/agents/{agent}/conversations/{conversation}/messages`: the stored messages, in
//!   order. It takes the canonical id (`webhook:c1`, as the `202` names it) and, for webhook
//!   conversations, the bare id the caller sent (`c1`).
//! - `GET /api/status`: agents, live conversations, adapters, uptime.
//! - `GET /api/events`: server-sent events for replies, typing and turn outcomes.
//! - `GET /api/usage`: tokens (and cost, where prices are configured) per day, agent, model and
//!   process kind.
//! - `GET|POST /api/agents/{agent}/cron`, `GET|DELETE /api/agents/{agent}/cron/{id}`,
//!   `POST /api/agents/{agent}/cron/{id}/run`: the agent's cron jobs (`admin` scope).
//! - `GET /metrics`: the daemon's figures in the Prometheus text format ([`Metrics`]).
//! - `POST /v1/chat/completions`, `GET /v1/models`: the OpenAI-compatible API onto the agents
//!   (see the `openai` module); needs an [`OpenAiAdapter`] registered with the runtime and in
//!   [`ApiConfig::with_openai`].
//!
//! When a token is configured, every route but `/health` needs `Authorization: Bearer`: the
//! admin token may do everything, a [`ScopedToken`] what its scopes allow (`access.rs`), whether
//! it comes from the config or from the data dir's token file ([`StoredTokens`], which keeps
//! only digests).
//! Every error is JSON, `{"error": "..."}`, naming the field or limit at fault (except the `431`
//! and `400` hyper's parser answers to a head it can't take, before any route runs).
//!
//! [`serve()`] runs the router on a listener within [`ServeLimits`]: header and body read timeouts
//! (`408`), a head size limit (`431`) and a connection cap (the longest-idle connection makes way;
//! `503` when all are busy), so idle or slow clients can't stop `/health` and the webhook
//! answering.
//!
//! This crate depends on `spacebot-core` alone: it serves whatever runtime it is handed.

mod access;
mod adapter;
mod api;
mod cron;
mod error;
mod forward;
mod memories;
mod metrics;
mod openai;
mod portal;
mod serve;
mod stored_tokens;
mod usage;

pub use access::{Scope, ScopedToken};
pub use adapter::{WEBHOOK_ADAPTER, WebhookAdapter};
pub use api::{ApiConfig, StatusSource, router};
pub use error::{ApiError, Result};
pub use metrics::{Metrics, RECENT_TURNS, TurnSample, UsageWriter};
pub use openai::{OPENAI_ADAPTER, OpenAiAdapter};
pub use serve::{ServeLimits, serve};
pub use stored_tokens::{NewToken, StoredTokens, TOKEN_PREFIX, TokenFile, TokenFileError, TokenRecord};
pub use usage::ModelPrice;

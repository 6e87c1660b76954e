//! End-to-end tests: the real `spacebot` binary, a real fake model server, real HTTP.
//!
//! One test binary for the whole area (faster to link); each module is a topic.

mod binary;
mod cli;
mod conversation;
mod cron;
mod daemon;
mod email;
mod eviction;
mod fleet;
mod http_api;
mod identity;
mod images;
mod in_process;
mod local_model;
mod mcp;
mod memory;
mod messaging;
mod metrics;
mod modes;
mod openai_api;
mod portal;
mod postgres;
mod processes;
mod provider_errors;
mod refusals;
mod secret_store;
mod secrets;
mod send;
mod send_file;
mod shutdown;
mod telegram;
mod tls;
mod tool_arguments;
mod usage;
mod web_search;

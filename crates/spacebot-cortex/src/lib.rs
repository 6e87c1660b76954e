//! The cortex: Spacebot's supervisor of processes and keeper of memory.
//!
//! It will see every branch and worker, enforce their timeouts, end hung ones with a terminal
//! state, run memory maintenance (decay, prune, merge, link) and cron jobs, and make no model call
//! when there is nothing to do.
//!
//! **Status: not built yet.** Branches and workers arrive with the process-model work, and this
//! crate with them. Today the runtime in `spacebot-core` already supervises what exists: adapter
//! restarts with backoff, one owned task per conversation, and bounded shutdown. This crate has no
//! public items yet, on purpose: an empty API is more honest than a stub.

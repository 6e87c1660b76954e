//! Integration tests of the SQLite conversation log, in one test binary.

mod concurrency;
mod conversation;
mod open;
mod recovery;
mod support;

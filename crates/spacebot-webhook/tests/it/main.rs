//! Integration tests of the HTTP surface: the real router over a real runtime, served on a real
//! socket, talked to by raw TCP clients that misbehave on purpose.

mod cron;
mod openai;
mod properties;
mod scopes;
mod serve;
mod support;

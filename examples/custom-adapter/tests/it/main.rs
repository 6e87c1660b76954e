//! Integration tests of the LineChat adapter, against a LineChat server on a local port.

mod conformance;
mod delivery;
mod server;

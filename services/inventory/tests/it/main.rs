//! Tests of the inventory: every RPC through a real gRPC client against the
//! real service on a fresh database per test, and the store test-suite
//! against the store trait; both on PostgreSQL and on SQLite.

#![allow(clippy::unwrap_used)]

mod contract;
mod import;
mod secrets;
mod store;
mod support;
mod watch;

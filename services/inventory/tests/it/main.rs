//! Contract tests of the inventory: every RPC through a real gRPC client
//! against the real service on real PostgreSQL (a fresh database per test).

#![allow(clippy::unwrap_used)]

mod contract;
mod import;
mod secrets;
mod support;
mod watch;

//! Integration tests of netward-shared against real servers.

#![allow(clippy::unwrap_used)]

mod delivery;
mod testkit;

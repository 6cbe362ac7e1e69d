//! Alerting on real PostgreSQL (and its store on SQLite too): ingest stores
//! each batch once, acks only after the commit, and keeps daily partitions
//! ahead and within retention.

#![allow(clippy::unwrap_used)]

mod availability;
mod durable;
mod ingest;
mod live;
mod notify;
mod retention;
mod service;
mod snmp;
mod store;
mod stores;

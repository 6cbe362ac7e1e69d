//! Alerting on real PostgreSQL (and its store on SQLite too): ingest stores
//! each batch once, acks only after the commit, and keeps daily partitions
//! ahead and within retention.

#![allow(clippy::unwrap_used)]

use netward_shared::config::Target;
use netward_shared::testkit::cluster::{ClusterBuilder, runner};

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

/// The test kit's cluster with alerting alone, in this process (no
/// inventory: devices are whatever ids the results name).
fn alerting_alone() -> ClusterBuilder {
    ClusterBuilder::new()
        .runner(
            Target::Alerting,
            runner(|config, listeners, stop| async move {
                netward_alerting::run(&config, listeners, stop.cancelled_owned()).await
            }),
        )
        .in_process(Target::Alerting)
        .no_inventory()
        .alerting()
}

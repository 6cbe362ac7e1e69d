//! The metrics the inventory records, described (`# HELP`) when the target starts.
//! Names are `netward_` + the service's own; the shared crate describes its
//! own metrics (delivery, gRPC requests, the inventory copy).

use metrics::{describe_counter, describe_gauge};

/// Describes every metric the inventory records. Installs the process-wide recorder
/// first: a description given before it is lost.
pub fn describe() {
    netward_shared::metrics::handle();
    describe_gauge!("netward_inventory_watchers", "Open WatchDevices streams");
    describe_counter!(
        "netward_inventory_import_rows_total",
        "Rows of device imports, by outcome (created, updated, failed)"
    );
}

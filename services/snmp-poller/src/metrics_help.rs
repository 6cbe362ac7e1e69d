//! The metrics the SNMP poller records, described (`# HELP`) when the target starts.
//! Names are `netward_` + the service's own; the shared crate describes its
//! own metrics (delivery, gRPC requests, the inventory copy).

use metrics::describe_counter;

/// Describes every metric the SNMP poller records. Installs the process-wide recorder
/// first: a description given before it is lost.
pub fn describe() {
    netward_shared::metrics::handle();
    describe_counter!(
        "netward_snmp_polls_total",
        "SNMP polls of a device finished, by outcome"
    );
    describe_counter!(
        "netward_snmp_requests_total",
        "SNMP requests sent to agents"
    );
}

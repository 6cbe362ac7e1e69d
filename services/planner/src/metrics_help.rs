//! The metrics the planner records, described (`# HELP`) when the target starts.
//! Names are `netward_` + the service's own; the shared crate describes its
//! own metrics (delivery, gRPC requests, the inventory copy).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every metric the planner records. Installs the process-wide recorder
/// first: a description given before it is lost.
pub fn describe() {
    netward_shared::metrics::handle();
    describe_counter!(
        "netward_planner_cycles_total",
        "Planning cycles run, by kind (ping, snmp)"
    );
    describe_counter!("netward_planner_batches_total", "Batches planned, by kind");
    describe_counter!(
        "netward_planner_devices_planned_total",
        "Devices planned into batches, by kind"
    );
    describe_counter!(
        "netward_planner_skipped_total",
        "Devices skipped at their slot (still in flight from an earlier batch, or no credential yet), by kind"
    );
    describe_counter!(
        "netward_planner_overruns_total",
        "Batches that overran their deadline, by kind"
    );
    describe_counter!(
        "netward_planner_reassignments_total",
        "Batches given to another executor after one refused or lost them"
    );
    describe_counter!(
        "netward_planner_unserved_batches_total",
        "Batches no executor took, by kind"
    );
    describe_gauge!(
        "netward_planner_executors_connected",
        "Executors with an open work stream, by kind"
    );
    describe_histogram!(
        "netward_planner_cycle_planning_seconds",
        Unit::Seconds,
        "Time to plan one cycle, by kind"
    );
    describe_gauge!(
        "netward_planner_leader",
        "1 while this planner holds the leader lease, else 0"
    );
    describe_gauge!(
        "netward_planner_leader_epoch",
        "The leader epoch this planner last held or saw"
    );
    describe_counter!(
        "netward_planner_stale_rejections_total",
        "Batches an executor refused because the planner's leader epoch was stale"
    );
    describe_counter!(
        "netward_planner_stuck_sessions_total",
        "Executor sessions ended because their work queue was full (the executor stopped reading)"
    );
    describe_counter!(
        "netward_planner_credential_pending_devices_total",
        "Devices left out of an SNMP cycle because their credential was not resolved yet"
    );
    describe_counter!(
        "netward_planner_credential_resolve_failures_total",
        "SNMP credentials the inventory could not resolve"
    );
}

//! The metrics alerting records, described (`# HELP`) when the target starts.
//! Names are `netward_` + the service's own; the shared crate describes its
//! own metrics (delivery, gRPC requests, the inventory copy).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every metric alerting records. Installs the process-wide recorder
/// first: a description given before it is lost.
pub fn describe() {
    netward_shared::metrics::handle();
    describe_counter!(
        "netward_alerting_agent_nuls_stripped_total",
        "NUL bytes stripped from SNMP agents' interface names and string values"
    );
    describe_gauge!("netward_alerting_alerts_open", "Alerts open");
    describe_counter!("netward_alerting_alerts_total", "Alert events, by event");
    describe_counter!(
        "netward_alerting_batches_rejected_total",
        "Result batches rejected as invalid"
    );
    describe_counter!(
        "netward_alerting_checkpoint_rows_total",
        "Device state rows written by checkpoints"
    );
    describe_counter!(
        "netward_alerting_duplicate_batches_total",
        "Result batches received again (already stored, acknowledged without storing)"
    );
    describe_gauge!(
        "netward_alerting_evaluation_backlog",
        "Stored results waiting for state evaluation"
    );
    describe_counter!(
        "netward_alerting_evaluation_retries_total",
        "State evaluations retried after a failure"
    );
    describe_histogram!(
        "netward_alerting_ingest_lag_seconds",
        Unit::Seconds,
        "Time from a batch's sending to its storing"
    );
    describe_counter!(
        "netward_alerting_interface_checkpoint_rows_total",
        "Interface counter rows written by checkpoints"
    );
    describe_counter!(
        "netward_alerting_late_unnoted_total",
        "Late results or SNMP polls that could not be noted for a rollup again (their rollups miss them)"
    );
    describe_gauge!(
        "netward_alerting_live_pending",
        "Live device updates waiting to be published to Redis"
    );
    describe_counter!(
        "netward_alerting_live_publish_failures_total",
        "Failed publishes of live device updates to Redis"
    );
    describe_gauge!("netward_alerting_monitored_devices", "Devices monitored");
    describe_counter!(
        "netward_alerting_notifications_total",
        "Notification attempts, by channel and outcome"
    );
    describe_gauge!(
        "netward_alerting_oldest_result_age_seconds",
        Unit::Seconds,
        "Age of the oldest latest result among monitored devices"
    );
    describe_gauge!(
        "netward_alerting_outbox_pending",
        "Notifications waiting in the outbox"
    );
    describe_gauge!(
        "netward_alerting_redis_up",
        "1 while Redis accepts live updates, else 0"
    );
    describe_counter!(
        "netward_alerting_results_late_total",
        "Results stored after their one-minute rollup block was read (rolled again)"
    );
    describe_counter!(
        "netward_alerting_results_rejected_total",
        "Results not stored, by reason"
    );
    describe_counter!(
        "netward_alerting_results_skipped_total",
        "Results not stored: bad device id or older than the retention"
    );
    describe_counter!(
        "netward_alerting_results_stored_total",
        "Probe results stored"
    );
    describe_counter!(
        "netward_alerting_rollup_blocks_total",
        "10-minute blocks rolled into the one-minute tier"
    );
    describe_counter!(
        "netward_alerting_rollup_days_total",
        "Days rolled into the daily tier"
    );
    describe_counter!(
        "netward_alerting_rollup_interface_days_total",
        "Interface days rolled into the hourly tier"
    );
    describe_counter!(
        "netward_alerting_rows_pruned_total",
        "Rows deleted by retention, by table"
    );
    describe_counter!(
        "netward_alerting_samples_stored_total",
        "SNMP interface samples stored"
    );
    describe_counter!(
        "netward_alerting_snmp_polls_late_total",
        "SNMP polls stored after their day closed (hourly rollups rolled again)"
    );
    describe_histogram!(
        "netward_alerting_snmp_write_seconds",
        Unit::Seconds,
        "Time to write one group of SNMP batches"
    );
    describe_gauge!(
        "netward_alerting_devices",
        "Devices alerting holds a state for, by state (UP, DOWN, UNREACHABLE, FLAPPING, UNKNOWN)"
    );
    describe_gauge!(
        "netward_alerting_stale_devices",
        "Monitored devices with no recent result"
    );
    describe_counter!(
        "netward_alerting_state_changes_total",
        "Device state changes, by new state"
    );
    describe_histogram!(
        "netward_alerting_write_batches",
        "Probe result batches per group write"
    );
    describe_histogram!(
        "netward_alerting_write_seconds",
        Unit::Seconds,
        "Time to write one group of probe result batches"
    );
}

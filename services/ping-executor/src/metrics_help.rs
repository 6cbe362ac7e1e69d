//! The metrics the ping executor records, described (`# HELP`) when the target starts.
//! Names are `netward_` + the service's own; the shared crate describes its
//! own metrics (delivery, gRPC requests, the inventory copy).

use metrics::{Unit, describe_counter, describe_histogram};

/// Describes every metric the ping executor records. Installs the process-wide recorder
/// first: a description given before it is lost.
pub fn describe() {
    netward_shared::metrics::handle();
    describe_counter!(
        "netward_executor_probes_total",
        "Probes finished, by outcome (ok, timeout, unreachable, send_error, no_route, invalid_address)"
    );
    describe_counter!(
        "netward_executor_packets_sent_total",
        "ICMP echo requests sent"
    );
    describe_counter!(
        "netward_executor_replies_total",
        "ICMP echo replies matched to a probe"
    );
    describe_counter!(
        "netward_executor_stray_replies_total",
        "ICMP replies matching no probe of this executor, ignored"
    );
    describe_counter!(
        "netward_executor_icmp_errors_unmatched_total",
        "ICMP errors (unreachable, time exceeded) failing no probe, by reason (identifier: another process's request; no_request: no request waits under the quoted destination and sequence; payload: the quoted payload is not the waiting request's)"
    );
    describe_counter!(
        "netward_executor_send_errors_total",
        "ICMP sends that failed with an error of the executor's own (ENOBUFS, EAGAIN, ...)"
    );
    describe_counter!(
        "netward_executor_packets_no_route_total",
        "ICMP sends the kernel refused because the path is gone (EHOSTUNREACH, ENETUNREACH)"
    );
    describe_histogram!(
        "netward_executor_rtt_seconds",
        Unit::Seconds,
        "Round-trip time of answered ICMP echo requests"
    );
    describe_histogram!(
        "netward_executor_pacing_wait_seconds",
        Unit::Seconds,
        "Time a send waited for the packets-per-second budget"
    );
    describe_histogram!(
        "netward_executor_scheduler_lag_seconds",
        Unit::Seconds,
        "How late a send ran after its scheduled time"
    );
}

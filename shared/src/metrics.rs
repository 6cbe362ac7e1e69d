//! The Prometheus `/metrics` endpoint every target serves on its metrics
//! port. Services record with the `metrics` macros; one process-wide
//! recorder collects them (an all-in-one process shares it across targets).
//!
//! Every metric is named `netward_*` and described (`# HELP`): this crate's
//! own in [`describe`], each service's in its `metrics::describe`, called
//! when the service starts.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets for latency histograms, in seconds: from 100 µs (an RTT on a LAN)
/// to 10 s (a whole ping interval).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be global (a test harness); then this
        // one still renders, it just sees no macro calls.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        describe();
        handle
    })
}

/// Describes the metrics this crate records, for every target. Called once,
/// as the recorder is installed (descriptions given before are lost).
fn describe() {
    use crate::layers::{REQUEST_DURATION, REQUESTS_TOTAL};
    use metrics::{describe_counter, describe_gauge, describe_histogram};

    describe_gauge!(
        "netward_build_info",
        "Always 1; the target and version of this process in its labels"
    );
    describe_counter!(
        REQUESTS_TOTAL,
        "gRPC calls served, by service, method and status code (CANCELLED: ended without a status)"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from a gRPC request's arrival to its response headers: the whole call when unary, the opening of the stream when streaming"
    );
    describe_counter!(
        "netward_delivery_acked_batches_total",
        "Result batches alerting acknowledged (committed)"
    );
    describe_gauge!(
        "netward_delivery_buffered_batches",
        "Result batches kept until alerting acknowledges them"
    );
    describe_gauge!(
        "netward_delivery_connected",
        "1 while the ingest stream to alerting is open, else 0"
    );
    describe_counter!(
        "netward_delivery_dropped_batches_total",
        "Unacknowledged result batches dropped, oldest first, because the buffer was full"
    );
    describe_counter!(
        "netward_delivery_rejected_batches_total",
        "Result batches alerting refused to store (not sent again)"
    );
    describe_counter!(
        "netward_delivery_replayed_batches_total",
        "Unacknowledged result batches sent again after a reconnect"
    );
    describe_gauge!(
        "netward_inventory_copy_devices",
        "Devices in this process's copy of the inventory"
    );
    describe_counter!(
        "netward_executor_stale_assignments_total",
        "Assignments refused because their leader epoch is older than one already seen"
    );
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = handle();
    let app = Router::new().route("/metrics", get(|| async { handle.render() }));
    // Histograms keep raw samples until upkeep folds them; do it off the
    // scrape path.
    let upkeep = tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    served
}

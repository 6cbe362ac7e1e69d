//! The ping executor: holds a `Work` stream to the planner(s), probes each
//! assignment with ICMP, and streams results to alerting. Stateless: what it
//! has not delivered yet lives in a bounded buffer until alerting acks it.
//!
//! `icmp/` is the probing engine (one socket per family, paced),
//! `work.rs` runs the planner's batches (the `Work` stream itself is
//! `netward_shared::work`), `grpc.rs` its own `ExecutorService`.

mod grpc;
pub mod icmp;
mod metrics_help;
pub mod pacing;
pub mod work;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use netward_shared::client::ClientOptions;
use netward_shared::config::{ConfigError, LoadedConfig, Target};
use netward_shared::delivery::{DeliveryConfig, ResultSender};
use netward_shared::proto::v1;
use netward_shared::proto::v1::executor_service_server::ExecutorServiceServer;
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::icmp::{Pinger, PingerConfig};
use crate::work::{Executor, Identity};

/// The `[ping_executor]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PingExecutorConfig {
    /// Name registered with the planner, unique per process and stable
    /// across its restarts. Empty (the default) = `ping-<hostname>-<grpc
    /// port>`: unique on a host, since two processes cannot listen on one
    /// port, and stable while the configured port is.
    pub executor_id: String,
    /// Devices in flight at most; the planner never assigns more.
    pub capacity: u32,
    /// Labels the planner matches against devices' executor selectors
    /// (e.g. `site = "tbilisi-01"` for an executor inside that branch).
    pub labels: HashMap<String, String>,
    /// ICMP packets per second at most (retries included).
    pub packets_per_second: u32,
    /// Probe results per `ResultBatch` message.
    pub results_per_message: usize,
    /// Unacked result batches kept at most when alerting is away.
    pub buffer_batches: usize,
    /// On SIGTERM: how long the drain may take in all (running batches, then
    /// acks of their results); see `ExecutorState::drain`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for PingExecutorConfig {
    fn default() -> Self {
        Self {
            executor_id: String::new(),
            capacity: 20_000,
            labels: HashMap::new(),
            packets_per_second: PingerConfig::default().packets_per_second,
            results_per_message: 500,
            buffer_batches: 10_000,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Icmp(#[from] icmp::PingerError),
    #[error("alerting client: {0}")]
    Client(#[from] netward_shared::client::ClientError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Runs the ping-executor target on `listeners` until `shutdown` completes,
/// then drains within `drain_timeout` in all: refuses new work, gives running
/// batches a grace to finish and cuts the rest short, and waits for alerting
/// to ack their results while it is connected (`ExecutorState::drain`).
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let section: PingExecutorConfig = config.section()?;
    // The engine looks its metrics up once, at construction: the recorder
    // must exist by then (`describe` installs it).
    metrics_help::describe();
    let pinger = Pinger::new(PingerConfig {
        packets_per_second: section.packets_per_second,
        ..PingerConfig::default()
    })?;
    // Delivery and the work streams outlive the gRPC server: they stop only
    // after the drain below.
    let delivery_stop = CancellationToken::new();
    let work_stop = CancellationToken::new();
    let executor_id = Identity::executor_id(
        &section.executor_id,
        "ping",
        &hostname(),
        listeners.grpc_addr().port(),
    );
    let sender = ResultSender::start(
        DeliveryConfig {
            executor_id: executor_id.clone(),
            kind: v1::ExecutorKind::Ping,
            alerting_url: config.common.alerting_url.clone(),
            client: ClientOptions::from_config(&config.common),
            buffer_batches: section.buffer_batches,
        },
        delivery_stop.clone(),
    )?;
    let executor = Arc::new(Executor::new(
        Identity::new(
            executor_id,
            section.capacity.max(1),
            section.labels.clone(),
            hostname(),
        ),
        pinger,
        sender,
        ClientOptions::from_config(&config.common),
        section.results_per_message.max(1),
    ));
    // Several planners (a leader and standbys) may be listed, comma-separated:
    // the executor holds a stream to each, and only the leader sends work.
    netward_shared::work::spawn_work_streams(&executor, &config.common.planner_url, &work_stop);

    let service = ExecutorServiceServer::new(grpc::ExecutorGrpc::new(
        executor.clone(),
        section.buffer_batches as u32,
    ));
    GrpcServer::new(
        Target::PingExecutor,
        ServerOptions::from_config(&config.common),
    )
    .add_service(service)
    .serve(listeners, shutdown)
    .await?;

    // The server has stopped (its open calls had `shutdown_grace`); the work
    // streams and delivery are still up for the drain's `BatchDone`s and acks.
    executor
        .state
        .drain(section.drain_timeout, &work_stop)
        .await;
    // Only now: stopping delivery earlier would drop what alerting could
    // still have acked.
    delivery_stop.cancel();
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

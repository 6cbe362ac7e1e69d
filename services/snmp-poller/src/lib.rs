//! The SNMP poller: holds a `Work` stream to the planner(s) (kind SNMP),
//! polls each assignment's agents concurrently, each within its own
//! deadline, and streams samples to alerting. Stateless but for a memory
//! of per-device choices (see `poll.rs`); what it has not delivered yet
//! lives in a bounded buffer until alerting acks it.
//!
//! `snmp.rs` is the SNMP layer (async-snmp behind the poller's own trait),
//! `walk.rs` the table walks, `profile.rs` the profiles, `poll.rs` one
//! device's poll, `work.rs` the planner's batches (the `Work` stream itself
//! is `netward_shared::work`), `grpc.rs` its own `ExecutorService`.

mod grpc;
mod metrics_help;
pub mod poll;
pub mod profile;
pub mod snmp;
pub mod walk;
pub mod work;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netward_shared::client::ClientOptions;
use netward_shared::config::{ConfigError, LoadedConfig, Target};
use netward_shared::delivery::{DeliveryConfig, ResultSender};
use netward_shared::proto::v1;
use netward_shared::proto::v1::executor_service_server::ExecutorServiceServer;
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};
pub(crate) use netward_shared::work::{system_time, timestamp};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::poll::Poller;
use crate::profile::Profiles;
use crate::snmp::SnmpEngine;
use crate::work::{Identity, SnmpExecutor};

/// The `[snmp_poller]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SnmpPollerConfig {
    /// Name registered with the planner, unique per process and stable
    /// across its restarts. Empty (the default) = `snmp-<hostname>-<grpc
    /// port>`: unique on a host, since two processes cannot listen on one
    /// port, and stable while the configured port is.
    pub executor_id: String,
    /// Devices in flight at most; the planner never assigns more.
    pub capacity: u32,
    /// Devices polled at the same moment at most, over all batches (each
    /// holds a few outstanding requests); the others wait their turn.
    pub concurrency: usize,
    /// Labels the planner matches against devices' executor selectors.
    pub labels: HashMap<String, String>,
    /// Samples per `ResultBatch` message.
    pub results_per_message: usize,
    /// Unacked result batches kept at most when alerting is away.
    pub buffer_batches: usize,
    /// On SIGTERM: how long the drain may take in all (running batches, then
    /// acks of their results); see `ExecutorState::drain`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A directory of custom profiles (`*.toml`, format in PROFILES.md);
    /// unset = the built-in profiles only.
    pub profiles_dir: Option<PathBuf>,
}

impl Default for SnmpPollerConfig {
    fn default() -> Self {
        Self {
            executor_id: String::new(),
            capacity: 20_000,
            concurrency: 2_000,
            labels: HashMap::new(),
            results_per_message: 100,
            buffer_batches: 2_000,
            drain_timeout: Duration::from_secs(5),
            profiles_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Profiles(#[from] profile::ProfileError),
    #[error("snmp: {0}")]
    Snmp(#[from] snmp::SnmpError),
    #[error("alerting client: {0}")]
    Client(#[from] netward_shared::client::ClientError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Runs the snmp-poller target on `listeners` until `shutdown` completes,
/// then drains within `drain_timeout` in all: refuses new work, gives running
/// batches a grace to finish and cuts the rest short, and waits for alerting
/// to ack their results while it is connected (`ExecutorState::drain`).
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let section: SnmpPollerConfig = config.section()?;
    // Bad profiles stop the start: better than polling the wrong objects.
    let profiles = Profiles::load(section.profiles_dir.as_deref())?;
    metrics_help::describe();
    let poller = Arc::new(Poller::new(SnmpEngine::new().await?, profiles));
    // Delivery and the work streams outlive the gRPC server: they stop only
    // after the drain below.
    let delivery_stop = CancellationToken::new();
    let work_stop = CancellationToken::new();
    let executor_id = Identity::executor_id(
        &section.executor_id,
        "snmp",
        &hostname(),
        listeners.grpc_addr().port(),
    );
    let sender = ResultSender::start(
        DeliveryConfig {
            executor_id: executor_id.clone(),
            kind: v1::ExecutorKind::Snmp,
            alerting_url: config.common.alerting_url.clone(),
            client: ClientOptions::from_config(&config.common),
            buffer_batches: section.buffer_batches,
        },
        delivery_stop.clone(),
    )?;
    let executor = Arc::new(SnmpExecutor::new(
        Identity::new(
            executor_id,
            section.capacity.max(1),
            section.labels.clone(),
            hostname(),
        ),
        poller,
        sender.clone(),
        ClientOptions::from_config(&config.common),
        section.results_per_message.max(1),
        section.concurrency.max(1),
    ));
    // Several planners (a leader and standbys) may be listed, comma-separated:
    // the poller holds a stream to each, and only the leader sends work.
    netward_shared::work::spawn_work_streams(&executor, &config.common.planner_url, &work_stop);

    let service = ExecutorServiceServer::new(grpc::PollerGrpc::new(
        executor.clone(),
        section.buffer_batches as u32,
    ));
    GrpcServer::new(
        Target::SnmpPoller,
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

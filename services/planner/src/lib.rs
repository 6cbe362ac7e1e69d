//! The planner: sizes batches from the device count (the seed's auto-scaling
//! rule), opens ping and SNMP cycles, and streams assignments to executors
//! over the `Work` stream they hold.
//!
//! `sizing.rs` is the rule, `netward_shared::inventory_copy` the inventory copy, `cycle.rs` the
//! scheduler (state and step functions), `lease.rs` the leadership lease,
//! `grpc.rs` the service; `run` wires them and drives the steps on a timer.

pub mod cycle;

mod grpc;
pub mod lease;
pub mod sizing;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use netward_shared::client::{PeerChannel, connect};
use netward_shared::config::{ConfigError, LoadedConfig, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_server::PlannerServiceServer;
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::cycle::{CycleConfig, Scheduler};
use crate::lease::{Lease, LeaseConfig, LeaseState};
use crate::sizing::SizingPolicy;
use netward_shared::inventory_copy::{InventoryCopy, SharedCopy};

pub use crate::grpc::PlannerGrpc;

/// The `[planner]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PlannerConfig {
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub snmp_interval: Duration,
    /// How often interface labels (names, aliases, speeds) are read again.
    #[serde(with = "humantime_serde")]
    pub snmp_label_refresh_interval: Duration,
    /// Echo requests per probe (3), spacing (200 ms), reply timeout (1 s)
    /// and extra requests on total loss (2).
    pub probe_count: u32,
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    pub probe_retries: u32,
    #[serde(with = "humantime_serde")]
    pub snmp_timeout: Duration,
    pub snmp_retries: u32,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub sizing: SizingPolicy,
    pub lease: LeaseConfig,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(10),
            snmp_interval: Duration::from_secs(60),
            snmp_label_refresh_interval: Duration::from_secs(3600),
            probe_count: 3,
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(1),
            probe_retries: 2,
            snmp_timeout: Duration::from_secs(2),
            snmp_retries: 1,
            heartbeat_interval: Duration::from_secs(5),
            sizing: SizingPolicy::default(),
            lease: LeaseConfig::default(),
        }
    }
}

impl PlannerConfig {
    pub fn cycle_config(&self) -> CycleConfig {
        CycleConfig {
            ping_interval: self.ping_interval,
            snmp_interval: self.snmp_interval,
            probe: v1::ProbeSettings {
                count: self.probe_count,
                interval_ms: self.probe_interval.as_millis() as u32,
                timeout_ms: self.probe_timeout.as_millis() as u32,
                retries: Some(self.probe_retries),
            },
            snmp_timeout_ms: self.snmp_timeout.as_millis() as u32,
            snmp_retries: self.snmp_retries,
            snmp_label_refresh: self.snmp_label_refresh_interval,
            heartbeat_interval: self.heartbeat_interval,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] InvalidPolicy),
    #[error("inventory client: {0}")]
    Client(#[from] netward_shared::client::ClientError),
    #[error("leadership lease: {0}")]
    Lease(#[from] lease::LeaseError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid [planner.sizing] policy: {0}")]
pub struct InvalidPolicy(String);

/// The planner's parts, for `run` and for tests that drive them by hand.
pub struct Planner {
    pub scheduler: Arc<Scheduler>,
    pub copy: SharedCopy,
    inventory: InventoryServiceClient<PeerChannel>,
}

impl Planner {
    pub fn new(
        config: &PlannerConfig,
        inventory: InventoryServiceClient<PeerChannel>,
    ) -> Result<Self, InvalidPolicy> {
        let violations = config.sizing.violations();
        if !violations.is_empty() {
            let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(InvalidPolicy(text.join("; ")));
        }
        let copy: SharedCopy = Arc::new(RwLock::new(InventoryCopy::default()));
        let scheduler = Arc::new(Scheduler::new(
            config.cycle_config(),
            config.sizing,
            copy.clone(),
        ));
        Ok(Self {
            scheduler,
            copy,
            inventory,
        })
    }

    /// Follows the inventory until `stop`; a changed device drops its cached
    /// SNMP credential, so the next SNMP cycle resolves it again.
    pub fn spawn_follower(&self, stop: CancellationToken) {
        let scheduler = self.scheduler.clone();
        tokio::spawn(netward_shared::inventory_copy::follow(
            self.inventory.clone(),
            self.copy.clone(),
            move |device: &v1::Device| {
                if let Some(snmp) = &device.snmp
                    && let Ok(mut cache) = scheduler.credentials.lock()
                    && cache.remove(&snmp.credential_id).is_some()
                {
                    drop(cache);
                    scheduler.credentials_changed();
                }
            },
            stop,
        ));
    }

    /// Resolves the SNMP credentials the next SNMP cycle needs and has not cached.
    pub async fn resolve_credentials(&self) {
        let wanted: Vec<String> = match self.copy.read() {
            Ok(copy) => {
                let cache = self
                    .scheduler
                    .credentials
                    .lock()
                    .map(|c| c.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                let mut ids: Vec<String> = copy
                    .devices
                    .values()
                    .filter_map(|d| {
                        d.snmp
                            .as_ref()
                            .filter(|s| s.enabled)
                            .map(|s| s.credential_id.clone())
                    })
                    .filter(|id| !id.is_empty() && !cache.contains(id))
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            }
            Err(_) => return,
        };
        let mut client = self.inventory.clone();
        for id in wanted {
            let request = v1::ResolveCredentialRequest {
                key: Some(v1::resolve_credential_request::Key::Id(id.clone())),
            };
            match client.resolve_credential(request).await {
                Ok(response) => {
                    if let (Some(credential), Ok(mut cache)) = (
                        response.into_inner().credential,
                        self.scheduler.credentials.lock(),
                    ) {
                        cache.insert(id, credential);
                        drop(cache);
                        self.scheduler.credentials_changed();
                    }
                }
                Err(status) => {
                    tracing::warn!(credential_id = %id, code = ?status.code(), message = status.message(), "cannot resolve an SNMP credential")
                }
            }
        }
    }

    /// Drives the scheduler on real time until `stop`: follows leadership,
    /// opens cycles at their intervals, dispatches due batches, checks timers.
    pub async fn run_loop(
        self: Arc<Self>,
        mut lease: watch::Receiver<LeaseState>,
        stop: CancellationToken,
    ) {
        let config = self.scheduler.config.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut next_ping = Instant::now();
        let mut next_snmp = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
                _ = lease.changed() => {}
            }
            let (leading, epoch) = match &*lease.borrow() {
                LeaseState::Leader { epoch, .. } => (true, *epoch),
                LeaseState::Standby { .. } => (false, 0),
            };
            let was_leading = self.scheduler.lock().leading;
            self.scheduler.set_leadership(leading, epoch);
            let now = Instant::now();
            if leading {
                if !was_leading {
                    // A new leader starts its cycles now, not at stale times.
                    next_ping = now;
                    next_snmp = now;
                }
                if now >= next_ping
                    && self
                        .scheduler
                        .open_cycle(v1::ExecutorKind::Ping, now)
                        .is_some()
                {
                    next_ping = next_due(next_ping, config.ping_interval, now);
                }
                if now >= next_snmp {
                    self.resolve_credentials().await;
                    let now = Instant::now();
                    if self
                        .scheduler
                        .open_cycle(v1::ExecutorKind::Snmp, now)
                        .is_some()
                    {
                        next_snmp = next_due(next_snmp, config.snmp_interval, now);
                    }
                }
                self.scheduler.dispatch_due(Instant::now());
            }
            self.scheduler.check_timers(Instant::now());
        }
    }
}

/// The next cycle time on the interval's grid; when the planner fell more
/// than an interval behind, the grid restarts at `now` (no burst of cycles).
fn next_due(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous + interval;
    if next <= now { now + interval } else { next }
}

/// Runs the planner target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let section: PlannerConfig = config.section()?;
    let channel = connect(&config.common.inventory_url, config.common.token.as_ref())?;
    let inventory =
        InventoryServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let planner = Arc::new(Planner::new(&section, inventory)?);

    let server = GrpcServer::new(Target::Planner, ServerOptions::from_config(&config.common));
    let stop = server.shutdown_token();
    let lease = match &config.common.redis_url {
        Some(url) => Lease::redis(url.expose(), &section.lease)?,
        None => {
            tracing::info!("no Redis configured: this planner leads alone (local lease)");
            Lease::local(&section.lease)
        }
    };
    let instance_id = lease.instance_id().to_string();
    let lease_rx = lease::spawn(lease, &section.lease, stop.clone());
    planner.spawn_follower(stop.clone());
    tokio::spawn(planner.clone().run_loop(lease_rx.clone(), stop.clone()));

    let mut released = lease_rx.clone();
    let service = PlannerServiceServer::new(PlannerGrpc::new(
        planner.scheduler.clone(),
        lease_rx,
        instance_id,
        stop,
    ));
    server
        .add_service(service)
        .serve(listeners, shutdown)
        .await?;
    // The lease driver releases the lease on shutdown, then ends (and
    // `changed` fails): wait for it, so a standby takes over at once rather
    // than after the TTL.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while released.changed().await.is_ok() {}
    })
    .await;
    Ok(())
}

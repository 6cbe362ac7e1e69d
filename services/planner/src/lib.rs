//! The planner: sizes batches from the device count (the seed's auto-scaling
//! rule), opens ping and SNMP cycles, and streams assignments to executors
//! over the `Work` stream they hold.
//!
//! `sizing.rs` is the rule, `netward_shared::inventory_copy` the inventory copy, `cycle.rs` the
//! scheduler (state and step functions), `lease.rs` the leadership lease,
//! `grpc.rs` the service; `run` wires them and drives the steps on a timer.

pub mod adhoc;
pub mod audit;
pub mod cycle;

mod grpc;
pub mod lease;
mod metrics_help;
pub mod sizing;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use netward_shared::auth::grant::GrantKey;
use netward_shared::client::{ClientOptions, PeerChannel, connect};
use netward_shared::config::{ConfigError, LoadedConfig, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_server::PlannerServiceServer;
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::audit::PolicyAudit;
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
    /// The key batch grants are signed with, from the shared
    /// `auth.grant_key`; without it assignments carry no grant.
    #[serde(skip)]
    pub grant_key: Option<GrantKey>,
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
            grant_key: None,
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
            grant_key: self.grant_key.clone(),
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
    /// Wakes the credential resolver (an inventory change).
    credentials_wanted: Arc<Notify>,
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
            credentials_wanted: Arc::new(Notify::new()),
        })
    }

    /// Follows the inventory until `stop`; a changed device drops its cached
    /// SNMP credential, and the resolver is woken to fetch it again.
    pub fn spawn_follower(&self, stop: CancellationToken) {
        let scheduler = self.scheduler.clone();
        let resolver = self.credentials_wanted.clone();
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
                resolver.notify_one();
            },
            stop,
        ));
    }

    /// Resolves the SNMP credentials the plan waits for, off the scheduling
    /// loop, until `stop`: each call has a deadline (`RESOLVE_TIMEOUT`), a
    /// few run at once, and a failed one is retried with backoff (1 s
    /// doubling to 60 s). A resolved credential goes into the cache and
    /// bumps `credentials_generation`, so the next SNMP cycle plans its
    /// devices. Woken by inventory changes, and looks again every second.
    pub fn spawn_credential_resolver(self: &Arc<Self>, stop: CancellationToken) {
        let planner = self.clone();
        tokio::spawn(async move {
            let mut retries: HashMap<String, Retry> = HashMap::new();
            loop {
                planner.resolve_round(&mut retries).await;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = planner.credentials_wanted.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    /// One pass of the resolver: every missing credential whose retry is due.
    async fn resolve_round(&self, retries: &mut HashMap<String, Retry>) {
        let missing = self.scheduler.credentials_missing();
        retries.retain(|id, _| missing.binary_search(id).is_ok());
        let now = Instant::now();
        let due: Vec<String> = missing
            .into_iter()
            .filter(|id| retries.get(id).is_none_or(|retry| retry.at <= now))
            .collect();
        let outcomes: Vec<(String, Result<Option<v1::ResolvedCredential>, String>)> =
            futures::stream::iter(due)
                .map(|id| {
                    let mut client = self.inventory.clone();
                    async move {
                        let request = v1::ResolveCredentialRequest {
                            key: Some(v1::resolve_credential_request::Key::Id(id.clone())),
                        };
                        let outcome = match tokio::time::timeout(
                            RESOLVE_TIMEOUT,
                            client.resolve_credential(request),
                        )
                        .await
                        {
                            Ok(Ok(response)) => Ok(response.into_inner().credential),
                            Ok(Err(status)) => {
                                Err(format!("{:?}: {}", status.code(), status.message()))
                            }
                            Err(_) => Err(format!("no answer within {RESOLVE_TIMEOUT:?}")),
                        };
                        (id, outcome)
                    }
                })
                .buffer_unordered(RESOLVE_CONCURRENCY)
                .collect()
                .await;
        for (id, outcome) in outcomes {
            match outcome {
                Ok(Some(credential)) => {
                    retries.remove(&id);
                    self.scheduler.credential_failed(&id, false);
                    if let Ok(mut cache) = self.scheduler.credentials.lock() {
                        cache.insert(id, credential);
                    }
                    self.scheduler.credentials_changed();
                }
                Ok(None) | Err(_) => {
                    let reason = outcome
                        .err()
                        .unwrap_or_else(|| "no credential in the answer".into());
                    let retry = retries.entry(id.clone()).or_insert(Retry {
                        at: now,
                        backoff: RESOLVE_RETRY_MIN / 2,
                    });
                    retry.backoff = (retry.backoff * 2).min(RESOLVE_RETRY_MAX);
                    retry.at = Instant::now() + retry.backoff;
                    self.scheduler.credential_failed(&id, true);
                    metrics::counter!("netward_planner_credential_resolve_failures_total")
                        .increment(1);
                    tracing::warn!(
                        credential_id = %id,
                        %reason,
                        retry_in_s = retry.backoff.as_secs(),
                        "cannot resolve an SNMP credential; its devices wait"
                    );
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
                // Never waits on the inventory: credentials are the
                // resolver's. A cycle holds off a little (`CREDENTIAL_GRACE`)
                // for credentials on their first try, so a start or a new
                // device does not cost a whole SNMP interval.
                if now >= next_snmp
                    && (now >= next_snmp + CREDENTIAL_GRACE
                        || !self.scheduler.credentials_first_try())
                    && self
                        .scheduler
                        .open_cycle(v1::ExecutorKind::Snmp, now)
                        .is_some()
                {
                    next_snmp = next_due(next_snmp, config.snmp_interval, now);
                }
                self.scheduler.dispatch_due(Instant::now());
            }
            self.scheduler.check_timers(Instant::now());
        }
    }
}

/// Deadline of one `ResolveCredential` call: a hung inventory costs the
/// resolver this, and the scheduling loop nothing.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Credentials resolved at once.
const RESOLVE_CONCURRENCY: usize = 4;
/// Backoff of a credential that could not be resolved.
const RESOLVE_RETRY_MIN: Duration = Duration::from_secs(1);
const RESOLVE_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long an SNMP cycle waits, past its time, for credentials being
/// resolved for the first time; then it opens without their devices.
pub const CREDENTIAL_GRACE: Duration = Duration::from_secs(5);

/// When a credential is tried again.
struct Retry {
    at: Instant,
    backoff: Duration,
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
    let mut section: PlannerConfig = config.section()?;
    // Validated with the rest of `[auth]` when the config was loaded.
    section.grant_key = config
        .common
        .auth
        .grant_key
        .as_ref()
        .and_then(|key| GrantKey::parse(key).ok());
    if section.grant_key.is_none()
        && config
            .common
            .auth
            .tokens
            .iter()
            .any(|token| token.role == netward_shared::auth::Role::Executor)
    {
        tracing::warn!(
            "executor tokens are configured but auth.grant_key is not: assignments carry no \
             grant, and alerting refuses executor-token results without one"
        );
    }
    metrics_help::describe();
    let channel = connect(
        &config.common.inventory_url,
        &ClientOptions::from_config(&config.common),
    )?;
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
    let lease = lease.with_floor(planner.scheduler.epoch_floor.clone());
    let instance_id = lease.instance_id().to_string();
    let lease_rx = lease::spawn(lease, &section.lease, stop.clone());
    planner.spawn_follower(stop.clone());
    planner.spawn_credential_resolver(stop.clone());
    tokio::spawn(planner.clone().run_loop(lease_rx.clone(), stop.clone()));

    let mut released = lease_rx.clone();
    let audit = match &config.common.redis_url {
        Some(url) => PolicyAudit::redis(url.expose(), &section.lease.key_prefix)
            .map_err(lease::LeaseError::from)?,
        None => PolicyAudit::memory(),
    };
    let service = PlannerServiceServer::new(
        PlannerGrpc::new(planner.scheduler.clone(), lease_rx, instance_id, stop)
            .with_audit(audit)
            .with_ad_hoc_wait(
                config
                    .common
                    .server
                    .request_timeout
                    .saturating_sub(Duration::from_secs(1)),
            ),
    );
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

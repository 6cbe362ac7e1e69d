//! Alerting: stores results durably, owns each device's state, evaluates
//! rules, raises and resolves alerts, and delivers notifications.
//!
//! This version stores ping results and SNMP polls: `ingest.rs` turns each
//! `ResultBatch` into rows exactly once and acks after the commit; `store/`
//! keeps them packed in daily partitions with a retention, and `rollup.rs`
//! rolls them into one-minute and hourly tiers (SNMP interfaces: hourly
//! only). What is
//! stored is then evaluated through `backlog.rs` (state, then alerts, each
//! swapped into memory only after its commit, retried until it commits).
//! `service.rs` is the domain the API calls, with one error type;
//! `grpc.rs` adapts it to `AlertingService`.

pub mod access;
pub mod alerts;
pub mod availability;
pub mod backlog;
pub mod evaluate;
pub mod freshness;
mod grants;
mod grpc;
pub mod ingest;
pub mod live;
mod metrics_help;
pub mod notify;
mod overlay;
mod report;
pub mod retention;
pub mod rollup;
pub mod rules;
pub mod scope;
pub mod service;
pub mod silences;
pub mod snmp;
pub mod state;
pub mod store;
pub mod summary;
pub mod web;
pub mod window;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use netward_shared::auth::grant::GrantKey;
use netward_shared::config::{ConfigError, LoadedConfig, Target};
use netward_shared::proto::v1::alerting_service_server::AlertingServiceServer;
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};
use serde::Deserialize;

use crate::alerts::AlertEngine;
use crate::evaluate::Evaluator;
use crate::ingest::Ingestor;
use crate::state::{StateConfig, StateMachine};

pub use crate::grpc::AlertingGrpc;

/// The `[alerting]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AlertingConfig {
    /// How long raw probe results and SNMP polls are kept (whole days,
    /// daily partitions).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long one-minute rollups are kept (whole days, daily partitions).
    #[serde(with = "humantime_serde")]
    pub minute_rollup_retention: Duration,
    /// How long hourly rollups (and hourly interface rollups) are kept
    /// (monthly partitions: up to a month longer).
    #[serde(with = "humantime_serde")]
    pub hour_rollup_retention: Duration,
    /// How long state changes are kept: as far back as availability reports
    /// reach (ranges of up to 400 days). Each device keeps its last change
    /// before the cutoff, so the state at a range's start is still known.
    #[serde(with = "humantime_serde")]
    pub state_change_retention: Duration,
    /// How long resolved alerts (and ended silences) are kept.
    #[serde(with = "humantime_serde")]
    pub alert_retention: Duration,
    /// How long delivered or given-up notifications are kept once their
    /// alert is resolved; pending ones are kept until they are settled.
    #[serde(with = "humantime_serde")]
    pub notification_retention: Duration,
    /// The device state machine (`[alerting.state]`).
    pub state: StateConfig,
    /// Notification channels (`[alerting.notify]`: webhooks, Alertmanager).
    pub notify: notify::NotifyConfig,
    /// Interface classification patterns (`[alerting.interfaces]`).
    pub interfaces: snmp::classify::InterfacesConfig,
    /// How counter rates are judged (`[alerting.rates]`: poll interval, gaps).
    pub rates: snmp::rates::RateConfig,
    /// A device with no conclusive probe result for this long is stale
    /// (UNKNOWN if it was UP) and counted in a monitoring-gap alert. Unset:
    /// 3 ping intervals, as the planner reports its interval.
    #[serde(with = "humantime_serde::option")]
    pub stale_after: Option<Duration>,
    /// Stored results waiting for evaluation (a database error delays it)
    /// beyond which ingest stops acking, so executors keep and replay.
    pub evaluation_backlog: usize,
    /// Where the live status page listens (`--web-addr`), or `off`.
    pub web_addr: String,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 86_400),
            minute_rollup_retention: Duration::from_secs(30 * 86_400),
            hour_rollup_retention: Duration::from_secs(400 * 86_400),
            state_change_retention: Duration::from_secs(400 * 86_400),
            alert_retention: Duration::from_secs(400 * 86_400),
            notification_retention: Duration::from_secs(30 * 86_400),
            state: StateConfig::default(),
            notify: notify::NotifyConfig::default(),
            interfaces: snmp::classify::InterfacesConfig::default(),
            rates: snmp::rates::RateConfig::default(),
            stale_after: None,
            evaluation_backlog: backlog::DEFAULT_CAPACITY,
            web_addr: web::DEFAULT_WEB_ADDR.to_string(),
        }
    }
}

impl AlertingConfig {
    /// The retentions of the tables pruned row by row.
    pub fn retentions(&self) -> retention::Retentions {
        retention::Retentions {
            state_changes: self.state_change_retention,
            alerts: self.alert_retention,
            notifications: self.notification_retention,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "alerting needs a database URL, sqlite: or postgres: (--database-url or NETWARD_DATABASE_URL)"
    )]
    NoDatabase,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("invalid [alerting.state]: {0}")]
    State(#[from] state::InvalidStateConfig),
    #[error("inventory client: {0}")]
    Client(#[from] netward_shared::client::ClientError),
    #[error("redis: {0}")]
    Live(#[from] live::LiveError),
    #[error("invalid [alerting.notify]: {0}")]
    Notify(#[from] notify::InvalidNotifyConfig),
    #[error("invalid [alerting.interfaces]: {0}")]
    Interfaces(#[from] snmp::classify::InvalidInterfacesConfig),
    #[error("invalid [alerting.rates]: {0}")]
    Rates(#[from] snmp::rates::InvalidRateConfig),
    #[error("invalid retention: {0}")]
    Retention(#[from] retention::InvalidRetention),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Web(#[from] web::WebError),
    #[error("status page: {0}")]
    WebServer(std::io::Error),
}

/// The instant of a protobuf timestamp (negative nanos read as 0); `None`
/// when it is out of range.
pub(crate) fn from_timestamp(t: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
}

/// A protobuf timestamp of an instant (one helper for every module here).
pub(crate) fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// Brings silences to bear at `now`: the maintenance flag of every device
/// under an open maintenance window, the suppression of open alerts. Run
/// every few seconds (windows open and close by the clock) and right after
/// a silence changes. Waits for the first inventory snapshot, so a restart
/// does not clear every flag before the devices are known.
pub(crate) async fn apply_silences(
    evaluator: &Evaluator,
    alerts: &AlertEngine,
    copy: &netward_shared::inventory_copy::SharedCopy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let in_maintenance = {
        let copy = copy.read().unwrap_or_else(|p| p.into_inner());
        if !copy.synced {
            return Ok(());
        }
        alerts.silences().in_maintenance(&copy, now)
    };
    evaluator
        .apply_maintenance(&in_maintenance, now.into())
        .await?;
    alerts.refresh_suppression(now).await?;
    alerts.silences().prune(now);
    Ok(())
}

/// One freshness sweep at `now`: devices with no conclusive result for
/// `stale_after` are marked stale with their gap's cause, and the gaps are
/// raised or resolved as alerts. The metrics say how far behind the view is.
pub(crate) async fn sweep_freshness(
    evaluator: &Evaluator,
    alerts: &AlertEngine,
    copy: &netward_shared::inventory_copy::SharedCopy,
    view: &freshness::PlannerView,
    stale_after: Option<Duration>,
    now: std::time::SystemTime,
) -> Result<(), sqlx::Error> {
    if !copy.read().map(|c| c.synced).unwrap_or(false) {
        return Ok(());
    }
    let stale_after = stale_after.unwrap_or(view.interval() * 3);
    let fresh = evaluator.freshness(now, stale_after);
    metrics::gauge!("netward_alerting_monitored_devices").set(fresh.monitored as f64);
    metrics::gauge!("netward_alerting_stale_devices").set(fresh.stale.len() as f64);
    let oldest = fresh
        .oldest_result
        .and_then(|at| now.duration_since(at).ok())
        .unwrap_or_default();
    metrics::gauge!("netward_alerting_oldest_result_age_seconds").set(oldest.as_secs_f64());
    let fleet_open = alerts.gap_open(freshness::FLEET);
    let (gaps, reasons) = freshness::gaps(&fresh, copy, view, fleet_open, now);
    evaluator.mark_stale(&reasons, now).await?;
    // After the marking, so the counts include what this sweep made stale.
    for (state, count) in evaluator.state_counts() {
        metrics::gauge!("netward_alerting_devices", "state" => state.as_str()).set(count as f64);
    }
    alerts.on_gaps(&gaps, now.into()).await
}

/// Forgets the devices deleted from the inventory copy everywhere alerting
/// keeps them: the evaluator's memory and state row, the alert engine's
/// streaks and windows (their open alerts resolve, "device deleted from the
/// inventory"), the SNMP book's interfaces and polls. Only a synced copy
/// is trusted to say a device is gone. Returns the devices forgotten; on
/// an error the rest are found again by the next call.
pub async fn forget_deleted(
    evaluator: &Evaluator,
    alerts: &AlertEngine,
    snmp: &snmp::book::SnmpBook,
    copy: &netward_shared::inventory_copy::SharedCopy,
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    let mut held: std::collections::HashSet<uuid::Uuid> = snmp.device_ids();
    held.extend(evaluator.device_ids());
    held.extend(
        alerts
            .device_ids()
            .iter()
            .filter_map(|id| uuid::Uuid::parse_str(id).ok()),
    );
    let gone: Vec<uuid::Uuid> = {
        let copy = copy.read().unwrap_or_else(|p| p.into_inner());
        if !copy.synced {
            return Ok(Vec::new());
        }
        held.into_iter()
            .filter(|id| !copy.devices.contains_key(&id.to_string()))
            .collect()
    };
    if gone.is_empty() {
        return Ok(gone);
    }
    alerts.forget_devices(&gone).await?;
    snmp.forget_devices(&gone).await?;
    evaluator.forget(&gone).await?;
    tracing::info!(
        devices = gone.len(),
        "devices deleted from the inventory forgotten"
    );
    Ok(gone)
}

/// Runs `step` every `period` on a task of its own until `stop`; a failed
/// step is logged (`what` names it) and tried again at the next tick.
fn every<F, Fut>(
    period: Duration,
    stop: &tokio_util::sync::CancellationToken,
    what: &'static str,
    mut step: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), sqlx::Error>> + Send,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = step().await {
                tracing::warn!(%error, "{what} failed; retrying");
            }
        }
    });
}

/// How often the live fields of unchanged devices are written.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(600);

/// Runs the alerting target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    mut listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let section: AlertingConfig = config.section()?;
    metrics_help::describe();
    let url = config
        .common
        .database_url
        .as_ref()
        .ok_or(Error::NoDatabase)?;
    let retentions = section.retentions();
    retentions.validate()?;
    let stores = store::open(url.expose()).await?;
    let pruner = retention::Pruner::new(stores.results.clone(), retentions);
    let machine = StateMachine::new(section.state.clone())?;
    let copy: netward_shared::inventory_copy::SharedCopy = Default::default();
    section.rates.validate()?;
    let snmp = Arc::new(
        snmp::book::SnmpBook::load(
            stores.snmp.clone(),
            snmp::classify::Classifier::new(&section.interfaces)?,
            section.rates.clone(),
            copy.clone(),
        )
        .await?,
    );
    let ingestor = Arc::new(
        Ingestor::new(
            stores.results.clone(),
            section.retention,
            (
                section.minute_rollup_retention,
                section.hour_rollup_retention,
            ),
        )
        .with_snmp(snmp.clone())
        .with_inventory(copy.clone()),
    );
    ingestor.maintain(chrono::Utc::now()).await?;
    let notifier = Arc::new(notify::Notifier::new(
        stores.notifications.clone(),
        section.notify.clone(),
    )?);
    let alerts = Arc::new(AlertEngine::start(&stores, copy.clone(), Some(notifier.clone())).await?);
    // Live state goes to Redis when one is configured, else stays in process.
    let live = Arc::new(match &config.common.redis_url {
        Some(url) => live::LiveState::redis(url.expose(), live::DEFAULT_PREFIX)?,
        None => live::LiveState::memory(),
    });
    let evaluator = Arc::new(
        Evaluator::restore_with_live(machine, stores.results.clone(), copy.clone(), live).await?,
    );
    let backlog = Arc::new(backlog::Backlog::new(
        evaluator.clone(),
        alerts.clone(),
        section.evaluation_backlog,
    ));

    let server = GrpcServer::new(Target::Alerting, ServerOptions::from_config(&config.common));
    let stop = server.shutdown_token();
    tokio::spawn(notifier.clone().run(stop.clone()));
    // Names, sites and parents come from the inventory.
    let inventory =
        netward_shared::proto::v1::inventory_service_client::InventoryServiceClient::new(
            netward_shared::client::connect(
                &config.common.inventory_url,
                &netward_shared::client::ClientOptions::from_config(&config.common),
            )?,
        )
        .max_decoding_message_size(64 * 1024 * 1024);
    tokio::spawn(netward_shared::inventory_copy::follow(
        inventory,
        copy.clone(),
        |_| {},
        stop.clone(),
    ));
    // Children whose parent's result never came are judged when their hold
    // runs out; evaluation that failed is retried on the same tick.
    let holds = evaluator.clone();
    let holds_backlog = backlog.clone();
    let holds_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // Once the inventory copy has names, the live copy is rebuilt whole.
        tokio::time::sleep(Duration::from_secs(2)).await;
        holds.rebuild_live().await;
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                () = holds_stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let released = holds_backlog
                .release_expired(std::time::SystemTime::now())
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "evaluation or released holds failed; retrying");
            }
            ticks += 1;
            if ticks.is_multiple_of(20) {
                holds.retry_live().await;
            }
        }
    });
    // Never blind: follow the planner, and every second mark what has had
    // no result for `stale_after` and raise the monitoring gaps.
    let view: freshness::SharedView = Default::default();
    tokio::spawn(freshness::follow_planner(
        config.common.planner_url.clone(),
        netward_shared::client::ClientOptions::from_config(&config.common),
        view.clone(),
        stop.clone(),
    ));
    let stale_after = section.stale_after;
    every(Duration::from_secs(1), &stop, "freshness sweep", {
        let (evaluator, alerts, copy) = (evaluator.clone(), alerts.clone(), copy.clone());
        move || {
            let (evaluator, alerts, copy) = (evaluator.clone(), alerts.clone(), copy.clone());
            let snapshot = view.read().map(|v| v.clone()).unwrap_or_default();
            async move {
                let now = std::time::SystemTime::now();
                sweep_freshness(&evaluator, &alerts, &copy, &snapshot, stale_after, now).await
            }
        }
    });
    // Devices deleted from the inventory leave memory (and their open
    // alerts resolve) once the copy has moved on. Every few seconds, not on
    // each revision: a result evaluated after the delete (it was already
    // queued) brings a device back once.
    every(
        Duration::from_secs(5),
        &stop,
        "forgetting deleted devices",
        {
            let (evaluator, alerts, snmp, copy) = (
                evaluator.clone(),
                alerts.clone(),
                snmp.clone(),
                copy.clone(),
            );
            move || {
                let (evaluator, alerts, snmp, copy) = (
                    evaluator.clone(),
                    alerts.clone(),
                    snmp.clone(),
                    copy.clone(),
                );
                async move {
                    forget_deleted(&evaluator, &alerts, &snmp, &copy)
                        .await
                        .map(drop)
                }
            }
        },
    );
    // Silences and maintenance windows open and close by the clock.
    every(Duration::from_secs(5), &stop, "applying silences", {
        let (evaluator, alerts, copy) = (evaluator.clone(), alerts.clone(), copy.clone());
        move || {
            let (evaluator, alerts, copy) = (evaluator.clone(), alerts.clone(), copy.clone());
            async move { apply_silences(&evaluator, &alerts, &copy, chrono::Utc::now()).await }
        }
    });
    // Partitions ahead, retention behind: hourly. Partitions were made
    // before serving; pruning starts here, off the start-up path, since a
    // first pass over a long-kept history may take a while.
    let maintained = ingestor.clone();
    let maintenance_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.tick().await;
        loop {
            // Each batch is its own statement: stopping between or inside
            // them leaves nothing half done.
            tokio::select! {
                () = maintenance_stop.cancelled() => return,
                pruned = pruner.prune(chrono::Utc::now()) => {
                    if let Err(error) = pruned {
                        tracing::warn!(%error, "pruning past the retention failed; retrying in an hour");
                    }
                }
            }
            tokio::select! {
                () = maintenance_stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = maintained.maintain(chrono::Utc::now()).await {
                tracing::warn!(%error, "partition maintenance failed; retrying in an hour");
            }
        }
    });
    // Live fields of devices whose state did not change: every 10 minutes
    // (and at shutdown, below), not one row update per result.
    every(CHECKPOINT_EVERY, &stop, "checkpointing device state", {
        let evaluator = evaluator.clone();
        move || {
            let evaluator = evaluator.clone();
            async move { evaluator.checkpoint().await.map(drop) }
        }
    });
    // The interface view's rates and counters: every 10 minutes (and at
    // shutdown), not a row per interface and poll.
    every(CHECKPOINT_EVERY, &stop, "checkpointing interfaces", {
        let snmp = snmp.clone();
        move || {
            let snmp = snmp.clone();
            async move { snmp.checkpoint().await.map(drop) }
        }
    });
    // Raw results into the tiers: every minute, off the ingest path.
    every(Duration::from_secs(60), &stop, "rolling results up", {
        let roller =
            Arc::new(rollup::Roller::new(stores.results.clone()).with_snmp(stores.snmp.clone()));
        move || {
            let roller = roller.clone();
            async move { roller.run(chrono::Utc::now()).await.map(drop) }
        }
    });
    let checkpointed = evaluator.clone();
    let interfaces = snmp.clone();
    let alerting = Arc::new(
        service::Alerting::new(ingestor, evaluator, alerts, backlog, notifier, snmp, copy)
            .with_audit(stores.audit.clone()),
    );
    let grant_key = config
        .common
        .auth
        .grant_key
        .as_ref()
        .and_then(|key| GrantKey::parse(key).ok());
    // The status page: a client of the gRPC listener below, with each
    // user's token; it stops with the gRPC server.
    let web = match listeners.web.take() {
        Some(listener) => {
            let web = web::Web::new(config, listeners.grpc_addr(), stop.clone())?;
            let web_addr = listener.local_addr().map_err(Error::WebServer)?;
            tracing::info!(%web_addr, url = %format!("http://{web_addr}/"), "status page serving");
            Some(tokio::spawn(web::serve(
                listener,
                web,
                stop.clone().cancelled_owned(),
            )))
        }
        None => None,
    };
    let service =
        AlertingServiceServer::new(AlertingGrpc::new(alerting, stop).with_grant_key(grant_key))
            .max_decoding_message_size(64 * 1024 * 1024);
    server
        .add_service(service)
        .serve(listeners, shutdown)
        .await?;
    if let Some(web) = web {
        match web.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(Error::WebServer(error)),
            Err(error) => tracing::error!(%error, "status page task failed"),
        }
    }
    // What memory holds beyond the last checkpoint, before the process goes.
    match checkpointed.checkpoint().await {
        Ok(rows) => tracing::info!(rows, "device state checkpointed at shutdown"),
        Err(error) => {
            tracing::warn!(%error, "device state checkpoint at shutdown failed: counters resume from the last one")
        }
    }
    match interfaces.checkpoint().await {
        Ok(rows) => tracing::info!(rows, "interfaces checkpointed at shutdown"),
        Err(error) => {
            tracing::warn!(%error, "interface checkpoint at shutdown failed: each interface's first rate after the restart is skipped")
        }
    }
    Ok(())
}

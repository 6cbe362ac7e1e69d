//! Alerting's storage: a trait per aggregate (probe results and states
//! here, rules and alerts, the notification outbox, silences, SNMP polls in
//! files of their own), a PostgreSQL implementation of them all (schema
//! `alerting`) and a SQLite one for the embedded default. Writes are
//! batched and idempotent; the service decides, the store persists.

mod alerts;
mod notifications;
pub mod postgres;
mod silences;
mod snmp;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use netward_shared::proto::v1;

pub use alerts::{AlertNotification, AlertStore, AlertWrite, NotifyWhen};
pub use notifications::{
    Attempt, ClaimedNotification, DeliveryState, NewNotification, NotificationStore,
};
pub use postgres::PgStore;
pub use silences::{SilenceRow, SilenceStore};
pub use snmp::{
    CurrentInterface, InterfaceMemory, InterfaceRollup, InterfaceSampleRow, SampleRef, SnmpBatch,
    SnmpDeviceRow, SnmpDeviceWrite, SnmpStore,
};
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// Stored protobuf bodies decoded, a body that no longer decodes skipped
/// (both backends read messages this way).
fn decode_all<M: prost::Message + Default>(bodies: &[Vec<u8>]) -> Vec<M> {
    bodies
        .iter()
        .filter_map(|b| M::decode(b.as_slice()).ok())
        .collect()
}

/// An id the service handed over as text; the nil UUID when it is not one.
fn uuid_of(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

/// A u64 counter bit for bit in a signed 64-bit column (bigint, INTEGER).
fn bits(value: Option<u64>) -> Option<i64> {
    value.map(|v| v as i64)
}

/// Every store alerting needs, one per aggregate; one backend behind all.
#[derive(Clone)]
pub struct Stores {
    pub results: Arc<dyn AlertingStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub silences: Arc<dyn SilenceStore>,
    pub snmp: Arc<dyn SnmpStore>,
}

impl Stores {
    /// Every store on one PostgreSQL pool.
    pub fn postgres(store: PgStore) -> Self {
        let store = Arc::new(store);
        Self {
            results: store.clone(),
            alerts: store.clone(),
            notifications: store.clone(),
            silences: store.clone(),
            snmp: store,
        }
    }

    /// Every store on one SQLite file.
    pub fn sqlite(store: SqliteStore) -> Self {
        let store = Arc::new(store);
        Self {
            results: store.clone(),
            alerts: store.clone(),
            notifications: store.clone(),
            silences: store.clone(),
            snmp: store,
        }
    }
}

/// Why [`open`] could not give the stores.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database URL scheme {0:?}: use sqlite: or postgres: (postgresql:)")]
    UnsupportedScheme(String),
}

/// Connects (and migrates) the backend the URL names by its scheme:
/// `postgres:`/`postgresql:` for PostgreSQL, `sqlite:` for SQLite.
pub async fn open(url: &str) -> Result<Stores, OpenError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => Ok(Stores::postgres(PgStore::connect(url).await?)),
        "sqlite" => Ok(Stores::sqlite(SqliteStore::connect(url).await?)),
        _ => Err(OpenError::UnsupportedScheme(scheme.to_string())),
    }
}

/// One batch's probe rows, for a group written in one transaction.
pub struct BatchRows<'a> {
    pub batch_uid: &'a str,
    pub executor_id: &'a str,
    pub rows: &'a [ProbeRow],
}

/// What storing one `ResultBatch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    /// Probe rows written (0 for a duplicate).
    pub rows: u32,
    /// The batch's `batch_uid` was stored before: nothing was written.
    pub duplicate: bool,
}

/// A probe result ready to store: ids parsed, times settled.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub device_id: uuid::Uuid,
    pub probed_at: DateTime<Utc>,
    pub result: v1::ProbeResult,
}

/// A device's current state as stored.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub device_id: uuid::Uuid,
    pub state: v1::DeviceState,
    pub since: DateTime<Utc>,
    pub reason: String,
    pub maintenance: bool,
    pub last_probe_at: Option<DateTime<Utc>>,
    pub last_outcome: i32,
    pub last_loss_percent: Option<f64>,
    pub last_rtt_avg_us: Option<u32>,
    pub last_cycle_id: u64,
    pub consecutive_failures: u32,
    /// The state machine's memory, as JSON.
    pub memory: serde_json::Value,
    /// No conclusive result for `stale_after` (from the memory, not a column).
    pub stale: bool,
    /// When the last conclusive result arrived (from the memory, not a column).
    pub last_result_at: Option<DateTime<Utc>>,
}

impl StateRow {
    /// A device alerting has no result for yet: UNKNOWN since `since`.
    pub fn unknown(device_id: uuid::Uuid, since: DateTime<Utc>) -> Self {
        Self {
            device_id,
            state: v1::DeviceState::Unknown,
            since,
            reason: "never probed".into(),
            maintenance: false,
            last_probe_at: None,
            last_outcome: 0,
            last_loss_percent: None,
            last_rtt_avg_us: None,
            last_cycle_id: 0,
            consecutive_failures: 0,
            memory: serde_json::Value::Null,
            stale: false,
            last_result_at: None,
        }
    }
}

/// One state transition.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub device_id: uuid::Uuid,
    pub from: v1::DeviceState,
    pub to: v1::DeviceState,
    pub maintenance: bool,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
    pub cycle_id: u64,
    /// From here on the device had no fresh result (unmonitored time).
    pub stale: bool,
}

/// A table pruned row by row, in batches (the raw tables go by partition,
/// see [`AlertingStore::expire`]). Each names what "older than the cutoff"
/// means for it and what is never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    /// Transitions before the cutoff, except each device's newest one
    /// before it: that row is the device's state at the cutoff, which
    /// availability over a range starting later still needs.
    StateChanges,
    /// Resolved alerts, by `resolved_at`; open alerts never.
    Alerts,
    /// Delivered or given-up notifications, by `created_at`, once their
    /// alert is resolved or gone; pending rows never (they are still to be
    /// sent), nor the rows of an open alert (its resolve is sent only when
    /// its firing row is there).
    Notifications,
    /// Silences and windows that ended before the cutoff.
    Silences,
    /// `ingested_batches` keys received before the cutoff.
    IdempotencyKeys,
    /// One-minute probe rollups before the cutoff.
    ProbeRollups,
    /// Hourly interface rollups before the cutoff.
    InterfaceRollups,
}

impl Prunable {
    /// The table, as metrics and logs name it.
    pub fn table(self) -> &'static str {
        match self {
            Prunable::StateChanges => "state_changes",
            Prunable::Alerts => "alerts",
            Prunable::Notifications => "notification_outbox",
            Prunable::Silences => "silences",
            Prunable::IdempotencyKeys => "ingested_batches",
            Prunable::ProbeRollups => "probe_rollups",
            Prunable::InterfaceRollups => "interface_rollups",
        }
    }
}

/// Rows deleted per statement when nothing else is asked for: small enough
/// that no statement holds its locks for long.
pub const PRUNE_BATCH: u32 = 10_000;

/// What pruning one table did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub rows: u64,
    /// Statements run (the last one deleted fewer than the batch size).
    pub batches: u32,
}

/// One step of a device's history, summed from its one-minute rollups.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub time: DateTime<Utc>,
    pub probes: u32,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub rtt_min_us: Option<u32>,
    pub rtt_avg_us: Option<u32>,
    pub rtt_max_us: Option<u32>,
}

#[async_trait]
pub trait AlertingStore: Send + Sync + 'static {
    /// A device's rollups in [from, to), summed per `step_seconds` (≥ 60).
    async fn history(
        &self,
        device_id: uuid::Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<HistoryRow>>;
    /// Upserts current states and appends transitions, in one transaction.
    async fn save_states(&self, states: &[StateRow], changes: &[ChangeRow]) -> StoreResult<()>;
    /// Deletes the current-state rows of devices gone from the inventory
    /// (their transitions stay: reports still cover their past).
    async fn forget_states(&self, devices: &[uuid::Uuid]) -> StoreResult<()>;
    /// Every stored state (to rebuild memory at start, and for queries).
    async fn states(&self) -> StoreResult<Vec<StateRow>>;
    /// A device's transitions within [from, to), oldest first.
    async fn changes(
        &self,
        device_id: uuid::Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<ChangeRow>>;
    /// A device's last transition before `at`, however old (the state at
    /// `at`).
    async fn last_change_before(
        &self,
        device_id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<ChangeRow>>;
    /// Stores the rows and rollups of a group of batches in one
    /// transaction, each batch unless its `batch_uid` was stored before
    /// (then its `Stored` says duplicate). Partitions for the rows' days
    /// must exist.
    async fn store_probe_batches(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>>;
    /// Creates the daily partitions of `days` that do not exist yet.
    async fn ensure_partitions(&self, days: &[NaiveDate]) -> StoreResult<()>;
    /// The days that have a partition.
    async fn partitions(&self) -> StoreResult<Vec<NaiveDate>>;
    /// Drops raw partitions older than `before`, idempotency keys a day
    /// older than that, and rollups older than `rollups_before`; returns
    /// the dropped days. A key outlives its batch's rows, so a replay that
    /// no longer finds its key only carries results older than the
    /// retention, which ingest skips: nothing is stored twice.
    async fn expire(
        &self,
        before: NaiveDate,
        rollups_before: DateTime<Utc>,
    ) -> StoreResult<Vec<NaiveDate>>;
    /// Deletes at most `limit` rows of `what` older than `cutoff`, in one
    /// short statement; returns how many went.
    async fn prune_batch(
        &self,
        what: Prunable,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Deletes every row of `what` older than `cutoff`, `limit` rows per
    /// statement (each its own transaction), counting them in
    /// `alerting_rows_pruned_total`.
    async fn prune(
        &self,
        what: Prunable,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Pruned> {
        let limit = limit.max(1);
        let mut pruned = Pruned::default();
        loop {
            let rows = self.prune_batch(what, cutoff, limit).await?;
            pruned.rows += rows;
            pruned.batches += 1;
            metrics::counter!("alerting_rows_pruned_total", "table" => what.table())
                .increment(rows);
            if rows < u64::from(limit) {
                return Ok(pruned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_dispatches_on_the_scheme() {
        let file = std::env::temp_dir().join(format!(
            "netward-alerting-open-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let sqlite = open(&format!("sqlite://{}", file.display())).await;
        assert!(sqlite.is_ok(), "{:?}", sqlite.err());
        drop(sqlite);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        let other = open("mysql://localhost/alerting").await.err();
        assert!(
            matches!(&other, Some(OpenError::UnsupportedScheme(s)) if s == "mysql"),
            "{other:?}"
        );
        let message = other.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("sqlite:") && message.contains("postgres:"));
    }
}

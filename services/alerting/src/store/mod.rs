//! Alerting's storage: a trait per aggregate (probe results and states
//! here, rules and alerts, the notification outbox, silences, SNMP polls in
//! files of their own), a PostgreSQL implementation of them all (schema
//! `alerting`) and a SQLite one for the embedded default. Writes are
//! batched and idempotent; the service decides, the store persists.

mod alerts;
mod audit;
mod notifications;
pub mod packed;
pub mod packed_snmp;
pub mod postgres;
mod silences;
mod snmp;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use netward_shared::proto::v1;

use crate::availability::Transition;

pub use alerts::{AlertNotification, AlertStore, AlertWrite, NotifyWhen};
pub use audit::AuditStore;
pub use notifications::{
    Attempt, ClaimedNotification, DeliveryState, NewNotification, NotificationStore,
};
pub use packed::{Agg, RawResult};
pub use packed_snmp::{InterfaceAgg, InterfaceHours, InterfaceSampleRow};
pub use postgres::PgStore;
pub use silences::{SilenceRow, SilenceStore};
pub use snmp::{
    CurrentInterface, INTERFACE_HOURS, InterfaceMemory, InterfaceRollupRow, PollRow, SampleRef,
    SnmpBatch, SnmpDeviceRow, SnmpDeviceWrite, SnmpStore, StoredPoll, history_point,
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

/// Every store alerting needs, one per aggregate; one backend behind all.
#[derive(Clone)]
pub struct Stores {
    pub results: Arc<dyn AlertingStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub silences: Arc<dyn SilenceStore>,
    pub snmp: Arc<dyn SnmpStore>,
    pub audit: Arc<dyn AuditStore>,
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
            snmp: store.clone(),
            audit: store,
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
            snmp: store.clone(),
            audit: store,
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

/// One step of a device's history, summed from the finest tier that
/// covers it.
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

impl HistoryRow {
    fn of(time: DateTime<Utc>, agg: &Agg) -> Self {
        Self {
            time,
            probes: agg.probes,
            packets_sent: agg.packets_sent,
            packets_received: agg.packets_received,
            rtt_min_us: agg.rtt_min_us,
            rtt_avg_us: agg.rtt_avg_us(),
            rtt_max_us: agg.rtt_max_us,
        }
    }
}

/// The rollup tiers, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// One-minute entries, a row per device and 10-minute block; daily
    /// partitions.
    Minute,
    /// Hourly entries, a row per device and UTC day; monthly partitions.
    Hour,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Minute, Tier::Hour];

    /// The table, as metrics, logs and the progress marks name it.
    pub fn table(self) -> &'static str {
        match self {
            Tier::Minute => "probe_rollups_1m",
            Tier::Hour => "probe_rollups_1h",
        }
    }

    /// The span of one entry.
    pub fn entry(self) -> TimeDelta {
        match self {
            Tier::Minute => TimeDelta::minutes(1),
            Tier::Hour => TimeDelta::hours(1),
        }
    }

    /// The span of one row (its entries' slots count from its start).
    pub fn row(self) -> TimeDelta {
        match self {
            Tier::Minute => TimeDelta::minutes(packed::BLOCK_MINUTES),
            Tier::Hour => TimeDelta::days(1),
        }
    }

    /// The start of the row `at` falls in.
    pub fn row_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.row()).unwrap_or(at)
    }

    /// The slot of `at` within its row.
    pub fn slot_of(self, at: DateTime<Utc>) -> u8 {
        let into = at - self.row_of(at);
        (into.num_seconds() / self.entry().num_seconds()).clamp(0, 255) as u8
    }
}

/// One rollup row: a device's entries over one row span of a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    pub device_id: uuid::Uuid,
    /// The start of the row's span.
    pub start: DateTime<Utc>,
    /// (slot, sums), slots ascending.
    pub entries: Vec<(u8, Agg)>,
}

/// A raw row as read back: its start and packed bytes.
#[derive(Debug, Clone)]
pub struct StoredRaw {
    pub probed_at: DateTime<Utc>,
    pub devices: Vec<u8>,
    pub results: Vec<u8>,
}

impl StoredRaw {
    /// Its results (`device`'s only, when given); a damaged row is logged
    /// and read as empty, not an error for the whole range.
    pub fn results(&self, device: Option<uuid::Uuid>) -> Vec<RawResult> {
        packed::unpack_results(self.probed_at, &self.devices, &self.results, device).unwrap_or_else(
            |error| {
                tracing::error!(%error, probed_at = %self.probed_at, "skipping a damaged raw row");
                Vec::new()
            },
        )
    }
}

/// Where each kind of stored result ends: what [`AlertingStore::expire`]
/// drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Raw partitions of days before this one.
    pub raw_before: NaiveDate,
    /// Idempotency keys received before this instant.
    pub keys_before: DateTime<Utc>,
    /// One-minute rollup partitions of days before this one.
    pub minute_before: NaiveDate,
    /// Hourly rollup partitions (months) that end on or before this day:
    /// probes' and interfaces'.
    pub hour_before: NaiveDate,
}

impl Cutoffs {
    /// Raw results (and SNMP polls) of days before `day` only, their
    /// idempotency keys a day later; no rollup.
    pub fn raw_only(day: NaiveDate) -> Self {
        Self {
            raw_before: day,
            keys_before: day
                .pred_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(DateTime::UNIX_EPOCH, |t| t.and_utc()),
            minute_before: NaiveDate::MIN,
            hour_before: NaiveDate::MIN,
        }
    }
}

#[async_trait]
pub trait AlertingStore: Send + Sync + 'static {
    /// A device's history in [from, to), summed per `step_seconds` (≥ 60)
    /// from the finest tier that covers each part: hourly entries before
    /// the one-minute tier's floor, one-minute entries up to its progress
    /// mark, raw results after it.
    async fn history(
        &self,
        device_id: uuid::Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<HistoryRow>> {
        let step = step_seconds.max(60);
        let bucket = |at: DateTime<Utc>| {
            let secs = at.timestamp().div_euclid(step) * step;
            DateTime::from_timestamp(secs, 0).unwrap_or(at)
        };
        let mut buckets: BTreeMap<DateTime<Utc>, Agg> = BTreeMap::new();
        let mut add = |at: DateTime<Utc>, agg: &Agg| {
            if at >= from && at < to {
                buckets.entry(bucket(at)).or_default().merge(agg);
            }
        };
        // The one-minute tier holds [floor, mark); raw results the rest.
        // Without rows the one-minute tier starts at its mark: what lies
        // before was dropped from it (the hourly tier has it).
        let mark = self.rollup_mark(Tier::Minute).await?;
        let floor = match self.tier_floor(Tier::Minute).await? {
            Some(floor) => Some(floor),
            None => mark,
        };
        let minute_from = floor.map_or(from, |f| f.clamp(from, to.max(from)));
        if minute_from > from {
            for row in self
                .rollups(
                    Tier::Hour,
                    Some(device_id),
                    Tier::Hour.row_of(from),
                    minute_from,
                    None,
                    u32::MAX,
                )
                .await?
            {
                for (slot, agg) in &row.entries {
                    let at = row.start + Tier::Hour.entry() * i32::from(*slot);
                    if at < minute_from {
                        add(at, agg);
                    }
                }
            }
        }
        let raw_from = mark.map_or(minute_from, |m| m.clamp(minute_from, to.max(minute_from)));
        if raw_from > minute_from {
            for row in self
                .rollups(
                    Tier::Minute,
                    Some(device_id),
                    Tier::Minute.row_of(minute_from),
                    raw_from,
                    None,
                    u32::MAX,
                )
                .await?
            {
                for (slot, agg) in &row.entries {
                    let at = row.start + Tier::Minute.entry() * i32::from(*slot);
                    if at >= minute_from && at < raw_from {
                        add(at, agg);
                    }
                }
            }
        }
        if to > raw_from {
            // A raw row starts at most a block before its results.
            let rows_from = packed::block_of(raw_from);
            for row in self.raw_rows(rows_from, to, Some(device_id)).await? {
                for result in row.results(Some(device_id)) {
                    if result.probed_at >= raw_from {
                        let minute = Tier::Minute.row_of(result.probed_at);
                        let minute = minute
                            + Tier::Minute.entry()
                                * i32::from(Tier::Minute.slot_of(result.probed_at));
                        let mut agg = Agg::default();
                        agg.add(&result);
                        add(minute, &agg);
                    }
                }
            }
        }
        Ok(buckets
            .iter()
            .map(|(time, agg)| HistoryRow::of(*time, agg))
            .collect())
    }
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
    /// The state of each of `devices` at `at`: its last transition before
    /// `at`, however old, as [`AlertingStore::last_change_before`] gives it
    /// for one device; a device without one is left out. One statement.
    async fn states_at(
        &self,
        devices: &[uuid::Uuid],
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<(uuid::Uuid, Transition)>>;
    /// Every transition of `devices` within [from, to), in time order (ties
    /// by insertion, so each device's come as [`AlertingStore::changes`]
    /// gives them), handed to `visit` as they are read: one statement, and
    /// only the row at hand in memory however long the range. Returns how
    /// many were read.
    async fn scan_changes(
        &self,
        devices: &[uuid::Uuid],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        visit: &mut (dyn FnMut(uuid::Uuid, Transition) + Send),
    ) -> StoreResult<u64>;
    /// Stores the results of a group of batches in one transaction, packed
    /// (see [`packed`]), each batch unless its `batch_uid` was stored
    /// before (then its `Stored` says duplicate). Partitions for the rows'
    /// days must exist.
    async fn store_probe_batches(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>>;
    /// The raw rows whose start lies in [from, to) (a row spans at most
    /// one 10-minute block), with `device` only those holding its results.
    async fn raw_rows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        device: Option<uuid::Uuid>,
    ) -> StoreResult<Vec<StoredRaw>>;
    /// The start of the first raw row at or after `from`.
    async fn raw_from(&self, from: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>>;
    /// Up to where `tier` is complete (its rows before are final).
    async fn rollup_mark(&self, tier: Tier) -> StoreResult<Option<DateTime<Utc>>>;
    async fn set_rollup_mark(&self, tier: Tier, until: DateTime<Utc>) -> StoreResult<()>;
    /// Where `tier`'s rows begin (its oldest partition or row).
    async fn tier_floor(&self, tier: Tier) -> StoreResult<Option<DateTime<Utc>>>;
    /// Writes rollup rows, replacing rows of the same device and start.
    async fn put_rollups(&self, tier: Tier, rows: &[RollupRow]) -> StoreResult<()>;
    /// Rollup rows starting in [from, to), by device then start, `device`'s
    /// only when given, after the (device, start) key `after`, at most
    /// `limit`.
    async fn rollups(
        &self,
        tier: Tier,
        device: Option<uuid::Uuid>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(uuid::Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<RollupRow>>;
    /// Notes results stored into blocks already rolled up: (block start,
    /// device), to roll again.
    async fn mark_late(&self, late: &[(DateTime<Utc>, uuid::Uuid)]) -> StoreResult<()>;
    /// The noted late (block, device) pairs.
    async fn late(&self) -> StoreResult<Vec<(DateTime<Utc>, uuid::Uuid)>>;
    /// Forgets late pairs once rolled again.
    async fn clear_late(&self, done: &[(DateTime<Utc>, uuid::Uuid)]) -> StoreResult<()>;
    /// Creates the partitions of `days` that do not exist yet: raw and
    /// one-minute tier days, and the hourly tier's months.
    async fn ensure_partitions(&self, days: &[NaiveDate]) -> StoreResult<()>;
    /// The days that have a raw partition.
    async fn partitions(&self) -> StoreResult<Vec<NaiveDate>>;
    /// Drops what lies past `cutoffs` — raw (probe results and SNMP
    /// polls), one-minute and hourly (probes' and interfaces') partitions
    /// whole, idempotency keys in small batches — and returns the raw days
    /// dropped. Keys outlive their
    /// batch's rows, so a replay that no longer finds its key only carries
    /// results older than the retention, which ingest skips: nothing is
    /// stored twice.
    async fn expire(&self, cutoffs: Cutoffs) -> StoreResult<Vec<NaiveDate>>;
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
    /// `netward_alerting_rows_pruned_total`.
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
            metrics::counter!("netward_alerting_rows_pruned_total", "table" => what.table())
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

//! SNMP polls as stored: a packed row per device and poll (its outcome,
//! scalar values and every interface, see `packed_snmp`), the hourly
//! interface tier (a packed row per device and UTC day, rolled up by
//! `rollup::Roller`), and the current view (each interface's last status
//! and sample, each device's last poll).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use netward_shared::proto::v1;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreResult;
use super::packed_snmp::{self, InterfaceAgg, InterfaceHours, InterfaceSampleRow};

/// The hourly interface tier's name in `rollup_marks`, logs and metrics.
pub const INTERFACE_HOURS: &str = "interface_rollups_1h";

/// What rate and flap arithmetic needs of an interface besides its last
/// raw sample (stored as JSON beside it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceMemory {
    /// When the last sample was polled (µs since the epoch) and the
    /// device's sysUpTime then: the clock of the next rate.
    pub polled_at_us: i64,
    pub uptime_ticks: Option<u32>,
    /// Instants (µs) of oper-status changes within the flap memory.
    pub oper_changes_us: Vec<i64>,
}

/// An interface in the current view.
#[derive(Debug, Clone)]
pub struct CurrentInterface {
    pub device_id: Uuid,
    pub if_index: u32,
    pub status: v1::InterfaceStatus,
    /// The sample the next rates are computed against.
    pub sample: v1::InterfaceSample,
    pub memory: InterfaceMemory,
}

/// A device's last poll, as loaded.
#[derive(Debug, Clone)]
pub struct SnmpDeviceRow {
    pub device_id: Uuid,
    /// The last answered poll and its sysUpTime.
    pub polled_at: DateTime<Utc>,
    pub uptime_ticks: Option<u32>,
    pub last_reboot_at: Option<DateTime<Utc>>,
    /// The outcome of the last poll, answered or not.
    pub outcome: i32,
    /// The last poll's error detail.
    pub detail: String,
}

/// A device's last poll, as written.
#[derive(Debug, Clone)]
pub struct SnmpDeviceWrite {
    pub device_id: Uuid,
    pub polled_at: DateTime<Utc>,
    pub uptime_ticks: Option<u32>,
    pub last_reboot_at: Option<DateTime<Utc>>,
    pub outcome: i32,
    /// The last poll's error detail.
    pub detail: String,
    /// Of the batch's last sample of the device; empty keeps the stored one.
    pub sys_object_id: String,
    pub profile: String,
}

/// A polled sample as ingest hands it over: device, when, and the sample.
pub type SampleRef<'a> = (Uuid, DateTime<Utc>, &'a v1::SnmpSample);

/// One poll of one device as written: the sample (its outcome and scalar
/// values are packed from it) and its interfaces at the stored precision.
#[derive(Debug, Clone)]
pub struct PollRow<'a> {
    pub device_id: Uuid,
    pub polled_at: DateTime<Utc>,
    pub sample: &'a v1::SnmpSample,
    pub interfaces: Vec<InterfaceSampleRow>,
}

/// The interfaces of one stored poll, packed.
#[derive(Debug, Clone)]
pub struct StoredPoll {
    pub device_id: Uuid,
    pub polled_at: DateTime<Utc>,
    pub interfaces: Vec<u8>,
}

impl StoredPoll {
    /// Its interfaces; a damaged row is logged and read as empty, not an
    /// error for the whole range.
    pub fn interfaces(&self) -> Vec<InterfaceSampleRow> {
        packed_snmp::unpack_interfaces(&self.interfaces).unwrap_or_else(|error| {
            tracing::error!(%error, device_id = %self.device_id, polled_at = %self.polled_at, "skipping a damaged SNMP poll row");
            Vec::new()
        })
    }
}

/// One device's interface hours over one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRollupRow {
    pub device_id: Uuid,
    /// Midnight UTC.
    pub start: DateTime<Utc>,
    pub interfaces: Vec<InterfaceHours>,
}

/// Everything one SNMP batch writes, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct SnmpBatch<'a> {
    pub batch_uid: &'a str,
    pub executor_id: &'a str,
    pub polls: &'a [PollRow<'a>],
    /// The interfaces' new current view.
    pub interfaces: &'a [CurrentInterface],
    pub devices: &'a [SnmpDeviceWrite],
}

/// A point of interface history from the sums of its bucket.
pub fn history_point(time: DateTime<Utc>, agg: &InterfaceAgg) -> v1::InterfaceHistoryPoint {
    let mean = |sum: u64| (agg.rate_samples > 0).then(|| sum as f64 / f64::from(agg.rate_samples));
    let count = |delta: i64| delta.max(0) as u64;
    let percent = |hundredths: Option<u32>| hundredths.map(|h| f64::from(h) / 100.0);
    v1::InterfaceHistoryPoint {
        time: Some(crate::timestamp(time)),
        sample_count: agg.samples,
        in_bps_avg: mean(agg.in_bps_sum),
        in_bps_max: agg.in_bps_max.map(|v| v as f64),
        out_bps_avg: mean(agg.out_bps_sum),
        out_bps_max: agg.out_bps_max.map(|v| v as f64),
        in_utilisation_max_percent: percent(agg.in_utilisation_max),
        out_utilisation_max_percent: percent(agg.out_utilisation_max),
        in_errors: count(agg.deltas[0]),
        out_errors: count(agg.deltas[1]),
        in_discards: count(agg.deltas[2]),
        out_discards: count(agg.deltas[3]),
        oper_up_percent: if agg.samples > 0 {
            100.0 * f64::from(agg.oper_up) / f64::from(agg.samples)
        } else {
            0.0
        },
    }
}

/// SNMP interfaces, polls and rates.
#[async_trait]
pub trait SnmpStore: Send + Sync + 'static {
    /// The current view of every interface.
    async fn current_interfaces(&self) -> StoreResult<Vec<CurrentInterface>>;
    /// Every device's last poll.
    async fn snmp_devices(&self) -> StoreResult<Vec<SnmpDeviceRow>>;
    /// Stores a batch unless its `batch_uid` was stored before; false for
    /// such a duplicate (nothing written). A poll of a device at an instant
    /// already stored is not stored again. Partitions for the polls' days
    /// must exist.
    async fn store_snmp_batch(&self, batch: SnmpBatch<'_>) -> StoreResult<bool>;
    /// Upserts view rows (the book's checkpoint).
    async fn save_interfaces(&self, interfaces: &[CurrentInterface]) -> StoreResult<()>;
    /// The interfaces of the polls in [from, to), by device then time,
    /// `device`'s only when given, after the (device, polled_at) key
    /// `after`, at most `limit`.
    async fn interface_polls(
        &self,
        device: Option<Uuid>,
        range: (DateTime<Utc>, DateTime<Utc>),
        after: Option<(Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredPoll>>;
    /// The days raw polls are kept for (their partitions exist), as
    /// midnights, oldest first.
    async fn snmp_raw_days(&self) -> StoreResult<Vec<DateTime<Utc>>>;
    /// Hourly rows (a device and day each) starting in [from, to), by
    /// device then day, `device`'s only when given, after the (device,
    /// start) key `after`, at most `limit`.
    async fn interface_rollups(
        &self,
        device: Option<Uuid>,
        range: (DateTime<Utc>, DateTime<Utc>),
        after: Option<(Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<InterfaceRollupRow>>;
    /// Writes hourly rows, replacing rows of the same device and day.
    /// Their months' partitions must exist.
    async fn put_interface_rollups(&self, rows: &[InterfaceRollupRow]) -> StoreResult<()>;
    /// Up to where the hourly tier is complete (its rows before are final).
    async fn interface_mark(&self) -> StoreResult<Option<DateTime<Utc>>>;
    async fn set_interface_mark(&self, until: DateTime<Utc>) -> StoreResult<()>;
    /// Notes (day, device) pairs to roll again: polls stored after their
    /// day may have been rolled.
    async fn note_interfaces_late(&self, late: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()>;
    /// The noted pairs.
    async fn interfaces_late(&self) -> StoreResult<Vec<(DateTime<Utc>, Uuid)>>;
    /// Forgets pairs once rolled again.
    async fn clear_interfaces_late(&self, done: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()>;
    /// Deletes the interfaces and last polls of devices gone from the
    /// inventory (their polls and rollups age out with the rest).
    async fn forget_snmp_devices(&self, devices: &[Uuid]) -> StoreResult<()>;

    /// One interface's sums in [start, end) per `step_seconds` bucket
    /// (buckets start at multiples of the step since the epoch): from the
    /// raw polls when `raw`, else from the hourly rows (each hour counted
    /// at its start, so the step should be whole hours).
    async fn interface_sums(
        &self,
        device_id: Uuid,
        if_index: u32,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        step_seconds: i64,
        raw: bool,
    ) -> StoreResult<BTreeMap<DateTime<Utc>, InterfaceAgg>> {
        let step = step_seconds.max(1);
        let bucket = |at: DateTime<Utc>| {
            DateTime::from_timestamp(at.timestamp().div_euclid(step) * step, 0).unwrap_or(at)
        };
        let mut sums: BTreeMap<DateTime<Utc>, InterfaceAgg> = BTreeMap::new();
        if start >= end {
            return Ok(sums);
        }
        if raw {
            let polls = self
                .interface_polls(Some(device_id), (start, end), None, u32::MAX)
                .await?;
            for poll in &polls {
                for sample in poll.interfaces() {
                    if sample.if_index == if_index {
                        sums.entry(bucket(poll.polled_at)).or_default().add(&sample);
                    }
                }
            }
            return Ok(sums);
        }
        let first_day = start.duration_trunc(TimeDelta::days(1)).unwrap_or(start);
        let rows = self
            .interface_rollups(Some(device_id), (first_day, end), None, u32::MAX)
            .await?;
        for row in &rows {
            let Some(interface) = row.interfaces.iter().find(|i| i.if_index == if_index) else {
                continue;
            };
            for (hour, agg) in &interface.hours {
                let at = row.start + TimeDelta::hours(i64::from(*hour));
                if at >= start && at < end {
                    sums.entry(bucket(at)).or_default().merge(agg);
                }
            }
        }
        Ok(sums)
    }

    /// One interface's history in [start, end) per `step_seconds`, from
    /// the raw polls when `raw`, else from the hourly rows (then `start` is
    /// a whole hour and the step whole hours); see [`Self::interface_sums`].
    async fn interface_history(
        &self,
        device_id: Uuid,
        if_index: u32,
        range: (DateTime<Utc>, DateTime<Utc>),
        step_seconds: i64,
        raw: bool,
    ) -> StoreResult<Vec<v1::InterfaceHistoryPoint>> {
        let sums = self
            .interface_sums(device_id, if_index, range, step_seconds, raw)
            .await?;
        Ok(sums
            .iter()
            .map(|(time, agg)| history_point(*time, agg))
            .collect())
    }
}

//! SNMP polls as stored: raw samples, per-interface samples with their
//! rates, hourly interface rollups, and the current view (each interface's
//! last status and sample, each device's last poll).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreResult;

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
    /// The last sample's error detail; empty once retention dropped it.
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
    /// Of the batch's last sample of the device; empty keeps the stored one.
    pub sys_object_id: String,
    pub profile: String,
}

/// One interface of one poll, with its rates.
#[derive(Debug, Clone)]
pub struct InterfaceSampleRow {
    pub device_id: Uuid,
    pub if_index: u32,
    pub polled_at: DateTime<Utc>,
    pub admin_status: i32,
    pub oper_status: i32,
    pub speed_bps: Option<u64>,
    pub hc: bool,
    pub in_octets: Option<u64>,
    pub out_octets: Option<u64>,
    pub in_errors: Option<u64>,
    pub out_errors: Option<u64>,
    /// Per second: bits in, out; utilisation % in, out; unicast packets
    /// in, out; errors in, out; discards in, out.
    pub rates: [Option<f64>; 10],
    /// Errors in, out, discards in, out counted in the interval.
    pub deltas: [Option<i64>; 4],
    /// The discontinuity found at this poll (`CounterDiscontinuity`).
    pub discontinuity: i32,
}

/// One hour of one interface, merged from the rows of a batch (added to
/// what the hour already holds).
#[derive(Debug, Clone, Default)]
pub struct InterfaceRollup {
    pub device_id: Uuid,
    pub if_index: u32,
    pub hour: DateTime<Utc>,
    pub samples: i32,
    pub oper_up: i32,
    pub rate_samples: i32,
    pub in_sum: f64,
    pub in_max: Option<f64>,
    pub out_sum: f64,
    pub out_max: Option<f64>,
    pub in_util_max: Option<f64>,
    pub out_util_max: Option<f64>,
    /// Errors in, out, discards in, out.
    pub deltas: [i64; 4],
}

/// A polled sample: device, when, and the sample.
pub type SampleRef<'a> = (Uuid, DateTime<Utc>, &'a v1::SnmpSample);

/// Everything one SNMP batch writes, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct SnmpBatch<'a> {
    pub batch_uid: &'a str,
    pub executor_id: &'a str,
    pub samples: &'a [SampleRef<'a>],
    pub interface_samples: &'a [InterfaceSampleRow],
    pub rollups: &'a [InterfaceRollup],
    /// The interfaces' new current view.
    pub interfaces: &'a [CurrentInterface],
    pub devices: &'a [SnmpDeviceWrite],
}

/// SNMP interfaces, polls and rates.
#[async_trait]
pub trait SnmpStore: Send + Sync + 'static {
    /// The current view of every interface.
    async fn current_interfaces(&self) -> StoreResult<Vec<CurrentInterface>>;
    /// Every device's last poll.
    async fn snmp_devices(&self) -> StoreResult<Vec<SnmpDeviceRow>>;
    /// Stores a batch unless its `batch_uid` was stored before; false for
    /// such a duplicate (nothing written). Partitions for the samples' days
    /// must exist.
    async fn store_snmp_batch(&self, batch: SnmpBatch<'_>) -> StoreResult<bool>;
    /// One interface's samples in [start, end) summed per `step_seconds`:
    /// from the raw samples when `raw`, else from the hourly rollups (then
    /// `start` is a whole hour and `step_seconds` whole hours).
    async fn interface_history(
        &self,
        device_id: Uuid,
        if_index: u32,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        step_seconds: i64,
        raw: bool,
    ) -> StoreResult<Vec<v1::InterfaceHistoryPoint>>;
    /// Deletes the interfaces and last polls of devices gone from the
    /// inventory (their samples and rollups age out with the rest).
    async fn forget_snmp_devices(&self, devices: &[Uuid]) -> StoreResult<()>;
}

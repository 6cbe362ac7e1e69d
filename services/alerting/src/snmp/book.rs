//! SNMP samples into storage and into the current interface view. Each
//! poll's interfaces get rates against the previous poll (`rates` tells
//! wraps, reboots and missed polls apart), a role (`classify`, with the
//! operator's overrides from inventory) and their oper-status history for
//! flap counting. Everything is written in the batch's transaction; the
//! in-memory view moves only after the commit, so a failed write leaves it
//! as the database has it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::classify::{Classifier, DecidedBy, Labels};
use super::rates::{
    CounterRate, Discontinuity, InterfacePoll, Interval, PollClock, RateConfig, interface_rates,
};
use crate::timestamp as ts;

/// Oper-status changes are remembered this long (the longest flap window).
const FLAP_MEMORY: TimeDelta = TimeDelta::hours(24);

/// What rate and flap arithmetic needs besides the last raw sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Memory {
    /// When the last sample was polled (µs since the epoch) and the
    /// device's sysUpTime then: the clock of the next rate.
    polled_at_us: i64,
    uptime_ticks: Option<u32>,
    /// Instants (µs) of oper-status changes within `FLAP_MEMORY`.
    oper_changes_us: Vec<i64>,
}

#[derive(Debug, Clone)]
struct Interface {
    status: v1::InterfaceStatus,
    sample: v1::InterfaceSample,
    memory: Memory,
    /// Errors in, out, discards in, out counted in the interval that ended
    /// at `sample` (for history sums); not stored in the current view.
    deltas: [Option<i64>; 4],
}

impl Interface {
    fn clock(&self) -> PollClock {
        PollClock {
            polled_at: from_us(self.memory.polled_at_us).into(),
            sys_uptime_ticks: self.memory.uptime_ticks,
        }
    }
}

/// The last poll of a device.
#[derive(Debug, Clone)]
struct Device {
    /// The last answered poll and its sysUpTime (reboot detection).
    polled_at: DateTime<Utc>,
    uptime_ticks: Option<u32>,
    last_reboot_at: Option<DateTime<Utc>>,
    /// The outcome of the last poll, answered or not.
    outcome: i32,
    /// The last poll's error_detail (empty when OK and complete).
    detail: String,
}

/// One interface after a poll, for rule evaluation.
#[derive(Debug, Clone)]
pub struct InterfaceUpdate {
    pub device_id: Uuid,
    pub status: v1::InterfaceStatus,
    /// Oper-status changes remembered (for flap windows), oldest first.
    pub oper_changes: Vec<DateTime<Utc>>,
    pub polled_at: DateTime<Utc>,
    pub cycle_id: u64,
}

/// One device after a poll, for rule evaluation.
#[derive(Debug, Clone)]
pub struct DeviceUpdate {
    pub device_id: Uuid,
    pub polled_at: DateTime<Utc>,
    pub cycle_id: u64,
    pub outcome: v1::SnmpOutcome,
    pub last_reboot_at: Option<DateTime<Utc>>,
    pub values: Vec<v1::ScalarValue>,
}

/// What a stored SNMP batch changed.
#[derive(Debug, Clone, Default)]
pub struct SnmpStored {
    pub duplicate: bool,
    /// Samples stored (polls).
    pub samples: u32,
    pub interfaces: Vec<InterfaceUpdate>,
    pub devices: Vec<DeviceUpdate>,
}

/// Rows of one batch, column by column (written with UNNEST).
#[derive(Default)]
struct Rows {
    device: Vec<Uuid>,
    if_index: Vec<i32>,
    polled_at: Vec<DateTime<Utc>>,
    admin: Vec<i16>,
    oper: Vec<i16>,
    speed: Vec<Option<i64>>,
    hc: Vec<bool>,
    in_octets: Vec<Option<i64>>,
    out_octets: Vec<Option<i64>>,
    in_errors: Vec<Option<i64>>,
    out_errors: Vec<Option<i64>>,
    rates: [Vec<Option<f64>>; 10],
    deltas: [Vec<Option<i64>>; 4],
    discontinuity: Vec<i16>,
}

/// One hour of one interface, merged from the rows of a batch.
#[derive(Default)]
struct Rollup {
    samples: i32,
    oper_up: i32,
    rate_samples: i32,
    in_sum: f64,
    in_max: Option<f64>,
    out_sum: f64,
    out_max: Option<f64>,
    in_util_max: Option<f64>,
    out_util_max: Option<f64>,
    deltas: [i64; 4],
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn to_us(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A u64 counter bit for bit in a bigint column.
fn bits(value: Option<u64>) -> Option<i64> {
    value.map(|v| v as i64)
}

fn discontinuity_of(
    interval: Interval,
    rates: &super::rates::InterfaceRates,
) -> v1::CounterDiscontinuity {
    if matches!(interval, Interval::Reboot) {
        return v1::CounterDiscontinuity::Reboot;
    }
    let reset = rates
        .summary
        .discontinuities
        .iter()
        .any(|(_, d)| !matches!(d, Discontinuity::TimeNotAdvanced | Discontinuity::Reboot));
    if reset {
        v1::CounterDiscontinuity::CounterReset
    } else if rates.summary.gap {
        v1::CounterDiscontinuity::MissedPoll
    } else if !rates.summary.wrapped.is_empty() {
        v1::CounterDiscontinuity::Wrap
    } else {
        v1::CounterDiscontinuity::Unspecified
    }
}

/// The delta a per-second rate stands for over the interval.
fn delta(rate: CounterRate, interval: Interval) -> Option<i64> {
    let Interval::Span { elapsed, .. } = interval else {
        return None;
    };
    rate.per_second()
        .map(|per_second| (per_second * elapsed.as_secs_f64()).round() as i64)
}

/// The current view of every SNMP device's interfaces, backed by PostgreSQL.
pub struct SnmpBook {
    pool: PgPool,
    classifier: Classifier,
    rates: RateConfig,
    copy: SharedCopy,
    interfaces: Mutex<HashMap<(Uuid, u32), Interface>>,
    devices: Mutex<HashMap<Uuid, Device>>,
}

impl SnmpBook {
    /// Loads the stored view (interfaces, last polls).
    pub async fn load(
        pool: PgPool,
        classifier: Classifier,
        rates: RateConfig,
        copy: SharedCopy,
    ) -> Result<Self, sqlx::Error> {
        type InterfaceRow = (Uuid, i32, Vec<u8>, Vec<u8>, Json<Memory>);
        let rows: Vec<InterfaceRow> =
            sqlx::query_as("SELECT device_id, if_index, body, sample, memory FROM interfaces")
                .fetch_all(&pool)
                .await?;
        let interfaces = rows
            .into_iter()
            .filter_map(|(device, index, body, sample, memory)| {
                let interface = Interface {
                    status: v1::InterfaceStatus::decode(body.as_slice()).ok()?,
                    sample: v1::InterfaceSample::decode(sample.as_slice()).ok()?,
                    memory: memory.0,
                    deltas: [None; 4],
                };
                Some(((device, u32::try_from(index).ok()?), interface))
            })
            .collect();
        type DeviceRow = (
            Uuid,
            DateTime<Utc>,
            Option<i64>,
            Option<DateTime<Utc>>,
            i16,
            Option<String>,
        );
        // The last poll's detail lives with its sample (one index lookup
        // per device); a sample already dropped by retention leaves it empty.
        let rows: Vec<DeviceRow> = sqlx::query_as(
            "SELECT d.device_id, d.polled_at, d.sys_uptime_ticks, d.last_reboot_at, d.outcome, \
             (SELECT s.error_detail FROM snmp_samples s WHERE s.device_id = d.device_id \
              ORDER BY s.polled_at DESC LIMIT 1) \
             FROM snmp_devices d",
        )
        .fetch_all(&pool)
        .await?;
        let devices = rows
            .into_iter()
            .map(|(id, polled_at, uptime, last_reboot_at, outcome, detail)| {
                let device = Device {
                    polled_at,
                    uptime_ticks: uptime.and_then(|u| u32::try_from(u).ok()),
                    last_reboot_at,
                    outcome: i32::from(outcome),
                    detail: detail.unwrap_or_default(),
                };
                (id, device)
            })
            .collect();
        Ok(Self {
            pool,
            classifier,
            rates,
            copy,
            interfaces: Mutex::new(interfaces),
            devices: Mutex::new(devices),
        })
    }

    fn overrides(&self, device_id: Uuid) -> Vec<v1::InterfaceOverride> {
        self.copy
            .read()
            .ok()
            .and_then(|c| {
                c.devices
                    .get(&device_id.to_string())
                    .map(|d| d.interface_overrides.clone())
            })
            .unwrap_or_default()
    }

    /// Stores one SNMP batch once (`batch_uid`), with rates, rollups and
    /// the current view, in one transaction.
    pub async fn store(
        &self,
        batch_uid: &str,
        executor_id: &str,
        samples: &[(Uuid, DateTime<Utc>, &v1::SnmpSample)],
    ) -> Result<SnmpStored, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if !crate::store::claim_batch(&mut tx, batch_uid, executor_id, samples.len()).await? {
            tx.rollback().await?;
            return Ok(SnmpStored {
                duplicate: true,
                ..Default::default()
            });
        }

        // The next view, computed from the current one; it replaces it only
        // after the commit.
        let mut next_interfaces: HashMap<(Uuid, u32), Interface> = HashMap::new();
        let mut next_devices: HashMap<Uuid, Device> = HashMap::new();
        let mut stored = SnmpStored::default();
        let mut rows = Rows::default();
        let mut rollups: BTreeMap<(Uuid, i32, DateTime<Utc>), Rollup> = BTreeMap::new();
        for (device_id, polled_at, sample) in samples {
            let (device_id, polled_at) = (*device_id, *polled_at);
            let clock = PollClock {
                polled_at: SystemTime::from(polled_at),
                sys_uptime_ticks: sample.sys_uptime_ticks,
            };
            let previous = next_devices.get(&device_id).cloned().or_else(|| {
                self.devices
                    .lock()
                    .ok()
                    .and_then(|d| d.get(&device_id).cloned())
            });
            // An agent error is an answer too (sysUpTime included): the
            // agent refused part of the profile, not the poll.
            let answered = sample.outcome == v1::SnmpOutcome::Ok as i32
                || sample.outcome == v1::SnmpOutcome::AgentError as i32;
            let mut device = previous.clone().unwrap_or(Device {
                polled_at,
                uptime_ticks: None,
                last_reboot_at: None,
                outcome: sample.outcome,
                detail: String::new(),
            });
            device.outcome = sample.outcome;
            device.detail.clone_from(&sample.error_detail);
            if answered && sample.sys_uptime_ticks.is_some() {
                if let Some(prev) = &previous
                    && let Interval::Reboot = Interval::between(
                        PollClock {
                            polled_at: prev.polled_at.into(),
                            sys_uptime_ticks: prev.uptime_ticks,
                        },
                        clock,
                        &self.rates,
                    )
                {
                    // The reboot happened sysUpTime ago.
                    let up = TimeDelta::milliseconds(
                        i64::from(sample.sys_uptime_ticks.unwrap_or(0)) * 10,
                    );
                    device.last_reboot_at = Some(polled_at - up);
                }
                device.polled_at = polled_at;
                device.uptime_ticks = sample.sys_uptime_ticks;
            }
            next_devices.insert(device_id, device.clone());
            stored.devices.push(DeviceUpdate {
                device_id,
                polled_at,
                cycle_id: sample.cycle_id,
                outcome: v1::SnmpOutcome::try_from(sample.outcome)
                    .unwrap_or(v1::SnmpOutcome::Unspecified),
                last_reboot_at: device.last_reboot_at,
                values: sample.values.clone(),
            });
            let overrides = self.overrides(device_id);
            for current in &sample.interfaces {
                let key = (device_id, current.if_index);
                let previous = next_interfaces.get(&key).cloned().or_else(|| {
                    self.interfaces
                        .lock()
                        .ok()
                        .and_then(|i| i.get(&key).cloned())
                });
                let interface =
                    self.next_interface(previous, current, clock, polled_at, &overrides);
                push_row(&mut rows, &mut rollups, device_id, polled_at, &interface);
                stored.interfaces.push(InterfaceUpdate {
                    device_id,
                    status: interface.status.clone(),
                    oper_changes: interface
                        .memory
                        .oper_changes_us
                        .iter()
                        .map(|us| from_us(*us))
                        .collect(),
                    polled_at,
                    cycle_id: sample.cycle_id,
                });
                next_interfaces.insert(key, interface);
            }
            stored.samples += 1;
        }

        write_samples(&mut tx, executor_id, samples).await?;
        write_interface_rows(&mut tx, &rows).await?;
        write_rollups(&mut tx, &rollups).await?;
        write_current(&mut tx, &next_interfaces, &next_devices, samples).await?;
        tx.commit().await?;

        if let Ok(mut interfaces) = self.interfaces.lock() {
            interfaces.extend(next_interfaces);
        }
        if let Ok(mut devices) = self.devices.lock() {
            devices.extend(next_devices);
        }
        Ok(stored)
    }

    /// An interface after one more poll: labels (kept when not refreshed),
    /// role, status, rates against the previous poll, flap memory.
    fn next_interface(
        &self,
        previous: Option<Interface>,
        current: &v1::InterfaceSample,
        clock: PollClock,
        polled_at: DateTime<Utc>,
        overrides: &[v1::InterfaceOverride],
    ) -> Interface {
        let mut status = previous
            .as_ref()
            .map(|p| p.status.clone())
            .unwrap_or_default();
        status.if_index = current.if_index;
        if current.labels_refreshed || previous.is_none() {
            status.if_name.clone_from(&current.if_name);
            status.if_alias.clone_from(&current.if_alias);
            status.if_descr.clone_from(&current.if_descr);
        }
        if current.speed_bps.is_some() {
            status.speed_bps = current.speed_bps;
        }
        let classification = self.classifier.classify(
            Labels {
                if_index: status.if_index,
                if_name: &status.if_name,
                if_alias: &status.if_alias,
                if_descr: &status.if_descr,
            },
            overrides,
        );
        status.role = classification.role as i32;
        status.isp_name = classification.isp_name.unwrap_or_default();
        status.classification_confidence = classification.confidence;
        status.classification_source = match classification.decided_by {
            DecidedBy::Override => v1::ClassificationSource::Override,
            DecidedBy::Pattern { .. } => v1::ClassificationSource::Pattern,
            DecidedBy::None => v1::ClassificationSource::Default,
        } as i32;
        status.monitored = classification.monitored;

        let mut memory = previous
            .as_ref()
            .map(|p| p.memory.clone())
            .unwrap_or_default();
        if previous.is_none() || status.oper_status != current.oper_status {
            status.oper_status_since = Some(ts(polled_at));
            if previous.is_some() {
                memory.oper_changes_us.push(to_us(polled_at));
            }
        }
        let horizon = to_us(polled_at - FLAP_MEMORY);
        memory.oper_changes_us.retain(|us| *us >= horizon);
        status.admin_status = current.admin_status;
        status.oper_status = current.oper_status;
        status.hc = current.hc;
        status.last_polled_at = Some(ts(polled_at));

        // Rates against the previous poll; none for the first one.
        let rated = previous.as_ref().map(|p| {
            let rates = interface_rates(
                InterfacePoll {
                    clock: p.clock(),
                    sample: &p.sample,
                },
                InterfacePoll {
                    clock,
                    sample: current,
                },
                status.speed_bps,
                &self.rates,
            );
            (rates.interval, rates)
        });
        let per_second = |rate: CounterRate| rate.per_second();
        let mut deltas = [None; 4];
        match &rated {
            Some((interval, rates)) => {
                status.in_bps = per_second(rates.in_bits);
                status.out_bps = per_second(rates.out_bits);
                status.in_utilisation_percent = rates.in_utilisation_percent;
                status.out_utilisation_percent = rates.out_utilisation_percent;
                status.in_packets_per_second = per_second(rates.in_unicast_packets);
                status.out_packets_per_second = per_second(rates.out_unicast_packets);
                status.in_errors_per_second = per_second(rates.in_errors);
                status.out_errors_per_second = per_second(rates.out_errors);
                status.in_discards_per_second = per_second(rates.in_discards);
                status.out_discards_per_second = per_second(rates.out_discards);
                deltas = [
                    rates.in_errors,
                    rates.out_errors,
                    rates.in_discards,
                    rates.out_discards,
                ]
                .map(|rate| delta(rate, *interval));
                let discontinuity = discontinuity_of(*interval, rates);
                if discontinuity != v1::CounterDiscontinuity::Unspecified {
                    status.last_discontinuity = discontinuity as i32;
                    status.last_discontinuity_at = Some(ts(polled_at));
                }
            }
            None => {
                status.in_bps = None;
                status.out_bps = None;
                status.in_utilisation_percent = None;
                status.out_utilisation_percent = None;
                status.in_packets_per_second = None;
                status.out_packets_per_second = None;
                status.in_errors_per_second = None;
                status.out_errors_per_second = None;
                status.in_discards_per_second = None;
                status.out_discards_per_second = None;
            }
        }
        // A replay or an older poll keeps the newer base.
        let keep_base = matches!(rated, Some((Interval::TimeNotAdvanced, _)));
        let (sample, memory) = match (keep_base, previous) {
            (true, Some(p)) => (
                p.sample,
                Memory {
                    oper_changes_us: memory.oper_changes_us,
                    ..p.memory
                },
            ),
            _ => {
                memory.polled_at_us = to_us(polled_at);
                memory.uptime_ticks = clock.sys_uptime_ticks;
                (current.clone(), memory)
            }
        };
        Interface {
            status,
            sample,
            memory,
            deltas,
        }
    }

    /// The last poll of a device: when it last answered, the outcome of
    /// the last poll, and the sysUpTime then.
    pub fn last_poll(&self, device_id: Uuid) -> Option<(DateTime<Utc>, i32, Option<u32>)> {
        let devices = self.devices.lock().ok()?;
        let device = devices.get(&device_id)?;
        Some((device.polled_at, device.outcome, device.uptime_ticks))
    }

    /// The outcome and error_detail of a device's last poll.
    pub fn last_outcome(&self, device_id: Uuid) -> Option<(i32, String)> {
        let devices = self.devices.lock().ok()?;
        let device = devices.get(&device_id)?;
        Some((device.outcome, device.detail.clone()))
    }

    /// The interfaces of a device, by ifIndex, and when it was last polled.
    pub fn interfaces_of(
        &self,
        device_id: Uuid,
    ) -> (Option<DateTime<Utc>>, Vec<v1::InterfaceStatus>) {
        let polled_at = self
            .devices
            .lock()
            .ok()
            .and_then(|d| d.get(&device_id).map(|d| d.polled_at));
        let mut interfaces: Vec<v1::InterfaceStatus> = self
            .interfaces
            .lock()
            .map(|i| {
                i.iter()
                    .filter(|((device, _), _)| *device == device_id)
                    .map(|(_, interface)| interface.status.clone())
                    .collect()
            })
            .unwrap_or_default();
        interfaces.sort_by_key(|i| i.if_index);
        (polled_at, interfaces)
    }

    /// Buckets of `step_seconds` of one interface between `start` and `end`:
    /// from the raw samples when they still exist (`raw_since`), else from
    /// the hourly rollups (the step then rounded up to whole hours).
    pub async fn history(
        &self,
        device_id: Uuid,
        if_index: u32,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        step_seconds: i64,
        raw_since: DateTime<Utc>,
    ) -> Result<(i64, Vec<v1::InterfaceHistoryPoint>), sqlx::Error> {
        type Row = (
            DateTime<Utc>,
            i64,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<f64>,
        );
        let index = i32::try_from(if_index).unwrap_or(i32::MAX);
        let (step, rows): (i64, Vec<Row>) = if start >= raw_since {
            let rows = sqlx::query_as(
                "SELECT to_timestamp(floor(extract(epoch FROM polled_at) / $4) * $4) AS bucket, \
                        count(*), avg(in_bps), max(in_bps), avg(out_bps), max(out_bps), \
                        max(in_utilisation), max(out_utilisation), \
                        sum(in_errors_delta)::int8, sum(out_errors_delta)::int8, \
                        sum(in_discards_delta)::int8, sum(out_discards_delta)::int8, \
                        100.0 * avg((oper_status = 1)::int)::float8 \
                 FROM interface_samples \
                 WHERE device_id = $1 AND if_index = $2 AND polled_at >= $3 AND polled_at < $5 \
                 GROUP BY bucket ORDER BY bucket",
            )
            .bind(device_id)
            .bind(index)
            .bind(start)
            .bind(step_seconds as f64)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
            (step_seconds, rows)
        } else {
            let step = (step_seconds + 3599) / 3600 * 3600;
            let rows = sqlx::query_as(
                "SELECT to_timestamp(floor(extract(epoch FROM hour) / $4) * $4) AS bucket, \
                        sum(samples)::int8, \
                        sum(in_bps_sum) / NULLIF(sum(rate_samples), 0), max(in_bps_max), \
                        sum(out_bps_sum) / NULLIF(sum(rate_samples), 0), max(out_bps_max), \
                        max(in_utilisation_max), max(out_utilisation_max), \
                        sum(in_errors)::int8, sum(out_errors)::int8, \
                        sum(in_discards)::int8, sum(out_discards)::int8, \
                        100.0 * sum(oper_up)::float8 / NULLIF(sum(samples), 0) \
                 FROM interface_rollups \
                 WHERE device_id = $1 AND if_index = $2 AND hour >= $3 AND hour < $5 \
                 GROUP BY bucket ORDER BY bucket",
            )
            .bind(device_id)
            .bind(index)
            .bind(start.duration_trunc(TimeDelta::hours(1)).unwrap_or(start))
            .bind(step as f64)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
            (step, rows)
        };
        let count = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
        let points = rows
            .into_iter()
            .map(|r| v1::InterfaceHistoryPoint {
                time: Some(ts(r.0)),
                sample_count: u32::try_from(r.1).unwrap_or(u32::MAX),
                in_bps_avg: r.2,
                in_bps_max: r.3,
                out_bps_avg: r.4,
                out_bps_max: r.5,
                in_utilisation_max_percent: r.6,
                out_utilisation_max_percent: r.7,
                in_errors: count(r.8),
                out_errors: count(r.9),
                in_discards: count(r.10),
                out_discards: count(r.11),
                oper_up_percent: r.12.unwrap_or(0.0),
            })
            .collect();
        Ok((step, points))
    }

    /// Forgets devices deleted from the inventory: their interfaces and
    /// last polls, in PostgreSQL (so a restart does not load them again)
    /// and then in memory. Their samples and rollups age out with the rest.
    pub async fn forget_devices(&self, devices: &[Uuid]) -> Result<(), sqlx::Error> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM interfaces WHERE device_id = ANY($1)")
            .bind(devices)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM snmp_devices WHERE device_id = ANY($1)")
            .bind(devices)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let gone: std::collections::HashSet<&Uuid> = devices.iter().collect();
        self.interfaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(device, _), _| !gone.contains(device));
        self.devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|device, _| !gone.contains(device));
        Ok(())
    }

    /// Every device the book holds interfaces or polls of.
    pub fn device_ids(&self) -> std::collections::HashSet<Uuid> {
        let mut devices: std::collections::HashSet<Uuid> = self
            .interfaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|(device, _)| *device)
            .collect();
        devices.extend(
            self.devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .copied(),
        );
        devices
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn rate_config(&self) -> &RateConfig {
        &self.rates
    }
}

fn push_row(
    rows: &mut Rows,
    rollups: &mut BTreeMap<(Uuid, i32, DateTime<Utc>), Rollup>,
    device_id: Uuid,
    polled_at: DateTime<Utc>,
    interface: &Interface,
) {
    let (status, sample) = (&interface.status, &interface.sample);
    let if_index = i32::try_from(status.if_index).unwrap_or(i32::MAX);
    rows.device.push(device_id);
    rows.if_index.push(if_index);
    rows.polled_at.push(polled_at);
    rows.admin.push(status.admin_status as i16);
    rows.oper.push(status.oper_status as i16);
    rows.speed
        .push(status.speed_bps.map(|s| s.min(i64::MAX as u64) as i64));
    rows.hc.push(status.hc);
    rows.in_octets.push(bits(sample.in_octets));
    rows.out_octets.push(bits(sample.out_octets));
    rows.in_errors.push(bits(sample.in_errors));
    rows.out_errors.push(bits(sample.out_errors));
    let rates = [
        status.in_bps,
        status.out_bps,
        status.in_utilisation_percent,
        status.out_utilisation_percent,
        status.in_packets_per_second,
        status.out_packets_per_second,
        status.in_errors_per_second,
        status.out_errors_per_second,
        status.in_discards_per_second,
        status.out_discards_per_second,
    ];
    for (column, value) in rows.rates.iter_mut().zip(rates) {
        column.push(value);
    }
    let deltas = interface.deltas;
    for (column, value) in rows.deltas.iter_mut().zip(deltas) {
        column.push(value);
    }
    let discontinuity = if status.last_discontinuity_at == status.last_polled_at {
        status.last_discontinuity as i16
    } else {
        0
    };
    rows.discontinuity.push(discontinuity);

    let hour = polled_at
        .duration_trunc(TimeDelta::hours(1))
        .unwrap_or(polled_at);
    let rollup = rollups.entry((device_id, if_index, hour)).or_default();
    rollup.samples += 1;
    rollup.oper_up += i32::from(status.oper_status == v1::IfOperStatus::Up as i32);
    if let (Some(i), Some(o)) = (status.in_bps, status.out_bps) {
        rollup.rate_samples += 1;
        rollup.in_sum += i;
        rollup.out_sum += o;
    }
    rollup.in_max = max_opt(rollup.in_max, status.in_bps);
    rollup.out_max = max_opt(rollup.out_max, status.out_bps);
    rollup.in_util_max = max_opt(rollup.in_util_max, status.in_utilisation_percent);
    rollup.out_util_max = max_opt(rollup.out_util_max, status.out_utilisation_percent);
    for (sum, value) in rollup.deltas.iter_mut().zip(deltas) {
        *sum += value.unwrap_or(0);
    }
}

async fn write_samples(
    tx: &mut sqlx::PgConnection,
    executor_id: &str,
    samples: &[(Uuid, DateTime<Utc>, &v1::SnmpSample)],
) -> Result<(), sqlx::Error> {
    let values: Vec<Json<Vec<serde_json::Value>>> = samples
        .iter()
        .map(|(_, _, s)| Json(s.values.iter().map(scalar_json).collect()))
        .collect();
    sqlx::query(
        "INSERT INTO snmp_samples (device_id, polled_at, cycle_id, executor_id, outcome, partial, \
             duration_ms, sys_uptime_ticks, requests_sent, profile, error_detail, scalar_values) \
         SELECT d, t, c, $12, o, p, du, u, r, pr, e, v \
         FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int8[], $4::int2[], $5::bool[], \
                     $6::int4[], $7::int8[], $8::int4[], $9::text[], $10::text[], $11::jsonb[]) \
              AS x(d, t, c, o, p, du, u, r, pr, e, v)",
    )
    .bind(samples.iter().map(|(d, _, _)| *d).collect::<Vec<_>>())
    .bind(samples.iter().map(|(_, t, _)| *t).collect::<Vec<_>>())
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.cycle_id.min(i64::MAX as u64) as i64)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.outcome as i16)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.partial)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.duration_ms.min(i32::MAX as u32) as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.sys_uptime_ticks.map(i64::from))
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.requests_sent.min(i32::MAX as u32) as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.profile.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.error_detail.clone())
            .collect::<Vec<_>>(),
    )
    .bind(values)
    .bind(executor_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A scalar as JSON: numbers as numbers, text as text.
pub fn scalar_json(value: &v1::ScalarValue) -> serde_json::Value {
    use v1::scalar_value::Value;
    let v = match &value.value {
        Some(Value::Integer(i)) => serde_json::json!(i),
        Some(Value::Counter32(c) | Value::Gauge32(c) | Value::Timeticks(c)) => serde_json::json!(c),
        Some(Value::Counter64(c)) => serde_json::json!(c),
        Some(Value::Text(t) | Value::ObjectId(t) | Value::IpAddress(t)) => serde_json::json!(t),
        Some(Value::Octets(b) | Value::Opaque(b)) => serde_json::json!(hex(b)),
        None => serde_json::Value::Null,
    };
    serde_json::json!({"oid": value.oid, "name": value.name, "instance": value.instance, "value": v})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A scalar's numeric value, when it has one.
pub fn numeric(value: &v1::ScalarValue) -> Option<f64> {
    use v1::scalar_value::Value;
    match &value.value {
        Some(Value::Integer(i)) => Some(*i as f64),
        Some(Value::Counter32(c) | Value::Gauge32(c) | Value::Timeticks(c)) => Some(f64::from(*c)),
        Some(Value::Counter64(c)) => Some(*c as f64),
        Some(Value::Text(t)) => t.trim().parse().ok(),
        _ => None,
    }
}

async fn write_interface_rows(tx: &mut sqlx::PgConnection, rows: &Rows) -> Result<(), sqlx::Error> {
    if rows.device.is_empty() {
        return Ok(());
    }
    let [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9] = &rows.rates;
    let [d0, d1, d2, d3] = &rows.deltas;
    sqlx::query(
        "INSERT INTO interface_samples (device_id, if_index, polled_at, admin_status, oper_status, \
             speed_bps, hc, in_octets, out_octets, in_errors, out_errors, in_bps, out_bps, \
             in_utilisation, out_utilisation, in_pps, out_pps, in_errors_ps, out_errors_ps, \
             in_discards_ps, out_discards_ps, in_errors_delta, out_errors_delta, \
             in_discards_delta, out_discards_delta, discontinuity) \
         SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::timestamptz[], $4::int2[], $5::int2[], \
             $6::int8[], $7::bool[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
             $12::float8[], $13::float8[], $14::float8[], $15::float8[], $16::float8[], \
             $17::float8[], $18::float8[], $19::float8[], $20::float8[], $21::float8[], \
             $22::int8[], $23::int8[], $24::int8[], $25::int8[], $26::int2[])",
    )
    .bind(&rows.device)
    .bind(&rows.if_index)
    .bind(&rows.polled_at)
    .bind(&rows.admin)
    .bind(&rows.oper)
    .bind(&rows.speed)
    .bind(&rows.hc)
    .bind(&rows.in_octets)
    .bind(&rows.out_octets)
    .bind(&rows.in_errors)
    .bind(&rows.out_errors)
    .bind(r0)
    .bind(r1)
    .bind(r2)
    .bind(r3)
    .bind(r4)
    .bind(r5)
    .bind(r6)
    .bind(r7)
    .bind(r8)
    .bind(r9)
    .bind(d0)
    .bind(d1)
    .bind(d2)
    .bind(d3)
    .bind(&rows.discontinuity)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_rollups(
    tx: &mut sqlx::PgConnection,
    rollups: &BTreeMap<(Uuid, i32, DateTime<Utc>), Rollup>,
) -> Result<(), sqlx::Error> {
    if rollups.is_empty() {
        return Ok(());
    }
    let keys: Vec<&(Uuid, i32, DateTime<Utc>)> = rollups.keys().collect();
    let values: Vec<&Rollup> = rollups.values().collect();
    sqlx::query(
        "INSERT INTO interface_rollups AS r (device_id, if_index, hour, samples, oper_up, \
             rate_samples, in_bps_sum, in_bps_max, out_bps_sum, out_bps_max, in_utilisation_max, \
             out_utilisation_max, in_errors, out_errors, in_discards, out_discards) \
         SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::timestamptz[], $4::int4[], $5::int4[], \
             $6::int4[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
             $12::float8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[]) \
         ON CONFLICT (device_id, if_index, hour) DO UPDATE SET \
             samples = r.samples + EXCLUDED.samples, \
             oper_up = r.oper_up + EXCLUDED.oper_up, \
             rate_samples = r.rate_samples + EXCLUDED.rate_samples, \
             in_bps_sum = r.in_bps_sum + EXCLUDED.in_bps_sum, \
             in_bps_max = GREATEST(r.in_bps_max, EXCLUDED.in_bps_max), \
             out_bps_sum = r.out_bps_sum + EXCLUDED.out_bps_sum, \
             out_bps_max = GREATEST(r.out_bps_max, EXCLUDED.out_bps_max), \
             in_utilisation_max = GREATEST(r.in_utilisation_max, EXCLUDED.in_utilisation_max), \
             out_utilisation_max = GREATEST(r.out_utilisation_max, EXCLUDED.out_utilisation_max), \
             in_errors = r.in_errors + EXCLUDED.in_errors, \
             out_errors = r.out_errors + EXCLUDED.out_errors, \
             in_discards = r.in_discards + EXCLUDED.in_discards, \
             out_discards = r.out_discards + EXCLUDED.out_discards",
    )
    .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.samples).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.oper_up).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.rate_samples).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.in_sum).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.in_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.out_sum).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.out_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.in_util_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.out_util_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[0]).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[1]).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[2]).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[3]).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_current(
    tx: &mut sqlx::PgConnection,
    interfaces: &HashMap<(Uuid, u32), Interface>,
    devices: &HashMap<Uuid, Device>,
    samples: &[(Uuid, DateTime<Utc>, &v1::SnmpSample)],
) -> Result<(), sqlx::Error> {
    if !interfaces.is_empty() {
        let entries: Vec<(&(Uuid, u32), &Interface)> = interfaces.iter().collect();
        sqlx::query(
            "INSERT INTO interfaces (device_id, if_index, body, sample, memory, updated_at) \
             SELECT d, i, b, s, m, now() \
             FROM UNNEST($1::uuid[], $2::int4[], $3::bytea[], $4::bytea[], $5::jsonb[]) AS x(d, i, b, s, m) \
             ON CONFLICT (device_id, if_index) DO UPDATE SET body = EXCLUDED.body, \
                 sample = EXCLUDED.sample, memory = EXCLUDED.memory, updated_at = now()",
        )
        .bind(entries.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
        .bind(entries.iter().map(|(k, _)| i32::try_from(k.1).unwrap_or(i32::MAX)).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, i)| i.status.encode_to_vec()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, i)| i.sample.encode_to_vec()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, i)| Json(i.memory.clone())).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    // The last sample of each device names its profile and sysObjectID.
    let mut last: HashMap<Uuid, &v1::SnmpSample> = HashMap::new();
    for (id, _, sample) in samples {
        last.insert(*id, sample);
    }
    let entries: Vec<(&Uuid, &Device)> = devices.iter().collect();
    sqlx::query(
        "INSERT INTO snmp_devices (device_id, polled_at, outcome, sys_uptime_ticks, sys_object_id, profile, last_reboot_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int2[], $4::int8[], $5::text[], $6::text[], $7::timestamptz[]) \
         ON CONFLICT (device_id) DO UPDATE SET polled_at = EXCLUDED.polled_at, outcome = EXCLUDED.outcome, \
             sys_uptime_ticks = EXCLUDED.sys_uptime_ticks, \
             sys_object_id = CASE WHEN EXCLUDED.sys_object_id = '' THEN snmp_devices.sys_object_id ELSE EXCLUDED.sys_object_id END, \
             profile = CASE WHEN EXCLUDED.profile = '' THEN snmp_devices.profile ELSE EXCLUDED.profile END, \
             last_reboot_at = EXCLUDED.last_reboot_at",
    )
    .bind(entries.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, d)| d.polled_at).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, d)| d.outcome as i16).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, d)| d.uptime_ticks.map(i64::from)).collect::<Vec<_>>())
    .bind(entries.iter().map(|(id, _)| last.get(id).map(|s| s.sys_object_id.clone()).unwrap_or_default()).collect::<Vec<_>>())
    .bind(entries.iter().map(|(id, _)| last.get(id).map(|s| s.profile.clone()).unwrap_or_default()).collect::<Vec<_>>())
    .bind(entries.iter().map(|(_, d)| d.last_reboot_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

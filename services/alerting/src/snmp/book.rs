//! SNMP samples into storage and into the current interface view. Each
//! poll's interfaces get rates against the previous poll (`rates` tells
//! wraps, reboots and missed polls apart), a role (`classify`, with the
//! operator's overrides from inventory) and their oper-status history for
//! flap counting. The batch's transaction writes each poll (packed in one
//! row, see `store::packed_snmp`; the hourly tier is rolled from those rows
//! later, by `rollup::Roller`), each device's last poll, and the view rows
//! of interfaces that are new or whose labels, role or statuses changed;
//! the rest of the view (rates, the sample the next rates are computed
//! against) is written by [`SnmpBook::checkpoint`], not a row per interface
//! and poll. The in-memory view moves only after the commit, so a failed
//! write leaves it as the database has it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use uuid::Uuid;

use super::classify::{Classifier, DecidedBy, Labels};
use super::rates::{
    CounterRate, Discontinuity, InterfacePoll, Interval, PollClock, RateConfig, interface_rates,
};
use crate::rollup::LATE_AFTER;
use crate::store::{
    CurrentInterface, InterfaceAgg, InterfaceMemory as Memory, InterfaceSampleRow, PollRow,
    SampleRef, SnmpBatch, SnmpDeviceWrite, SnmpStore, history_point,
};
use crate::timestamp as ts;

/// Oper-status changes are remembered this long (the longest flap window).
const FLAP_MEMORY: TimeDelta = TimeDelta::hours(24);

/// View rows written per statement at a checkpoint.
const CHECKPOINT_CHUNK: usize = 5_000;

#[derive(Debug, Clone)]
struct Interface {
    status: v1::InterfaceStatus,
    sample: v1::InterfaceSample,
    memory: Memory,
    /// Errors in, out, discards in, out counted in the interval that ended
    /// at `sample` (for history sums); not stored in the current view.
    deltas: [Option<i64>; 4],
    /// Moved on since its view row was written (rates, sample, clock):
    /// written at the next checkpoint.
    unsaved: bool,
    /// Loaded with a sample older than its device's last poll: the process
    /// stopped without its checkpoint, so polls after that sample were
    /// stored (with their deltas) and the next rate against it would count
    /// them again. The next poll only takes a new base.
    stale_base: bool,
}

/// Whether two statuses differ in what is written at once: labels, role,
/// statuses and their since, speed. Rates, the last poll and the last
/// discontinuity move every poll and wait for the checkpoint.
fn same_settled(a: &v1::InterfaceStatus, b: &v1::InterfaceStatus) -> bool {
    (&a.if_name, &a.if_alias, &a.if_descr, &a.isp_name)
        == (&b.if_name, &b.if_alias, &b.if_descr, &b.isp_name)
        && (a.role, a.classification_source, a.monitored)
            == (b.role, b.classification_source, b.monitored)
        && a.classification_confidence.to_bits() == b.classification_confidence.to_bits()
        && (a.admin_status, a.oper_status, &a.oper_status_since)
            == (b.admin_status, b.oper_status, &b.oper_status_since)
        && (a.speed_bps, a.hc) == (b.speed_bps, b.hc)
}

impl Interface {
    /// Its view row.
    fn current(&self, (device_id, if_index): (Uuid, u32)) -> CurrentInterface {
        CurrentInterface {
            device_id,
            if_index,
            status: self.status.clone(),
            sample: self.sample.clone(),
            memory: self.memory.clone(),
        }
    }

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

fn to_us(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
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

/// The current view of every SNMP device's interfaces, backed by the store.
pub struct SnmpBook {
    store: Arc<dyn SnmpStore>,
    classifier: Classifier,
    rates: RateConfig,
    copy: SharedCopy,
    interfaces: Mutex<HashMap<(Uuid, u32), Interface>>,
    devices: Mutex<HashMap<Uuid, Device>>,
}

impl SnmpBook {
    /// Loads the stored view (interfaces, last polls).
    pub async fn load(
        store: Arc<dyn SnmpStore>,
        classifier: Classifier,
        rates: RateConfig,
        copy: SharedCopy,
    ) -> Result<Self, sqlx::Error> {
        let devices: HashMap<Uuid, Device> = store
            .snmp_devices()
            .await?
            .into_iter()
            .map(|row| {
                let device = Device {
                    polled_at: row.polled_at,
                    uptime_ticks: row.uptime_ticks,
                    last_reboot_at: row.last_reboot_at,
                    outcome: row.outcome,
                    detail: row.detail,
                };
                (row.device_id, device)
            })
            .collect();
        let interfaces = store
            .current_interfaces()
            .await?
            .into_iter()
            .map(|row| {
                let last_poll = devices.get(&row.device_id).map(|d| to_us(d.polled_at));
                let interface = Interface {
                    stale_base: last_poll.is_some_and(|last| row.memory.polled_at_us < last),
                    status: row.status,
                    sample: row.sample,
                    memory: row.memory,
                    deltas: [None; 4],
                    unsaved: false,
                };
                ((row.device_id, row.if_index), interface)
            })
            .collect();
        Ok(Self {
            store,
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
                    .map(|d| d.interface_overrides.to_vec())
            })
            .unwrap_or_default()
    }

    /// Stores one SNMP batch once (`batch_uid`), with rates and the
    /// current view, in one transaction.
    pub async fn store(
        &self,
        batch_uid: &str,
        executor_id: &str,
        samples: &[SampleRef<'_>],
    ) -> Result<SnmpStored, sqlx::Error> {
        // The next view, computed from the current one; it replaces it only
        // after the commit.
        let mut next_interfaces: HashMap<(Uuid, u32), Interface> = HashMap::new();
        let mut next_devices: HashMap<Uuid, Device> = HashMap::new();
        let mut stored = SnmpStored::default();
        let mut polls = Vec::with_capacity(samples.len());
        // Interfaces whose settled status changed (or that are new): their
        // view rows are written with the batch, the others' at the next
        // checkpoint.
        let mut changed: HashSet<(Uuid, u32)> = HashSet::new();
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
            let mut rows = Vec::with_capacity(sample.interfaces.len());
            for current in &sample.interfaces {
                let key = (device_id, current.if_index);
                let previous = next_interfaces.get(&key).cloned().or_else(|| {
                    self.interfaces
                        .lock()
                        .ok()
                        .and_then(|i| i.get(&key).cloned())
                });
                let next =
                    self.next_interface(previous.as_ref(), current, clock, polled_at, &overrides);
                let settled = previous
                    .as_ref()
                    .is_some_and(|p| same_settled(&p.status, &next.status));
                let interface = next;
                if !settled {
                    changed.insert(key);
                }
                rows.push(stored_row(&interface));
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
            polls.push(PollRow {
                device_id,
                polled_at,
                sample,
                interfaces: rows,
            });
            stored.samples += 1;
        }

        // The last sample of each device names its profile and sysObjectID.
        let mut last: HashMap<Uuid, &v1::SnmpSample> = HashMap::new();
        for (id, _, sample) in samples {
            last.insert(*id, sample);
        }
        for (key, interface) in &mut next_interfaces {
            interface.unsaved = !changed.contains(key);
        }
        let interfaces: Vec<CurrentInterface> = next_interfaces
            .iter()
            .filter(|(_, interface)| !interface.unsaved)
            .map(|(&key, interface)| interface.current(key))
            .collect();
        let devices: Vec<SnmpDeviceWrite> = next_devices
            .iter()
            .map(|(&device_id, device)| SnmpDeviceWrite {
                device_id,
                polled_at: device.polled_at,
                uptime_ticks: device.uptime_ticks,
                last_reboot_at: device.last_reboot_at,
                outcome: device.outcome,
                detail: device.detail.clone(),
                sys_object_id: last
                    .get(&device_id)
                    .map(|s| s.sys_object_id.clone())
                    .unwrap_or_default(),
                profile: last
                    .get(&device_id)
                    .map(|s| s.profile.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let fresh = self
            .store
            .store_snmp_batch(SnmpBatch {
                batch_uid,
                executor_id,
                polls: &polls,
                interfaces: &interfaces,
                devices: &devices,
            })
            .await?;
        if !fresh {
            // A replay: nothing was written, the view stays.
            return Ok(SnmpStored {
                duplicate: true,
                ..Default::default()
            });
        }
        self.note_late(&polls).await;

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
        previous: Option<&Interface>,
        current: &v1::InterfaceSample,
        clock: PollClock,
        polled_at: DateTime<Utc>,
        overrides: &[v1::InterfaceOverride],
    ) -> Interface {
        let mut status = previous.map(|p| p.status.clone()).unwrap_or_default();
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

        let mut memory = previous.map(|p| p.memory.clone()).unwrap_or_default();
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

        // Rates against the previous poll; none for the first one, nor
        // against a base that may be older than stored polls.
        let rated = previous.filter(|p| !p.stale_base).map(|p| {
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
                p.sample.clone(),
                Memory {
                    oper_changes_us: memory.oper_changes_us,
                    ..p.memory.clone()
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
            unsaved: true,
            stale_base: false,
        }
    }

    /// Writes the view rows of interfaces that moved on since theirs was
    /// written, a chunk at a time; returns how many. Run every 10 minutes
    /// and at shutdown: a row per interface and poll is what this saves.
    /// After a stop without it, interfaces resume from their last row,
    /// their first rate after the restart skipped (see `stale_base`).
    pub async fn checkpoint(&self) -> Result<usize, sqlx::Error> {
        let keys: Vec<(Uuid, u32)> = self
            .interfaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, interface)| interface.unsaved)
            .map(|(key, _)| *key)
            .collect();
        let mut written = 0;
        for chunk in keys.chunks(CHECKPOINT_CHUNK) {
            let rows: Vec<CurrentInterface> = {
                let interfaces = self.interfaces.lock().unwrap_or_else(|p| p.into_inner());
                chunk
                    .iter()
                    .filter_map(|key| interfaces.get(key).map(|i| i.current(*key)))
                    .collect()
            };
            self.store.save_interfaces(&rows).await?;
            // Saved, unless a poll moved it on meanwhile.
            let mut interfaces = self.interfaces.lock().unwrap_or_else(|p| p.into_inner());
            for row in &rows {
                if let Some(interface) = interfaces.get_mut(&(row.device_id, row.if_index))
                    && interface.memory.polled_at_us == row.memory.polled_at_us
                {
                    interface.unsaved = false;
                }
            }
            written += rows.len();
        }
        metrics::counter!("netward_alerting_interface_checkpoint_rows_total")
            .increment(written as u64);
        Ok(written)
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

    /// Notes polls stored more than [`LATE_AFTER`] after their UTC day
    /// closed: the hourly tier may have rolled that day already (the
    /// roller reads a day only after it has been closed longer), so it is
    /// rolled again for the device. The clock is read after the commit,
    /// so a poll the roller could have missed is always noted. A failure
    /// is logged and counted: the polls are stored, only their hourly rows
    /// would miss them.
    async fn note_late(&self, polls: &[PollRow<'_>]) {
        let now = Utc::now();
        let day_of = |at: DateTime<Utc>| at.duration_trunc(TimeDelta::days(1)).unwrap_or(at);
        let late: std::collections::BTreeSet<(DateTime<Utc>, Uuid)> = polls
            .iter()
            .filter(|p| !p.interfaces.is_empty())
            .filter(|p| day_of(p.polled_at) + TimeDelta::days(1) + LATE_AFTER <= now)
            .map(|p| (day_of(p.polled_at), p.device_id))
            .collect();
        if late.is_empty() {
            return;
        }
        let late: Vec<_> = late.into_iter().collect();
        match self.store.note_interfaces_late(&late).await {
            Ok(()) => {
                metrics::counter!("netward_alerting_snmp_polls_late_total")
                    .increment(late.len() as u64);
                tracing::info!(
                    late = late.len(),
                    "SNMP polls stored after their day closed: rolling their hours again"
                );
            }
            Err(error) => {
                metrics::counter!("netward_alerting_late_unnoted_total").increment(1);
                tracing::warn!(%error, "could not note late SNMP polls: their hourly rollups miss them");
            }
        }
    }

    /// Buckets of `step_seconds` of one interface between `start` and
    /// `end`, from the finest tier that covers each part: raw polls where
    /// they still exist; where they do not, the hourly tier (up to its
    /// mark), the step then rounded up to whole hours. A step of whole
    /// hours reads the hourly tier up to its mark too — the same sums as
    /// the raw polls (tested on both backends), far fewer rows — and starts
    /// at a whole hour. Returns the step used.
    pub async fn history(
        &self,
        device_id: Uuid,
        if_index: u32,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        step_seconds: i64,
    ) -> Result<(i64, Vec<v1::InterfaceHistoryPoint>), sqlx::Error> {
        const HOUR: i64 = 3600;
        let mark = self.store.interface_mark().await?;
        let raw_floor = self.store.snmp_raw_days().await?.first().copied();
        let before_raw = raw_floor.is_none_or(|floor| start < floor);
        let mut step = step_seconds.max(1);
        if mark.is_some() && before_raw {
            step = (step + HOUR - 1) / HOUR * HOUR;
        }
        let hourly = mark.is_some() && step % HOUR == 0;
        let start = if hourly {
            start.duration_trunc(TimeDelta::hours(1)).unwrap_or(start)
        } else {
            start
        };
        // The hourly tier answers [start, split), raw polls the rest.
        let split = match mark {
            Some(mark) if hourly => mark.clamp(start, end.max(start)),
            _ => start,
        };
        let mut sums = self
            .store
            .interface_sums(device_id, if_index, (start, split), step, false)
            .await?;
        let raw = self
            .store
            .interface_sums(device_id, if_index, (split, end), step, true)
            .await?;
        for (time, agg) in raw {
            sums.entry(time)
                .or_insert_with(InterfaceAgg::default)
                .merge(&agg);
        }
        let points = sums
            .iter()
            .map(|(time, agg)| history_point(*time, agg))
            .collect();
        Ok((step, points))
    }

    /// Forgets devices deleted from the inventory: their interfaces and
    /// last polls, in the store (so a restart does not load them again)
    /// and then in memory. Their samples and rollups age out with the rest.
    pub async fn forget_devices(&self, devices: &[Uuid]) -> Result<(), sqlx::Error> {
        if devices.is_empty() {
            return Ok(());
        }
        self.store.forget_snmp_devices(devices).await?;
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

    /// Up to where the hourly interface tier is complete: raw polls before
    /// it may go.
    pub async fn rolled_until(&self) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.store.interface_mark().await
    }

    pub fn rate_config(&self) -> &RateConfig {
        &self.rates
    }
}

/// An interface's stored form after a poll: its status, the rates and
/// deltas of the interval, and the discontinuity found at this poll.
fn stored_row(interface: &Interface) -> InterfaceSampleRow {
    let status = &interface.status;
    let discontinuity = if status.last_discontinuity_at == status.last_polled_at {
        status.last_discontinuity
    } else {
        0
    };
    InterfaceSampleRow::of(status, interface.deltas, discontinuity)
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

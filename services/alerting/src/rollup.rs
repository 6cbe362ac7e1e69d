//! Rolls raw results up into the tiers, off the ingest path: every minute,
//! each 10-minute block that closed more than [`GRACE`] ago becomes one
//! one-minute rollup row per device, and each UTC day the one-minute tier
//! has completed becomes one hourly row per device. Progress is kept in
//! `rollup_marks`; every step recomputes its rows from the tier below and
//! replaces them, so running a step twice (two instances, a restart) gives
//! the same rows.
//!
//! A block's mark moves before it reads: a result stored after that sees
//! the new mark and is noted late (`Ingestor` does it), one stored before
//! is read. Late (block, device) pairs are rolled again, and their day too
//! when its hourly row exists. A process stopped between moving the minute
//! mark and writing the rows leaves that block unrolled: the first run of
//! every process rolls the block before the mark again. The hourly mark
//! moves after its rows are written (the one-minute rows it reads are
//! final, or noted late), so a day cut short is simply rolled again.
//!
//! SNMP interfaces have one tier, hourly (polls come every 60 s: the raw
//! polls are minute resolution already): with a `SnmpStore`, each UTC day
//! that closed more than [`GRACE`] ago becomes one row per device, read
//! from the raw polls, its mark (`interface_rollups_1h`) moved after the
//! rows. A poll stored more than [`LATE_AFTER`] after its day closed is
//! noted late by `SnmpBook` with no mark read (the roller reads a day only
//! later than that, so whatever it may have missed is noted); noted days
//! already rolled are rolled again for their devices.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::store::packed::block_of;
use crate::store::{
    Agg, AlertingStore, InterfaceAgg, InterfaceHours, InterfaceRollupRow, RollupRow, SnmpStore,
    StoreResult, Tier,
};

/// How long after a block closes it is rolled up: results of its last
/// cycle are in by then (they arrive within seconds; an executor that
/// replays later makes them late, and late is handled).
pub const GRACE: TimeDelta = TimeDelta::minutes(2);

/// A poll stored this long after its day closed may have missed that
/// day's hourly rollup: less than [`GRACE`], so clocks a little apart
/// still note every poll the roller could have missed.
pub const LATE_AFTER: TimeDelta = TimeDelta::minutes(1);

/// Rollup rows written per statement.
const WRITE_CHUNK: usize = 5_000;
/// One-minute rows read per page when a day is rolled into hours.
const READ_PAGE: u32 = 20_000;
/// Raw SNMP polls read per page (~0.1–1 KB each) when a day is rolled.
const POLL_PAGE: u32 = 5_000;
/// Hourly interface rows written per statement (~1–20 KB each).
const INTERFACE_CHUNK: usize = 500;

/// What one run rolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rolled {
    /// 10-minute blocks rolled into the one-minute tier.
    pub blocks: u32,
    /// Days rolled into the hourly tier.
    pub days: u32,
    /// Late (block, device) pairs rolled again.
    pub late: u32,
    /// Days of SNMP polls rolled into the hourly interface tier.
    pub interface_days: u32,
    /// Late (day, device) pairs of SNMP polls rolled again.
    pub interface_late: u32,
}

pub struct Roller {
    store: Arc<dyn AlertingStore>,
    /// Where SNMP polls are; without it interfaces are not rolled.
    snmp: Option<Arc<dyn SnmpStore>>,
    /// Set once the block before the minute mark was rolled again at start.
    resumed: AtomicBool,
}

impl Roller {
    pub fn new(store: Arc<dyn AlertingStore>) -> Self {
        Self {
            store,
            snmp: None,
            resumed: AtomicBool::new(false),
        }
    }

    /// Rolls SNMP polls into the hourly interface tier too.
    pub fn with_snmp(mut self, snmp: Arc<dyn SnmpStore>) -> Self {
        self.snmp = Some(snmp);
        self
    }

    /// Rolls what is due at `now`.
    pub async fn run(&self, now: DateTime<Utc>) -> StoreResult<Rolled> {
        let mut rolled = Rolled::default();
        let block_span = Tier::Minute.row();
        let mut block = match self.store.rollup_mark(Tier::Minute).await? {
            Some(mark) => {
                if !self.resumed.swap(true, Ordering::Relaxed) {
                    self.roll_block(mark - block_span, None).await?;
                }
                mark
            }
            None => {
                self.resumed.store(true, Ordering::Relaxed);
                let start = self
                    .store
                    .raw_from(DateTime::UNIX_EPOCH)
                    .await?
                    .unwrap_or(now);
                let start = block_of(start);
                self.store.set_rollup_mark(Tier::Minute, start).await?;
                start
            }
        };
        // Blocks that closed at least the grace ago end by `last`.
        let last = block_of(now - GRACE);
        while block + block_span <= last {
            // An empty stretch (alerting was away, a fresh start) is
            // passed over in one step.
            let next = self.store.raw_from(block).await?.map_or(last, block_of);
            if next > block {
                block = next.min(last);
                self.store.set_rollup_mark(Tier::Minute, block).await?;
                continue;
            }
            self.store
                .set_rollup_mark(Tier::Minute, block + block_span)
                .await?;
            self.roll_block(block, None).await?;
            block += block_span;
            rolled.blocks += 1;
        }
        let minute_mark = block;

        let day_span = Tier::Hour.row();
        let mut day = match self.store.rollup_mark(Tier::Hour).await? {
            Some(mark) => mark,
            None => {
                let floor = self.store.tier_floor(Tier::Minute).await?;
                let start = Tier::Hour.row_of(floor.unwrap_or(minute_mark).min(minute_mark));
                self.store.set_rollup_mark(Tier::Hour, start).await?;
                start
            }
        };
        while day + day_span <= minute_mark {
            // The hourly tier is read from the one-minute tier, which late
            // results update themselves: its mark moves after the rows.
            self.roll_day(day, None).await?;
            self.store
                .set_rollup_mark(Tier::Hour, day + day_span)
                .await?;
            day += day_span;
            rolled.days += 1;
        }

        rolled.late = self.roll_late(day).await?;
        if let Some(snmp) = &self.snmp {
            (rolled.interface_days, rolled.interface_late) = Interfaces {
                store: self.store.as_ref(),
                snmp: snmp.as_ref(),
            }
            .roll(now)
            .await?;
        }
        if rolled != Rolled::default() {
            metrics::counter!("netward_alerting_rollup_blocks_total")
                .increment(u64::from(rolled.blocks));
            metrics::counter!("netward_alerting_rollup_days_total")
                .increment(u64::from(rolled.days));
            metrics::counter!("netward_alerting_rollup_interface_days_total")
                .increment(u64::from(rolled.interface_days));
            tracing::debug!(?rolled, "rolled results up");
        }
        Ok(rolled)
    }

    /// Rolls the noted late pairs again; `hour_mark`: days before it have
    /// hourly rows, rolled again for the same devices.
    async fn roll_late(&self, hour_mark: DateTime<Utc>) -> StoreResult<u32> {
        let late = self.store.late().await?;
        if late.is_empty() {
            return Ok(0);
        }
        let mut blocks: BTreeMap<DateTime<Utc>, HashSet<Uuid>> = BTreeMap::new();
        for (block, device) in &late {
            blocks.entry(*block).or_default().insert(*device);
        }
        let mut days: BTreeMap<DateTime<Utc>, HashSet<Uuid>> = BTreeMap::new();
        for (block, devices) in &blocks {
            self.roll_block(*block, Some(devices)).await?;
            let day = Tier::Hour.row_of(*block);
            if day < hour_mark {
                days.entry(day).or_default().extend(devices);
            }
        }
        for (day, devices) in &days {
            self.roll_day(*day, Some(devices)).await?;
        }
        self.store.clear_late(&late).await?;
        tracing::info!(pairs = late.len(), "rolled late results up again");
        Ok(late.len() as u32)
    }

    /// The one-minute rows of one block, from its raw results (all
    /// devices', or only `devices`').
    async fn roll_block(
        &self,
        block: DateTime<Utc>,
        devices: Option<&HashSet<Uuid>>,
    ) -> StoreResult<()> {
        let end = block + Tier::Minute.row();
        let mut sums: HashMap<Uuid, BTreeMap<u8, Agg>> = HashMap::new();
        let mut add = |rows: Vec<crate::store::StoredRaw>, only: Option<Uuid>| {
            for row in rows {
                for result in row.results(only) {
                    let wanted = devices.is_none_or(|d| d.contains(&result.device_id));
                    if wanted && result.probed_at >= block && result.probed_at < end {
                        sums.entry(result.device_id)
                            .or_default()
                            .entry(Tier::Minute.slot_of(result.probed_at))
                            .or_default()
                            .add(&result);
                    }
                }
            }
        };
        match devices {
            // A few late devices: their rows only.
            Some(devices) if devices.len() <= 100 => {
                for device in devices {
                    add(
                        self.store.raw_rows(block, end, Some(*device)).await?,
                        Some(*device),
                    );
                }
            }
            // A minute at a time, so a block of a large fleet is never in
            // memory at once.
            _ => {
                let mut from = block;
                while from < end {
                    let to = from + Tier::Minute.entry();
                    add(self.store.raw_rows(from, to, None).await?, None);
                    from = to;
                }
            }
        }
        let rows: Vec<RollupRow> = sums
            .into_iter()
            .map(|(device_id, entries)| RollupRow {
                device_id,
                start: block,
                entries: entries.into_iter().collect(),
            })
            .collect();
        for chunk in rows.chunks(WRITE_CHUNK) {
            self.store.put_rollups(Tier::Minute, chunk).await?;
        }
        Ok(())
    }

    /// The hourly rows of one day, from its one-minute rows (all devices',
    /// or only `devices`').
    async fn roll_day(
        &self,
        day: DateTime<Utc>,
        devices: Option<&HashSet<Uuid>>,
    ) -> StoreResult<()> {
        let end = day + Tier::Hour.row();
        let mut out: Vec<RollupRow> = Vec::new();
        let mut current: Option<(Uuid, BTreeMap<u8, Agg>)> = None;
        let flush = |current: &mut Option<(Uuid, BTreeMap<u8, Agg>)>, out: &mut Vec<RollupRow>| {
            if let Some((device_id, entries)) = current.take() {
                out.push(RollupRow {
                    device_id,
                    start: day,
                    entries: entries.into_iter().collect(),
                });
            }
        };
        let mut pages: Vec<Option<Uuid>> = match devices {
            Some(devices) => devices.iter().copied().map(Some).collect(),
            None => vec![None],
        };
        for device in pages.drain(..) {
            let mut after = None;
            loop {
                let rows = self
                    .store
                    .rollups(Tier::Minute, device, day, end, after, READ_PAGE)
                    .await?;
                let full = rows.len() as u32 == READ_PAGE;
                for row in &rows {
                    if current.as_ref().is_some_and(|(d, _)| *d != row.device_id) {
                        flush(&mut current, &mut out);
                        if out.len() >= WRITE_CHUNK {
                            self.store.put_rollups(Tier::Hour, &out).await?;
                            out.clear();
                        }
                    }
                    let (_, hours) =
                        current.get_or_insert_with(|| (row.device_id, BTreeMap::new()));
                    for (slot, agg) in &row.entries {
                        let at = row.start + Tier::Minute.entry() * i32::from(*slot);
                        hours.entry(Tier::Hour.slot_of(at)).or_default().merge(agg);
                    }
                }
                match rows.last() {
                    Some(last) if full => after = Some((last.device_id, last.start)),
                    _ => break,
                }
            }
        }
        flush(&mut current, &mut out);
        if !out.is_empty() {
            self.store.put_rollups(Tier::Hour, &out).await?;
        }
        Ok(())
    }
}

/// The hourly interface tier's steps.
struct Interfaces<'a> {
    /// Makes the partitions a day's rows go to.
    store: &'a dyn AlertingStore,
    snmp: &'a dyn SnmpStore,
}

impl Interfaces<'_> {
    /// Rolls the days closed by `now` (less the grace) and the late pairs
    /// of days rolled; returns (days, late pairs).
    async fn roll(&self, now: DateTime<Utc>) -> StoreResult<(u32, u32)> {
        let day_span = Tier::Hour.row();
        let due = Tier::Hour.row_of(now - GRACE);
        let kept = self.snmp.snmp_raw_days().await?;
        let mark = self.snmp.interface_mark().await?;
        // The first run starts at the oldest raw day kept.
        let mut day = mark.unwrap_or_else(|| kept.first().copied().unwrap_or(due).min(due));
        let mut days = 0;
        while day + day_span <= due {
            // A day without raw polls has nothing to roll (a poll stored
            // into it later is noted late).
            if kept.contains(&day) {
                self.roll_day(day, None).await?;
                self.snmp.set_interface_mark(day + day_span).await?;
                days += 1;
            }
            day += day_span;
        }
        if mark != Some(day) {
            self.snmp.set_interface_mark(day).await?;
        }
        let late = self.roll_late(day).await?;
        Ok((days, late))
    }

    /// Rolls noted pairs of days before `mark` again (later days are
    /// rolled whole when due, and their pairs kept until then: the roll
    /// may be reading them right now).
    async fn roll_late(&self, mark: DateTime<Utc>) -> StoreResult<u32> {
        let late: Vec<(DateTime<Utc>, Uuid)> = self
            .snmp
            .interfaces_late()
            .await?
            .into_iter()
            .filter(|(day, _)| *day < mark)
            .collect();
        if late.is_empty() {
            return Ok(0);
        }
        let mut days: BTreeMap<DateTime<Utc>, HashSet<Uuid>> = BTreeMap::new();
        for (day, device) in &late {
            days.entry(*day).or_default().insert(*device);
        }
        for (day, devices) in &days {
            self.roll_day(*day, Some(devices)).await?;
        }
        self.snmp.clear_interfaces_late(&late).await?;
        tracing::info!(pairs = late.len(), "rolled late SNMP polls up again");
        Ok(late.len() as u32)
    }

    /// The hourly rows of one day, from its raw polls (all devices', or
    /// only `devices'`), read a page at a time in device order so one
    /// device's day is in memory at once.
    async fn roll_day(
        &self,
        day: DateTime<Utc>,
        devices: Option<&HashSet<Uuid>>,
    ) -> StoreResult<()> {
        // Its month's partition may be gone when the roll lagged past the
        // hourly retention: made again (empty), maintenance drops it.
        self.store.ensure_partitions(&[day.date_naive()]).await?;
        let range = (day, day + Tier::Hour.row());
        let mut out: Vec<InterfaceRollupRow> = Vec::new();
        let mut current: Option<DayOfDevice> = None;
        let wanted: Vec<Option<Uuid>> = match devices {
            Some(devices) => devices.iter().copied().map(Some).collect(),
            None => vec![None],
        };
        for device in wanted {
            let mut after = None;
            loop {
                let polls = self
                    .snmp
                    .interface_polls(device, range, after, POLL_PAGE)
                    .await?;
                for poll in &polls {
                    if current
                        .as_ref()
                        .is_some_and(|c| c.device_id != poll.device_id)
                    {
                        out.extend(current.take().map(|c| c.row(day)));
                        if out.len() >= INTERFACE_CHUNK {
                            self.snmp.put_interface_rollups(&out).await?;
                            out.clear();
                        }
                    }
                    let hour = Tier::Hour.slot_of(poll.polled_at);
                    let device = current.get_or_insert_with(|| DayOfDevice {
                        device_id: poll.device_id,
                        interfaces: BTreeMap::new(),
                    });
                    for sample in poll.interfaces() {
                        let (speed, hours) = device.interfaces.entry(sample.if_index).or_default();
                        if sample.speed_bps.is_some() {
                            *speed = sample.speed_bps;
                        }
                        hours.entry(hour).or_default().add(&sample);
                    }
                }
                match polls.last() {
                    Some(last) if polls.len() as u32 == POLL_PAGE => {
                        after = Some((last.device_id, last.polled_at));
                    }
                    _ => break,
                }
            }
        }
        out.extend(current.take().map(|c| c.row(day)));
        self.snmp.put_interface_rollups(&out).await
    }
}

/// One device's day being summed: per ifIndex its last speed and hours.
struct DayOfDevice {
    device_id: Uuid,
    interfaces: BTreeMap<u32, (Option<u64>, BTreeMap<u8, InterfaceAgg>)>,
}

impl DayOfDevice {
    fn row(self, day: DateTime<Utc>) -> InterfaceRollupRow {
        InterfaceRollupRow {
            device_id: self.device_id,
            start: day,
            interfaces: self
                .interfaces
                .into_iter()
                .map(|(if_index, (speed_bps, hours))| InterfaceHours {
                    if_index,
                    speed_bps,
                    hours: hours.into_iter().collect(),
                })
                .collect(),
        }
    }
}

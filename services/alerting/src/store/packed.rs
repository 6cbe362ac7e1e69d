//! The compact forms probe results and their rollups are stored in, the
//! same bytes in both backends.
//!
//! A row per result costs PostgreSQL ~28 bytes of tuple header and line
//! pointer plus ~36 of index entry before its first column, so no per-result
//! row fits the budget of 40 bytes a result at rest. Results are kept
//! instead as they arrive, one row per `ResultBatch` (and 10-minute block):
//! `devices`, the 16-byte ids one after another (a device's rows are found
//! with a byte search, `position()` in PostgreSQL, `instr()` in SQLite), and
//! `results`, the rest packed in varints (`RESULTS`): ~13–17 bytes a
//! result, 29–33 with its id. Rollups are one row per device and block —
//! ten one-minute entries per 10-minute row, 24 hourly entries per day row —
//! each entry ~10–14 bytes, the row's header and index shared by its
//! entries.
//!
//! Times are kept to the millisecond; loss is not stored but computed from
//! `sent` and `received` as the executor defines it (100 when nothing was
//! sent).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use netward_shared::proto::v1;
use uuid::Uuid;

/// The span of one raw row at most and of one one-minute rollup row: a
/// result belongs to the block its `probed_at` falls in.
pub const BLOCK_MINUTES: i64 = 10;

/// The format byte every packed value starts with.
const RESULTS: u8 = 1;
const ROLLUPS: u8 = 1;

/// The start of the 10-minute block `at` falls in.
pub fn block_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(BLOCK_MINUTES))
        .unwrap_or(at)
}

/// What the stored form of a result holds: the probe result's fields
/// except `address`, `error_detail` and `duration_ms` (kept in the logs and
/// the live view, not on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResult {
    pub device_id: Uuid,
    pub probed_at: DateTime<Utc>,
    pub cycle_id: u64,
    pub batch_id: String,
    pub outcome: i32,
    pub sent: u32,
    pub received: u32,
    pub retries_sent: u32,
    pub rtt_min_us: Option<u32>,
    pub rtt_avg_us: Option<u32>,
    pub rtt_max_us: Option<u32>,
    pub rtt_stddev_us: Option<u32>,
}

impl RawResult {
    /// The stored fields of `result`, probed at `probed_at`.
    pub fn of(device_id: Uuid, probed_at: DateTime<Utc>, result: &v1::ProbeResult) -> Self {
        Self {
            device_id,
            probed_at: millis(probed_at),
            cycle_id: result.cycle_id,
            batch_id: result.batch_id.clone(),
            outcome: result.outcome,
            sent: result.sent,
            received: result.received,
            retries_sent: result.retries_sent,
            rtt_min_us: result.rtt_min_us,
            rtt_avg_us: result.rtt_avg_us,
            rtt_max_us: result.rtt_max_us,
            rtt_stddev_us: result.rtt_stddev_us,
        }
    }

    /// Packet loss in percent, as the executor computes it.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            100.0
        } else {
            100.0 * f64::from(self.sent.saturating_sub(self.received)) / f64::from(self.sent)
        }
    }

    /// The stored result as a `ProbeResult` (without what is not stored).
    pub fn to_proto(&self) -> v1::ProbeResult {
        v1::ProbeResult {
            device_id: self.device_id.to_string(),
            cycle_id: self.cycle_id,
            batch_id: self.batch_id.clone(),
            sent: self.sent,
            received: self.received,
            loss_percent: self.loss_percent(),
            rtt_min_us: self.rtt_min_us,
            rtt_avg_us: self.rtt_avg_us,
            rtt_max_us: self.rtt_max_us,
            rtt_stddev_us: self.rtt_stddev_us,
            outcome: self.outcome,
            probed_at: Some(crate::timestamp(self.probed_at)),
            retries_sent: self.retries_sent,
            ..Default::default()
        }
    }
}

/// `at` truncated to the millisecond.
fn millis(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(at)
}

/// One raw row: the results of one batch within one block, packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// The earliest `probed_at` of its results (ms): the partition key.
    pub probed_at: DateTime<Utc>,
    pub executor_id: String,
    /// Results in the row.
    pub count: u32,
    /// 16 bytes per result, in order.
    pub devices: Vec<u8>,
    pub results: Vec<u8>,
}

/// Packs results of one executor into raw rows, one per block they fall
/// in (results of a batch straddling a block boundary make two rows).
pub fn pack_results(executor_id: &str, results: &[RawResult]) -> Vec<RawRow> {
    let mut by_block: std::collections::BTreeMap<DateTime<Utc>, Vec<&RawResult>> =
        std::collections::BTreeMap::new();
    for result in results {
        by_block
            .entry(block_of(result.probed_at))
            .or_default()
            .push(result);
    }
    by_block
        .into_values()
        .map(|results| pack_row(executor_id, &results))
        .collect()
}

fn pack_row(executor_id: &str, results: &[&RawResult]) -> RawRow {
    let base = results
        .iter()
        .map(|r| r.probed_at)
        .min()
        .unwrap_or_default();
    let cycle = results.iter().map(|r| r.cycle_id).min().unwrap_or_default();
    let mut batch_ids: Vec<&str> = Vec::new();
    let mut devices = Vec::with_capacity(results.len() * 16);
    let mut out = Vec::with_capacity(results.len() * 16 + 32);
    out.push(RESULTS);
    put(&mut out, cycle);
    for result in results {
        if !batch_ids.contains(&result.batch_id.as_str()) {
            batch_ids.push(&result.batch_id);
        }
    }
    put(&mut out, batch_ids.len() as u64);
    for id in &batch_ids {
        put_str(&mut out, id);
    }
    for result in results {
        devices.extend_from_slice(result.device_id.as_bytes());
        let offset = (result.probed_at - base).num_milliseconds().max(0) as u64;
        put(&mut out, offset);
        let outcome = u8::try_from(result.outcome)
            .ok()
            .filter(|o| *o < 15)
            .unwrap_or(15);
        let rtts = [
            result.rtt_min_us,
            result.rtt_avg_us,
            result.rtt_max_us,
            result.rtt_stddev_us,
        ];
        let mut flags = outcome;
        for (bit, rtt) in rtts.iter().enumerate() {
            if rtt.is_some() {
                flags |= 1 << (4 + bit);
            }
        }
        out.push(flags);
        if outcome == 15 {
            put(&mut out, zig(i64::from(result.outcome)));
        }
        put(&mut out, result.cycle_id - cycle);
        let batch = batch_ids
            .iter()
            .position(|b| *b == result.batch_id)
            .unwrap_or_default();
        put(&mut out, batch as u64);
        put(&mut out, u64::from(result.sent));
        put(&mut out, u64::from(result.received));
        put(&mut out, u64::from(result.retries_sent));
        // Min, then each of avg and max as a step from the one before
        // (small numbers, small varints), then jitter.
        let mut previous = 0i64;
        for rtt in rtts.iter().take(3).flatten() {
            put(&mut out, zig(i64::from(*rtt) - previous));
            previous = i64::from(*rtt);
        }
        if let Some(stddev) = result.rtt_stddev_us {
            put(&mut out, u64::from(stddev));
        }
    }
    RawRow {
        probed_at: base,
        executor_id: executor_id.to_string(),
        count: results.len() as u32,
        devices,
        results: out,
    }
}

/// Why stored bytes could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("packed {what} is damaged at byte {at}")]
pub struct Damaged {
    what: &'static str,
    at: usize,
}

/// The results of a raw row; with `device`, only that device's.
pub fn unpack_results(
    probed_at: DateTime<Utc>,
    devices: &[u8],
    results: &[u8],
    device: Option<Uuid>,
) -> Result<Vec<RawResult>, Damaged> {
    let mut r = Reader::new("results", results);
    if r.byte()? != RESULTS {
        return Err(r.damaged());
    }
    let cycle = r.varint()?;
    let mut batch_ids = Vec::new();
    for _ in 0..r.varint()? {
        batch_ids.push(r.string()?);
    }
    let mut out = Vec::new();
    for id in devices.chunks(16) {
        let id = Uuid::from_slice(id).map_err(|_| r.damaged())?;
        let offset = r.varint()?;
        let flags = r.byte()?;
        let outcome = match flags & 0x0f {
            15 => unzig(r.varint()?) as i32,
            code => i32::from(code),
        };
        let cycle_id = cycle + r.varint()?;
        let batch = r.varint()? as usize;
        let sent = r.u32()?;
        let received = r.u32()?;
        let retries_sent = r.u32()?;
        let mut rtts = [None; 4];
        let mut previous = 0i64;
        for (bit, rtt) in rtts.iter_mut().enumerate().take(3) {
            if flags & (1 << (4 + bit)) != 0 {
                previous += unzig(r.varint()?);
                *rtt = Some(u32::try_from(previous).map_err(|_| r.damaged())?);
            }
        }
        if flags & (1 << 7) != 0 {
            rtts[3] = Some(r.u32()?);
        }
        if device.is_some_and(|d| d != id) {
            continue;
        }
        out.push(RawResult {
            device_id: id,
            probed_at: probed_at + TimeDelta::milliseconds(offset as i64),
            cycle_id,
            batch_id: batch_ids.get(batch).cloned().ok_or_else(|| r.damaged())?,
            outcome,
            sent,
            received,
            retries_sent,
            rtt_min_us: rtts[0],
            rtt_avg_us: rtts[1],
            rtt_max_us: rtts[2],
            rtt_stddev_us: rtts[3],
        });
    }
    Ok(out)
}

/// Probes summed over a span: what every rollup tier keeps. Sums and
/// extremes merge exactly, so a coarser tier sums the finer one and
/// answers what the raw results would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Agg {
    pub probes: u32,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Probes with a mean RTT, and the sum of those means.
    pub rtt_samples: u32,
    pub rtt_sum_us: u64,
    pub rtt_min_us: Option<u32>,
    pub rtt_max_us: Option<u32>,
}

impl Agg {
    pub fn add(&mut self, result: &RawResult) {
        self.probes += 1;
        self.packets_sent += u64::from(result.sent);
        self.packets_received += u64::from(result.received);
        if let Some(avg) = result.rtt_avg_us {
            self.rtt_samples += 1;
            self.rtt_sum_us += u64::from(avg);
        }
        self.merge_extremes(result.rtt_min_us, result.rtt_max_us);
    }

    pub fn merge(&mut self, other: &Agg) {
        self.probes += other.probes;
        self.packets_sent += other.packets_sent;
        self.packets_received += other.packets_received;
        self.rtt_samples += other.rtt_samples;
        self.rtt_sum_us += other.rtt_sum_us;
        self.merge_extremes(other.rtt_min_us, other.rtt_max_us);
    }

    fn merge_extremes(&mut self, min: Option<u32>, max: Option<u32>) {
        if let Some(min) = min {
            self.rtt_min_us = Some(self.rtt_min_us.map_or(min, |m| m.min(min)));
        }
        if let Some(max) = max {
            self.rtt_max_us = Some(self.rtt_max_us.map_or(max, |m| m.max(max)));
        }
    }

    /// The mean of the probes' mean RTTs.
    pub fn rtt_avg_us(&self) -> Option<u32> {
        (self.rtt_samples > 0).then(|| {
            (self.rtt_sum_us / u64::from(self.rtt_samples)).min(u64::from(u32::MAX)) as u32
        })
    }
}

/// Packs rollup entries (slot within the row's span, sums), slots ascending.
pub fn pack_rollups(entries: &[(u8, Agg)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 12 + 1);
    out.push(ROLLUPS);
    for (slot, agg) in entries {
        out.push(*slot);
        put(&mut out, u64::from(agg.probes));
        put(&mut out, agg.packets_sent);
        put(&mut out, agg.packets_received);
        put(&mut out, u64::from(agg.rtt_samples));
        put(&mut out, agg.rtt_sum_us);
        put(&mut out, agg.rtt_min_us.map_or(0, |m| u64::from(m) + 1));
        put(
            &mut out,
            agg.rtt_max_us.map_or(0, |m| {
                u64::from(m) - u64::from(agg.rtt_min_us.unwrap_or(0).min(m)) + 1
            }),
        );
    }
    out
}

/// The entries of a rollup row.
pub fn unpack_rollups(bytes: &[u8]) -> Result<Vec<(u8, Agg)>, Damaged> {
    let mut r = Reader::new("rollups", bytes);
    if r.byte()? != ROLLUPS {
        return Err(r.damaged());
    }
    let mut out = Vec::new();
    while !r.done() {
        let slot = r.byte()?;
        let probes = r.u32()?;
        let packets_sent = r.varint()?;
        let packets_received = r.varint()?;
        let rtt_samples = r.u32()?;
        let rtt_sum_us = r.varint()?;
        let rtt_min_us = match r.varint()? {
            0 => None,
            m => Some(u32::try_from(m - 1).map_err(|_| r.damaged())?),
        };
        let rtt_max_us = match r.varint()? {
            0 => None,
            m => Some(
                u32::try_from(m - 1 + u64::from(rtt_min_us.unwrap_or(0)))
                    .map_err(|_| r.damaged())?,
            ),
        };
        out.push((
            slot,
            Agg {
                probes,
                packets_sent,
                packets_received,
                rtt_samples,
                rtt_sum_us,
                rtt_min_us,
                rtt_max_us,
            },
        ));
    }
    Ok(out)
}

pub(super) fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn put_str(out: &mut Vec<u8>, value: &str) {
    put_blob(out, value.as_bytes());
}

pub(super) fn put_blob(out: &mut Vec<u8>, value: &[u8]) {
    put(out, value.len() as u64);
    out.extend_from_slice(value);
}

pub(super) fn zig(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(super) fn unzig(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

pub(super) struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, bytes, at: 0 }
    }

    pub(super) fn damaged(&self) -> Damaged {
        Damaged {
            what: self.what,
            at: self.at,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub(super) fn byte(&mut self) -> Result<u8, Damaged> {
        let byte = *self.bytes.get(self.at).ok_or_else(|| self.damaged())?;
        self.at += 1;
        Ok(byte)
    }

    pub(super) fn varint(&mut self) -> Result<u64, Damaged> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.damaged())
    }

    pub(super) fn u32(&mut self) -> Result<u32, Damaged> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| self.damaged())
    }

    pub(super) fn string(&mut self) -> Result<String, Damaged> {
        let bytes = self.blob()?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.damaged())
    }

    /// Bytes written with their length in front (`put_str`, `put_blob`).
    pub(super) fn blob(&mut self) -> Result<&'a [u8], Damaged> {
        let len = self.varint()? as usize;
        let end = self.at.checked_add(len).ok_or_else(|| self.damaged())?;
        let bytes = self.bytes.get(self.at..end).ok_or_else(|| self.damaged())?;
        self.at = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn result(device: Uuid, probed_at: &str, cycle: u64, outcome: i32) -> RawResult {
        let ok = outcome == 1;
        RawResult {
            device_id: device,
            probed_at: at(probed_at),
            cycle_id: cycle,
            batch_id: format!("b-{}", cycle % 2),
            outcome,
            sent: if ok { 3 } else { 5 },
            received: if ok { 2 } else { 0 },
            retries_sent: if ok { 0 } else { 2 },
            rtt_min_us: ok.then_some(310),
            rtt_avg_us: ok.then_some(45_000),
            rtt_max_us: ok.then_some(61_000),
            rtt_stddev_us: ok.then_some(0),
        }
    }

    #[test]
    fn results_round_trip_and_split_by_block() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let results = vec![
            result(a, "2026-12-04T10:09:55.123Z", 7, 1),
            result(b, "2026-12-04T10:09:58.5Z", 8, 2),
            result(a, "2026-12-04T10:10:01Z", 7, 42),
            RawResult {
                rtt_min_us: Some(0),
                rtt_avg_us: Some(u32::MAX),
                rtt_max_us: None,
                ..result(b, "2026-12-04T10:10:02Z", 9, 1)
            },
        ];
        let rows = pack_results("exec-1", &results);
        assert_eq!(rows.len(), 2, "two blocks, two rows");
        assert_eq!(rows[0].probed_at, at("2026-12-04T10:09:55.123Z"));
        assert_eq!((rows[0].count, rows[1].count), (2, 2));
        let mut back = Vec::new();
        for row in &rows {
            assert_eq!(row.devices.len(), 16 * row.count as usize);
            back.extend(unpack_results(row.probed_at, &row.devices, &row.results, None).unwrap());
        }
        assert_eq!(back, results);
        let only_b = unpack_results(
            rows[1].probed_at,
            &rows[1].devices,
            &rows[1].results,
            Some(b),
        );
        assert_eq!(only_b.unwrap(), vec![results[3].clone()]);
        assert!((results[1].loss_percent() - 100.0).abs() < 1e-9);
        assert!((results[0].loss_percent() - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_result_costs_under_twenty_bytes_besides_its_id() {
        let results: Vec<RawResult> = (0..500)
            .map(|i| {
                let mut r = result(Uuid::new_v4(), "2026-12-04T10:00:00Z", 1000, 1);
                r.probed_at += TimeDelta::milliseconds(i * 17);
                r
            })
            .collect();
        let row = &pack_results("e", &results)[0];
        let per_result = row.results.len() as f64 / 500.0;
        assert!(per_result < 20.0, "{per_result} bytes a result");
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let results = vec![result(Uuid::new_v4(), "2026-12-04T10:00:00Z", 1, 1)];
        let row = &pack_results("e", &results)[0];
        for cut in 0..row.results.len() {
            let _ = unpack_results(row.probed_at, &row.devices, &row.results[..cut], None);
        }
        assert!(unpack_results(row.probed_at, &row.devices, &row.results[..3], None).is_err());
        assert!(unpack_rollups(&[9, 1, 2]).is_err());
        assert!(unpack_rollups(&[ROLLUPS, 0, 0xff]).is_err());
    }

    #[test]
    fn rollups_round_trip_and_merge_exactly() {
        let d = Uuid::new_v4();
        let mut minute = Agg::default();
        let mut hour = Agg::default();
        let rs = [
            result(d, "2026-12-04T10:00:00Z", 1, 1),
            result(d, "2026-12-04T10:00:10Z", 2, 2),
            RawResult {
                rtt_min_us: Some(90),
                rtt_max_us: Some(70_000),
                ..result(d, "2026-12-04T10:00:20Z", 3, 1)
            },
        ];
        for r in &rs {
            minute.add(r);
        }
        hour.merge(&minute);
        hour.merge(&Agg::default());
        assert_eq!(hour, minute);
        assert_eq!(minute.probes, 3);
        assert_eq!((minute.packets_sent, minute.packets_received), (11, 4));
        assert_eq!(
            (minute.rtt_min_us, minute.rtt_max_us),
            (Some(90), Some(70_000))
        );
        assert_eq!(minute.rtt_avg_us(), Some(45_000));
        let entries = vec![(0u8, minute), (9u8, Agg::default())];
        assert_eq!(unpack_rollups(&pack_rollups(&entries)).unwrap(), entries);
    }
}

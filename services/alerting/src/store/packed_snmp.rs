//! The compact forms SNMP polls and their hourly interface rollups are
//! stored in, the same bytes in both backends (`packed.rs` says why rows
//! are packed at all).
//!
//! Raw: one row per device and poll (`snmp_raw`) with two packed values.
//! `poll` holds the outcome, timing and scalar values (each OID, name and
//! instance as a step from the value before: profiles list related OIDs
//! together). `interfaces` holds every interface of the poll, ifIndex
//! ascending: the index as a step from the one before, a byte of statuses,
//! a byte of flags, then only what the flags do not imply — bits per second
//! in and out as integers, the utilisation only when it is not bps / speed
//! (in hundredths of a percent), the speed only when it differs from the
//! interface before, the error and discard deltas only when one is not
//! zero. The row's header and index entry are shared by its interfaces.
//!
//! Hourly: one row per device and UTC day (`interface_rollups_1h`): per
//! interface its speed, which hours it has, and each hour's sums
//! ([`InterfaceAgg`]), again with the common case (always up, every sample
//! rated, no errors, utilisation peak = bps peak / speed) in flags only.
//!
//! What is not kept: raw counters (the current view keeps the last sample,
//! which is all rates need), packet, error and discard rates per second
//! (history sums the deltas instead), the `hc` flag, the executor (in
//! `ingested_batches` as long as the raw rows live). Rates are kept as
//! whole bits per second and hundredths of a percent: history's sums stay
//! exact over what is stored, so every tier answers alike.
//!
//! Measured by `store_bench` (a day of 48-interface switches, PostgreSQL):
//! 13.7 bytes an interface sample at rest with its share of the row, 583 a
//! poll's outcome and 13 scalar values (2,121 as the JSON row before), 14.8
//! an hourly entry; the README has the rest.

use std::collections::BTreeMap;

use netward_shared::proto::v1;
use v1::scalar_value::Value;

use super::packed::{Damaged, Reader, put, put_blob, put_str, unzig, zig};

/// The format byte every packed value starts with.
const POLL: u8 = 1;
const INTERFACES: u8 = 1;
const HOURS: u8 = 1;

/// One interface of one poll as stored: its status and the rates of the
/// interval that ended at the poll (none after the first poll, a reboot or
/// a counter reset), at the stored precision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceSampleRow {
    pub if_index: u32,
    pub admin_status: i32,
    pub oper_status: i32,
    pub speed_bps: Option<u64>,
    /// The `CounterDiscontinuity` found at this poll (0 = none).
    pub discontinuity: i32,
    /// Bits per second, rounded.
    pub in_bps: Option<u64>,
    pub out_bps: Option<u64>,
    /// Utilisation in hundredths of a percent of the speed.
    pub in_utilisation: Option<u32>,
    pub out_utilisation: Option<u32>,
    /// Errors in, out, discards in, out counted in the interval: exact, so
    /// history sums them.
    pub deltas: [Option<i64>; 4],
}

impl InterfaceSampleRow {
    /// The stored form of an interface's status after a poll.
    pub fn of(status: &v1::InterfaceStatus, deltas: [Option<i64>; 4], discontinuity: i32) -> Self {
        Self {
            if_index: status.if_index,
            admin_status: status.admin_status,
            oper_status: status.oper_status,
            speed_bps: status.speed_bps,
            discontinuity,
            in_bps: status.in_bps.and_then(whole),
            out_bps: status.out_bps.and_then(whole),
            in_utilisation: status.in_utilisation_percent.and_then(hundredths),
            out_utilisation: status.out_utilisation_percent.and_then(hundredths),
            deltas,
        }
    }
}

/// A rate rounded to a whole number (none when it is not a number;
/// negative as 0, too large as the largest).
fn whole(value: f64) -> Option<u64> {
    // `as` saturates.
    (!value.is_nan()).then(|| value.round().max(0.0) as u64)
}

/// A percentage in hundredths.
fn hundredths(percent: f64) -> Option<u32> {
    whole(percent * 100.0).map(|h| u32::try_from(h).unwrap_or(u32::MAX))
}

/// Utilisation in hundredths of a percent, as the rates compute it
/// (bits / speed).
fn utilisation_of(bps: Option<u64>, speed: Option<u64>) -> Option<u32> {
    let (bps, speed) = (bps?, speed?);
    (speed > 0).then(|| hundredths(bps as f64 * 100.0 / speed as f64).unwrap_or(u32::MAX))
}

/// Deltas a sample has when none is written: zeros for a rated interval,
/// unknown for one without rates.
fn implied_deltas(rated: bool) -> [Option<i64>; 4] {
    [rated.then_some(0); 4]
}

// The flags byte of an interface in a poll.
const IN_BPS: u8 = 1;
const OUT_BPS: u8 = 1 << 1;
/// Utilisation written (else bps / speed, or none).
const UTILISATION: u8 = 1 << 2;
const SPEED: u8 = 1 << 3;
/// Speed written: it differs from the last one in the row.
const NEW_SPEED: u8 = 1 << 4;
/// Deltas written (else as `implied_deltas`).
const DELTAS: u8 = 1 << 5;
/// Statuses as varints: they do not fit the status byte.
const WIDE: u8 = 1 << 6;

/// The status byte: admin (2 bits), oper (3), discontinuity (3), when
/// each fits.
fn status_byte(admin: i32, oper: i32, discontinuity: i32) -> Option<u8> {
    let fits = (0..4).contains(&admin) && (0..8).contains(&oper) && (0..8).contains(&discontinuity);
    fits.then_some((admin | oper << 2 | discontinuity << 5) as u8)
}

/// Packs the interfaces of one poll (any order; stored by ifIndex).
pub fn pack_interfaces(samples: &[InterfaceSampleRow]) -> Vec<u8> {
    let mut sorted: Vec<&InterfaceSampleRow> = samples.iter().collect();
    sorted.sort_by_key(|s| s.if_index);
    let mut out = Vec::with_capacity(1 + samples.len() * 12);
    out.push(INTERFACES);
    let (mut index, mut speed) = (0u32, None);
    for s in sorted {
        put(&mut out, u64::from(s.if_index - index));
        index = s.if_index;
        let status = status_byte(s.admin_status, s.oper_status, s.discontinuity);
        let utilisation = (s.in_utilisation, s.out_utilisation);
        let implied = (
            utilisation_of(s.in_bps, s.speed_bps),
            utilisation_of(s.out_bps, s.speed_bps),
        );
        let mut flags = 0;
        for (set, bit) in [
            (s.in_bps.is_some(), IN_BPS),
            (s.out_bps.is_some(), OUT_BPS),
            (utilisation != implied, UTILISATION),
            (s.speed_bps.is_some(), SPEED),
            (s.speed_bps.is_some() && s.speed_bps != speed, NEW_SPEED),
            (s.deltas != implied_deltas(s.in_bps.is_some()), DELTAS),
            (status.is_none(), WIDE),
        ] {
            if set {
                flags |= bit;
            }
        }
        out.push(flags);
        match status {
            Some(byte) => out.push(byte),
            None => {
                for value in [s.admin_status, s.oper_status, s.discontinuity] {
                    put(&mut out, zig(i64::from(value)));
                }
            }
        }
        for bps in [s.in_bps, s.out_bps].into_iter().flatten() {
            put(&mut out, bps);
        }
        if flags & UTILISATION != 0 {
            put_opt(&mut out, s.in_utilisation);
            put_opt(&mut out, s.out_utilisation);
        }
        if flags & NEW_SPEED != 0 {
            put(&mut out, s.speed_bps.unwrap_or_default());
        }
        if s.speed_bps.is_some() {
            speed = s.speed_bps;
        }
        if flags & DELTAS != 0 {
            put_deltas(&mut out, s.deltas.map(|d| d.map(zig)));
        }
    }
    out
}

/// The interfaces of one poll, ifIndex ascending.
pub fn unpack_interfaces(bytes: &[u8]) -> Result<Vec<InterfaceSampleRow>, Damaged> {
    let mut r = Reader::new("interfaces", bytes);
    if r.byte()? != INTERFACES {
        return Err(r.damaged());
    }
    let (mut index, mut speed) = (0u32, None);
    let mut out = Vec::new();
    while !r.done() {
        index = index.checked_add(r.u32()?).ok_or_else(|| r.damaged())?;
        let flags = r.byte()?;
        let (admin_status, oper_status, discontinuity) = if flags & WIDE != 0 {
            (r.i32()?, r.i32()?, r.i32()?)
        } else {
            let byte = i32::from(r.byte()?);
            (byte & 3, byte >> 2 & 7, byte >> 5)
        };
        let in_bps = (flags & IN_BPS != 0).then(|| r.varint()).transpose()?;
        let out_bps = (flags & OUT_BPS != 0).then(|| r.varint()).transpose()?;
        let utilisation = if flags & UTILISATION != 0 {
            Some((r.opt_u32()?, r.opt_u32()?))
        } else {
            None
        };
        if flags & NEW_SPEED != 0 {
            speed = Some(r.varint()?);
        }
        let speed_bps = if flags & SPEED != 0 { speed } else { None };
        let (in_utilisation, out_utilisation) = utilisation.unwrap_or((
            utilisation_of(in_bps, speed_bps),
            utilisation_of(out_bps, speed_bps),
        ));
        let deltas = if flags & DELTAS != 0 {
            r.deltas()?.map(|d| d.map(unzig))
        } else {
            implied_deltas(in_bps.is_some())
        };
        out.push(InterfaceSampleRow {
            if_index: index,
            admin_status,
            oper_status,
            speed_bps,
            discontinuity,
            in_bps,
            out_bps,
            in_utilisation,
            out_utilisation,
            deltas,
        });
    }
    Ok(out)
}

/// None as 0, a value as itself plus one.
fn put_opt(out: &mut Vec<u8>, value: Option<u32>) {
    put(out, value.map_or(0, |v| u64::from(v) + 1));
}

/// Four optional values: a byte saying which are there, then those.
fn put_deltas(out: &mut Vec<u8>, values: [Option<u64>; 4]) {
    let present = values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_some())
        .fold(0u8, |mask, (bit, _)| mask | 1 << bit);
    out.push(present);
    for value in values.into_iter().flatten() {
        put(out, value);
    }
}

impl Reader<'_> {
    fn i32(&mut self) -> Result<i32, Damaged> {
        let value = unzig(self.varint()?);
        i32::try_from(value).map_err(|_| self.damaged())
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, Damaged> {
        match self.varint()? {
            0 => Ok(None),
            v => u32::try_from(v - 1).map(Some).map_err(|_| self.damaged()),
        }
    }

    fn deltas(&mut self) -> Result<[Option<u64>; 4], Damaged> {
        let present = self.byte()?;
        let mut values = [None; 4];
        for (bit, value) in values.iter_mut().enumerate() {
            if present & 1 << bit != 0 {
                *value = Some(self.varint()?);
            }
        }
        Ok(values)
    }

    /// A value written as a step from `previous` (`put_shared`).
    fn shared(&mut self, previous: &[u8]) -> Result<Vec<u8>, Damaged> {
        let keep = self.varint()? as usize;
        let mut value = previous.get(..keep).ok_or_else(|| self.damaged())?.to_vec();
        value.extend_from_slice(self.blob()?);
        Ok(value)
    }
}

/// `value` as the length of the prefix it shares with `previous` and the
/// rest.
fn put_shared(out: &mut Vec<u8>, previous: &[u8], value: &[u8]) {
    let keep = previous
        .iter()
        .zip(value)
        .take_while(|(a, b)| a == b)
        .count();
    put(out, keep as u64);
    put_blob(out, &value[keep..]);
}

/// The kind of a scalar's value, as stored (0: none).
fn kind_of(value: &Option<Value>) -> u8 {
    match value {
        None => 0,
        Some(Value::Integer(_)) => 1,
        Some(Value::Counter32(_)) => 2,
        Some(Value::Counter64(_)) => 3,
        Some(Value::Gauge32(_)) => 4,
        Some(Value::Timeticks(_)) => 5,
        Some(Value::Text(_)) => 6,
        Some(Value::Octets(_)) => 7,
        Some(Value::ObjectId(_)) => 8,
        Some(Value::IpAddress(_)) => 9,
        Some(Value::Opaque(_)) => 10,
    }
}

/// A scalar carries an exception (its kind byte's fifth bit).
const EXCEPTION: u8 = 1 << 4;
const PARTIAL: u8 = 1;
const UPTIME: u8 = 1 << 1;

/// Packs what a poll returned besides its interfaces: outcome, partial,
/// sysUpTime, cycle, duration, requests sent, profile, error detail and
/// the scalar values.
pub fn pack_poll(sample: &v1::SnmpSample) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + sample.values.len() * 24);
    out.push(POLL);
    put(&mut out, zig(i64::from(sample.outcome)));
    let mut flags = 0;
    if sample.partial {
        flags |= PARTIAL;
    }
    if sample.sys_uptime_ticks.is_some() {
        flags |= UPTIME;
    }
    out.push(flags);
    if let Some(ticks) = sample.sys_uptime_ticks {
        put(&mut out, u64::from(ticks));
    }
    put(&mut out, sample.cycle_id);
    put(&mut out, u64::from(sample.duration_ms));
    put(&mut out, u64::from(sample.requests_sent));
    put_str(&mut out, &sample.profile);
    put_str(&mut out, &sample.error_detail);
    let (mut oid, mut name): (&[u8], &[u8]) = (&[], &[]);
    for value in &sample.values {
        put_shared(&mut out, oid, value.oid.as_bytes());
        put_shared(&mut out, name, value.name.as_bytes());
        oid = value.oid.as_bytes();
        name = value.name.as_bytes();
        // The instance is nearly always the OID's last arcs.
        let suffix = format!(".{}", value.instance);
        if !value.instance.is_empty() && value.oid.ends_with(&suffix) {
            put(&mut out, value.instance.len() as u64 + 1);
        } else {
            put(&mut out, 0);
            put_str(&mut out, &value.instance);
        }
        let mut kind = kind_of(&value.value);
        if value.exception != 0 {
            kind |= EXCEPTION;
        }
        out.push(kind);
        match &value.value {
            None => {}
            Some(Value::Integer(v)) => put(&mut out, zig(*v)),
            Some(Value::Counter32(v) | Value::Gauge32(v) | Value::Timeticks(v)) => {
                put(&mut out, u64::from(*v))
            }
            Some(Value::Counter64(v)) => put(&mut out, *v),
            Some(Value::Text(v) | Value::ObjectId(v) | Value::IpAddress(v)) => put_str(&mut out, v),
            Some(Value::Octets(v) | Value::Opaque(v)) => put_blob(&mut out, v),
        }
        if value.exception != 0 {
            put(&mut out, zig(i64::from(value.exception)));
        }
    }
    out
}

/// What [`pack_poll`] kept, as a sample (no device, time or interfaces).
pub fn unpack_poll(bytes: &[u8]) -> Result<v1::SnmpSample, Damaged> {
    let mut r = Reader::new("poll", bytes);
    if r.byte()? != POLL {
        return Err(r.damaged());
    }
    let mut sample = v1::SnmpSample {
        outcome: r.i32()?,
        ..Default::default()
    };
    let flags = r.byte()?;
    sample.partial = flags & PARTIAL != 0;
    if flags & UPTIME != 0 {
        sample.sys_uptime_ticks = Some(r.u32()?);
    }
    sample.cycle_id = r.varint()?;
    sample.duration_ms = r.u32()?;
    sample.requests_sent = r.u32()?;
    sample.profile = r.string()?;
    sample.error_detail = r.string()?;
    let (mut oid, mut name) = (Vec::new(), Vec::new());
    while !r.done() {
        oid = r.shared(&oid)?;
        name = r.shared(&name)?;
        let text = |bytes: &[u8], r: &Reader<'_>| {
            String::from_utf8(bytes.to_vec()).map_err(|_| r.damaged())
        };
        let instance = match r.varint()? as usize {
            0 => r.string()?,
            n => {
                let from = oid.len().checked_sub(n - 1).ok_or_else(|| r.damaged())?;
                text(&oid[from..], &r)?
            }
        };
        let kind = r.byte()?;
        let value = match kind & !EXCEPTION {
            0 => None,
            1 => Some(Value::Integer(unzig(r.varint()?))),
            2 => Some(Value::Counter32(r.u32()?)),
            3 => Some(Value::Counter64(r.varint()?)),
            4 => Some(Value::Gauge32(r.u32()?)),
            5 => Some(Value::Timeticks(r.u32()?)),
            6 => Some(Value::Text(r.string()?)),
            7 => Some(Value::Octets(r.blob()?.to_vec())),
            8 => Some(Value::ObjectId(r.string()?)),
            9 => Some(Value::IpAddress(r.string()?)),
            10 => Some(Value::Opaque(r.blob()?.to_vec())),
            _ => return Err(r.damaged()),
        };
        let exception = if kind & EXCEPTION != 0 { r.i32()? } else { 0 };
        sample.values.push(v1::ScalarValue {
            oid: text(&oid, &r)?,
            name: text(&name, &r)?,
            instance,
            value,
            exception,
        });
    }
    Ok(sample)
}

/// One interface's samples summed over an hour (or any span): what the
/// hourly tier keeps and history answers from. Sums and extremes merge
/// exactly, so hours summed give what the raw samples give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterfaceAgg {
    pub samples: u32,
    /// Samples with oper status UP.
    pub oper_up: u32,
    /// Samples with both rates, and the sums of those rates.
    pub rate_samples: u32,
    pub in_bps_sum: u64,
    pub out_bps_sum: u64,
    pub in_bps_max: Option<u64>,
    pub out_bps_max: Option<u64>,
    /// Peaks in hundredths of a percent.
    pub in_utilisation_max: Option<u32>,
    pub out_utilisation_max: Option<u32>,
    /// Errors in, out, discards in, out.
    pub deltas: [i64; 4],
}

impl InterfaceAgg {
    pub fn add(&mut self, sample: &InterfaceSampleRow) {
        self.samples += 1;
        self.oper_up += u32::from(sample.oper_status == v1::IfOperStatus::Up as i32);
        if let (Some(i), Some(o)) = (sample.in_bps, sample.out_bps) {
            self.rate_samples += 1;
            self.in_bps_sum = self.in_bps_sum.saturating_add(i);
            self.out_bps_sum = self.out_bps_sum.saturating_add(o);
        }
        self.merge_peaks(
            [sample.in_bps, sample.out_bps],
            [sample.in_utilisation, sample.out_utilisation],
        );
        for (sum, delta) in self.deltas.iter_mut().zip(sample.deltas) {
            *sum = sum.saturating_add(delta.unwrap_or(0));
        }
    }

    pub fn merge(&mut self, other: &InterfaceAgg) {
        self.samples += other.samples;
        self.oper_up += other.oper_up;
        self.rate_samples += other.rate_samples;
        self.in_bps_sum = self.in_bps_sum.saturating_add(other.in_bps_sum);
        self.out_bps_sum = self.out_bps_sum.saturating_add(other.out_bps_sum);
        self.merge_peaks(
            [other.in_bps_max, other.out_bps_max],
            [other.in_utilisation_max, other.out_utilisation_max],
        );
        for (sum, delta) in self.deltas.iter_mut().zip(other.deltas) {
            *sum = sum.saturating_add(delta);
        }
    }

    fn merge_peaks(&mut self, bps: [Option<u64>; 2], utilisation: [Option<u32>; 2]) {
        fn max<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            a.into_iter().chain(b).max()
        }
        self.in_bps_max = max(self.in_bps_max, bps[0]);
        self.out_bps_max = max(self.out_bps_max, bps[1]);
        self.in_utilisation_max = max(self.in_utilisation_max, utilisation[0]);
        self.out_utilisation_max = max(self.out_utilisation_max, utilisation[1]);
    }
}

/// One interface's hours within a day row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceHours {
    pub if_index: u32,
    /// The last speed of the day: utilisation peaks that are bps peak /
    /// speed are not written.
    pub speed_bps: Option<u64>,
    /// (hour of the day, sums), hours ascending.
    pub hours: Vec<(u8, InterfaceAgg)>,
}

// The flags byte of an hourly entry.
const ALL_UP: u8 = 1;
const ALL_DOWN: u8 = 1 << 1;
const ALL_RATED: u8 = 1 << 2;
const IN_MAX: u8 = 1 << 3;
const OUT_MAX: u8 = 1 << 4;
/// Utilisation peaks written (else bps peak / speed, or none).
const PEAKS: u8 = 1 << 5;
/// Deltas written (else zeros).
const ERRORS: u8 = 1 << 6;

/// Packs the hours of one device's day, interfaces by ifIndex.
pub fn pack_hours(interfaces: &[InterfaceHours]) -> Vec<u8> {
    let mut sorted: Vec<&InterfaceHours> = interfaces.iter().collect();
    sorted.sort_by_key(|i| i.if_index);
    let mut out = Vec::with_capacity(1 + interfaces.len() * 24 * 12);
    out.push(HOURS);
    let (mut index, mut speed) = (0u32, None);
    for interface in sorted {
        put(&mut out, u64::from(interface.if_index - index));
        index = interface.if_index;
        let known = interface.speed_bps.is_some();
        let new = known && interface.speed_bps != speed;
        out.push(u8::from(known) | u8::from(new) << 1);
        if new {
            put(&mut out, interface.speed_bps.unwrap_or_default());
            speed = interface.speed_bps;
        }
        // Entries by hour, one each (what the mask can say).
        let hours: BTreeMap<u8, &InterfaceAgg> = interface
            .hours
            .iter()
            .filter(|(hour, _)| *hour < 24)
            .map(|(hour, agg)| (*hour, agg))
            .collect();
        put(
            &mut out,
            hours.keys().fold(0u64, |mask, hour| mask | 1 << hour),
        );
        for agg in hours.values() {
            pack_hour(&mut out, agg, interface.speed_bps);
        }
    }
    out
}

fn pack_hour(out: &mut Vec<u8>, agg: &InterfaceAgg, speed: Option<u64>) {
    let peaks = (agg.in_utilisation_max, agg.out_utilisation_max);
    let implied = (
        utilisation_of(agg.in_bps_max, speed),
        utilisation_of(agg.out_bps_max, speed),
    );
    let mut flags = 0;
    for (set, bit) in [
        (agg.oper_up == agg.samples, ALL_UP),
        (agg.oper_up == 0, ALL_DOWN),
        (agg.rate_samples == agg.samples, ALL_RATED),
        (agg.in_bps_max.is_some(), IN_MAX),
        (agg.out_bps_max.is_some(), OUT_MAX),
        (peaks != implied, PEAKS),
        (agg.deltas != [0; 4], ERRORS),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.push(flags);
    put(out, u64::from(agg.samples));
    if flags & (ALL_UP | ALL_DOWN) == 0 {
        put(out, u64::from(agg.oper_up));
    }
    if flags & ALL_RATED == 0 {
        put(out, u64::from(agg.rate_samples));
    }
    put(out, agg.in_bps_sum);
    put(out, agg.out_bps_sum);
    for max in [agg.in_bps_max, agg.out_bps_max].into_iter().flatten() {
        put(out, max);
    }
    if flags & PEAKS != 0 {
        put_opt(out, agg.in_utilisation_max);
        put_opt(out, agg.out_utilisation_max);
    }
    if flags & ERRORS != 0 {
        for delta in agg.deltas {
            put(out, zig(delta));
        }
    }
}

/// The hours of a day row, interfaces by ifIndex.
pub fn unpack_hours(bytes: &[u8]) -> Result<Vec<InterfaceHours>, Damaged> {
    let mut r = Reader::new("interface hours", bytes);
    if r.byte()? != HOURS {
        return Err(r.damaged());
    }
    let (mut index, mut speed) = (0u32, None);
    let mut out = Vec::new();
    while !r.done() {
        index = index.checked_add(r.u32()?).ok_or_else(|| r.damaged())?;
        let flags = r.byte()?;
        if flags & 2 != 0 {
            speed = Some(r.varint()?);
        }
        let speed_bps = if flags & 1 != 0 { speed } else { None };
        let mask = r.varint()?;
        let mut hours = Vec::new();
        for hour in (0..24u8).filter(|h| mask & 1 << h != 0) {
            hours.push((hour, r.hour(speed_bps)?));
        }
        out.push(InterfaceHours {
            if_index: index,
            speed_bps,
            hours,
        });
    }
    Ok(out)
}

impl Reader<'_> {
    fn hour(&mut self, speed: Option<u64>) -> Result<InterfaceAgg, Damaged> {
        let flags = self.byte()?;
        let samples = self.u32()?;
        let oper_up = match (flags & ALL_UP != 0, flags & ALL_DOWN != 0) {
            (true, _) => samples,
            (false, true) => 0,
            (false, false) => self.u32()?,
        };
        let rate_samples = if flags & ALL_RATED != 0 {
            samples
        } else {
            self.u32()?
        };
        let in_bps_sum = self.varint()?;
        let out_bps_sum = self.varint()?;
        let in_bps_max = (flags & IN_MAX != 0).then(|| self.varint()).transpose()?;
        let out_bps_max = (flags & OUT_MAX != 0).then(|| self.varint()).transpose()?;
        let (in_utilisation_max, out_utilisation_max) = if flags & PEAKS != 0 {
            (self.opt_u32()?, self.opt_u32()?)
        } else {
            (
                utilisation_of(in_bps_max, speed),
                utilisation_of(out_bps_max, speed),
            )
        };
        let mut deltas = [0; 4];
        if flags & ERRORS != 0 {
            for delta in &mut deltas {
                *delta = unzig(self.varint()?);
            }
        }
        Ok(InterfaceAgg {
            samples,
            oper_up,
            rate_samples,
            in_bps_sum,
            out_bps_sum,
            in_bps_max,
            out_bps_max,
            in_utilisation_max,
            out_utilisation_max,
            deltas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(if_index: u32, bps: u64, speed: u64) -> InterfaceSampleRow {
        InterfaceSampleRow {
            if_index,
            admin_status: 1,
            oper_status: 1,
            speed_bps: Some(speed),
            discontinuity: 0,
            in_bps: Some(bps),
            out_bps: Some(bps / 3),
            in_utilisation: utilisation_of(Some(bps), Some(speed)),
            out_utilisation: utilisation_of(Some(bps / 3), Some(speed)),
            deltas: [Some(0); 4],
        }
    }

    #[test]
    fn interfaces_round_trip_whatever_they_hold() {
        let samples = vec![
            up(10_001, 123_456_789, 1_000_000_000),
            up(3, 0, 1_000_000_000),
            // Unrated (first poll), down, speed unknown.
            InterfaceSampleRow {
                if_index: 7,
                admin_status: 2,
                oper_status: 7,
                discontinuity: 2,
                ..Default::default()
            },
            // Utilisation that is not bps / speed, odd deltas, statuses
            // beyond the byte.
            InterfaceSampleRow {
                if_index: 8,
                admin_status: 9,
                oper_status: -1,
                speed_bps: Some(u64::MAX),
                discontinuity: 4,
                in_bps: Some(u64::MAX),
                out_bps: None,
                in_utilisation: Some(7),
                out_utilisation: None,
                deltas: [Some(1), None, Some(i64::MIN), Some(i64::MAX)],
            },
            up(9, 5, 0),
        ];
        let packed = pack_interfaces(&samples);
        let mut sorted = samples.clone();
        sorted.sort_by_key(|s| s.if_index);
        assert_eq!(unpack_interfaces(&packed).unwrap(), sorted);
    }

    #[test]
    fn a_busy_interface_costs_a_dozen_bytes_an_idle_one_five() {
        let busy: Vec<InterfaceSampleRow> = (1..=48)
            .map(|i| up(i, 100_000_000 + u64::from(i) * 7_919, 1_000_000_000))
            .collect();
        let idle: Vec<InterfaceSampleRow> = (1..=48).map(|i| up(i, 0, 1_000_000_000)).collect();
        let per = |rows: &[InterfaceSampleRow]| (pack_interfaces(rows).len() - 1) as f64 / 48.0;
        assert!(per(&busy) <= 12.0, "{} bytes a busy interface", per(&busy));
        // The first interface names the speed.
        assert!(per(&idle) <= 5.2, "{} bytes an idle interface", per(&idle));
    }

    #[test]
    fn rates_are_rounded_to_whole_bits_and_hundredths() {
        let status = v1::InterfaceStatus {
            if_index: 2,
            admin_status: 1,
            oper_status: 1,
            speed_bps: Some(100_000_000),
            in_bps: Some(172.8),
            out_bps: Some(-3.0),
            in_utilisation_percent: Some(0.000_172_8),
            out_utilisation_percent: Some(f64::NAN),
            ..Default::default()
        };
        let row = InterfaceSampleRow::of(&status, [Some(1), None, None, None], 1);
        assert_eq!((row.in_bps, row.out_bps), (Some(173), Some(0)));
        assert_eq!((row.in_utilisation, row.out_utilisation), (Some(0), None));
        assert_eq!(
            unpack_interfaces(&pack_interfaces(std::slice::from_ref(&row))).unwrap(),
            [row]
        );
    }

    #[test]
    fn polls_round_trip_with_their_scalars() {
        let scalar = |oid: &str, name: &str, instance: &str, value| v1::ScalarValue {
            oid: oid.into(),
            name: name.into(),
            instance: instance.into(),
            value,
            exception: 0,
        };
        let sample = v1::SnmpSample {
            outcome: v1::SnmpOutcome::AgentError as i32,
            partial: true,
            sys_uptime_ticks: Some(u32::MAX),
            cycle_id: 1 << 40,
            duration_ms: 840,
            requests_sent: 6,
            profile: "cisco".into(),
            error_detail: "tooBig on ifXTable".into(),
            values: vec![
                scalar(
                    "1.3.6.1.2.1.1.1.0",
                    "sysDescr",
                    "0",
                    Some(Value::Text("Cisco IOS Software".into())),
                ),
                scalar(
                    "1.3.6.1.2.1.1.3.0",
                    "sysUpTime",
                    "0",
                    Some(Value::Timeticks(7)),
                ),
                scalar(
                    "1.3.6.1.4.1.9.9.48.1.1.1.5.1",
                    "ciscoMemoryPoolUsed",
                    "1",
                    Some(Value::Gauge32(61_234_567)),
                ),
                scalar(
                    "1.3.6.1.4.1.9.9.48.1.1.1.5.2",
                    "ciscoMemoryPoolUsed",
                    "2",
                    Some(Value::Counter64(u64::MAX)),
                ),
                scalar(
                    "1.3.6.1.2.1.2.2.1.6.3",
                    "",
                    "x",
                    Some(Value::Octets(vec![0, 0xff])),
                ),
                scalar("1.3.6.1.2.1.1.9", "é", "", Some(Value::Integer(-5))),
                v1::ScalarValue {
                    exception: v1::SnmpValueException::NoSuchObject as i32,
                    ..scalar("1.3.6.1.2.1.1.6.0", "sysLocation", "0", None)
                },
                scalar(
                    "1.3.6.1.2.1.1.2.0",
                    "sysObjectID",
                    "0",
                    Some(Value::ObjectId("1.3.6.1.4.1.9.1.1208".into())),
                ),
                scalar(
                    "1.3.6.1.2.1.4.20.1.1.10.0.0.1",
                    "ip",
                    "10.0.0.1",
                    Some(Value::IpAddress("10.0.0.1".into())),
                ),
                scalar(
                    "1.3.6.1.4.1.2021.11.9",
                    "opaque",
                    "9",
                    Some(Value::Opaque(vec![1])),
                ),
                scalar("1.3.6.1.2.1.1.7", "c32", "7", Some(Value::Counter32(3))),
            ],
            ..Default::default()
        };
        let packed = pack_poll(&sample);
        assert_eq!(unpack_poll(&packed).unwrap(), sample);
        let values = v1::SnmpSample {
            values: sample.values.clone(),
            ..Default::default()
        };
        let protobuf = prost::Message::encoded_len(&values);
        assert!(
            packed.len() < protobuf,
            "{} bytes packed, {protobuf} as protobuf",
            packed.len()
        );
    }

    #[test]
    fn hours_round_trip_and_merge_exactly() {
        let mut samples: Vec<InterfaceSampleRow> =
            (0..60).map(|i| up(5, 1_000 * i, 10_000_000)).collect();
        samples[3].oper_status = 2;
        samples[4].in_bps = None;
        samples[5].deltas = [Some(2), None, Some(0), Some(-1)];
        let mut hour = InterfaceAgg::default();
        let (mut first, mut second) = (InterfaceAgg::default(), InterfaceAgg::default());
        for (i, sample) in samples.iter().enumerate() {
            hour.add(sample);
            if i < 30 {
                first.add(sample)
            } else {
                second.add(sample)
            }
        }
        first.merge(&second);
        assert_eq!(first, hour);
        assert_eq!(
            (hour.samples, hour.oper_up, hour.rate_samples),
            (60, 59, 59)
        );
        assert_eq!(hour.deltas, [2, 0, 0, -1]);
        assert_eq!(hour.in_bps_max, Some(59_000));
        let mut quiet = InterfaceAgg::default();
        for i in 0..60 {
            quiet.add(&up(1, i, 1_000_000_000));
        }
        let day = vec![
            InterfaceHours {
                if_index: 5,
                speed_bps: Some(10_000_000),
                hours: vec![(0, hour), (23, quiet)],
            },
            InterfaceHours {
                if_index: 1,
                speed_bps: None,
                hours: (0..24).map(|h| (h, quiet)).collect(),
            },
            InterfaceHours {
                if_index: 2,
                speed_bps: Some(1),
                hours: vec![(7, InterfaceAgg::default())],
            },
        ];
        let mut sorted = day.clone();
        sorted.sort_by_key(|i| i.if_index);
        assert_eq!(unpack_hours(&pack_hours(&day)).unwrap(), sorted);
        let quiet_day = pack_hours(&[InterfaceHours {
            if_index: 1,
            speed_bps: Some(1_000_000_000),
            hours: (0..24).map(|h| (h, quiet)).collect(),
        }]);
        assert!(
            quiet_day.len() < 24 * 9,
            "{} bytes for a quiet day",
            quiet_day.len()
        );
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let packed = pack_interfaces(&[up(1, 5, 10), up(2, 500_000, 10_000_000)]);
        for cut in 1..packed.len() {
            let _ = unpack_interfaces(&packed[..cut]);
        }
        assert!(unpack_interfaces(&packed[..3]).is_err());
        assert!(unpack_interfaces(&[9]).is_err());
        let poll = pack_poll(&v1::SnmpSample {
            values: vec![v1::ScalarValue {
                oid: "1.3.6.1.2.1.1.5.0".into(),
                instance: "0".into(),
                value: Some(Value::Text("sw1".into())),
                ..Default::default()
            }],
            ..Default::default()
        });
        for cut in 0..poll.len() {
            let _ = unpack_poll(&poll[..cut]);
        }
        assert!(unpack_poll(&poll[..3]).is_err());
        let mut bad = poll.clone();
        let last = bad.len() - 5;
        bad[last] = 0x7f;
        let _ = unpack_poll(&bad);
        let hours = pack_hours(&[InterfaceHours {
            if_index: 1,
            speed_bps: Some(5),
            hours: vec![(3, InterfaceAgg::default())],
        }]);
        for cut in 1..hours.len() {
            let _ = unpack_hours(&hours[..cut]);
        }
    }
}

//! Interface counter rates between two SNMP polls, without impossible
//! spikes: a counter wrap, a reboot, a missed poll, a reset and a 32-bit
//! delta that cannot be known are told apart, and only real rates are numbers.
//! Pure: the caller passes both polls and keeps the newer one as the next base.
//!
//! Per device pair of polls, [`Interval::between`] judges the time between
//! them once (a reboot or a clock that did not advance voids every counter);
//! [`interface_rates`] then judges each counter of an interface with
//! [`counter_rate`] against what the link could have carried in that time.

use std::fmt;
use std::time::{Duration, SystemTime};

use netward_shared::proto::v1;
use serde::{Deserialize, Serialize};

/// sysUpTime and ifLastChange are TimeTicks: hundredths of a second.
const TICK: Duration = Duration::from_millis(10);

/// The smallest frame any common link carries, in bits, which bounds the
/// packet-like counters. Ethernet's minimum (84 bytes on the wire) would be
/// tighter, but PPP and HDLC links carry 40-byte packets with a few bytes of
/// framing, and a bound that is too tight would drop real rates.
const MIN_FRAME_BITS: f64 = 40.0 * 8.0;

/// How rates are judged (the `[alerting.snmp_rates]` settings, once wired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateConfig {
    /// The SNMP poll interval the rates expect (the planner's SNMP cycle).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Polls further apart than this many intervals make a gap: the rate
    /// is then an average over the whole gap, and flagged as such.
    pub gap_factor: f64,
    /// How far sysUpTime's advance may differ from the wall clock's before
    /// the agent counts as restarted. sysUpTime is read within the poll, up
    /// to its deadline after `polled_at`, so the two clocks never agree exactly.
    #[serde(with = "humantime_serde")]
    pub uptime_slack: Duration,
    /// Rates up to this multiple of the interface speed are believed: a
    /// saturated link reads a little above 100 % when the time between the
    /// agent's two counter reads differs from the time between the polls.
    pub speed_margin: f64,
    /// The line rate assumed, in bits per second, when the interface speed
    /// is unknown (unset or 0, as many virtual interfaces report).
    pub unknown_speed_bps: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(60),
            gap_factor: 1.5,
            uptime_slack: Duration::from_secs(10),
            speed_margin: 1.2,
            unknown_speed_bps: 100_000_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SNMP rate settings: {0}")]
pub struct InvalidRateConfig(&'static str);

impl RateConfig {
    pub fn validate(&self) -> Result<(), InvalidRateConfig> {
        if self.poll_interval.is_zero() {
            return Err(InvalidRateConfig("poll_interval must be above zero"));
        }
        // Below 1 every on-time poll would be a gap.
        if !(self.gap_factor.is_finite() && self.gap_factor >= 1.0) {
            return Err(InvalidRateConfig("gap_factor must be at least 1"));
        }
        // Below 1 a saturated link would lose its rate.
        if !(self.speed_margin.is_finite() && self.speed_margin >= 1.0) {
            return Err(InvalidRateConfig("speed_margin must be at least 1"));
        }
        if self.unknown_speed_bps == 0 {
            return Err(InvalidRateConfig("unknown_speed_bps must be above zero"));
        }
        Ok(())
    }
}

/// Where an SNMP counter wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterWidth {
    /// Counter32: wraps at 2^32.
    Bits32,
    /// Counter64 (the IF-MIB HC columns): wraps at 2^64.
    Bits64,
}

impl CounterWidth {
    /// The width of an interface's octet and unicast packet counters.
    pub fn of_hc(hc: bool) -> Self {
        if hc { Self::Bits64 } else { Self::Bits32 }
    }

    fn modulus(self) -> u128 {
        match self {
            Self::Bits32 => 1 << 32,
            Self::Bits64 => 1 << 64,
        }
    }
}

/// One read of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub value: u64,
    pub width: CounterWidth,
}

/// The most a counter can plausibly advance over one interval: the line
/// rate (with the margin) times the time the interface could carry traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    pub max_delta: f64,
    /// True when the counter can really run at that bound: octets and
    /// packets of a link of known speed. A loose bound (an assumed speed;
    /// errors and discards, which never run at line rate in practice and
    /// have no 64-bit column to fall back on) rejects impossible deltas but
    /// never makes a 32-bit delta unknowable.
    pub tight: bool,
}

/// Why a counter has no rate for an interval. The current reading is the
/// new base either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Discontinuity {
    /// The agent restarted between the polls (sysUpTime went back, or
    /// advanced less than the wall clock): counters started again.
    Reboot,
    /// The poll is not later than the base (a duplicate, a replay, or the
    /// poller's clock stepped back). Keep whichever poll is newer as the base.
    TimeNotAdvanced,
    /// The counter switched between the 32-bit and the 64-bit column.
    WidthChanged,
    /// A value does not fit its width (a 32-bit counter above 2^32 - 1).
    OutOfRange,
    /// The counter went back with no reboot and no plausible wrap: "clear
    /// counters", an interface re-initialised, or an agent bug.
    Reset,
    /// The counter went forward faster than the link can carry: an agent
    /// glitch, or a speed the interface misreports (tunnels often do).
    BeyondLineRate,
    /// A 32-bit counter the link could wrap more than once in the interval
    /// (a 10G link wraps a 32-bit octet counter in 3.4 s): any delta plus a
    /// multiple of 2^32 fits, so the rate cannot be known.
    Ambiguous,
}

impl Discontinuity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reboot => "reboot",
            Self::TimeNotAdvanced => "time_not_advanced",
            Self::WidthChanged => "width_changed",
            Self::OutOfRange => "out_of_range",
            Self::Reset => "reset",
            Self::BeyondLineRate => "beyond_line_rate",
            Self::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for Discontinuity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one counter over one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterRate {
    /// Units per second over the interval; `wrapped` when the counter
    /// wrapped once at its width on the way.
    Rate { per_second: f64, wrapped: bool },
    /// No rate: why.
    Unknown(Discontinuity),
    /// One of the two polls did not read the counter (a partial poll, or
    /// an agent without the column).
    Missing,
}

impl CounterRate {
    pub fn per_second(self) -> Option<f64> {
        match self {
            Self::Rate { per_second, .. } => Some(per_second),
            Self::Unknown(_) | Self::Missing => None,
        }
    }

    fn scaled(self, factor: f64) -> Self {
        match self {
            Self::Rate {
                per_second,
                wrapped,
            } => Self::Rate {
                per_second: per_second * factor,
                wrapped,
            },
            other => other,
        }
    }
}

/// The rate of one counter between two readings `elapsed` apart, or why
/// there is none. `elapsed` must be above zero (see [`Interval::between`]).
pub fn counter_rate(
    prev: Reading,
    cur: Reading,
    elapsed: Duration,
    capacity: Capacity,
) -> CounterRate {
    use Discontinuity as D;
    if prev.width != cur.width {
        return CounterRate::Unknown(D::WidthChanged);
    }
    let modulus = cur.width.modulus();
    if u128::from(prev.value) >= modulus || u128::from(cur.value) >= modulus {
        return CounterRate::Unknown(D::OutOfRange);
    }
    if elapsed.is_zero() {
        return CounterRate::Unknown(D::TimeNotAdvanced);
    }
    // When the link can carry a whole modulus in the interval, the counter
    // may have wrapped any number of times, whichever way it moved.
    if capacity.tight && capacity.max_delta >= modulus as f64 {
        return CounterRate::Unknown(D::Ambiguous);
    }
    if cur.value >= prev.value {
        let delta = (cur.value - prev.value) as f64;
        if delta > capacity.max_delta {
            // Forwards faster than the link: a glitch, not traffic.
            return CounterRate::Unknown(D::BeyondLineRate);
        }
        return CounterRate::Rate {
            per_second: delta / elapsed.as_secs_f64(),
            wrapped: false,
        };
    }
    let delta = (modulus - u128::from(prev.value) + u128::from(cur.value)) as f64;
    // A loose bound cannot tell a wrap from a reset; then a move back by
    // more than half the range counts as a reset, because a wrong reset
    // loses one interval while a wrong wrap is a spike.
    let wrap_limit = if capacity.tight {
        capacity.max_delta
    } else {
        capacity.max_delta.min(modulus as f64 / 2.0)
    };
    if delta > wrap_limit {
        // A wrap faster than the link is no wrap: the counter was reset.
        return CounterRate::Unknown(D::Reset);
    }
    CounterRate::Rate {
        per_second: delta / elapsed.as_secs_f64(),
        wrapped: true,
    }
}

/// When a device was polled, by the poller's clock and by the agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollClock {
    pub polled_at: SystemTime,
    /// sysUpTime in TimeTicks, when it was read.
    pub sys_uptime_ticks: Option<u32>,
}

impl PollClock {
    /// The clock of a sample; `None` when it has no valid `polled_at`.
    pub fn of(sample: &v1::SnmpSample) -> Option<Self> {
        let polled_at = SystemTime::try_from(sample.polled_at?).ok()?;
        Some(Self {
            polled_at,
            sys_uptime_ticks: sample.sys_uptime_ticks,
        })
    }
}

/// The time between two polls of a device, judged once for all its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Rates can be computed over `elapsed`. `gap` when polls were missed:
    /// the rates average over the whole gap, so they are not a fresh
    /// measurement (a one-minute burst spread over ten minutes reads low).
    Span { elapsed: Duration, gap: bool },
    /// The agent restarted in between: no rates, the new values are the base.
    Reboot,
    /// The second poll is not later than the first: no rates.
    TimeNotAdvanced,
}

impl Interval {
    pub fn between(prev: PollClock, cur: PollClock, config: &RateConfig) -> Self {
        let elapsed = match cur.polled_at.duration_since(prev.polled_at) {
            Ok(elapsed) if !elapsed.is_zero() => elapsed,
            _ => return Self::TimeNotAdvanced,
        };
        if let (Some(before), Some(after)) = (prev.sys_uptime_ticks, cur.sys_uptime_ticks) {
            // Agent clocks drift from the poller's; allow 0.1 % on long gaps.
            let slack = config.uptime_slack + elapsed / 1000;
            if restarted(before, after, elapsed, slack) {
                return Self::Reboot;
            }
        }
        let gap = elapsed.as_secs_f64() > config.poll_interval.as_secs_f64() * config.gap_factor;
        Self::Span { elapsed, gap }
    }

    /// The interval-wide reason for no rates, if any.
    pub fn discontinuity(self) -> Option<Discontinuity> {
        match self {
            Self::Span { .. } => None,
            Self::Reboot => Some(Discontinuity::Reboot),
            Self::TimeNotAdvanced => Some(Discontinuity::TimeNotAdvanced),
        }
    }
}

/// Whether sysUpTime says the agent restarted within `elapsed`.
fn restarted(before: u32, after: u32, elapsed: Duration, slack: Duration) -> bool {
    let advance = TICK * after.wrapping_sub(before);
    if after < before {
        // sysUpTime is 32-bit and wraps after ~497 days; that wrap, unlike
        // a restart, advances the clock (modulo 2^32) as far as the wall's.
        advance.abs_diff(elapsed) > slack
    } else {
        // Also a restart: the agent came back early in the interval and its
        // uptime grew past the old value, yet by less than the wall clock.
        advance + slack < elapsed
    }
}

/// One of the counters of an IF-MIB interface row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    InOctets,
    OutOctets,
    InUnicastPackets,
    OutUnicastPackets,
    InErrors,
    OutErrors,
    InDiscards,
    OutDiscards,
}

impl Counter {
    pub const ALL: [Counter; 8] = [
        Self::InOctets,
        Self::OutOctets,
        Self::InUnicastPackets,
        Self::OutUnicastPackets,
        Self::InErrors,
        Self::OutErrors,
        Self::InDiscards,
        Self::OutDiscards,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InOctets => "in_octets",
            Self::OutOctets => "out_octets",
            Self::InUnicastPackets => "in_unicast_packets",
            Self::OutUnicastPackets => "out_unicast_packets",
            Self::InErrors => "in_errors",
            Self::OutErrors => "out_errors",
            Self::InDiscards => "in_discards",
            Self::OutDiscards => "out_discards",
        }
    }

    fn reading(self, sample: &v1::InterfaceSample) -> Option<Reading> {
        let (value, width) = match self {
            Self::InOctets => (sample.in_octets, CounterWidth::of_hc(sample.hc)),
            Self::OutOctets => (sample.out_octets, CounterWidth::of_hc(sample.hc)),
            Self::InUnicastPackets => (sample.in_unicast_packets, CounterWidth::of_hc(sample.hc)),
            Self::OutUnicastPackets => (sample.out_unicast_packets, CounterWidth::of_hc(sample.hc)),
            // IF-MIB has no HC columns for these.
            Self::InErrors => (sample.in_errors, CounterWidth::Bits32),
            Self::OutErrors => (sample.out_errors, CounterWidth::Bits32),
            Self::InDiscards => (sample.in_discards, CounterWidth::Bits32),
            Self::OutDiscards => (sample.out_discards, CounterWidth::Bits32),
        };
        Some(Reading {
            value: value?,
            width,
        })
    }

    /// Octets and unicast packets: the counters that run near line rate.
    fn is_traffic(self) -> bool {
        matches!(
            self,
            Self::InOctets | Self::OutOctets | Self::InUnicastPackets | Self::OutUnicastPackets
        )
    }

    /// The most this counter advances per second at `line_bps`.
    fn per_second_at(self, line_bps: f64) -> f64 {
        match self {
            Self::InOctets | Self::OutOctets => line_bps / 8.0,
            _ => line_bps / MIN_FRAME_BITS,
        }
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One poll of one interface: the device's clock and the interface's row.
#[derive(Debug, Clone, Copy)]
pub struct InterfacePoll<'a> {
    pub clock: PollClock,
    pub sample: &'a v1::InterfaceSample,
}

/// The rates of one interface between two polls.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceRates {
    pub if_index: u32,
    pub interval: Interval,
    /// The speed the rates were judged against, in bits per second; `None`
    /// when unknown (then `unknown_speed_bps` bounded them).
    pub speed_bps: Option<u64>,
    /// ifLastChange moved within the interval: the interface went up or
    /// down, and a [`Discontinuity::Reset`] is likely its re-initialisation.
    pub interface_changed: bool,
    /// Bits per second received (the octet counter × 8).
    pub in_bits: CounterRate,
    /// Bits per second sent (the octet counter × 8).
    pub out_bits: CounterRate,
    pub in_unicast_packets: CounterRate,
    pub out_unicast_packets: CounterRate,
    pub in_errors: CounterRate,
    pub out_errors: CounterRate,
    pub in_discards: CounterRate,
    pub out_discards: CounterRate,
    /// `in_bits` as a percentage of the speed, when both are known. Not
    /// capped: up to `speed_margin` × 100 % passes (see [`RateConfig`]).
    pub in_utilisation_percent: Option<f64>,
    pub out_utilisation_percent: Option<f64>,
    pub summary: Summary,
}

impl InterfaceRates {
    /// The verdict on one counter (octets in bits per second).
    pub fn get(&self, counter: Counter) -> CounterRate {
        match counter {
            Counter::InOctets => self.in_bits,
            Counter::OutOctets => self.out_bits,
            Counter::InUnicastPackets => self.in_unicast_packets,
            Counter::OutUnicastPackets => self.out_unicast_packets,
            Counter::InErrors => self.in_errors,
            Counter::OutErrors => self.out_errors,
            Counter::InDiscards => self.in_discards,
            Counter::OutDiscards => self.out_discards,
        }
    }
}

/// What was unusual about an interface's interval, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The rates average over missed polls.
    pub gap: bool,
    /// Counters that wrapped once (their rates are valid).
    pub wrapped: Vec<Counter>,
    /// Counters without a rate, and why (missing counters are not listed).
    pub discontinuities: Vec<(Counter, Discontinuity)>,
}

impl Summary {
    /// Nothing unusual: every counter read has a fresh rate.
    pub fn is_clean(&self) -> bool {
        !self.gap && self.wrapped.is_empty() && self.discontinuities.is_empty()
    }
}

/// Every rate of one interface between two polls. `speed_bps` is the
/// interface's last known speed: the poller reads it only when it refreshes
/// labels, so pass the stored one when neither sample carries it.
pub fn interface_rates(
    prev: InterfacePoll<'_>,
    cur: InterfacePoll<'_>,
    speed_bps: Option<u64>,
    config: &RateConfig,
) -> InterfaceRates {
    let interval = Interval::between(prev.clock, cur.clock, config);
    let speed_bps = speed_bps.filter(|&speed| speed > 0);
    let judge = |counter: Counter| -> CounterRate {
        let (Some(before), Some(after)) =
            (counter.reading(prev.sample), counter.reading(cur.sample))
        else {
            return CounterRate::Missing;
        };
        let elapsed = match interval {
            Interval::Span { elapsed, .. } => elapsed,
            Interval::Reboot => return CounterRate::Unknown(Discontinuity::Reboot),
            Interval::TimeNotAdvanced => {
                return CounterRate::Unknown(Discontinuity::TimeNotAdvanced);
            }
        };
        let capacity = match speed_bps {
            // Packets discarded on the way out came in on other interfaces,
            // possibly faster ones: this link's speed does not bound them.
            Some(speed) if counter != Counter::OutDiscards => Capacity {
                max_delta: counter.per_second_at(speed as f64)
                    * config.speed_margin
                    * active_time(prev, cur, elapsed, config.uptime_slack).as_secs_f64(),
                tight: counter.is_traffic(),
            },
            _ => Capacity {
                max_delta: counter.per_second_at(config.unknown_speed_bps as f64)
                    * config.speed_margin
                    * elapsed.as_secs_f64(),
                tight: false,
            },
        };
        counter_rate(before, after, elapsed, capacity)
    };

    let in_bits = judge(Counter::InOctets).scaled(8.0);
    let out_bits = judge(Counter::OutOctets).scaled(8.0);
    let utilisation = |bits: CounterRate| Some(bits.per_second()? / speed_bps? as f64 * 100.0);
    let mut rates = InterfaceRates {
        if_index: cur.sample.if_index,
        interval,
        speed_bps,
        interface_changed: interface_changed(prev, cur),
        in_bits,
        out_bits,
        in_unicast_packets: judge(Counter::InUnicastPackets),
        out_unicast_packets: judge(Counter::OutUnicastPackets),
        in_errors: judge(Counter::InErrors),
        out_errors: judge(Counter::OutErrors),
        in_discards: judge(Counter::InDiscards),
        out_discards: judge(Counter::OutDiscards),
        in_utilisation_percent: utilisation(in_bits),
        out_utilisation_percent: utilisation(out_bits),
        summary: Summary::default(),
    };
    rates.summary.gap = matches!(interval, Interval::Span { gap: true, .. });
    for counter in Counter::ALL {
        match rates.get(counter) {
            CounterRate::Rate { wrapped: true, .. } => rates.summary.wrapped.push(counter),
            CounterRate::Unknown(why) => rates.summary.discontinuities.push((counter, why)),
            CounterRate::Rate { .. } | CounterRate::Missing => {}
        }
    }
    rates
}

/// How long the interface could have carried traffic between the polls:
/// the whole interval, unless ifLastChange shows it came up or went down
/// in between (then only the part it was up, plus the slack). This keeps a
/// 32-bit counter of a fast link that just came up from being unknowable.
fn active_time(
    prev: InterfacePoll<'_>,
    cur: InterfacePoll<'_>,
    elapsed: Duration,
    slack: Duration,
) -> Duration {
    let (Some(before), Some(after), Some(change)) = (
        prev.clock.sys_uptime_ticks,
        cur.clock.sys_uptime_ticks,
        cur.sample.last_change_ticks,
    ) else {
        return elapsed;
    };
    // One change is all ifLastChange remembers; with the same status at both
    // ends the interface may have been up on either side of it.
    let up_ticks = match (link(prev.sample), link(cur.sample)) {
        _ if !(before < change && change <= after) => return elapsed,
        (Some(false), Some(true)) => after - change,
        (Some(true), Some(false)) => change - before,
        _ => return elapsed,
    };
    elapsed.min(TICK * up_ticks + slack)
}

/// Whether the interface passes traffic: `None` when its status says
/// neither (testing, unknown, dormant, not reported).
fn link(sample: &v1::InterfaceSample) -> Option<bool> {
    use v1::IfOperStatus as S;
    match sample.oper_status() {
        S::Up => Some(true),
        S::Down | S::NotPresent | S::LowerLayerDown => Some(false),
        S::Unspecified | S::Testing | S::Unknown | S::Dormant => None,
    }
}

/// Whether ifLastChange moved between the polls.
fn interface_changed(prev: InterfacePoll<'_>, cur: InterfacePoll<'_>) -> bool {
    let Some(change) = cur.sample.last_change_ticks else {
        return false;
    };
    let within = match (prev.clock.sys_uptime_ticks, cur.clock.sys_uptime_ticks) {
        (Some(before), Some(after)) => before < change && change <= after,
        _ => false,
    };
    within
        || prev
            .sample
            .last_change_ticks
            .is_some_and(|old| old != change)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::UNIX_EPOCH;

    const M32: u64 = 1 << 32;
    const MBPS: u64 = 1_000_000;
    const GBPS: u64 = 1_000_000_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_750_000_000 + seconds)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn r32(value: u64) -> Reading {
        Reading {
            value,
            width: CounterWidth::Bits32,
        }
    }

    fn r64(value: u64) -> Reading {
        Reading {
            value,
            width: CounterWidth::Bits64,
        }
    }

    /// Octet capacity of a link of `bps` over `s` seconds, with the default margin.
    fn octets(bps: u64, s: u64) -> Capacity {
        Capacity {
            max_delta: bps as f64 / 8.0 * 1.2 * s as f64,
            tight: true,
        }
    }

    fn unknown(s: u64) -> Capacity {
        Capacity {
            max_delta: 100e9 / 8.0 * 1.2 * s as f64,
            tight: false,
        }
    }

    fn rate(per_second: f64, wrapped: bool) -> CounterRate {
        CounterRate::Rate {
            per_second,
            wrapped,
        }
    }

    fn close(a: CounterRate, b: CounterRate) -> bool {
        match (a, b) {
            (
                CounterRate::Rate {
                    per_second: x,
                    wrapped: w,
                },
                CounterRate::Rate {
                    per_second: y,
                    wrapped: v,
                },
            ) => w == v && (x - y).abs() <= 1e-6 * y.abs().max(1.0),
            _ => a == b,
        }
    }

    #[test]
    fn counter_rate_tells_wraps_resets_and_glitches_apart() {
        use Discontinuity as D;
        let cases: &[(&str, Reading, Reading, u64, Capacity, CounterRate)] = &[
            (
                "64-bit, forward",
                r64(1_000),
                r64(7_501_000),
                60,
                octets(100 * MBPS, 60),
                rate(125_000.0, false),
            ),
            (
                "32-bit wrap at 2^32",
                r32(M32 - 1_000),
                r32(5_000),
                60,
                octets(100 * MBPS, 60),
                rate(100.0, true),
            ),
            (
                "64-bit wrap at 2^64",
                r64(u64::MAX - 999),
                r64(1_000),
                60,
                octets(100 * MBPS, 60),
                rate(2_000.0 / 60.0, true),
            ),
            (
                "64-bit goes back: a wrap would be 2^64 bytes, so a reset",
                r64(1_000_000_000_000),
                r64(1_000_000),
                60,
                octets(10 * GBPS, 60),
                CounterRate::Unknown(D::Reset),
            ),
            (
                "32-bit goes back further than a 10M link carries in a minute",
                r32(3_000_000_000),
                r32(1_000),
                60,
                octets(10 * MBPS, 60),
                CounterRate::Unknown(D::Reset),
            ),
            (
                "32-bit wrap exactly at the capacity is believed",
                r32(M32 - 45_000_000),
                r32(45_000_000),
                60,
                octets(10 * MBPS, 60),
                rate(1_500_000.0, true),
            ),
            (
                "forward faster than the link: a glitch, no spike",
                r64(0),
                r64(1 << 40),
                60,
                octets(GBPS, 60),
                CounterRate::Unknown(D::BeyondLineRate),
            ),
            (
                "32-bit on 10G: wraps in 3.4 s, so the delta is unknowable",
                r32(1_000),
                r32(2_000),
                60,
                octets(10 * GBPS, 60),
                CounterRate::Unknown(D::Ambiguous),
            ),
            (
                "32-bit on 1G over 60 s: line rate could wrap it twice",
                r32(1_000),
                r32(2_000),
                60,
                octets(GBPS, 60),
                CounterRate::Unknown(D::Ambiguous),
            ),
            (
                "64-bit on 100G stays knowable",
                r64(1_000),
                r64(2_000),
                60,
                octets(100 * GBPS, 60),
                rate(1_000.0 / 60.0, false),
            ),
            (
                "speed unknown: a 32-bit wrap within the assumed bound",
                r32(M32 - 600),
                r32(600),
                60,
                unknown(60),
                rate(20.0, true),
            ),
            (
                "speed unknown: 32-bit back by more than half its range is a reset",
                r32(1_000_000),
                r32(10),
                60,
                unknown(60),
                CounterRate::Unknown(D::Reset),
            ),
            (
                "errors are never unknowable, and a cleared one is a reset",
                r32(5),
                r32(0),
                60,
                Capacity {
                    max_delta: 100e9 / MIN_FRAME_BITS * 1.2 * 60.0,
                    tight: false,
                },
                CounterRate::Unknown(D::Reset),
            ),
            (
                "speed unknown: a 64-bit reset is still caught",
                r64(5_000_000_000_000),
                r64(10),
                60,
                unknown(60),
                CounterRate::Unknown(D::Reset),
            ),
            (
                "HC to 32-bit between polls",
                r64(5_000),
                r32(6_000),
                60,
                octets(100 * MBPS, 60),
                CounterRate::Unknown(D::WidthChanged),
            ),
            (
                "a 32-bit counter above 2^32 - 1",
                r32(1_000),
                r32(M32),
                60,
                octets(100 * MBPS, 60),
                CounterRate::Unknown(D::OutOfRange),
            ),
            (
                "no time between the readings",
                r64(1_000),
                r64(2_000),
                0,
                octets(100 * MBPS, 60),
                CounterRate::Unknown(D::TimeNotAdvanced),
            ),
            (
                "unchanged",
                r32(42),
                r32(42),
                60,
                octets(100 * MBPS, 60),
                rate(0.0, false),
            ),
        ];
        for (name, prev, cur, elapsed, capacity, expected) in cases {
            let got = counter_rate(*prev, *cur, secs(*elapsed), *capacity);
            assert!(
                close(got, *expected),
                "{name}: got {got:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn interval_tells_reboots_gaps_and_uptime_wraps_apart() {
        let config = RateConfig::default();
        let clock = |t: u64, ticks: Option<u32>| PollClock {
            polled_at: at(t),
            sys_uptime_ticks: ticks,
        };
        let span = |s: u64, gap: bool| Interval::Span {
            elapsed: secs(s),
            gap,
        };
        let u32max = u32::MAX;
        let cases: &[(&str, PollClock, PollClock, Interval)] = &[
            (
                "on time",
                clock(0, Some(100_000)),
                clock(60, Some(106_000)),
                span(60, false),
            ),
            (
                "sysUpTime went back: reboot",
                clock(0, Some(9_000_000)),
                clock(60, Some(2_500)),
                Interval::Reboot,
            ),
            (
                "restarted early, uptime grew past the old value but less than the wall clock",
                clock(0, Some(500)),
                clock(60, Some(3_000)),
                Interval::Reboot,
            ),
            (
                "sysUpTime wrapped at 2^32 ticks after 497 days: no reboot",
                clock(0, Some(u32max - 2_999)),
                clock(60, Some(3_000)),
                span(60, false),
            ),
            (
                "a slow poll: uptime lags the wall clock within the slack",
                clock(0, Some(100_000)),
                clock(60, Some(105_500)),
                span(60, false),
            ),
            (
                "two polls missed: averaged over the gap",
                clock(0, Some(100_000)),
                clock(180, Some(118_000)),
                span(180, true),
            ),
            (
                "90 s is within 1.5 intervals",
                clock(0, Some(100_000)),
                clock(90, Some(109_000)),
                span(90, false),
            ),
            (
                "a day-long gap with an agent clock 40 s slow is no reboot",
                clock(0, Some(100_000)),
                clock(86_400, Some(100_000 + 8_636_000)),
                span(86_400, true),
            ),
            (
                "no sysUpTime: reboots cannot be seen",
                clock(0, None),
                clock(60, Some(10)),
                span(60, false),
            ),
            (
                "same instant",
                clock(60, Some(100)),
                clock(60, Some(100)),
                Interval::TimeNotAdvanced,
            ),
            (
                "older than the base (a replay)",
                clock(120, Some(100)),
                clock(60, Some(100)),
                Interval::TimeNotAdvanced,
            ),
        ];
        for (name, prev, cur, expected) in cases {
            let got = Interval::between(*prev, *cur, &config);
            assert_eq!(got, *expected, "{name}");
        }
    }

    /// An interface row; `counters` in the order of [`Counter::ALL`].
    fn row(hc: bool, status: v1::IfOperStatus, counters: [u64; 8]) -> v1::InterfaceSample {
        v1::InterfaceSample {
            if_index: 3,
            hc,
            oper_status: status as i32,
            admin_status: v1::IfAdminStatus::Up as i32,
            in_octets: Some(counters[0]),
            out_octets: Some(counters[1]),
            in_unicast_packets: Some(counters[2]),
            out_unicast_packets: Some(counters[3]),
            in_errors: Some(counters[4]),
            out_errors: Some(counters[5]),
            in_discards: Some(counters[6]),
            out_discards: Some(counters[7]),
            ..Default::default()
        }
    }

    fn poll(t: u64, ticks: Option<u32>, sample: &v1::InterfaceSample) -> InterfacePoll<'_> {
        InterfacePoll {
            clock: PollClock {
                polled_at: at(t),
                sys_uptime_ticks: ticks,
            },
            sample,
        }
    }

    const UP: v1::IfOperStatus = v1::IfOperStatus::Up;

    #[test]
    fn utilisation_is_bits_over_speed() {
        let config = RateConfig::default();
        // 45 Mbit/s in and 10 Mbit/s out on a 100M link, over 60 s.
        let before = row(true, UP, [1_000, 2_000, 0, 0, 0, 0, 0, 0]);
        let after = row(
            true,
            UP,
            [
                1_000 + 337_500_000,
                2_000 + 75_000_000,
                60_000,
                6_000,
                6,
                0,
                12,
                0,
            ],
        );
        let rates = interface_rates(
            poll(0, Some(1_000), &before),
            poll(60, Some(7_000), &after),
            Some(100 * MBPS),
            &config,
        );
        assert!(close(rates.in_bits, rate(45e6, false)));
        assert!(close(rates.out_bits, rate(10e6, false)));
        assert!(close(rates.in_unicast_packets, rate(1_000.0, false)));
        assert!(close(rates.out_unicast_packets, rate(100.0, false)));
        assert!(close(rates.in_errors, rate(0.1, false)));
        assert!(close(rates.in_discards, rate(0.2, false)));
        assert_eq!(rates.out_errors, rate(0.0, false));
        let in_pct = rates.in_utilisation_percent.unwrap();
        let out_pct = rates.out_utilisation_percent.unwrap();
        assert!((in_pct - 45.0).abs() < 1e-9, "{in_pct}");
        assert!((out_pct - 10.0).abs() < 1e-9, "{out_pct}");
        assert!(rates.summary.is_clean(), "{:?}", rates.summary);
        assert!(!rates.interface_changed);
    }

    #[test]
    fn speed_unknown_gives_rates_but_no_utilisation() {
        let config = RateConfig::default();
        let before = row(false, UP, [M32 - 1_000, 0, 0, 0, 0, 0, 0, 0]);
        let after = row(false, UP, [5_000, 6_000, 0, 0, 0, 0, 0, 0]);
        for speed in [None, Some(0)] {
            let rates = interface_rates(
                poll(0, Some(1_000), &before),
                poll(60, Some(7_000), &after),
                speed,
                &config,
            );
            assert_eq!(rates.speed_bps, None);
            assert!(close(rates.in_bits, rate(800.0, true)));
            assert!(close(rates.out_bits, rate(800.0, false)));
            assert_eq!(rates.in_utilisation_percent, None);
            assert_eq!(rates.out_utilisation_percent, None);
            assert_eq!(rates.summary.wrapped, vec![Counter::InOctets]);
        }
    }

    #[test]
    fn interface_discontinuities_are_reported_never_spiked() {
        use Discontinuity as D;
        let config = RateConfig::default();
        let base = [5_000_000_000, 9_000_000_000, 70_000, 80_000, 5, 6, 7, 8];
        struct Case {
            name: &'static str,
            prev: v1::InterfaceSample,
            cur: v1::InterfaceSample,
            prev_ticks: Option<u32>,
            cur_ticks: Option<u32>,
            elapsed: u64,
            speed: Option<u64>,
            check: fn(&InterfaceRates),
        }
        let cases = [
            Case {
                name: "reboot: every counter rebased, none spiked",
                prev: row(true, UP, base),
                cur: row(true, UP, [10, 20, 1, 2, 0, 0, 0, 0]),
                prev_ticks: Some(50_000_000),
                cur_ticks: Some(3_000),
                elapsed: 60,
                speed: Some(GBPS),
                check: |r| {
                    assert_eq!(r.interval, Interval::Reboot);
                    let all: Vec<_> = Counter::ALL.iter().map(|c| (*c, D::Reboot)).collect();
                    assert_eq!(r.summary.discontinuities, all);
                    assert_eq!(r.in_utilisation_percent, None);
                },
            },
            Case {
                name: "missed polls: averaged over the real time, flagged",
                prev: row(true, UP, base),
                cur: row(
                    true,
                    UP,
                    [
                        base[0] + 1_800_000_000,
                        base[1],
                        base[2] + 18_000,
                        base[3],
                        5,
                        6,
                        7,
                        8,
                    ],
                ),
                prev_ticks: Some(1_000_000),
                cur_ticks: Some(1_018_000),
                elapsed: 180,
                speed: Some(GBPS),
                check: |r| {
                    assert!(close(r.in_bits, rate(80e6, false)), "{:?}", r.in_bits);
                    assert!(close(r.in_unicast_packets, rate(100.0, false)));
                    assert!(r.summary.gap);
                    assert!(r.summary.discontinuities.is_empty());
                },
            },
            Case {
                name: "clear counters: back without a reboot, no spike",
                prev: row(true, UP, base),
                cur: row(true, UP, [1_000, 2_000, 10, 20, 0, 0, 0, 0]),
                prev_ticks: Some(1_000_000),
                cur_ticks: Some(1_006_000),
                elapsed: 60,
                speed: Some(100 * MBPS),
                check: |r| {
                    let all: Vec<_> = Counter::ALL.iter().map(|c| (*c, D::Reset)).collect();
                    assert_eq!(r.summary.discontinuities, all);
                    assert_eq!(r.in_bits.per_second(), None);
                    assert!(!r.interface_changed);
                },
            },
            Case {
                name: "32-bit octets on 10G are unknowable; its packets are not",
                prev: row(false, UP, [1_000, 1_000, 1_000, 1_000, 0, 0, 0, 0]),
                cur: row(false, UP, [9_000, 9_000, 7_000, 7_000, 0, 0, 0, 0]),
                prev_ticks: Some(1_000_000),
                cur_ticks: Some(1_006_000),
                elapsed: 60,
                speed: Some(10 * GBPS),
                check: |r| {
                    assert_eq!(r.in_bits, CounterRate::Unknown(D::Ambiguous));
                    assert_eq!(r.out_bits, CounterRate::Unknown(D::Ambiguous));
                    assert!(close(r.in_unicast_packets, rate(100.0, false)));
                },
            },
            Case {
                name: "HC to 32-bit: octets and packets rebased, errors go on",
                prev: row(true, UP, base),
                cur: row(false, UP, [1_000, 1_000, 1_000, 1_000, 65, 6, 7, 8]),
                prev_ticks: Some(1_000_000),
                cur_ticks: Some(1_006_000),
                elapsed: 60,
                speed: Some(100 * MBPS),
                check: |r| {
                    assert_eq!(r.in_bits, CounterRate::Unknown(D::WidthChanged));
                    assert_eq!(r.out_unicast_packets, CounterRate::Unknown(D::WidthChanged));
                    assert!(close(r.in_errors, rate(1.0, false)));
                },
            },
            Case {
                name: "output drops are not bounded by the link's own speed",
                prev: row(true, UP, [0; 8]),
                cur: row(true, UP, [0, 0, 0, 0, 0, 0, 500_000_000, 500_000_000]),
                prev_ticks: Some(1_000_000),
                cur_ticks: Some(1_006_000),
                elapsed: 60,
                speed: Some(GBPS),
                check: |r| {
                    assert_eq!(r.in_discards, CounterRate::Unknown(D::BeyondLineRate));
                    assert!(close(r.out_discards, rate(500e6 / 60.0, false)));
                },
            },
            Case {
                name: "poll out of order",
                prev: row(true, UP, base),
                cur: row(true, UP, base),
                prev_ticks: None,
                cur_ticks: None,
                elapsed: 0,
                speed: Some(GBPS),
                check: |r| {
                    assert_eq!(r.interval, Interval::TimeNotAdvanced);
                    assert_eq!(r.in_bits, CounterRate::Unknown(D::TimeNotAdvanced));
                },
            },
        ];
        for case in cases {
            let rates = interface_rates(
                poll(0, case.prev_ticks, &case.prev),
                poll(case.elapsed, case.cur_ticks, &case.cur),
                case.speed,
                &config,
            );
            // Whatever happened, no number above what the link can carry.
            for counter in Counter::ALL {
                if let (Some(value), Some(speed)) = (rates.get(counter).per_second(), case.speed)
                    && matches!(counter, Counter::InOctets | Counter::OutOctets)
                {
                    assert!(
                        value <= speed as f64 * 1.2,
                        "{}: {counter} {value}",
                        case.name
                    );
                }
            }
            (case.check)(&rates);
        }
    }

    #[test]
    fn a_link_that_came_up_late_in_the_interval_has_a_knowable_32_bit_delta() {
        let config = RateConfig::default();
        let down = v1::IfOperStatus::Down;
        let mut before = row(false, down, [1_000, 1_000, 0, 0, 0, 0, 0, 0]);
        before.last_change_ticks = Some(500_000);
        // Came up 10 s before the second poll and carried 100 MB since.
        let mut after = row(false, UP, [100_001_000, 1_000, 0, 0, 0, 0, 0, 0]);
        after.last_change_ticks = Some(1_005_000);
        let rates = interface_rates(
            poll(0, Some(1_000_000), &before),
            poll(60, Some(1_006_000), &after),
            Some(GBPS),
            &config,
        );
        // A 1G link could wrap 2^32 bytes twice in 60 s, not in 10 s (+ slack).
        assert!(close(rates.in_bits, rate(100e6 * 8.0 / 60.0, false)));
        assert!(rates.interface_changed);

        // Up at both polls: the whole minute counts, and the delta is unknowable.
        let before = row(false, UP, [1_000, 1_000, 0, 0, 0, 0, 0, 0]);
        let rates = interface_rates(
            poll(0, Some(1_000_000), &before),
            poll(60, Some(1_006_000), &after),
            Some(GBPS),
            &config,
        );
        assert_eq!(
            rates.in_bits,
            CounterRate::Unknown(Discontinuity::Ambiguous)
        );
    }

    #[test]
    fn a_counter_missing_from_either_poll_is_missing_not_a_discontinuity() {
        let config = RateConfig::default();
        let before = row(true, UP, [1_000; 8]);
        let mut after = row(true, UP, [2_000; 8]);
        after.in_errors = None;
        let rates = interface_rates(
            poll(0, Some(1_000), &before),
            poll(60, Some(7_000), &after),
            Some(GBPS),
            &config,
        );
        assert_eq!(rates.in_errors, CounterRate::Missing);
        assert!(rates.summary.is_clean());
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(RateConfig::default().validate(), Ok(()));
        let bad = [
            RateConfig {
                poll_interval: Duration::ZERO,
                ..RateConfig::default()
            },
            RateConfig {
                gap_factor: 0.9,
                ..RateConfig::default()
            },
            RateConfig {
                speed_margin: f64::NAN,
                ..RateConfig::default()
            },
            RateConfig {
                unknown_speed_bps: 0,
                ..RateConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn poll_clock_needs_polled_at() {
        let mut sample = v1::SnmpSample {
            sys_uptime_ticks: Some(42),
            ..Default::default()
        };
        assert_eq!(PollClock::of(&sample), None);
        sample.polled_at = Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        });
        assert_eq!(
            PollClock::of(&sample),
            Some(PollClock {
                polled_at: at(0),
                sys_uptime_ticks: Some(42),
            })
        );
    }
}

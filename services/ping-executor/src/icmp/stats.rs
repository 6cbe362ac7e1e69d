//! Statistics: the engine's counters and metric handles, the sliding window
//! behind the heartbeat's "recent" figures, and the tally of one probe's
//! packets.

use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};

use super::engine::PacketResult;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) unreachable: AtomicU64,
    pub(super) stray: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) send_errors: AtomicU64,
    pub(super) budget_waits: AtomicU64,
    pub(super) budget_wait_ns: AtomicU64,
    pub(super) lag_ns: AtomicU64,
    pub(super) lag_max_ns: AtomicU64,
}

/// Metric handles resolved once (the recorder must be installed before the
/// engine is created), so the per-packet path does no key lookups.
pub(super) struct Metrics {
    pub(super) probe_ok: Counter,
    pub(super) probe_timeout: Counter,
    pub(super) probe_unreachable: Counter,
    pub(super) probe_send_error: Counter,
    pub(super) probe_invalid: Counter,
    pub(super) packets_sent: Counter,
    pub(super) replies: Counter,
    pub(super) stray: Counter,
    pub(super) send_errors: Counter,
    pub(super) rtt: Histogram,
    pub(super) pacing_wait: Histogram,
    pub(super) scheduler_lag: Histogram,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let probes = |outcome: &'static str| metrics::counter!("executor_probes_total", "outcome" => outcome);
        Self {
            probe_ok: probes("ok"),
            probe_timeout: probes("timeout"),
            probe_unreachable: probes("unreachable"),
            probe_send_error: probes("send_error"),
            probe_invalid: probes("invalid_address"),
            packets_sent: metrics::counter!("executor_packets_sent_total"),
            replies: metrics::counter!("executor_replies_total"),
            stray: metrics::counter!("executor_stray_replies_total"),
            send_errors: metrics::counter!("executor_send_errors_total"),
            rtt: metrics::histogram!("executor_rtt_seconds"),
            pacing_wait: metrics::histogram!("executor_pacing_wait_seconds"),
            scheduler_lag: metrics::histogram!("executor_scheduler_lag_seconds"),
        }
    }
}

/// Sends and worst lag per second over the last `WINDOW_SECS` seconds, for
/// the heartbeat's "recent" figures.
pub(super) const WINDOW_SECS: u64 = 10;

pub(super) struct RecentWindow {
    pub(super) epoch: Instant,
    /// (second since epoch, packets sent, worst lag in ns) per slot.
    pub(super) slots: Mutex<[(u64, u64, u64); WINDOW_SECS as usize]>,
}

impl RecentWindow {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            slots: Mutex::new([(u64::MAX, 0, 0); WINDOW_SECS as usize]),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    /// Adds `sent` packets whose worst lag was `lag`, sent around `at`.
    pub(super) fn record(&self, at: Instant, sent: u64, lag: Duration) {
        let second = self.second(at);
        let mut slots = lock(&self.slots);
        let slot = &mut slots[(second % WINDOW_SECS) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot.1 += sent;
        slot.2 = slot.2.max(nanos(lag));
    }

    /// Slots of the last `WINDOW_SECS` seconds, the current one included.
    fn recent(&self, now: Instant) -> Vec<(u64, u64, u64)> {
        let second = self.second(now);
        lock(&self.slots)
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 + WINDOW_SECS > second && s.0 <= second)
            .copied()
            .collect()
    }

    pub(super) fn pps(&self, now: Instant) -> f64 {
        let sent: u64 = self.recent(now).iter().map(|s| s.1).sum();
        // Early in the engine's life the window is shorter than 10 s.
        let span = now
            .saturating_duration_since(self.epoch)
            .as_secs_f64()
            .clamp(1.0, WINDOW_SECS as f64);
        sent as f64 / span
    }

    pub(super) fn lag_max(&self, now: Instant) -> Duration {
        Duration::from_nanos(self.recent(now).iter().map(|s| s.2).max().unwrap_or(0))
    }
}

/// What the packets of one probe added up to.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) sent: u32,
    pub(super) received: u32,
    pub(super) unreachable: u32,
    pub(super) rtts: Vec<Duration>,
    pub(super) send_error: Option<String>,
}

impl Tally {
    pub(super) fn add(&mut self, results: Vec<PacketResult>) {
        for result in results {
            match result {
                PacketResult::Reply(rtt) => {
                    self.sent += 1;
                    self.received += 1;
                    self.rtts.push(rtt);
                }
                PacketResult::Unreachable => {
                    self.sent += 1;
                    self.unreachable += 1;
                }
                PacketResult::Timeout => self.sent += 1,
                PacketResult::SendError(e) => self.send_error = Some(e),
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only plain counters live behind these locks; a poisoned one is still
    // consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

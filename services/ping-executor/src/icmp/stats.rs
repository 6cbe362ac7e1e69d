//! Statistics: the engine's counters and metric handles, the sliding window
//! behind the heartbeat's "recent" figures, and the tally of one probe's
//! packets.

use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};

use super::ProbeFailure;
use super::engine::PacketResult;
use super::quote::Unmatched;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) unreachable: AtomicU64,
    pub(super) stray: AtomicU64,
    /// ICMP errors quoting no waiting request of ours.
    pub(super) errors_unmatched: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) send_errors: AtomicU64,
    /// Requests the kernel refused because the path is gone.
    pub(super) no_route: AtomicU64,
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
    pub(super) probe_no_route: Counter,
    pub(super) probe_invalid: Counter,
    pub(super) packets_sent: Counter,
    pub(super) replies: Counter,
    pub(super) stray: Counter,
    /// By `Unmatched::ALL` order.
    errors_unmatched: [Counter; 3],
    pub(super) send_errors: Counter,
    pub(super) no_route: Counter,
    pub(super) rtt: Histogram,
    pub(super) pacing_wait: Histogram,
    pub(super) scheduler_lag: Histogram,
}

impl Metrics {
    pub(super) fn errors_unmatched(&self, unmatched: Unmatched) -> &Counter {
        &self.errors_unmatched[unmatched as usize]
    }

    pub(super) fn new() -> Self {
        let probes = |outcome: &'static str| metrics::counter!("netward_executor_probes_total", "outcome" => outcome);
        Self {
            probe_ok: probes("ok"),
            probe_timeout: probes("timeout"),
            probe_unreachable: probes("unreachable"),
            probe_send_error: probes("send_error"),
            probe_no_route: probes("no_route"),
            probe_invalid: probes("invalid_address"),
            packets_sent: metrics::counter!("netward_executor_packets_sent_total"),
            replies: metrics::counter!("netward_executor_replies_total"),
            stray: metrics::counter!("netward_executor_stray_replies_total"),
            errors_unmatched: Unmatched::ALL.map(|unmatched| {
                metrics::counter!(
                    "netward_executor_icmp_errors_unmatched_total",
                    "reason" => unmatched.reason()
                )
            }),
            send_errors: metrics::counter!("netward_executor_send_errors_total"),
            no_route: metrics::counter!("netward_executor_packets_no_route_total"),
            rtt: metrics::histogram!("netward_executor_rtt_seconds"),
            pacing_wait: metrics::histogram!("netward_executor_pacing_wait_seconds"),
            scheduler_lag: metrics::histogram!("netward_executor_scheduler_lag_seconds"),
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
    /// Requests sent, those the kernel refused for a path error included
    /// (sent and lost, as fping counts them).
    pub(super) sent: u32,
    pub(super) received: u32,
    pub(super) unreachable: u32,
    /// Requests that went out and got nothing back.
    pub(super) timeouts: u32,
    pub(super) rtts: Vec<Duration>,
    /// The last path error a refused request got.
    pub(super) no_route: Option<String>,
    /// The last local error of a request that was not sent.
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
                PacketResult::Timeout => {
                    self.sent += 1;
                    self.timeouts += 1;
                }
                PacketResult::NoRoute(e) => {
                    self.sent += 1;
                    self.no_route = Some(e);
                }
                PacketResult::SendError(e) => self.send_error = Some(e),
            }
        }
    }

    /// The probe's verdict: any reply makes it a success; otherwise what the
    /// device's side said (an ICMP error, then silence of a request that did
    /// go out) outranks a path refused here, and that outranks this host's
    /// own trouble, the only inconclusive outcome.
    pub(super) fn verdict(&self) -> Option<ProbeFailure> {
        if self.received > 0 {
            None
        } else if self.unreachable > 0 {
            Some(ProbeFailure::Unreachable)
        } else if self.timeouts > 0 {
            Some(ProbeFailure::Timeout)
        } else if let Some(detail) = &self.no_route {
            Some(ProbeFailure::NoRoute(detail.clone()))
        } else {
            Some(ProbeFailure::SendError(
                self.send_error
                    .clone()
                    .unwrap_or_else(|| "not sent".to_owned()),
            ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(results: Vec<PacketResult>) -> Tally {
        let mut tally = Tally::default();
        tally.add(results);
        tally
    }

    fn no_route() -> PacketResult {
        PacketResult::NoRoute("sendto: ENETUNREACH (Network is unreachable)".into())
    }

    #[test]
    fn refused_requests_count_as_sent_and_lost() {
        let all_refused = tally(vec![no_route(), no_route(), no_route()]);
        assert_eq!((all_refused.sent, all_refused.received), (3, 0));
        assert_eq!(
            all_refused.verdict(),
            Some(ProbeFailure::NoRoute(
                "sendto: ENETUNREACH (Network is unreachable)".into()
            ))
        );
        // A reply, an ICMP error or silence of a request that went out
        // says more about the device than a refusal here.
        let replied = tally(vec![no_route(), PacketResult::Reply(Duration::ZERO)]);
        assert_eq!((replied.sent, replied.received), (2, 1));
        assert_eq!(replied.verdict(), None);
        let answered = tally(vec![no_route(), PacketResult::Unreachable]);
        assert_eq!(answered.verdict(), Some(ProbeFailure::Unreachable));
        let silent = tally(vec![no_route(), PacketResult::Timeout]);
        assert_eq!(silent.verdict(), Some(ProbeFailure::Timeout));
        // A path error is conclusive, local trouble is not.
        let mixed = tally(vec![PacketResult::SendError("EBADF".into()), no_route()]);
        assert_eq!(mixed.sent, 1);
        assert!(matches!(mixed.verdict(), Some(ProbeFailure::NoRoute(_))));
        let local = tally(vec![PacketResult::SendError("EBADF".into())]);
        assert_eq!(local.sent, 0);
        assert_eq!(
            local.verdict(),
            Some(ProbeFailure::SendError("EBADF".into()))
        );
    }
}

//! The packets-per-second budget of one executor: a token bucket kept as a
//! single "next free slot" instant (GCRA), so a send reserves its slot with
//! one atomic update and sleeps at most once, with no pacing task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

/// A token bucket of `rate` tokens per second holding at most `burst` tokens.
///
/// Reservations are served in the order they are made: each one moves the
/// theoretical arrival time (`tat`) on by one period and gets the old value as
/// its slot. Cheap enough to sit in front of every packet.
#[derive(Debug)]
pub struct Pacer {
    epoch: Instant,
    period_ns: u64,
    /// How far behind "now" `tat` may lag: the burst allowance.
    burst_ns: u64,
    /// Theoretical arrival time of the next packet, in ns since `epoch`.
    tat_ns: AtomicU64,
}

/// When a reserved send may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at: Instant,
    /// Time the caller must wait for the budget (zero when a token was free).
    pub wait: Duration,
}

impl Pacer {
    /// `rate` packets per second (0 means unlimited), `burst` packets may go
    /// out back to back after an idle spell.
    pub fn new(rate: u32, burst: u32) -> Self {
        let period_ns = if rate == 0 {
            0
        } else {
            1_000_000_000 / u64::from(rate)
        };
        Self {
            epoch: Instant::now(),
            period_ns,
            burst_ns: period_ns.saturating_mul(u64::from(burst.max(1))),
            tat_ns: AtomicU64::new(0),
        }
    }

    /// Reserves the next send slot at or after `now`.
    pub fn reserve(&self, now: Instant) -> Slot {
        if self.period_ns == 0 {
            return Slot {
                at: now,
                wait: Duration::ZERO,
            };
        }
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        // `burst` slots, the last of them `now`, may lie in the past.
        let floor = (now_ns + self.period_ns).saturating_sub(self.burst_ns);
        let mut current = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let slot = current.max(floor);
            let next = slot + self.period_ns;
            match self.tat_ns.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let wait = Duration::from_nanos(slot.saturating_sub(now_ns));
                    return Slot {
                        at: now + wait,
                        wait,
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// A uniformly random start offset in `[0, window)`, so that a batch's probes
/// do not all start on the same tick. Callers add it to the batch start.
pub fn jitter(window: Duration) -> Duration {
    if window.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn burst_goes_out_at_once_then_paced() {
        let pacer = Pacer::new(1000, 10);
        let now = Instant::now() + Duration::from_secs(1);
        let waits: Vec<Duration> = (0..15).map(|_| pacer.reserve(now).wait).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
        assert_eq!(waits[10], Duration::from_millis(1));
        assert_eq!(waits[14], Duration::from_millis(5));
    }

    #[test]
    fn unlimited_never_waits() {
        let pacer = Pacer::new(0, 0);
        let now = Instant::now();
        assert!((0..1000).all(|_| pacer.reserve(now).wait.is_zero()));
    }

    #[test]
    fn rate_holds_over_time() {
        let pacer = Pacer::new(100, 1);
        let start = Instant::now() + Duration::from_secs(5);
        let last = (0..101).map(|_| pacer.reserve(start)).last().unwrap();
        assert_eq!(last.wait, Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_window() {
        let window = Duration::from_millis(10);
        assert!((0..1000).all(|_| jitter(window) < window));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}

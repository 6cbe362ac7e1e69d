//! Sliding windows of a device's latest answered probes, which the latency
//! and packet-loss rules judge: loss is counted in packets over the window
//! (sum lost / sum sent, never a mean of per-probe percentages), latency is
//! a rank statistic (median or p90) of the probes' mean RTTs.
//!
//! Only answered probes (`OK`) enter a window. A probe with no reply at all
//! is the device-down rule's business: counting it here would raise a loss
//! alert beside every down alert. Windows live in memory, one small ring per
//! device, no longer than the largest window a rule of the device asks for;
//! after a restart they start empty and open alerts are held (neither
//! resolved nor re-fired) until the window holds enough to judge again.

use std::collections::VecDeque;

use netward_shared::proto::v1;

/// Probes in a window when the rule leaves `window_probes` at 0.
pub const DEFAULT_WINDOW_PROBES: u32 = 10;
/// The most probes a window may hold (the ring's bound).
pub const MAX_WINDOW_PROBES: u32 = 100;
/// Packets a loss window needs when the rule leaves `min_packets` at 0.
pub const DEFAULT_MIN_PACKETS: u32 = 30;
/// The most `min_packets` a rule may ask for.
pub const MAX_MIN_PACKETS: u32 = 10_000;
/// Answered probes a latency window needs when `min_probes` is 0.
pub const DEFAULT_MIN_PROBES: u32 = 5;
/// Significance of the loss test: a window fires only when loss at the
/// threshold would give this many lost packets or more less than 1 % of the
/// time. With 30 packets a window sees 1 lost packet at 3 % loss, 3 at 10 %
/// and 7.5 at 25 %, ± 1.6 to 2.4: "above 10 %" on the raw count (4 lost)
/// fires within 20 probes for about 4 in 100 devices losing 3 % at random.
pub const LOSS_SIGNIFICANCE: f64 = 0.01;

/// What a window keeps of one answered probe (12 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Echo requests sent, retries included.
    pub sent: u32,
    /// Replies received (at most `sent`).
    pub received: u32,
    /// Mean RTT of the replies in microseconds.
    pub rtt_avg_us: u32,
}

impl Sample {
    /// The sample of an answered probe; `None` for a failed or inconclusive
    /// one (it does not enter the window).
    pub fn of(result: &v1::ProbeResult) -> Option<Self> {
        let answered =
            result.outcome() == v1::ProbeOutcome::Ok && result.sent > 0 && result.received > 0;
        answered.then(|| Self {
            sent: result.sent,
            received: result.received.min(result.sent),
            rtt_avg_us: result.rtt_avg_us.unwrap_or_default(),
        })
    }
}

/// The last probes of one device, oldest first.
#[derive(Debug, Clone, Default)]
pub struct ProbeWindow {
    samples: VecDeque<Sample>,
}

/// What a window says under a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Beyond the threshold: counts towards firing.
    Breach,
    /// Too little to judge, or above the threshold but within chance: an
    /// open alert stays open, no new one fires.
    Hold,
    /// At or below the threshold: an open alert resolves.
    Clear,
}

/// Packets over a loss window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loss {
    pub probes: u32,
    pub sent: u64,
    pub lost: u64,
}

impl Loss {
    pub fn percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / self.sent as f64
        }
    }

    /// Breach when the loss is above `threshold` percent beyond chance
    /// (see [`LOSS_SIGNIFICANCE`]), clear at or below it, hold in between
    /// and while the window has fewer than `min_packets`.
    pub fn judge(&self, threshold: f64, min_packets: u32) -> Judgement {
        if self.sent < u64::from(min_packets.max(1)) {
            Judgement::Hold
        } else if self.percent() <= threshold {
            Judgement::Clear
        } else if binomial_tail(self.sent, self.lost, threshold / 100.0) < LOSS_SIGNIFICANCE {
            Judgement::Breach
        } else {
            Judgement::Hold
        }
    }
}

/// A latency window's statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Answered probes it was taken over.
    pub probes: u32,
    /// The statistic, in milliseconds.
    pub ms: f64,
}

impl Latency {
    /// Breach above `threshold` ms, clear at or below; hold while the window
    /// has fewer than `min_probes`.
    pub fn judge(&self, threshold: f64, min_probes: u32) -> Judgement {
        if self.probes < min_probes.max(1) {
            Judgement::Hold
        } else if self.ms > threshold {
            Judgement::Breach
        } else {
            Judgement::Clear
        }
    }
}

impl ProbeWindow {
    /// Adds the newest sample, dropping the oldest beyond `capacity`
    /// probes (at most [`MAX_WINDOW_PROBES`]).
    pub fn push(&mut self, sample: Sample, capacity: u32) {
        let capacity = capacity.clamp(1, MAX_WINDOW_PROBES) as usize;
        while self.samples.len() >= capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    fn last(&self, probes: u32) -> impl Iterator<Item = &Sample> {
        let skip = self.samples.len().saturating_sub(probes as usize);
        self.samples.iter().skip(skip)
    }

    /// Packets over the last `probes` probes.
    pub fn loss(&self, probes: u32) -> Loss {
        self.last(probes).fold(Loss::default(), |acc, s| Loss {
            probes: acc.probes + 1,
            sent: acc.sent + u64::from(s.sent),
            lost: acc.lost + u64::from(s.sent - s.received),
        })
    }

    /// The median or p90 (nearest rank) of the mean RTTs of the last
    /// `probes` probes; `None` on an empty window.
    pub fn latency(&self, probes: u32, statistic: v1::LatencyStatistic) -> Option<Latency> {
        let mut rtts: Vec<u32> = self.last(probes).map(|s| s.rtt_avg_us).collect();
        if rtts.is_empty() {
            return None;
        }
        rtts.sort_unstable();
        let n = rtts.len();
        let us = match statistic {
            v1::LatencyStatistic::P90 => f64::from(rtts[(n * 9).div_ceil(10) - 1]),
            v1::LatencyStatistic::Median | v1::LatencyStatistic::Unspecified => {
                if n % 2 == 1 {
                    f64::from(rtts[n / 2])
                } else {
                    (f64::from(rtts[n / 2 - 1]) + f64::from(rtts[n / 2])) / 2.0
                }
            }
        };
        Some(Latency {
            probes: n as u32,
            ms: us / 1000.0,
        })
    }
}

/// A rule's window settings with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub window_probes: u32,
    pub min_packets: u32,
    pub min_probes: u32,
    pub statistic: v1::LatencyStatistic,
}

impl Settings {
    /// Zero means the default, so rules stored before these fields existed
    /// judge with the defaults.
    pub fn of(rule: &v1::Rule) -> Self {
        let window_probes = match rule.window_probes {
            0 => DEFAULT_WINDOW_PROBES,
            n => n.min(MAX_WINDOW_PROBES),
        };
        let min_probes = match rule.min_probes {
            0 => DEFAULT_MIN_PROBES.min(window_probes),
            n => n,
        };
        let statistic = match v1::LatencyStatistic::try_from(rule.latency_statistic) {
            Ok(v1::LatencyStatistic::P90) => v1::LatencyStatistic::P90,
            _ => v1::LatencyStatistic::Median,
        };
        Self {
            window_probes,
            min_packets: match rule.min_packets {
                0 => DEFAULT_MIN_PACKETS,
                n => n,
            },
            min_probes,
            statistic,
        }
    }
}

/// P(X >= k) for X ~ Binomial(n, p): how often loss `p` alone loses `k` or
/// more of `n` packets. Summed in log space from k up, stopping once the
/// terms no longer matter (n is at most a window of packets).
fn binomial_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 || p >= 1.0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    // ln C(n, k) by the product formula (k <= n, both small).
    let ln_choose: f64 = (0..k).map(|i| ((n - i) as f64 / (i + 1) as f64).ln()).sum();
    let mut ln_term = ln_choose + k as f64 * ln_p + (n - k) as f64 * ln_q;
    let mut tail = 0.0;
    for i in k..=n {
        let term = ln_term.exp();
        tail += term;
        if i as f64 > n as f64 * p && term < tail * 1e-12 {
            break;
        }
        // C(n, i+1) / C(n, i) = (n - i) / (i + 1).
        ln_term += ((n - i) as f64 / (i + 1) as f64).ln() + ln_p - ln_q;
    }
    tail.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(lost: u32) -> Sample {
        Sample {
            sent: 3,
            received: 3 - lost,
            rtt_avg_us: 1_000,
        }
    }

    fn window(lost_per_probe: &[u32]) -> ProbeWindow {
        let mut w = ProbeWindow::default();
        for lost in lost_per_probe {
            w.push(probe(*lost), DEFAULT_WINDOW_PROBES);
        }
        w
    }

    #[test]
    fn binomial_tail_matches_known_values() {
        // P(X >= 4 | n = 30, p = 0.1) = 0.3526, P(X >= 8) = 0.0078.
        assert!((binomial_tail(30, 4, 0.1) - 0.3526).abs() < 1e-3);
        assert!((binomial_tail(30, 8, 0.1) - 0.0078).abs() < 1e-3);
        assert!(binomial_tail(30, 7, 0.1) > LOSS_SIGNIFICANCE);
        assert_eq!(binomial_tail(30, 0, 0.1), 1.0);
        assert_eq!(binomial_tail(30, 31, 0.1), 0.0);
        // Large windows neither overflow nor take long.
        assert!(binomial_tail(60_000, 59_000, 0.5) < 1e-300);
    }

    #[test]
    fn one_lost_packet_in_three_probes_of_ten_is_not_packet_loss() {
        // The lab's false alarm: 33 % per probe three times, 3.3 % of packets.
        let w = window(&[0, 1, 0, 0, 1, 0, 0, 0, 1, 0]);
        let loss = w.loss(10);
        assert_eq!((loss.sent, loss.lost), (30, 3));
        assert!((loss.percent() - 10.0).abs() < 1e-9);
        assert_eq!(loss.judge(10.0, 30), Judgement::Clear);
        let w = window(&[0, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(w.loss(10).judge(10.0, 30), Judgement::Clear);
    }

    #[test]
    fn sustained_quarter_loss_fires_and_resolves_when_the_window_clears() {
        // About 25 %: 8 of 30 packets, one lost in most probes.
        let mut w = ProbeWindow::default();
        let pattern = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1];
        for (i, lost) in pattern.iter().enumerate() {
            w.push(probe(*lost), 10);
            let want = if i < 9 {
                Judgement::Hold
            } else {
                Judgement::Breach
            };
            assert_eq!(w.loss(10).judge(10.0, 30), want, "after {} probes", i + 1);
        }
        // Clean probes push the lossy ones out: held (the alert stays open)
        // while the window is above 10 % within chance, clear at 3 of 30.
        let mut seen = Vec::new();
        for _ in 0..10 {
            w.push(probe(0), 10);
            seen.push(w.loss(10).judge(10.0, 30));
        }
        let clear_at = seen.iter().position(|j| *j == Judgement::Clear).unwrap();
        assert_eq!(clear_at, 5, "{seen:?}");
        assert!(seen[..clear_at].iter().all(|j| *j == Judgement::Hold));
        assert!(seen[clear_at..].iter().all(|j| *j == Judgement::Clear));
    }

    #[test]
    fn too_few_packets_hold() {
        let w = window(&[3, 3, 3]);
        assert_eq!(w.loss(10).judge(10.0, 30), Judgement::Hold);
        assert_eq!(w.loss(10).judge(10.0, 9), Judgement::Breach);
    }

    #[test]
    fn the_ring_keeps_only_the_largest_window() {
        let mut w = ProbeWindow::default();
        for _ in 0..50 {
            w.push(probe(1), 10);
        }
        assert_eq!(w.samples.len(), 10);
        w.push(probe(0), 4);
        assert_eq!(w.samples.len(), 4);
        assert_eq!(w.loss(10).probes, 4);
        assert_eq!(w.loss(2).lost, 1);
    }

    #[test]
    fn latency_is_a_rank_statistic_of_the_window() {
        let mut w = ProbeWindow::default();
        // Nine probes at 20 ms and one 900 ms spike.
        for ms in [20, 20, 20, 900, 20, 20, 20, 20, 20, 20] {
            w.push(
                Sample {
                    sent: 3,
                    received: 3,
                    rtt_avg_us: ms * 1000,
                },
                10,
            );
        }
        let median = w.latency(10, v1::LatencyStatistic::Median).unwrap();
        assert_eq!(median.ms, 20.0);
        assert_eq!(median.judge(200.0, 5), Judgement::Clear);
        let p90 = w.latency(10, v1::LatencyStatistic::P90).unwrap();
        assert_eq!(p90.ms, 20.0, "one in ten is the 10 %, not beyond p90");
        w.push(
            Sample {
                sent: 3,
                received: 3,
                rtt_avg_us: 800_000,
            },
            10,
        );
        let p90 = w.latency(10, v1::LatencyStatistic::P90).unwrap();
        assert_eq!(p90.ms, 800.0);
        assert_eq!(p90.judge(200.0, 5), Judgement::Breach);
        // Even counts average the middle pair; few probes hold.
        let mut w = ProbeWindow::default();
        for ms in [100, 300] {
            w.push(
                Sample {
                    sent: 3,
                    received: 3,
                    rtt_avg_us: ms * 1000,
                },
                10,
            );
        }
        let median = w.latency(10, v1::LatencyStatistic::Median).unwrap();
        assert_eq!((median.ms, median.probes), (200.0, 2));
        assert_eq!(median.judge(150.0, 5), Judgement::Hold);
        assert_eq!(median.judge(150.0, 2), Judgement::Breach);
    }

    #[test]
    fn only_answered_probes_enter() {
        let timeout = v1::ProbeResult {
            sent: 5,
            received: 0,
            loss_percent: 100.0,
            outcome: v1::ProbeOutcome::Timeout as i32,
            ..Default::default()
        };
        assert_eq!(Sample::of(&timeout), None);
        let aborted = v1::ProbeResult {
            sent: 3,
            received: 1,
            rtt_avg_us: Some(1),
            outcome: v1::ProbeOutcome::Aborted as i32,
            ..Default::default()
        };
        assert_eq!(Sample::of(&aborted), None);
        let ok = v1::ProbeResult {
            outcome: v1::ProbeOutcome::Ok as i32,
            ..aborted
        };
        assert_eq!(
            Sample::of(&ok),
            Some(Sample {
                sent: 3,
                received: 1,
                rtt_avg_us: 1
            })
        );
    }

    #[test]
    fn stored_rules_without_window_fields_get_the_defaults() {
        let s = Settings::of(&v1::Rule::default());
        assert_eq!(
            (s.window_probes, s.min_packets, s.min_probes, s.statistic),
            (10, 30, 5, v1::LatencyStatistic::Median)
        );
        let s = Settings::of(&v1::Rule {
            window_probes: 3,
            ..Default::default()
        });
        assert_eq!(s.min_probes, 3);
    }
}

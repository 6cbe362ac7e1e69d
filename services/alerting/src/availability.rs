//! Availability from state changes: uptime, downtime (DOWN or
//! UNREACHABLE), incidents and MTTR over a range. Pure: the caller reads
//! the transitions, this walks them. UNKNOWN, maintenance and stale
//! (unmonitored) time are left out of the monitored time, so a device that
//! was never probed, was in planned work, or went unwatched is counted
//! neither up nor down.

use std::time::Duration;

use chrono::{DateTime, Utc};
use netward_shared::proto::v1::DeviceState;

/// One transition: from `at` on, the device is `to` (with `maintenance`,
/// and `stale` when nothing fresh was known of it).
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub to: DeviceState,
    pub maintenance: bool,
    pub stale: bool,
}

/// A device's (or, summed with [`Figures::add`], a group's) figures over a
/// range. Every field adds up across devices; the uptime, the MTTR and the
/// longest outage are derived from the sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub up: Duration,
    pub down: Duration,
    pub unreachable: Duration,
    pub maintenance: Duration,
    pub unknown: Duration,
    /// Stale: no fresh result, whatever state it showed (not maintenance).
    pub unmonitored: Duration,
    pub incidents: u32,
    /// Outages that began and ended in the range, and their summed length.
    pub recoveries: u32,
    pub recovery_time: Duration,
    pub longest_outage: Duration,
}

impl Figures {
    /// Time UP or FLAPPING, DOWN or UNREACHABLE: neither maintenance,
    /// UNKNOWN nor stale.
    pub fn monitored(&self) -> Duration {
        self.up + self.down
    }

    /// Uptime in percent of the monitored time; 100 when nothing was monitored.
    pub fn uptime_percent(&self) -> f64 {
        let monitored = self.monitored().as_secs_f64();
        if monitored == 0.0 {
            100.0
        } else {
            100.0 * self.up.as_secs_f64() / monitored
        }
    }

    /// Recovery time over the outages that ended; zero when none did.
    pub fn mttr(&self) -> Duration {
        if self.recoveries == 0 {
            Duration::ZERO
        } else {
            self.recovery_time / self.recoveries
        }
    }

    pub fn add(&mut self, other: &Figures) {
        self.up += other.up;
        self.down += other.down;
        self.unreachable += other.unreachable;
        self.maintenance += other.maintenance;
        self.unknown += other.unknown;
        self.unmonitored += other.unmonitored;
        self.incidents += other.incidents;
        self.recoveries += other.recoveries;
        self.recovery_time += other.recovery_time;
        self.longest_outage = self.longest_outage.max(other.longest_outage);
    }
}

fn is_out(state: DeviceState) -> bool {
    matches!(state, DeviceState::Down | DeviceState::Unreachable)
}

/// Walks [start, end): `before` is the state at `start` (the last
/// transition before it, if any), `changes` the transitions in the range,
/// oldest first.
pub fn figures(
    before: Option<Transition>,
    changes: &[Transition],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Figures {
    let mut walk = Walk::new(before, start);
    for change in changes.iter().filter(|c| c.at >= start && c.at < end) {
        walk.step(change);
    }
    walk.finish(end)
}

/// One device's walk through a range, a transition at a time, for callers
/// that read many devices' transitions interleaved (a report scans them in
/// time order): [`figures`] is a walk over one device's slice.
#[derive(Debug, Clone)]
pub struct Walk {
    figures: Figures,
    /// State, maintenance and stale since `at`.
    current: (DeviceState, bool, bool),
    at: DateTime<Utc>,
    /// When the ongoing outage began, if it began in the range.
    outage_began: Option<DateTime<Utc>>,
    outage_open: bool,
}

impl Walk {
    /// A walk from `start`, in the state of `before` (UNKNOWN without one).
    pub fn new(before: Option<Transition>, start: DateTime<Utc>) -> Self {
        let current = before.map_or((DeviceState::Unknown, false, false), |t| {
            (t.to, t.maintenance, t.stale)
        });
        Self {
            figures: Figures::default(),
            current,
            at: start,
            outage_began: None,
            outage_open: is_out(current.0),
        }
    }

    /// The next transition: in the range, not before the previous one.
    pub fn step(&mut self, change: &Transition) {
        self.close(change.at);
        let was_out = is_out(self.current.0);
        let now_out = is_out(change.to);
        if now_out && !was_out {
            self.figures.incidents += 1;
            self.outage_began = Some(change.at);
            self.outage_open = true;
        } else if was_out && !now_out && self.outage_open {
            if let Some(began) = self.outage_began.take() {
                let span = (change.at - began).to_std().unwrap_or_default();
                self.figures.recoveries += 1;
                self.figures.recovery_time += span;
                self.figures.longest_outage = self.figures.longest_outage.max(span);
            }
            self.outage_open = false;
        }
        self.current = (change.to, change.maintenance, change.stale);
        self.at = change.at;
    }

    /// The figures of the walk up to `end`.
    pub fn finish(mut self, end: DateTime<Utc>) -> Figures {
        self.close(end);
        if let Some(began) = self.outage_began {
            self.figures.longest_outage = self
                .figures
                .longest_outage
                .max((end - began).to_std().unwrap_or_default());
        }
        self.figures
    }

    /// Counts [self.at, to) in the current state.
    fn close(&mut self, to: DateTime<Utc>) {
        let span = (to - self.at).to_std().unwrap_or_default();
        let (state, maintenance, stale) = self.current;
        let figures = &mut self.figures;
        if maintenance {
            figures.maintenance += span;
            return;
        }
        if stale {
            figures.unmonitored += span;
            return;
        }
        match state {
            DeviceState::Down => figures.down += span,
            DeviceState::Unreachable => {
                figures.down += span;
                figures.unreachable += span;
            }
            DeviceState::Up | DeviceState::Flapping => figures.up += span,
            DeviceState::Unknown | DeviceState::Unspecified => figures.unknown += span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn change(minute: i64, to: DeviceState) -> Transition {
        Transition {
            at: t(minute),
            to,
            maintenance: false,
            stale: false,
        }
    }

    #[test]
    fn an_hour_with_two_outages() {
        let before = Some(change(-10, DeviceState::Up));
        let changes = [
            change(10, DeviceState::Down),
            change(20, DeviceState::Up),
            change(40, DeviceState::Unreachable),
            change(46, DeviceState::Up),
        ];
        let f = figures(before, &changes, t(0), t(60));
        assert_eq!(f.down, Duration::from_secs(16 * 60));
        assert_eq!(f.unreachable, Duration::from_secs(6 * 60));
        assert_eq!(f.up, Duration::from_secs(44 * 60));
        assert_eq!(f.incidents, 2);
        assert_eq!(f.mttr(), Duration::from_secs(8 * 60));
        assert_eq!(f.longest_outage, Duration::from_secs(10 * 60));
        assert!((f.uptime_percent() - 100.0 * 44.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn a_group_sums_device_time_and_derives_uptime_and_mttr_from_the_sums() {
        let before = Some(change(-10, DeviceState::Up));
        let short = figures(
            before,
            &[change(10, DeviceState::Down), change(20, DeviceState::Up)],
            t(0),
            t(60),
        );
        let long = figures(
            before,
            &[change(15, DeviceState::Down), change(45, DeviceState::Up)],
            t(0),
            t(60),
        );
        let mut group = Figures::default();
        group.add(&short);
        group.add(&long);
        assert_eq!(group.monitored(), Duration::from_secs(120 * 60));
        assert_eq!(group.down, Duration::from_secs(40 * 60));
        assert!((group.uptime_percent() - 100.0 * 80.0 / 120.0).abs() < 1e-9);
        assert_eq!((group.incidents, group.recoveries), (2, 2));
        assert_eq!(group.mttr(), Duration::from_secs(20 * 60));
        assert_eq!(group.longest_outage, Duration::from_secs(30 * 60));
        // A walk fed one transition at a time is the same walk.
        let mut walk = Walk::new(before, t(0));
        walk.step(&change(15, DeviceState::Down));
        walk.step(&change(45, DeviceState::Up));
        assert_eq!(walk.finish(t(60)), long);
    }

    #[test]
    fn unknown_and_maintenance_are_not_monitored_time() {
        let changes = [
            change(30, DeviceState::Up),
            Transition {
                at: t(40),
                to: DeviceState::Down,
                maintenance: true,
                stale: false,
            },
            change(50, DeviceState::Up),
        ];
        let f = figures(None, &changes, t(0), t(60));
        assert_eq!(f.unknown, Duration::from_secs(30 * 60));
        assert_eq!(f.maintenance, Duration::from_secs(10 * 60));
        assert_eq!(f.uptime_percent(), 100.0);
        assert_eq!(figures(None, &[], t(0), t(60)).uptime_percent(), 100.0);
    }

    #[test]
    fn stale_time_is_unmonitored_whatever_the_state_showed() {
        let stale = |minute, to| Transition {
            stale: true,
            ..change(minute, to)
        };
        let changes = [
            stale(10, DeviceState::Unknown),
            change(20, DeviceState::Up),
            change(30, DeviceState::Down),
            stale(40, DeviceState::Down),
            change(50, DeviceState::Down),
            change(55, DeviceState::Up),
        ];
        let f = figures(Some(change(-5, DeviceState::Up)), &changes, t(0), t(60));
        assert_eq!(f.unmonitored, Duration::from_secs(20 * 60));
        assert_eq!(f.up, Duration::from_secs(25 * 60));
        assert_eq!(f.down, Duration::from_secs(15 * 60));
        assert_eq!(f.unknown, Duration::ZERO);
        // One outage, from DOWN to UP, however long it went unwatched.
        assert_eq!((f.incidents, f.mttr()), (1, Duration::from_secs(25 * 60)));
    }

    #[test]
    fn an_outage_still_open_counts_as_down_but_not_in_mttr() {
        let f = figures(
            Some(change(-5, DeviceState::Up)),
            &[change(50, DeviceState::Down)],
            t(0),
            t(60),
        );
        assert_eq!((f.incidents, f.mttr()), (1, Duration::ZERO));
        assert_eq!(f.down, Duration::from_secs(10 * 60));
        assert_eq!(f.longest_outage, Duration::from_secs(10 * 60));
    }
}

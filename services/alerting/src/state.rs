//! The device state machine: it owns each device's visible state (UP, DOWN,
//! UNREACHABLE, FLAPPING, UNKNOWN, plus the maintenance flag) and turns probe
//! verdicts into state changes and alert fire/resolve/suppress decisions.
//! Pure: no I/O and no clock — the caller passes `now` and persists what comes back.
//!
//! Driving it, per device with a [`DeviceMemory`]:
//! 1. [`StateMachine::on_result`] for each probe result. A failed result of a
//!    device whose parent has not reported the same cycle yet comes back
//!    with [`Step::held`] set: the verdict waits for the parent.
//! 2. After any step of a device that is not itself held, call
//!    [`StateMachine::release`] on its children that hold a result of that
//!    cycle, passing the device's [`DeviceMemory::as_parent`] view.
//! 3. When a child's [`Hold::until`] passes without that, call `release`
//!    anyway: the child is judged against its parent's last known state.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netward_shared::proto::v1;
use serde::{Deserialize, Serialize};

/// Thresholds of the state machine (the `[alerting.state]` settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// Consecutive failed probes (each one already includes its retries)
    /// that make a device DOWN.
    pub down_after: u32,
    /// Consecutive good probes that bring a DOWN device back UP.
    pub up_after: u32,
    /// UP↔DOWN changes within `flap_window` that make a device FLAPPING.
    pub flap_enter: u32,
    /// A FLAPPING device settles once it has changed fewer times than this
    /// within `flap_window`.
    pub flap_leave: u32,
    #[serde(with = "humantime_serde")]
    pub flap_window: Duration,
    /// How long a child's failed result waits for its parent's result of
    /// the same cycle.
    #[serde(with = "humantime_serde")]
    pub parent_hold: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            down_after: 1,
            up_after: 2,
            flap_enter: 3,
            flap_leave: 2,
            flap_window: Duration::from_secs(5 * 60),
            parent_hold: Duration::from_secs(2),
        }
    }
}

/// Most change instants a device remembers; bounds memory whatever the
/// configured window.
const MAX_CHANGES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid device state settings: {0}")]
pub struct InvalidStateConfig(&'static str);

impl StateConfig {
    pub fn validate(&self) -> Result<(), InvalidStateConfig> {
        if self.down_after == 0 || self.up_after == 0 {
            return Err(InvalidStateConfig(
                "down_after and up_after must be at least 1",
            ));
        }
        if self.flap_leave == 0 || self.flap_enter as usize > MAX_CHANGES {
            return Err(InvalidStateConfig(
                "flap_leave must be at least 1 and flap_enter at most 256",
            ));
        }
        // Otherwise a device entering FLAPPING would satisfy the leave
        // condition at once and oscillate in and out.
        if self.flap_leave > self.flap_enter {
            return Err(InvalidStateConfig("flap_leave must not exceed flap_enter"));
        }
        if self.flap_window.is_zero() {
            return Err(InvalidStateConfig("flap_window must be longer than 0"));
        }
        Ok(())
    }
}

/// A device's state. Mirrors `v1::DeviceState` without its unspecified value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Unknown,
    Up,
    Down,
    Unreachable,
    Flapping,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "UNKNOWN",
            State::Up => "UP",
            State::Down => "DOWN",
            State::Unreachable => "UNREACHABLE",
            State::Flapping => "FLAPPING",
        }
    }

    /// Whether a device in this state cuts off the devices behind it.
    fn cuts_off_children(self) -> bool {
        matches!(self, State::Down | State::Unreachable)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<State> for v1::DeviceState {
    fn from(state: State) -> Self {
        match state {
            State::Unknown => v1::DeviceState::Unknown,
            State::Up => v1::DeviceState::Up,
            State::Down => v1::DeviceState::Down,
            State::Unreachable => v1::DeviceState::Unreachable,
            State::Flapping => v1::DeviceState::Flapping,
        }
    }
}

impl From<v1::DeviceState> for State {
    /// `Unspecified` (never stored by alerting) reads as `Unknown`.
    fn from(state: v1::DeviceState) -> Self {
        match state {
            v1::DeviceState::Unspecified | v1::DeviceState::Unknown => State::Unknown,
            v1::DeviceState::Up => State::Up,
            v1::DeviceState::Down => State::Down,
            v1::DeviceState::Unreachable => State::Unreachable,
            v1::DeviceState::Flapping => State::Flapping,
        }
    }
}

/// What a probe result says about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It answered (`OK`, even with some loss).
    Good,
    /// It did not answer (`TIMEOUT`, `UNREACHABLE`), retries included, or
    /// the path to it is gone (`NO_ROUTE`: the kernel refused to send).
    Failed,
    /// Not the device's fault (`SEND_ERROR`, `ABORTED`, `INVALID_ADDRESS`,
    /// unspecified): changes nothing, only counted.
    Inconclusive,
}

impl Verdict {
    pub fn of(outcome: v1::ProbeOutcome) -> Self {
        match outcome {
            v1::ProbeOutcome::Ok => Verdict::Good,
            v1::ProbeOutcome::Timeout
            | v1::ProbeOutcome::Unreachable
            | v1::ProbeOutcome::NoRoute => Verdict::Failed,
            v1::ProbeOutcome::Unspecified
            | v1::ProbeOutcome::SendError
            | v1::ProbeOutcome::InvalidAddress
            | v1::ProbeOutcome::Aborted => Verdict::Inconclusive,
        }
    }
}

/// The part of a probe result the state machine looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Cycle of the result; 0 (ad hoc) never waits for a parent.
    pub cycle_id: u64,
    pub verdict: Verdict,
    /// For the human reasons ("2 failed probes (100% loss)").
    pub loss_percent: f64,
}

impl Probe {
    pub fn from_result(result: &v1::ProbeResult) -> Self {
        Self {
            cycle_id: result.cycle_id,
            verdict: Verdict::of(result.outcome()),
            loss_percent: result.loss_percent,
        }
    }
}

/// What a child needs to know of its parent; see [`DeviceMemory::as_parent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentView<'a> {
    /// Parent's name, for the reasons ("parent tbilisi-01-rtr is DOWN").
    pub name: &'a str,
    /// Parent's reachability: its underlying state, FLAPPING looked through.
    pub state: State,
    /// Cycle of the parent's latest result (0 = none yet): the child's
    /// failed result of cycle N waits while this is below N.
    pub last_cycle: u64,
}

/// Alerts the state machine decides on (rules `DEVICE_DOWN`, `DEVICE_FLAPPING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    DeviceDown,
    DeviceFlapping,
}

impl From<AlertKind> for v1::RuleKind {
    fn from(kind: AlertKind) -> Self {
        match kind {
            AlertKind::DeviceDown => v1::RuleKind::DeviceDown,
            AlertKind::DeviceFlapping => v1::RuleKind::DeviceFlapping,
        }
    }
}

/// Why an alert that would have fired did not. (Maintenance does not
/// suppress: the alert fires with `muted` set.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    /// The device went UNREACHABLE: its parent is down, so its own failure
    /// says nothing.
    ParentDown { parent: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The visible state changed: persist a `state_changes` row.
    StateChanged {
        from: State,
        to: State,
    },
    AlertFire(AlertKind),
    AlertResolve(AlertKind),
    AlertSuppressed {
        alert: AlertKind,
        why: Suppression,
    },
    /// The maintenance flag changed (a `state_changes` row with the same state).
    MaintenanceChanged {
        maintenance: bool,
    },
    /// The device went stale (no conclusive result for `stale_after`) or
    /// fresh again, with its visible state unchanged (a `state_changes` row
    /// with the same state): availability counts stale time as unmonitored.
    StaleChanged {
        stale: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Human reason: "3 failed probes (100% loss)", "parent tbilisi-01-rtr is DOWN".
    pub reason: String,
    pub at: SystemTime,
    /// Cycle of the result that caused it; 0 when not caused by a result.
    pub cycle_id: u64,
    /// The device is in maintenance: record it, notify nobody.
    pub muted: bool,
}

/// A failed result waiting for the parent's result of the same cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub cycle_id: u64,
    /// Call [`StateMachine::release`] at this instant at the latest.
    pub until: SystemTime,
}

/// The outcome of one call: the state after it and what to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Visible state after the step.
    pub state: State,
    pub maintenance: bool,
    /// In order; may be empty.
    pub events: Vec<Event>,
    /// Set while the device holds a result waiting for its parent.
    pub held: Option<Hold>,
    /// The result was inconclusive (not the device's fault) and changed
    /// nothing: count it.
    pub inconclusive: bool,
    /// No conclusive result for `stale_after`: what the device shows is old.
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    probe: Probe,
    until_us: u64,
}

/// Everything the state machine remembers of one device. Small (counters
/// and the change instants within the flap window), `Clone`, and
/// serialisable; [`DeviceMemory::restore`] rebuilds it from persisted rows.
/// Instants are kept as microseconds since the Unix epoch, PostgreSQL's
/// precision, so a restored memory compares equal to what was persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// What everyone sees.
    state: State,
    since_us: u64,
    /// UP/DOWN/UNREACHABLE/UNKNOWN as if there were no flapping; tracked
    /// while FLAPPING so that leaving it lands on the right state.
    underlying: State,
    consecutive_failures: u32,
    consecutive_successes: u32,
    /// Cycle of the latest decided or inconclusive result (children wait
    /// for it to reach theirs).
    last_cycle: u64,
    maintenance: bool,
    /// Instants of the UP↔DOWN changes within the flap window, oldest first.
    changes_us: VecDeque<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<Held>,
    /// When the latest conclusive (good or failed) result arrived; 0 = none
    /// yet. Inconclusive results do not count: an executor that can only
    /// report its own trouble is not watching the device.
    #[serde(default)]
    last_result_us: u64,
    /// Set by [`StateMachine::set_stale`], cleared by the next conclusive result.
    #[serde(default)]
    stale: bool,
}

impl DeviceMemory {
    /// A device never probed: UNKNOWN since `now`.
    pub fn new(now: SystemTime) -> Self {
        Self::restore(State::Unknown, now, Vec::new())
    }

    /// Rebuilds memory from persisted rows: the current state, since when,
    /// and the instants of the device's recent UP↔DOWN changes (older ones
    /// are dropped at the next step). Streaks start at 0 (a DOWN device needs
    /// `up_after` good probes again) unless given with
    /// [`DeviceMemory::with_consecutive_failures`]. A FLAPPING device's
    /// underlying state is not in the rows: it is UNKNOWN unless given with
    /// [`DeviceMemory::with_underlying`], and is then set by the next result.
    /// A result held at the time is not restored: the next cycle decides.
    pub fn restore(state: State, since: SystemTime, recent_changes: Vec<SystemTime>) -> Self {
        let mut changes_us: Vec<u64> = recent_changes.into_iter().map(micros).collect();
        changes_us.sort_unstable();
        let skip = changes_us.len().saturating_sub(MAX_CHANGES);
        let underlying = if state == State::Flapping {
            State::Unknown
        } else {
            state
        };
        Self {
            state,
            since_us: micros(since),
            underlying,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_cycle: 0,
            maintenance: false,
            changes_us: changes_us.into_iter().skip(skip).collect(),
            held: None,
            last_result_us: 0,
            stale: false,
        }
    }

    pub fn with_maintenance(mut self, maintenance: bool) -> Self {
        self.maintenance = maintenance;
        self
    }

    /// Failed probes in a row, as persisted (`DeviceStatus.consecutive_failures`);
    /// 0 when not given. It decides when an UP device under `down_after` > 1
    /// goes DOWN, and an UNREACHABLE one whose parent is back.
    pub fn with_consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = failures;
        self
    }

    /// The underlying state of a restored FLAPPING device, when the caller
    /// persisted it. Ignored for other states (their underlying is the state).
    pub fn with_underlying(mut self, underlying: State) -> Self {
        if self.state == State::Flapping && underlying != State::Flapping {
            self.underlying = underlying;
        }
        self
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Since when the device is in [`DeviceMemory::state`].
    pub fn since(&self) -> SystemTime {
        from_micros(self.since_us)
    }

    pub fn underlying(&self) -> State {
        self.underlying
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// Failed probes in a row (`DeviceStatus.consecutive_failures`).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn last_cycle(&self) -> u64 {
        self.last_cycle
    }

    /// When the latest conclusive result arrived (`None`: none yet).
    pub fn last_result(&self) -> Option<SystemTime> {
        (self.last_result_us != 0).then(|| from_micros(self.last_result_us))
    }

    /// Whether the device has had no conclusive result for `stale_after`.
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// The UP↔DOWN change instants still remembered, oldest first.
    pub fn recent_changes(&self) -> Vec<SystemTime> {
        self.changes_us.iter().copied().map(from_micros).collect()
    }

    pub fn held(&self) -> Option<Hold> {
        self.held.as_ref().map(|held| Hold {
            cycle_id: held.probe.cycle_id,
            until: from_micros(held.until_us),
        })
    }

    /// This device as seen by its children.
    pub fn as_parent<'a>(&self, name: &'a str) -> ParentView<'a> {
        ParentView {
            name,
            state: self.underlying,
            last_cycle: self.last_cycle,
        }
    }

    fn step(&self, events: Vec<Event>, inconclusive: bool) -> Step {
        Step {
            state: self.state,
            maintenance: self.maintenance,
            events,
            held: self.held(),
            inconclusive,
            stale: self.stale,
        }
    }

    /// Cycle ids restart with the planner (they count per planner process),
    /// so the last one is the latest seen, not the largest: after a planner
    /// restart children wait for the new numbers within one cycle.
    fn note_cycle(&mut self, cycle_id: u64) {
        if cycle_id != 0 {
            self.last_cycle = cycle_id;
        }
    }
}

/// The state machine: the configuration, applied to one [`DeviceMemory`] at a time.
#[derive(Debug, Clone)]
pub struct StateMachine {
    config: StateConfig,
}

impl StateMachine {
    pub fn new(config: StateConfig) -> Result<Self, InvalidStateConfig> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Takes one probe result of the device, in arrival order (the caller
    /// feeds each stored result once: ingest already drops replays).
    /// `parent` is the parent's view now (`None` when it has none).
    pub fn on_result(
        &self,
        memory: &mut DeviceMemory,
        probe: Probe,
        parent: Option<ParentView<'_>>,
        now: SystemTime,
    ) -> Step {
        let mut events = Vec::new();
        // A newer result means the parent had a whole cycle to report the
        // held one's cycle: settle the held one first, on what is known.
        if let Some(held) = memory.held.take() {
            let cycle = held.probe.cycle_id;
            let note = parent
                .filter(|parent| parent.last_cycle < cycle)
                .map(|parent| {
                    format!(
                        "; parent {}'s result of cycle {cycle} never came, judged on its last known state",
                        parent.name
                    )
                });
            self.decide(memory, held.probe, parent, note, now, &mut events);
        }
        if probe.verdict != Verdict::Inconclusive {
            memory.last_result_us = micros(now);
            if memory.stale {
                memory.stale = false;
                events.push(Event {
                    kind: EventKind::StaleChanged { stale: false },
                    reason: "results again".to_owned(),
                    at: now,
                    cycle_id: probe.cycle_id,
                    muted: memory.maintenance,
                });
            }
        }
        let mut inconclusive = false;
        match probe.verdict {
            Verdict::Inconclusive => {
                // Counts as this cycle's result (children stop waiting for
                // it) but says nothing about the device.
                memory.note_cycle(probe.cycle_id);
                inconclusive = true;
            }
            Verdict::Failed if self.must_wait(&probe, parent) => {
                // Only a failure waits: an answer says the device is UP
                // whatever its parent does, but a failure means DOWN or
                // UNREACHABLE depending on the parent's result of this very
                // cycle — the parent is probed in the same or an earlier
                // batch, so that result is normally moments away.
                let until_us = micros(now).saturating_add(duration_micros(self.config.parent_hold));
                memory.held = Some(Held { probe, until_us });
            }
            Verdict::Good | Verdict::Failed => {
                self.decide(memory, probe, parent, None, now, &mut events);
            }
        }
        memory.step(events, inconclusive)
    }

    /// Re-examines a held result: decides it when the parent's result of
    /// its cycle is in (or the device has no parent any more), or when its
    /// hold ran out — then on the parent's last known state, so a parent
    /// whose own result is late (a slow, failing probe) still keeps its
    /// children UNREACHABLE instead of letting each raise an alert. Otherwise
    /// the result stays held. Nothing held: an empty step.
    pub fn release(
        &self,
        memory: &mut DeviceMemory,
        parent: Option<ParentView<'_>>,
        now: SystemTime,
    ) -> Step {
        let mut events = Vec::new();
        if let Some(held) = memory.held.take() {
            let cycle = held.probe.cycle_id;
            let arrived = parent.is_none_or(|parent| parent.last_cycle >= cycle);
            if arrived {
                self.decide(memory, held.probe, parent, None, now, &mut events);
            } else if micros(now) >= held.until_us {
                let note = parent.map(|parent| {
                    format!(
                        "; parent {}'s result of cycle {cycle} not in after {}, judged on its last known state",
                        parent.name,
                        human_duration(self.config.parent_hold)
                    )
                });
                self.decide(memory, held.probe, parent, note, now, &mut events);
            } else {
                memory.held = Some(held);
            }
        }
        memory.step(events, false)
    }

    /// Sets the maintenance flag. State and history keep changing while it
    /// is set; only the events' `muted` flag differs.
    pub fn set_maintenance(
        &self,
        memory: &mut DeviceMemory,
        maintenance: bool,
        now: SystemTime,
    ) -> Step {
        let mut events = Vec::new();
        if memory.maintenance != maintenance {
            memory.maintenance = maintenance;
            let reason = if maintenance {
                "maintenance started"
            } else {
                "maintenance ended"
            };
            events.push(Event {
                kind: EventKind::MaintenanceChanged { maintenance },
                reason: reason.to_owned(),
                at: now,
                cycle_id: 0,
                muted: maintenance,
            });
        }
        memory.step(events, false)
    }

    /// Marks a device that has had no conclusive result for `stale_after`
    /// (the caller's clock decides; `reason` says since when and why). An UP
    /// device becomes UNKNOWN — green that nobody checks is a lie — and its
    /// next result decides afresh, as for a new device. DOWN, UNREACHABLE and
    /// FLAPPING stay as they are, their alerts open (no data is not a
    /// recovery), only flagged stale. Nothing happens to a device already
    /// stale; the next conclusive result clears the flag.
    pub fn set_stale(&self, memory: &mut DeviceMemory, reason: &str, now: SystemTime) -> Step {
        let mut events = Vec::new();
        if memory.stale {
            return memory.step(events, false);
        }
        memory.stale = true;
        let event = |kind| Event {
            kind,
            reason: reason.to_owned(),
            at: now,
            cycle_id: 0,
            muted: memory.maintenance,
        };
        if memory.state == State::Up {
            events.push(event(EventKind::StateChanged {
                from: State::Up,
                to: State::Unknown,
            }));
            memory.state = State::Unknown;
            memory.underlying = State::Unknown;
            memory.since_us = micros(now);
            memory.consecutive_failures = 0;
            memory.consecutive_successes = 0;
        } else {
            events.push(event(EventKind::StaleChanged { stale: true }));
        }
        memory.step(events, false)
    }

    fn must_wait(&self, probe: &Probe, parent: Option<ParentView<'_>>) -> bool {
        probe.cycle_id != 0
            && !self.config.parent_hold.is_zero()
            && parent.is_some_and(|parent| parent.last_cycle < probe.cycle_id)
    }

    /// Applies a good or failed result: the underlying state first, then
    /// the visible one (flapping), then the alerts.
    fn decide(
        &self,
        memory: &mut DeviceMemory,
        probe: Probe,
        parent: Option<ParentView<'_>>,
        note: Option<String>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) {
        let now_us = micros(now);
        memory.note_cycle(probe.cycle_id);
        let parent_down = parent.filter(|parent| parent.state.cuts_off_children());
        let good = match probe.verdict {
            Verdict::Good => true,
            Verdict::Failed => false,
            Verdict::Inconclusive => return,
        };
        let before = memory.underlying;
        let (after, mut reason) = if good {
            memory.consecutive_failures = 0;
            memory.consecutive_successes = memory.consecutive_successes.saturating_add(1);
            let answered = memory.consecutive_successes;
            match before {
                // No hysteresis from not knowing: the first answer, or
                // the first since the parent cut it off, is news enough.
                State::Unknown => (State::Up, format!("first probe answered ({})", loss(probe))),
                State::Unreachable => match parent_down {
                    Some(parent) => (
                        State::Up,
                        format!(
                            "answers while parent {} is {} (reachable another way)",
                            parent.name, parent.state
                        ),
                    ),
                    None => (State::Up, format!("answers again ({})", loss(probe))),
                },
                State::Down if answered >= self.config.up_after => (
                    State::Up,
                    format!("{answered} good {}", plural(answered, "probe")),
                ),
                other => (other, String::new()),
            }
        } else {
            memory.consecutive_successes = 0;
            memory.consecutive_failures = memory.consecutive_failures.saturating_add(1);
            let failed = memory.consecutive_failures;
            let failures = format!(
                "{failed} failed {} ({})",
                plural(failed, "probe"),
                loss(probe)
            );
            match (before, parent_down) {
                _ if failed < self.config.down_after => (before, String::new()),
                (State::Up | State::Unknown, Some(parent)) => (
                    State::Unreachable,
                    format!("parent {} is {}", parent.name, parent.state),
                ),
                (State::Up | State::Unknown, None) => (State::Down, failures),
                (State::Unreachable, None) => match parent {
                    Some(parent) => (
                        State::Down,
                        format!("{failures}; parent {} is back", parent.name),
                    ),
                    None => (State::Down, failures),
                },
                // A DOWN device stays DOWN when its parent goes down too:
                // nothing says it recovered, and its alert stays open.
                (other, _) => (other, String::new()),
            }
        };
        if let Some(note) = note {
            reason.push_str(&note);
        }
        let changed = after != before;
        if changed {
            memory.underlying = after;
            // Only UP↔DOWN is the device's own doing; UNREACHABLE is its
            // parent's, so a flapping branch router does not make every
            // device behind it flap (and alert) too.
            if matches!(
                (before, after),
                (State::Up, State::Down) | (State::Down, State::Up)
            ) {
                memory.changes_us.push_back(now_us);
                if memory.changes_us.len() > MAX_CHANGES {
                    memory.changes_us.pop_front();
                }
            }
        }
        // The window slides with each decided result: changes older than
        // `flap_window` no longer count, which is how FLAPPING ends when
        // the device settles.
        let window_us = duration_micros(self.config.flap_window);
        while memory
            .changes_us
            .front()
            .is_some_and(|&at| at.saturating_add(window_us) <= now_us)
        {
            memory.changes_us.pop_front();
        }
        let recent = memory.changes_us.len() as u32;
        let flaps = format!(
            "{recent} {} in {}",
            plural(recent, "change"),
            human_duration(self.config.flap_window)
        );

        let muted = memory.maintenance;
        let mut emit = |kind: EventKind, reason: String| {
            events.push(Event {
                kind,
                reason,
                at: now,
                cycle_id: probe.cycle_id,
                muted,
            });
        };
        let from = memory.state;
        if from == State::Flapping {
            // While FLAPPING only the underlying state moves; one alert
            // stands for all the ups and downs. It ends once the device has
            // been (nearly) still for a whole window and its state is known.
            if recent >= self.config.flap_leave || after == State::Unknown {
                return;
            }
            emit(EventKind::StateChanged { from, to: after }, flaps.clone());
            emit(
                EventKind::AlertResolve(AlertKind::DeviceFlapping),
                flaps.clone(),
            );
            match after {
                State::Down => emit(
                    EventKind::AlertFire(AlertKind::DeviceDown),
                    format!("still down when flapping ended ({flaps})"),
                ),
                State::Unreachable => {
                    if let Some(parent) = parent_down {
                        emit(
                            EventKind::AlertSuppressed {
                                alert: AlertKind::DeviceDown,
                                why: Suppression::ParentDown {
                                    parent: parent.name.to_owned(),
                                },
                            },
                            format!("parent {} is {}", parent.name, parent.state),
                        );
                    }
                }
                _ => {}
            }
            memory.state = after;
            memory.since_us = now_us;
        } else if recent >= self.config.flap_enter {
            emit(
                EventKind::StateChanged {
                    from,
                    to: State::Flapping,
                },
                flaps.clone(),
            );
            if from == State::Down {
                emit(
                    EventKind::AlertResolve(AlertKind::DeviceDown),
                    format!("replaced by the flapping alert ({flaps})"),
                );
            }
            emit(EventKind::AlertFire(AlertKind::DeviceFlapping), flaps);
            memory.state = State::Flapping;
            memory.since_us = now_us;
        } else if changed && from != after {
            emit(EventKind::StateChanged { from, to: after }, reason.clone());
            if from == State::Down {
                emit(
                    EventKind::AlertResolve(AlertKind::DeviceDown),
                    reason.clone(),
                );
            }
            match (after, parent_down) {
                (State::Down, _) => emit(EventKind::AlertFire(AlertKind::DeviceDown), reason),
                (State::Unreachable, Some(parent)) => emit(
                    EventKind::AlertSuppressed {
                        alert: AlertKind::DeviceDown,
                        why: Suppression::ParentDown {
                            parent: parent.name.to_owned(),
                        },
                    },
                    reason,
                ),
                _ => {}
            }
            memory.state = after;
            memory.since_us = now_us;
        }
    }
}

fn loss(probe: Probe) -> String {
    format!("{:.0}% loss", probe.loss_percent)
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// "5 min", "30 s", "1500 ms": short, for reasons.
fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis >= 60_000 && millis.is_multiple_of(60_000) {
        format!("{} min", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{} s", millis / 1000)
    } else {
        format!("{millis} ms")
    }
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, duration_micros)
}

fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn from_micros(us: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_micros(us))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "tbilisi-01-rtr";

    /// `t` seconds after a fixed instant; cycles are 10 s apart.
    fn at(t: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_750_000_000 + t)
    }

    fn cycle(t: u64) -> u64 {
        t / 10 + 1
    }

    /// The parent as the child sees it.
    #[derive(Debug, Clone, Copy)]
    enum Par {
        /// The parent's result of the child's cycle is in: its state now.
        Done(State),
        /// Not yet: its last known state, from the cycle before.
        Late(State),
        /// Its last result is from before a planner restart (a larger id).
        Old(State),
    }

    #[derive(Debug, Clone, Copy)]
    enum In {
        Ok(u64),
        Fail(u64),
        Inconclusive(u64),
        OkP(u64, Par),
        FailP(u64, Par),
        /// Release whatever the device holds.
        Release(u64, Par),
        Maint(u64, bool),
        /// No conclusive result for `stale_after`: mark it stale.
        Stale(u64),
    }

    fn view(par: Par, cycle: u64) -> Option<ParentView<'static>> {
        let (state, last_cycle) = match par {
            Par::Done(state) => (state, cycle),
            Par::Late(state) => (state, cycle - 1),
            Par::Old(state) => (state, 1_000_000),
        };
        Some(ParentView {
            name: PARENT,
            state,
            last_cycle,
        })
    }

    fn probe(t: u64, verdict: Verdict) -> Probe {
        let loss_percent = if verdict == Verdict::Good { 0.0 } else { 100.0 };
        Probe {
            cycle_id: cycle(t),
            verdict,
            loss_percent,
        }
    }

    fn drive(machine: &StateMachine, memory: &mut DeviceMemory, input: In) -> Step {
        match input {
            In::Ok(t) => machine.on_result(memory, probe(t, Verdict::Good), None, at(t)),
            In::Fail(t) => machine.on_result(memory, probe(t, Verdict::Failed), None, at(t)),
            In::Inconclusive(t) => {
                machine.on_result(memory, probe(t, Verdict::Inconclusive), None, at(t))
            }
            In::OkP(t, par) => {
                machine.on_result(memory, probe(t, Verdict::Good), view(par, cycle(t)), at(t))
            }
            In::FailP(t, par) => machine.on_result(
                memory,
                probe(t, Verdict::Failed),
                view(par, cycle(t)),
                at(t),
            ),
            In::Release(t, par) => {
                let held = memory.held().map_or(1, |hold| hold.cycle_id);
                machine.release(memory, view(par, held), at(t))
            }
            In::Maint(t, on) => machine.set_maintenance(memory, on, at(t)),
            In::Stale(t) => {
                machine.set_stale(memory, "no result since 12:00:00: not probed", at(t))
            }
        }
    }

    /// A step in short: "UP>DOWN", "fire DOWN", "resolve FLAPPING",
    /// "suppress DOWN", "maintenance on", "held", "inconclusive";
    /// " muted" after a muted event.
    fn summary(step: &Step) -> Vec<String> {
        let name = |kind: AlertKind| match kind {
            AlertKind::DeviceDown => "DOWN",
            AlertKind::DeviceFlapping => "FLAPPING",
        };
        let mut out: Vec<String> = step
            .events
            .iter()
            .map(|event| {
                let text = match &event.kind {
                    EventKind::StateChanged { from, to } => format!("{from}>{to}"),
                    EventKind::AlertFire(kind) => format!("fire {}", name(*kind)),
                    EventKind::AlertResolve(kind) => format!("resolve {}", name(*kind)),
                    EventKind::AlertSuppressed { alert, .. } => {
                        format!("suppress {}", name(*alert))
                    }
                    EventKind::MaintenanceChanged { maintenance } => {
                        return format!("maintenance {}", if *maintenance { "on" } else { "off" });
                    }
                    EventKind::StaleChanged { stale } => {
                        (if *stale { "stale" } else { "fresh" }).to_string()
                    }
                };
                if event.muted {
                    format!("{text} muted")
                } else {
                    text
                }
            })
            .collect();
        if step.held.is_some() {
            out.push("held".into());
        }
        if step.inconclusive {
            out.push("inconclusive".into());
        }
        out
    }

    /// Input, visible state after it, the step in short, and a text one of
    /// its events' reasons must contain ("" = not checked).
    type Row = (In, State, &'static [&'static str], &'static str);

    struct Case {
        name: &'static str,
        config: StateConfig,
        rows: Vec<Row>,
    }

    fn case(name: &'static str, rows: Vec<Row>) -> Case {
        Case {
            name,
            config: StateConfig::default(),
            rows,
        }
    }

    fn run(cases: Vec<Case>) {
        for case in cases {
            let machine = StateMachine::new(case.config.clone()).unwrap();
            let mut memory = DeviceMemory::new(at(0));
            for (i, (input, state, expected, reason)) in case.rows.iter().enumerate() {
                let step = drive(&machine, &mut memory, *input);
                let context = format!("case {:?}, row {i} ({input:?}): {step:#?}", case.name);
                assert_eq!(summary(&step), *expected, "{context}");
                assert_eq!(step.state, *state, "{context}");
                assert_eq!(memory.state(), *state, "{context}");
                if !reason.is_empty() {
                    assert!(
                        step.events
                            .iter()
                            .any(|event| event.reason.contains(reason)),
                        "no reason contains {reason:?}: {context}"
                    );
                }
            }
        }
    }

    use In::*;
    use Par::*;
    use State::{Down as D, Flapping as F, Unknown as U, Unreachable as X, Up as Up_};

    #[test]
    fn up_down_and_hysteresis() {
        run(vec![
            case(
                "unknown → up on the first good probe",
                vec![(
                    Ok(0),
                    Up_,
                    &["UNKNOWN>UP"],
                    "first probe answered (0% loss)",
                )],
            ),
            case(
                "unknown → down on the first failed probe",
                vec![(
                    Fail(0),
                    D,
                    &["UNKNOWN>DOWN", "fire DOWN"],
                    "1 failed probe (100% loss)",
                )],
            ),
            case(
                "down_after 1: a single failed probe makes an UP device DOWN",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (
                        Fail(10),
                        D,
                        &["UP>DOWN", "fire DOWN"],
                        "1 failed probe (100% loss)",
                    ),
                ],
            ),
            case(
                "hysteresis: one good probe after DOWN is not enough, two are",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Fail(10), D, &["UP>DOWN", "fire DOWN"], ""),
                    (Ok(20), D, &[], ""),
                    (Ok(30), Up_, &["DOWN>UP", "resolve DOWN"], "2 good probes"),
                ],
            ),
            case(
                "a failure between good probes restarts the count",
                vec![
                    (Fail(0), D, &["UNKNOWN>DOWN", "fire DOWN"], ""),
                    (Ok(10), D, &[], ""),
                    (Fail(20), D, &[], ""),
                    (Ok(30), D, &[], ""),
                    (Ok(40), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                ],
            ),
            Case {
                name: "down_after 2: one failed probe is not enough, and answers reset",
                config: StateConfig {
                    down_after: 2,
                    ..StateConfig::default()
                },
                rows: vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Fail(10), Up_, &[], ""),
                    (Ok(20), Up_, &[], ""),
                    (Fail(30), Up_, &[], ""),
                    (
                        Fail(40),
                        D,
                        &["UP>DOWN", "fire DOWN"],
                        "2 failed probes (100% loss)",
                    ),
                ],
            },
            Case {
                name: "down_after 3 from unknown",
                config: StateConfig {
                    down_after: 3,
                    ..StateConfig::default()
                },
                rows: vec![
                    (Fail(0), U, &[], ""),
                    (Fail(10), U, &[], ""),
                    (
                        Fail(20),
                        D,
                        &["UNKNOWN>DOWN", "fire DOWN"],
                        "3 failed probes (100% loss)",
                    ),
                ],
            },
            Case {
                name: "up_after 1: no hysteresis",
                config: StateConfig {
                    up_after: 1,
                    ..StateConfig::default()
                },
                rows: vec![
                    (Fail(0), D, &["UNKNOWN>DOWN", "fire DOWN"], ""),
                    (Ok(10), Up_, &["DOWN>UP", "resolve DOWN"], "1 good probe"),
                ],
            },
        ]);
    }

    #[test]
    fn no_result_for_stale_after_is_not_green_and_not_a_recovery() {
        use In::*;
        use State::{Down, Flapping, Unknown as U, Up as Up_};
        run(vec![
            case(
                "an UP device with no result becomes UNKNOWN, its next answer is news",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (
                        Stale(40),
                        U,
                        &["UP>UNKNOWN"],
                        "no result since 12:00:00: not probed",
                    ),
                    (Stale(41), U, &[], ""),
                    (
                        Ok(50),
                        Up_,
                        &["fresh", "UNKNOWN>UP"],
                        "first probe answered",
                    ),
                ],
            ),
            case(
                "a stale UP device that fails when it is seen again goes DOWN at once",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Stale(40), U, &["UP>UNKNOWN"], ""),
                    (Fail(50), Down, &["fresh", "UNKNOWN>DOWN", "fire DOWN"], ""),
                ],
            ),
            case(
                "a DOWN device keeps its state and its alert, flagged stale",
                vec![
                    (Fail(0), Down, &["UNKNOWN>DOWN", "fire DOWN"], ""),
                    (Stale(40), Down, &["stale"], "not probed"),
                    (Fail(50), Down, &["fresh"], ""),
                    (Ok(60), Down, &[], ""),
                    (Ok(70), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                ],
            ),
            case(
                "a never probed device is flagged, not changed",
                vec![(Stale(40), U, &["stale"], "")],
            ),
            case(
                "inconclusive results do not keep a device fresh",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Inconclusive(10), Up_, &["inconclusive"], ""),
                    (Stale(40), U, &["UP>UNKNOWN"], ""),
                    (Inconclusive(50), U, &["inconclusive"], ""),
                ],
            ),
            case(
                "a FLAPPING device stays FLAPPING",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Fail(10), Down, &["UP>DOWN", "fire DOWN"], ""),
                    (Ok(20), Down, &[], ""),
                    (Ok(30), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                    (Fail(40), Flapping, &["UP>FLAPPING", "fire FLAPPING"], ""),
                    (Stale(80), Flapping, &["stale"], ""),
                ],
            ),
        ]);
    }

    #[test]
    fn the_last_conclusive_result_survives_a_restart() {
        let machine = StateMachine::new(StateConfig::default()).unwrap();
        let mut memory = DeviceMemory::new(at(0));
        assert_eq!(memory.last_result(), None);
        drive(&machine, &mut memory, In::Ok(0));
        drive(&machine, &mut memory, In::Inconclusive(10));
        assert_eq!(memory.last_result(), Some(at(0)));
        drive(&machine, &mut memory, In::Stale(40));
        let json = serde_json::to_value(&memory).unwrap();
        let restored: DeviceMemory = serde_json::from_value(json).unwrap();
        assert_eq!(restored, memory);
        assert!(restored.stale());
        // Memory persisted before the field existed reads as never seen.
        let mut old = serde_json::to_value(DeviceMemory::new(at(0))).unwrap();
        old.as_object_mut().unwrap().remove("last_result_us");
        old.as_object_mut().unwrap().remove("stale");
        let old: DeviceMemory = serde_json::from_value(old).unwrap();
        assert_eq!(old.last_result(), None);
        assert!(!old.stale());
    }

    #[test]
    fn inconclusive_results_change_nothing() {
        run(vec![
            case(
                "inconclusive from unknown",
                vec![(Inconclusive(0), U, &["inconclusive"], "")],
            ),
            case(
                "inconclusive neither fails an UP device nor breaks a good streak",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Inconclusive(10), Up_, &["inconclusive"], ""),
                    (Fail(20), D, &["UP>DOWN", "fire DOWN"], ""),
                    (Inconclusive(30), D, &["inconclusive"], ""),
                    (Ok(40), D, &[], ""),
                    (Inconclusive(50), D, &["inconclusive"], ""),
                    (Ok(60), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                ],
            ),
            case(
                "cycle ids restarting with the planner drop nothing",
                vec![
                    (Ok(1000), Up_, &["UNKNOWN>UP"], ""),
                    (Fail(0), D, &["UP>DOWN", "fire DOWN"], ""),
                ],
            ),
        ]);
    }

    #[test]
    fn flapping_enters_and_leaves() {
        // Changes at 10, 30, 40 (enter), 60, 70, 90; only the one at 90 is
        // left in the window at 370.
        let flapping_up = vec![
            (Ok(0), Up_, &["UNKNOWN>UP"][..], ""),
            (Fail(10), D, &["UP>DOWN", "fire DOWN"][..], ""),
            (Ok(20), D, &[][..], ""),
            (Ok(30), Up_, &["DOWN>UP", "resolve DOWN"][..], ""),
            (
                Fail(40),
                F,
                &["UP>FLAPPING", "fire FLAPPING"][..],
                "3 changes in 5 min",
            ),
            (Ok(50), F, &[][..], ""),
            (Ok(60), F, &[][..], ""),
            (Fail(70), F, &[][..], ""),
            (Ok(80), F, &[][..], ""),
            (Ok(90), F, &[][..], ""),
            (Ok(360), F, &[][..], ""),
            (
                Ok(370),
                Up_,
                &["FLAPPING>UP", "resolve FLAPPING"][..],
                "1 change in 5 min",
            ),
            // Back to plain up/down alerts.
            (Fail(380), D, &["UP>DOWN", "fire DOWN"][..], ""),
        ];
        run(vec![
            case(
                "3rd change flaps; one alert; none while flapping; leaves onto UP",
                flapping_up,
            ),
            case(
                "leaving lands on the underlying DOWN and fires the down alert",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Fail(10), D, &["UP>DOWN", "fire DOWN"], ""),
                    (Ok(20), D, &[], ""),
                    (Ok(30), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                    (Fail(40), F, &["UP>FLAPPING", "fire FLAPPING"], ""),
                    (Fail(50), F, &[], ""),
                    (Fail(320), F, &[], ""),
                    (
                        Fail(330),
                        D,
                        &["FLAPPING>DOWN", "resolve FLAPPING", "fire DOWN"],
                        "still down when flapping ended",
                    ),
                    (Ok(340), D, &[], ""),
                    (Ok(350), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                ],
            ),
            case(
                "entering from DOWN resolves the down alert it replaces",
                vec![
                    (Fail(0), D, &["UNKNOWN>DOWN", "fire DOWN"], ""),
                    (Ok(10), D, &[], ""),
                    (Ok(20), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                    (Fail(30), D, &["UP>DOWN", "fire DOWN"], ""),
                    (Ok(40), D, &[], ""),
                    (
                        Ok(50),
                        F,
                        &["DOWN>FLAPPING", "resolve DOWN", "fire FLAPPING"],
                        "replaced by the flapping alert",
                    ),
                ],
            ),
            case(
                "changes spread over more than 5 min do not flap",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (Fail(100), D, &["UP>DOWN", "fire DOWN"], ""),
                    (Ok(200), D, &[], ""),
                    (Ok(210), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                    (Fail(410), D, &["UP>DOWN", "fire DOWN"], ""),
                    (Ok(500), D, &[], ""),
                    (Ok(510), Up_, &["DOWN>UP", "resolve DOWN"], ""),
                ],
            ),
            case(
                "UNREACHABLE comings and goings (the parent's doing) do not flap",
                vec![
                    (
                        FailP(0, Done(D)),
                        X,
                        &["UNKNOWN>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                    (OkP(10, Done(Up_)), Up_, &["UNREACHABLE>UP"], ""),
                    (
                        FailP(20, Done(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                    (OkP(30, Done(Up_)), Up_, &["UNREACHABLE>UP"], ""),
                    (
                        FailP(40, Done(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                    (OkP(50, Done(Up_)), Up_, &["UNREACHABLE>UP"], ""),
                ],
            ),
        ]);
    }

    #[test]
    fn parent_hold_down() {
        run(vec![
            case(
                "child waits; parent DOWN → UNREACHABLE, no alert, parent named",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (FailP(10, Late(Up_)), Up_, &["held"], ""),
                    (
                        Release(11, Done(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN"],
                        "parent tbilisi-01-rtr is DOWN",
                    ),
                    (FailP(20, Done(D)), X, &[], ""),
                    // The parent is back and the child answers: UP, silently.
                    (OkP(30, Done(Up_)), Up_, &["UNREACHABLE>UP"], ""),
                ],
            ),
            case(
                "child waits; parent UP → the child's own verdict",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (FailP(10, Late(Up_)), Up_, &["held"], ""),
                    (
                        Release(11, Done(Up_)),
                        D,
                        &["UP>DOWN", "fire DOWN"],
                        "1 failed probe (100% loss)",
                    ),
                ],
            ),
            case(
                "parent's result already in: no wait",
                vec![(
                    FailP(0, Done(X)),
                    X,
                    &["UNKNOWN>UNREACHABLE", "suppress DOWN"],
                    "parent tbilisi-01-rtr is UNREACHABLE",
                )],
            ),
            case(
                "parent's result never arrives: judged on its own after parent_hold",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (FailP(10, Late(Up_)), Up_, &["held"], ""),
                    (Release(11, Late(Up_)), Up_, &["held"], ""),
                    (
                        Release(12, Late(Up_)),
                        D,
                        &["UP>DOWN", "fire DOWN"],
                        "result of cycle 2 not in after 2 s",
                    ),
                    (Release(13, Late(Up_)), D, &[], ""),
                ],
            ),
            case(
                "parent's result late but its last known state is DOWN: UNREACHABLE",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (FailP(10, Late(D)), Up_, &["held"], ""),
                    (
                        Release(12, Late(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                ],
            ),
            case(
                "a newer result settles the held one first",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (FailP(10, Late(D)), Up_, &["held"], ""),
                    (
                        FailP(20, Late(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN", "held"],
                        "parent tbilisi-01-rtr is DOWN",
                    ),
                    (Release(21, Done(D)), X, &[], ""),
                ],
            ),
            case(
                "a child answering while its parent is down is UP (no wait)",
                vec![
                    (OkP(0, Late(D)), Up_, &["UNKNOWN>UP"], ""),
                    (
                        FailP(10, Done(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                    (
                        OkP(20, Late(D)),
                        Up_,
                        &["UNREACHABLE>UP"],
                        "reachable another way",
                    ),
                ],
            ),
            case(
                "parent back, child still failing → DOWN with its alert",
                vec![
                    (
                        FailP(0, Done(D)),
                        X,
                        &["UNKNOWN>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                    (
                        FailP(10, Done(Up_)),
                        D,
                        &["UNREACHABLE>DOWN", "fire DOWN"],
                        "parent tbilisi-01-rtr is back",
                    ),
                ],
            ),
            case(
                "an already DOWN child stays DOWN when its parent goes down",
                vec![
                    (Fail(0), D, &["UNKNOWN>DOWN", "fire DOWN"], ""),
                    (FailP(10, Done(D)), D, &[], ""),
                ],
            ),
            case(
                "after a planner restart an old, larger parent cycle does not hold",
                vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (
                        FailP(10, Old(D)),
                        X,
                        &["UP>UNREACHABLE", "suppress DOWN"],
                        "",
                    ),
                ],
            ),
            case(
                "release with nothing held is empty",
                vec![(Release(5, Done(D)), U, &[], "")],
            ),
            Case {
                name: "parent_hold 0: no wait, the parent's last known state",
                config: StateConfig {
                    parent_hold: Duration::ZERO,
                    ..StateConfig::default()
                },
                rows: vec![
                    (Ok(0), Up_, &["UNKNOWN>UP"], ""),
                    (FailP(10, Late(Up_)), D, &["UP>DOWN", "fire DOWN"], ""),
                ],
            },
        ]);
    }

    #[test]
    fn maintenance_mutes_alerts_but_changes_state() {
        run(vec![case(
            "maintenance",
            vec![
                (Maint(0, true), U, &["maintenance on"], ""),
                (Maint(0, true), U, &[], ""),
                (Ok(0), Up_, &["UNKNOWN>UP muted"], ""),
                (Fail(10), D, &["UP>DOWN muted", "fire DOWN muted"], ""),
                (Maint(15, false), D, &["maintenance off"], ""),
                (Ok(20), D, &[], ""),
                (Ok(30), Up_, &["DOWN>UP", "resolve DOWN"], ""),
            ],
        )]);
    }

    #[test]
    fn restore_gives_the_same_behaviour() {
        type Split = (&'static str, Vec<In>, Vec<In>);
        let flapping_prefix = vec![
            Ok(0),
            Fail(10),
            Ok(20),
            Ok(30),
            Fail(40),
            Ok(50),
            Ok(60),
            Fail(70),
            Ok(80),
            Ok(90),
        ];
        let splits: Vec<Split> = vec![
            (
                "steady UP, then failing",
                vec![Ok(0), Ok(10)],
                vec![Fail(20), Ok(30), Ok(40)],
            ),
            (
                "DOWN, then recovering with hysteresis",
                vec![Ok(0), Fail(10)],
                vec![Ok(20), Ok(30)],
            ),
            (
                "two recent changes: the third after restore flaps",
                vec![Ok(0), Fail(10), Ok(20), Ok(30)],
                vec![Fail(40), Ok(50), Ok(400), Ok(410)],
            ),
            (
                "FLAPPING: leaves on time, onto the right state",
                flapping_prefix,
                vec![Ok(360), Ok(370), Fail(380)],
            ),
            (
                "in maintenance",
                vec![Maint(0, true), Ok(0)],
                vec![Fail(10), Maint(20, false), Ok(30), Ok(40)],
            ),
            (
                "UNREACHABLE behind a down parent",
                vec![Ok(0), FailP(10, Done(D))],
                vec![FailP(20, Done(D)), FailP(30, Done(Up_))],
            ),
        ];
        let machine = StateMachine::new(StateConfig::default()).unwrap();
        for (name, prefix, suffix) in splits {
            let mut live = DeviceMemory::new(at(0));
            for input in prefix {
                drive(&machine, &mut live, input);
            }
            // As from the rows the caller persists…
            let mut restored =
                DeviceMemory::restore(live.state(), live.since(), live.recent_changes())
                    .with_maintenance(live.maintenance())
                    .with_consecutive_failures(live.consecutive_failures())
                    .with_underlying(live.underlying());
            // …and as a whole, serialised.
            let json = serde_json::to_string(&live).unwrap();
            let mut copied: DeviceMemory = serde_json::from_str(&json).unwrap();
            assert_eq!(copied, live, "{name}: serde round trip");
            for input in suffix {
                let expected = drive(&machine, &mut live, input);
                for (how, memory) in [("restored", &mut restored), ("copied", &mut copied)] {
                    let step = drive(&machine, memory, input);
                    assert_eq!(step, expected, "{name}: {how}, {input:?}");
                }
            }
            assert_eq!(copied, live, "{name}");
            assert_eq!(restored.state(), live.state(), "{name}");
            assert_eq!(restored.recent_changes(), live.recent_changes(), "{name}");
        }
    }

    #[test]
    fn restored_flapping_device_without_underlying_takes_the_next_result() {
        let machine = StateMachine::new(StateConfig::default()).unwrap();
        let mut memory = DeviceMemory::restore(F, at(40), vec![at(10), at(30), at(40)]);
        assert_eq!(memory.underlying(), U);
        // Still flapping by the window: the result only sets the underlying state.
        let step = machine.on_result(&mut memory, probe(50, Verdict::Failed), None, at(50));
        assert_eq!((step.state, step.events.len()), (F, 0));
        assert_eq!(memory.underlying(), D);
        let step = machine.on_result(&mut memory, probe(340, Verdict::Failed), None, at(340));
        assert_eq!(
            summary(&step),
            ["FLAPPING>DOWN", "resolve FLAPPING", "fire DOWN"]
        );
    }

    #[test]
    fn memory_serialises_readably_and_stays_small() {
        let machine = StateMachine::new(StateConfig::default()).unwrap();
        let mut memory = DeviceMemory::new(at(0));
        for t in (0..3600).step_by(10) {
            let verdict = if (t / 10) % 3 != 2 {
                Verdict::Good
            } else {
                Verdict::Failed
            };
            machine.on_result(&mut memory, probe(t, verdict), None, at(t));
        }
        assert_eq!(memory.state(), F);
        // Only the changes within the window are kept.
        assert!(
            memory.recent_changes().len() <= 31,
            "{}",
            memory.recent_changes().len()
        );
        let json = serde_json::to_value(&memory).unwrap();
        assert_eq!(json["state"], "FLAPPING");
        assert!(json.get("held").is_none());
    }

    #[test]
    fn probes_and_states_map_from_and_to_the_protocol() {
        for (outcome, verdict) in [
            (v1::ProbeOutcome::Ok, Verdict::Good),
            (v1::ProbeOutcome::Timeout, Verdict::Failed),
            (v1::ProbeOutcome::Unreachable, Verdict::Failed),
            (v1::ProbeOutcome::NoRoute, Verdict::Failed),
            (v1::ProbeOutcome::SendError, Verdict::Inconclusive),
            (v1::ProbeOutcome::Aborted, Verdict::Inconclusive),
            (v1::ProbeOutcome::InvalidAddress, Verdict::Inconclusive),
            (v1::ProbeOutcome::Unspecified, Verdict::Inconclusive),
        ] {
            let result = v1::ProbeResult {
                cycle_id: 7,
                outcome: outcome as i32,
                loss_percent: 100.0,
                ..Default::default()
            };
            let probe = Probe::from_result(&result);
            assert_eq!((probe.verdict, probe.cycle_id), (verdict, 7), "{outcome:?}");
        }
        for state in [U, Up_, D, X, F] {
            assert_eq!(State::from(v1::DeviceState::from(state)), state);
        }
        assert_eq!(State::from(v1::DeviceState::Unspecified), U);
        assert_eq!(
            v1::RuleKind::from(AlertKind::DeviceFlapping),
            v1::RuleKind::DeviceFlapping
        );
    }

    #[test]
    fn config_defaults_humantime_and_validation() {
        let defaults = StateConfig::default();
        assert_eq!(
            (
                defaults.down_after,
                defaults.up_after,
                defaults.flap_enter,
                defaults.flap_leave
            ),
            (1, 2, 3, 2)
        );
        assert_eq!(defaults.flap_window, Duration::from_secs(300));
        assert_eq!(defaults.parent_hold, Duration::from_secs(2));

        let config: StateConfig = serde_json::from_str(
            r#"{"down_after": 2, "flap_window": "10m", "parent_hold": "500ms"}"#,
        )
        .unwrap();
        assert_eq!(config.down_after, 2);
        assert_eq!(config.up_after, 2);
        assert_eq!(config.flap_window, Duration::from_secs(600));
        assert_eq!(config.parent_hold, Duration::from_millis(500));
        assert!(StateMachine::new(config).is_ok());

        for bad in [
            StateConfig {
                down_after: 0,
                ..StateConfig::default()
            },
            StateConfig {
                up_after: 0,
                ..StateConfig::default()
            },
            StateConfig {
                flap_leave: 4,
                ..StateConfig::default()
            },
            StateConfig {
                flap_leave: 0,
                ..StateConfig::default()
            },
            StateConfig {
                flap_window: Duration::ZERO,
                ..StateConfig::default()
            },
        ] {
            assert!(StateMachine::new(bad.clone()).is_err(), "{bad:?}");
        }
    }
}

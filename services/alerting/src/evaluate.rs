//! Device state after ingest: each stored result goes through the state
//! machine with its parent's view (from the inventory copy), held children
//! are released when their parent's result of the cycle is in (or the hold
//! runs out), and what changed is persisted — current state and every
//! transition — in one transaction, then announced to watchers. It also
//! knows how fresh each device's view is: [`Evaluator::freshness`] finds the
//! devices with no conclusive result for `stale_after`, and
//! [`Evaluator::mark_stale`] says so in their state.
//!
//! Memory follows the database, never leads it: every path that changes a
//! device works on copies of the devices it touches ([`Staged`]), writes
//! them, and swaps them in only after the commit. A failed write leaves
//! memory as it was, so the same input can be evaluated again (see
//! `backlog.rs`). Writers take `writer` in turn, so no two of them stage
//! from the same memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::live::{LiveDevice, LiveState};
use crate::state::{DeviceMemory, Event, EventKind, Probe, State, StateMachine, Step};
use crate::store::{AlertingStore, ChangeRow, ProbeRow, StateRow};

/// What the evaluator keeps per device besides the state machine's memory.
#[derive(Debug, Clone)]
struct Device {
    memory: DeviceMemory,
    /// The device's row, its `memory` left empty in memory.
    row: StateRow,
}

impl Device {
    /// The row as written: with the state machine's memory as JSON.
    fn stored(&self) -> StateRow {
        StateRow {
            memory: serde_json::to_value(&self.memory).unwrap_or(serde_json::Value::Null),
            ..self.row.clone()
        }
    }
}

pub struct Evaluator {
    machine: StateMachine,
    store: Arc<dyn AlertingStore>,
    copy: SharedCopy,
    devices: Mutex<HashMap<Uuid, Device>>,
    /// Held by every path that changes `devices`, from staging to swap: a
    /// change staged from memory another writer is about to replace would
    /// be lost.
    writer: tokio::sync::Mutex<()>,
    /// Devices whose live fields (last result, counters, the state
    /// machine's memory) changed in memory since they were last written:
    /// a result that changes no state is not a row update; these go in
    /// [`Evaluator::checkpoint`].
    dirty: Mutex<HashSet<Uuid>>,
    /// Parent id → children ids, rebuilt when the inventory revision moves.
    children: Mutex<(u64, HashMap<String, Vec<String>>)>,
    /// Committed state changes, with the trace context of the evaluation
    /// that made them, for WatchDeviceStates.
    pub changes: broadcast::Sender<v1::WatchDeviceStatesResponse>,
    live: Option<Arc<LiveState>>,
    /// When this process began watching: staleness is only judged over time
    /// it watched, so a restarted alerting does not blame every device for
    /// its own absence.
    watching_since: SystemTime,
}

/// How fresh the view of the monitored devices is, at one instant.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    /// Devices that should have results: enabled in the inventory.
    pub monitored: usize,
    /// Of those, the ones with no conclusive result for `stale_after`, with
    /// their last conclusive result (`None`: never had one).
    pub stale: Vec<(Uuid, Option<SystemTime>)>,
    /// The oldest last conclusive result among monitored devices that have had one.
    pub oldest_result: Option<SystemTime>,
}

impl Evaluator {
    /// Rebuilds every device's memory from PostgreSQL.
    pub async fn restore_with_live(
        machine: StateMachine,
        store: Arc<dyn AlertingStore>,
        copy: SharedCopy,
        live: Arc<LiveState>,
    ) -> Result<Self, sqlx::Error> {
        let mut evaluator = Self::restore(machine, store, copy).await?;
        evaluator.live = Some(live);
        Ok(evaluator)
    }

    pub async fn restore(
        machine: StateMachine,
        store: Arc<dyn AlertingStore>,
        copy: SharedCopy,
    ) -> Result<Self, sqlx::Error> {
        let mut devices = HashMap::new();
        for mut row in store.states().await? {
            let memory: DeviceMemory =
                serde_json::from_value(row.memory.clone()).unwrap_or_else(|_| {
                    DeviceMemory::restore(State::from(row.state), row.since.into(), Vec::new())
                        .with_maintenance(row.maintenance)
                });
            row.stale = memory.stale();
            row.last_result_at = memory.last_result().map(DateTime::<Utc>::from);
            // Memory holds the state machine's memory once, as itself: its
            // JSON is made when the row is written (`Device::stored`).
            row.memory = serde_json::Value::Null;
            devices.insert(row.device_id, Device { memory, row });
        }
        tracing::info!(devices = devices.len(), "device states restored");
        let (changes, _) = broadcast::channel(4096);
        Ok(Self {
            machine,
            store,
            copy,
            devices: Mutex::new(devices),
            writer: tokio::sync::Mutex::new(()),
            dirty: Mutex::new(HashSet::new()),
            children: Mutex::new((u64::MAX, HashMap::new())),
            changes,
            live: None,
            watching_since: SystemTime::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Device>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Name and parent id of a device, from the inventory copy.
    fn identity(&self, device_id: &str) -> (String, String) {
        self.copy
            .read()
            .ok()
            .and_then(|c| {
                c.devices
                    .get(device_id)
                    .map(|d| (d.name.to_string(), d.parent_device_id.to_string()))
            })
            .unwrap_or_else(|| (device_id.to_string(), String::new()))
    }

    fn children_of(&self, parent_id: &str) -> Vec<String> {
        let Ok(copy) = self.copy.read() else {
            return Vec::new();
        };
        let mut cache = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != copy.revision {
            let mut index: HashMap<String, Vec<String>> = HashMap::new();
            for device in copy
                .devices
                .values()
                .filter(|d| !d.parent_device_id.is_empty())
            {
                index
                    .entry(device.parent_device_id.to_string())
                    .or_default()
                    .push(device.id.to_string());
            }
            *cache = (copy.revision, index);
        }
        cache.1.get(parent_id).cloned().unwrap_or_default()
    }

    /// Feeds stored results to the state machine and persists what changed;
    /// returns the alert events (fire, resolve) for the alert engine. On an
    /// error nothing changed, in memory or in the database.
    pub async fn evaluate(
        &self,
        rows: &[ProbeRow],
        now: SystemTime,
    ) -> Result<Vec<(Uuid, Event)>, sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut changes: Vec<ChangeRow> = Vec::new();
        let mut alerts: Vec<(Uuid, Event)> = Vec::new();
        let staged = {
            let devices = self.lock();
            let mut staged = Staged::new(&devices);
            for row in rows {
                let id = row.device_id;
                let (name, parent_id) = self.identity(&id.to_string());
                let parent = Uuid::parse_str(&parent_id).ok();
                let parent_memory = parent.and_then(|p| {
                    staged
                        .get(&p)
                        .map(|d| (d.memory.clone(), self.identity(&parent_id).0))
                });
                let device = staged.entry(id, now);
                let view = parent_memory
                    .as_ref()
                    .map(|(memory, parent_name)| memory.as_parent(parent_name));
                let step = self.machine.on_result(
                    &mut device.memory,
                    Probe::from_result(&row.result),
                    view,
                    now,
                );
                record(device, &step, Some(row), &name, &mut changes);
                collect(id, &step, &mut alerts);
                if step.held.is_none() {
                    // This device's result of the cycle is in: its held
                    // children can be judged now.
                    let view_memory = device.memory.clone();
                    for child in self.children_of(&id.to_string()) {
                        let Ok(child_id) = Uuid::parse_str(&child) else {
                            continue;
                        };
                        if staged
                            .get(&child_id)
                            .is_none_or(|d| d.memory.held().is_none())
                        {
                            continue;
                        }
                        let Some(child_device) = staged.get_mut(&child_id) else {
                            continue;
                        };
                        let step = self.machine.release(
                            &mut child_device.memory,
                            Some(view_memory.as_parent(&name)),
                            now,
                        );
                        let child_name = self.identity(&child).0;
                        record(child_device, &step, None, &child_name, &mut changes);
                        collect(child_id, &step, &mut alerts);
                    }
                }
            }
            staged.changed
        };
        self.persist(staged, changes).await?;
        Ok(alerts)
    }

    /// Releases holds whose time ran out (the parent's result never came);
    /// returns the alert events.
    pub async fn release_expired(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(Uuid, Event)>, sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut changes = Vec::new();
        let mut alerts = Vec::new();
        let staged = {
            let devices = self.lock();
            let mut staged = Staged::new(&devices);
            let expired: Vec<Uuid> = devices
                .iter()
                .filter(|(_, d)| d.memory.held().is_some_and(|h| h.until <= now))
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                let (name, parent_id) = self.identity(&id.to_string());
                let parent = Uuid::parse_str(&parent_id)
                    .ok()
                    .and_then(|p| staged.get(&p).map(|d| d.memory.clone()));
                let parent_name = self.identity(&parent_id).0;
                let Some(device) = staged.get_mut(&id) else {
                    continue;
                };
                let step = self.machine.release(
                    &mut device.memory,
                    parent.as_ref().map(|m| m.as_parent(&parent_name)),
                    now,
                );
                record(device, &step, None, &name, &mut changes);
                collect(id, &step, &mut alerts);
            }
            staged.changed
        };
        self.persist(staged, changes).await?;
        Ok(alerts)
    }

    /// Sets the maintenance flag of every device to whether it is in
    /// `in_maintenance` (device → the window's reason), persisting each
    /// flip as a `state_changes` row with the state unchanged.
    pub async fn apply_maintenance(
        &self,
        in_maintenance: &HashMap<Uuid, String>,
        now: SystemTime,
    ) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut changes = Vec::new();
        let staged = {
            let devices = self.lock();
            let mut staged = Staged::new(&devices);
            // A device under a window that was never probed gets its row now.
            let flipped: Vec<Uuid> = devices
                .iter()
                .filter(|(id, d)| d.memory.maintenance() != in_maintenance.contains_key(id))
                .map(|(id, _)| *id)
                .chain(
                    in_maintenance
                        .keys()
                        .filter(|id| !devices.contains_key(id))
                        .copied(),
                )
                .collect();
            for id in flipped {
                let reason = in_maintenance.get(&id);
                let device = staged.entry(id, now);
                if device.memory.maintenance() == reason.is_some() {
                    continue;
                }
                let mut step =
                    self.machine
                        .set_maintenance(&mut device.memory, reason.is_some(), now);
                if let Some(reason) = reason {
                    for event in &mut step.events {
                        event.reason = format!("{reason} started");
                    }
                }
                let name = self.identity(&id.to_string()).0;
                record(device, &step, None, &name, &mut changes);
            }
            staged.changed
        };
        self.persist(staged, changes).await
    }

    /// Which monitored devices (enabled in the inventory) have had no
    /// conclusive result for `stale_after` at `now`. A device's clock starts
    /// at the latest of its last conclusive result, the last change of its
    /// inventory record (a device just added or re-enabled gets its own
    /// grace) and when this process began watching.
    pub fn freshness(&self, now: SystemTime, stale_after: Duration) -> Freshness {
        // The inventory copy is read and released before the devices are
        // locked: `evaluate` takes them in the other order.
        let monitored: Vec<(Uuid, SystemTime)> = {
            let Ok(copy) = self.copy.read() else {
                return Freshness::default();
            };
            copy.devices
                .values()
                .filter(|d| d.enabled)
                .filter_map(|d| {
                    let id = Uuid::parse_str(&d.id).ok()?;
                    let updated = d
                        .updated_at
                        .as_ref()
                        .and_then(crate::from_timestamp)
                        .map_or(SystemTime::UNIX_EPOCH, SystemTime::from);
                    Some((id, updated))
                })
                .collect()
        };
        let devices = self.lock();
        let mut freshness = Freshness {
            monitored: monitored.len(),
            ..Freshness::default()
        };
        for (id, updated) in monitored {
            let last = devices.get(&id).and_then(|d| d.memory.last_result());
            if let Some(last) = last {
                freshness.oldest_result =
                    Some(freshness.oldest_result.map_or(last, |o| o.min(last)));
            }
            let clock = last
                .unwrap_or(SystemTime::UNIX_EPOCH)
                .max(updated)
                .max(self.watching_since);
            if now.duration_since(clock).is_ok_and(|age| age > stale_after) {
                freshness.stale.push((id, last));
            }
        }
        freshness
    }

    /// Marks each device of `stale` (id, human reason) stale, unless it is
    /// already; a device never probed gets its row now. Fresh results clear
    /// the flag in [`Evaluator::evaluate`].
    pub async fn mark_stale(
        &self,
        stale: &[(Uuid, String)],
        now: SystemTime,
    ) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut changes = Vec::new();
        let staged = {
            let devices = self.lock();
            let mut staged = Staged::new(&devices);
            for (id, reason) in stale {
                if staged.get(id).is_some_and(|d| d.memory.stale()) {
                    continue;
                }
                let device = staged.entry(*id, now);
                let step = self.machine.set_stale(&mut device.memory, reason, now);
                let name = self.identity(&id.to_string()).0;
                record(device, &step, None, &name, &mut changes);
            }
            staged.changed
        };
        self.persist(staged, changes).await
    }

    /// Writes the live fields of every device whose row is behind memory
    /// (see `dirty`), in chunks; returns how many. Run every few minutes
    /// and at shutdown: a restart resumes counters from here (states and
    /// transitions are always written at once).
    pub async fn checkpoint(&self) -> Result<usize, sqlx::Error> {
        let _writer = self.writer.lock().await;
        let ids: Vec<Uuid> = {
            let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            dirty.drain().collect()
        };
        // Rows (with their memory as JSON) are made a chunk at a time: a
        // whole fleet's at once would be the process's largest allocation.
        let mut written = 0;
        for (done, chunk) in ids.chunks(CHECKPOINT_CHUNK).enumerate() {
            let rows: Vec<StateRow> = {
                let devices = self.lock();
                chunk
                    .iter()
                    .filter_map(|id| devices.get(id).map(Device::stored))
                    .collect()
            };
            if let Err(error) = self.store.save_states(&rows, &[]).await {
                let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
                dirty.extend(&ids[done * CHECKPOINT_CHUNK..]);
                return Err(error);
            }
            written += rows.len();
        }
        metrics::counter!("netward_alerting_checkpoint_rows_total").increment(written as u64);
        Ok(written)
    }

    /// How many devices alerting holds in each state (what everyone sees).
    pub fn state_counts(&self) -> [(State, usize); 5] {
        let mut counts = [
            State::Up,
            State::Down,
            State::Unreachable,
            State::Flapping,
            State::Unknown,
        ]
        .map(|state| (state, 0));
        for device in self.lock().values() {
            let state = device.memory.state();
            if let Some(count) = counts.iter_mut().find(|(s, _)| *s == state) {
                count.1 += 1;
            }
        }
        counts
    }

    /// Every device alerting holds a state for.
    pub fn device_ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    /// Forgets devices deleted from the inventory: their memory and
    /// current-state row (their transitions stay, for the reports).
    pub async fn forget(&self, gone: &[Uuid]) -> Result<(), sqlx::Error> {
        if gone.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        self.store.forget_states(gone).await?;
        let mut devices = self.lock();
        for id in gone {
            devices.remove(id);
        }
        Ok(())
    }

    /// Writes the staged devices and their transitions in one transaction,
    /// then (only then) swaps them into memory and announces the changes.
    async fn persist(
        &self,
        staged: HashMap<Uuid, Device>,
        changes: Vec<ChangeRow>,
    ) -> Result<(), sqlx::Error> {
        if staged.is_empty() {
            return Ok(());
        }
        // Only what a restart must not lose goes now: devices with a
        // transition, new ones, and any whose state, reason or flags moved.
        // The rest (last result, counters) waits for the checkpoint.
        let (states, later): (Vec<StateRow>, Vec<Uuid>) = {
            let base = self.lock();
            let mut states = Vec::new();
            let mut later = Vec::new();
            for (id, device) in &staged {
                let durable = changes.iter().any(|c| c.device_id == *id)
                    || base
                        .get(id)
                        .is_none_or(|old| !same_state(&old.row, &device.row));
                if durable {
                    states.push(device.stored());
                } else {
                    later.push(*id);
                }
            }
            (states, later)
        };
        if !states.is_empty() || !changes.is_empty() {
            self.store.save_states(&states, &changes).await?;
        }
        self.lock().extend(staged);
        {
            let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            for row in &states {
                dirty.remove(&row.device_id);
            }
            dirty.extend(later);
        }
        // After the commit, the live copy of what changed (Redis, or its
        // in-process stand-in); never blocking, never the source of truth.
        if let Some(live) = &self.live
            && !changes.is_empty()
        {
            let changed: Vec<LiveDevice> = states
                .iter()
                .filter(|row| changes.iter().any(|c| c.device_id == row.device_id))
                .map(|row| self.live_device(row))
                .collect();
            live.publish(&changed).await;
        }
        for change in &changes {
            metrics::counter!("netward_alerting_state_changes_total", "to" => change.to.as_str_name())
                .increment(1);
            let (name, parent) = self.identity(&change.device_id.to_string());
            let (site_id, site_name) = self
                .copy
                .read()
                .ok()
                .and_then(|c| {
                    c.devices
                        .get(&change.device_id.to_string())
                        .map(|d| (d.site_id.to_string(), d.site_name.to_string()))
                })
                .unwrap_or_default();
            let change = v1::StateChange {
                device_id: change.device_id.to_string(),
                device_name: name,
                site_id,
                site_name,
                from_state: change.from as i32,
                to_state: change.to as i32,
                maintenance: change.maintenance,
                reason: change.reason.clone(),
                changed_at: Some(crate::timestamp(change.changed_at)),
                cycle_id: change.cycle_id,
                parent_device_id: parent,
            };
            let _ = self.changes.send(v1::WatchDeviceStatesResponse {
                change: Some(change),
                trace_context: Some(netward_shared::trace_context::current()),
            });
        }
        Ok(())
    }

    /// The live (Redis) form of a stored state.
    pub fn live_device(&self, row: &StateRow) -> LiveDevice {
        let id = row.device_id.to_string();
        let (name, site) = self
            .copy
            .read()
            .ok()
            .and_then(|c| {
                c.devices
                    .get(&id)
                    .map(|d| (d.name.to_string(), d.site_name.to_string()))
            })
            .unwrap_or_else(|| (id.clone(), String::new()));
        LiveDevice {
            device_id: id,
            device_name: name,
            site,
            state: row
                .state
                .as_str_name()
                .trim_start_matches("DEVICE_STATE_")
                .to_string(),
            reason: row.reason.clone(),
            since: row.since,
            maintenance: row.maintenance,
            last_probe_at: row.last_probe_at,
            last_loss_percent: row.last_loss_percent,
            last_rtt_avg_us: row.last_rtt_avg_us.map(u64::from),
            cycle_id: row.last_cycle_id,
        }
    }

    /// Rewrites the live copy of every device (at start: Redis holds nothing
    /// that cannot be rebuilt from PostgreSQL).
    pub async fn rebuild_live(&self) {
        if let Some(live) = &self.live {
            let all: Vec<LiveDevice> = self
                .statuses()
                .iter()
                .map(|row| self.live_device(row))
                .collect();
            live.rebuild(&all).await;
        }
    }

    /// Retries live writes missed while Redis was away.
    pub async fn retry_live(&self) {
        if let Some(live) = &self.live {
            live.publish(&[]).await;
        }
    }

    /// Every device's current row.
    pub fn statuses(&self) -> Vec<StateRow> {
        self.lock().values().map(|d| d.row.clone()).collect()
    }

    /// Every device's state, maintenance flag and staleness: what the status
    /// page's counts need, without copying whole rows.
    pub fn briefs(&self) -> HashMap<Uuid, crate::summary::Brief> {
        self.lock()
            .iter()
            .map(|(id, d)| {
                let brief = crate::summary::Brief {
                    state: d.row.state,
                    maintenance: d.row.maintenance,
                    stale: d.row.stale,
                };
                (*id, brief)
            })
            .collect()
    }

    pub fn status(&self, id: Uuid) -> Option<StateRow> {
        self.lock().get(&id).map(|d| d.row.clone())
    }
}

/// Device rows written per statement by [`Evaluator::checkpoint`].
const CHECKPOINT_CHUNK: usize = 5_000;

/// The same state as far as a restart is concerned: what the row says
/// besides the live fields of the last result.
fn same_state(old: &StateRow, new: &StateRow) -> bool {
    old.state == new.state
        && old.since == new.since
        && old.reason == new.reason
        && old.maintenance == new.maintenance
        && old.stale == new.stale
}

/// Copies of the devices a writer changes, over the memory it read them
/// from: reads see the copy when there is one, writes make one.
struct Staged<'a> {
    base: &'a HashMap<Uuid, Device>,
    changed: HashMap<Uuid, Device>,
}

impl<'a> Staged<'a> {
    fn new(base: &'a HashMap<Uuid, Device>) -> Self {
        Self {
            base,
            changed: HashMap::new(),
        }
    }

    fn get(&self, id: &Uuid) -> Option<&Device> {
        self.changed.get(id).or_else(|| self.base.get(id))
    }

    fn get_mut(&mut self, id: &Uuid) -> Option<&mut Device> {
        if !self.changed.contains_key(id) {
            let device = self.base.get(id)?.clone();
            self.changed.insert(*id, device);
        }
        self.changed.get_mut(id)
    }

    /// The device's copy; a device never seen starts UNKNOWN at `now`.
    fn entry(&mut self, id: Uuid, now: SystemTime) -> &mut Device {
        let base = self.base;
        self.changed.entry(id).or_insert_with(|| {
            base.get(&id).cloned().unwrap_or_else(|| Device {
                memory: DeviceMemory::new(now),
                row: StateRow::unknown(id, now.into()),
            })
        })
    }
}

/// Applies a step to the device's row and collects its transitions.
fn record(
    device: &mut Device,
    step: &Step,
    probe: Option<&ProbeRow>,
    name: &str,
    changes: &mut Vec<ChangeRow>,
) {
    let row = &mut device.row;
    if let Some(probe) = probe {
        row.last_probe_at = Some(probe.probed_at);
        row.last_outcome = probe.result.outcome;
        row.last_loss_percent = Some(probe.result.loss_percent);
        row.last_rtt_avg_us = probe.result.rtt_avg_us;
        row.last_cycle_id = probe.result.cycle_id;
    }
    row.state = v1::DeviceState::from(step.state);
    row.maintenance = step.maintenance;
    row.since = device.memory.since().into();
    row.consecutive_failures = device.memory.consecutive_failures();
    row.stale = step.stale;
    row.last_result_at = device.memory.last_result().map(DateTime::<Utc>::from);
    for event in &step.events {
        if let EventKind::MaintenanceChanged { maintenance } = event.kind {
            let state = v1::DeviceState::from(step.state);
            tracing::info!(device = name, maintenance, reason = %event.reason, "device maintenance changed");
            changes.push(ChangeRow {
                device_id: row.device_id,
                from: state,
                to: state,
                maintenance,
                reason: event.reason.clone(),
                changed_at: DateTime::<Utc>::from(event.at),
                cycle_id: 0,
                stale: step.stale,
            });
        }
        if let EventKind::StaleChanged { stale } = event.kind {
            let state = v1::DeviceState::from(step.state);
            // The reason shown is the freshest thing known: why it went
            // stale, then that results came again (until the next change).
            row.reason = event.reason.clone();
            tracing::info!(device = name, stale, state = state.as_str_name(), reason = %event.reason, "device freshness changed");
            changes.push(ChangeRow {
                device_id: row.device_id,
                from: state,
                to: state,
                maintenance: step.maintenance,
                reason: event.reason.clone(),
                changed_at: DateTime::<Utc>::from(event.at),
                cycle_id: event.cycle_id,
                stale,
            });
        }
        if let EventKind::StateChanged { from, to } = event.kind {
            row.reason = event.reason.clone();
            tracing::info!(device = name, from = from.as_str(), to = to.as_str(), reason = %event.reason, "device state changed");
            changes.push(ChangeRow {
                device_id: row.device_id,
                from: v1::DeviceState::from(from),
                to: v1::DeviceState::from(to),
                maintenance: event.muted,
                reason: event.reason.clone(),
                changed_at: DateTime::<Utc>::from(event.at),
                cycle_id: event.cycle_id,
                stale: step.stale,
            });
        }
    }
}

/// The step's alert events, for the alert engine.
fn collect(device: Uuid, step: &Step, alerts: &mut Vec<(Uuid, Event)>) {
    for event in &step.events {
        if matches!(
            event.kind,
            EventKind::AlertFire(_) | EventKind::AlertResolve(_)
        ) {
            alerts.push((device, event.clone()));
        }
    }
}

//! The planner's state — executor sessions, cycles, batches, in-flight
//! devices — behind one mutex, and the step functions that move it:
//! `open_cycle`, `dispatch_due`, `check_timers`, and the reactions to an
//! executor's messages. Each step takes `now`, so tests drive cycles with
//! chosen instants instead of sleeping; `run` calls them on real time.
//!
//! Invariant (why there is never a backlog): a device is in flight in at most
//! one batch per kind (`in_flight` is keyed by kind and device); when a batch
//! becomes due, a device of it still in flight from an earlier batch is
//! skipped at that slot rather than queued again (and a batch left empty is
//! done, not sent); and a batch is only handed to an executor with room for
//! it. In-flight work is therefore bounded by the device count, whatever
//! executors or alerting do. Every cycle plans every eligible device, cut the
//! same way, so a device sits at the same slot each cycle: its previous probe
//! had a whole interval to finish, and in steady state nothing is skipped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use netward_shared::auth::grant::{GrantKey, pack_device_ids};
use netward_shared::proto::v1;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::EpochFloor;
use crate::sizing::{self, Sizing, SizingPolicy};
use netward_shared::inventory_copy::{CopiedDevice, SharedCopy};

pub type SessionId = u64;
pub type WorkSender = mpsc::Sender<Result<v1::WorkResponse, tonic::Status>>;
pub type WorkReceiver = mpsc::Receiver<Result<v1::WorkResponse, tonic::Status>>;

/// Messages queued on one executor's `Work` stream at most. A cycle sends an
/// executor at most one assignment per batch plus a few notices, far below
/// this; a full channel means the executor stopped reading its stream, and
/// its session ends (its batches go to others) instead of buffering forever.
pub const WORK_CHANNEL: usize = 1024;

/// How long after a batch's deadline results under its grant are still
/// accepted: an executor's delivery buffer replays what alerting did not
/// ack, after an alerting outage of up to this long.
const GRANT_REPLAY_WINDOW: i64 = 24 * 3600;

/// Cycles kept per kind for `ListCycles` and for late `BatchDone`s.
const HISTORY: usize = 100;

/// Timing and probe settings of the planner.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    pub ping_interval: Duration,
    pub snmp_interval: Duration,
    pub probe: v1::ProbeSettings,
    pub snmp_timeout_ms: u32,
    pub snmp_retries: u32,
    /// How often an SNMP device's slow-changing interface labels (names,
    /// aliases, speeds) are read again; counters are read every poll.
    pub snmp_label_refresh: Duration,
    /// How often executors heartbeat; three missed ones end the session.
    pub heartbeat_interval: Duration,
    /// Signs each assignment's grant; `None`: assignments carry none.
    pub grant_key: Option<GrantKey>,
}

impl CycleConfig {
    pub fn interval(&self, kind: v1::ExecutorKind) -> Duration {
        match kind {
            v1::ExecutorKind::Snmp => self.snmp_interval,
            _ => self.ping_interval,
        }
    }
}

#[derive(Debug)]
pub struct Executor {
    pub session: SessionId,
    pub id: String,
    pub kind: v1::ExecutorKind,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub hostname: String,
    pub remote_address: String,
    /// Random per executor process (from `Register`): a registration with
    /// the same id and token is the same process reconnecting.
    instance_token: String,
    pub(crate) tx: WorkSender,
    /// Cancelled when the session is removed: a probe-now waiting on this
    /// executor's answer gives up at once (see `adhoc`).
    pub ended: CancellationToken,
    /// Batches handed to it and not yet done (cycle id, batch index).
    batches: HashSet<(u64, usize)>,
    pub in_flight_devices: u32,
    last_heartbeat: Instant,
    pub last_heartbeat_wall: SystemTime,
    pub connected_since: SystemTime,
    pub completed: u64,
    pub overruns: u64,
    pub reassigned: u64,
    pub heartbeat: v1::Heartbeat,
}

/// Why a `Work` stream's registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Another process holds the executor id with a live session.
    #[error(
        "executor id {executor_id:?} is held by a live session of another process on host {hostname:?} \
         (remote address {remote_address}, connected since {}); retry in {} s, when that session \
         would count as dead if it stopped heartbeating, or give each process its own executor_id",
        humantime_serde::re::humantime::format_rfc3339_seconds(*connected_since),
        retry_after.as_secs_f64().ceil()
    )]
    Held {
        executor_id: String,
        hostname: String,
        remote_address: String,
        connected_since: SystemTime,
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Pending,
    Assigned(SessionId),
    Done,
    Unserved,
    /// Its executor never finished it, long past the deadline: its devices
    /// were released so later cycles can plan them again.
    Abandoned,
}

#[derive(Debug)]
pub struct Batch {
    pub id: String,
    pub index: usize,
    /// Emptied once the cycle completes: a finished cycle in the history
    /// keeps its figures, not its 100,000 targets (`device_count` stays).
    pub targets: Vec<Arc<CopiedDevice>>,
    /// The batch's devices (the targets it kept at assignment).
    pub device_count: u32,
    selector: Arc<BTreeMap<String, String>>,
    pub start_at: Instant,
    pub deadline: Instant,
    pub state: BatchState,
    pub overrun: bool,
    pub executor_id: String,
    pub previous_executor_id: String,
    pub assigned_at: Option<SystemTime>,
    pub done_at: Option<SystemTime>,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub duration_ms: u32,
    /// Sessions that refused this batch: it is not offered to them again.
    rejected_by: Vec<SessionId>,
}

#[derive(Debug)]
pub struct Cycle {
    pub id: u64,
    pub kind: v1::ExecutorKind,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub interval: Duration,
    pub sizing: Sizing,
    pub batches: Vec<Batch>,
    pub skipped: u32,
    pub overruns: u32,
    pub reassigned: u32,
    pub unserved: u32,
    pub unserved_devices: u32,
    pub planning_time: Duration,
    pub completed_at: Option<Instant>,
    pub epoch: u64,
    pub trace_context: v1::TraceContext,
}

impl Cycle {
    fn finished(&self) -> bool {
        self.batches
            .iter()
            .all(|b| !matches!(b.state, BatchState::Pending | BatchState::Assigned(_)))
    }
}

/// Devices in flight: per kind (a device is pinged and SNMP-polled
/// independently), device id → (cycle id, batch index) of the batch probing
/// it now.
#[derive(Debug, Default)]
pub struct InFlight {
    by_kind: HashMap<i32, HashMap<String, (u64, usize)>>,
}

impl InFlight {
    /// Devices in flight, all kinds together.
    pub fn len(&self) -> usize {
        self.by_kind.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch probing `device` for `kind` now, if any.
    pub fn holder(&self, kind: v1::ExecutorKind, device: &str) -> Option<(u64, usize)> {
        self.by_kind
            .get(&(kind as i32))
            .and_then(|devices| devices.get(device))
            .copied()
    }

    fn insert(&mut self, kind: v1::ExecutorKind, device: String, batch: (u64, usize)) {
        self.by_kind
            .entry(kind as i32)
            .or_default()
            .insert(device, batch);
    }

    /// Takes `device` out of flight if `batch` is what holds it.
    fn release(&mut self, kind: v1::ExecutorKind, device: &str, batch: (u64, usize)) {
        if let Some(devices) = self.by_kind.get_mut(&(kind as i32))
            && devices.get(device) == Some(&batch)
        {
            devices.remove(device);
        }
    }
}

#[derive(Debug)]
pub struct State {
    pub policy: SizingPolicy,
    pub executors: HashMap<SessionId, Executor>,
    pub in_flight: InFlight,
    pub cycles: VecDeque<Cycle>,
    next_cycle: u64,
    next_session: SessionId,
    pub epoch: u64,
    pub leading: bool,
    /// Sessions whose work channel was full: ended (outside the lock) by
    /// the step that found them, as dead.
    stuck: Vec<SessionId>,
}

/// The scheduler: state plus what it reads (the inventory copy) and what it
/// announces (cycle events).
pub struct Scheduler {
    pub config: CycleConfig,
    pub state: Mutex<State>,
    copy: SharedCopy,
    /// Maps scheduling instants to wall-clock timestamps for messages.
    clock_base: (Instant, SystemTime),
    pub cycle_events: broadcast::Sender<v1::WatchCyclesResponse>,
    /// The highest leader epoch executors reported; the lease stays above it.
    pub epoch_floor: Arc<EpochFloor>,
    /// Resolved SNMP credentials by id (dropped when a device using one
    /// changes, and when no device uses it any more).
    pub credentials: Mutex<HashMap<String, v1::ResolvedCredential>>,
    /// Bumped whenever `credentials` changes, so SNMP plans are rebuilt.
    pub credentials_generation: AtomicU64,
    /// Credentials whose last resolution failed: SNMP cycles do not wait
    /// for them (see `credentials_first_try`).
    credentials_failed: Mutex<HashSet<String>>,
    /// What pollers learned per SNMP device (engine id and time,
    /// max-repetitions, resolved profile, when labels were last read), from
    /// `BatchDone.snmp_hints`, sent back with the device's next target so
    /// any poller polls it without a cold start. Lost with the process: the
    /// next poll of each device rediscovers it.
    snmp_hints: Mutex<HashMap<String, v1::SnmpHints>>,
    /// Per kind: the eligible devices in planning order with their groups,
    /// rebuilt only when the inventory (or a credential) changed — so a
    /// cycle of 100,000 devices costs a pass over a list, not a sort.
    plans: Mutex<HashMap<i32, Arc<Plan>>>,
}

/// Labels an executor must carry to take a batch.
type Selector = Arc<BTreeMap<String, String>>;

/// Eligible devices of one kind, parents first, in their selector groups.
/// The devices are the inventory copy's own (shared, not copied); a
/// batch's targets are built when it is sent, with the credentials and
/// SNMP hints of that moment.
struct Plan {
    revision: u64,
    credentials_generation: u64,
    devices: Vec<Planned>,
    /// Distinct executor selectors; `Planned::group` indexes them.
    selectors: Vec<Arc<BTreeMap<String, String>>>,
    /// SNMP: credentials eligible devices use that are not resolved yet
    /// (sorted), and the devices left out for it. Polling without its
    /// credential would only fail (and look like an agent fault), so such
    /// a device waits, counted as skipped, until the resolver has it.
    credentials_missing: Vec<String>,
    devices_without_credential: u32,
}

struct Planned {
    device: Arc<CopiedDevice>,
    group: usize,
}

/// Whether a device takes part in a cycle of `kind`.
fn eligible(device: &CopiedDevice, kind: v1::ExecutorKind) -> bool {
    device.enabled
        && match kind {
            v1::ExecutorKind::Snmp => device.snmp.as_ref().is_some_and(|s| s.enabled),
            _ => true,
        }
}

impl Scheduler {
    pub fn new(config: CycleConfig, policy: SizingPolicy, copy: SharedCopy) -> Self {
        let (cycle_events, _) = broadcast::channel(256);
        Self {
            config,
            state: Mutex::new(State {
                policy,
                executors: HashMap::new(),
                in_flight: InFlight::default(),
                cycles: VecDeque::new(),
                next_cycle: 1,
                next_session: 1,
                epoch: 0,
                leading: false,
                stuck: Vec::new(),
            }),
            copy,
            clock_base: (Instant::now(), SystemTime::now()),
            cycle_events,
            epoch_floor: Arc::default(),
            credentials: Mutex::new(HashMap::new()),
            credentials_generation: AtomicU64::new(0),
            credentials_failed: Mutex::new(HashSet::new()),
            snmp_hints: Mutex::new(HashMap::new()),
            plans: Mutex::new(HashMap::new()),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn wall(&self, at: Instant) -> SystemTime {
        let (base, wall) = self.clock_base;
        if at >= base {
            wall + (at - base)
        } else {
            wall - (base - at)
        }
    }

    /// Leadership changed: executors hear of it; a planner that stops leading
    /// forgets its pending work (the new leader plans afresh).
    pub fn set_leadership(&self, leading: bool, epoch: u64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.leading == leading && state.epoch == epoch {
            return;
        }
        state.leading = leading;
        state.epoch = epoch;
        if !leading {
            for cycle in &mut state.cycles {
                for batch in &mut cycle.batches {
                    if batch.state == BatchState::Pending {
                        batch.state = BatchState::Unserved;
                    }
                }
            }
        }
        let notice = v1::WorkResponse {
            msg: Some(v1::work_response::Msg::LeaderChange(v1::LeaderChange {
                leader_epoch: epoch,
                leading,
                ..Default::default()
            })),
        };
        for executor in state.executors.values() {
            send_work(executor, &mut state.stuck, notice.clone());
        }
        drop(guard);
        self.end_stuck();
    }

    /// Ends the sessions whose work channel was found full.
    fn end_stuck(&self) {
        let stuck = std::mem::take(&mut self.lock().stuck);
        for session in stuck {
            self.disconnect(session);
        }
    }

    /// Plans a cycle of `kind` at `now`: sizes batches from the eligible
    /// devices, orders parents first, and spreads start times over the
    /// interval. Every eligible device is planned, in flight or not: whether
    /// it is still busy is decided at its batch's slot (`assign`), when the
    /// previous cycle's batch at the same slot has had a whole interval.
    /// Returns the cycle id, or `None` when this planner does not lead or the
    /// inventory is not synced.
    pub fn open_cycle(&self, kind: v1::ExecutorKind, now: Instant) -> Option<u64> {
        let planning_started = std::time::Instant::now();
        let plan = self.plan(kind)?;
        let mut state = self.lock();
        if !state.leading {
            return None;
        }
        let interval = self.config.interval(kind);
        let sizing = sizing::size(plan.devices.len() as u64, &state.policy);

        // Keep the plan's parent-first order within each selector group.
        // The cut is the same every cycle while the inventory is, so each
        // device keeps its slot.
        let mut groups: Vec<Vec<Arc<CopiedDevice>>> = vec![Vec::new(); plan.selectors.len()];
        for planned in &plan.devices {
            groups[planned.group].push(planned.device.clone());
        }

        let id = state.next_cycle;
        state.next_cycle += 1;
        let batch_size = sizing.batch_size.max(1) as usize;
        let mut cut: Vec<(Selector, Vec<Arc<CopiedDevice>>)> = Vec::new();
        for (group, targets) in groups.into_iter().enumerate() {
            for chunk in targets.chunks(batch_size) {
                cut.push((plan.selectors[group].clone(), chunk.to_vec()));
            }
        }
        // Parent-first order holds across the cycle too: batches start in
        // the order they were cut, and each group is cut shallowest first.
        let count = cut.len().max(1) as u32;
        let batches: Vec<Batch> = cut
            .into_iter()
            .enumerate()
            .map(|(index, (selector, targets))| {
                let start_at = now + interval.mul_f64(index as f64 / f64::from(count));
                Batch {
                    id: format!("{id}-{index}"),
                    index,
                    device_count: targets.len() as u32,
                    targets,
                    selector,
                    start_at,
                    deadline: start_at + interval,
                    state: BatchState::Pending,
                    overrun: false,
                    executor_id: String::new(),
                    previous_executor_id: String::new(),
                    assigned_at: None,
                    done_at: None,
                    succeeded: 0,
                    failed: 0,
                    skipped: 0,
                    duration_ms: 0,
                    rejected_by: Vec::new(),
                }
            })
            .collect();

        let planning_time = planning_started.elapsed();
        if plan.devices_without_credential > 0 {
            metrics::counter!("netward_planner_credential_pending_devices_total")
                .increment(u64::from(plan.devices_without_credential));
            tracing::warn!(
                cycle_id = id,
                devices = plan.devices_without_credential,
                credentials = ?plan.credentials_missing,
                "SNMP devices left out of the cycle: their credential is not resolved yet"
            );
        }
        let cycle_span =
            tracing::info_span!("planner.cycle", cycle_id = id, kind = kind.as_str_name());
        netward_shared::trace_context::set_parent(&cycle_span, None);
        let trace_context = cycle_span.in_scope(netward_shared::trace_context::current);
        tracing::info!(
            parent: &cycle_span,
            cycle_id = id,
            kind = kind.as_str_name(),
            batches = batches.len(),
            planning_ms = planning_time.as_secs_f64() * 1000.0,
            "{}",
            sizing::log_line(&sizing)
        );
        let kind_label = kind_label(kind);
        metrics::counter!("netward_planner_cycles_total", "kind" => kind_label).increment(1);
        metrics::counter!("netward_planner_batches_total", "kind" => kind_label)
            .increment(batches.len() as u64);
        metrics::counter!("netward_planner_devices_planned_total", "kind" => kind_label)
            .increment(sizing.device_count);
        metrics::histogram!("netward_planner_cycle_planning_seconds", "kind" => kind_label)
            .record(planning_time.as_secs_f64());

        let cycle = Cycle {
            id,
            kind,
            started: now,
            started_wall: self.wall(now),
            interval,
            sizing,
            batches,
            skipped: plan.devices_without_credential,
            overruns: 0,
            reassigned: 0,
            unserved: 0,
            unserved_devices: 0,
            planning_time,
            completed_at: None,
            epoch: state.epoch,
            trace_context,
        };
        let event = self.summary(&cycle);
        state.cycles.push_back(cycle);
        let kept: Vec<u64> = {
            let mut per_kind: HashMap<i32, usize> = HashMap::new();
            state
                .cycles
                .iter()
                .rev()
                .filter(|c| {
                    let n = per_kind.entry(c.kind as i32).or_default();
                    *n += 1;
                    *n <= HISTORY
                })
                .map(|c| c.id)
                .collect()
        };
        state.cycles.retain(|c| kept.contains(&c.id));
        let _ = self.cycle_events.send(v1::WatchCyclesResponse {
            event: v1::CycleEventKind::Started as i32,
            cycle: Some(event),
            trace_context: None,
        });
        Some(id)
    }

    /// A resolved credential was added or dropped: SNMP plans are rebuilt.
    pub fn credentials_changed(&self) {
        self.credentials_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The plan of `kind` for the current inventory, rebuilt if stale;
    /// `None` until the inventory copy is synced.
    fn plan(&self, kind: v1::ExecutorKind) -> Option<Arc<Plan>> {
        let copy = self.copy.read().ok()?;
        if !copy.synced {
            return None;
        }
        let generation = self.credentials_generation.load(Ordering::Acquire);
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(&(kind as i32))
            && plan.revision == copy.revision
            && plan.credentials_generation == generation
        {
            return Some(plan.clone());
        }
        // Each parent right before its children (depth-first): a batch never
        // holds a device whose parent is in a later batch of its group, and a
        // branch router is probed in the same batch as the devices behind it,
        // moments apart — so when a branch goes dark mid-cycle, its router's
        // result of that cycle already says so when its children's arrive.
        let mut eligible: Vec<&Arc<CopiedDevice>> = tree_order(&copy.devices)
            .into_iter()
            .filter(|d| eligible(d, kind))
            .collect();
        let mut credentials_missing = Vec::new();
        let mut devices_without_credential = 0;
        if kind == v1::ExecutorKind::Snmp {
            self.prune(&copy.devices);
            let cache = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
            eligible.retain(|device| {
                let id = device
                    .snmp
                    .as_ref()
                    .map_or("", |snmp| snmp.credential_id.as_str());
                let resolved = id.is_empty() || cache.contains_key(id);
                if !resolved {
                    credentials_missing.push(id.to_string());
                    devices_without_credential += 1;
                }
                resolved
            });
            credentials_missing.sort_unstable();
            credentials_missing.dedup();
        }
        let mut selectors: Vec<Arc<BTreeMap<String, String>>> = Vec::new();
        let mut group_of: HashMap<BTreeMap<String, String>, usize> = HashMap::new();
        let devices = eligible
            .into_iter()
            .map(|device| {
                let selector: BTreeMap<String, String> = device
                    .executor_selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let group = *group_of.entry(selector.clone()).or_insert_with(|| {
                    selectors.push(Arc::new(selector));
                    selectors.len() - 1
                });
                Planned {
                    device: device.clone(),
                    group,
                }
            })
            .collect();
        let plan = Arc::new(Plan {
            revision: copy.revision,
            credentials_generation: generation,
            devices,
            selectors,
            credentials_missing,
            devices_without_credential,
        });
        plans.insert(kind as i32, plan.clone());
        Some(plan)
    }

    /// Forgets what is kept per device or credential that left the
    /// inventory: SNMP hints of deleted devices, credentials no SNMP device
    /// uses any more. Run at each SNMP plan rebuild (an inventory change).
    fn prune(&self, devices: &HashMap<String, Arc<CopiedDevice>>) {
        if let Ok(mut hints) = self.snmp_hints.lock() {
            hints.retain(|device_id, _| devices.contains_key(device_id));
        }
        let used: HashSet<&str> = devices
            .values()
            .filter_map(|d| d.snmp.as_ref())
            .map(|snmp| snmp.credential_id.as_str())
            .collect();
        if let Ok(mut cache) = self.credentials.lock() {
            // No plan changes: the credentials dropped are used by nobody.
            cache.retain(|id, _| used.contains(id.as_str()));
        }
        if let Ok(mut failed) = self.credentials_failed.lock() {
            failed.retain(|id| used.contains(id.as_str()));
        }
    }

    /// Credentials the SNMP plan waits for (eligible devices use them and
    /// they are not resolved): what the resolver fetches.
    pub fn credentials_missing(&self) -> Vec<String> {
        self.plan(v1::ExecutorKind::Snmp)
            .map(|plan| plan.credentials_missing.clone())
            .unwrap_or_default()
    }

    /// Records whether the last resolution of credential `id` failed.
    pub fn credential_failed(&self, id: &str, failed: bool) {
        if let Ok(mut set) = self.credentials_failed.lock() {
            if failed {
                set.insert(id.to_string());
            } else {
                set.remove(id);
            }
        }
    }

    /// Whether a missing credential has not been tried yet (or is on its
    /// first try): the SNMP cycle holds off a little for it.
    pub fn credentials_first_try(&self) -> bool {
        let missing = self.credentials_missing();
        let failed = self
            .credentials_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        missing.iter().any(|id| !failed.contains(id))
    }

    /// SNMP hints kept, for tests of pruning.
    pub fn snmp_hint_count(&self) -> usize {
        self.snmp_hints.lock().map(|h| h.len()).unwrap_or_default()
    }

    /// A device of the inventory copy by id, or else by name (names are
    /// unique); `None` inside `Some` for an unknown one, `None` while the
    /// copy is not synced.
    pub fn find_device(&self, key: &str) -> Option<Option<Arc<CopiedDevice>>> {
        let copy = self.copy.read().ok()?;
        if !copy.synced {
            return None;
        }
        Some(copy.devices.get(key).cloned().or_else(|| {
            copy.devices
                .values()
                .find(|device| &*device.name == key)
                .cloned()
        }))
    }

    /// The target of `device` in an assignment of `kind`: address, probe
    /// overrides, SNMP settings with the resolved credential (no hints).
    pub fn target(&self, device: &CopiedDevice, kind: v1::ExecutorKind) -> v1::Target {
        let probe = device.probe_overrides.as_ref().map(|o| v1::ProbeSettings {
            count: o.count.unwrap_or(self.config.probe.count),
            interval_ms: o.interval_ms.unwrap_or(self.config.probe.interval_ms),
            timeout_ms: o.timeout_ms.unwrap_or(self.config.probe.timeout_ms),
            retries: o.retries.or(self.config.probe.retries),
        });
        let snmp = match (kind, &device.snmp) {
            (v1::ExecutorKind::Snmp, Some(settings)) => Some(v1::SnmpTarget {
                version: settings.version,
                port: if settings.port == 0 {
                    161
                } else {
                    settings.port
                },
                credential: self
                    .credentials
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&settings.credential_id).cloned()),
                profile: settings.profile.clone(),
                timeout_ms: self.config.snmp_timeout_ms,
                retries: Some(self.config.snmp_retries),
                ..Default::default()
            }),
            _ => None,
        };
        v1::Target {
            device_id: device.id.to_string(),
            device_name: device.name.to_string(),
            address: device.ip_address.to_string(),
            site: device.site_name.to_string(),
            parent_device_id: device.parent_device_id.to_string(),
            probe,
            snmp,
        }
    }

    /// An SNMP target with what pollers learned of its device, and whether
    /// this poll reads the interface labels again (never read, or read
    /// longer than `snmp_label_refresh` ago).
    pub fn with_hints(&self, mut target: v1::Target) -> v1::Target {
        let Some(snmp) = target.snmp.as_mut() else {
            return target;
        };
        let hints = self
            .snmp_hints
            .lock()
            .ok()
            .and_then(|h| h.get(&target.device_id).cloned());
        let refreshed_at = hints
            .as_ref()
            .and_then(|h| h.labels_refreshed_at)
            .and_then(|t| SystemTime::try_from(t).ok());
        snmp.refresh_labels = refreshed_at.is_none_or(|at| {
            SystemTime::now()
                .duration_since(at)
                .is_ok_and(|age| age >= self.config.snmp_label_refresh)
        });
        snmp.hints = hints;
        target
    }

    /// Hands every batch whose start time has come to an executor.
    pub fn dispatch_due(&self, now: Instant) {
        let mut state = self.lock();
        if !state.leading {
            return;
        }
        let due: Vec<(usize, usize)> = state
            .cycles
            .iter()
            .enumerate()
            .flat_map(|(c, cycle)| {
                cycle
                    .batches
                    .iter()
                    .filter(move |b| b.state == BatchState::Pending && b.start_at <= now)
                    .map(move |b| (c, b.index))
            })
            .collect();
        for (c, b) in due {
            assign(&mut state, self, c, b, false);
        }
        drop(state);
        self.end_stuck();
    }

    /// Overruns, abandoned batches, silent executors and finished cycles.
    pub fn check_timers(&self, now: Instant) {
        let state = self.lock();
        let silent_after = self.config.heartbeat_interval * 3;
        let silent: Vec<SessionId> = state
            .executors
            .values()
            .filter(|e| now.saturating_duration_since(e.last_heartbeat) > silent_after)
            .map(|e| e.session)
            .collect();
        drop(state);
        self.end_stuck();
        for session in silent {
            tracing::warn!(
                session,
                "executor missed three heartbeats; ending its session"
            );
            self.disconnect(session);
        }

        let mut state = self.lock();
        let state = &mut *state;
        let mut finished = Vec::new();
        for cycle in state.cycles.iter_mut() {
            let kind_label = kind_label(cycle.kind);
            for batch in cycle.batches.iter_mut() {
                let BatchState::Assigned(session) = batch.state else {
                    continue;
                };
                if !batch.overrun && now >= batch.deadline {
                    batch.overrun = true;
                    cycle.overruns += 1;
                    if let Some(executor) = state.executors.get_mut(&session) {
                        executor.overruns += 1;
                    }
                    metrics::counter!("netward_planner_overruns_total", "kind" => kind_label)
                        .increment(1);
                    tracing::warn!(
                        cycle_id = cycle.id,
                        batch_id = %batch.id,
                        executor_id = %batch.executor_id,
                        devices = batch.device_count,
                        "batch overrun: not done by its deadline"
                    );
                }
                if now >= batch.deadline + cycle.interval {
                    batch.state = BatchState::Abandoned;
                    release(
                        &mut state.in_flight,
                        &mut state.executors,
                        session,
                        (cycle.kind, cycle.id),
                        batch,
                    );
                    tracing::warn!(
                        cycle_id = cycle.id,
                        batch_id = %batch.id,
                        executor_id = %batch.executor_id,
                        "batch abandoned: its devices are planned again"
                    );
                }
            }
            if cycle.completed_at.is_none() && cycle.finished() {
                cycle.completed_at = Some(now);
                finished.push(self.summary(cycle));
                for batch in &mut cycle.batches {
                    batch.targets = Vec::new();
                }
            }
        }
        for summary in finished {
            let _ = self.cycle_events.send(v1::WatchCyclesResponse {
                event: v1::CycleEventKind::Completed as i32,
                cycle: Some(summary),
                trace_context: None,
            });
        }
    }

    /// A new `Work` stream registered. An executor id has one session at a
    /// time. When it is held already: the same process reconnecting (same
    /// `instance_token`, e.g. after a broken stream) takes the old session
    /// over at once; another process is refused while the old session is
    /// live (a heartbeat within three intervals), so two live processes
    /// never take turns with one id, and takes over once it is silent (a
    /// quick restart whose old stream is half-open waits that long).
    pub fn register(
        &self,
        register: v1::Register,
        remote_address: String,
        tx: WorkSender,
        now: Instant,
    ) -> Result<(SessionId, v1::Registered), RegisterError> {
        if self.epoch_floor.observe(register.leader_epoch_seen) {
            let state = self.lock();
            if state.leading && register.leader_epoch_seen > state.epoch {
                tracing::warn!(
                    executor_id = %register.executor_id,
                    epoch = state.epoch,
                    seen = register.leader_epoch_seen,
                    "an executor saw a higher leader epoch than this leader's: bumping the epoch"
                );
            }
        }
        let silent_after = self.config.heartbeat_interval * 3;
        let holder = self
            .lock()
            .executors
            .values()
            .find(|e| e.id == register.executor_id)
            .map(|e| {
                let same_instance = !register.instance_token.is_empty()
                    && e.instance_token == register.instance_token;
                let silent_for = now.saturating_duration_since(e.last_heartbeat);
                if same_instance || silent_for > silent_after {
                    Ok((e.session, same_instance))
                } else {
                    Err(RegisterError::Held {
                        executor_id: e.id.clone(),
                        hostname: e.hostname.clone(),
                        remote_address: e.remote_address.clone(),
                        connected_since: e.connected_since,
                        // When the holder would count as dead were it to
                        // stop heartbeating now, plus a second of margin.
                        retry_after: silent_after - silent_for + Duration::from_secs(1),
                    })
                }
            })
            .transpose()?;
        if let Some((session, same_instance)) = holder {
            if same_instance {
                tracing::info!(executor_id = %register.executor_id, "executor reconnected; its old session is taken over");
            } else {
                tracing::info!(executor_id = %register.executor_id, "a new process takes over the silent session of its executor id");
            }
            self.disconnect(session);
        }
        let mut state = self.lock();
        let session = state.next_session;
        state.next_session += 1;
        let kind = v1::ExecutorKind::try_from(register.kind).unwrap_or(v1::ExecutorKind::Ping);
        tracing::info!(
            executor_id = %register.executor_id,
            kind = kind.as_str_name(),
            capacity = register.capacity,
            labels = ?register.labels,
            "executor registered"
        );
        state.executors.insert(
            session,
            Executor {
                session,
                id: register.executor_id,
                kind,
                capacity: register.capacity,
                labels: register.labels.into_iter().collect(),
                version: register.version,
                hostname: register.hostname,
                remote_address,
                instance_token: register.instance_token,
                tx,
                ended: CancellationToken::new(),
                batches: HashSet::new(),
                in_flight_devices: 0,
                last_heartbeat: now,
                last_heartbeat_wall: self.wall(now),
                connected_since: self.wall(now),
                completed: 0,
                overruns: 0,
                reassigned: 0,
                heartbeat: v1::Heartbeat::default(),
            },
        );
        executors_gauge(&state);
        let registered = v1::Registered {
            session_id: session.to_string(),
            leader_epoch: state.epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u32,
            leading: state.leading,
            planner_instance_id: String::new(),
        };
        Ok((session, registered))
    }

    pub fn heartbeat(&self, session: SessionId, heartbeat: v1::Heartbeat, now: Instant) {
        self.epoch_floor.observe(heartbeat.leader_epoch_seen);
        let wall = self.wall(now);
        if let Some(executor) = self.lock().executors.get_mut(&session) {
            executor.last_heartbeat = now;
            executor.last_heartbeat_wall = wall;
            executor.heartbeat = heartbeat;
        }
    }

    /// Any message proves the executor alive.
    pub fn touch(&self, session: SessionId, now: Instant) {
        let wall = self.wall(now);
        if let Some(executor) = self.lock().executors.get_mut(&session) {
            executor.last_heartbeat = now;
            executor.last_heartbeat_wall = wall;
        }
    }

    /// An executor refused a batch (stale epoch, no room): give it to another.
    /// A stale-epoch refusal also raises the epoch floor, so the lease takes
    /// an epoch above the executor's at once and the next batches are taken.
    pub fn rejected(&self, session: SessionId, ack: &v1::AssignmentAck) {
        if ack.leader_epoch_seen > ack.leader_epoch {
            metrics::counter!("netward_planner_stale_rejections_total").increment(1);
            if self.epoch_floor.observe(ack.leader_epoch_seen) {
                tracing::warn!(
                    epoch = ack.leader_epoch,
                    seen = ack.leader_epoch_seen,
                    "an executor refused a batch of a stale epoch: taking an epoch above what it saw"
                );
            }
        }
        self.rejected_locked(session, ack);
        self.end_stuck();
    }

    fn rejected_locked(&self, session: SessionId, ack: &v1::AssignmentAck) {
        let mut state = self.lock();
        let Some((c, b)) = find_batch(&state, ack.cycle_id, &ack.batch_id) else {
            return;
        };
        if state.cycles[c].batches[b].state != BatchState::Assigned(session) {
            return;
        }
        tracing::warn!(batch_id = %ack.batch_id, reason = %ack.reject_reason, "executor rejected a batch");
        let state = &mut *state;
        let cycle = &mut state.cycles[c];
        let batch = &mut cycle.batches[b];
        release(
            &mut state.in_flight,
            &mut state.executors,
            session,
            (cycle.kind, cycle.id),
            batch,
        );
        batch.state = BatchState::Pending;
        batch.rejected_by.push(session);
        assign(state, self, c, b, true);
    }

    pub fn batch_done(&self, session: SessionId, done: &v1::BatchDone, now: Instant) {
        // Hints are worth keeping even from a stale report: they describe
        // the devices, not the batch.
        // Only for devices still in the inventory, or a deleted device's
        // hints would outlive their pruning. The copy is read before the
        // hints are locked, the order `plan` takes them in.
        let known: Vec<&v1::SnmpHints> = match self.copy.read() {
            Ok(copy) => done
                .snmp_hints
                .iter()
                .filter(|hint| copy.devices.contains_key(&hint.device_id))
                .collect(),
            Err(_) => Vec::new(),
        };
        if !known.is_empty()
            && let Ok(mut hints) = self.snmp_hints.lock()
        {
            for hint in known {
                hints.insert(hint.device_id.clone(), hint.clone());
            }
        }
        let wall = self.wall(now);
        let mut state = self.lock();
        let Some((c, b)) = find_batch(&state, done.cycle_id, &done.batch_id) else {
            tracing::debug!(batch_id = %done.batch_id, "done for an unknown batch ignored");
            return;
        };
        let state = &mut *state;
        let cycle = &mut state.cycles[c];
        let batch = &mut cycle.batches[b];
        if batch.state != BatchState::Assigned(session) {
            // Reassigned meanwhile, or abandoned: the report is stale.
            return;
        }
        release(
            &mut state.in_flight,
            &mut state.executors,
            session,
            (cycle.kind, cycle.id),
            batch,
        );
        batch.state = BatchState::Done;
        batch.done_at = Some(wall);
        batch.succeeded = done.succeeded;
        batch.failed = done.failed;
        // Added to what the planner skipped at the batch's slot.
        batch.skipped += done.skipped;
        cycle.skipped += done.skipped;
        batch.duration_ms = done.duration_ms;
        if let Some(executor) = state.executors.get_mut(&session) {
            executor.completed += 1;
        }
    }

    /// The executor's stream ended: its unfinished batches go to others now.
    pub fn disconnect(&self, session: SessionId) {
        let mut guard = self.lock();
        let Some(executor) = guard.executors.remove(&session) else {
            return;
        };
        executor.ended.cancel();
        tracing::info!(executor_id = %executor.id, batches = executor.batches.len(), "executor left");
        executors_gauge(&guard);
        let state = &mut *guard;
        let mut orphans: Vec<(usize, usize)> = Vec::new();
        for (c, cycle) in state.cycles.iter_mut().enumerate() {
            for batch in cycle.batches.iter_mut() {
                if batch.state == BatchState::Assigned(session) {
                    for target in &batch.targets {
                        state
                            .in_flight
                            .release(cycle.kind, &target.id, (cycle.id, batch.index));
                    }
                    batch.previous_executor_id = executor.id.clone();
                    batch.state = BatchState::Pending;
                    cycle.reassigned += 1;
                    orphans.push((c, batch.index));
                }
            }
        }
        if state.leading {
            for (c, b) in orphans {
                metrics::counter!("netward_planner_reassignments_total").increment(1);
                assign(state, self, c, b, true);
            }
        }
        drop(guard);
        self.end_stuck();
    }

    pub fn summary(&self, cycle: &Cycle) -> v1::CycleSummary {
        let done: Vec<&Batch> = cycle
            .batches
            .iter()
            .filter(|b| b.state == BatchState::Done)
            .collect();
        let duration = cycle
            .completed_at
            .map(|at| at.saturating_duration_since(cycle.started))
            .unwrap_or_default();
        v1::CycleSummary {
            cycle_id: cycle.id,
            kind: cycle.kind as i32,
            started_at: Some(timestamp(cycle.started_wall)),
            interval: Some(prost_types::Duration {
                seconds: cycle.interval.as_secs() as i64,
                nanos: cycle.interval.subsec_nanos() as i32,
            }),
            duration_ms: duration.as_millis().min(u128::from(u32::MAX)) as u32,
            device_count: cycle.sizing.device_count.min(u64::from(u32::MAX)) as u32,
            batch_size: cycle.sizing.batch_size,
            batch_count: cycle.batches.len() as u32,
            skipped: cycle.skipped,
            overruns: cycle.overruns,
            reassigned: cycle.reassigned,
            unserved: cycle.unserved,
            unserved_devices: cycle.unserved_devices,
            planning_time_us: cycle.planning_time.as_micros().min(u128::from(u32::MAX)) as u32,
            completed: cycle.completed_at.is_some(),
            leader_epoch: cycle.epoch,
            done_batches: done.len() as u32,
            succeeded: done.iter().map(|b| b.succeeded).sum(),
            failed: done.iter().map(|b| b.failed).sum(),
        }
    }

    pub fn batch_info(&self, batch: &Batch) -> v1::CycleBatch {
        let state = match batch.state {
            BatchState::Pending => v1::BatchState::Pending,
            BatchState::Assigned(_) if batch.overrun => v1::BatchState::Overrun,
            BatchState::Assigned(_) if !batch.previous_executor_id.is_empty() => {
                v1::BatchState::Reassigned
            }
            BatchState::Assigned(_) => v1::BatchState::Assigned,
            BatchState::Done => v1::BatchState::Done,
            BatchState::Unserved => v1::BatchState::Unserved,
            BatchState::Abandoned => v1::BatchState::Overrun,
        };
        v1::CycleBatch {
            batch_id: batch.id.clone(),
            batch_index: batch.index as u32,
            executor_id: batch.executor_id.clone(),
            state: state as i32,
            start_at: Some(timestamp(self.wall(batch.start_at))),
            deadline: Some(timestamp(self.wall(batch.deadline))),
            device_count: batch.device_count,
            assigned_at: batch.assigned_at.map(timestamp),
            done_at: batch.done_at.map(timestamp),
            succeeded: batch.succeeded,
            failed: batch.failed,
            skipped: batch.skipped,
            previous_executor_id: batch.previous_executor_id.clone(),
            duration_ms: batch.duration_ms,
        }
    }
}

/// Gives batch `b` of cycle `c`, at its slot, to the least-loaded executor
/// of the cycle's kind whose labels include the batch's selector and that
/// has room; with none, the batch is unserved (counted, never queued).
///
/// First, a device still in flight in another batch (an earlier cycle's,
/// overrunning) is skipped: counted in the batch and the cycle, dropped from
/// the batch, never queued. A batch left empty is done without being sent.
fn assign(state: &mut State, scheduler: &Scheduler, c: usize, b: usize, reassigned: bool) {
    let epoch = state.epoch;
    let cycle = &mut state.cycles[c];
    let batch_count = cycle.batches.len() as u32;
    let batch = &mut cycle.batches[b];
    let key = (cycle.id, batch.index);
    let before = batch.targets.len();
    batch.targets.retain(|t| {
        state
            .in_flight
            .holder(cycle.kind, &t.id)
            .is_none_or(|holder| holder == key)
    });
    let skipped = (before - batch.targets.len()) as u32;
    batch.device_count = batch.targets.len() as u32;
    if skipped > 0 {
        batch.skipped += skipped;
        cycle.skipped += skipped;
        metrics::counter!("netward_planner_skipped_total", "kind" => kind_label(cycle.kind))
            .increment(u64::from(skipped));
        tracing::warn!(
            cycle_id = cycle.id,
            batch_id = %batch.id,
            skipped,
            "devices still in flight from an earlier batch at their slot: skipped"
        );
    }
    if batch.targets.is_empty() {
        batch.state = BatchState::Done;
        batch.done_at = Some(scheduler.wall(Instant::now()));
        return;
    }
    let size = batch.targets.len() as u32;
    let chosen = state
        .executors
        .values()
        .filter(|e| e.kind == cycle.kind && !batch.rejected_by.contains(&e.session))
        .filter(|e| {
            selector_matches(
                batch.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &e.labels,
            )
        })
        .filter(|e| e.in_flight_devices + size <= e.capacity)
        .min_by(|a, b| {
            let load = |e: &Executor| f64::from(e.in_flight_devices) / f64::from(e.capacity.max(1));
            load(a)
                .total_cmp(&load(b))
                .then(a.batches.len().cmp(&b.batches.len()))
                // Among idle executors, the one that has done least so far:
                // work spreads instead of always landing on the same one.
                .then(a.completed.cmp(&b.completed))
                .then_with(|| a.id.cmp(&b.id))
        })
        .map(|e| e.session);
    let Some(session) = chosen else {
        batch.state = BatchState::Unserved;
        cycle.unserved += 1;
        cycle.unserved_devices += size;
        metrics::counter!("netward_planner_unserved_batches_total", "kind" => kind_label(cycle.kind))
            .increment(1);
        tracing::warn!(
            cycle_id = cycle.id,
            batch_id = %batch.id,
            devices = size,
            selector = ?batch.selector,
            "no executor can take the batch: unserved"
        );
        return;
    };
    let executor = state
        .executors
        .get_mut(&session)
        .expect("chosen from the map");
    let span = tracing::info_span!("planner.assign", cycle_id = cycle.id, batch_id = %batch.id, executor_id = %executor.id);
    netward_shared::trace_context::set_parent(&span, Some(&cycle.trace_context));
    let trace_context = span.in_scope(netward_shared::trace_context::current);
    let assignment = v1::Assignment {
        cycle_id: cycle.id,
        batch_id: batch.id.clone(),
        kind: cycle.kind as i32,
        leader_epoch: epoch,
        start_at: Some(timestamp(scheduler.wall(batch.start_at))),
        deadline: Some(timestamp(scheduler.wall(batch.deadline))),
        targets: batch
            .targets
            .iter()
            .map(|device| scheduler.with_hints(scheduler.target(device, cycle.kind)))
            .collect(),
        probe: (cycle.kind == v1::ExecutorKind::Ping).then_some(scheduler.config.probe),
        trace_context: Some(trace_context),
        batch_index: batch.index as u32,
        batch_count,
        reassigned,
        grant: scheduler.config.grant_key.as_ref().map(|key| {
            key.sign(&v1::BatchGrant {
                executor: executor.id.clone(),
                batch_id: batch.id.clone(),
                cycle_id: cycle.id,
                kind: cycle.kind as i32,
                expires_unix: unix_seconds(scheduler.wall(batch.deadline)) + GRANT_REPLAY_WINDOW,
                device_ids: pack_device_ids(batch.targets.iter().map(|device| &*device.id)),
            })
        }),
    };
    // On a full channel the batch still counts as the executor's: ending
    // its session (`end_stuck`) hands it to another at once.
    send_work(
        executor,
        &mut state.stuck,
        v1::WorkResponse {
            msg: Some(v1::work_response::Msg::Assignment(assignment)),
        },
    );
    executor.batches.insert((cycle.id, batch.index));
    executor.in_flight_devices += size;
    if reassigned {
        executor.reassigned += 1;
    }
    batch.state = BatchState::Assigned(session);
    batch.executor_id = executor.id.clone();
    batch.assigned_at = Some(scheduler.wall(Instant::now()));
    for target in &batch.targets {
        state
            .in_flight
            .insert(cycle.kind, target.id.to_string(), key);
    }
}

/// Whether an executor with `labels` may take a device with `selector`:
/// it carries every label of the selector (an empty one matches all).
pub fn selector_matches<'a>(
    mut selector: impl Iterator<Item = (&'a str, &'a str)>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.all(|(k, v)| labels.get(k).is_some_and(|label| label == v))
}

/// Queues `message` on `executor`'s work stream without waiting. A full
/// channel means the executor stopped reading: its session goes on `stuck`
/// to be ended as dead. A closed one is a stream ending, whose session is
/// about to be removed (its batches reassigned) anyway.
fn send_work(executor: &Executor, stuck: &mut Vec<SessionId>, message: v1::WorkResponse) {
    match executor.tx.try_send(Ok(message)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            if !stuck.contains(&executor.session) {
                metrics::counter!("netward_planner_stuck_sessions_total").increment(1);
                tracing::warn!(
                    executor_id = %executor.id,
                    session = executor.session,
                    queued = WORK_CHANNEL,
                    "executor is not reading its work stream (channel full): ending its session"
                );
                stuck.push(executor.session);
            }
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::debug!(executor_id = %executor.id, "work message to a closing stream");
        }
    }
}

/// Takes a batch's devices out of flight and off its executor's load.
fn release(
    in_flight: &mut InFlight,
    executors: &mut HashMap<SessionId, Executor>,
    session: SessionId,
    (kind, cycle_id): (v1::ExecutorKind, u64),
    batch: &Batch,
) {
    for target in &batch.targets {
        in_flight.release(kind, &target.id, (cycle_id, batch.index));
    }
    if let Some(executor) = executors.get_mut(&session)
        && executor.batches.remove(&(cycle_id, batch.index))
    {
        executor.in_flight_devices = executor
            .in_flight_devices
            .saturating_sub(batch.device_count);
    }
}

fn find_batch(state: &State, cycle_id: u64, batch_id: &str) -> Option<(usize, usize)> {
    let c = state.cycles.iter().position(|c| c.id == cycle_id)?;
    let b = state.cycles[c]
        .batches
        .iter()
        .position(|b| b.id == batch_id)?;
    Some((c, b))
}

fn executors_gauge(state: &State) {
    for kind in [v1::ExecutorKind::Ping, v1::ExecutorKind::Snmp] {
        let count = state.executors.values().filter(|e| e.kind == kind).count();
        metrics::gauge!("netward_planner_executors_connected", "kind" => kind_label(kind))
            .set(count as f64);
    }
}

pub fn kind_label(kind: v1::ExecutorKind) -> &'static str {
    match kind {
        v1::ExecutorKind::Snmp => "snmp",
        _ => "ping",
    }
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

pub fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// Devices in depth-first pre-order of the parent tree (roots and siblings
/// by name): every device after its parent, each subtree contiguous.
/// Devices caught in a parent cycle (which the inventory refuses) or below
/// a missing parent come as roots.
fn tree_order(devices: &HashMap<String, Arc<CopiedDevice>>) -> Vec<&Arc<CopiedDevice>> {
    let mut children: HashMap<&str, Vec<&Arc<CopiedDevice>>> = HashMap::new();
    let mut roots: Vec<&Arc<CopiedDevice>> = Vec::new();
    for device in devices.values() {
        if devices.contains_key(&*device.parent_device_id) && device.parent_device_id != device.id {
            children
                .entry(&device.parent_device_id)
                .or_default()
                .push(device);
        } else {
            roots.push(device);
        }
    }
    for list in children.values_mut() {
        list.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }
    roots.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut order = Vec::with_capacity(devices.len());
    let mut seen: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(devices.len());
    let mut stack: Vec<&Arc<CopiedDevice>> = Vec::new();
    for root in roots {
        stack.push(root);
        while let Some(device) = stack.pop() {
            if !seen.insert(&device.id) {
                continue;
            }
            order.push(device);
            if let Some(list) = children.get(&*device.id) {
                // Reversed, so the first child by name is visited first.
                stack.extend(list.iter().rev().copied());
            }
        }
    }
    // Whatever a cycle kept unreachable from any root.
    let mut rest: Vec<&Arc<CopiedDevice>> = devices
        .values()
        .filter(|d| !seen.contains(&*d.id))
        .collect();
    rest.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    order.extend(rest);
    order
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::RwLock;

    use netward_shared::inventory_copy::InventoryCopy;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);
    /// The planner loop's tick.
    const STEP: Duration = Duration::from_millis(100);

    /// A leading scheduler over `devices` devices (sites of 100: a router and
    /// 99 devices behind it), its copy filled by hand.
    fn scheduler(devices: usize) -> Scheduler {
        let mut copy = InventoryCopy::default();
        for i in 0..devices {
            let id = format!("dev-{i:06}");
            copy.insert(v1::Device {
                id: id.clone(),
                name: id,
                ip_address: format!("127.1.{}.{}", i / 100 % 250, i % 100 + 1),
                parent_device_id: if i % 100 == 0 {
                    String::new()
                } else {
                    format!("dev-{:06}", i / 100 * 100)
                },
                ..Default::default()
            });
        }
        copy.synced = true;
        let config = crate::PlannerConfig {
            ping_interval: INTERVAL,
            ..Default::default()
        };
        let scheduler = Scheduler::new(
            config.cycle_config(),
            config.sizing,
            Arc::new(RwLock::new(copy)),
        );
        scheduler.set_leadership(true, 1);
        scheduler
    }

    /// One executor driven by hand: it reports each batch done `takes`
    /// after receiving it, or never (`None`: stalled).
    struct Sim {
        scheduler: Scheduler,
        session: SessionId,
        rx: WorkReceiver,
        takes: Option<Duration>,
        running: Vec<(Instant, v1::BatchDone)>,
        /// Devices sent per cycle id.
        probed: HashMap<u64, u32>,
    }

    impl Sim {
        fn new(devices: usize, takes: Option<Duration>, now: Instant) -> Sim {
            let scheduler = scheduler(devices);
            let (tx, rx) = mpsc::channel(WORK_CHANNEL);
            let (session, _) = scheduler
                .register(register("exec-1", "token-1"), "127.0.0.1:1".into(), tx, now)
                .unwrap();
            Sim {
                scheduler,
                session,
                rx,
                takes,
                running: Vec::new(),
                probed: HashMap::new(),
            }
        }

        /// One tick of the planner loop at `now`, opening a cycle if `open`.
        fn step(&mut self, now: Instant, open: bool) -> Option<u64> {
            let scheduler = &self.scheduler;
            let session = self.session;
            self.running.retain(|(at, done)| {
                let due = *at <= now;
                if due {
                    scheduler.batch_done(session, done, now);
                }
                !due
            });
            scheduler.touch(session, now);
            let cycle = open
                .then(|| scheduler.open_cycle(v1::ExecutorKind::Ping, now))
                .flatten();
            scheduler.dispatch_due(now);
            while let Ok(Ok(message)) = self.rx.try_recv() {
                let Some(v1::work_response::Msg::Assignment(a)) = message.msg else {
                    continue;
                };
                *self.probed.entry(a.cycle_id).or_default() += a.targets.len() as u32;
                if let Some(takes) = self.takes {
                    let done = v1::BatchDone {
                        cycle_id: a.cycle_id,
                        batch_id: a.batch_id,
                        devices: a.targets.len() as u32,
                        succeeded: a.targets.len() as u32,
                        ..Default::default()
                    };
                    self.running.push((now + takes, done));
                }
            }
            scheduler.check_timers(now);
            cycle
        }

        /// Runs `cycles` cycles from `t0`, calling `each_step` after each tick;
        /// returns the cycle ids.
        fn run(
            &mut self,
            t0: Instant,
            cycles: u32,
            mut each_step: impl FnMut(&Sim, Instant),
        ) -> Vec<u64> {
            let mut ids = Vec::new();
            let ticks = (INTERVAL * cycles).as_millis() / STEP.as_millis();
            for tick in 0..ticks as u32 {
                let now = t0 + STEP * tick;
                let open = (STEP * tick)
                    .as_millis()
                    .is_multiple_of(INTERVAL.as_millis());
                ids.extend(self.step(now, open));
                each_step(self, now);
            }
            ids
        }

        fn summary(&self, cycle: u64) -> v1::CycleSummary {
            let state = self.scheduler.lock();
            self.scheduler
                .summary(state.cycles.iter().find(|c| c.id == cycle).unwrap())
        }
    }

    fn register(id: &str, token: &str) -> v1::Register {
        v1::Register {
            executor_id: id.into(),
            kind: v1::ExecutorKind::Ping as i32,
            capacity: 100_000,
            hostname: format!("host-{token}"),
            instance_token: token.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_busy_executor_that_keeps_up_probes_every_device_every_cycle() {
        // 2,000 devices: 10 batches a second apart, each done 3 s after it is
        // sent, so the previous cycle's last batches are always in flight
        // when a cycle opens — and long done by their slot in it.
        let t0 = Instant::now();
        let mut sim = Sim::new(2000, Some(Duration::from_secs(3)), t0);
        let mut most_in_flight = 0;
        let ids = sim.run(t0, 25, |sim, _| {
            most_in_flight = most_in_flight.max(sim.scheduler.lock().in_flight.len());
        });
        assert_eq!(ids.len(), 25);
        assert!(most_in_flight > 0 && most_in_flight <= 2000);
        for id in &ids[..24] {
            let summary = sim.summary(*id);
            assert_eq!(
                (summary.skipped, sim.probed[id], summary.done_batches),
                (0, 2000, 10),
                "cycle {id}: {summary:?}"
            );
        }
    }

    #[test]
    fn a_stalled_executor_causes_skips_at_the_slot_never_a_queue() {
        let t0 = Instant::now();
        let mut sim = Sim::new(2000, None, t0);
        let ids = sim.run(t0, 20, |sim, now| {
            let state = sim.scheduler.lock();
            assert!(
                state.in_flight.len() <= 2000,
                "{} in flight",
                state.in_flight.len()
            );
            let executor = state.executors.values().next().unwrap();
            assert!(executor.in_flight_devices <= 2000);
            // Nothing waits: a batch whose slot has come is out, skipped or unserved.
            for cycle in &state.cycles {
                for batch in &cycle.batches {
                    assert!(
                        !(batch.state == BatchState::Pending && batch.start_at <= now),
                        "batch {} queued",
                        batch.id
                    );
                }
            }
        });
        // A device is sent, skipped at its next slot (still in flight,
        // overrunning), skipped again at the one after (abandoned just
        // after that slot), then sent again: each cycle either sends a slot's
        // devices or skips them, never both, never more.
        let mut sent_cycles = 0;
        for (k, id) in ids.iter().enumerate() {
            let summary = sim.summary(*id);
            let sent = sim.probed.get(id).copied().unwrap_or_default();
            assert_eq!(sent + summary.skipped, 2000, "cycle {k}: {summary:?}");
            assert!(sent == 0 || sent == 2000, "cycle {k}: {summary:?}");
            sent_cycles += u32::from(sent == 2000);
        }
        assert_eq!(sim.probed[&ids[0]], 2000);
        assert_eq!(sim.summary(ids[1]).skipped, 2000);
        assert_eq!(sim.summary(ids[2]).skipped, 2000);
        assert_eq!(sent_cycles, 7, "cycles 0, 3, 6, ... send everything");
    }

    /// Registers `id` with `token` at `now`; the session, or the refusal.
    fn register_at(
        scheduler: &Scheduler,
        id: &str,
        token: &str,
        now: Instant,
    ) -> Result<(SessionId, WorkReceiver), RegisterError> {
        let (tx, rx) = mpsc::channel(WORK_CHANNEL);
        let remote = format!("10.0.0.{}:5000", token.len());
        scheduler
            .register(register(id, token), remote, tx, now)
            .map(|(session, _)| (session, rx))
    }

    fn sessions(scheduler: &Scheduler) -> Vec<(String, SessionId)> {
        let state = scheduler.lock();
        let mut sessions: Vec<_> = state
            .executors
            .values()
            .map(|e| (e.id.clone(), e.session))
            .collect();
        sessions.sort();
        sessions
    }

    #[test]
    fn the_same_instance_reconnecting_takes_its_session_over_at_once() {
        let scheduler = scheduler(10);
        let t0 = Instant::now();
        let (old, mut old_rx) = register_at(&scheduler, "ping-a", "token-1", t0).unwrap();
        // The old stream is still there (half-open): same token, at once.
        let (new, _new_rx) = register_at(
            &scheduler,
            "ping-a",
            "token-1",
            t0 + Duration::from_millis(10),
        )
        .unwrap();
        assert_ne!(old, new);
        assert_eq!(sessions(&scheduler), [("ping-a".to_string(), new)]);
        // The old session's sender is gone: its outbound stream ends.
        while old_rx.try_recv().is_ok() {}
        assert!(old_rx.is_closed());
    }

    #[test]
    fn another_process_is_refused_while_the_holder_is_live() {
        let scheduler = scheduler(10);
        let t0 = Instant::now();
        let (holder, _holder_rx) = register_at(&scheduler, "ping-a", "token-1", t0).unwrap();
        // Heartbeats every 5 s: at t0 + 12 s the holder was heard 2 s ago.
        scheduler.heartbeat(
            holder,
            v1::Heartbeat::default(),
            t0 + Duration::from_secs(10),
        );
        let refused = register_at(
            &scheduler,
            "ping-a",
            "token-22",
            t0 + Duration::from_secs(12),
        );
        let Err(RegisterError::Held {
            executor_id,
            hostname,
            remote_address,
            retry_after,
            ..
        }) = refused
        else {
            panic!("registered: {:?}", refused.map(|(s, _)| s));
        };
        assert_eq!(
            (
                executor_id.as_str(),
                hostname.as_str(),
                remote_address.as_str()
            ),
            ("ping-a", "host-token-1", "10.0.0.7:5000")
        );
        // Silent for 15 s is dead: 13 s from now, plus a second.
        assert_eq!(retry_after, Duration::from_secs(14));
        let text = register_at(&scheduler, "ping-a", "", t0 + Duration::from_secs(12))
            .err()
            .unwrap()
            .to_string();
        assert!(
            text.contains("held by a live session") && text.contains("retry in 14 s"),
            "{text}"
        );
        assert_eq!(sessions(&scheduler), [("ping-a".to_string(), holder)]);
        // Another id is not concerned.
        assert!(register_at(&scheduler, "ping-b", "token-22", t0).is_ok());
    }

    #[test]
    fn another_process_takes_over_a_silent_session() {
        let scheduler = scheduler(10);
        let t0 = Instant::now();
        let (holder, _holder_rx) = register_at(&scheduler, "ping-a", "token-1", t0).unwrap();
        let at_the_edge = t0 + Duration::from_secs(15);
        assert!(register_at(&scheduler, "ping-a", "token-22", at_the_edge).is_err());
        let after = at_the_edge + Duration::from_millis(1);
        let (new, _new_rx) = register_at(&scheduler, "ping-a", "token-22", after).unwrap();
        assert_ne!(new, holder);
        assert_eq!(sessions(&scheduler), [("ping-a".to_string(), new)]);
    }

    #[test]
    fn in_flight_is_per_kind() {
        let mut in_flight = InFlight::default();
        in_flight.insert(v1::ExecutorKind::Snmp, "dev-1".into(), (1, 0));
        assert_eq!(in_flight.holder(v1::ExecutorKind::Ping, "dev-1"), None);
        in_flight.insert(v1::ExecutorKind::Ping, "dev-1".into(), (2, 3));
        in_flight.release(v1::ExecutorKind::Snmp, "dev-1", (2, 3));
        assert_eq!(in_flight.len(), 2, "only the batch holding it releases it");
        in_flight.release(v1::ExecutorKind::Snmp, "dev-1", (1, 0));
        assert_eq!(
            in_flight.holder(v1::ExecutorKind::Ping, "dev-1"),
            Some((2, 3))
        );
        assert_eq!(in_flight.len(), 1);
    }

    fn device(id: &str, parent: &str) -> v1::Device {
        v1::Device {
            id: id.into(),
            name: id.into(),
            parent_device_id: parent.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tree_order_puts_each_parent_right_before_its_subtree() {
        let copy = InventoryCopy::of(
            [
                device("core", ""),
                device("rtr-b", "core"),
                device("rtr-a", "core"),
                device("a-sw", "rtr-a"),
                device("a-atm", "a-sw"),
                device("b-ap", "rtr-b"),
                device("lonely", ""),
                device("orphan", "missing"),
                device("loop-1", "loop-2"),
                device("loop-2", "loop-1"),
            ],
            1,
        );
        let order: Vec<&str> = tree_order(&copy.devices).iter().map(|d| &*d.name).collect();
        assert_eq!(
            order,
            [
                "core", "rtr-a", "a-sw", "a-atm", "rtr-b", "b-ap", "lonely", "orphan", "loop-1",
                "loop-2"
            ]
        );
    }
}

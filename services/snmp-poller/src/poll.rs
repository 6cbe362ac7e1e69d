//! Polling one device: its profile's columns and the interface table by
//! GETBULK walks, its scalars riding in the first of them as non-repeaters
//! (or by GET), within the device's own deadline, into an `SnmpSample` and
//! the `SnmpHints` to send back to the planner.
//!
//! The poller remembers two things per device in memory: the GETBULK
//! `max_repetitions` (also carried in the hints) and, per ifIndex, whether
//! the 64-bit HC counters are used. The HC choice is made once per
//! interface so a rate never mixes 32- and 64-bit readings; it lives only in
//! this process, so a restarted poller decides again (the same way, unless
//! the agent changed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use netward_shared::proto::v1;
use tokio::time::Instant;

use crate::profile::{self, Metric, Profile, Profiles};
use crate::snmp::{
    AgentStatus, EngineHints, Oid, Session, SessionSpec, SnmpEngine, SnmpError, Value, Version,
    dotted,
};
use crate::walk::{self, Repetitions, Walked};

/// Defaults and limits of `SnmpTarget` (executor.proto).
pub const DEFAULT_PORT: u16 = 161;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);
pub const DEFAULT_RETRIES: u32 = 1;
/// Budget of an ad-hoc poll (no batch deadline) with no device budget.
pub const AD_HOC_BUDGET: Duration = Duration::from_secs(30);

const SYS_OBJECT_ID: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 2, 0];
const SYS_UPTIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

/// Devices remembered at most; past it the memory starts over (each device
/// then re-decides its HC counters once — the same way).
const MEMORY_DEVICES: usize = 250_000;

/// One IF-MIB column the poller reads, and where it lands in InterfaceSample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum IfColumn {
    Descr,
    Speed,
    Admin,
    Oper,
    LastChange,
    InOctets,
    InUcast,
    InDiscards,
    InErrors,
    OutOctets,
    OutUcast,
    OutDiscards,
    OutErrors,
    Name,
    HcInOctets,
    HcInUcast,
    HcOutOctets,
    HcOutUcast,
    HighSpeed,
    Alias,
}

impl IfColumn {
    fn oid(self) -> Oid {
        use IfColumn::*;
        // ifTable = 1.3.6.1.2.1.2.2.1, ifXTable = 1.3.6.1.2.1.31.1.1.1
        let (x, column) = match self {
            Descr => (false, 2),
            Speed => (false, 5),
            Admin => (false, 7),
            Oper => (false, 8),
            LastChange => (false, 9),
            InOctets => (false, 10),
            InUcast => (false, 11),
            InDiscards => (false, 13),
            InErrors => (false, 14),
            OutOctets => (false, 16),
            OutUcast => (false, 17),
            OutDiscards => (false, 19),
            OutErrors => (false, 20),
            Name => (true, 1),
            HcInOctets => (true, 6),
            HcInUcast => (true, 7),
            HcOutOctets => (true, 10),
            HcOutUcast => (true, 11),
            HighSpeed => (true, 15),
            Alias => (true, 18),
        };
        let base: &[u32] = if x {
            &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1]
        } else {
            &[1, 3, 6, 1, 2, 1, 2, 2, 1]
        };
        let mut arcs = base.to_vec();
        arcs.push(column);
        Oid::new(arcs)
    }
}

const STATUS: [IfColumn; 7] = [
    IfColumn::Admin,
    IfColumn::Oper,
    IfColumn::LastChange,
    IfColumn::InDiscards,
    IfColumn::InErrors,
    IfColumn::OutDiscards,
    IfColumn::OutErrors,
];
const LABELS: [IfColumn; 5] = [
    IfColumn::Descr,
    IfColumn::Speed,
    IfColumn::Name,
    IfColumn::HighSpeed,
    IfColumn::Alias,
];
const COUNTERS_32: [IfColumn; 4] = [
    IfColumn::InOctets,
    IfColumn::InUcast,
    IfColumn::OutOctets,
    IfColumn::OutUcast,
];
const COUNTERS_HC: [IfColumn; 4] = [
    IfColumn::HcInOctets,
    IfColumn::HcInUcast,
    IfColumn::HcOutOctets,
    IfColumn::HcOutUcast,
];

/// What the poller remembers about one device between polls.
#[derive(Debug, Clone, Default)]
pub struct DeviceMemory {
    max_repetitions: u32,
    /// ifIndex → true when its HC counters are used.
    hc: HashMap<u32, bool>,
}

/// Per-device memory, shared by every poll of the process.
#[derive(Debug, Default)]
pub struct Memory {
    devices: Mutex<HashMap<String, DeviceMemory>>,
}

impl Memory {
    fn get(&self, key: &str) -> DeviceMemory {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    fn put(&self, key: &str, memory: DeviceMemory) {
        let mut devices = self.lock();
        if devices.len() >= MEMORY_DEVICES && !devices.contains_key(key) {
            tracing::warn!(devices = devices.len(), "device memory full; starting over");
            devices.clear();
        }
        devices.insert(key.to_string(), memory);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DeviceMemory>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The poller: the SNMP engine, the profiles and the memory.
pub struct Poller {
    pub engine: SnmpEngine,
    pub profiles: Profiles,
    memory: Memory,
}

impl Poller {
    pub fn new(engine: SnmpEngine, profiles: Profiles) -> Self {
        Self {
            engine,
            profiles,
            memory: Memory::default(),
        }
    }

    /// Polls one device. `batch_deadline` bounds it (with the target's own
    /// budget, whichever comes first); without one (an ad-hoc poll) the
    /// budget or [`AD_HOC_BUDGET`] does. Never fails: every problem is an
    /// outcome in the sample.
    pub async fn poll(
        &self,
        address: &str,
        device_id: &str,
        target: &v1::SnmpTarget,
        batch_deadline: Option<Instant>,
    ) -> (v1::SnmpSample, v1::SnmpHints) {
        let started = Instant::now();
        let polled_at = SystemTime::now();
        let budget = match target.device_budget_ms {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        };
        let deadline = match (budget, batch_deadline) {
            (Some(budget), Some(batch)) => (started + budget).min(batch),
            (Some(budget), None) => started + budget,
            (None, Some(batch)) => batch,
            (None, None) => started + AD_HOC_BUDGET,
        };
        let hints_in = target.hints.clone().unwrap_or_default();
        let mut sample = v1::SnmpSample {
            device_id: device_id.to_string(),
            address: address.to_string(),
            polled_at: Some(crate::timestamp(polled_at)),
            ..Default::default()
        };
        let mut hints = v1::SnmpHints {
            device_id: device_id.to_string(),
            labels_refreshed_at: hints_in.labels_refreshed_at,
            ..Default::default()
        };

        let prepared = self.prepare(address, target, &hints_in);
        let (session, plan) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                sample.outcome = error.outcome() as i32;
                sample.error_detail = error.to_string();
                sample.duration_ms = millis(started.elapsed());
                return (sample, hints);
            }
        };
        let key = if device_id.is_empty() {
            plan.address.to_string()
        } else {
            device_id.to_string()
        };
        let mut memory = self.memory.get(&key);
        let hint_reps = if hints_in.max_repetitions != 0 {
            hints_in.max_repetitions
        } else {
            memory.max_repetitions
        };
        let mut repetitions = Repetitions::new(hint_reps);

        let gathered = gather(
            &session,
            &self.profiles,
            &plan,
            &mut memory,
            &mut repetitions,
            deadline,
        )
        .await;

        memory.max_repetitions = repetitions.for_next_poll();
        self.memory.put(&key, memory);
        hints.max_repetitions = repetitions.for_next_poll();
        if plan.auto {
            hints.resolved_profile = gathered.profile.clone();
        }
        if gathered.labels_refreshed {
            hints.labels_refreshed_at = Some(crate::timestamp(SystemTime::now()));
        }
        if session.version() == Version::V3
            && let Some(engine) = self.engine.engine_hints(plan.address)
        {
            hints.engine_id = engine.engine_id;
            hints.engine_boots = engine.engine_boots;
            hints.engine_time = engine.engine_time;
            hints.engine_time_at = Some(crate::timestamp(engine.at));
        }
        gathered.into_sample(&mut sample);
        sample.requests_sent = session.requests_sent();
        sample.duration_ms = millis(started.elapsed());
        (sample, hints)
    }

    fn prepare(
        &self,
        address: &str,
        target: &v1::SnmpTarget,
        hints: &v1::SnmpHints,
    ) -> Result<(crate::snmp::AgentSession, Plan), SnmpError> {
        let ip: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| SnmpError::Config(format!("not an IP address: {address:?}")))?;
        let port = match target.port {
            0 => DEFAULT_PORT,
            p => u16::try_from(p)
                .map_err(|_| SnmpError::Config(format!("port {p} is out of range")))?,
        };
        let name = target.profile.trim();
        let auto = name.is_empty() || name == profile::AUTO;
        let fixed = if auto {
            None
        } else {
            Some(self.profiles.get(name).cloned().ok_or_else(|| {
                SnmpError::Config(format!(
                    "unknown profile {name:?} (known: auto, {})",
                    self.profiles.names().join(", ")
                ))
            })?)
        };
        let spec = SessionSpec {
            address: SocketAddr::new(ip, port),
            timeout: match target.timeout_ms {
                0 => DEFAULT_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)),
            },
            retries: target.retries.unwrap_or(DEFAULT_RETRIES).min(5),
        };
        let engine_hints = (!hints.engine_id.is_empty()).then(|| EngineHints {
            engine_id: hints.engine_id.clone(),
            engine_boots: hints.engine_boots,
            engine_time: hints.engine_time,
            at: hints
                .engine_time_at
                .as_ref()
                .and_then(crate::system_time)
                .unwrap_or_else(SystemTime::now),
        });
        let credential = target.credential.clone().unwrap_or_default();
        let session =
            self.engine
                .session(&spec, target.version(), &credential, engine_hints.as_ref())?;
        Ok((
            session,
            Plan {
                address: spec.address,
                timeout: spec.timeout,
                auto,
                fixed,
                remembered_profile: hints.resolved_profile.clone(),
                refresh_labels: target.refresh_labels,
            },
        ))
    }
}

/// What one poll is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub address: SocketAddr,
    pub timeout: Duration,
    /// Pick the profile by sysObjectID.
    pub auto: bool,
    /// The named profile when not auto.
    pub fixed: Option<Profile>,
    /// hints.resolved_profile: used under auto when sysObjectID cannot be read.
    pub remembered_profile: String,
    pub refresh_labels: bool,
}

/// What a poll gathered, before it becomes a sample.
#[derive(Debug, Default)]
pub struct Gathered {
    pub profile: String,
    pub values: Vec<v1::ScalarValue>,
    pub interfaces: Vec<v1::InterfaceSample>,
    pub labels_refreshed: bool,
    pub answered: bool,
    /// Every answer was an agent error.
    pub only_agent_errors: bool,
    pub cut: bool,
    /// The first agent error-status that ended a walk or refused a GET
    /// (genErr, noAccess…): what it would have read is missing.
    pub agent_error: Option<SnmpError>,
    pub fatal: Option<SnmpError>,
    /// The community was rejected (v1/v2c timeout, but the engine answers).
    pub wrong_community: bool,
    pub notes: Vec<String>,
}

impl Gathered {
    fn into_sample(self, sample: &mut v1::SnmpSample) {
        let (uptime, object_id) = (dotted(&SYS_UPTIME), dotted(&SYS_OBJECT_ID));
        for value in &self.values {
            match &value.value {
                Some(v1::scalar_value::Value::Timeticks(ticks)) if value.oid == uptime => {
                    sample.sys_uptime_ticks = Some(*ticks);
                }
                Some(v1::scalar_value::Value::ObjectId(id)) if value.oid == object_id => {
                    sample.sys_object_id = id.clone();
                }
                _ => {}
            }
        }
        let mut detail = Vec::new();
        let outcome = if self.wrong_community {
            detail.push(
                "no answer with this community, but an SNMP engine answers at this address: \
                 the community is wrong (or the agent's access rules exclude this poller)"
                    .to_string(),
            );
            v1::SnmpOutcome::WrongCommunity
        } else if let Some(fatal) = &self.fatal {
            detail.push(fatal.to_string());
            fatal.outcome()
        } else if let Some(refused) = &self.agent_error {
            // Never OK with a table missing: the agent said why it is.
            detail.push(format!("incomplete: {refused}"));
            if self.cut {
                detail.push("the device's deadline cut the poll short".into());
            }
            v1::SnmpOutcome::AgentError
        } else if self.cut {
            detail.push("the device's deadline cut the poll short".into());
            if self.answered {
                v1::SnmpOutcome::Ok
            } else {
                v1::SnmpOutcome::Timeout
            }
        } else if self.only_agent_errors {
            v1::SnmpOutcome::AgentError
        } else {
            v1::SnmpOutcome::Ok
        };
        // Partial: something the profile asks for is missing, whether the
        // deadline or the agent stopped it (the values present are valid).
        sample.partial = self.cut || (self.agent_error.is_some() && self.fatal.is_none());
        detail.extend(self.notes);
        sample.outcome = outcome as i32;
        sample.error_detail = detail.join("; ");
        sample.profile = self.profile;
        sample.values = self.values;
        sample.interfaces = self.interfaces;
    }
}

/// The poll itself, over any [`Session`] (tests use an in-memory agent).
///
/// Requests: the profile's scalars ride as non-repeaters in the first
/// GETBULK of its first walk (a device with one table: one request), except
/// on SNMPv1 and for instances other than `.0`, which are read by GET.
/// Under `auto` with a remembered profile (hints.resolved_profile), that
/// profile is polled at once with the system scalars riding along, and
/// sysObjectID confirms it after the first walk; when it picks another
/// profile, what was read for the wrong one is dropped and the poll goes on
/// with the right one. Without a remembered profile the system scalars are
/// read first by GET (sysObjectID picks the rest).
pub async fn gather<S: Session>(
    session: &S,
    profiles: &Profiles,
    plan: &Plan,
    memory: &mut DeviceMemory,
    repetitions: &mut Repetitions,
    deadline: Instant,
) -> Gathered {
    let mut gathered = Gathered {
        only_agent_errors: true,
        ..Gathered::default()
    };
    let mut fetched: HashSet<Oid> = HashSet::new();
    let Some(system) = profiles.get(profile::SYSTEM) else {
        unreachable!("checked at load: the system profile exists");
    };
    let system = system.scalars.clone();

    let (mut profile, mut speculative) = match &plan.fixed {
        Some(profile) => (profile.clone(), false),
        None => match profiles.get(&plan.remembered_profile) {
            Some(remembered) if can_ride(session, remembered) => (remembered.clone(), true),
            _ => {
                get_scalars(session, &system, deadline, &mut gathered).await;
                fetched.extend(system.iter().map(|m| m.oid.clone()));
                if stopped(&gathered) {
                    return finish(session, plan, gathered, deadline).await;
                }
                let picked = sys_object_id(&gathered)
                    .map(|id| profiles.pick(&id))
                    .or_else(|| profiles.get(&plan.remembered_profile))
                    .or_else(|| profiles.get(profile::FALLBACK))
                    .unwrap_or_else(|| unreachable!("checked at load: the fallback exists"));
                (picked.clone(), false)
            }
        },
    };
    loop {
        gathered.profile = profile.name.clone();
        let mut scalars: Vec<Metric> = Vec::new();
        if speculative {
            scalars.extend(system.iter().cloned());
        }
        for metric in &profile.scalars {
            if !fetched.contains(&metric.oid) && !scalars.iter().any(|m| m.oid == metric.oid) {
                scalars.push(metric.clone());
            }
        }
        fetched.extend(scalars.iter().map(|m| m.oid.clone()));
        let (riders, by_get): (Vec<Metric>, Vec<Metric>) = if can_ride(session, &profile) {
            scalars.into_iter().partition(|m| rider(&m.oid).is_some())
        } else {
            (Vec::new(), scalars)
        };
        if !by_get.is_empty() {
            get_scalars(session, &by_get, deadline, &mut gathered).await;
            if stopped(&gathered) {
                return finish(session, plan, gathered, deadline).await;
            }
        }
        let mut riders = Some(riders);

        if !profile.columns.is_empty() {
            let oids: Vec<Oid> = profile.columns.iter().map(|m| m.oid.clone()).collect();
            let riding = riders.take().unwrap_or_default();
            let (columns, unread) = walk_with(
                session,
                &riding,
                &oids,
                repetitions,
                deadline,
                &mut gathered,
            )
            .await;
            for (metric, cells) in profile.columns.iter().zip(columns) {
                for (instance, value) in cells {
                    let oid = metric.oid.arcs().iter().chain(&instance).copied().collect();
                    gathered.values.push(scalar_value(
                        &Oid::new(oid),
                        &metric.name,
                        &instance,
                        &value,
                    ));
                }
            }
            if stopped(&gathered) {
                return finish(session, plan, gathered, deadline).await;
            }
            if !unread.is_empty() {
                get_scalars(session, &unread, deadline, &mut gathered).await;
                if stopped(&gathered) {
                    return finish(session, plan, gathered, deadline).await;
                }
            }
            if speculative && let Some(picked) = confirm(profiles, &profile, &gathered) {
                profile = switch(picked, &system, &mut gathered, &mut fetched);
                speculative = false;
                continue;
            }
            speculative = false;
        }

        if profile.interfaces {
            let riding = riders.take().unwrap_or_default();
            let unread = interfaces(
                session,
                plan,
                memory,
                repetitions,
                deadline,
                &riding,
                &mut gathered,
            )
            .await;
            if !unread.is_empty() && !stopped(&gathered) {
                get_scalars(session, &unread, deadline, &mut gathered).await;
            }
            if speculative
                && !stopped(&gathered)
                && let Some(picked) = confirm(profiles, &profile, &gathered)
            {
                profile = switch(picked, &system, &mut gathered, &mut fetched);
                speculative = false;
                continue;
            }
        }
        return finish(session, plan, gathered, deadline).await;
    }
}

/// Whether scalars can ride in a GETBULK of this profile's walks.
fn can_ride<S: Session>(session: &S, profile: &Profile) -> bool {
    session.version() != Version::V1 && (!profile.columns.is_empty() || profile.interfaces)
}

/// What a scalar is asked as when it rides as a non-repeater: GETNEXT of
/// `X` answers `X.0` when the agent has it, as nothing lies between the
/// two. Only `.0` instances ride (for another instance the OID before it is
/// not known); the rest are read by GET.
fn rider(oid: &Oid) -> Option<Oid> {
    match oid.arcs() {
        [parent @ .., 0] if parent.len() >= 2 => Some(Oid::new(parent.to_vec())),
        _ => None,
    }
}

/// sysObjectID as read in this poll.
fn sys_object_id(gathered: &Gathered) -> Option<Oid> {
    gathered.values.iter().find_map(|v| match &v.value {
        Some(v1::scalar_value::Value::ObjectId(id)) if v.oid == dotted(&SYS_OBJECT_ID) => {
            Oid::parse(id).ok()
        }
        _ => None,
    })
}

/// Under `auto`, after the remembered profile's first walk: the profile
/// sysObjectID picks when it is another one (None: confirmed, or
/// sysObjectID unreadable — the remembered profile is then kept, as it
/// would be without the guess).
fn confirm<'a>(
    profiles: &'a Profiles,
    guess: &Profile,
    gathered: &Gathered,
) -> Option<&'a Profile> {
    let picked = profiles.pick(&sys_object_id(gathered)?);
    (picked.name != guess.name).then_some(picked)
}

/// The guess was wrong: keeps the system scalars, drops the rest, and
/// returns the profile to poll instead.
fn switch(
    picked: &Profile,
    system: &[Metric],
    gathered: &mut Gathered,
    fetched: &mut HashSet<Oid>,
) -> Profile {
    let keep: HashSet<String> = system.iter().map(|m| m.oid.to_string()).collect();
    gathered.values.retain(|v| keep.contains(&v.oid));
    gathered.interfaces.clear();
    gathered.labels_refreshed = false;
    gathered.notes.clear();
    gathered.agent_error = None;
    fetched.clear();
    fetched.extend(system.iter().map(|m| m.oid.clone()));
    picked.clone()
}

/// A walk with `riders` (scalars, `.0` instances) as non-repeaters of its
/// first request: records their values and the walk's flags in `gathered`;
/// returns the columns and the riders the walk could not read.
async fn walk_with<S: Session>(
    session: &S,
    riders: &[Metric],
    columns: &[Oid],
    repetitions: &mut Repetitions,
    deadline: Instant,
    gathered: &mut Gathered,
) -> (Vec<Vec<walk::Cell>>, Vec<Metric>) {
    let asked: Vec<Oid> = riders.iter().filter_map(|m| rider(&m.oid)).collect();
    let mut walked = walk::walk(session, &asked, columns, repetitions, deadline).await;
    let answers = walked.riders.take();
    let columns = absorb(gathered, walked);
    match answers {
        Some(answers) if answers.len() == riders.len() => {
            gathered.only_agent_errors = false;
            for (metric, answer) in riders.iter().zip(answers) {
                // Anything but X.0 itself (the next object, endOfMibView)
                // means the agent has no X.0: what a GET would call
                // noSuchObject.
                let value = if answer.oid == metric.oid && !answer.value.is_exception() {
                    answer.value
                } else {
                    Value::NoSuchObject
                };
                gathered
                    .values
                    .push(scalar_value(&metric.oid, &metric.name, &[0], &value));
            }
            (columns, Vec::new())
        }
        _ => (columns, riders.to_vec()),
    }
}

/// True when the poll cannot go on (a fatal error or the deadline).
fn stopped(gathered: &Gathered) -> bool {
    gathered.fatal.is_some() || gathered.cut
}

/// Turns a silent v1/v2c agent into WRONG_COMMUNITY when an SNMP engine
/// does answer at its address (see `Session::engine_answers`).
async fn finish<S: Session>(
    session: &S,
    plan: &Plan,
    mut gathered: Gathered,
    deadline: Instant,
) -> Gathered {
    let silent = !gathered.answered
        && (matches!(gathered.fatal, Some(SnmpError::Timeout { .. })) || gathered.cut);
    let wait = plan
        .timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    if silent && !wait.is_zero() {
        if session.version() != Version::V3 {
            gathered.wrong_community = session.engine_answers(wait).await;
        } else if session.answers_without_privacy(wait).await {
            gathered.fatal = Some(SnmpError::EncryptedRequestsDropped);
        }
    }
    // The steps clear only_agent_errors on a real answer; a poll that got
    // no answer at all is not an agent error either.
    if !gathered.answered {
        gathered.only_agent_errors = false;
    }
    gathered
}

/// Merges a walk's flags into the poll's; returns its columns.
fn absorb(gathered: &mut Gathered, walked: Walked) -> Vec<Vec<walk::Cell>> {
    if walked.answered {
        gathered.answered = true;
        if walked.notes.is_empty() {
            gathered.only_agent_errors = false;
        }
    }
    gathered.cut |= walked.cut;
    if gathered.agent_error.is_none() {
        gathered.agent_error = walked.refused;
    }
    if gathered.fatal.is_none() {
        gathered.fatal = walked.fatal;
    }
    gathered.notes.extend(walked.notes);
    walked.columns
}

/// GETs scalars, many per PDU. An SNMPv1 agent answers noSuchName for the
/// whole PDU when one object is missing: that object is recorded as
/// noSuchObject and the rest asked again.
async fn get_scalars<S: Session>(
    session: &S,
    metrics: &[Metric],
    deadline: Instant,
    gathered: &mut Gathered,
) {
    let mut pending: Vec<&Metric> = metrics.iter().collect();
    while !pending.is_empty() {
        let oids: Vec<Oid> = pending.iter().map(|m| m.oid.clone()).collect();
        let answer = match tokio::time::timeout_at(deadline, session.get(&oids)).await {
            Ok(answer) => answer,
            Err(_) => {
                gathered.cut = true;
                return;
            }
        };
        match answer {
            Ok(varbinds) => {
                gathered.answered = true;
                gathered.only_agent_errors = false;
                let by_oid: HashMap<&Oid, &Value> =
                    varbinds.iter().map(|vb| (&vb.oid, &vb.value)).collect();
                for metric in pending {
                    // A reply that skipped or renamed an object leaves it out.
                    if let Some(value) = by_oid.get(&metric.oid) {
                        gathered.values.push(scalar_value(
                            &metric.oid,
                            &metric.name,
                            metric
                                .oid
                                .arcs()
                                .last()
                                .map(std::slice::from_ref)
                                .unwrap_or(&[]),
                            value,
                        ));
                    }
                }
                return;
            }
            Err(SnmpError::Agent {
                status: AgentStatus::NoSuchName,
                index,
            }) if index >= 1 && (index as usize) <= pending.len() => {
                gathered.answered = true;
                let missing = pending.remove(index as usize - 1);
                gathered.values.push(scalar_value(
                    &missing.oid,
                    &missing.name,
                    missing
                        .oid
                        .arcs()
                        .last()
                        .map(std::slice::from_ref)
                        .unwrap_or(&[]),
                    &Value::NoSuchObject,
                ));
            }
            Err(error @ SnmpError::Agent { .. }) => {
                gathered.answered = true;
                gathered
                    .notes
                    .push(format!("GET of {} objects failed: {error}", pending.len()));
                gathered.agent_error.get_or_insert(error);
                return;
            }
            Err(error) => {
                gathered.fatal = Some(error);
                return;
            }
        }
    }
}

/// The IF-MIB part: status every poll, labels when asked, and the counter
/// columns each interface's HC decision calls for. `riders` go with the
/// first walk (see [`walk_with`]); returns those it could not read.
async fn interfaces<S: Session>(
    session: &S,
    plan: &Plan,
    memory: &mut DeviceMemory,
    repetitions: &mut Repetitions,
    deadline: Instant,
    riders: &[Metric],
    gathered: &mut Gathered,
) -> Vec<Metric> {
    let hc_possible = session.version() != Version::V1;
    let decided = &memory.hc;
    let want_hc = hc_possible && (decided.is_empty() || decided.values().any(|&hc| hc));
    let want_32 = decided.is_empty() || decided.values().any(|&hc| !hc);

    let mut columns: Vec<IfColumn> = STATUS.to_vec();
    if plan.refresh_labels {
        columns.extend(LABELS);
    }
    if want_32 {
        columns.extend(COUNTERS_32);
    }
    if want_hc {
        columns.extend(COUNTERS_HC);
    }
    let mut cells: BTreeMap<IfColumn, BTreeMap<u32, Value>> = BTreeMap::new();
    let unread = read_columns(
        session,
        riders,
        &columns,
        repetitions,
        deadline,
        gathered,
        &mut cells,
    )
    .await;

    // Interfaces are the rows of the status columns.
    let indexes: Vec<u32> = {
        let mut set: Vec<u32> = STATUS
            .iter()
            .filter_map(|c| cells.get(c))
            .flat_map(|rows| rows.keys().copied())
            .collect();
        set.sort_unstable();
        set.dedup();
        set
    };
    // New interfaces need both counter sets once, to decide.
    let undecided = indexes.iter().any(|i| !memory.hc.contains_key(i));
    if undecided && !stopped(gathered) {
        let mut extra = Vec::new();
        if hc_possible && !want_hc {
            extra.extend(COUNTERS_HC);
        }
        if !want_32 {
            extra.extend(COUNTERS_32);
        }
        if !extra.is_empty() {
            read_columns(
                session,
                &[],
                &extra,
                repetitions,
                deadline,
                gathered,
                &mut cells,
            )
            .await;
        }
    }
    let status_complete = !gathered.cut && gathered.fatal.is_none();

    let cell = |column: IfColumn, index: u32| cells.get(&column).and_then(|rows| rows.get(&index));
    let mut decisions = HashMap::new();
    for &index in &indexes {
        let hc = match memory.hc.get(&index) {
            Some(&hc) => hc,
            None => {
                if !status_complete
                    && cell(IfColumn::HcInOctets, index).is_none()
                    && cell(IfColumn::InOctets, index).is_none()
                {
                    // Cut before the counters: decide on a later poll.
                    continue;
                }
                matches!(cell(IfColumn::HcInOctets, index), Some(Value::Counter64(_)))
            }
        };
        decisions.insert(index, hc);
    }
    for &index in &indexes {
        let hc = decisions.get(&index).copied().unwrap_or(false);
        let counter = |thirty_two: IfColumn, sixty_four: IfColumn| {
            let column = if hc { sixty_four } else { thirty_two };
            if decisions.contains_key(&index) {
                cell(column, index).and_then(Value::as_u64)
            } else {
                None
            }
        };
        let number = |column: IfColumn| cell(column, index).and_then(Value::as_u64);
        let integer = |column: IfColumn| match cell(column, index) {
            Some(Value::Integer(v)) => i32::try_from(*v).ok(),
            _ => None,
        };
        let text = |column: IfColumn| {
            cell(column, index)
                .and_then(Value::as_text)
                .unwrap_or_default()
        };
        let admin = integer(IfColumn::Admin)
            .filter(|v| (1..=3).contains(v))
            .unwrap_or(0);
        let oper = integer(IfColumn::Oper)
            .filter(|v| (1..=7).contains(v))
            .unwrap_or(0);
        let speed_bps = if plan.refresh_labels {
            match number(IfColumn::HighSpeed) {
                Some(mbps) if mbps > 0 => Some(mbps.saturating_mul(1_000_000)),
                _ => number(IfColumn::Speed),
            }
        } else {
            None
        };
        gathered.interfaces.push(v1::InterfaceSample {
            if_index: index,
            if_name: if plan.refresh_labels {
                text(IfColumn::Name)
            } else {
                String::new()
            },
            if_alias: if plan.refresh_labels {
                text(IfColumn::Alias)
            } else {
                String::new()
            },
            if_descr: if plan.refresh_labels {
                text(IfColumn::Descr)
            } else {
                String::new()
            },
            admin_status: admin,
            oper_status: oper,
            speed_bps,
            hc,
            in_octets: counter(IfColumn::InOctets, IfColumn::HcInOctets),
            out_octets: counter(IfColumn::OutOctets, IfColumn::HcOutOctets),
            in_unicast_packets: counter(IfColumn::InUcast, IfColumn::HcInUcast),
            out_unicast_packets: counter(IfColumn::OutUcast, IfColumn::HcOutUcast),
            in_errors: number(IfColumn::InErrors),
            out_errors: number(IfColumn::OutErrors),
            in_discards: number(IfColumn::InDiscards),
            out_discards: number(IfColumn::OutDiscards),
            labels_refreshed: plan.refresh_labels,
            last_change_ticks: match cell(IfColumn::LastChange, index) {
                Some(Value::TimeTicks(t)) => Some(*t),
                _ => None,
            },
        });
    }
    gathered.labels_refreshed = plan.refresh_labels && !gathered.interfaces.is_empty();
    if status_complete {
        // The table as read now is the truth: interfaces gone are forgotten.
        memory.hc = decisions;
    } else {
        memory.hc.extend(decisions);
    }
    unread
}

/// Walks IF-MIB columns into `cells`; returns the riders it could not read.
async fn read_columns<S: Session>(
    session: &S,
    riders: &[Metric],
    columns: &[IfColumn],
    repetitions: &mut Repetitions,
    deadline: Instant,
    gathered: &mut Gathered,
    cells: &mut BTreeMap<IfColumn, BTreeMap<u32, Value>>,
) -> Vec<Metric> {
    let oids: Vec<Oid> = columns.iter().map(|c| c.oid()).collect();
    let (read, unread) = walk_with(session, riders, &oids, repetitions, deadline, gathered).await;
    for (column, rows) in columns.iter().zip(read) {
        let entry = cells.entry(*column).or_default();
        for (instance, value) in rows {
            // ifIndex is one arc, 1 or more; anything else is not a row.
            if let [index] = instance[..]
                && index >= 1
                && !value.is_exception()
            {
                entry.insert(index, value);
            }
        }
    }
    unread
}

/// A value as `ScalarValue` carries it.
fn scalar_value(oid: &Oid, name: &str, instance: &[u32], value: &Value) -> v1::ScalarValue {
    use v1::scalar_value::Value as V;
    let mut out = v1::ScalarValue {
        oid: oid.to_string(),
        name: name.to_string(),
        instance: dotted(instance),
        ..Default::default()
    };
    out.value = match value {
        Value::Integer(v) => Some(V::Integer(*v)),
        Value::Counter32(v) => Some(V::Counter32(*v)),
        Value::Counter64(v) => Some(V::Counter64(*v)),
        Value::Gauge32(v) => Some(V::Gauge32(*v)),
        Value::TimeTicks(v) => Some(V::Timeticks(*v)),
        Value::OctetString(bytes) => Some(match printable(bytes) {
            Some(text) => V::Text(text),
            None => V::Octets(bytes.clone()),
        }),
        Value::ObjectId(id) => Some(V::ObjectId(id.to_string())),
        Value::IpAddress(ip) => Some(V::IpAddress(std::net::Ipv4Addr::from(*ip).to_string())),
        Value::Opaque(bytes) => Some(V::Opaque(bytes.clone())),
        Value::Null => None,
        Value::NoSuchObject => {
            out.exception = v1::SnmpValueException::NoSuchObject as i32;
            None
        }
        Value::NoSuchInstance => {
            out.exception = v1::SnmpValueException::NoSuchInstance as i32;
            None
        }
        Value::EndOfMibView => {
            out.exception = v1::SnmpValueException::EndOfMibView as i32;
            None
        }
    };
    out
}

/// Text when the octets are UTF-8 without control characters (tabs and
/// line breaks allowed; trailing NULs, a common padding, dropped).
fn printable(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end_matches('\0');
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then(|| text.to_string())
}

fn millis(duration: Duration) -> u32 {
    duration.as_millis().min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::tests::FakeAgent;

    fn plan(refresh_labels: bool, profile: Option<&Profile>) -> Plan {
        Plan {
            address: SocketAddr::from(([127, 0, 0, 1], 161)),
            timeout: Duration::from_millis(100),
            auto: profile.is_none(),
            fixed: profile.cloned(),
            remembered_profile: String::new(),
            refresh_labels,
        }
    }

    fn switch(version: Version, hc_rows: &[u32]) -> FakeAgent {
        let mut agent = FakeAgent::new(version);
        agent.set(
            "1.3.6.1.2.1.1.1.0",
            Value::OctetString(b"Cisco IOS".to_vec()),
        );
        agent.set(
            "1.3.6.1.2.1.1.2.0",
            Value::ObjectId(Oid::parse("1.3.6.1.4.1.9.1.516").unwrap_or_default()),
        );
        agent.set("1.3.6.1.2.1.1.3.0", Value::TimeTicks(4242));
        agent.set("1.3.6.1.2.1.1.5.0", Value::OctetString(b"sw1\0\0".to_vec()));
        agent.set("1.3.6.1.4.1.9.9.109.1.1.1.1.8.1", Value::Gauge32(7));
        for index in 1..=3u32 {
            let t = |c: u32| format!("1.3.6.1.2.1.2.2.1.{c}.{index}");
            let x = |c: u32| format!("1.3.6.1.2.1.31.1.1.1.{c}.{index}");
            agent.set(
                &t(2),
                Value::OctetString(format!("Gi0/{index}").into_bytes()),
            );
            agent.set(&t(5), Value::Gauge32(u32::MAX));
            agent.set(&t(7), Value::Integer(1));
            agent.set(&t(8), Value::Integer(if index == 2 { 2 } else { 1 }));
            agent.set(&t(9), Value::TimeTicks(100));
            agent.set(&t(10), Value::Counter32(1000 + index));
            agent.set(&t(16), Value::Counter32(2000 + index));
            agent.set(&t(14), Value::Counter32(3));
            agent.set(
                &x(1),
                Value::OctetString(format!("gi0/{index}").into_bytes()),
            );
            agent.set(&x(15), Value::Gauge32(10_000));
            agent.set(&x(18), Value::OctetString(b"ISP: Magti".to_vec()));
            if hc_rows.contains(&index) && version != Version::V1 {
                agent.set(&x(6), Value::Counter64(u64::from(index) << 40));
                agent.set(&x(10), Value::Counter64(u64::from(index) << 41));
            }
        }
        agent
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn auto_picks_the_vendor_profile_and_fills_the_sample() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        let agent = switch(Version::V2c, &[1, 2, 3]);
        let mut memory = DeviceMemory::default();
        let mut reps = Repetitions::new(0);
        let gathered = gather(
            &agent,
            &profiles,
            &plan(true, None),
            &mut memory,
            &mut reps,
            later(),
        )
        .await;
        let mut sample = v1::SnmpSample::default();
        gathered.into_sample(&mut sample);
        assert_eq!(
            sample.outcome(),
            v1::SnmpOutcome::Ok,
            "{}",
            sample.error_detail
        );
        assert_eq!(sample.profile, "cisco");
        assert_eq!(sample.sys_uptime_ticks, Some(4242));
        assert_eq!(sample.sys_object_id, "1.3.6.1.4.1.9.1.516");
        assert!(!sample.partial);
        let cpu = sample
            .values
            .iter()
            .find(|v| v.name == "cpmCPUTotal5minRev");
        assert_eq!(
            cpu.map(|v| (v.instance.as_str(), v.value.clone())),
            Some(("1", Some(v1::scalar_value::Value::Gauge32(7))))
        );
        let name = sample
            .values
            .iter()
            .find(|v| v.name == "sysName")
            .and_then(|v| v.value.clone());
        assert_eq!(name, Some(v1::scalar_value::Value::Text("sw1".into())));
        assert_eq!(sample.interfaces.len(), 3);
        let gi2 = &sample.interfaces[1];
        assert_eq!(
            (gi2.if_index, gi2.if_name.as_str(), gi2.oper_status()),
            (2, "gi0/2", v1::IfOperStatus::Down)
        );
        assert_eq!(gi2.if_alias, "ISP: Magti");
        assert_eq!(gi2.speed_bps, Some(10_000_000_000));
        assert!(gi2.hc);
        assert_eq!(gi2.in_octets, Some(2 << 40));
        assert_eq!(gi2.in_errors, Some(3));
        assert_eq!(gi2.last_change_ticks, Some(100));
        assert_eq!(memory.hc.len(), 3);
    }

    #[tokio::test]
    async fn hc_is_decided_once_per_interface_and_remembered() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        let interfaces = profiles.get("interfaces").cloned();
        let agent = switch(Version::V2c, &[1, 3]);
        let mut memory = DeviceMemory::default();
        let mut reps = Repetitions::new(0);
        let first = gather(
            &agent,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut memory,
            &mut reps,
            later(),
        )
        .await;
        let hc: Vec<bool> = first.interfaces.iter().map(|i| i.hc).collect();
        assert_eq!(hc, [true, false, true]);
        assert_eq!(first.interfaces[1].in_octets, Some(1002));
        assert!(
            first
                .interfaces
                .iter()
                .all(|i| i.if_name.is_empty() && i.speed_bps.is_none() && !i.labels_refreshed)
        );

        // Interface 1 loses its HC columns (an agent quirk): it stays HC
        // (its counters are absent this time), it does not switch to 32-bit.
        let mut changed = switch(Version::V2c, &[3]);
        changed.set("1.3.6.1.2.1.31.1.1.1.6.2", Value::Counter64(9));
        let before = changed.requests_sent();
        let second = gather(
            &changed,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut memory,
            &mut reps,
            later(),
        )
        .await;
        let hc: Vec<bool> = second.interfaces.iter().map(|i| i.hc).collect();
        assert_eq!(hc, [true, false, true]);
        assert_eq!(second.interfaces[0].in_octets, None);
        assert_eq!(
            second.interfaces[1].in_octets,
            Some(1002),
            "32-bit as decided"
        );
        assert!(changed.requests_sent() > before);

        // SNMPv1 never asks for HC columns.
        let v1_agent = switch(Version::V1, &[]);
        let mut memory = DeviceMemory::default();
        let third = gather(
            &v1_agent,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut memory,
            &mut Repetitions::new(0),
            later(),
        )
        .await;
        assert!(
            third
                .interfaces
                .iter()
                .all(|i| !i.hc && i.in_octets.is_some())
        );
    }

    #[tokio::test]
    async fn a_deadline_returns_what_was_gathered_as_partial() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        let agent = switch(Version::V2c, &[1]);
        let mut memory = DeviceMemory::default();
        let gathered = gather(
            &agent,
            &profiles,
            &plan(true, None),
            &mut memory,
            &mut Repetitions::new(0),
            Instant::now(),
        )
        .await;
        let mut sample = v1::SnmpSample::default();
        gathered.into_sample(&mut sample);
        // The in-memory agent answers the first GET at once; the walks
        // after it find the deadline passed.
        assert!(sample.partial);
        assert_eq!(sample.outcome(), v1::SnmpOutcome::Ok);
        assert!(
            sample.error_detail.contains("deadline"),
            "{}",
            sample.error_detail
        );
        assert_eq!(sample.values.len(), 4);
        assert!(sample.interfaces.is_empty());
    }

    #[tokio::test]
    async fn a_walk_the_agent_refuses_is_an_agent_error_never_ok() {
        // The interface table answers genErr at any size; the system
        // scalars are readable: the sample keeps them and says why the
        // table is missing.
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        let interfaces = profiles.get("interfaces").cloned();
        let mut agent = switch(Version::V3, &[1, 2, 3]);
        agent.broken = vec![Oid::parse("1.3.6.1.2.1.2.2.1").unwrap_or_default()];
        let gathered = gather(
            &agent,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut DeviceMemory::default(),
            &mut Repetitions::new(4),
            later(),
        )
        .await;
        let mut sample = v1::SnmpSample::default();
        gathered.into_sample(&mut sample);
        assert_eq!(sample.outcome(), v1::SnmpOutcome::AgentError);
        assert!(sample.partial);
        assert!(
            sample
                .error_detail
                .starts_with("incomplete: the agent answered genErr"),
            "{}",
            sample.error_detail
        );
        assert!(sample.interfaces.is_empty());
        assert_eq!(sample.values.len(), 4);
        assert_eq!(sample.sys_uptime_ticks, Some(4242));

        // Too big for the agent's buffer (net-snmp's genErr): fewer rows,
        // and the poll is complete and OK.
        let mut agent = switch(Version::V3, &[1, 2, 3]);
        agent.max_bindings = 24;
        agent.over_size = AgentStatus::Other(5);
        let gathered = gather(
            &agent,
            &profiles,
            &plan(true, interfaces.as_ref()),
            &mut DeviceMemory::default(),
            &mut Repetitions::new(10),
            later(),
        )
        .await;
        let mut sample = v1::SnmpSample::default();
        gathered.into_sample(&mut sample);
        assert_eq!(
            sample.outcome(),
            v1::SnmpOutcome::Ok,
            "{}",
            sample.error_detail
        );
        assert!(!sample.partial && sample.error_detail.is_empty());
        assert_eq!(sample.interfaces.len(), 3);
    }

    fn riders_asked(agent: &FakeAgent) -> Vec<usize> {
        agent
            .asked_non_repeaters
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn scalars_ride_the_first_walk_so_a_small_device_costs_one_request() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        let interfaces = profiles.get("interfaces").cloned();
        let mut agent = switch(Version::V2c, &[1, 2, 3]);
        // No sysName: GETNEXT of sysName answers the next object instead.
        agent
            .mib
            .remove(&Oid::parse("1.3.6.1.2.1.1.5.0").unwrap_or_default());
        let mut memory = DeviceMemory::default();
        let mut reps = Repetitions::new(0);
        let first = gather(
            &agent,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut memory,
            &mut reps,
            later(),
        )
        .await;
        assert_eq!(agent.requests_sent(), 1, "first poll: one GETBULK");
        assert_eq!(riders_asked(&agent), [4]);
        assert_eq!(first.interfaces.len(), 3);
        // The next poll is sized from this one: 3 rows + the end.
        let hint = reps.for_next_poll();
        assert_eq!(hint, 4);

        let agent = {
            let mut agent = switch(Version::V2c, &[1, 2, 3]);
            agent
                .mib
                .remove(&Oid::parse("1.3.6.1.2.1.1.5.0").unwrap_or_default());
            agent
        };
        let mut reps = Repetitions::new(hint);
        let second = gather(
            &agent,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut memory,
            &mut reps,
            later(),
        )
        .await;
        assert_eq!(agent.requests_sent(), 1);
        let asked = agent
            .asked_repetitions
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        assert_eq!(asked, [4]);
        assert_eq!(reps.for_next_poll(), 4);
        let mut sample = v1::SnmpSample::default();
        second.into_sample(&mut sample);
        assert_eq!(
            sample.outcome(),
            v1::SnmpOutcome::Ok,
            "{}",
            sample.error_detail
        );
        assert_eq!(sample.sys_uptime_ticks, Some(4242));
        assert_eq!(sample.sys_object_id, "1.3.6.1.4.1.9.1.516");
        let names: Vec<&str> = sample.values.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["sysDescr", "sysObjectID", "sysUpTime", "sysName"]);
        let sys_name = &sample.values[3];
        assert_eq!(
            (
                sys_name.oid.as_str(),
                sys_name.instance.as_str(),
                sys_name.exception()
            ),
            (
                "1.3.6.1.2.1.1.5.0",
                "0",
                v1::SnmpValueException::NoSuchObject
            )
        );
        assert_eq!(sample.interfaces.len(), 3);
        assert!(
            sample
                .interfaces
                .iter()
                .all(|i| i.hc && i.in_octets.is_some())
        );

        // SNMPv1: no GETBULK, the scalars are read by GET.
        let agent = switch(Version::V1, &[]);
        let gathered = gather(
            &agent,
            &profiles,
            &plan(false, interfaces.as_ref()),
            &mut DeviceMemory::default(),
            &mut Repetitions::new(0),
            later(),
        )
        .await;
        assert!(riders_asked(&agent).is_empty());
        let mut sample = v1::SnmpSample::default();
        gathered.into_sample(&mut sample);
        assert_eq!(sample.sys_uptime_ticks, Some(4242));
        assert_eq!(sample.interfaces.len(), 3);
    }

    #[tokio::test]
    async fn auto_polls_the_remembered_profile_at_once_and_corrects_a_wrong_one() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        let remembering = |name: &str| Plan {
            remembered_profile: name.to_string(),
            ..plan(true, None)
        };
        let poll = |plan: Plan| {
            let profiles = &profiles;
            async move {
                let agent = switch(Version::V2c, &[1, 2, 3]);
                let gathered = gather(
                    &agent,
                    profiles,
                    &plan,
                    &mut DeviceMemory::default(),
                    &mut Repetitions::new(4),
                    later(),
                )
                .await;
                let mut sample = v1::SnmpSample::default();
                gathered.into_sample(&mut sample);
                (sample, agent.requests_sent(), riders_asked(&agent))
            }
        };
        // Without a remembered profile: GET of the system scalars, then
        // the cisco columns, then the interfaces.
        let (cold, cold_requests, _) = poll(remembering("")).await;
        assert_eq!((cold.profile.as_str(), cold_requests), ("cisco", 3));
        // Remembered: the system scalars ride with the cisco columns.
        let (warm, warm_requests, riders) = poll(remembering("cisco")).await;
        assert_eq!((warm.profile.as_str(), warm_requests), ("cisco", 2));
        assert_eq!(riders, [4, 0]);
        assert_eq!(warm.values, cold.values);
        assert_eq!(warm.interfaces, cold.interfaces);
        assert_eq!(warm.sys_uptime_ticks, Some(4242));
        // A wrong guess: sysObjectID says cisco after the first walk; the
        // poll goes on as cisco, nothing read twice or left over.
        let (fixed, _, _) = poll(remembering("juniper")).await;
        assert_eq!(fixed.profile, "cisco");
        assert_eq!(fixed.values, cold.values);
        assert_eq!(fixed.interfaces, cold.interfaces);
        assert_eq!(
            fixed.outcome(),
            v1::SnmpOutcome::Ok,
            "{}",
            fixed.error_detail
        );
        let (fixed, requests, _) = poll(remembering("interfaces")).await;
        assert_eq!(fixed.profile, "cisco");
        assert_eq!(fixed.values, cold.values);
        assert_eq!(fixed.interfaces, cold.interfaces);
        assert_eq!(
            requests, 3,
            "interfaces + system, then cisco's columns and interfaces"
        );
    }

    #[test]
    fn octets_become_text_only_when_printable() {
        assert_eq!(printable(b"eth0\0"), Some("eth0".into()));
        assert_eq!(printable(&[0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]), None);
        assert_eq!(printable(&[0xff, 0xfe]), None);
    }
}

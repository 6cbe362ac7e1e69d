//! Rules and alerts. Rules are data (stored, seeded with the seed system's
//! defaults); an alert opens when the state machine fires one (device down,
//! flapping), a latency or loss rule's window of probes breaches it, or a
//! measurement rule's threshold holds for N polls, and resolves when the
//! condition ends — one open alert per
//! (rule, device, interface), FIRING → ACKNOWLEDGED → RESOLVED. Silences
//! and maintenance windows decide whether a change is notified; the
//! notification commits in the alert change's transaction (the outbox).
//!
//! Memory follows the database: each path stages its changes to the open
//! alerts, streaks and windows (`overlay.rs`), writes, and applies them
//! after the commit; `writer` makes the paths take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use netward_shared::inventory_copy::{CopiedDevice, SharedCopy};
use netward_shared::proto::v1;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::notify::{self, AlertPayload, Measurement, Notification, NotificationEvent, Notifier};
use crate::overlay::{self, Changes, Overlay};
use crate::rules::{self, default_rules};
use crate::scope;
use crate::silences::Silences;
use crate::state::{AlertKind, Event, EventKind};
use crate::store::{AlertNotification, AlertStore, AlertWrite, NotifyWhen, ProbeRow, Stores};
use crate::timestamp as ts;
use crate::window::{self, Judgement, ProbeWindow};

/// An open alert's identity: (rule id, device id, interface; empty for a
/// device alert).
type OpenKey = (String, String, String);

pub struct AlertEngine {
    store: Arc<dyn AlertStore>,
    /// Delivers what `write` puts in the outbox (in the alert's transaction).
    notifier: Option<Arc<Notifier>>,
    copy: SharedCopy,
    rules: RwLock<Vec<v1::Rule>>,
    silences: Arc<Silences>,
    /// Open alerts by (rule id, device id, interface).
    open: Mutex<HashMap<OpenKey, v1::Alert>>,
    /// Consecutive breaching observations per (device, subject, rule kind).
    streaks: Mutex<HashMap<(String, String, i32), u32>>,
    /// The latest answered probes per device, for the latency and loss
    /// rules (memory only: empty after a restart; see `window.rs`).
    windows: Mutex<HashMap<Uuid, ProbeWindow>>,
    /// Held by every path that changes `open`, `streaks` or `windows`, from
    /// staging to applying: changes staged over memory another path is
    /// about to change would undo its changes.
    writer: tokio::sync::Mutex<()>,
    pub events: broadcast::Sender<v1::WatchAlertsResponse>,
}

/// A change to write.
enum Change {
    /// A new alert: notified unless suppressed.
    Open(v1::Alert),
    /// An alert resolved: notified when its firing was, and nothing mutes it now.
    Resolve(v1::Alert),
    /// Its suppression changed: notified as firing when it never was.
    Touch(v1::Alert),
}

impl Change {
    fn alert(&self) -> &v1::Alert {
        match self {
            Change::Open(alert) | Change::Resolve(alert) | Change::Touch(alert) => alert,
        }
    }
}

/// Why a rule change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule {0} not found")]
    NotFound(String),
    #[error("a rule named {0:?} already exists")]
    NameTaken(String),
    #[error("rule {0} is built in: disable it instead of deleting it")]
    Builtin(String),
    #[error("invalid rule")]
    Invalid(Vec<netward_shared::status::FieldViolation>),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl AlertEngine {
    /// Seeds the default rules on a fresh database, loads rules and open alerts.
    pub async fn start(
        stores: &Stores,
        copy: SharedCopy,
        notifier: Option<Arc<Notifier>>,
    ) -> Result<Self, sqlx::Error> {
        let store = stores.alerts.clone();
        // Each default is seeded once, when no built-in rule of its kind
        // and name exists (renamed built-ins are not seeded again).
        let seeded = store.builtin_rules().await?;
        // Threshold rules are told apart by name (one per metric), the
        // others by kind.
        let missing = default_rules().into_iter().filter(|rule| {
            !seeded.iter().any(|(kind, name)| {
                *kind == rule.kind
                    && (rule.kind != v1::RuleKind::SnmpThreshold as i32 || *name == rule.name)
            })
        });
        for rule in missing {
            store.seed_rule(&rule).await?;
        }
        let mut rules = store.rules().await?;
        // Built-in latency and loss rules seeded "for 3 probes" and never
        // changed take today's window defaults (stored as protobuf bodies,
        // so this is code, not a migration).
        for rule in &mut rules {
            if let Some(upgraded) = rules::upgrade_builtin(rule) {
                store.replace_rule_body(&upgraded).await?;
                tracing::info!(rule = %upgraded.name, "built-in rule upgraded to a window of probes");
                *rule = upgraded;
            }
        }
        let open = store
            .open_alerts()
            .await?
            .into_iter()
            .map(|a| (key_of(&a), a))
            .collect();
        let (events, _) = broadcast::channel(1024);
        let silences = Arc::new(Silences::load(stores.silences.clone()).await?);
        Ok(Self {
            store,
            notifier,
            copy,
            rules: RwLock::new(rules),
            silences,
            open: Mutex::new(open),
            streaks: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(()),
            events,
        })
    }

    pub fn rules(&self) -> Vec<v1::Rule> {
        self.rules.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Open alerts per ifIndex of a device.
    pub fn open_per_interface(&self, device_id: &str) -> HashMap<u32, u32> {
        let mut counts = HashMap::new();
        if let Ok(open) = self.open.lock() {
            for alert in open.values().filter(|a| a.device_id == device_id) {
                if let Some(index) = alert.if_index {
                    *counts.entry(index).or_default() += 1;
                }
            }
        }
        counts
    }

    pub fn silences(&self) -> &Arc<Silences> {
        &self.silences
    }

    fn channel_names(&self) -> Vec<String> {
        self.notifier
            .as_ref()
            .map(|n| n.config().channel_names())
            .unwrap_or_default()
    }

    fn inventory(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, netward_shared::inventory_copy::InventoryCopy> {
        self.copy.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks and stores a new rule; it applies from the next result on.
    pub async fn create_rule(&self, input: &v1::Rule) -> Result<v1::Rule, RuleError> {
        let checked = rules::check(input, &self.inventory(), &self.channel_names());
        let mut rule = checked.map_err(RuleError::Invalid)?;
        let now = ts(Utc::now());
        rule.id = Uuid::new_v4().to_string();
        rule.builtin = false;
        rule.created_at = Some(now);
        rule.updated_at = Some(now);
        self.store
            .insert_rule(&rule)
            .await
            .map_err(|e| name_taken(e, &rule.name))?;
        if let Ok(mut rules) = self.rules.write() {
            rules.push(rule.clone());
        }
        tracing::info!(rule = %rule.name, id = %rule.id, "rule created");
        Ok(rule)
    }

    /// Changes the masked fields of a rule. Disabling it resolves its open
    /// alerts (nothing watches their condition any more).
    pub async fn update_rule(
        &self,
        update: &v1::Rule,
        mask: &[String],
    ) -> Result<v1::Rule, RuleError> {
        let current = self
            .rules()
            .into_iter()
            .find(|r| rules::matches(r, &update.id))
            .ok_or_else(|| RuleError::NotFound(update.id.clone()))?;
        let merged = rules::merge(&current, update, mask).map_err(RuleError::Invalid)?;
        let mut rule = rules::check(&merged, &self.inventory(), &self.channel_names())
            .map_err(RuleError::Invalid)?;
        rule.id = current.id.clone();
        rule.kind = current.kind;
        rule.builtin = current.builtin;
        rule.created_at = current.created_at;
        rule.updated_at = Some(ts(Utc::now()));
        self.store
            .update_rule(&rule)
            .await
            .map_err(|e| name_taken(e, &rule.name))?;
        if let Ok(mut rules) = self.rules.write()
            && let Some(slot) = rules.iter_mut().find(|r| r.id == rule.id)
        {
            *slot = rule.clone();
        }
        tracing::info!(rule = %rule.name, id = %rule.id, "rule updated");
        if !rule.enabled.unwrap_or(true) {
            self.close_alerts_of(&rule.id, "rule disabled").await?;
        }
        Ok(rule)
    }

    /// Deletes a rule (built-in ones can only be disabled) and resolves its
    /// open alerts.
    pub async fn delete_rule(&self, id: &str) -> Result<(), RuleError> {
        let rule = self
            .rules()
            .into_iter()
            .find(|r| rules::matches(r, id))
            .ok_or_else(|| RuleError::NotFound(id.to_string()))?;
        if rule.builtin {
            return Err(RuleError::Builtin(rule.name));
        }
        self.store
            .delete_rule(Uuid::parse_str(&rule.id).unwrap_or_default())
            .await?;
        if let Ok(mut rules) = self.rules.write() {
            rules.retain(|r| r.id != rule.id);
        }
        tracing::info!(rule = %rule.name, id = %rule.id, "rule deleted");
        self.close_alerts_of(&rule.id, "rule deleted").await?;
        Ok(())
    }

    /// Resolves every open alert of a rule, saying why.
    async fn close_alerts_of(&self, rule_id: &str, why: &str) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        let now = Utc::now();
        let (changes, staged) = {
            let base = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = Overlay::new(&base);
            let keys: Vec<OpenKey> = base.keys().filter(|k| k.0 == rule_id).cloned().collect();
            let changes = keys
                .iter()
                .filter_map(|k| open.remove(k))
                .map(|mut alert| {
                    alert.summary = format!("{} ({why})", alert.summary);
                    let device = self.device(&alert.device_id);
                    self.resolved(alert, &device, now)
                })
                .collect();
            (changes, open.into_changes())
        };
        self.write(changes, staged).await
    }

    /// Forgets devices deleted from the inventory: their open alerts
    /// resolve (nothing watches them any more), their streaks and windows
    /// go. An error changes nothing; the caller tries again.
    pub async fn forget_devices(&self, devices: &[Uuid]) -> Result<(), sqlx::Error> {
        if devices.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        let ids: std::collections::HashSet<String> = devices.iter().map(Uuid::to_string).collect();
        let now = Utc::now();
        let (changes, staged) = {
            let base = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = Overlay::new(&base);
            let keys: Vec<OpenKey> = base
                .keys()
                .filter(|k| ids.contains(&k.1))
                .cloned()
                .collect();
            let changes = keys
                .iter()
                .filter_map(|k| open.remove(k))
                .map(|mut alert| {
                    alert.summary =
                        format!("{} (device deleted from the inventory)", alert.summary);
                    let device = self.device(&alert.device_id);
                    self.resolved(alert, &device, now)
                })
                .collect();
            (changes, open.into_changes())
        };
        self.write(changes, staged).await?;
        self.streaks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(device, _, _), _| !ids.contains(device));
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for id in devices {
            windows.remove(id);
        }
        Ok(())
    }

    /// Every device the engine keeps something for: open alerts, streaks, windows.
    pub fn device_ids(&self) -> std::collections::HashSet<String> {
        let mut devices: std::collections::HashSet<String> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(_, device, _)| !device.is_empty())
            .map(|(_, device, _)| device.clone())
            .collect();
        devices.extend(
            self.streaks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .map(|(device, _, _)| device.clone()),
        );
        devices.extend(
            self.windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .map(Uuid::to_string),
        );
        devices
    }

    /// The enabled rule of `kind` that applies to the device, most specific
    /// scope first: device, tag, site, device type, global.
    fn rule_for(&self, kind: v1::RuleKind, device: &CopiedDevice) -> Option<v1::Rule> {
        let rules = self.rules.read().ok()?;
        rules
            .iter()
            .filter(|r| r.kind == kind as i32 && r.enabled.unwrap_or(true))
            .filter_map(|r| Some((scope::specificity(r.scope.as_ref()?, device)?, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r.clone())
    }

    fn device(&self, id: &str) -> Arc<CopiedDevice> {
        self.copy
            .read()
            .ok()
            .and_then(|c| c.devices.get(id).cloned())
            .unwrap_or_else(|| {
                Arc::new(CopiedDevice {
                    id: id.into(),
                    name: id.into(),
                    ..Default::default()
                })
            })
    }

    fn new_alert(
        &self,
        rule: &v1::Rule,
        device: &CopiedDevice,
        summary: String,
        probe: Option<&ProbeRow>,
        at: DateTime<Utc>,
        muted: bool,
    ) -> v1::Alert {
        v1::Alert {
            id: Uuid::new_v4().to_string(),
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            rule_kind: rule.kind,
            device_id: device.id.to_string(),
            device_name: device.name.to_string(),
            ip_address: device.ip_address.to_string(),
            device_type: device.device_type,
            site_id: device.site_id.to_string(),
            site_name: device.site_name.to_string(),
            region: device.region.to_string(),
            parent_device_id: device.parent_device_id.to_string(),
            severity: rule.severity,
            state: v1::AlertState::Firing as i32,
            started_at: Some(ts(at)),
            summary,
            loss_percent: probe.map(|p| p.result.loss_percent),
            rtt_avg_us: probe.and_then(|p| p.result.rtt_avg_us),
            cycle_id: probe.map(|p| p.result.cycle_id).unwrap_or_default(),
            threshold: rule.threshold,
            maintenance: muted,
            labels: rule.labels.clone(),
            updated_at: Some(ts(at)),
            ..Default::default()
        }
    }

    /// [`Self::mute`] for an alert that opens now: one that opens under a
    /// maintenance window is a maintenance alert for good (no notification,
    /// not even when the window ends before it resolves).
    fn mute_new(&self, alert: &mut v1::Alert, device: &CopiedDevice, at: DateTime<Utc>) {
        if self
            .mute(alert, device, at)
            .is_some_and(|silence| silence.maintenance())
        {
            alert.maintenance = true;
        }
    }

    /// Decides whether notifications for `alert` are muted at `at`: by a
    /// silence or maintenance window that matches it now (returned), or
    /// because it fired during maintenance (then for good).
    fn mute(
        &self,
        alert: &mut v1::Alert,
        device: &CopiedDevice,
        at: DateTime<Utc>,
    ) -> Option<crate::silences::Silence> {
        let silence = self.silences.muting(device, &alert.rule_id, at);
        match &silence {
            Some(silence) => {
                alert.suppressed = true;
                alert.suppression_reason = silence.reason();
                alert.silence_id = silence.id.to_string();
            }
            None => {
                alert.suppressed = alert.maintenance;
                alert.silence_id.clear();
                alert.suppression_reason = if alert.maintenance {
                    "fired during maintenance".into()
                } else {
                    String::new()
                };
            }
        }
        silence
    }

    /// Takes the open alerts of `kind` on a device's subject (`""` = the
    /// device itself) out of `open`, whatever rule of the kind raised them
    /// (the rule may have been changed since). Looks up one key per rule of
    /// the kind: this runs for every observation of every interface.
    fn take_open(
        &self,
        open: &mut Overlay<'_, OpenKey, v1::Alert>,
        kind: v1::RuleKind,
        device_id: &str,
        subject: &str,
    ) -> Vec<v1::Alert> {
        let Ok(rules) = self.rules.read() else {
            return Vec::new();
        };
        rules
            .iter()
            .filter(|r| r.kind == kind as i32)
            .filter_map(|r| {
                open.remove(&(r.id.clone(), device_id.to_string(), subject.to_string()))
            })
            .collect()
    }

    fn resolved(&self, mut alert: v1::Alert, device: &CopiedDevice, at: DateTime<Utc>) -> Change {
        alert.state = v1::AlertState::Resolved as i32;
        alert.resolved_at = Some(ts(at));
        alert.updated_at = Some(ts(at));
        self.mute(&mut alert, device, at);
        Change::Resolve(alert)
    }

    /// Opens or resolves alerts for the state machine's alert events.
    pub async fn on_events(
        &self,
        events: &[(Uuid, Event)],
        probes: &[ProbeRow],
    ) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut changes = Vec::new();
        let staged = {
            let base = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = Overlay::new(&base);
            for (device_id, event) in events {
                let (kind, fire) = match &event.kind {
                    EventKind::AlertFire(kind) => (*kind, true),
                    EventKind::AlertResolve(kind) => (*kind, false),
                    _ => continue,
                };
                let rule_kind = match kind {
                    AlertKind::DeviceDown => v1::RuleKind::DeviceDown,
                    AlertKind::DeviceFlapping => v1::RuleKind::DeviceFlapping,
                };
                let device = self.device(&device_id.to_string());
                // A resolve needs no rule: it closes whatever is open.
                let rule = match self.rule_for(rule_kind, &device) {
                    Some(rule) => rule,
                    None if !fire => v1::Rule::default(),
                    None => continue,
                };
                let at = DateTime::<Utc>::from(event.at);
                let probe = probes.iter().rev().find(|p| p.device_id == *device_id);
                if fire {
                    let key = (rule.id.clone(), device.id.to_string(), String::new());
                    if open.contains_key(&key) {
                        continue;
                    }
                    let mut alert = self.new_alert(
                        &rule,
                        &device,
                        format!("{}: {}", device.name, event.reason),
                        probe,
                        at,
                        event.muted,
                    );
                    self.mute_new(&mut alert, &device, at);
                    open.insert(key, alert.clone());
                    changes.push(Change::Open(alert));
                } else {
                    for alert in self.take_open(&mut open, rule_kind, &device.id, "") {
                        changes.push(self.resolved(alert, &device, at));
                    }
                }
            }
            open.into_changes()
        };
        self.write(changes, staged).await
    }

    /// Latency and loss rules: each answered probe enters its device's
    /// window, and the window is judged under the device's rule (see
    /// `window.rs`): a breach for `consecutive` probes opens an alert, a
    /// clear window resolves it, a window too small or within chance of the
    /// threshold leaves it as it is. A probe that got no reply at all is the
    /// down rule's business and enters no window.
    pub async fn on_probes(&self, probes: &[ProbeRow]) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut observations = Vec::new();
        let rings = {
            let base = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let mut windows = Overlay::new(&base);
            // Per device: its inventory entry, latency rule, loss rule.
            type Judged = (Arc<CopiedDevice>, Option<v1::Rule>, Option<v1::Rule>);
            let mut devices: HashMap<Uuid, Judged> = HashMap::new();
            for probe in probes {
                let Some(sample) = window::Sample::of(&probe.result) else {
                    continue;
                };
                let (device, latency_rule, loss_rule) =
                    devices.entry(probe.device_id).or_insert_with(|| {
                        let device = self.device(&probe.device_id.to_string());
                        let rule = |kind| self.rule_for_subject(kind, &device, &Subject::Device);
                        let rules = (
                            rule(v1::RuleKind::HighLatency),
                            rule(v1::RuleKind::PacketLoss),
                        );
                        (device, rules.0, rules.1)
                    });
                // The ring holds the largest window of the device's rules.
                let capacity = [&*latency_rule, &*loss_rule]
                    .into_iter()
                    .flatten()
                    .map(|r| window::Settings::of(r).window_probes)
                    .max()
                    .unwrap_or(window::DEFAULT_WINDOW_PROBES);
                let ring = windows.get_or_insert_with(probe.device_id, ProbeWindow::default);
                ring.push(sample, capacity);
                let observe = |kind, judged| Observation {
                    kind,
                    device_id: device.id.to_string(),
                    subject: Subject::Device,
                    measure: Measure::Window(judged),
                    at: probe.probed_at,
                    cycle_id: probe.result.cycle_id,
                    probe: Some(probe.clone()),
                };
                observations.push(observe(
                    v1::RuleKind::HighLatency,
                    latency_rule.as_ref().map(|r| latency_verdict(ring, r)),
                ));
                observations.push(observe(
                    v1::RuleKind::PacketLoss,
                    loss_rule.as_ref().map(|r| loss_verdict(ring, r)),
                ));
            }
            windows.into_changes()
        };
        self.observe_staged(&observations).await?;
        // The windows move on only once what they judged is written.
        overlay::apply(
            &mut self.windows.lock().unwrap_or_else(|p| p.into_inner()),
            rings,
        );
        Ok(())
    }

    /// The enabled rule of `kind` for this device and subject, most
    /// specific scope first (rules that do not apply to the subject — an
    /// interface of another role, another SNMP metric — are left out).
    fn rule_for_subject(
        &self,
        kind: v1::RuleKind,
        device: &CopiedDevice,
        subject: &Subject,
    ) -> Option<v1::Rule> {
        let rules = self.rules.read().ok()?;
        rules
            .iter()
            .filter(|r| r.kind == kind as i32 && r.enabled.unwrap_or(true))
            .filter(|r| subject.applies(r))
            .filter_map(|r| Some((scope::specificity(r.scope.as_ref()?, device)?, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r.clone())
    }

    /// Measurement rules: each observation breaches its rule or not; a
    /// breach held for `consecutive` observations opens an alert, the first
    /// observation without one resolves it.
    pub async fn observe(&self, observations: &[Observation]) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        self.observe_staged(observations).await
    }

    /// [`Self::observe`] for a caller holding `writer`.
    async fn observe_staged(&self, observations: &[Observation]) -> Result<(), sqlx::Error> {
        let mut changes = Vec::new();
        let (staged, streak_changes) = {
            let open_base = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let streaks_base = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = Overlay::new(&open_base);
            let mut streaks = Overlay::new(&streaks_base);
            let mut devices: HashMap<&str, Arc<CopiedDevice>> = HashMap::new();
            for o in observations {
                // One inventory lookup per device, not per observation (a
                // router's interfaces give several each).
                let device: &CopiedDevice = devices
                    .entry(o.device_id.as_str())
                    .or_insert_with(|| self.device(&o.device_id));
                let subject_key = o.subject.key();
                if o.measure.held() {
                    continue;
                }
                let rule = self.rule_for_subject(o.kind, device, &o.subject);
                let verdict = rule.as_ref().and_then(|rule| o.verdict(rule));
                let (Some(rule), Some((value, detail))) = (rule, verdict) else {
                    streaks.remove(&(device.id.to_string(), subject_key.clone(), o.kind as i32));
                    for alert in self.take_open(&mut open, o.kind, &device.id, &subject_key) {
                        changes.push(self.resolved(alert, device, o.at));
                    }
                    continue;
                };
                let streak = streaks.get_or_insert_with(
                    (device.id.to_string(), subject_key.clone(), o.kind as i32),
                    u32::default,
                );
                *streak += 1;
                let streak = *streak;
                let key = (rule.id.clone(), device.id.to_string(), subject_key.clone());
                if streak < rule.consecutive.max(1) || open.contains_key(&key) {
                    continue;
                }
                let what = if matches!(o.kind, v1::RuleKind::HighLatency | v1::RuleKind::PacketLoss)
                {
                    "probes"
                } else {
                    "polls"
                };
                let summary = if streak > 1 {
                    format!("{}: {detail} for {streak} {what}", device.name)
                } else {
                    format!("{}: {detail}", device.name)
                };
                let mut alert =
                    self.new_alert(&rule, device, summary, o.probe.as_ref(), o.at, false);
                alert.value = value;
                alert.cycle_id = o.cycle_id;
                o.subject.label(&mut alert);
                self.mute_new(&mut alert, device, o.at);
                open.insert(key, alert.clone());
                changes.push(Change::Open(alert));
            }
            (open.into_changes(), streaks.into_changes())
        };
        self.write(changes, staged).await?;
        overlay::apply(
            &mut self.streaks.lock().unwrap_or_else(|p| p.into_inner()),
            streak_changes,
        );
        Ok(())
    }

    /// Whether a monitoring-gap alert of `scope` is open.
    pub fn gap_open(&self, scope: &str) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|a| {
                a.rule_kind == v1::RuleKind::MonitoringGap as i32
                    && a.labels.get("scope").map(String::as_str) == Some(scope)
            })
    }

    /// Monitoring gaps (see `freshness`): one alert per gap's scope opens
    /// while the gap lasts and resolves when its scope has fresh results
    /// again; a gap whose cause changed keeps its alert, with the new cause
    /// in its summary. Gap alerts have no device: silences match them only
    /// through a global scope.
    pub async fn on_gaps(
        &self,
        gaps: &[crate::freshness::Gap],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let rule = self.rules.read().ok().and_then(|rules| {
            rules
                .iter()
                .find(|r| r.kind == v1::RuleKind::MonitoringGap as i32 && r.enabled.unwrap_or(true))
                .cloned()
        });
        let _writer = self.writer.lock().await;
        let nobody = CopiedDevice::default();
        let mut changes = Vec::new();
        let staged = {
            let base = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = Overlay::new(&base);
            let gap_keys: Vec<OpenKey> = base
                .iter()
                .filter(|(_, a)| a.rule_kind == v1::RuleKind::MonitoringGap as i32)
                .map(|(key, _)| key.clone())
                .collect();
            // Gaps that closed (or whose rule is gone): resolved.
            for key in gap_keys {
                let scope = base[&key].labels.get("scope").cloned().unwrap_or_default();
                let still = rule.as_ref().is_some_and(|r| r.id == key.0)
                    && gaps.iter().any(|g| g.scope == scope);
                if !still && let Some(alert) = open.remove(&key) {
                    changes.push(self.resolved(alert, &nobody, now));
                }
            }
            if let Some(rule) = &rule {
                for gap in gaps {
                    let key = (
                        rule.id.clone(),
                        String::new(),
                        format!("monitoring_gap/{}", gap.scope),
                    );
                    let summary = gap.summary();
                    if let Some(alert) = open.get_mut(&key) {
                        // Kept current as the gap grows or shrinks (not
                        // notified again: the firing was).
                        let count = Some(gap.devices.len() as f64);
                        if alert.labels.get("cause") != Some(&gap.cause) || alert.value != count {
                            alert.labels.insert("cause".into(), gap.cause.clone());
                            alert.summary = summary;
                            alert.value = count;
                            alert.updated_at = Some(ts(now));
                            changes.push(Change::Touch(alert.clone()));
                        }
                        continue;
                    }
                    let mut alert = self.new_alert(rule, &nobody, summary, None, now, false);
                    alert.device_name = gap.scope_text.clone();
                    alert.value = Some(gap.devices.len() as f64);
                    // The open-alert key's subject (see `key_of`).
                    alert
                        .labels
                        .insert("metric".into(), "monitoring_gap".into());
                    alert.labels.insert("instance".into(), gap.scope.clone());
                    alert.labels.insert("scope".into(), gap.scope.clone());
                    alert.labels.insert("cause".into(), gap.cause.clone());
                    self.mute_new(&mut alert, &nobody, now);
                    open.insert(key, alert.clone());
                    changes.push(Change::Open(alert));
                }
            }
            open.into_changes()
        };
        self.write(changes, staged).await
    }

    /// Writes alert changes and their notifications in one transaction,
    /// then applies `staged` (the open-alert map's changes) and announces
    /// them. On an error nothing is applied.
    async fn write(
        &self,
        changes: Vec<Change>,
        staged: Changes<OpenKey, v1::Alert>,
    ) -> Result<(), sqlx::Error> {
        if changes.is_empty() {
            overlay::apply(
                &mut self.open.lock().unwrap_or_else(|p| p.into_inner()),
                staged,
            );
            return Ok(());
        }
        // The notification commits with the alert change, or neither does:
        // a crash in between loses nothing. A muted change sends nothing; a
        // resolve only follows a firing that was sent, and a firing is sent
        // once (late, when a silence ends before the alert).
        let writes: Vec<AlertWrite> = changes
            .iter()
            .map(|change| {
                let alert = change.alert();
                let notify = self
                    .notifier
                    .as_ref()
                    .filter(|_| !alert.suppressed)
                    .and_then(|notifier| {
                        let when = match change {
                            Change::Open(_) => NotifyWhen::Always,
                            Change::Resolve(_) => NotifyWhen::FiringSent,
                            Change::Touch(_) => NotifyWhen::FiringNotSent,
                        };
                        let channels = self.channels_of(&alert.rule_id);
                        notify::outbox_entry(
                            notifier.config(),
                            &self.notification(alert),
                            &channels,
                        )
                        .map(|notification| AlertNotification { when, notification })
                    });
                AlertWrite {
                    alert: alert.clone(),
                    new: matches!(change, Change::Open(_)),
                    subject: key_of(alert).2,
                    notify,
                }
            })
            .collect();
        self.store.write_alerts(&writes).await?;
        overlay::apply(
            &mut self.open.lock().unwrap_or_else(|p| p.into_inner()),
            staged,
        );
        if let Some(notifier) = &self.notifier {
            notifier.wake();
        }
        for change in changes {
            let (alert, kind, event) = match change {
                Change::Open(alert) => (alert, "firing", v1::AlertEventKind::Fired),
                Change::Resolve(alert) => (alert, "resolved", v1::AlertEventKind::Resolved),
                Change::Touch(alert) => (alert, "updated", v1::AlertEventKind::Updated),
            };
            tracing::info!(alert_id = %alert.id, rule = %alert.rule_name, device = %alert.device_name, kind, summary = %alert.summary, suppressed = alert.suppressed, "alert {kind}");
            metrics::counter!("netward_alerting_alerts_total", "event" => kind).increment(1);
            let _ = self.events.send(v1::WatchAlertsResponse {
                event: event as i32,
                alert: Some(alert),
                at: Some(ts(Utc::now())),
                trace_context: Some(netward_shared::trace_context::current()),
            });
        }
        metrics::gauge!("netward_alerting_alerts_open")
            .set(self.open.lock().map(|o| o.len()).unwrap_or(0) as f64);
        Ok(())
    }

    /// The channels a rule notifies (empty = every channel).
    fn channels_of(&self, rule_id: &str) -> Vec<String> {
        self.rules
            .read()
            .ok()
            .and_then(|rules| {
                rules
                    .iter()
                    .find(|r| r.id == rule_id)
                    .map(|r| r.channels.clone())
            })
            .unwrap_or_default()
    }

    /// Re-decides the suppression of every open alert at `now` (a silence
    /// began or ended, a window opened or closed): an alert whose silence
    /// ended is notified as firing then, if it never was.
    pub async fn refresh_suppression(&self, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut changes = Vec::new();
        let mut staged = Changes::new();
        {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            for (key, alert) in open.iter() {
                let device = self.device(&alert.device_id);
                let mut next = alert.clone();
                self.mute(&mut next, &device, now);
                if next.suppressed != alert.suppressed || next.silence_id != alert.silence_id {
                    next.updated_at = Some(ts(now));
                    staged.insert(key.clone(), Some(next.clone()));
                    changes.push(Change::Touch(next));
                }
            }
        }
        self.write(changes, staged).await
    }

    fn notification(&self, alert: &v1::Alert) -> Notification {
        let resolved = alert.state == v1::AlertState::Resolved as i32;
        let event = if resolved {
            NotificationEvent::Resolved
        } else {
            NotificationEvent::Firing
        };
        let parent = (!alert.parent_device_id.is_empty())
            .then(|| self.device(&alert.parent_device_id).name.to_string());
        let severity = v1::Severity::try_from(alert.severity)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("SEVERITY_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let kind = v1::RuleKind::try_from(alert.rule_kind)
            .map(|k| k.as_str_name().trim_start_matches("RULE_KIND_").to_string())
            .unwrap_or_default();
        let alert_id = Uuid::parse_str(&alert.id).unwrap_or_default();
        Notification {
            alert_id,
            event,
            payload: AlertPayload {
                alert_id,
                rule_name: alert.rule_name.clone(),
                rule_kind: kind,
                severity,
                state: event,
                device_id: Uuid::parse_str(&alert.device_id).unwrap_or_default(),
                device_name: alert.device_name.clone(),
                ip: alert.ip_address.clone(),
                site: alert.site_name.clone(),
                region: alert.region.clone(),
                parent_device_name: parent,
                summary: alert.summary.clone(),
                started_at: alert
                    .started_at
                    .as_ref()
                    .map(from_ts)
                    .unwrap_or_else(Utc::now),
                resolved_at: alert.resolved_at.as_ref().map(from_ts),
                measurement: Measurement {
                    loss_percent: alert.loss_percent,
                    rtt_avg_ms: alert.rtt_avg_us.map(|us| f64::from(us) / 1000.0),
                    cycle_id: (alert.cycle_id > 0).then_some(alert.cycle_id),
                },
                suppressed_reason: (!alert.suppression_reason.is_empty())
                    .then(|| alert.suppression_reason.clone()),
                labels: alert.labels.clone().into_iter().collect(),
            },
        }
    }

    /// Acknowledges an open alert (who and why); acked alerts still resolve.
    pub async fn ack(
        &self,
        id: &str,
        by: &str,
        comment: &str,
    ) -> Result<Option<v1::Alert>, sqlx::Error> {
        let _writer = self.writer.lock().await;
        let mut alert = {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            match open.values().find(|a| a.id == id) {
                Some(alert) => alert.clone(),
                None => return Ok(None),
            }
        };
        let now = Utc::now();
        alert.state = v1::AlertState::Acknowledged as i32;
        alert.acknowledged_at = Some(ts(now));
        alert.acknowledged_by = by.to_string();
        alert.ack_comment = comment.to_string();
        alert.updated_at = Some(ts(now));
        self.store.acknowledge_alert(&alert).await?;
        if let Ok(mut open) = self.open.lock()
            && let Some(entry) = open.get_mut(&key_of(&alert))
        {
            *entry = alert.clone();
        }
        let _ = self.events.send(v1::WatchAlertsResponse {
            event: v1::AlertEventKind::Acknowledged as i32,
            alert: Some(alert.clone()),
            at: Some(ts(now)),
            trace_context: Some(netward_shared::trace_context::current()),
        });
        Ok(Some(alert))
    }

    /// Alerts, newest first: open ones, or all when `include_resolved`.
    pub async fn list(
        &self,
        include_resolved: bool,
        limit: i64,
    ) -> Result<Vec<v1::Alert>, sqlx::Error> {
        self.store.list_alerts(include_resolved, limit).await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<v1::Alert>, sqlx::Error> {
        self.store.alert(id).await
    }
}

/// A unique violation on the rule name is the caller's mistake.
fn name_taken(error: sqlx::Error, name: &str) -> RuleError {
    match netward_shared::status::classify_sqlx(&error) {
        netward_shared::status::DbErrorKind::UniqueViolation(_) => {
            RuleError::NameTaken(name.to_string())
        }
        _ => RuleError::Database(error),
    }
}

/// The open-alert key of an alert.
fn key_of(alert: &v1::Alert) -> OpenKey {
    let subject = match (alert.if_index, alert.labels.get("metric")) {
        (Some(index), _) => index.to_string(),
        (None, Some(metric)) => format!(
            "{metric}/{}",
            alert.labels.get("instance").map_or("", String::as_str)
        ),
        (None, None) => String::new(),
    };
    (alert.rule_id.clone(), alert.device_id.clone(), subject)
}

/// What a measurement rule is evaluated on.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The device as a whole (latency, loss, reboots).
    Device,
    /// One interface, with its classification.
    Interface {
        if_index: u32,
        if_name: String,
        role: v1::InterfaceRole,
        isp_name: String,
        monitored: bool,
    },
    /// One instance of an SNMP value (`name` from the profile, or its OID).
    Value {
        name: String,
        oid: String,
        instance: String,
    },
}

impl Subject {
    /// An SNMP value's metric: its profile name, else its OID.
    fn metric(name: &str, oid: &str) -> String {
        if name.is_empty() { oid } else { name }.to_string()
    }

    /// The third part of an open alert's key.
    fn key(&self) -> String {
        match self {
            Subject::Device => String::new(),
            Subject::Interface { if_index, .. } => if_index.to_string(),
            Subject::Value {
                name,
                oid,
                instance,
            } => {
                format!("{}/{instance}", Self::metric(name, oid))
            }
        }
    }

    /// Whether a rule of the observation's kind is about this subject.
    fn applies(&self, rule: &v1::Rule) -> bool {
        let kind = v1::RuleKind::try_from(rule.kind).unwrap_or(v1::RuleKind::Unspecified);
        match self {
            Subject::Device => true,
            Subject::Interface {
                role, monitored, ..
            } => {
                let isp_only = matches!(
                    kind,
                    v1::RuleKind::IspLinkDown | v1::RuleKind::IspLinkFlapping
                );
                *monitored
                    && (!isp_only || *role == v1::InterfaceRole::IspUplink)
                    && (rule.interface_roles.is_empty()
                        || rule.interface_roles.contains(&(*role as i32)))
            }
            Subject::Value { name, oid, .. } => {
                if rule.snmp_metric.is_empty() {
                    !rule.snmp_oid.is_empty()
                        && (oid == &rule.snmp_oid
                            || oid.starts_with(&format!("{}.", rule.snmp_oid)))
                } else {
                    *name == rule.snmp_metric
                }
            }
        }
    }

    /// Copies the subject onto an alert.
    fn label(&self, alert: &mut v1::Alert) {
        match self {
            Subject::Device => {}
            Subject::Interface {
                if_index,
                if_name,
                isp_name,
                ..
            } => {
                alert.if_index = Some(*if_index);
                alert.if_name.clone_from(if_name);
                alert.isp_name.clone_from(isp_name);
            }
            Subject::Value {
                name,
                oid,
                instance,
            } => {
                alert
                    .labels
                    .insert("metric".into(), Self::metric(name, oid));
                alert.labels.insert("instance".into(), instance.clone());
            }
        }
    }

    /// How the subject reads in a summary.
    fn describe(&self) -> String {
        match self {
            Subject::Device => String::new(),
            Subject::Interface {
                if_name,
                if_index,
                isp_name,
                ..
            } => {
                let name = if if_name.is_empty() {
                    format!("ifIndex {if_index}")
                } else {
                    if_name.clone()
                };
                if isp_name.is_empty() {
                    name
                } else {
                    format!("{name} (ISP {isp_name})")
                }
            }
            Subject::Value {
                name,
                oid,
                instance,
            } => {
                let metric = Self::metric(name, oid);
                if instance.is_empty() || instance == "0" {
                    metric
                } else {
                    format!("{metric}[{instance}]")
                }
            }
        }
    }
}

/// What was observed, to be judged by the rule.
#[derive(Debug, Clone)]
pub enum Measure {
    /// The condition holds or not (e.g. interface admin up, oper down).
    Holds(bool, &'static str),
    /// A value compared with the rule's threshold in its direction, and its unit.
    Value(f64, &'static str),
    /// Instants of changes, counted within the rule's window (default 5 min)
    /// against its threshold (default 3).
    Changes(Vec<DateTime<Utc>>),
    /// When the device last rebooted; the alert lasts the rule's
    /// `for_duration` (default 30 min) from then.
    RebootedAt(Option<DateTime<Utc>>),
    /// A latency or loss window already judged under the device's rule
    /// (`None`: no rule applies, which clears).
    Window(Option<WindowVerdict>),
}

impl Measure {
    /// A window that can neither fire nor resolve yet.
    fn held(&self) -> bool {
        matches!(self, Measure::Window(Some(w)) if w.judgement == Judgement::Hold)
    }
}

/// A judged window: the value compared with the threshold and how it reads.
#[derive(Debug, Clone)]
pub struct WindowVerdict {
    pub judgement: Judgement,
    pub value: f64,
    pub detail: String,
}

/// The loss window of `rule` over a device's ring.
fn loss_verdict(ring: &ProbeWindow, rule: &v1::Rule) -> WindowVerdict {
    let settings = window::Settings::of(rule);
    let loss = ring.loss(settings.window_probes);
    WindowVerdict {
        judgement: loss.judge(rule.threshold, settings.min_packets),
        value: loss.percent(),
        detail: format!(
            "packet loss {:.1} % > {} % over the last {} probes ({}/{} packets lost)",
            loss.percent(),
            rule.threshold,
            loss.probes,
            loss.lost,
            loss.sent
        ),
    }
}

/// The latency window of `rule` over a device's ring.
fn latency_verdict(ring: &ProbeWindow, rule: &v1::Rule) -> WindowVerdict {
    let settings = window::Settings::of(rule);
    let Some(latency) = ring.latency(settings.window_probes, settings.statistic) else {
        return WindowVerdict {
            judgement: Judgement::Hold,
            value: 0.0,
            detail: String::new(),
        };
    };
    let statistic = match settings.statistic {
        v1::LatencyStatistic::P90 => "p90",
        _ => "median",
    };
    WindowVerdict {
        judgement: latency.judge(rule.threshold, settings.min_probes),
        value: latency.ms,
        detail: format!(
            "{statistic} RTT {:.1} ms > {} ms over the last {} probes",
            latency.ms, rule.threshold, latency.probes
        ),
    }
}

/// One observation for the rules of `kind`.
#[derive(Debug, Clone)]
pub struct Observation {
    pub kind: v1::RuleKind,
    pub device_id: String,
    pub subject: Subject,
    pub measure: Measure,
    pub at: DateTime<Utc>,
    pub cycle_id: u64,
    /// The probe it came from (latency, loss), for the alert's measurement.
    pub probe: Option<ProbeRow>,
}

fn duration_or(d: Option<&prost_types::Duration>, default: TimeDelta) -> TimeDelta {
    d.filter(|d| d.seconds > 0 || d.nanos > 0)
        .map(|d| TimeDelta::seconds(d.seconds) + TimeDelta::nanoseconds(i64::from(d.nanos)))
        .unwrap_or(default)
}

impl Observation {
    /// `Some((value, detail))` when the observation breaches `rule`.
    fn verdict(&self, rule: &v1::Rule) -> Option<(Option<f64>, String)> {
        let what = self.subject.describe();
        let what = if what.is_empty() {
            String::new()
        } else {
            format!("{what} ")
        };
        match &self.measure {
            Measure::Holds(holds, detail) => holds.then(|| (None, format!("{what}{detail}"))),
            Measure::Value(value, unit) => {
                let below = rule.direction == v1::ThresholdDirection::Below as i32;
                let breach = if below {
                    *value < rule.threshold
                } else {
                    *value > rule.threshold
                };
                let sign = if below { "<" } else { ">" };
                breach.then(|| {
                    (
                        Some(*value),
                        format!("{what}{value:.1} {unit} {sign} {} {unit}", rule.threshold),
                    )
                })
            }
            Measure::Changes(changes) => {
                let window = duration_or(rule.window.as_ref(), TimeDelta::minutes(5));
                let threshold = if rule.threshold > 0.0 {
                    rule.threshold
                } else {
                    3.0
                };
                let count = changes.iter().filter(|at| **at > self.at - window).count();
                (count as f64 >= threshold).then(|| {
                    (
                        Some(count as f64),
                        format!(
                            "{what}changed state {count} times in {} min",
                            window.num_minutes()
                        ),
                    )
                })
            }
            Measure::Window(verdict) => verdict
                .as_ref()
                .filter(|v| v.judgement == Judgement::Breach)
                .map(|v| (Some(v.value), v.detail.clone())),
            Measure::RebootedAt(at) => {
                let lasts = duration_or(rule.for_duration.as_ref(), TimeDelta::minutes(30));
                let at = (*at)?;
                (self.at < at + lasts).then(|| {
                    (
                        None,
                        format!(
                            "rebooted at {} (sysUpTime went back)",
                            at.format("%Y-%m-%d %H:%M:%S UTC")
                        ),
                    )
                })
            }
        }
    }
}

fn from_ts(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    crate::from_timestamp(ts).unwrap_or_else(Utc::now)
}

//! Rules and alerts. Rules are data (stored, seeded with the seed system's
//! defaults); an alert opens when the state machine fires one (device down,
//! flapping) or a measurement rule's threshold holds for N probes (latency,
//! loss), and resolves when the condition ends — one open alert per
//! (rule, device, interface), FIRING → ACKNOWLEDGED → RESOLVED.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use prost::Message as _;
use sqlx::PgPool;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::notify::{self, AlertPayload, Measurement, Notification, NotificationEvent, Notifier};
use crate::state::{AlertKind, Event, EventKind};
use crate::store::ProbeRow;
use crate::timestamp as ts;

/// The seed system's rules, created when no built-in rule exists.
fn default_rules() -> Vec<v1::Rule> {
    let rule = |name: &str,
                kind: v1::RuleKind,
                severity: v1::Severity,
                threshold: f64,
                consecutive: u32,
                description: &str| v1::Rule {
        id: Uuid::new_v4().to_string(),
        name: name.into(),
        description: description.into(),
        kind: kind as i32,
        scope: Some(v1::Scope {
            kind: v1::ScopeKind::Global as i32,
            value: String::new(),
        }),
        severity: severity as i32,
        threshold,
        consecutive,
        enabled: Some(true),
        builtin: true,
        ..Default::default()
    };
    vec![
        rule(
            "device-down",
            v1::RuleKind::DeviceDown,
            v1::Severity::Critical,
            0.0,
            1,
            "the device answers no probe",
        ),
        rule(
            "device-flapping",
            v1::RuleKind::DeviceFlapping,
            v1::Severity::High,
            0.0,
            0,
            "the device keeps going up and down",
        ),
        rule(
            "high-latency",
            v1::RuleKind::HighLatency,
            v1::Severity::Medium,
            200.0,
            3,
            "average RTT above 200 ms for 3 probes",
        ),
        rule(
            "packet-loss",
            v1::RuleKind::PacketLoss,
            v1::Severity::Medium,
            10.0,
            3,
            "packet loss above 10 % for 3 probes",
        ),
    ]
}

pub struct AlertEngine {
    pool: PgPool,
    /// Delivers what `write` puts in the outbox (in the alert's transaction).
    notifier: Option<Arc<Notifier>>,
    copy: SharedCopy,
    rules: RwLock<Vec<v1::Rule>>,
    /// Open alerts by (rule id, device id).
    open: Mutex<HashMap<(String, String), v1::Alert>>,
    /// Consecutive probes over a measurement rule's threshold.
    streaks: Mutex<HashMap<(String, String), u32>>,
    pub events: broadcast::Sender<v1::WatchAlertsResponse>,
}

/// A change to write: a new alert, or an update of an open one.
enum Change {
    Open(v1::Alert),
    Update(v1::Alert),
}

impl AlertEngine {
    /// Seeds the default rules on a fresh database, loads rules and open alerts.
    pub async fn start(
        pool: PgPool,
        copy: SharedCopy,
        notifier: Option<Arc<Notifier>>,
    ) -> Result<Self, sqlx::Error> {
        let builtin: i64 = sqlx::query_scalar("SELECT count(*) FROM rules WHERE builtin")
            .fetch_one(&pool)
            .await?;
        if builtin == 0 {
            for rule in default_rules() {
                sqlx::query("INSERT INTO rules (id, name, kind, enabled, builtin, body) VALUES ($1, $2, $3, true, true, $4) ON CONFLICT (name) DO NOTHING")
                    .bind(Uuid::parse_str(&rule.id).unwrap_or_default())
                    .bind(&rule.name)
                    .bind(rule.kind as i16)
                    .bind(rule.encode_to_vec())
                    .execute(&pool)
                    .await?;
            }
        }
        let rules: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM rules ORDER BY name")
            .fetch_all(&pool)
            .await?;
        let rules = rules
            .iter()
            .filter_map(|b| v1::Rule::decode(b.as_slice()).ok())
            .collect();
        let open: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM alerts WHERE state <> 3")
            .fetch_all(&pool)
            .await?;
        let open = open
            .iter()
            .filter_map(|b| v1::Alert::decode(b.as_slice()).ok())
            .map(|a| ((a.rule_id.clone(), a.device_id.clone()), a))
            .collect();
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            pool,
            notifier,
            copy,
            rules: RwLock::new(rules),
            open: Mutex::new(open),
            streaks: Mutex::new(HashMap::new()),
            events,
        })
    }

    pub fn rules(&self) -> Vec<v1::Rule> {
        self.rules.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The enabled rule of `kind` that applies to the device, most specific
    /// scope first: device, tag, site, device type, global.
    fn rule_for(&self, kind: v1::RuleKind, device: &v1::Device) -> Option<v1::Rule> {
        let rules = self.rules.read().ok()?;
        let specificity = |scope: &v1::Scope| -> Option<u8> {
            let value = scope.value.as_str();
            match v1::ScopeKind::try_from(scope.kind).ok()? {
                v1::ScopeKind::Device => (value == device.id || value == device.name).then_some(5),
                v1::ScopeKind::Tag => {
                    let (k, v) = value.split_once('=')?;
                    (device.tags.get(k).map(String::as_str) == Some(v)).then_some(4)
                }
                v1::ScopeKind::Site => {
                    (value == device.site_id || value == device.site_name).then_some(3)
                }
                v1::ScopeKind::DeviceType => {
                    let name = v1::DeviceType::try_from(device.device_type)
                        .ok()?
                        .as_str_name();
                    (value == name).then_some(2)
                }
                v1::ScopeKind::Global | v1::ScopeKind::Unspecified => Some(1),
            }
        };
        rules
            .iter()
            .filter(|r| r.kind == kind as i32 && r.enabled.unwrap_or(true))
            .filter_map(|r| Some((specificity(r.scope.as_ref()?)?, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r.clone())
    }

    fn device(&self, id: &str) -> v1::Device {
        self.copy
            .read()
            .ok()
            .and_then(|c| c.devices.get(id).cloned())
            .unwrap_or_else(|| v1::Device {
                id: id.to_string(),
                name: id.to_string(),
                ..Default::default()
            })
    }

    fn new_alert(
        &self,
        rule: &v1::Rule,
        device: &v1::Device,
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
            device_id: device.id.clone(),
            device_name: device.name.clone(),
            ip_address: device.ip_address.clone(),
            device_type: device.device_type,
            site_id: device.site_id.clone(),
            site_name: device.site_name.clone(),
            region: device.region.clone(),
            parent_device_id: device.parent_device_id.clone(),
            severity: rule.severity,
            state: v1::AlertState::Firing as i32,
            started_at: Some(ts(at)),
            summary,
            loss_percent: probe.map(|p| p.result.loss_percent),
            rtt_avg_us: probe.and_then(|p| p.result.rtt_avg_us),
            cycle_id: probe.map(|p| p.result.cycle_id).unwrap_or_default(),
            threshold: rule.threshold,
            maintenance: muted,
            updated_at: Some(ts(at)),
            ..Default::default()
        }
    }

    /// Opens or resolves alerts for the state machine's alert events.
    pub async fn on_events(
        &self,
        events: &[(Uuid, Event)],
        probes: &[ProbeRow],
    ) -> Result<(), sqlx::Error> {
        let mut changes = Vec::new();
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
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
                let Some(rule) = self.rule_for(rule_kind, &device) else {
                    continue;
                };
                let at = DateTime::<Utc>::from(event.at);
                let key = (rule.id.clone(), device.id.clone());
                let probe = probes.iter().rev().find(|p| p.device_id == *device_id);
                if fire && !open.contains_key(&key) {
                    let alert = self.new_alert(
                        &rule,
                        &device,
                        format!("{}: {}", device.name, event.reason),
                        probe,
                        at,
                        event.muted,
                    );
                    open.insert(key, alert.clone());
                    changes.push(Change::Open(alert));
                } else if !fire && let Some(mut alert) = open.remove(&key) {
                    alert.state = v1::AlertState::Resolved as i32;
                    alert.resolved_at = Some(ts(at));
                    alert.updated_at = Some(ts(at));
                    changes.push(Change::Update(alert));
                }
            }
        }
        self.write(changes).await
    }

    /// Latency and loss rules: a threshold held for `consecutive` probes
    /// opens an alert; one probe back under it resolves. A probe that got no
    /// reply at all is the down rule's business, not the loss rule's.
    pub async fn on_probes(&self, probes: &[ProbeRow]) -> Result<(), sqlx::Error> {
        let mut changes = Vec::new();
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
            for probe in probes {
                let result = &probe.result;
                if result.received == 0 {
                    continue;
                }
                let device = self.device(&probe.device_id.to_string());
                for (kind, value) in [
                    (
                        v1::RuleKind::HighLatency,
                        result.rtt_avg_us.map(|us| f64::from(us) / 1000.0),
                    ),
                    (v1::RuleKind::PacketLoss, Some(result.loss_percent)),
                ] {
                    let (Some(rule), Some(value)) = (self.rule_for(kind, &device), value) else {
                        continue;
                    };
                    let key = (rule.id.clone(), device.id.clone());
                    let streak = streaks.entry(key.clone()).or_default();
                    if value > rule.threshold {
                        *streak += 1;
                        if *streak >= rule.consecutive.max(1) && !open.contains_key(&key) {
                            let unit = if kind == v1::RuleKind::HighLatency {
                                "ms"
                            } else {
                                "%"
                            };
                            let summary = format!(
                                "{}: {value:.1} {unit} > {} {unit} for {} probes",
                                device.name, rule.threshold, streak
                            );
                            let mut alert = self.new_alert(
                                &rule,
                                &device,
                                summary,
                                Some(probe),
                                probe.probed_at,
                                false,
                            );
                            alert.value = Some(value);
                            open.insert(key, alert.clone());
                            changes.push(Change::Open(alert));
                        }
                    } else {
                        *streak = 0;
                        if let Some(mut alert) = open.remove(&key) {
                            alert.state = v1::AlertState::Resolved as i32;
                            alert.resolved_at = Some(ts(probe.probed_at));
                            alert.updated_at = Some(ts(probe.probed_at));
                            changes.push(Change::Update(alert));
                        }
                    }
                }
            }
        }
        self.write(changes).await
    }

    async fn write(&self, changes: Vec<Change>) -> Result<(), sqlx::Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for change in &changes {
            match change {
                Change::Open(alert) => {
                    sqlx::query(
                        "INSERT INTO alerts (id, rule_id, device_id, interface, state, severity, started_at, body) \
                         VALUES ($1, $2, $3, '', $4, $5, $6, $7)",
                    )
                    .bind(Uuid::parse_str(&alert.id).unwrap_or_default())
                    .bind(Uuid::parse_str(&alert.rule_id).unwrap_or_default())
                    .bind(Uuid::parse_str(&alert.device_id).unwrap_or_default())
                    .bind(alert.state as i16)
                    .bind(alert.severity as i16)
                    .bind(alert.started_at.as_ref().map(from_ts).unwrap_or_else(Utc::now))
                    .bind(alert.encode_to_vec())
                    .execute(&mut *tx)
                    .await?;
                }
                Change::Update(alert) => {
                    sqlx::query(
                        "UPDATE alerts SET state = $2, resolved_at = $3, body = $4 WHERE id = $1",
                    )
                    .bind(Uuid::parse_str(&alert.id).unwrap_or_default())
                    .bind(alert.state as i16)
                    .bind(alert.resolved_at.as_ref().map(from_ts))
                    .bind(alert.encode_to_vec())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            // The notification commits with the alert change, or neither
            // does: a crash in between loses nothing. Maintenance mutes it.
            let alert = match change {
                Change::Open(alert) | Change::Update(alert) => alert,
            };
            if let Some(notifier) = &self.notifier
                && !alert.maintenance
            {
                notify::enqueue(&mut tx, notifier.config(), &self.notification(alert)).await?;
            }
        }
        tx.commit().await?;
        if let Some(notifier) = &self.notifier {
            notifier.wake();
        }
        for change in changes {
            let (alert, kind) = match change {
                Change::Open(alert) => (alert, "firing"),
                Change::Update(alert) => (alert, "resolved"),
            };
            tracing::info!(alert_id = %alert.id, rule = %alert.rule_name, device = %alert.device_name, kind, summary = %alert.summary, "alert {kind}");
            metrics::counter!("alerting_alerts_total", "event" => kind).increment(1);
            let event = if kind == "firing" {
                v1::AlertEventKind::Fired
            } else {
                v1::AlertEventKind::Resolved
            };
            let _ = self.events.send(v1::WatchAlertsResponse {
                event: event as i32,
                alert: Some(alert),
                at: Some(ts(Utc::now())),
                trace_context: Some(netward_shared::trace_context::current()),
            });
        }
        metrics::gauge!("alerting_alerts_open")
            .set(self.open.lock().map(|o| o.len()).unwrap_or(0) as f64);
        Ok(())
    }

    fn notification(&self, alert: &v1::Alert) -> Notification {
        let resolved = alert.state == v1::AlertState::Resolved as i32;
        let event = if resolved {
            NotificationEvent::Resolved
        } else {
            NotificationEvent::Firing
        };
        let parent =
            (!alert.parent_device_id.is_empty()).then(|| self.device(&alert.parent_device_id).name);
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
        sqlx::query("UPDATE alerts SET state = $2, body = $3 WHERE id = $1 AND state <> 3")
            .bind(Uuid::parse_str(id).unwrap_or_default())
            .bind(alert.state as i16)
            .bind(alert.encode_to_vec())
            .execute(&self.pool)
            .await?;
        if let Ok(mut open) = self.open.lock()
            && let Some(entry) = open.get_mut(&(alert.rule_id.clone(), alert.device_id.clone()))
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
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM alerts WHERE ($1 OR state <> 3) ORDER BY started_at DESC, id LIMIT $2",
        )
        .bind(include_resolved)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(bodies
            .iter()
            .filter_map(|b| v1::Alert::decode(b.as_slice()).ok())
            .collect())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<v1::Alert>, sqlx::Error> {
        let body: Option<Vec<u8>> = sqlx::query_scalar("SELECT body FROM alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.and_then(|b| v1::Alert::decode(b.as_slice()).ok()))
    }
}

fn from_ts(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32).unwrap_or_else(Utc::now)
}

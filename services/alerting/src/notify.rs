//! Notifications through a transactional outbox.
//!
//! An alert change and the notifications announcing it commit together:
//! the alert store writes one outbox row per configured channel
//! ([`outbox_entry`]) inside the change's transaction, so a crash loses
//! neither, and never announces a change that rolled back. A [`Notifier`] then delivers due
//! rows (a generic JSON webhook, or the Alertmanager v2 API), retrying with
//! exponential backoff and recording each outcome on the row.
//!
//! Delivery is at least once: a row is marked delivered after the 2xx, so a
//! crash in between sends it again after restart. Receivers can drop such a
//! repeat by the `X-Netward-Notification-Id` header (the row id). Rows are
//! claimed under a lease (their `next_attempt_at` moved ahead), so two
//! instances never send the same row at the same time, and rows of one
//! (alert, channel) go out in order: a resolve never overtakes its firing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt as _;
use netward_shared::proto::v1;
use netward_shared::secret::Secret;
use rand::Rng as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{
    Attempt, ClaimedNotification, DeliveryState, NewNotification, NotificationStore,
};

/// Rows claimed per round; a full round starts the next one at once.
const BATCH: i64 = 100;
/// Channel groups sent at the same time within a round.
const CONCURRENCY: usize = 16;
/// How often the delivery loop looks for due rows without being woken.
const TICK: Duration = Duration::from_millis(500);
/// Alertmanager resolves an alert whose `endsAt` has passed. The outbox
/// sends a firing alert once, not on a resend loop as Prometheus does, so
/// the firing end lies far ahead and the resolve notification ends it.
const FIRING_HORIZON: TimeDelta = TimeDelta::days(365);
/// Longest response body quoted in `last_error`.
const ERROR_BODY_CHARS: usize = 256;

/// The `[alerting.notify]` section: channels and the retry policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// Generic JSON webhooks (`[[alerting.notify.webhooks]]`).
    pub webhooks: Vec<WebhookChannel>,
    /// Alertmanager instances (`[[alerting.notify.alertmanager]]`).
    pub alertmanager: Vec<AlertmanagerChannel>,
    /// Attempts per notification before it is marked failed.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Deadline of one HTTP attempt (connect included).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            alertmanager: Vec::new(),
            max_attempts: 12,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            timeout: Duration::from_secs(5),
        }
    }
}

impl NotifyConfig {
    /// Every configured channel name (rules may name them).
    pub fn channel_names(&self) -> Vec<String> {
        self.channels().map(|(name, _)| name.to_string()).collect()
    }

    /// Every channel name with its kind, webhooks first.
    fn channels(&self) -> impl Iterator<Item = (&str, v1::ChannelKind)> {
        let webhooks = self
            .webhooks
            .iter()
            .map(|w| (w.name.as_str(), v1::ChannelKind::Webhook));
        let alertmanagers = self
            .alertmanager
            .iter()
            .map(|a| (a.name.as_str(), v1::ChannelKind::Alertmanager));
        webhooks.chain(alertmanagers)
    }
}

/// A generic JSON webhook: the [`AlertPayload`] is POSTed to `url`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookChannel {
    /// Channel name, unique across all channels (rules name it).
    pub name: String,
    /// `http://` or `https://` URL (TLS verified against the system's roots).
    pub url: String,
    /// Extra request headers, e.g. `Authorization`; values are secrets.
    #[serde(default)]
    pub headers: HashMap<String, Secret<String>>,
}

/// A Prometheus Alertmanager, fed through `POST {url}/api/v2/alerts`.
#[derive(Debug, Clone, Deserialize)]
pub struct AlertmanagerChannel {
    /// Channel name, unique across all channels.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidNotifyConfig {
    #[error("channel name {0:?} is used twice")]
    DuplicateChannel(String),
    #[error("channel {channel:?}: url: {reason}")]
    Url { channel: String, reason: String },
    #[error("channel {channel:?}: header {header:?} is not a valid HTTP header")]
    Header { channel: String, header: String },
    #[error("http client: {0}")]
    Client(String),
}

/// What happened to the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationEvent {
    Firing,
    Resolved,
}

impl NotificationEvent {
    /// The outbox's `event` text (and the payload's `state`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// One alert event to announce on every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub alert_id: Uuid,
    pub event: NotificationEvent,
    /// The body; its `state` is written from `event`.
    pub payload: AlertPayload,
}

/// The generic JSON webhook body, also the source of the Alertmanager
/// alert. Absent values are `null`, so receivers see one fixed shape.
///
/// Alertmanager tells alerts apart by their labels, so a resolve must carry
/// the labels of its firing; the notifier takes them from the alert's
/// firing row when it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub alert_id: Uuid,
    pub rule_name: String,
    /// Rule kind without the enum prefix, e.g. `DEVICE_DOWN`.
    pub rule_kind: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: NotificationEvent,
    pub device_id: Uuid,
    pub device_name: String,
    pub ip: String,
    pub site: String,
    pub region: String,
    pub parent_device_name: Option<String>,
    pub summary: String,
    /// RFC 3339.
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub measurement: Measurement,
    /// Why the alert's own notifications are held back, e.g. a silence or
    /// the parent being down; `null` when nothing is suppressed.
    pub suppressed_reason: Option<String>,
    /// The rule's extra labels (e.g. `team=noc`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What was measured when the event happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub loss_percent: Option<f64>,
    /// `null` when no reply came back.
    pub rtt_avg_ms: Option<f64>,
    pub cycle_id: Option<u64>,
}

/// The outbox rows announcing `notification` on the channels a rule names
/// (`Rule.channels`; empty means every channel; names not configured are
/// skipped); `None` when no channel is left.
pub fn outbox_entry(
    config: &NotifyConfig,
    notification: &Notification,
    only: &[String],
) -> Option<NewNotification> {
    let channels: Vec<(String, v1::ChannelKind)> = config
        .channels()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| o == name))
        .map(|(name, kind)| (name.to_string(), kind))
        .collect();
    if channels.is_empty() {
        return None;
    }
    let mut payload = notification.payload.clone();
    payload.state = notification.event;
    Some(NewNotification {
        alert_id: notification.alert_id,
        event: notification.event,
        payload,
        channels,
    })
}

/// What one [`Notifier::deliver_due`] round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryRound {
    /// Rows claimed for this round.
    pub claimed: usize,
    /// Answered 2xx.
    pub delivered: usize,
    /// Failed, another attempt scheduled.
    pub retried: usize,
    /// Failed for the last time (state failed).
    pub failed: usize,
}

/// Where a channel's requests go.
#[derive(Debug)]
enum Target {
    Webhook {
        url: reqwest::Url,
        headers: HeaderMap,
    },
    Alertmanager {
        alerts_url: reqwest::Url,
    },
}

/// Delivers the outbox. Cheap to share behind an `Arc`; any number of
/// instances may run on one database.
pub struct Notifier {
    store: Arc<dyn NotificationStore>,
    config: NotifyConfig,
    client: reqwest::Client,
    targets: HashMap<String, Target>,
    /// Claimed by this instance only: rows of channels it does not know
    /// stay pending (and counted) until a configuration names them again.
    names: Vec<String>,
    wake: Notify,
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Retried,
    Failed,
    /// Not attempted: an earlier row of the same (alert, channel) failed.
    Postponed,
}

impl Notifier {
    /// A notifier over the outbox in `store`.
    pub fn new(
        store: Arc<dyn NotificationStore>,
        config: NotifyConfig,
    ) -> Result<Self, InvalidNotifyConfig> {
        let mut targets = HashMap::new();
        for webhook in &config.webhooks {
            let url = parse_url(&webhook.name, &webhook.url)?;
            let mut headers = HeaderMap::new();
            for (name, value) in &webhook.headers {
                let invalid = || InvalidNotifyConfig::Header {
                    channel: webhook.name.clone(),
                    header: name.clone(),
                };
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
                let mut value = HeaderValue::from_str(value.expose()).map_err(|_| invalid())?;
                // Keeps tokens out of reqwest's own debug output.
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            insert_target(
                &mut targets,
                &webhook.name,
                Target::Webhook { url, headers },
            )?;
        }
        for alertmanager in &config.alertmanager {
            let base = parse_url(&alertmanager.name, &alertmanager.url)?;
            let alerts_url = base
                .join(&format!(
                    "{}/api/v2/alerts",
                    base.path().trim_end_matches('/')
                ))
                .map_err(|e| InvalidNotifyConfig::Url {
                    channel: alertmanager.name.clone(),
                    reason: e.to_string(),
                })?;
            insert_target(
                &mut targets,
                &alertmanager.name,
                Target::Alertmanager { alerts_url },
            )?;
        }
        // reqwest's rustls takes the process's provider (ring); tests and
        // embedders that never ran `main` get it here.
        netward_shared::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect of a POST turns into a GET elsewhere: a failure,
            // not a delivery.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InvalidNotifyConfig::Client(e.to_string()))?;
        let names = config
            .channels()
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(Self {
            store,
            config,
            client,
            targets,
            names,
            wake: Notify::new(),
        })
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Starts a round now rather than at the next tick (after a commit that
    /// enqueued something). A wake with no loop waiting is kept for the next.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers until `stop`: a round every 500 ms or on [`Notifier::wake`],
    /// and straight away again after a full one. A round in flight finishes
    /// first, so its rows are recorded rather than left to their lease.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
            }
            loop {
                match self.deliver_due(Utc::now()).await {
                    Ok(round) if round.claimed as i64 >= BATCH && !stop.is_cancelled() => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "notification round failed; retrying at the next tick");
                        break;
                    }
                }
            }
        }
    }

    /// One round at `now`: claims up to 100 due rows, sends them (rows of
    /// one alert and channel in order, others concurrently) and records
    /// each outcome. Time comes from `now` (plus the time the round takes),
    /// so tests can drive backoff with explicit instants.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Result<DeliveryRound, sqlx::Error> {
        let started = Instant::now();
        let lease_until = now + to_delta(self.lease());
        let claimed = self.claim(now, lease_until).await?;
        let mut round = DeliveryRound {
            claimed: claimed.len(),
            ..DeliveryRound::default()
        };

        // Rows come back in id order; grouping keeps that order per
        // (alert, channel).
        let mut groups: Vec<Vec<ClaimedNotification>> = Vec::new();
        let mut index: HashMap<(Uuid, String), usize> = HashMap::new();
        for row in claimed {
            let key = (row.alert_id, row.channel.clone());
            let slot = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[slot].push(row);
        }
        let clock = move || now + to_delta(started.elapsed());
        let mut results = futures::stream::iter(groups)
            .map(|group| self.deliver_group(group, lease_until, clock))
            .buffer_unordered(CONCURRENCY);
        let mut error = None;
        while let Some(outcomes) = results.next().await {
            match outcomes {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        match outcome {
                            Outcome::Delivered => round.delivered += 1,
                            Outcome::Retried => round.retried += 1,
                            Outcome::Failed => round.failed += 1,
                            Outcome::Postponed => {}
                        }
                    }
                }
                // The other groups still finish and record what they sent.
                Err(e) => error = Some(e),
            }
        }
        drop(results);
        if let Some(error) = error {
            return Err(error);
        }
        self.update_pending_gauge().await?;
        Ok(round)
    }

    /// Lists outbox rows, newest first, for `ListNotifications`.
    pub async fn list(&self, filter: &ListFilter) -> Result<OutboxPage, sqlx::Error> {
        let limit = match filter.limit {
            0 => 100,
            n => n.min(1000),
        };
        // One more than asked tells whether another page follows.
        let mut rows = self
            .store
            .list_notifications(filter, i64::from(limit) + 1)
            .await?;
        let next_before_id = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|row| row.id)
        } else {
            None
        };
        Ok(OutboxPage {
            rows,
            next_before_id,
        })
    }

    /// Long enough for a whole round at the configured timeout; a crashed
    /// sender's rows come back after it.
    fn lease(&self) -> Duration {
        let waves = (BATCH as u32).div_ceil(CONCURRENCY as u32) + 2;
        self.config.timeout * waves + Duration::from_secs(10)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedNotification>, sqlx::Error> {
        if self.names.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .claim_due(now, &self.names, BATCH, lease_until)
            .await
    }

    /// Sends one (alert, channel)'s rows in order; after a failure the rest
    /// wait for it.
    async fn deliver_group(
        &self,
        group: Vec<ClaimedNotification>,
        lease_until: DateTime<Utc>,
        clock: impl Fn() -> DateTime<Utc>,
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut blocked = false;
        for row in group {
            if blocked {
                // Due again at once; the claim skips it while the failed
                // row ahead of it is pending.
                self.store.postpone(row.id, clock(), lease_until).await?;
                outcomes.push(Outcome::Postponed);
                continue;
            }
            let sent = self.send(&row).await;
            let outcome = self.record(&row, sent, lease_until, clock()).await?;
            blocked = !matches!(outcome, Outcome::Delivered | Outcome::Failed);
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Records an attempt. Only while the row still holds this round's
    /// lease: a round that outlived it leaves the row to whoever took it.
    async fn record(
        &self,
        row: &ClaimedNotification,
        sent: Result<(), String>,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Outcome, sqlx::Error> {
        let attempts = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        let (outcome, label, state, next, error) = match sent {
            Ok(()) => (
                Outcome::Delivered,
                "delivered",
                DeliveryState::Delivered,
                at,
                String::new(),
            ),
            Err(error) if attempts >= self.config.max_attempts.max(1) => {
                tracing::warn!(
                    id = row.id,
                    alert_id = %row.alert_id,
                    channel = %row.channel,
                    attempts,
                    %error,
                    "notification failed for the last time; giving up"
                );
                (Outcome::Failed, "failed", DeliveryState::Failed, at, error)
            }
            Err(error) => {
                let delay = backoff(&self.config, attempts);
                tracing::debug!(
                    id = row.id,
                    alert_id = %row.alert_id,
                    channel = %row.channel,
                    attempts,
                    %error,
                    retry_in = ?delay,
                    "notification attempt failed; retrying"
                );
                (
                    Outcome::Retried,
                    "retried",
                    DeliveryState::Pending,
                    at + to_delta(delay),
                    error,
                )
            }
        };
        let recorded = self
            .store
            .record_attempt(&Attempt {
                id: row.id,
                state,
                next_attempt_at: next,
                last_error: error,
                at,
                lease_until,
            })
            .await?;
        if !recorded {
            // This round outlived its lease and another sender took the row
            // (it may send it again: at least once); its record stands.
            tracing::debug!(id = row.id, channel = %row.channel, "lease lost before recording");
        }
        metrics::counter!(
            "netward_alerting_notifications_total",
            "channel" => row.channel.clone(),
            "outcome" => label
        )
        .increment(1);
        Ok(outcome)
    }

    /// One HTTP attempt; `Err` carries what goes into `last_error`.
    async fn send(&self, row: &ClaimedNotification) -> Result<(), String> {
        let target = self
            .targets
            .get(&row.channel)
            .ok_or_else(|| "channel is not configured".to_string())?;
        let request = match target {
            Target::Webhook { url, headers } => self
                .client
                .post(url.clone())
                .headers(headers.clone())
                .json(&row.payload),
            Target::Alertmanager { alerts_url } => {
                let payload: AlertPayload = serde_json::from_value(row.payload.clone())
                    .map_err(|e| format!("stored payload is not an alert payload: {e}"))?;
                let labels = self.identity_labels(row, &payload).await?;
                let event = NotificationEvent::parse(&row.event).unwrap_or(payload.state);
                let body = alertmanager_body(&payload, event, labels, Utc::now());
                self.client.post(alerts_url.clone()).json(&body)
            }
        };
        let response = request
            .header("x-netward-notification-id", row.id.to_string())
            .send()
            .await
            .map_err(|e| describe(e, self.config.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(ERROR_BODY_CHARS).collect();
        Err(if body.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {body}", status.as_u16())
        })
    }

    /// The Alertmanager labels of an alert, from its firing payload when
    /// there is one: a resolve must match the firing's labels exactly, even
    /// if the device was renamed in between.
    async fn identity_labels(
        &self,
        row: &ClaimedNotification,
        payload: &AlertPayload,
    ) -> Result<BTreeMap<String, String>, String> {
        if row.event == NotificationEvent::Firing.as_str() {
            return Ok(alertmanager_labels(payload));
        }
        let firing = self
            .store
            .firing_payload(row.alert_id)
            .await
            .map_err(|e| format!("reading the firing payload: {e}"))?;
        Ok(alertmanager_labels(firing.as_ref().unwrap_or(payload)))
    }

    async fn update_pending_gauge(&self) -> Result<(), sqlx::Error> {
        let pending = self.store.pending_notifications().await?;
        metrics::gauge!("netward_alerting_outbox_pending").set(pending as f64);
        Ok(())
    }
}

fn parse_url(channel: &str, url: &str) -> Result<reqwest::Url, InvalidNotifyConfig> {
    let invalid = |reason: String| InvalidNotifyConfig::Url {
        channel: channel.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        // Said at start-up rather than as a failure per attempt.
        other => Err(invalid(format!("unsupported scheme {other:?}"))),
    }
}

fn insert_target(
    targets: &mut HashMap<String, Target>,
    name: &str,
    target: Target,
) -> Result<(), InvalidNotifyConfig> {
    if targets.insert(name.to_string(), target).is_some() {
        return Err(InvalidNotifyConfig::DuplicateChannel(name.to_string()));
    }
    Ok(())
}

/// The delay after the `attempts`-th failed attempt:
/// `initial * 2^(attempts-1)`, capped at `max_backoff`, then drawn from its
/// upper half so that rows failing together (an endpoint outage) do not
/// retry together.
fn backoff(config: &NotifyConfig, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let base = config
        .initial_backoff
        .saturating_mul(1u32 << exponent)
        .min(config.max_backoff);
    let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    let half = nanos / 2;
    Duration::from_nanos(half + rand::rng().random_range(0..=nanos - half))
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// A transport error as one line, without the URL (it may hold a token).
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!(
            "timed out after {}",
            humantime_serde::re::humantime::format_duration(timeout)
        );
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Labels identify an alert in Alertmanager: only values fixed for the
/// alert's life, and names in Prometheus' charset. Ours win over the
/// rule's extra labels of the same name.
fn alertmanager_labels(payload: &AlertPayload) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = payload
        .labels
        .iter()
        .map(|(name, value)| (label_name(name), value.clone()))
        .collect();
    let ours = [
        ("alertname", payload.rule_kind.clone()),
        ("alert_id", payload.alert_id.to_string()),
        ("rule", payload.rule_name.clone()),
        ("severity", payload.severity.clone()),
        ("device", payload.device_name.clone()),
        ("device_id", payload.device_id.to_string()),
        ("instance", payload.ip.clone()),
        ("site", payload.site.clone()),
        ("region", payload.region.clone()),
    ];
    for (name, value) in ours {
        labels.insert(name.to_string(), value);
    }
    // An empty value means "no such label" to Alertmanager.
    labels.retain(|_, value| !value.is_empty());
    labels
}

fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `POST /api/v2/alerts` body: an array of one alert. Everything that may
/// change during the alert's life (measurement, parent, suppression) is an
/// annotation.
fn alertmanager_body(
    payload: &AlertPayload,
    event: NotificationEvent,
    labels: BTreeMap<String, String>,
    sent_at: DateTime<Utc>,
) -> serde_json::Value {
    let measurement = &payload.measurement;
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", payload.summary.clone());
    let mut description = format!(
        "{} ({}) at site {}",
        payload.device_name, payload.ip, payload.site
    );
    if let Some(parent) = &payload.parent_device_name {
        description.push_str(&format!(", behind {parent}"));
    }
    if let Some(loss) = measurement.loss_percent {
        description.push_str(&format!("; loss {loss}%"));
        annotations.insert("loss_percent", loss.to_string());
    }
    if let Some(rtt) = measurement.rtt_avg_ms {
        description.push_str(&format!("; rtt avg {rtt} ms"));
        annotations.insert("rtt_avg_ms", rtt.to_string());
    }
    if let Some(cycle) = measurement.cycle_id {
        description.push_str(&format!("; cycle {cycle}"));
        annotations.insert("cycle_id", cycle.to_string());
    }
    if let Some(parent) = &payload.parent_device_name {
        annotations.insert("parent", parent.clone());
    }
    if let Some(reason) = &payload.suppressed_reason {
        description.push_str(&format!("; suppressed: {reason}"));
        annotations.insert("suppressed_reason", reason.clone());
    }
    annotations.insert("description", description);
    let ends_at = match event {
        NotificationEvent::Firing => sent_at + FIRING_HORIZON,
        NotificationEvent::Resolved => payload.resolved_at.unwrap_or(sent_at),
    };
    serde_json::json!([{
        "labels": labels,
        "annotations": annotations,
        "startsAt": payload.started_at,
        "endsAt": ends_at,
        "generatorURL": "",
    }])
}

/// Filter and page of [`Notifier::list`]; converts from the RPC request.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Empty = any state.
    pub states: Vec<v1::NotificationState>,
    pub alert_id: Option<Uuid>,
    pub channel: Option<String>,
    /// Only rows older than this id (the page token).
    pub before_id: Option<i64>,
    /// 0 = 100, at most 1000.
    pub limit: u32,
}

/// A `ListNotificationsRequest` field that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidListRequest {
    pub field: &'static str,
    pub reason: String,
}

impl TryFrom<&v1::ListNotificationsRequest> for ListFilter {
    type Error = InvalidListRequest;

    fn try_from(request: &v1::ListNotificationsRequest) -> Result<Self, Self::Error> {
        let mut states = Vec::new();
        for &state in &request.states {
            match v1::NotificationState::try_from(state) {
                // UNSPECIFIED in a filter matches every state.
                Ok(v1::NotificationState::Unspecified) => return Self::any_state(request),
                Ok(state) => states.push(state),
                Err(_) => {
                    return Err(InvalidListRequest {
                        field: "states",
                        reason: format!("unknown state {state}"),
                    });
                }
            }
        }
        Ok(Self {
            states,
            ..Self::any_state(request)?
        })
    }
}

impl ListFilter {
    fn any_state(request: &v1::ListNotificationsRequest) -> Result<Self, InvalidListRequest> {
        let alert_id = match request.alert_id.as_str() {
            "" => None,
            id => Some(Uuid::parse_str(id).map_err(|e| InvalidListRequest {
                field: "alert_id",
                reason: e.to_string(),
            })?),
        };
        let before_id = match request.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<i64>().map_err(|_| InvalidListRequest {
                field: "page_token",
                reason: "not a token from a previous response".to_string(),
            })?),
        };
        Ok(Self {
            states: Vec::new(),
            alert_id,
            channel: (!request.channel.is_empty()).then(|| request.channel.clone()),
            before_id,
            limit: request.page_size,
        })
    }
}

/// One page of outbox rows, newest first.
#[derive(Debug, Clone)]
pub struct OutboxPage {
    pub rows: Vec<OutboxRow>,
    /// Pass as `ListFilter::before_id` for the next page; `None` at the end.
    pub next_before_id: Option<i64>,
}

impl From<OutboxPage> for v1::ListNotificationsResponse {
    fn from(page: OutboxPage) -> Self {
        Self {
            notifications: page.rows.into_iter().map(Into::into).collect(),
            next_page_token: page
                .next_before_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }
    }
}

/// One outbox row as `ListNotifications` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub alert_id: Uuid,
    pub channel: String,
    pub channel_kind: v1::ChannelKind,
    pub event: NotificationEvent,
    /// PENDING (never tried), RETRYING (tried, another attempt scheduled),
    /// DELIVERED or FAILED.
    pub state: v1::NotificationState,
    pub attempts: u32,
    pub last_error: String,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// From the payload.
    pub device_id: String,
    pub rule_name: String,
}

impl From<OutboxRow> for v1::Notification {
    fn from(row: OutboxRow) -> Self {
        let finished = matches!(
            row.state,
            v1::NotificationState::Delivered | v1::NotificationState::Failed
        );
        Self {
            id: u64::try_from(row.id).unwrap_or(0),
            alert_id: row.alert_id.to_string(),
            event: match row.event {
                NotificationEvent::Firing => v1::AlertEventKind::Fired,
                NotificationEvent::Resolved => v1::AlertEventKind::Resolved,
            } as i32,
            channel: row.channel,
            channel_kind: row.channel_kind as i32,
            state: row.state as i32,
            attempts: row.attempts,
            last_error: row.last_error,
            next_attempt_at: (!finished).then(|| crate::timestamp(row.next_attempt_at)),
            created_at: Some(crate::timestamp(row.created_at)),
            delivered_at: row.delivered_at.map(crate::timestamp),
            device_id: row.device_id,
            rule_name: row.rule_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_webhooks_are_accepted() {
        let url = parse_url("slack", "https://hooks.slack.com/services/T0/B0/x").unwrap();
        assert_eq!(url.scheme(), "https");
        let error = parse_url("ftp", "ftp://example.com/x").unwrap_err();
        assert!(error.to_string().contains("unsupported scheme"), "{error}");
        // The TLS client builds with the ring provider (no aws-lc-rs).
        netward_shared::tls::install_crypto_provider();
        assert!(reqwest::Client::builder().build().is_ok());
    }
}

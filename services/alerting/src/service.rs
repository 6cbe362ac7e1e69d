//! The alerting domain as the API sees it: ingest of result batches, device
//! statuses and history, alerts, rules, silences, notifications,
//! availability and interfaces. No gRPC here (`grpc.rs` adapts); the API's
//! v1 messages serve as the model, and every failure is an [`Error`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use netward_shared::audit::{self, AuditEvent, AuditQuery};
use netward_shared::auth::Scope;
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use netward_shared::status::FieldViolation;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::access;
use crate::alerts::{AlertEngine, RuleError};
use crate::backlog::Backlog;
use crate::evaluate::Evaluator;
use crate::ingest::Ingestor;
use crate::notify::{ListFilter, Notifier};
use crate::silences::{ListFilter as SilenceFilter, Silence};
use crate::snmp::book::{SnmpBook, SnmpStored};
use crate::store::{AuditStore, ProbeRow, StateRow};
use crate::{from_timestamp, timestamp as ts};

/// Why a call failed, as the caller should read it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", list(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's region/site scope does not reach it.
    #[error("{0}")]
    PermissionDenied(String),
    /// Nothing was done; the caller should try again later (ingest replays).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed while doing `context`.
    #[error("{context}: {source}")]
    Storage {
        context: &'static str,
        source: sqlx::Error,
    },
}

fn list(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    fn invalid(field: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, value, reason)])
    }

    /// A store error met while doing `context`.
    fn storage(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Error::Storage { context, source }
    }
}

impl From<RuleError> for Error {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::NotFound(_) => Error::NotFound(error.to_string()),
            RuleError::NameTaken(_) => Error::AlreadyExists(error.to_string()),
            RuleError::Builtin(_) => Error::FailedPrecondition(error.to_string()),
            RuleError::Invalid(violations) => Error::InvalidArgument(violations),
            RuleError::Database(source) => Error::Storage {
                context: "changing a rule",
                source,
            },
        }
    }
}

/// A required message field that was left unset.
pub fn required<T>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::invalid(field, "unset", "required"))
}

fn parse_device(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| Error::invalid("device_id", id, "not a UUID"))
}

/// An id filter of a list or watch request: empty = any, else a UUID,
/// returned in the form stored ids have (lowercase, hyphenated) so that it
/// compares equal. A malformed one is refused: it would match nothing.
pub fn id_filter(field: &str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Ok(String::new());
    }
    Uuid::parse_str(id)
        .map(|id| id.to_string())
        .map_err(|_| Error::invalid(field, id, "not a UUID"))
}

/// An enum filter of a list or watch request: every value must be one the
/// enum knows (UNSPECIFIED included), else it would match nothing.
pub fn enum_filter<E: TryFrom<i32>>(field: &str, values: &[i32], name: &str) -> Result<()> {
    match values.iter().find(|v| E::try_from(**v).is_err()) {
        Some(value) => Err(Error::invalid(field, value, format!("not a {name}"))),
        None => Ok(()),
    }
}

fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| Error::invalid("id", id, "not a UUID"))
}

/// Page size (0 = 100, at most 1000) and the offset a page token carries.
fn page(token: &str, size: u32) -> Result<(usize, usize)> {
    let offset = if token.is_empty() {
        0
    } else {
        token.parse::<usize>().map_err(|_| {
            Error::invalid("page_token", token, "not a token from a previous response")
        })?
    };
    let size = match size {
        0 => 100,
        n => n.min(1000) as usize,
    };
    Ok((offset, size))
}

/// One page of `items` and the token of the next (empty on the last page).
fn page_of<T>(items: Vec<T>, offset: usize, size: usize) -> (Vec<T>, String) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = offset + page.len();
    let token = if next < total {
        next.to_string()
    } else {
        String::new()
    };
    (page, token)
}

/// A protobuf duration of a std one.
pub(crate) fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The range and bucket width of a history request.
struct HistoryRange;

impl HistoryRange {
    /// `(start, end, step seconds)` from a request's start, end and step:
    /// end defaults to now, start to `end - default_span`, the step to the
    /// smallest whole-minute width giving at most 1000 points; at most 400
    /// days and 10,000 points.
    fn check(
        (start, end, step): (
            Option<prost_types::Timestamp>,
            Option<prost_types::Timestamp>,
            Option<prost_types::Duration>,
        ),
        default_span: TimeDelta,
        now: DateTime<Utc>,
    ) -> std::result::Result<(DateTime<Utc>, DateTime<Utc>, i64), Vec<FieldViolation>> {
        let end = end.as_ref().and_then(from_timestamp).unwrap_or(now);
        let start = start
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or(end - default_span);
        let span = (end - start).num_seconds().max(1);
        let step = step
            .map(|d| d.seconds)
            .filter(|s| *s > 0)
            .unwrap_or_else(|| ((span + 999) / 1000 + 59) / 60 * 60);
        let mut violations = Vec::new();
        if start >= end {
            violations.push(FieldViolation::new(
                "start_time",
                start,
                "must be before end_time",
            ));
        }
        if end - start > TimeDelta::days(400) {
            violations.push(FieldViolation::new(
                "end_time",
                end,
                "at most 400 days after start_time",
            ));
        }
        if step < 60 || step % 60 != 0 {
            violations.push(FieldViolation::new(
                "step",
                step,
                "whole minutes, at least 60 s",
            ));
        } else if span / step > 10_000 {
            violations.push(FieldViolation::new(
                "step",
                step,
                "at most 10,000 points: widen the step",
            ));
        }
        if violations.is_empty() {
            Ok((start, end, step))
        } else {
            Err(violations)
        }
    }
}

/// What became of one batch of an ingested group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Stored (or stored before: `duplicate`); the sender may forget it.
    Stored { rows: u32, duplicate: bool },
    /// Refused for good (replaying it would fail the same way).
    Rejected(String),
}

/// A group of batches stored and acked, waiting for evaluation.
pub struct StoredGroup {
    /// One per batch, in order.
    pub outcomes: Vec<BatchOutcome>,
    probes: Vec<ProbeRow>,
    snmp: Vec<SnmpStored>,
    /// The `alerting.ingest` span's context: evaluation runs after the ack,
    /// outside that span, yet belongs to the same trace. Kept as a context,
    /// not a span handle, so the ingest span ends when storing does.
    trace_context: v1::TraceContext,
}

/// The alerting service: the domain parts the API reaches.
pub struct Alerting {
    ingestor: Arc<Ingestor>,
    evaluator: Arc<Evaluator>,
    alerts: Arc<AlertEngine>,
    /// Evaluation of what ingest stored, in order, retried until it commits.
    backlog: Arc<Backlog>,
    notifier: Arc<Notifier>,
    snmp: Arc<SnmpBook>,
    copy: SharedCopy,
    /// Where changes are recorded; `None` (in-process tests built without
    /// one) records nothing and lists nothing.
    audit: Option<Arc<dyn AuditStore>>,
}

impl Alerting {
    pub fn new(
        ingestor: Arc<Ingestor>,
        evaluator: Arc<Evaluator>,
        alerts: Arc<AlertEngine>,
        backlog: Arc<Backlog>,
        notifier: Arc<Notifier>,
        snmp: Arc<SnmpBook>,
        copy: SharedCopy,
    ) -> Self {
        Self {
            ingestor,
            evaluator,
            alerts,
            backlog,
            notifier,
            snmp,
            copy,
            audit: None,
        }
    }

    /// Records every change in `store` (see [`Alerting::record`]).
    pub fn with_audit(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.audit = Some(store);
        self
    }

    /// Records a change; called right after it succeeded, in a transaction
    /// of its own. A failed record is logged as an error and does not undo
    /// or fail the change that already happened.
    pub async fn record(&self, event: AuditEvent) {
        let Some(store) = &self.audit else { return };
        if let Err(error) = store.record_audit(&event).await {
            tracing::error!(
                %error,
                actor = %event.actor,
                action = %event.action,
                object_id = %event.object_id,
                "audit event not recorded"
            );
        }
    }

    pub async fn list_audit_events(
        &self,
        request: &v1::ListAuditEventsRequest,
    ) -> Result<v1::ListAuditEventsResponse> {
        let query = AuditQuery::from_request(request).map_err(Error::InvalidArgument)?;
        let events = match &self.audit {
            Some(store) => store
                .list_audit(&query)
                .await
                .map_err(Error::storage("listing audit events"))?,
            None => Vec::new(),
        };
        Ok(audit::response(events, &query))
    }

    /// Stores a group of batches of one sender in one transaction. Nothing
    /// is stored (an `Unavailable` error: the sender keeps and replays its
    /// batches) while evaluation is behind by more than its bound, or when
    /// storage fails. Agent NULs are stripped first; rejected batches are
    /// counted and logged. Call [`Alerting::evaluate`] with the result once
    /// the outcomes are acked.
    pub async fn store_batches(&self, batches: &mut [v1::ResultBatch]) -> Result<StoredGroup> {
        let backlog = &self.backlog;
        if backlog.is_full() && backlog.drain().await.is_err() && backlog.is_full() {
            tracing::warn!(
                queued = backlog.queued(),
                "evaluation backlog full; ending the ingest stream unacked"
            );
            return Err(Error::Unavailable(
                "evaluation backlog full; replay later".into(),
            ));
        }
        for batch in batches.iter_mut() {
            let stripped = crate::ingest::strip_agent_nuls(batch);
            if stripped > 0 {
                metrics::counter!("netward_alerting_agent_nuls_stripped_total")
                    .increment(stripped as u64);
            }
        }
        let Some(first) = batches.first() else {
            return Ok(StoredGroup {
                outcomes: Vec::new(),
                probes: Vec::new(),
                snmp: Vec::new(),
                trace_context: v1::TraceContext::default(),
            });
        };
        let results: usize = batches
            .iter()
            .map(|b| b.probes.len() + b.samples.len())
            .sum();
        let span = tracing::info_span!("alerting.ingest", batches = batches.len(), batch_uid = %first.batch_uid, results);
        netward_shared::trace_context::set_parent(&span, first.trace_context.as_ref());
        let trace_context = span.in_scope(netward_shared::trace_context::current);
        let outcomes = {
            use tracing::Instrument as _;
            self.ingestor
                .ingest_all(batches, Utc::now())
                .instrument(span)
                .await
        };
        let outcomes = outcomes.map_err(|error| {
            // Never ack what is not stored. Ending the stream makes the
            // sender reconnect and replay it.
            tracing::warn!(%error, "storage failed; ending the ingest stream unacked");
            Error::Unavailable("storage unavailable; replay later".into())
        })?;
        let mut group = StoredGroup {
            outcomes: Vec::with_capacity(batches.len()),
            probes: Vec::new(),
            snmp: Vec::new(),
            trace_context,
        };
        for (batch, outcome) in batches.iter().zip(outcomes) {
            group.outcomes.push(match outcome {
                Ok(ingested) => {
                    group.probes.extend(ingested.rows);
                    group.snmp.push(ingested.snmp);
                    BatchOutcome::Stored {
                        rows: ingested.stored.rows,
                        duplicate: ingested.stored.duplicate,
                    }
                }
                Err(reason) => {
                    metrics::counter!("netward_alerting_batches_rejected_total").increment(1);
                    tracing::warn!(batch_uid = %batch.batch_uid, executor_id = %batch.executor_id, %reason, "batch rejected");
                    BatchOutcome::Rejected(reason)
                }
            });
        }
        Ok(group)
    }

    /// State and alerts of a stored group: its rows, in order, once each. A
    /// failure leaves them queued in the backlog, retried by the next group
    /// and by its own tick (the rows are stored and acked).
    pub async fn evaluate(&self, group: StoredGroup) {
        {
            use tracing::Instrument as _;
            let span = tracing::info_span!("alerting.evaluate", results = group.probes.len());
            netward_shared::trace_context::set_parent(&span, Some(&group.trace_context));
            let _ = self.backlog.probes(group.probes).instrument(span).await;
        }
        for snmp in group.snmp.iter().filter(|s| !s.duplicate && s.samples > 0) {
            let observations = crate::snmp::evaluate::observations(snmp);
            let _ = self.backlog.snmp(observations).await;
        }
    }

    async fn apply_silences(&self, now: DateTime<Utc>) -> Result<()> {
        crate::apply_silences(&self.evaluator, &self.alerts, &self.copy, now)
            .await
            .map_err(Error::storage("applying silences"))
    }

    /// The inventory copy, for checks of a caller's scope on streams.
    pub fn copy(&self) -> SharedCopy {
        self.copy.clone()
    }

    /// NOT_FOUND for a device outside `scope`, as for one that does not
    /// exist: a scoped caller learns nothing of other regions' devices.
    pub fn check_device(&self, scope: &Scope, id: &str) -> Result<()> {
        if scope.is_unlimited() {
            return Ok(());
        }
        let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
        if access::device_id_allowed(scope, &copy, id) {
            Ok(())
        } else {
            Err(Error::NotFound(format!("device {id} not found")))
        }
    }

    /// NOT_FOUND for a site (id) outside `scope`.
    fn check_site(&self, scope: &Scope, site_id: &str) -> Result<()> {
        if scope.is_unlimited() {
            return Ok(());
        }
        let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
        let mut devices = copy.devices.values().filter(|d| &*d.site_id == site_id);
        match devices.next() {
            Some(device) if access::device_allowed(scope, device) => Ok(()),
            _ => Err(Error::NotFound(format!(
                "site {site_id} has no devices in the inventory"
            ))),
        }
    }

    /// Rules hold for every region: a scoped caller may read them only.
    pub fn check_global_change(scope: &Scope, what: &str) -> Result<()> {
        if scope.is_unlimited() {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{what} apply to every region: a token limited to {scope} cannot change them"
            )))
        }
    }

    /// A stored state with the device's names from the inventory copy.
    fn status(&self, row: &StateRow) -> v1::DeviceStatus {
        let id = row.device_id.to_string();
        let snmp = self.snmp.last_poll(row.device_id);
        let device = self
            .copy
            .read()
            .ok()
            .and_then(|c| c.devices.get(&id).cloned());
        let parent_name = device
            .as_ref()
            .and_then(|d| {
                self.copy
                    .read()
                    .ok()?
                    .devices
                    .get(&*d.parent_device_id)
                    .map(|p| p.name.to_string())
            })
            .unwrap_or_default();
        let device = device.unwrap_or_default();
        v1::DeviceStatus {
            device_id: id,
            device_name: device.name.to_string(),
            ip_address: device.ip_address.to_string(),
            site_id: device.site_id.to_string(),
            site_name: device.site_name.to_string(),
            region: device.region.to_string(),
            device_type: device.device_type,
            parent_device_id: device.parent_device_id.to_string(),
            parent_device_name: parent_name,
            state: row.state as i32,
            maintenance: row.maintenance,
            state_since: Some(ts(row.since)),
            state_reason: row.reason.clone(),
            last_probe_at: row.last_probe_at.map(ts),
            last_outcome: row.last_outcome,
            last_loss_percent: row.last_loss_percent,
            last_rtt_avg_us: row.last_rtt_avg_us,
            consecutive_failures: row.consecutive_failures,
            last_cycle_id: row.last_cycle_id,
            last_polled_at: snmp.map(|(at, _, _)| ts(at)),
            last_snmp_outcome: snmp.map_or(0, |(_, outcome, _)| outcome),
            sys_uptime_ticks: snmp.and_then(|(_, _, uptime)| uptime),
            stale: row.stale,
            last_result_at: row.last_result_at.map(ts),
            ..Default::default()
        }
    }

    /// A device's status: UNKNOWN for a device of the inventory never probed.
    pub fn device_status(&self, id: &str) -> Result<v1::DeviceStatus> {
        let uuid = parse_device(id)?;
        let known = self
            .copy
            .read()
            .map(|c| c.devices.contains_key(id))
            .unwrap_or(false);
        let row = match self.evaluator.status(uuid) {
            Some(row) => row,
            None if known => StateRow::unknown(uuid, Utc::now()),
            None => {
                return Err(Error::NotFound(format!(
                    "device {id} is neither in the inventory nor probed"
                )));
            }
        };
        Ok(self.status(&row))
    }

    /// Statuses of the inventory's enabled devices, worst first, filtered,
    /// counted and paged.
    pub fn device_statuses(
        &self,
        r: &v1::ListDeviceStatusesRequest,
        scope: &Scope,
    ) -> Result<v1::ListDeviceStatusesResponse> {
        let size = match r.page_size {
            0 => 100,
            n => n.min(1000),
        } as usize;
        let site_id = id_filter("site_id", &r.site_id)?;
        enum_filter::<v1::DeviceState>("states", &r.states, "DeviceState")?;
        // Every enabled device of the inventory has a status (UNKNOWN until probed).
        let mut rows: HashMap<String, StateRow> = self
            .evaluator
            .statuses()
            .into_iter()
            .map(|row| (row.device_id.to_string(), row))
            .collect();
        let ids: Vec<String> = self
            .copy
            .read()
            .map(|c| {
                c.devices
                    .values()
                    .filter(|d| d.enabled)
                    .filter(|d| scope.is_unlimited() || access::device_allowed(scope, d))
                    .map(|d| d.id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let query = r.query.to_lowercase();
        let mut statuses: Vec<v1::DeviceStatus> = ids
            .into_iter()
            .map(|id| {
                let row = rows.remove(&id).unwrap_or_else(|| {
                    StateRow::unknown(Uuid::parse_str(&id).unwrap_or_default(), Utc::now())
                });
                self.status(&row)
            })
            .filter(|s| {
                (site_id.is_empty() || s.site_id == site_id)
                    && (r.site_name.is_empty() || s.site_name == r.site_name)
                    && (r.region.is_empty() || s.region == r.region)
                    && (r.device_type == 0 || s.device_type == r.device_type)
                    && r.maintenance.is_none_or(|m| s.maintenance == m)
                    && (query.is_empty()
                        || s.device_name.to_lowercase().contains(&query)
                        || s.ip_address.contains(&query))
            })
            .collect();
        // Counts per state cover the filter, before the state filter.
        let mut counts = v1::StateCounts {
            total: statuses.len() as u64,
            ..Default::default()
        };
        for s in &statuses {
            match v1::DeviceState::try_from(s.state).unwrap_or(v1::DeviceState::Unknown) {
                v1::DeviceState::Up => counts.up += 1,
                v1::DeviceState::Down => counts.down += 1,
                v1::DeviceState::Unreachable => counts.unreachable += 1,
                v1::DeviceState::Flapping => counts.flapping += 1,
                _ => counts.unknown += 1,
            }
            counts.maintenance += u64::from(s.maintenance);
            counts.stale += u64::from(s.stale);
        }
        let now = Utc::now();
        let oldest_result_age = statuses
            .iter()
            .filter_map(|s| s.last_result_at.as_ref().and_then(from_timestamp))
            .min()
            .map(|oldest| (now - oldest).to_std().unwrap_or_default())
            .map(duration);
        if !r.states.is_empty() {
            statuses.retain(|s| r.states.contains(&s.state));
        }
        // Worst first, then by name; the page token is the (rank, name) of
        // the last row, so a page follows on even when states change.
        let rank = |state: i32| match v1::DeviceState::try_from(state) {
            Ok(v1::DeviceState::Down) => 0u8,
            Ok(v1::DeviceState::Flapping) => 1,
            Ok(v1::DeviceState::Unreachable) => 2,
            Ok(v1::DeviceState::Up) => 4,
            _ => 3,
        };
        statuses
            .sort_by(|a, b| (rank(a.state), &a.device_name).cmp(&(rank(b.state), &b.device_name)));
        let after = if r.page_token.is_empty() {
            None
        } else {
            let parsed = r
                .page_token
                .split_once(':')
                .and_then(|(rank, name)| Some((rank.parse::<u8>().ok()?, name.to_string())));
            Some(parsed.ok_or_else(|| {
                Error::invalid(
                    "page_token",
                    &r.page_token,
                    "not a token from a previous response",
                )
            })?)
        };
        let total_count = statuses.len() as u64;
        let mut page: Vec<v1::DeviceStatus> = statuses
            .into_iter()
            .filter(|s| {
                after.as_ref().is_none_or(|(rank_after, name_after)| {
                    (rank(s.state), &s.device_name) > (*rank_after, name_after)
                })
            })
            .take(size + 1)
            .collect();
        let next_page_token = if page.len() > size {
            page.truncate(size);
            page.last()
                .map(|s| format!("{}:{}", rank(s.state), s.device_name))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListDeviceStatusesResponse {
            statuses: page,
            next_page_token,
            counts: Some(counts),
            total_count,
            oldest_result_age,
        })
    }

    /// Per-site counts, the stale devices and the open monitoring-gap alerts
    /// within `scope`: the status page's overview (see `summary.rs`).
    pub async fn status_summary(
        &self,
        r: &v1::GetStatusSummaryRequest,
        scope: &Scope,
    ) -> Result<v1::GetStatusSummaryResponse> {
        let limit = match r.stale_limit {
            0 => 20,
            n => n.min(1000),
        } as usize;
        // The evaluator's lock, then the copy's, never both at once.
        let briefs = self.evaluator.briefs();
        let (sites, totals, stale, inventory_synced) = {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            let (sites, totals, stale) =
                crate::summary::summarize(&copy, &briefs, scope, &r.region);
            (sites, totals, stale, copy.synced)
        };
        let stale_devices = stale
            .iter()
            .take(limit)
            .filter_map(|(_, id)| self.evaluator.status(*id))
            .map(|row| self.status(&row))
            .collect();
        let gaps = v1::ListAlertsRequest {
            rule_kind: v1::RuleKind::MonitoringGap as i32,
            page_size: 1000,
            ..Default::default()
        };
        let gap_alerts = self.list_alerts(&gaps, scope).await?.alerts;
        Ok(v1::GetStatusSummaryResponse {
            sites,
            totals: Some(totals),
            stale_devices,
            gap_alerts,
            inventory_synced,
            generated_at: Some(ts(Utc::now())),
        })
    }

    /// A device's probe history in buckets, with its state changes.
    pub async fn device_history(
        &self,
        r: v1::GetDeviceHistoryRequest,
    ) -> Result<v1::GetDeviceHistoryResponse> {
        let device = parse_device(&r.device_id)?;
        let (start, end, step) = HistoryRange::check(
            (r.start_time, r.end_time, r.step),
            TimeDelta::hours(1),
            Utc::now(),
        )
        .map_err(Error::InvalidArgument)?;
        let store = self.ingestor.store();
        let rows = store
            .history(device, start, end, step)
            .await
            .map_err(Error::storage("reading history"))?;
        let changes = store
            .changes(device, start, end)
            .await
            .map_err(Error::storage("reading state changes"))?;
        let points = rows
            .into_iter()
            .map(|row| v1::HistoryPoint {
                time: Some(ts(row.time)),
                probe_count: row.probes,
                packets_sent: row.packets_sent,
                packets_received: row.packets_received,
                loss_percent: if row.packets_sent == 0 {
                    0.0
                } else {
                    100.0 * (1.0 - row.packets_received as f64 / row.packets_sent as f64)
                },
                rtt_min_us: row.rtt_min_us,
                rtt_avg_us: row.rtt_avg_us,
                rtt_max_us: row.rtt_max_us,
            })
            .collect();
        let state_changes = changes
            .into_iter()
            .map(|c| v1::StateChange {
                device_id: c.device_id.to_string(),
                from_state: c.from as i32,
                to_state: c.to as i32,
                maintenance: c.maintenance,
                reason: c.reason,
                changed_at: Some(ts(c.changed_at)),
                cycle_id: c.cycle_id,
                ..Default::default()
            })
            .collect();
        Ok(v1::GetDeviceHistoryResponse {
            device_id: r.device_id,
            step: Some(prost_types::Duration {
                seconds: step,
                nanos: 0,
            }),
            points,
            state_changes,
        })
    }

    /// Alerts, newest first, filtered and paged.
    pub async fn list_alerts(
        &self,
        r: &v1::ListAlertsRequest,
        scope: &Scope,
    ) -> Result<v1::ListAlertsResponse> {
        let (offset, size) = page(&r.page_token, r.page_size)?;
        let site_id = id_filter("site_id", &r.site_id)?;
        let device_id = id_filter("device_id", &r.device_id)?;
        let rule_id = id_filter("rule_id", &r.rule_id)?;
        enum_filter::<v1::AlertState>("states", &r.states, "AlertState")?;
        enum_filter::<v1::Severity>("severities", &r.severities, "Severity")?;
        let mut alerts = self
            .alerts
            .list(r.include_resolved, 100_000)
            .await
            .map_err(Error::storage("listing alerts"))?;
        alerts.retain(|a| {
            (r.states.is_empty() || r.states.contains(&a.state))
                && (r.severities.is_empty() || r.severities.contains(&a.severity))
                && (site_id.is_empty() || a.site_id == site_id)
                && (device_id.is_empty() || a.device_id == device_id)
                && (rule_id.is_empty() || a.rule_id == rule_id)
                && (r.rule_kind == 0 || a.rule_kind == r.rule_kind)
        });
        if !scope.is_unlimited() {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            alerts.retain(|a| access::alert_allowed(scope, &copy, a));
        }
        let total_count = alerts.len() as u64;
        let (alerts, next_page_token) = page_of(alerts, offset, size);
        Ok(v1::ListAlertsResponse {
            alerts,
            next_page_token,
            total_count,
        })
    }

    /// An alert by id; NOT_FOUND for one outside `scope`.
    pub async fn alert(&self, id: &str, scope: &Scope) -> Result<v1::Alert> {
        let uuid = parse_id(id)?;
        let alert = self
            .alerts
            .get(uuid)
            .await
            .map_err(Error::storage("reading an alert"))?;
        let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
        alert
            .filter(|a| access::alert_allowed(scope, &copy, a))
            .ok_or_else(|| Error::NotFound(format!("alert {id} not found")))
    }

    /// Acknowledges an open alert: who (1-128 characters) and why (at most
    /// 1024).
    /// PERMISSION_DENIED, naming the device's region, for an alert outside
    /// `scope`.
    pub async fn ack_alert(&self, r: &v1::AckAlertRequest, scope: &Scope) -> Result<v1::Alert> {
        let mut violations = Vec::new();
        if Uuid::parse_str(&r.id).is_err() {
            violations.push(FieldViolation::new("id", &r.id, "not a UUID"));
        }
        if r.acknowledged_by.trim().is_empty() || r.acknowledged_by.len() > 128 {
            violations.push(FieldViolation::new(
                "acknowledged_by",
                &r.acknowledged_by,
                "who acknowledges: 1-128 characters",
            ));
        }
        if r.comment.len() > 1024 {
            violations.push(FieldViolation::new(
                "comment",
                r.comment.len(),
                "at most 1024 characters",
            ));
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        if !scope.is_unlimited() {
            let alert = self.alert(&r.id, &Scope::default()).await?;
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            if !access::alert_allowed(scope, &copy, &alert) {
                return Err(Error::PermissionDenied(format!(
                    "alert {} is of device {} in region {:?}, outside this token's scope ({scope})",
                    r.id,
                    alert.device_name,
                    access::alert_region(&copy, &alert)
                )));
            }
        }
        self.alerts
            .ack(&r.id, &r.acknowledged_by, &r.comment)
            .await
            .map_err(Error::storage("acknowledging an alert"))?
            .ok_or_else(|| Error::FailedPrecondition(format!("alert {} is not open", r.id)))
    }

    pub async fn create_rule(&self, rule: Option<v1::Rule>) -> Result<v1::Rule> {
        let rule = required("rule", rule)?;
        Ok(self.alerts.create_rule(&rule).await?)
    }

    /// A rule by id or name.
    pub fn rule(&self, id: &str) -> Result<v1::Rule> {
        self.alerts
            .rules()
            .into_iter()
            .find(|r| crate::rules::matches(r, id))
            .ok_or_else(|| Error::NotFound(format!("rule {id} not found")))
    }

    /// Changes the `mask`ed fields of the rule `rule.id` names.
    pub async fn update_rule(&self, rule: Option<v1::Rule>, mask: &[String]) -> Result<v1::Rule> {
        let rule = required("rule", rule)?;
        if rule.id.is_empty() {
            return Err(Error::invalid(
                "rule.id",
                "",
                "required: the id (or name) of the rule to change",
            ));
        }
        Ok(self.alerts.update_rule(&rule, mask).await?)
    }

    pub async fn delete_rule(&self, id: &str) -> Result<()> {
        Ok(self.alerts.delete_rule(id).await?)
    }

    /// Rules by name, filtered and paged.
    pub fn list_rules(&self, r: &v1::ListRulesRequest) -> Result<v1::ListRulesResponse> {
        let (offset, size) = page(&r.page_token, r.page_size)?;
        let mut rules: Vec<v1::Rule> = self
            .alerts
            .rules()
            .into_iter()
            .filter(|rule| r.kind == 0 || rule.kind == r.kind)
            .filter(|rule| r.enabled.is_none_or(|e| rule.enabled.unwrap_or(true) == e))
            .collect();
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        let (rules, next_page_token) = page_of(rules, offset, size);
        Ok(v1::ListRulesResponse {
            rules,
            next_page_token,
        })
    }

    /// Checks and stores a silence, then brings it to bear at once.
    /// A scoped caller's silence must select devices of its scope only
    /// ([`access::silence_confined`]).
    pub async fn create_silence(
        &self,
        input: Option<v1::Silence>,
        scope: &Scope,
    ) -> Result<v1::Silence> {
        let input = required("silence", input)?;
        let now = Utc::now();
        let silence = {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            let silence = Silence::create(&input, &copy, now).map_err(Error::InvalidArgument)?;
            access::silence_confined(scope, &copy, &silence.body.matchers)
                .map_err(Error::PermissionDenied)?;
            silence
        };
        if !silence.body.rule_id.is_empty()
            && !self
                .alerts
                .rules()
                .iter()
                .any(|r| r.id == silence.body.rule_id)
        {
            return Err(Error::invalid(
                "silence.rule_id",
                &silence.body.rule_id,
                "no such rule",
            ));
        }
        let silence = self
            .alerts
            .silences()
            .insert(silence)
            .await
            .map_err(Error::storage("storing a silence"))?;
        tracing::info!(id = %silence.id, maintenance = silence.maintenance(), by = %silence.body.created_by, "silence created");
        self.apply_silences(now).await?;
        Ok(silence.view(now))
    }

    /// A silence by id; NOT_FOUND for one not confined to `scope`.
    pub async fn silence(&self, id: &str, scope: &Scope) -> Result<v1::Silence> {
        let silence = self
            .alerts
            .silences()
            .get(parse_id(id)?)
            .await
            .map_err(Error::storage("reading a silence"))?
            .filter(|s| self.silence_visible(scope, s))
            .ok_or_else(|| Error::NotFound(format!("silence {id} not found")))?;
        Ok(silence.view(Utc::now()))
    }

    /// A scoped caller sees the silences confined to its scope, the ones it
    /// could have created.
    fn silence_visible(&self, scope: &Scope, silence: &Silence) -> bool {
        if scope.is_unlimited() {
            return true;
        }
        let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
        access::silence_confined(scope, &copy, &silence.body.matchers).is_ok()
    }

    /// Silences, newest first, of a device when one is named, paged.
    pub async fn list_silences(
        &self,
        r: &v1::ListSilencesRequest,
        scope: &Scope,
    ) -> Result<v1::ListSilencesResponse> {
        let (offset, size) = page(r.page_token.as_str(), r.page_size)?;
        let device = if r.device_id.is_empty() {
            None
        } else {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            Some(copy.devices.get(&r.device_id).cloned().ok_or_else(|| {
                Error::invalid("device_id", &r.device_id, "no such device in the inventory")
            })?)
        };
        let now = Utc::now();
        let filter = SilenceFilter {
            include_expired: r.include_expired,
            maintenance: r.maintenance,
        };
        let all = self
            .alerts
            .silences()
            .list(&filter, now)
            .await
            .map_err(Error::storage("listing silences"))?;
        let matching: Vec<v1::Silence> = all
            .iter()
            .filter(|s| device.as_ref().is_none_or(|d| s.covers(d)))
            .filter(|s| self.silence_visible(scope, s))
            .map(|s| s.view(now))
            .collect();
        let (silences, next_page_token) = page_of(matching, offset, size);
        Ok(v1::ListSilencesResponse {
            silences,
            next_page_token,
        })
    }

    /// Ends a silence now (it stays listed as expired).
    /// PERMISSION_DENIED for a silence not confined to `scope`.
    pub async fn delete_silence(&self, id: &str, scope: &Scope) -> Result<v1::Silence> {
        if !scope.is_unlimited() {
            let silence = self
                .alerts
                .silences()
                .get(parse_id(id)?)
                .await
                .map_err(Error::storage("reading a silence"))?
                .ok_or_else(|| Error::NotFound(format!("silence {id} not found")))?;
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            access::silence_confined(scope, &copy, &silence.body.matchers).map_err(|why| {
                Error::PermissionDenied(format!(
                    "silence {id} reaches outside this token's scope: {why}"
                ))
            })?;
        }
        let now = Utc::now();
        let silence = self
            .alerts
            .silences()
            .expire(parse_id(id)?, now)
            .await
            .map_err(Error::storage("ending a silence"))?
            .ok_or_else(|| Error::NotFound(format!("silence {id} not found")))?;
        tracing::info!(id = %silence.id, "silence ended");
        self.apply_silences(now).await?;
        Ok(silence.view(now))
    }

    /// A page of the notification outbox, newest first.
    /// Rows of devices outside `scope` are left out of the page (the page
    /// token still follows on from the last row read).
    pub async fn list_notifications(
        &self,
        request: &v1::ListNotificationsRequest,
        scope: &Scope,
    ) -> Result<v1::ListNotificationsResponse> {
        let filter = ListFilter::try_from(request).map_err(|e| {
            // The message names the value refused, as every other field error does.
            let value = match e.field {
                "alert_id" => request.alert_id.clone(),
                "page_token" => request.page_token.clone(),
                _ => String::new(),
            };
            Error::invalid(e.field, value, e.reason.clone())
        })?;
        let page = self
            .notifier
            .list(&filter)
            .await
            .map_err(Error::storage("listing notifications"))?;
        let mut response = v1::ListNotificationsResponse::from(page);
        if !scope.is_unlimited() {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            response
                .notifications
                .retain(|n| access::device_id_allowed(scope, &copy, &n.device_id));
        }
        Ok(response)
    }

    /// An availability report over a period, grouped, within `scope`
    /// (see [`crate::report`]).
    pub async fn availability_report(
        &self,
        r: &v1::GetAvailabilityReportRequest,
        scope: &Scope,
    ) -> Result<v1::GetAvailabilityReportResponse> {
        // The copy is read and released before the store is awaited.
        let plan = {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            crate::report::Plan::new(r, &copy, scope, Utc::now())?
        };
        plan.run(self.ingestor.store().as_ref()).await
    }

    /// Availability of a device or of a site's devices over a range (24 h
    /// before the end, now, by default; at most 400 days).
    /// NOT_FOUND for a device or site outside `scope`.
    pub async fn availability(
        &self,
        r: v1::GetAvailabilityRequest,
        scope: &Scope,
    ) -> Result<v1::GetAvailabilityResponse> {
        match &r.target {
            Some(v1::get_availability_request::Target::DeviceId(id)) => {
                self.check_device(scope, id)?;
            }
            Some(v1::get_availability_request::Target::SiteId(site)) => {
                self.check_site(scope, site)?;
            }
            None => {}
        }
        use crate::availability::{Figures, Transition, figures};
        let now = Utc::now();
        let end = r.end_time.as_ref().and_then(from_timestamp).unwrap_or(now);
        let start = r
            .start_time
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or(end - TimeDelta::hours(24));
        if start >= end || (end - start) > TimeDelta::days(400) {
            return Err(Error::invalid(
                "start_time",
                start,
                "must be before end_time, at most 400 days before it",
            ));
        }
        // The devices to cover, with their names.
        let (device_id, site_id, name, devices): (String, String, String, Vec<(String, String)>) =
            match r.target {
                Some(v1::get_availability_request::Target::DeviceId(id)) => {
                    parse_device(&id)?;
                    let name = self
                        .copy
                        .read()
                        .ok()
                        .and_then(|c| c.devices.get(&id).map(|d| d.name.to_string()))
                        .unwrap_or_else(|| id.clone());
                    (id.clone(), String::new(), name.clone(), vec![(id, name)])
                }
                Some(v1::get_availability_request::Target::SiteId(site)) => {
                    let (site_name, devices) = self
                        .copy
                        .read()
                        .map(|c| {
                            let devices: Vec<(String, String)> = c
                                .devices
                                .values()
                                .filter(|d| *d.site_id == *site)
                                .map(|d| (d.id.to_string(), d.name.to_string()))
                                .collect();
                            let name = c
                                .devices
                                .values()
                                .find(|d| *d.site_id == *site)
                                .map(|d| d.site_name.to_string());
                            (name, devices)
                        })
                        .unwrap_or_default();
                    let Some(site_name) = site_name else {
                        return Err(Error::NotFound(format!(
                            "site {site} has no devices in the inventory"
                        )));
                    };
                    (String::new(), site.clone(), site_name, devices)
                }
                None => {
                    return Err(Error::invalid("target", "", "give device_id or site_id"));
                }
            };
        let store = self.ingestor.store();
        let mut total = Figures::default();
        let mut per_device = Vec::new();
        for (id, device_name) in &devices {
            let Ok(uuid) = Uuid::parse_str(id) else {
                continue;
            };
            // The state at `start`, however long ago it began: retention
            // keeps each device's last transition before its cutoff.
            let earlier = store
                .last_change_before(uuid, start)
                .await
                .map_err(Error::storage("reading state changes"))?;
            let within = store
                .changes(uuid, start, end)
                .await
                .map_err(Error::storage("reading state changes"))?;
            let transition = |c: &crate::store::ChangeRow| Transition {
                at: c.changed_at,
                to: c.to,
                maintenance: c.maintenance,
                stale: c.stale,
            };
            let before = earlier.as_ref().map(transition);
            let changes: Vec<Transition> = within.iter().map(transition).collect();
            let f = figures(before, &changes, start, end);
            total.add(&f);
            per_device.push((id.clone(), device_name.clone(), f));
        }
        per_device.sort_by(|a, b| b.2.down.cmp(&a.2.down).then_with(|| a.1.cmp(&b.1)));
        let site_devices = if site_id.is_empty() {
            Vec::new()
        } else {
            per_device
                .iter()
                .map(|(id, name, f)| v1::DeviceAvailability {
                    device_id: id.clone(),
                    device_name: name.clone(),
                    uptime_percent: f.uptime_percent(),
                    downtime: Some(duration(f.down)),
                    incidents: f.incidents,
                    mttr: Some(duration(f.mttr())),
                })
                .collect()
        };
        Ok(v1::GetAvailabilityResponse {
            device_id,
            site_id,
            name,
            start_time: Some(ts(start)),
            end_time: Some(ts(end)),
            uptime_percent: total.uptime_percent(),
            downtime: Some(duration(total.down)),
            unreachable_time: Some(duration(total.unreachable)),
            maintenance_time: Some(duration(total.maintenance)),
            unknown_time: Some(duration(total.unknown)),
            unmonitored_time: Some(duration(total.unmonitored)),
            incidents: total.incidents,
            mttr: Some(duration(total.mttr())),
            longest_outage: Some(duration(total.longest_outage)),
            device_count: devices.len() as u32,
            devices: site_devices,
        })
    }

    /// Alert events as they happen (fired, acknowledged, resolved, updated).
    pub fn alert_events(&self) -> broadcast::Receiver<v1::WatchAlertsResponse> {
        self.alerts.events.subscribe()
    }

    /// Device state changes as they happen.
    pub fn state_changes(&self) -> broadcast::Receiver<v1::WatchDeviceStatesResponse> {
        self.evaluator.changes.subscribe()
    }

    /// A device's interfaces as last polled, with their open alerts.
    pub fn interfaces(&self, r: v1::ListInterfacesRequest) -> Result<v1::ListInterfacesResponse> {
        let device = parse_device(&r.device_id)?;
        let device_name = self
            .copy
            .read()
            .ok()
            .and_then(|c| c.devices.get(&r.device_id).map(|d| d.name.to_string()))
            .unwrap_or_default();
        let (polled_at, mut interfaces) = self.snmp.interfaces_of(device);
        if device_name.is_empty() && polled_at.is_none() && interfaces.is_empty() {
            return Err(Error::NotFound(format!(
                "device {} is neither in the inventory nor ever polled",
                r.device_id
            )));
        }
        let (last_snmp_outcome, last_snmp_error) =
            self.snmp.last_outcome(device).unwrap_or_default();
        let open = self.alerts.open_per_interface(&r.device_id);
        interfaces
            .retain(|i| (r.role == 0 || i.role == r.role) && (!r.monitored_only || i.monitored));
        for interface in &mut interfaces {
            interface.open_alerts = open.get(&interface.if_index).copied().unwrap_or(0);
        }
        Ok(v1::ListInterfacesResponse {
            device_id: r.device_id,
            device_name,
            polled_at: polled_at.map(ts),
            interfaces,
            last_snmp_outcome,
            last_snmp_error,
        })
    }

    /// One interface's history in buckets: from raw polls where they are
    /// kept, else from the hourly tier (see `SnmpBook::history`).
    pub async fn interface_history(
        &self,
        r: v1::GetInterfaceHistoryRequest,
    ) -> Result<v1::GetInterfaceHistoryResponse> {
        let device = parse_device(&r.device_id)?;
        let now = Utc::now();
        let range = HistoryRange::check(
            (r.start_time, r.end_time, r.step),
            TimeDelta::hours(24),
            now,
        );
        let (start, end, step) = match range {
            Ok(range) if r.if_index > 0 => range,
            Ok(_) => return Err(Error::invalid("if_index", 0, "required, >= 1")),
            Err(violations) => return Err(Error::InvalidArgument(violations)),
        };
        let (step, points) = self
            .snmp
            .history(device, r.if_index, (start, end), step)
            .await
            .map_err(Error::storage("reading interface history"))?;
        let if_name = self
            .snmp
            .interfaces_of(device)
            .1
            .into_iter()
            .find(|i| i.if_index == r.if_index)
            .map(|i| i.if_name)
            .unwrap_or_default();
        Ok(v1::GetInterfaceHistoryResponse {
            device_id: r.device_id,
            if_index: r.if_index,
            if_name,
            step: Some(prost_types::Duration {
                seconds: step,
                nanos: 0,
            }),
            points,
        })
    }
}

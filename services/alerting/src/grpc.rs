//! `AlertingService` over the domain: ingest (ping results and SNMP
//! samples), device status and history, alerts, rules, silences,
//! notifications, availability, interfaces, and the watch streams.

use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt as _, Stream};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_server::AlertingService;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::alerts::{AlertEngine, RuleError};
use crate::backlog::Backlog;
use crate::evaluate::Evaluator;
use crate::ingest::Ingestor;
use crate::notify::{ListFilter, Notifier};
use crate::silences::{ListFilter as SilenceFilter, Silence};
use crate::snmp::book::SnmpBook;
use crate::store::StateRow;
use crate::{from_timestamp, timestamp as ts};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::status::{FieldViolation, invalid_argument};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// At most this many batches, or results, are stored in one transaction.
const MAX_GROUP_BATCHES: usize = 32;
const MAX_GROUP_RESULTS: usize = 10_000;

pub struct AlertingGrpc {
    ingestor: Arc<Ingestor>,
    evaluator: Arc<Evaluator>,
    alerts: Arc<AlertEngine>,
    /// Evaluation of what ingest stored, in order, retried until it commits.
    backlog: Arc<Backlog>,
    notifier: Arc<Notifier>,
    snmp: Arc<SnmpBook>,
    copy: SharedCopy,
    /// Ends open Ingest streams when the server shuts down.
    shutdown: CancellationToken,
}

impl AlertingGrpc {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ingestor: Arc<Ingestor>,
        evaluator: Arc<Evaluator>,
        alerts: Arc<AlertEngine>,
        backlog: Arc<Backlog>,
        notifier: Arc<Notifier>,
        snmp: Arc<SnmpBook>,
        copy: SharedCopy,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            ingestor,
            evaluator,
            alerts,
            backlog,
            notifier,
            snmp,
            copy,
            shutdown,
        }
    }

    async fn apply_silences(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), Status> {
        crate::apply_silences(&self.evaluator, &self.alerts, &self.copy, now)
            .await
            .map_err(|e| netward_shared::status::internal("applying silences", &e))
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
                    .get(&d.parent_device_id)
                    .map(|p| p.name.clone())
            })
            .unwrap_or_default();
        let device = device.unwrap_or_default();
        v1::DeviceStatus {
            device_id: id,
            device_name: device.name,
            ip_address: device.ip_address,
            site_id: device.site_id,
            site_name: device.site_name,
            region: device.region,
            device_type: device.device_type,
            parent_device_id: device.parent_device_id,
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
        default_span: chrono::TimeDelta,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<
        (
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
            i64,
        ),
        Vec<FieldViolation>,
    > {
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
        if end - start > chrono::TimeDelta::days(400) {
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

/// A rule change refused, as the caller should read it.
fn rule_status(error: RuleError) -> Status {
    match error {
        RuleError::NotFound(_) => Status::not_found(error.to_string()),
        RuleError::NameTaken(_) => Status::already_exists(error.to_string()),
        RuleError::Builtin(_) => Status::failed_precondition(error.to_string()),
        RuleError::Invalid(violations) => invalid_argument(&violations),
        RuleError::Database(e) => netward_shared::status::internal("changing a rule", &e),
    }
}

/// A required message field that was left unset.
fn required(field: &str) -> Status {
    invalid_argument(&[FieldViolation::new(field, "unset", "required")])
}

fn parse_device(id: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| invalid_argument(&[FieldViolation::new("device_id", id, "not a UUID")]))
}

fn parse_id(id: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| invalid_argument(&[FieldViolation::new("id", id, "not a UUID")]))
}

/// Page size (0 = 100, at most 1000) and the offset a page token carries.
fn page(token: &str, size: u32) -> Result<(usize, usize), Status> {
    let offset = if token.is_empty() {
        0
    } else {
        token.parse::<usize>().map_err(|_| {
            invalid_argument(&[FieldViolation::new(
                "page_token",
                token,
                "not a token from a previous response",
            )])
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

#[tonic::async_trait]
impl AlertingService for AlertingGrpc {
    type IngestStream = Events<v1::IngestResponse>;

    async fn ingest(
        &self,
        request: Request<Streaming<v1::IngestRequest>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(v1::IngestRequest {
                msg: Some(v1::ingest_request::Msg::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of an Ingest stream must be an IngestHello",
                ));
            }
        };
        tracing::info!(executor_id = %hello.executor_id, "ingest stream opened");
        let ingestor = self.ingestor.clone();
        let backlog = self.backlog.clone();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = inbound.message() => message,
                };
                let first = match message {
                    Ok(Some(v1::IngestRequest {
                        msg: Some(v1::ingest_request::Msg::Batch(batch)),
                    })) => batch,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                };
                // Batches that have already arrived behind it are stored
                // with it, in one transaction: a sender with several in
                // flight pays one commit for them all.
                let mut batches = vec![first];
                let mut results = batches[0].probes.len();
                let mut ended = false;
                while batches.len() < MAX_GROUP_BATCHES && results < MAX_GROUP_RESULTS {
                    match inbound.message().now_or_never() {
                        Some(Ok(Some(v1::IngestRequest {
                            msg: Some(v1::ingest_request::Msg::Batch(batch)),
                        }))) => {
                            results += batch.probes.len();
                            batches.push(batch);
                        }
                        Some(Ok(Some(_))) => {}
                        Some(Ok(None) | Err(_)) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                // Evaluation behind by more than its bound: store nothing,
                // ack nothing; the sender keeps its batches and replays them
                // once the stream is back (see `backlog.rs`).
                if backlog.is_full() && backlog.drain().await.is_err() && backlog.is_full() {
                    tracing::warn!(
                        queued = backlog.queued(),
                        "evaluation backlog full; ending the ingest stream unacked"
                    );
                    let _ = tx
                        .send(Err(Status::unavailable(
                            "evaluation backlog full; replay later",
                        )))
                        .await;
                    return;
                }
                for batch in &mut batches {
                    let stripped = crate::ingest::strip_agent_nuls(batch);
                    if stripped > 0 {
                        metrics::counter!("alerting_agent_nuls_stripped_total")
                            .increment(stripped as u64);
                    }
                }
                let span = tracing::info_span!("alerting.ingest", batches = batches.len(), batch_uid = %batches[0].batch_uid, results = results + batches.iter().map(|b| b.samples.len()).sum::<usize>());
                netward_shared::trace_context::set_parent(&span, batches[0].trace_context.as_ref());
                let outcomes = {
                    use tracing::Instrument as _;
                    ingestor
                        .ingest_all(&batches, chrono::Utc::now())
                        .instrument(span)
                        .await
                };
                let outcomes = match outcomes {
                    Ok(outcomes) => outcomes,
                    Err(error) => {
                        // Never ack what is not stored. Ending the stream
                        // makes the sender reconnect and replay it.
                        tracing::warn!(%error, "storage failed; ending the ingest stream unacked");
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "storage unavailable; replay later",
                            )))
                            .await;
                        return;
                    }
                };
                // Acked only now: the write has committed.
                let mut evaluate = Vec::new();
                let mut snmp = Vec::new();
                for (batch, outcome) in batches.iter().zip(outcomes) {
                    let response = match outcome {
                        Ok(ingested) => {
                            evaluate.extend(ingested.rows);
                            snmp.push(ingested.snmp);
                            v1::ingest_response::Msg::Ack(v1::IngestAck {
                                sequence: batch.sequence,
                                batch_uid: batch.batch_uid.clone(),
                                stored: ingested.stored.rows,
                                duplicate: ingested.stored.duplicate,
                            })
                        }
                        Err(reason) => {
                            metrics::counter!("alerting_batches_rejected_total").increment(1);
                            tracing::warn!(batch_uid = %batch.batch_uid, executor_id = %batch.executor_id, %reason, "batch rejected");
                            v1::ingest_response::Msg::Reject(v1::IngestReject {
                                sequence: batch.sequence,
                                batch_uid: batch.batch_uid.clone(),
                                reason,
                            })
                        }
                    };
                    let sent = tx
                        .send(Ok(v1::IngestResponse {
                            msg: Some(response),
                        }))
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
                // Then state and alerts: stored rows, in order, once each.
                // A failure leaves them queued in the backlog, retried by
                // the next group and by its own tick; it never ends the
                // stream (the rows are stored and acked).
                {
                    use tracing::Instrument as _;
                    let span = tracing::info_span!("alerting.evaluate", results = evaluate.len());
                    let _ = backlog.probes(evaluate).instrument(span).await;
                }
                for snmp in snmp.iter().filter(|s| !s.duplicate && s.samples > 0) {
                    let observations = crate::snmp::evaluate::observations(snmp);
                    let _ = backlog.snmp(observations).await;
                }
                if ended {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_device_status(
        &self,
        request: Request<v1::GetDeviceStatusRequest>,
    ) -> Result<Response<v1::GetDeviceStatusResponse>, Status> {
        let id = request.into_inner().device_id;
        let uuid = parse_device(&id)?;
        let known = self
            .copy
            .read()
            .map(|c| c.devices.contains_key(&id))
            .unwrap_or(false);
        let row = match self.evaluator.status(uuid) {
            Some(row) => row,
            None if known => StateRow::unknown(uuid, chrono::Utc::now()),
            None => {
                return Err(Status::not_found(format!(
                    "device {id} is neither in the inventory nor probed"
                )));
            }
        };
        Ok(Response::new(v1::GetDeviceStatusResponse {
            status: Some(self.status(&row)),
        }))
    }

    async fn list_device_statuses(
        &self,
        request: Request<v1::ListDeviceStatusesRequest>,
    ) -> Result<Response<v1::ListDeviceStatusesResponse>, Status> {
        let r = request.into_inner();
        let size = match r.page_size {
            0 => 100,
            n => n.min(1000),
        } as usize;
        // Every enabled device of the inventory has a status (UNKNOWN until probed).
        let mut rows: std::collections::HashMap<String, StateRow> = self
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
                    .filter(|d| d.enabled.unwrap_or(true))
                    .map(|d| d.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let query = r.query.to_lowercase();
        let mut statuses: Vec<v1::DeviceStatus> = ids
            .into_iter()
            .map(|id| {
                let row = rows.remove(&id).unwrap_or_else(|| {
                    StateRow::unknown(
                        uuid::Uuid::parse_str(&id).unwrap_or_default(),
                        chrono::Utc::now(),
                    )
                });
                self.status(&row)
            })
            .filter(|s| {
                (r.site_id.is_empty() || s.site_id == r.site_id)
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
        let now = chrono::Utc::now();
        let oldest_result_age = statuses
            .iter()
            .filter_map(|s| s.last_result_at.as_ref().and_then(from_timestamp))
            .min()
            .map(|oldest| (now - oldest).to_std().unwrap_or_default())
            .map(|age| prost_types::Duration {
                seconds: age.as_secs() as i64,
                nanos: age.subsec_nanos() as i32,
            });
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
                invalid_argument(&[FieldViolation::new(
                    "page_token",
                    &r.page_token,
                    "not a token from a previous response",
                )])
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
        Ok(Response::new(v1::ListDeviceStatusesResponse {
            statuses: page,
            next_page_token,
            counts: Some(counts),
            total_count,
            oldest_result_age,
        }))
    }

    async fn get_device_history(
        &self,
        request: Request<v1::GetDeviceHistoryRequest>,
    ) -> Result<Response<v1::GetDeviceHistoryResponse>, Status> {
        let r = request.into_inner();
        let device = parse_device(&r.device_id)?;
        let (start, end, step) = HistoryRange::check(
            (r.start_time, r.end_time, r.step),
            chrono::TimeDelta::hours(1),
            chrono::Utc::now(),
        )
        .map_err(|v| invalid_argument(&v))?;
        let store = self.ingestor.store();
        let rows = store
            .history(device, start, end, step)
            .await
            .map_err(|e| netward_shared::status::internal("reading history", &e))?;
        let changes = store
            .changes(device, start, end)
            .await
            .map_err(|e| netward_shared::status::internal("reading state changes", &e))?;
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
        Ok(Response::new(v1::GetDeviceHistoryResponse {
            device_id: r.device_id,
            step: Some(prost_types::Duration {
                seconds: step,
                nanos: 0,
            }),
            points,
            state_changes,
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        let r = request.into_inner();
        let (offset, size) = page(&r.page_token, r.page_size)?;
        let mut alerts = self
            .alerts
            .list(r.include_resolved, 100_000)
            .await
            .map_err(|e| netward_shared::status::internal("listing alerts", &e))?;
        alerts.retain(|a| {
            (r.states.is_empty() || r.states.contains(&a.state))
                && (r.severities.is_empty() || r.severities.contains(&a.severity))
                && (r.site_id.is_empty() || a.site_id == r.site_id)
                && (r.device_id.is_empty() || a.device_id == r.device_id)
                && (r.rule_id.is_empty() || a.rule_id == r.rule_id)
                && (r.rule_kind == 0 || a.rule_kind == r.rule_kind)
        });
        let total_count = alerts.len() as u64;
        let (alerts, next_page_token) = page_of(alerts, offset, size);
        Ok(Response::new(v1::ListAlertsResponse {
            alerts,
            next_page_token,
            total_count,
        }))
    }

    async fn get_alert(
        &self,
        request: Request<v1::GetAlertRequest>,
    ) -> Result<Response<v1::GetAlertResponse>, Status> {
        let id = request.into_inner().id;
        let uuid = parse_id(&id)?;
        let alert = self
            .alerts
            .get(uuid)
            .await
            .map_err(|e| netward_shared::status::internal("reading an alert", &e))?
            .ok_or_else(|| Status::not_found(format!("alert {id} not found")))?;
        Ok(Response::new(v1::GetAlertResponse { alert: Some(alert) }))
    }

    async fn ack_alert(
        &self,
        request: Request<v1::AckAlertRequest>,
    ) -> Result<Response<v1::AckAlertResponse>, Status> {
        let r = request.into_inner();
        let mut violations = Vec::new();
        if uuid::Uuid::parse_str(&r.id).is_err() {
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
            return Err(invalid_argument(&violations));
        }
        let alert = self
            .alerts
            .ack(&r.id, &r.acknowledged_by, &r.comment)
            .await
            .map_err(|e| netward_shared::status::internal("acknowledging an alert", &e))?
            .ok_or_else(|| Status::failed_precondition(format!("alert {} is not open", r.id)))?;
        Ok(Response::new(v1::AckAlertResponse { alert: Some(alert) }))
    }

    async fn create_rule(
        &self,
        request: Request<v1::CreateRuleRequest>,
    ) -> Result<Response<v1::CreateRuleResponse>, Status> {
        let rule = request.into_inner().rule.ok_or_else(|| required("rule"))?;
        let rule = self.alerts.create_rule(&rule).await.map_err(rule_status)?;
        Ok(Response::new(v1::CreateRuleResponse { rule: Some(rule) }))
    }

    async fn get_rule(
        &self,
        request: Request<v1::GetRuleRequest>,
    ) -> Result<Response<v1::GetRuleResponse>, Status> {
        let id = request.into_inner().id;
        let rule = self
            .alerts
            .rules()
            .into_iter()
            .find(|r| crate::rules::matches(r, &id))
            .ok_or_else(|| Status::not_found(format!("rule {id} not found")))?;
        Ok(Response::new(v1::GetRuleResponse { rule: Some(rule) }))
    }

    async fn update_rule(
        &self,
        request: Request<v1::UpdateRuleRequest>,
    ) -> Result<Response<v1::UpdateRuleResponse>, Status> {
        let r = request.into_inner();
        let rule = r.rule.ok_or_else(|| required("rule"))?;
        if rule.id.is_empty() {
            return Err(invalid_argument(&[FieldViolation::new(
                "rule.id",
                "",
                "required: the id (or name) of the rule to change",
            )]));
        }
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let rule = self
            .alerts
            .update_rule(&rule, &mask)
            .await
            .map_err(rule_status)?;
        Ok(Response::new(v1::UpdateRuleResponse { rule: Some(rule) }))
    }

    async fn delete_rule(
        &self,
        request: Request<v1::DeleteRuleRequest>,
    ) -> Result<Response<v1::DeleteRuleResponse>, Status> {
        let id = request.into_inner().id;
        self.alerts.delete_rule(&id).await.map_err(rule_status)?;
        Ok(Response::new(v1::DeleteRuleResponse {}))
    }

    async fn list_rules(
        &self,
        request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        let r = request.into_inner();
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
        Ok(Response::new(v1::ListRulesResponse {
            rules,
            next_page_token,
        }))
    }

    async fn create_silence(
        &self,
        request: Request<v1::CreateSilenceRequest>,
    ) -> Result<Response<v1::CreateSilenceResponse>, Status> {
        let input = request
            .into_inner()
            .silence
            .ok_or_else(|| required("silence"))?;
        let now = chrono::Utc::now();
        let silence = {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            Silence::create(&input, &copy, now).map_err(|v| invalid_argument(&v))?
        };
        if !silence.body.rule_id.is_empty()
            && !self
                .alerts
                .rules()
                .iter()
                .any(|r| r.id == silence.body.rule_id)
        {
            return Err(invalid_argument(&[FieldViolation::new(
                "silence.rule_id",
                &silence.body.rule_id,
                "no such rule",
            )]));
        }
        let silence = self
            .alerts
            .silences()
            .insert(silence)
            .await
            .map_err(|e| netward_shared::status::internal("storing a silence", &e))?;
        tracing::info!(id = %silence.id, maintenance = silence.maintenance(), by = %silence.body.created_by, "silence created");
        self.apply_silences(now).await?;
        Ok(Response::new(v1::CreateSilenceResponse {
            silence: Some(silence.view(now)),
        }))
    }

    async fn get_silence(
        &self,
        request: Request<v1::GetSilenceRequest>,
    ) -> Result<Response<v1::GetSilenceResponse>, Status> {
        let id = request.into_inner().id;
        let silence = self
            .alerts
            .silences()
            .get(parse_id(&id)?)
            .await
            .map_err(|e| netward_shared::status::internal("reading a silence", &e))?
            .ok_or_else(|| Status::not_found(format!("silence {id} not found")))?;
        Ok(Response::new(v1::GetSilenceResponse {
            silence: Some(silence.view(chrono::Utc::now())),
        }))
    }

    async fn list_silences(
        &self,
        request: Request<v1::ListSilencesRequest>,
    ) -> Result<Response<v1::ListSilencesResponse>, Status> {
        let r = request.into_inner();
        let (offset, size) = page(r.page_token.as_str(), r.page_size)?;
        let device = if r.device_id.is_empty() {
            None
        } else {
            let copy = self.copy.read().unwrap_or_else(|p| p.into_inner());
            Some(copy.devices.get(&r.device_id).cloned().ok_or_else(|| {
                invalid_argument(&[FieldViolation::new(
                    "device_id",
                    &r.device_id,
                    "no such device in the inventory",
                )])
            })?)
        };
        let now = chrono::Utc::now();
        let filter = SilenceFilter {
            include_expired: r.include_expired,
            maintenance: r.maintenance,
        };
        let all = self
            .alerts
            .silences()
            .list(&filter, now)
            .await
            .map_err(|e| netward_shared::status::internal("listing silences", &e))?;
        let matching: Vec<v1::Silence> = all
            .iter()
            .filter(|s| device.as_ref().is_none_or(|d| s.covers(d)))
            .map(|s| s.view(now))
            .collect();
        let (silences, next_page_token) = page_of(matching, offset, size);
        Ok(Response::new(v1::ListSilencesResponse {
            silences,
            next_page_token,
        }))
    }

    async fn delete_silence(
        &self,
        request: Request<v1::DeleteSilenceRequest>,
    ) -> Result<Response<v1::DeleteSilenceResponse>, Status> {
        let id = request.into_inner().id;
        let now = chrono::Utc::now();
        let silence = self
            .alerts
            .silences()
            .expire(parse_id(&id)?, now)
            .await
            .map_err(|e| netward_shared::status::internal("ending a silence", &e))?
            .ok_or_else(|| Status::not_found(format!("silence {id} not found")))?;
        tracing::info!(id = %silence.id, "silence ended");
        self.apply_silences(now).await?;
        Ok(Response::new(v1::DeleteSilenceResponse {
            silence: Some(silence.view(now)),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        let request = request.into_inner();
        let filter = ListFilter::try_from(&request)
            .map_err(|e| invalid_argument(&[FieldViolation::new(e.field, "", e.reason.clone())]))?;
        let page = self
            .notifier
            .list(&filter)
            .await
            .map_err(|e| netward_shared::status::internal("listing notifications", &e))?;
        Ok(Response::new(page.into()))
    }

    async fn get_availability(
        &self,
        request: Request<v1::GetAvailabilityRequest>,
    ) -> Result<Response<v1::GetAvailabilityResponse>, Status> {
        use crate::availability::{Figures, Transition, figures};
        let r = request.into_inner();
        let now = chrono::Utc::now();
        let end = r.end_time.as_ref().and_then(from_timestamp).unwrap_or(now);
        let start = r
            .start_time
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or(end - chrono::TimeDelta::hours(24));
        if start >= end || (end - start) > chrono::TimeDelta::days(400) {
            return Err(invalid_argument(&[FieldViolation::new(
                "start_time",
                start,
                "must be before end_time, at most 400 days before it",
            )]));
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
                        .and_then(|c| c.devices.get(&id).map(|d| d.name.clone()))
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
                                .filter(|d| d.site_id == site)
                                .map(|d| (d.id.clone(), d.name.clone()))
                                .collect();
                            let name = c
                                .devices
                                .values()
                                .find(|d| d.site_id == site)
                                .map(|d| d.site_name.clone());
                            (name, devices)
                        })
                        .unwrap_or_default();
                    let Some(site_name) = site_name else {
                        return Err(Status::not_found(format!(
                            "site {site} has no devices in the inventory"
                        )));
                    };
                    (String::new(), site.clone(), site_name, devices)
                }
                None => {
                    return Err(invalid_argument(&[FieldViolation::new(
                        "target",
                        "",
                        "give device_id or site_id",
                    )]));
                }
            };
        let store = self.ingestor.store();
        let mut total = Figures::default();
        let mut per_device = Vec::new();
        for (id, device_name) in &devices {
            let Ok(uuid) = uuid::Uuid::parse_str(id) else {
                continue;
            };
            // The state at `start`, however long ago it began: retention
            // keeps each device's last transition before its cutoff.
            let earlier = store
                .last_change_before(uuid, start)
                .await
                .map_err(|e| netward_shared::status::internal("reading state changes", &e))?;
            let within = store
                .changes(uuid, start, end)
                .await
                .map_err(|e| netward_shared::status::internal("reading state changes", &e))?;
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
        let duration = |d: std::time::Duration| prost_types::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        };
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
        Ok(Response::new(v1::GetAvailabilityResponse {
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
        }))
    }

    type WatchAlertsStream = Events<v1::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        request: Request<v1::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let r = request.into_inner();
        let shutdown = self.shutdown.clone();
        let events = tokio_stream::wrappers::BroadcastStream::new(self.alerts.events.subscribe());
        let events = tokio_stream::StreamExt::filter_map(events, move |event| match event {
            Ok(event) => {
                let alert = event.alert.as_ref()?;
                let wanted = (r.severities.is_empty() || r.severities.contains(&alert.severity))
                    && (r.site_id.is_empty() || alert.site_id == r.site_id)
                    && (r.device_id.is_empty() || alert.device_id == r.device_id);
                wanted.then_some(Ok(event))
            }
            Err(_) => Some(Err(Status::data_loss(
                "watcher too slow: alert events were dropped",
            ))),
        });
        let events =
            futures::StreamExt::take_until(events, async move { shutdown.cancelled().await });
        Ok(Response::new(Box::pin(events)))
    }

    type WatchDeviceStatesStream = Events<v1::WatchDeviceStatesResponse>;

    async fn watch_device_states(
        &self,
        request: Request<v1::WatchDeviceStatesRequest>,
    ) -> Result<Response<Self::WatchDeviceStatesStream>, Status> {
        let r = request.into_inner();
        let shutdown = self.shutdown.clone();
        let changes =
            tokio_stream::wrappers::BroadcastStream::new(self.evaluator.changes.subscribe());
        let changes = tokio_stream::StreamExt::filter_map(changes, move |change| match change {
            Ok(change) => {
                let wanted = (r.site_id.is_empty() || change.site_id == r.site_id)
                    && (r.device_id.is_empty() || change.device_id == r.device_id)
                    && (r.states.is_empty() || r.states.contains(&change.to_state));
                wanted.then(|| {
                    Ok(v1::WatchDeviceStatesResponse {
                        change: Some(change),
                        trace_context: None,
                    })
                })
            }
            Err(_) => Some(Err(Status::data_loss(
                "watcher too slow: state changes were dropped",
            ))),
        });
        let changes =
            futures::StreamExt::take_until(changes, async move { shutdown.cancelled().await });
        Ok(Response::new(Box::pin(changes)))
    }

    async fn list_interfaces(
        &self,
        request: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        let r = request.into_inner();
        let device = parse_device(&r.device_id)?;
        let device_name = self
            .copy
            .read()
            .ok()
            .and_then(|c| c.devices.get(&r.device_id).map(|d| d.name.clone()))
            .unwrap_or_default();
        let (polled_at, mut interfaces) = self.snmp.interfaces_of(device);
        if device_name.is_empty() && polled_at.is_none() && interfaces.is_empty() {
            return Err(Status::not_found(format!(
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
        Ok(Response::new(v1::ListInterfacesResponse {
            device_id: r.device_id,
            device_name,
            polled_at: polled_at.map(ts),
            interfaces,
            last_snmp_outcome,
            last_snmp_error,
        }))
    }

    async fn get_interface_history(
        &self,
        request: Request<v1::GetInterfaceHistoryRequest>,
    ) -> Result<Response<v1::GetInterfaceHistoryResponse>, Status> {
        let r = request.into_inner();
        let device = parse_device(&r.device_id)?;
        let now = chrono::Utc::now();
        let range = HistoryRange::check(
            (r.start_time, r.end_time, r.step),
            chrono::TimeDelta::hours(24),
            now,
        );
        let (start, end, step) = match range {
            Ok(range) if r.if_index > 0 => range,
            Ok(_) => {
                return Err(invalid_argument(&[FieldViolation::new(
                    "if_index",
                    0,
                    "required, >= 1",
                )]));
            }
            Err(violations) => return Err(invalid_argument(&violations)),
        };
        let raw_since = now
            - chrono::TimeDelta::from_std(self.ingestor.retention())
                .unwrap_or(chrono::TimeDelta::days(7));
        let (step, points) = self
            .snmp
            .history(device, r.if_index, (start, end), step, raw_since)
            .await
            .map_err(|e| netward_shared::status::internal("reading interface history", &e))?;
        let if_name = self
            .snmp
            .interfaces_of(device)
            .1
            .into_iter()
            .find(|i| i.if_index == r.if_index)
            .map(|i| i.if_name)
            .unwrap_or_default();
        Ok(Response::new(v1::GetInterfaceHistoryResponse {
            device_id: r.device_id,
            if_index: r.if_index,
            if_name,
            step: Some(prost_types::Duration {
                seconds: step,
                nanos: 0,
            }),
            points,
        }))
    }
}

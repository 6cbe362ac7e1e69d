//! `AlertingService` over the domain ([`Alerting`]): ingest (ping results
//! and SNMP samples), device status and history, alerts, rules, silences,
//! notifications, availability, interfaces, and the watch streams. Messages
//! in, domain calls, messages and statuses out; every domain error becomes
//! a status in one place (`From<Error> for Status`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt as _, Stream};
use netward_shared::audit::AuditEvent;
use netward_shared::auth::Caller;
use netward_shared::auth::grant::GrantKey;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_server::AlertingService;
use netward_shared::status::invalid_argument;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::access;
use crate::service::{Alerting, BatchOutcome, Error, enum_filter, id_filter};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// At most this many batches, or results, are stored in one transaction.
const MAX_GROUP_BATCHES: usize = 32;
const MAX_GROUP_RESULTS: usize = 10_000;

/// The one mapping from domain errors to gRPC statuses.
impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => invalid_argument(&violations),
            Error::NotFound(message) => Status::not_found(message),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Unavailable(message) => Status::unavailable(message),
            Error::Storage { context, source } => {
                netward_shared::status::internal(context, &source)
            }
        }
    }
}

pub struct AlertingGrpc {
    alerting: Arc<Alerting>,
    /// Verifies the grants of executor tokens' results.
    grant_key: Option<GrantKey>,
    /// Ends open Ingest and watch streams when the server shuts down.
    shutdown: CancellationToken,
}

impl AlertingGrpc {
    pub fn new(alerting: Arc<Alerting>, shutdown: CancellationToken) -> Self {
        Self {
            alerting,
            grant_key: None,
            shutdown,
        }
    }

    /// The key executor tokens' results are checked against (`auth.grant_key`).
    pub fn with_grant_key(mut self, key: Option<GrantKey>) -> Self {
        self.grant_key = key;
        self
    }

    /// Records a change `caller` made (after it succeeded).
    async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        object_kind: &str,
        object_id: &str,
        detail: serde_json::Value,
    ) {
        let event = AuditEvent::new(caller, "alerting", action, object_kind, object_id, detail);
        self.alerting.record(event).await;
    }
}

/// What the audit trail says about a rule: its name and settings, as JSON.
fn rule_detail(rule: &v1::Rule) -> serde_json::Value {
    json!({
        "name": rule.name,
        "kind": rule.kind,
        "severity": rule.severity,
        "threshold": rule.threshold,
        "enabled": rule.enabled,
    })
}

#[tonic::async_trait]
impl AlertingService for AlertingGrpc {
    type IngestStream = Events<v1::IngestResponse>;

    async fn ingest(
        &self,
        request: Request<Streaming<v1::IngestRequest>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let caller = Caller::of(&request);
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
        crate::ingest::check_hello(&hello).map_err(Status::invalid_argument)?;
        let stream_kind = hello.kind();
        tracing::info!(executor_id = %hello.executor_id, caller = %caller.name, "ingest stream opened");
        let alerting = self.alerting.clone();
        let grant_key = self.grant_key.clone();
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
                // An executor token's results outside its grants are refused
                // for good, before anything is stored.
                let now_unix = chrono::Utc::now().timestamp();
                let mut refused = Vec::new();
                batches.retain(|batch| {
                    let refusal = match crate::ingest::check_stream_kind(stream_kind, batch) {
                        Err(message) => Some(("invalid", message)),
                        Ok(()) => crate::grants::refusal(grant_key.as_ref(), &caller, batch, now_unix),
                    };
                    match refusal {
                        None => true,
                        Some((reason, message)) => {
                            metrics::counter!("netward_alerting_batches_rejected_total").increment(1);
                            metrics::counter!("netward_alerting_results_rejected_total", "reason" => reason)
                                .increment((batch.probes.len() + batch.samples.len()) as u64);
                            tracing::warn!(caller = %caller.name, batch_id = %batch.batch_id, %message, "batch refused");
                            refused.push(v1::IngestReject {
                                sequence: batch.sequence,
                                batch_uid: batch.batch_uid.clone(),
                                reason: message,
                            });
                            false
                        }
                    }
                });
                for reject in refused {
                    let response = v1::IngestResponse {
                        msg: Some(v1::ingest_response::Msg::Reject(reject)),
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                if batches.is_empty() {
                    if ended {
                        return;
                    }
                    continue;
                }
                // Nothing stored is nothing acked: ending the stream makes
                // the sender reconnect and replay.
                let group = match alerting.store_batches(&mut batches).await {
                    Ok(group) => group,
                    Err(error) => {
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                };
                // Acked only now: the write has committed.
                for (batch, outcome) in batches.iter().zip(&group.outcomes) {
                    let response = match outcome {
                        BatchOutcome::Stored { rows, duplicate } => {
                            v1::ingest_response::Msg::Ack(v1::IngestAck {
                                sequence: batch.sequence,
                                batch_uid: batch.batch_uid.clone(),
                                stored: *rows,
                                duplicate: *duplicate,
                            })
                        }
                        BatchOutcome::Rejected(reason) => {
                            v1::ingest_response::Msg::Reject(v1::IngestReject {
                                sequence: batch.sequence,
                                batch_uid: batch.batch_uid.clone(),
                                reason: reason.clone(),
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
                // Then state and alerts; a failure never ends the stream.
                alerting.evaluate(group).await;
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
        let caller = Caller::of(&request);
        let id = request.into_inner().device_id;
        self.alerting.check_device(&caller.scope, &id)?;
        let status = self.alerting.device_status(&id)?;
        Ok(Response::new(v1::GetDeviceStatusResponse {
            status: Some(status),
        }))
    }

    async fn list_device_statuses(
        &self,
        request: Request<v1::ListDeviceStatusesRequest>,
    ) -> Result<Response<v1::ListDeviceStatusesResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .device_statuses(&request.into_inner(), &caller.scope)?;
        Ok(Response::new(response))
    }

    async fn get_device_history(
        &self,
        request: Request<v1::GetDeviceHistoryRequest>,
    ) -> Result<Response<v1::GetDeviceHistoryResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        self.alerting.check_device(&caller.scope, &r.device_id)?;
        let response = self.alerting.device_history(r).await?;
        Ok(Response::new(response))
    }

    async fn list_alerts(
        &self,
        request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .list_alerts(&request.into_inner(), &caller.scope)
            .await?;
        Ok(Response::new(response))
    }

    async fn get_alert(
        &self,
        request: Request<v1::GetAlertRequest>,
    ) -> Result<Response<v1::GetAlertResponse>, Status> {
        let caller = Caller::of(&request);
        let alert = self
            .alerting
            .alert(&request.into_inner().id, &caller.scope)
            .await?;
        Ok(Response::new(v1::GetAlertResponse { alert: Some(alert) }))
    }

    async fn ack_alert(
        &self,
        request: Request<v1::AckAlertRequest>,
    ) -> Result<Response<v1::AckAlertResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let alert = self.alerting.ack_alert(&r, &caller.scope).await?;
        let detail = json!({ "acknowledged_by": r.acknowledged_by, "comment": r.comment });
        self.audit(&caller, "AckAlert", "alert", &alert.id, detail)
            .await;
        Ok(Response::new(v1::AckAlertResponse { alert: Some(alert) }))
    }

    async fn create_rule(
        &self,
        request: Request<v1::CreateRuleRequest>,
    ) -> Result<Response<v1::CreateRuleResponse>, Status> {
        let caller = Caller::of(&request);
        Alerting::check_global_change(&caller.scope, "rules")?;
        let rule = self.alerting.create_rule(request.into_inner().rule).await?;
        self.audit(&caller, "CreateRule", "rule", &rule.id, rule_detail(&rule))
            .await;
        Ok(Response::new(v1::CreateRuleResponse { rule: Some(rule) }))
    }

    async fn get_rule(
        &self,
        request: Request<v1::GetRuleRequest>,
    ) -> Result<Response<v1::GetRuleResponse>, Status> {
        let rule = self.alerting.rule(&request.into_inner().id)?;
        Ok(Response::new(v1::GetRuleResponse { rule: Some(rule) }))
    }

    async fn update_rule(
        &self,
        request: Request<v1::UpdateRuleRequest>,
    ) -> Result<Response<v1::UpdateRuleResponse>, Status> {
        let caller = Caller::of(&request);
        Alerting::check_global_change(&caller.scope, "rules")?;
        let r = request.into_inner();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let rule = self.alerting.update_rule(r.rule, &mask).await?;
        let mut detail = rule_detail(&rule);
        detail["fields"] = json!(mask);
        self.audit(&caller, "UpdateRule", "rule", &rule.id, detail)
            .await;
        Ok(Response::new(v1::UpdateRuleResponse { rule: Some(rule) }))
    }

    async fn delete_rule(
        &self,
        request: Request<v1::DeleteRuleRequest>,
    ) -> Result<Response<v1::DeleteRuleResponse>, Status> {
        let caller = Caller::of(&request);
        Alerting::check_global_change(&caller.scope, "rules")?;
        let id = request.into_inner().id;
        self.alerting.delete_rule(&id).await?;
        self.audit(&caller, "DeleteRule", "rule", &id, json!({}))
            .await;
        Ok(Response::new(v1::DeleteRuleResponse {}))
    }

    async fn list_rules(
        &self,
        request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        let response = self.alerting.list_rules(&request.into_inner())?;
        Ok(Response::new(response))
    }

    async fn create_silence(
        &self,
        request: Request<v1::CreateSilenceRequest>,
    ) -> Result<Response<v1::CreateSilenceResponse>, Status> {
        let caller = Caller::of(&request);
        let silence = self
            .alerting
            .create_silence(request.into_inner().silence, &caller.scope)
            .await?;
        let detail = json!({
            "rule_id": silence.rule_id,
            "maintenance": silence.maintenance,
            "matchers": silence.matchers.len(),
            "created_by": silence.created_by,
            "comment": silence.comment,
            "starts_at": silence.starts_at.as_ref().map(|t| t.seconds),
            "ends_at": silence.ends_at.as_ref().map(|t| t.seconds),
        });
        self.audit(&caller, "CreateSilence", "silence", &silence.id, detail)
            .await;
        Ok(Response::new(v1::CreateSilenceResponse {
            silence: Some(silence),
        }))
    }

    async fn get_silence(
        &self,
        request: Request<v1::GetSilenceRequest>,
    ) -> Result<Response<v1::GetSilenceResponse>, Status> {
        let caller = Caller::of(&request);
        let silence = self
            .alerting
            .silence(&request.into_inner().id, &caller.scope)
            .await?;
        Ok(Response::new(v1::GetSilenceResponse {
            silence: Some(silence),
        }))
    }

    async fn list_silences(
        &self,
        request: Request<v1::ListSilencesRequest>,
    ) -> Result<Response<v1::ListSilencesResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .list_silences(&request.into_inner(), &caller.scope)
            .await?;
        Ok(Response::new(response))
    }

    async fn delete_silence(
        &self,
        request: Request<v1::DeleteSilenceRequest>,
    ) -> Result<Response<v1::DeleteSilenceResponse>, Status> {
        let caller = Caller::of(&request);
        let silence = self
            .alerting
            .delete_silence(&request.into_inner().id, &caller.scope)
            .await?;
        self.audit(&caller, "DeleteSilence", "silence", &silence.id, json!({}))
            .await;
        Ok(Response::new(v1::DeleteSilenceResponse {
            silence: Some(silence),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .list_notifications(&request.into_inner(), &caller.scope)
            .await?;
        Ok(Response::new(response))
    }

    async fn get_availability(
        &self,
        request: Request<v1::GetAvailabilityRequest>,
    ) -> Result<Response<v1::GetAvailabilityResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .availability(request.into_inner(), &caller.scope)
            .await?;
        Ok(Response::new(response))
    }

    async fn get_availability_report(
        &self,
        request: Request<v1::GetAvailabilityReportRequest>,
    ) -> Result<Response<v1::GetAvailabilityReportResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .availability_report(request.get_ref(), &caller.scope)
            .await?;
        Ok(Response::new(response))
    }

    type WatchAlertsStream = Events<v1::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        request: Request<v1::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let scope = Caller::of(&request).scope;
        let copy = self.alerting.copy();
        let mut r = request.into_inner();
        // A malformed id would open a stream that never matches: refused,
        // as ListAlerts refuses it.
        r.site_id = id_filter("site_id", &r.site_id)?;
        r.device_id = id_filter("device_id", &r.device_id)?;
        enum_filter::<v1::Severity>("severities", &r.severities, "Severity")?;
        let shutdown = self.shutdown.clone();
        let events = tokio_stream::wrappers::BroadcastStream::new(self.alerting.alert_events());
        let events = tokio_stream::StreamExt::filter_map(events, move |event| match event {
            Ok(event) => {
                let alert = event.alert.as_ref()?;
                let wanted = (r.severities.is_empty() || r.severities.contains(&alert.severity))
                    && (r.site_id.is_empty() || alert.site_id == r.site_id)
                    && (r.device_id.is_empty() || alert.device_id == r.device_id)
                    && (scope.is_unlimited()
                        || access::alert_allowed(
                            &scope,
                            &copy.read().unwrap_or_else(|p| p.into_inner()),
                            alert,
                        ));
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
        let scope = Caller::of(&request).scope;
        let copy = self.alerting.copy();
        let mut r = request.into_inner();
        r.site_id = id_filter("site_id", &r.site_id)?;
        r.device_id = id_filter("device_id", &r.device_id)?;
        enum_filter::<v1::DeviceState>("states", &r.states, "DeviceState")?;
        let shutdown = self.shutdown.clone();
        let changes = tokio_stream::wrappers::BroadcastStream::new(self.alerting.state_changes());
        let changes = tokio_stream::StreamExt::filter_map(changes, move |change| match change {
            Ok(event) => {
                let change = event.change.as_ref()?;
                let wanted = (r.site_id.is_empty() || change.site_id == r.site_id)
                    && (r.device_id.is_empty() || change.device_id == r.device_id)
                    && (r.states.is_empty() || r.states.contains(&change.to_state))
                    && (scope.is_unlimited()
                        || access::device_id_allowed(
                            &scope,
                            &copy.read().unwrap_or_else(|p| p.into_inner()),
                            &change.device_id,
                        ));
                wanted.then_some(Ok(event))
            }
            Err(_) => Some(Err(Status::data_loss(
                "watcher too slow: state changes were dropped",
            ))),
        });
        let changes =
            futures::StreamExt::take_until(changes, async move { shutdown.cancelled().await });
        Ok(Response::new(Box::pin(changes)))
    }

    async fn get_status_summary(
        &self,
        request: Request<v1::GetStatusSummaryRequest>,
    ) -> Result<Response<v1::GetStatusSummaryResponse>, Status> {
        let caller = Caller::of(&request);
        let response = self
            .alerting
            .status_summary(&request.into_inner(), &caller.scope)
            .await?;
        Ok(Response::new(response))
    }

    async fn list_interfaces(
        &self,
        request: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        self.alerting.check_device(&caller.scope, &r.device_id)?;
        let response = self.alerting.interfaces(r)?;
        Ok(Response::new(response))
    }

    async fn get_interface_history(
        &self,
        request: Request<v1::GetInterfaceHistoryRequest>,
    ) -> Result<Response<v1::GetInterfaceHistoryResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        self.alerting.check_device(&caller.scope, &r.device_id)?;
        let response = self.alerting.interface_history(r).await?;
        Ok(Response::new(response))
    }

    async fn list_audit_events(
        &self,
        request: Request<v1::ListAuditEventsRequest>,
    ) -> Result<Response<v1::ListAuditEventsResponse>, Status> {
        let response = self.alerting.list_audit_events(request.get_ref()).await?;
        Ok(Response::new(response))
    }
}

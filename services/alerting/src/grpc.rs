//! `AlertingService` over the domain. This version serves `Ingest`; the
//! query, rule, alert and silence RPCs answer UNIMPLEMENTED until they land
//! (their messages are final in the proto).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_server::AlertingService;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::ingest::{IngestError, Ingestor};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct AlertingGrpc {
    ingestor: Arc<Ingestor>,
    /// Ends open Ingest streams when the server shuts down.
    shutdown: CancellationToken,
}

impl AlertingGrpc {
    pub fn new(ingestor: Arc<Ingestor>, shutdown: CancellationToken) -> Self {
        Self { ingestor, shutdown }
    }
}

fn later(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not served by this alerting version yet"))
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
        let shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = inbound.message() => message,
                };
                let batch = match message {
                    Ok(Some(v1::IngestRequest {
                        msg: Some(v1::ingest_request::Msg::Batch(batch)),
                    })) => batch,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                };
                let span = tracing::info_span!("alerting.ingest", batch_uid = %batch.batch_uid, results = batch.probes.len());
                netward_shared::trace_context::set_parent(&span, batch.trace_context.as_ref());
                let outcome = {
                    use tracing::Instrument as _;
                    ingestor
                        .ingest(&batch, chrono::Utc::now())
                        .instrument(span)
                        .await
                };
                let response = match outcome {
                    // Acked only now: the write has committed.
                    Ok(ingested) => v1::ingest_response::Msg::Ack(v1::IngestAck {
                        sequence: batch.sequence,
                        batch_uid: batch.batch_uid.clone(),
                        stored: ingested.stored.rows,
                        duplicate: ingested.stored.duplicate,
                    }),
                    Err(IngestError::Reject(reason)) => {
                        v1::ingest_response::Msg::Reject(v1::IngestReject {
                            sequence: batch.sequence,
                            batch_uid: batch.batch_uid.clone(),
                            reason,
                        })
                    }
                    Err(IngestError::Storage(error)) => {
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
                if tx
                    .send(Ok(v1::IngestResponse {
                        msg: Some(response),
                    }))
                    .await
                    .is_err()
                {
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
        _r: Request<v1::GetDeviceStatusRequest>,
    ) -> Result<Response<v1::GetDeviceStatusResponse>, Status> {
        Err(later("GetDeviceStatus"))
    }

    async fn list_device_statuses(
        &self,
        _r: Request<v1::ListDeviceStatusesRequest>,
    ) -> Result<Response<v1::ListDeviceStatusesResponse>, Status> {
        Err(later("ListDeviceStatuses"))
    }

    async fn get_device_history(
        &self,
        _r: Request<v1::GetDeviceHistoryRequest>,
    ) -> Result<Response<v1::GetDeviceHistoryResponse>, Status> {
        Err(later("GetDeviceHistory"))
    }

    async fn list_alerts(
        &self,
        _r: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        Err(later("ListAlerts"))
    }

    async fn get_alert(
        &self,
        _r: Request<v1::GetAlertRequest>,
    ) -> Result<Response<v1::GetAlertResponse>, Status> {
        Err(later("GetAlert"))
    }

    async fn ack_alert(
        &self,
        _r: Request<v1::AckAlertRequest>,
    ) -> Result<Response<v1::AckAlertResponse>, Status> {
        Err(later("AckAlert"))
    }

    async fn create_rule(
        &self,
        _r: Request<v1::CreateRuleRequest>,
    ) -> Result<Response<v1::CreateRuleResponse>, Status> {
        Err(later("CreateRule"))
    }

    async fn get_rule(
        &self,
        _r: Request<v1::GetRuleRequest>,
    ) -> Result<Response<v1::GetRuleResponse>, Status> {
        Err(later("GetRule"))
    }

    async fn update_rule(
        &self,
        _r: Request<v1::UpdateRuleRequest>,
    ) -> Result<Response<v1::UpdateRuleResponse>, Status> {
        Err(later("UpdateRule"))
    }

    async fn delete_rule(
        &self,
        _r: Request<v1::DeleteRuleRequest>,
    ) -> Result<Response<v1::DeleteRuleResponse>, Status> {
        Err(later("DeleteRule"))
    }

    async fn list_rules(
        &self,
        _r: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        Err(later("ListRules"))
    }

    async fn create_silence(
        &self,
        _r: Request<v1::CreateSilenceRequest>,
    ) -> Result<Response<v1::CreateSilenceResponse>, Status> {
        Err(later("CreateSilence"))
    }

    async fn get_silence(
        &self,
        _r: Request<v1::GetSilenceRequest>,
    ) -> Result<Response<v1::GetSilenceResponse>, Status> {
        Err(later("GetSilence"))
    }

    async fn list_silences(
        &self,
        _r: Request<v1::ListSilencesRequest>,
    ) -> Result<Response<v1::ListSilencesResponse>, Status> {
        Err(later("ListSilences"))
    }

    async fn delete_silence(
        &self,
        _r: Request<v1::DeleteSilenceRequest>,
    ) -> Result<Response<v1::DeleteSilenceResponse>, Status> {
        Err(later("DeleteSilence"))
    }

    async fn list_notifications(
        &self,
        _r: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        Err(later("ListNotifications"))
    }

    async fn get_availability(
        &self,
        _r: Request<v1::GetAvailabilityRequest>,
    ) -> Result<Response<v1::GetAvailabilityResponse>, Status> {
        Err(later("GetAvailability"))
    }

    type WatchAlertsStream = Events<v1::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        _r: Request<v1::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        Err(later("WatchAlerts"))
    }

    type WatchDeviceStatesStream = Events<v1::WatchDeviceStatesResponse>;

    async fn watch_device_states(
        &self,
        _r: Request<v1::WatchDeviceStatesRequest>,
    ) -> Result<Response<Self::WatchDeviceStatesStream>, Status> {
        Err(later("WatchDeviceStates"))
    }

    async fn list_interfaces(
        &self,
        _r: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        Err(later("ListInterfaces"))
    }

    async fn get_interface_history(
        &self,
        _r: Request<v1::GetInterfaceHistoryRequest>,
    ) -> Result<Response<v1::GetInterfaceHistoryResponse>, Status> {
        Err(later("GetInterfaceHistory"))
    }
}

//! A recording `AlertingService.Ingest` server for tests of senders (the
//! ping executor, the SNMP poller, the shared delivery): what alerting's
//! ingest promises — ack after storing, store a `batch_uid` once — without
//! a database. Other RPCs answer UNIMPLEMENTED.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::v1;
use crate::proto::v1::alerting_service_server::{AlertingService, AlertingServiceServer};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What the server saw and stored; survives server restarts, like a database.
#[derive(Default)]
pub struct IngestStore {
    /// Every batch uid received, with how often.
    pub received: HashMap<String, u32>,
    pub stored: HashSet<String>,
    /// The probe results of the stored batches.
    pub probes: Vec<v1::ProbeResult>,
    /// Batches stored and acked; when set, the server stores this many more
    /// then stops acking (and storing), as if its database hung.
    pub ack_budget: Option<usize>,
}

/// An `Ingest` server for tests: stores (in memory) and acks what it is
/// sent, de-duplicating by `batch_uid` as alerting does.
#[derive(Clone, Default)]
pub struct RecordingIngest {
    pub store: Arc<Mutex<IngestStore>>,
    /// Cancelled to stop the current server: its streams end at once.
    stop: Arc<Mutex<CancellationToken>>,
    /// True while paused: streams stay open but nothing is read from them,
    /// as with a stopped (SIGSTOP) alerting; HTTP/2 flow control then
    /// pushes back on the sender.
    paused: Arc<tokio::sync::watch::Sender<bool>>,
}

#[tonic::async_trait]
impl AlertingService for RecordingIngest {
    type IngestStream = Events<v1::IngestResponse>;

    async fn ingest(
        &self,
        request: Request<Streaming<v1::IngestRequest>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let mut inbound = request.into_inner();
        match inbound.message().await? {
            Some(v1::IngestRequest {
                msg: Some(v1::ingest_request::Msg::Hello(_)),
            }) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ));
            }
        }
        let store = self.store.clone();
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut paused = self.paused.subscribe();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    resumed = paused.wait_for(|paused| !paused) => if resumed.is_err() { return },
                }
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    message = inbound.message() => message,
                };
                let Ok(Some(message)) = message else { return };
                let Some(v1::ingest_request::Msg::Batch(batch)) = message.msg else {
                    continue;
                };
                let ack = {
                    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                    *store.received.entry(batch.batch_uid.clone()).or_default() += 1;
                    match store.ack_budget {
                        Some(0) => None,
                        budget => {
                            store.ack_budget = budget.map(|b| b - 1);
                            let duplicate = !store.stored.insert(batch.batch_uid.clone());
                            if !duplicate {
                                store.probes.extend(batch.probes.iter().cloned());
                            }
                            Some(v1::IngestAck {
                                sequence: batch.sequence,
                                batch_uid: batch.batch_uid,
                                stored: batch.probes.len() as u32,
                                duplicate,
                            })
                        }
                    }
                };
                if let Some(ack) = ack
                    && tx
                        .send(Ok(v1::IngestResponse {
                            msg: Some(v1::ingest_response::Msg::Ack(ack)),
                        }))
                        .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    type WatchAlertsStream = Events<v1::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        _request: Request<v1::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    type WatchDeviceStatesStream = Events<v1::WatchDeviceStatesResponse>;

    async fn watch_device_states(
        &self,
        _request: Request<v1::WatchDeviceStatesRequest>,
    ) -> Result<Response<Self::WatchDeviceStatesStream>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_status_summary(
        &self,
        _request: Request<v1::GetStatusSummaryRequest>,
    ) -> Result<Response<v1::GetStatusSummaryResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_device_status(
        &self,
        _request: Request<v1::GetDeviceStatusRequest>,
    ) -> Result<Response<v1::GetDeviceStatusResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_device_statuses(
        &self,
        _request: Request<v1::ListDeviceStatusesRequest>,
    ) -> Result<Response<v1::ListDeviceStatusesResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_device_history(
        &self,
        _request: Request<v1::GetDeviceHistoryRequest>,
    ) -> Result<Response<v1::GetDeviceHistoryResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_alerts(
        &self,
        _request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_alert(
        &self,
        _request: Request<v1::GetAlertRequest>,
    ) -> Result<Response<v1::GetAlertResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn ack_alert(
        &self,
        _request: Request<v1::AckAlertRequest>,
    ) -> Result<Response<v1::AckAlertResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn create_rule(
        &self,
        _request: Request<v1::CreateRuleRequest>,
    ) -> Result<Response<v1::CreateRuleResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_rule(
        &self,
        _request: Request<v1::GetRuleRequest>,
    ) -> Result<Response<v1::GetRuleResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn update_rule(
        &self,
        _request: Request<v1::UpdateRuleRequest>,
    ) -> Result<Response<v1::UpdateRuleResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn delete_rule(
        &self,
        _request: Request<v1::DeleteRuleRequest>,
    ) -> Result<Response<v1::DeleteRuleResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_rules(
        &self,
        _request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn create_silence(
        &self,
        _request: Request<v1::CreateSilenceRequest>,
    ) -> Result<Response<v1::CreateSilenceResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_silence(
        &self,
        _request: Request<v1::GetSilenceRequest>,
    ) -> Result<Response<v1::GetSilenceResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_silences(
        &self,
        _request: Request<v1::ListSilencesRequest>,
    ) -> Result<Response<v1::ListSilencesResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn delete_silence(
        &self,
        _request: Request<v1::DeleteSilenceRequest>,
    ) -> Result<Response<v1::DeleteSilenceResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_notifications(
        &self,
        _request: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_availability(
        &self,
        _request: Request<v1::GetAvailabilityRequest>,
    ) -> Result<Response<v1::GetAvailabilityResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_availability_report(
        &self,
        _request: Request<v1::GetAvailabilityReportRequest>,
    ) -> Result<Response<v1::GetAvailabilityReportResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_interfaces(
        &self,
        _request: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn get_interface_history(
        &self,
        _request: Request<v1::GetInterfaceHistoryRequest>,
    ) -> Result<Response<v1::GetInterfaceHistoryResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }

    async fn list_audit_events(
        &self,
        _request: Request<v1::ListAuditEventsRequest>,
    ) -> Result<Response<v1::ListAuditEventsResponse>, Status> {
        Err(Status::unimplemented("recording ingest (tests)"))
    }
}

impl RecordingIngest {
    /// Serves `ingest` on `addr` until `ingest.stop` is cancelled; every open
    /// stream then ends, unacked batches with it, as when alerting restarts.
    pub async fn serve(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let stop = CancellationToken::new();
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = stop.clone();
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(addr).expect("bind the test ingest address");
        let listener: TcpListener = socket.listen(128).expect("listen");
        let service = AlertingServiceServer::new(self.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stop.cancelled_owned(),
                )
                .await;
        })
    }

    /// Stops the running server: every open stream ends at once, unacked
    /// batches with it, as when alerting restarts.
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).cancel();
    }

    /// Stops reading the open streams (they stay connected), or reads on.
    pub fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

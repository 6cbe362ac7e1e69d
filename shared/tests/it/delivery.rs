//! The shared result sender against a real `Ingest` server built here:
//! a server that stops mid-stream and comes back gets every batch at least
//! once (stored once), nothing is dropped within the bound, and a full
//! buffer drops (and counts) its oldest batches.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use netward_shared::delivery::{DeliveryConfig, ResultSender};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_server::{AlertingService, AlertingServiceServer};
use netward_shared::testkit::eventually;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What the server saw and stored; survives server restarts, like a database.
#[derive(Default)]
struct Store {
    /// Every batch uid received, with how often.
    received: HashMap<String, u32>,
    stored: HashSet<String>,
    /// Batches stored and acked; when set, the server stores this many more
    /// then stops acking (and storing), as if its database hung.
    ack_budget: Option<usize>,
}

#[derive(Clone, Default)]
struct TestIngest {
    store: Arc<Mutex<Store>>,
    /// Cancelled to stop the current server: its streams end at once.
    stop: Arc<Mutex<CancellationToken>>,
}

#[tonic::async_trait]
impl AlertingService for TestIngest {
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
        let stop = self.stop.lock().unwrap().clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    message = inbound.message() => message,
                };
                let Ok(Some(message)) = message else { return };
                let Some(v1::ingest_request::Msg::Batch(batch)) = message.msg else {
                    continue;
                };
                let ack = {
                    let mut store = store.lock().unwrap();
                    *store.received.entry(batch.batch_uid.clone()).or_default() += 1;
                    match store.ack_budget {
                        Some(0) => None,
                        budget => {
                            store.ack_budget = budget.map(|b| b - 1);
                            let duplicate = !store.stored.insert(batch.batch_uid.clone());
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
        Err(Status::unimplemented("test ingest server"))
    }

    type WatchDeviceStatesStream = Events<v1::WatchDeviceStatesResponse>;

    async fn watch_device_states(
        &self,
        _request: Request<v1::WatchDeviceStatesRequest>,
    ) -> Result<Response<Self::WatchDeviceStatesStream>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_device_status(
        &self,
        _request: Request<v1::GetDeviceStatusRequest>,
    ) -> Result<Response<v1::GetDeviceStatusResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn list_device_statuses(
        &self,
        _request: Request<v1::ListDeviceStatusesRequest>,
    ) -> Result<Response<v1::ListDeviceStatusesResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_device_history(
        &self,
        _request: Request<v1::GetDeviceHistoryRequest>,
    ) -> Result<Response<v1::GetDeviceHistoryResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn list_alerts(
        &self,
        _request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_alert(
        &self,
        _request: Request<v1::GetAlertRequest>,
    ) -> Result<Response<v1::GetAlertResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn ack_alert(
        &self,
        _request: Request<v1::AckAlertRequest>,
    ) -> Result<Response<v1::AckAlertResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn create_rule(
        &self,
        _request: Request<v1::CreateRuleRequest>,
    ) -> Result<Response<v1::CreateRuleResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_rule(
        &self,
        _request: Request<v1::GetRuleRequest>,
    ) -> Result<Response<v1::GetRuleResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn update_rule(
        &self,
        _request: Request<v1::UpdateRuleRequest>,
    ) -> Result<Response<v1::UpdateRuleResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn delete_rule(
        &self,
        _request: Request<v1::DeleteRuleRequest>,
    ) -> Result<Response<v1::DeleteRuleResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn list_rules(
        &self,
        _request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn create_silence(
        &self,
        _request: Request<v1::CreateSilenceRequest>,
    ) -> Result<Response<v1::CreateSilenceResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_silence(
        &self,
        _request: Request<v1::GetSilenceRequest>,
    ) -> Result<Response<v1::GetSilenceResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn list_silences(
        &self,
        _request: Request<v1::ListSilencesRequest>,
    ) -> Result<Response<v1::ListSilencesResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn delete_silence(
        &self,
        _request: Request<v1::DeleteSilenceRequest>,
    ) -> Result<Response<v1::DeleteSilenceResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn list_notifications(
        &self,
        _request: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_availability(
        &self,
        _request: Request<v1::GetAvailabilityRequest>,
    ) -> Result<Response<v1::GetAvailabilityResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn list_interfaces(
        &self,
        _request: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }

    async fn get_interface_history(
        &self,
        _request: Request<v1::GetInterfaceHistoryRequest>,
    ) -> Result<Response<v1::GetInterfaceHistoryResponse>, Status> {
        Err(Status::unimplemented("test ingest server"))
    }
}

/// Serves `ingest` on `addr` until `ingest.stop` is cancelled; every open
/// stream then ends, unacked batches with it, as when alerting restarts.
async fn serve(ingest: &TestIngest, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let stop = CancellationToken::new();
    *ingest.stop.lock().unwrap() = stop.clone();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    let listener: TcpListener = socket.listen(128).unwrap();
    let service = AlertingServiceServer::new(ingest.clone());
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

async fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn sender(addr: SocketAddr, buffer_batches: usize, stop: &CancellationToken) -> ResultSender {
    ResultSender::start(
        DeliveryConfig {
            executor_id: "test-executor".into(),
            kind: v1::ExecutorKind::Ping,
            alerting_url: format!("http://{addr}"),
            token: None,
            buffer_batches,
        },
        stop.clone(),
    )
    .unwrap()
}

fn batch(i: usize) -> v1::ResultBatch {
    v1::ResultBatch {
        batch_uid: format!("batch-{i:04}"),
        cycle_id: 1,
        probes: vec![v1::ProbeResult {
            device_id: format!("device-{i}"),
            sent: 3,
            received: 3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_server_that_stops_mid_stream_gets_everything_after_it_returns() {
    let ingest = TestIngest::default();
    ingest.store.lock().unwrap().ack_budget = Some(30);
    let addr = free_addr().await;
    let server = serve(&ingest, addr).await;
    let stop = CancellationToken::new();
    let sender = sender(addr, 1000, &stop);

    for i in 0..60 {
        sender.send(batch(i));
    }
    // The server stores 30, receives the rest, and then dies unacking them.
    let store = ingest.store.clone();
    eventually(
        "the server receives all 60",
        Duration::from_secs(10),
        || {
            let n = store.lock().unwrap().received.len();
            async move { (n == 60).then_some(()) }
        },
    )
    .await;
    assert_eq!(sender.stats().acked, 30);
    ingest.stop.lock().unwrap().cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();

    // While it is away, more results come.
    for i in 60..100 {
        sender.send(batch(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sender.stats().buffered, 70);

    ingest.store.lock().unwrap().ack_budget = None;
    let server = serve(&ingest, addr).await;
    assert!(
        sender.drain(Duration::from_secs(20)).await,
        "{:?}",
        sender.stats()
    );
    let stats = sender.stats();
    let store = ingest.store.lock().unwrap();
    assert_eq!(store.stored.len(), 100, "every batch stored");
    assert!((0..100).all(|i| store.received.contains_key(&format!("batch-{i:04}"))));
    // The 30 unacked before the crash were sent again.
    assert!(stats.replayed >= 30, "{stats:?}");
    assert!(store.received.values().filter(|n| **n > 1).count() >= 30);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.acked, 100);
    assert_eq!(stats.buffered, 0);
    drop(store);
    stop.cancel();
    server.abort();
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let ingest = TestIngest::default();
    let addr = free_addr().await;
    let stop = CancellationToken::new();
    // Nothing listens yet: alerting is away.
    let sender = sender(addr, 10, &stop);
    for i in 0..15 {
        sender.send(batch(i));
    }
    let stats = sender.stats();
    assert_eq!((stats.dropped, stats.buffered), (5, 10));

    let server = serve(&ingest, addr).await;
    assert!(
        sender.drain(Duration::from_secs(20)).await,
        "{:?}",
        sender.stats()
    );
    let store = ingest.store.lock().unwrap();
    let mut stored: Vec<&String> = store.stored.iter().collect();
    stored.sort();
    let expected: Vec<String> = (5..15).map(|i| format!("batch-{i:04}")).collect();
    assert_eq!(
        stored,
        expected.iter().collect::<Vec<_>>(),
        "the 5 oldest were the ones dropped"
    );
    assert_eq!(sender.stats().dropped, 5);
    drop(store);
    stop.cancel();
    server.abort();
}

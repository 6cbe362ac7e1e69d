//! Executor tokens and batch grants (issue 16): inventory, planner and
//! alerting run as a cluster of processes of the real binary with role
//! tokens and a shared `auth.grant_key`. The test plays a branch executor
//! holding an executor token: it receives the planner's signed grant with
//! each assignment, and alerting stores its results only for the devices
//! that grant names; forged, stripped or borrowed grants are refused and
//! counted. The token may only register and report as its own executor,
//! and may not read or resolve credentials. Then a real ping executor with
//! its own executor token takes over, and the devices turn UP through its
//! grants.

use std::time::Duration;

use netward_shared::auth::grant::GrantKey;
use netward_shared::auth::token_sha256;
use netward_shared::client::{ClientOptions, connect};
use netward_shared::config::Target;
use netward_shared::prost::Message as _;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::secret::Secret;
use netward_shared::testkit::eventually;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const ADMIN: &str = "nwt_admin-grants-test";
const SERVICE: &str = "nwt_service-grants-test";
const FAKE_EXEC: &str = "nwt_fake-exec-grants-test";
const REAL_EXEC: &str = "nwt_real-exec-grants-test";

fn config(grant_key: &str) -> String {
    let token = |name: &str, role: &str, secret: &str| {
        format!(
            "[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_sha256(secret)
        )
    };
    [
        format!("[auth]\ngrant_key = \"{grant_key}\"\n"),
        token("ops", "admin", ADMIN),
        token("core", "service", SERVICE),
        token("branch-fake", "executor", FAKE_EXEC),
        token("branch-real", "executor", REAL_EXEC),
    ]
    .concat()
}

fn secret(token: &str) -> Secret<String> {
    Secret::new(token.to_string())
}

fn with_token(token: &str) -> ClientOptions {
    ClientOptions {
        token: Some(secret(token)),
        ..ClientOptions::default()
    }
}

fn probe(device_id: &str, assignment: &v1::Assignment) -> v1::ProbeResult {
    v1::ProbeResult {
        device_id: device_id.into(),
        address: "127.0.0.1".into(),
        cycle_id: assignment.cycle_id,
        batch_id: assignment.batch_id.clone(),
        sent: 3,
        received: 3,
        rtt_avg_us: Some(100),
        outcome: v1::ProbeOutcome::Ok as i32,
        probed_at: Some(netward_shared::work::timestamp(std::time::SystemTime::now())),
        ..Default::default()
    }
}

#[tokio::test]
async fn executor_tokens_report_only_what_their_grants_name() {
    let grant_key = "5a".repeat(32);
    let rows = (1..=3)
        .map(|k| v1::ImportRow {
            line: k + 1,
            name: format!("grant-{k}"),
            ip: format!("127.44.0.{k}"),
            site: "grants".into(),
            ..Default::default()
        })
        .collect();
    let mut cluster = crate::support::cluster()
        .planner()
        .alerting()
        .config_all(&config(&grant_key))
        .client_token(ADMIN)
        .devices(rows)
        .ping_interval(Duration::from_secs(2))
        .set_for(Target::Planner, "NETWARD_AUTH__PEER_TOKEN", SERVICE)
        .set_for(Target::Alerting, "NETWARD_AUTH__PEER_TOKEN", SERVICE)
        .start()
        .await;
    assert_eq!(cluster.imported.as_ref().unwrap().created, 3);
    let (inventory_url, planner_url, alerting_url) = (
        cluster.inventory_url(),
        cluster.planner_url(),
        cluster.alerting_url(),
    );

    // An executor token registers as its own executor only.
    let mut fake_planner =
        PlannerServiceClient::new(connect(&planner_url, &with_token(FAKE_EXEC)).unwrap());
    let register = |executor_id: &str| v1::WorkRequest {
        msg: Some(v1::work_request::Msg::Register(v1::Register {
            executor_id: executor_id.into(),
            kind: v1::ExecutorKind::Ping as i32,
            capacity: 1000,
            ..Default::default()
        })),
    };
    let impostor = fake_planner
        .work(futures::stream::iter(vec![register("branch-real")]))
        .await
        .unwrap_err();
    assert_eq!(impostor.code(), Code::PermissionDenied, "{impostor:?}");
    assert!(impostor.message().contains("branch-fake"), "{impostor:?}");

    // As branch-fake: the first assignment, with its grant.
    let (work_tx, work_rx) = mpsc::channel(8);
    work_tx.send(register("branch-fake")).await.unwrap();
    let mut work = fake_planner
        .work(ReceiverStream::new(work_rx))
        .await
        .unwrap()
        .into_inner();
    let assignment = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = work.next().await {
            if let Some(v1::work_response::Msg::Assignment(assignment)) = message.unwrap().msg {
                return assignment;
            }
        }
        panic!("the Work stream ended without an assignment");
    })
    .await
    .expect("an assignment within 30 s");
    let signed = assignment
        .grant
        .clone()
        .expect("the assignment carries a grant");
    let grant = GrantKey::parse(&secret(&grant_key))
        .unwrap()
        .verify(&signed)
        .expect("the grant verifies under the shared key");
    assert_eq!(grant.executor, "branch-fake");
    assert_eq!(grant.batch_id, assignment.batch_id);
    assert_eq!(grant.device_ids.len(), 16 * assignment.targets.len());
    let granted: Vec<String> = assignment
        .targets
        .iter()
        .map(|t| t.device_id.clone())
        .collect();
    assert!(!granted.is_empty());

    // Results under that grant, then forged ones, on one Ingest stream.
    let mut fake_alerting =
        AlertingServiceClient::new(connect(&alerting_url, &with_token(FAKE_EXEC)).unwrap());
    let batch =
        |sequence: u64, devices: &[String], grant: Option<v1::SignedGrant>| v1::ResultBatch {
            executor_id: "branch-fake".into(),
            kind: v1::ExecutorKind::Ping as i32,
            sequence,
            batch_uid: uuid::Uuid::new_v4().to_string(),
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            probes: devices.iter().map(|d| probe(d, &assignment)).collect(),
            attempt: 1,
            grant,
            ..Default::default()
        };
    let not_granted = uuid::Uuid::new_v4().to_string();
    let mut with_stranger = granted.clone();
    with_stranger.push(not_granted.clone());
    let mut widened = grant.clone();
    widened
        .device_ids
        .extend_from_slice(uuid::Uuid::parse_str(&not_granted).unwrap().as_bytes());
    let mut renamed = batch(5, &granted, Some(signed.clone()));
    renamed.executor_id = "branch-real".into();
    let batches = vec![
        batch(1, &granted, Some(signed.clone())),
        batch(2, &with_stranger, Some(signed.clone())),
        batch(3, &granted, None),
        // The grant widened by the executor: its signature no longer holds.
        batch(
            4,
            &with_stranger,
            Some(v1::SignedGrant {
                grant: widened.encode_to_vec(),
                signature: signed.signature.clone(),
            }),
        ),
        renamed,
    ];
    let mut requests = vec![v1::IngestRequest {
        msg: Some(v1::ingest_request::Msg::Hello(v1::IngestHello {
            executor_id: "branch-fake".into(),
            kind: v1::ExecutorKind::Ping as i32,
            version: "test".into(),
        })),
    }];
    requests.extend(batches.into_iter().map(|b| v1::IngestRequest {
        msg: Some(v1::ingest_request::Msg::Batch(b)),
    }));
    let (ingest_tx, ingest_rx) = mpsc::channel(8);
    for request in requests {
        ingest_tx.send(request).await.unwrap();
    }
    let mut responses = fake_alerting
        .ingest(ReceiverStream::new(ingest_rx))
        .await
        .unwrap()
        .into_inner();
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 5 {
        let response = tokio::time::timeout(Duration::from_secs(20), responses.next())
            .await
            .expect("an answer to every batch within 20 s")
            .expect("the stream stays open")
            .unwrap();
        match response.msg {
            Some(v1::ingest_response::Msg::Ack(ack)) => {
                answers.insert(ack.sequence, Ok(ack.stored));
            }
            Some(v1::ingest_response::Msg::Reject(reject)) => {
                answers.insert(reject.sequence, Err(reject.reason));
            }
            None => {}
        }
    }
    drop(ingest_tx);
    println!("ingest answers as branch-fake: {answers:#?}");
    assert_eq!(answers[&1], Ok(granted.len() as u32));
    let reason = |sequence: u64| answers[&sequence].clone().unwrap_err();
    assert!(
        reason(2).contains(&format!(
            "device {not_granted:?} is not in the batch's grant"
        )),
        "{}",
        reason(2)
    );
    assert!(reason(3).contains("no grant"), "{}", reason(3));
    assert!(reason(4).contains("signature"), "{}", reason(4));
    assert!(reason(5).contains("may only report as"), "{}", reason(5));
    let alerting_metrics = cluster.alerting.as_ref().unwrap().metrics_addr;
    let metrics = crate::support::http_get(alerting_metrics, "/metrics").await;
    assert!(
        metrics.contains("netward_alerting_results_rejected_total{reason=\"grant\"}"),
        "refusals are counted"
    );

    // An executor token reads nothing and resolves no credential.
    let mut fake_inventory =
        InventoryServiceClient::new(connect(&inventory_url, &with_token(FAKE_EXEC)).unwrap());
    let resolve = fake_inventory
        .resolve_credential(v1::ResolveCredentialRequest {
            key: Some(v1::resolve_credential_request::Key::Name("any".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(resolve.code(), Code::PermissionDenied, "{resolve:?}");
    let list = fake_alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied, "{list:?}");

    // A real ping executor with its own token takes the batches over once
    // the fake one is gone, and its results go through its grants.
    drop(work_tx);
    drop(work);
    if !crate::executor::can_ping() {
        return;
    }
    // The fake one's session gone first: the cluster counts sessions to
    // know the real one registered.
    cluster.wait_sessions(v1::ExecutorKind::Ping, 0).await;
    cluster
        .add_ping_executor(&[
            ("NETWARD_AUTH__PEER_TOKEN", REAL_EXEC),
            ("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "branch-real"),
        ])
        .await;
    let mut admin_alerting = cluster.alerting_client();
    eventually(
        "the real executor's results turn all three devices UP",
        Duration::from_secs(40),
        || {
            let mut client = admin_alerting.clone();
            async move {
                let statuses = client
                    .list_device_statuses(v1::ListDeviceStatusesRequest {
                        page_size: 100,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                let up = statuses
                    .statuses
                    .iter()
                    .filter(|s| s.state == v1::DeviceState::Up as i32)
                    .count();
                (up == 3).then_some(())
            }
        },
    )
    .await;
    let _ = admin_alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap();
}

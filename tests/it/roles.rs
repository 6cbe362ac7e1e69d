//! The role matrix, through real processes of the binary: inventory,
//! planner and alerting read one config with an `[[auth.tokens]]` entry per
//! role, and every role (plus no token and a wrong one) calls one RPC of
//! each class on each service. Each call must pass auth, be refused with
//! PERMISSION_DENIED, or with UNAUTHENTICATED, as the policy says; the table
//! is printed (`--nocapture`). Then a region-scoped (EMEA) operator: it
//! acknowledges an EMEA alert but not an AMER one, and lists only EMEA.

use std::time::Duration;

use netward_shared::auth::token_sha256;
use netward_shared::client::{ClientOptions, PeerChannel, connect};
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::secret::Secret;
use netward_shared::testkit::cluster::NOBODY;
use netward_shared::testkit::eventually;
use tonic::Code;

use crate::alerting::Ingest;

/// (name in the table, role, region scope, token); `None` for no token.
const CALLERS: [(&str, &str, Option<&str>, Option<&str>); 8] = [
    ("admin", "admin", None, Some("t-admin")),
    ("operator", "operator", None, Some("t-operator")),
    ("operator@EMEA", "operator", Some("EMEA"), Some("t-emea")),
    ("viewer", "viewer", None, Some("t-viewer")),
    ("executor", "executor", None, Some("t-executor")),
    ("service", "service", None, Some("t-service")),
    ("no token", "", None, None),
    ("wrong token", "", None, Some("t-wrong")),
];

/// What a call must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Through auth: OK, or an error of the call itself (NOT_FOUND,
    /// INVALID_ARGUMENT, FAILED_PRECONDITION).
    Pass,
    Denied,
    Unauthenticated,
}

/// The calls, one per class and service, with the roles that pass each.
const CALLS: [(&str, &[&str]); 10] = [
    (
        "alerting ListAlerts (Read)",
        &["admin", "operator", "viewer", "service"],
    ),
    (
        "inventory ListDevices (Read)",
        &["admin", "operator", "viewer", "service"],
    ),
    (
        "planner GetCurrentCycle (Read)",
        &["admin", "operator", "viewer", "service"],
    ),
    ("alerting CreateSilence (Operate)", &["admin", "operator"]),
    ("inventory CreateDevice (Operate)", &["admin", "operator"]),
    ("alerting AckAlert (Operate)", &["admin", "operator"]),
    ("planner SetPolicy (Administer)", &["admin"]),
    (
        "inventory ResolveCredential (Internal)",
        &["admin", "service"],
    ),
    ("alerting Ingest (Execute)", &["admin", "executor"]),
    ("planner Work (Execute)", &["admin", "executor"]),
];

fn want(role: &str, token: Option<&str>, passing: &[&str]) -> Want {
    match token {
        None => Want::Unauthenticated,
        Some(_) if role.is_empty() => Want::Unauthenticated,
        Some(_) if passing.contains(&role) => Want::Pass,
        Some(_) => Want::Denied,
    }
}

fn config() -> String {
    let mut text = String::from("[auth]\npeer_token = \"t-service\"\n");
    for (name, role, region, token) in CALLERS {
        let (Some(token), false) = (token, role.is_empty()) else {
            continue;
        };
        let name = name.replace('@', "-");
        text.push_str(&format!(
            "\n[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_sha256(token)
        ));
        if let Some(region) = region {
            text.push_str(&format!("regions = [\"{region}\"]\n"));
        }
    }
    text
}

struct Clients {
    alerting: AlertingServiceClient<PeerChannel>,
    inventory: InventoryServiceClient<PeerChannel>,
    planner: PlannerServiceClient<PeerChannel>,
}

impl Clients {
    fn new(urls: &Urls, token: Option<&str>) -> Self {
        let options = ClientOptions {
            token: token.map(|t| Secret::new(t.to_string())),
            ..ClientOptions::default()
        };
        let channel = |url: &str| connect(url, &options).unwrap();
        Self {
            alerting: AlertingServiceClient::new(channel(&urls.alerting)),
            inventory: InventoryServiceClient::new(channel(&urls.inventory)),
            planner: PlannerServiceClient::new(channel(&urls.planner)),
        }
    }
}

struct Urls {
    alerting: String,
    inventory: String,
    planner: String,
}

async fn code<T>(call: impl Future<Output = Result<T, tonic::Status>>) -> Code {
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(_)) => Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => panic!("a call did not answer within 10 s"),
    }
}

fn timestamp(from_now: chrono::TimeDelta) -> prost_types::Timestamp {
    let at = chrono::Utc::now() + from_now;
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

/// One call of each row of [`CALLS`], in order, as `caller` (index `n`),
/// opening the streams as executor `executor_id`.
async fn call_all(c: &mut Clients, n: usize, executor_id: &str, emea_device: &str) -> Vec<Code> {
    let mut codes = Vec::new();
    codes.push(code(c.alerting.list_alerts(v1::ListAlertsRequest::default())).await);
    codes.push(code(c.inventory.list_devices(v1::ListDevicesRequest::default())).await);
    codes.push(
        code(
            c.planner
                .get_current_cycle(v1::GetCurrentCycleRequest::default()),
        )
        .await,
    );
    // A silence of next week, of an EMEA device: it mutes nothing here.
    let silence = v1::Silence {
        matchers: vec![v1::Scope {
            kind: v1::ScopeKind::Device as i32,
            value: emea_device.to_string(),
        }],
        starts_at: Some(timestamp(chrono::TimeDelta::days(7))),
        ends_at: Some(timestamp(chrono::TimeDelta::days(8))),
        created_by: "roles test".into(),
        ..Default::default()
    };
    codes.push(
        code(c.alerting.create_silence(v1::CreateSilenceRequest {
            silence: Some(silence),
        }))
        .await,
    );
    let device = v1::Device {
        name: format!("new-{n}"),
        ip_address: format!("127.42.0.{}", n + 1),
        site_name: "paris".into(),
        ..Default::default()
    };
    codes.push(
        code(c.inventory.create_device(v1::CreateDeviceRequest {
            device: Some(device),
        }))
        .await,
    );
    // No such alert: NOT_FOUND or FAILED_PRECONDITION once through auth.
    codes.push(
        code(c.alerting.ack_alert(v1::AckAlertRequest {
            id: uuid::Uuid::new_v4().to_string(),
            acknowledged_by: "roles test".into(),
            comment: String::new(),
        }))
        .await,
    );
    // A zero target is invalid: INVALID_ARGUMENT once through auth.
    codes.push(
        code(c.planner.set_policy(v1::SetPolicyRequest {
            target_batches: Some(0),
            ..Default::default()
        }))
        .await,
    );
    codes.push(
        code(
            c.inventory
                .resolve_credential(v1::ResolveCredentialRequest {
                    key: Some(v1::resolve_credential_request::Key::Name(
                        "no-such-credential".into(),
                    )),
                }),
        )
        .await,
    );
    // The streams are opened (the first message sent) and dropped.
    let hello = v1::IngestRequest {
        msg: Some(v1::ingest_request::Msg::Hello(v1::IngestHello {
            executor_id: executor_id.to_string(),
            kind: v1::ExecutorKind::Ping as i32,
            version: String::new(),
        })),
    };
    let (ingest_tx, ingest_rx) = tokio::sync::mpsc::unbounded_channel();
    ingest_tx.send(hello).unwrap();
    codes.push(
        code(
            c.alerting
                .ingest(tokio_stream::wrappers::UnboundedReceiverStream::new(
                    ingest_rx,
                )),
        )
        .await,
    );
    let register = v1::WorkRequest {
        msg: Some(v1::work_request::Msg::Register(v1::Register {
            executor_id: executor_id.to_string(),
            kind: v1::ExecutorKind::Ping as i32,
            capacity: 1,
            ..Default::default()
        })),
    };
    let (work_tx, work_rx) = tokio::sync::mpsc::unbounded_channel();
    work_tx.send(register).unwrap();
    codes.push(
        code(
            c.planner
                .work(tokio_stream::wrappers::UnboundedReceiverStream::new(
                    work_rx,
                )),
        )
        .await,
    );
    codes
}

fn name(code: Code) -> String {
    format!("{code:?}")
}

#[tokio::test]
async fn each_role_gets_what_its_class_allows_and_a_region_sees_only_itself() {
    // Two regions, a router in each.
    let rows = [
        ("emea-rtr", "paris", "EMEA"),
        ("amer-rtr", "boston", "AMER"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, site, region))| v1::ImportRow {
        line: i as u32 + 2,
        name: name.to_string(),
        ip: format!("127.43.0.{}", i + 1),
        site: site.to_string(),
        region: region.to_string(),
        ..Default::default()
    })
    .collect();
    let cluster = crate::support::cluster()
        .planner()
        .alerting()
        .config_all(&config())
        .client_token("t-admin")
        .devices(rows)
        // Alerting without a planner: no freshness sweep judges the devices
        // while the test holds their states.
        .set_for(Target::Alerting, "NETWARD_PLANNER_URL", NOBODY)
        .start()
        .await;
    let imported = cluster.imported.as_ref().unwrap();
    assert_eq!(imported.created, 2, "{imported:?}");
    let urls = Urls {
        alerting: cluster.alerting_url(),
        inventory: cluster.inventory_url(),
        planner: cluster.planner_url(),
    };
    let admin = Clients::new(&urls, Some("t-admin"));
    let (emea, amer) = (
        cluster.id("emea-rtr").to_string(),
        cluster.id("amer-rtr").to_string(),
    );
    for id in [&emea, &amer] {
        let alerting = admin.alerting.clone();
        eventually(
            "alerting follows the inventory",
            Duration::from_secs(20),
            || {
                let mut alerting = alerting.clone();
                let device_id = id.clone();
                async move {
                    alerting
                        .get_device_status(v1::GetDeviceStatusRequest { device_id })
                        .await
                        .ok()
                }
            },
        )
        .await;
    }

    // The matrix.
    let mut table = format!("{:<40}", "call");
    for (caller, ..) in CALLERS {
        table.push_str(&format!(" {caller:>17}"));
    }
    table.push('\n');
    let mut results = Vec::new();
    for (n, (name, _, _, token)) in CALLERS.iter().enumerate() {
        let mut clients = Clients::new(&urls, *token);
        // An executor token registers and reports only as the executor of
        // its own name; every caller uses its token's name as executor id.
        let executor_id = name.replace('@', "-");
        results.push(call_all(&mut clients, n, &executor_id, &emea).await);
    }
    let mut wrong = Vec::new();
    for (row, (call, passing)) in CALLS.iter().enumerate() {
        table.push_str(&format!("{call:<40}"));
        for (column, (caller, role, _, token)) in CALLERS.iter().enumerate() {
            let got = results[column][row];
            table.push_str(&format!(" {:>17}", name(got)));
            let ok = match want(role, *token, passing) {
                Want::Pass => !matches!(got, Code::PermissionDenied | Code::Unauthenticated),
                Want::Denied => got == Code::PermissionDenied,
                Want::Unauthenticated => got == Code::Unauthenticated,
            };
            if !ok {
                wrong.push(format!(
                    "{caller} → {call}: {got:?}, want {:?}",
                    want(role, *token, passing)
                ));
            }
        }
        table.push('\n');
    }
    println!("{table}");
    assert!(wrong.is_empty(), "{}\n{table}", wrong.join("\n"));

    // An alert in each region: up, then down.
    let mut ingest = Ingest::over(admin.alerting.clone()).await;
    ingest.all(1, &[emea.clone(), amer.clone()], true).await;
    ingest.all(2, &[emea.clone(), amer.clone()], false).await;
    let open = eventually("both routers alert", Duration::from_secs(20), || {
        let mut alerting = admin.alerting.clone();
        async move {
            let alerts = alerting
                .list_alerts(v1::ListAlertsRequest::default())
                .await
                .ok()?
                .into_inner()
                .alerts;
            (alerts.len() == 2).then_some(alerts)
        }
    })
    .await;
    let alert_of = |device: &str| {
        open.iter()
            .find(|a| a.device_id == device)
            .unwrap()
            .id
            .clone()
    };

    let mut scoped = Clients::new(&urls, Some("t-emea"));
    let ack = |id: String| v1::AckAlertRequest {
        id,
        acknowledged_by: "emea-noc".into(),
        comment: "on it".into(),
    };
    let refused = scoped
        .alerting
        .ack_alert(ack(alert_of(&amer)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("AMER"), "{}", refused.message());
    let acked = scoped
        .alerting
        .ack_alert(ack(alert_of(&emea)))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(acked.acknowledged_by, "emea-noc");
    println!("operator@EMEA acks the AMER alert: {:?}", refused.code());
    println!("operator@EMEA acks the EMEA alert: Ok");

    // It sees its region only; the unscoped operator sees both.
    let alerts: Vec<String> = scoped
        .alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts
        .into_iter()
        .map(|a| a.device_name)
        .collect();
    assert_eq!(alerts, ["emea-rtr"]);
    let devices = scoped
        .inventory
        .list_devices(v1::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        devices.devices.iter().all(|d| d.region == "EMEA"),
        "{:?}",
        devices.devices
    );
    assert_eq!(devices.total_count, devices.devices.len() as u64);
    assert!(devices.devices.iter().any(|d| d.name == "emea-rtr"));
    let hidden = scoped
        .alerting
        .get_alert(v1::GetAlertRequest {
            id: alert_of(&amer),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let all = Clients::new(&urls, Some("t-operator"))
        .alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(all.len(), 2);
    println!(
        "operator@EMEA lists alerts {alerts:?} and devices {:?}",
        devices
            .devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
    );

    let statuses = scoped
        .alerting
        .list_device_statuses(v1::ListDeviceStatusesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| s.region == "EMEA"),
        "{statuses:?}"
    );
    let status = scoped
        .alerting
        .get_device_status(v1::GetDeviceStatusRequest {
            device_id: amer.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Rules hold for every region: not a scoped operator's to change.
    let rule = scoped
        .alerting
        .delete_rule(v1::DeleteRuleRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(rule.code(), Code::PermissionDenied, "{rule:?}");

    // Its silences and devices stay inside EMEA.
    let global = scoped
        .alerting
        .create_silence(v1::CreateSilenceRequest {
            silence: Some(v1::Silence {
                matchers: vec![v1::Scope {
                    kind: v1::ScopeKind::Global as i32,
                    value: String::new(),
                }],
                ends_at: Some(timestamp(chrono::TimeDelta::hours(1))),
                created_by: "emea-noc".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(global.code(), Code::PermissionDenied, "{global:?}");
    let elsewhere = scoped
        .inventory
        .create_device(v1::CreateDeviceRequest {
            device: Some(v1::Device {
                name: "boston-sw".into(),
                ip_address: "127.43.0.9".into(),
                site_name: "boston".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::PermissionDenied, "{elsewhere:?}");

    drop(ingest);
}

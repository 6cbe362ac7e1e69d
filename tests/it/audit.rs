//! The audit trail end to end: inventory, alerting and a planner (a cluster
//! of processes of the real binary, on PostgreSQL) with two named tokens; a
//! scripted sequence of changes by `alice` (admin) and `bob` (operator); then
//! `netward audit --json` lists each change once, in order, with its actor,
//! action and object, and no secret in any detail.

use std::time::Duration;

use netward_shared::auth::token_sha256;
use netward_shared::client::{ClientOptions, PeerChannel, connect};
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::secret::Secret;
use netward_shared::testkit::eventually;
use tokio::process::Command;

use crate::alerting::Ingest;
use crate::support::NETWARD;

const ALICE: &str = "alice-token-for-the-audit-test";
const BOB: &str = "bob-token-for-the-audit-test";
const SERVICES: &str = "services-token-for-the-audit-test";
const COMMUNITY: &str = "community-s3cret-4711";
const NEW_COMMUNITY: &str = "community-rotated-s3cret-0815";

struct Clients {
    inventory: InventoryServiceClient<PeerChannel>,
    alerting: AlertingServiceClient<PeerChannel>,
    planner: PlannerServiceClient<PeerChannel>,
}

fn clients(token: &str, urls: &[String; 3]) -> Clients {
    let options = ClientOptions {
        token: Some(Secret::new(token.to_string())),
        ..ClientOptions::default()
    };
    let channel = |url: &str| connect(url, &options).unwrap();
    Clients {
        inventory: InventoryServiceClient::new(channel(&urls[0])),
        alerting: AlertingServiceClient::new(channel(&urls[1])),
        planner: PlannerServiceClient::new(channel(&urls[2])),
    }
}

async fn netward_audit(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(NETWARD)
        .arg("audit")
        .args(args)
        .env_remove("NETWARD_TOKEN")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_scripted_sequence_of_changes_is_audited_once_each_in_order() {
    let config = format!(
        "[auth]\npeer_token = \"{SERVICES}\"\n\n\
         [[auth.tokens]]\nname = \"alice\"\nrole = \"admin\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"bob\"\nrole = \"operator\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"services\"\nrole = \"service\"\nsha256 = \"{}\"\n",
        token_sha256(ALICE),
        token_sha256(BOB),
        token_sha256(SERVICES),
    );
    let cluster = crate::support::cluster()
        .alerting()
        .planner()
        .config_all(&config)
        .client_token(SERVICES)
        .set_for(Target::Inventory, "NETWARD_SECRET_KEY", &"ab".repeat(32))
        .start()
        .await;
    let urls = [
        cluster.inventory_url(),
        cluster.alerting_url(),
        cluster.planner_url(),
    ];
    let mut alice = clients(ALICE, &urls);
    let mut bob = clients(BOB, &urls);

    // The script: (actor, action, object id) of each change, in order.
    let mut expected: Vec<(&str, &str, String)> = Vec::new();
    let site = alice
        .inventory
        .create_site(v1::CreateSiteRequest {
            site: Some(v1::Site {
                name: "audit-br1".into(),
                code: "AUD1".into(),
                region: "Lab".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .site
        .unwrap();
    expected.push(("alice", "CreateSite", site.id.clone()));
    let device = bob
        .inventory
        .create_device(v1::CreateDeviceRequest {
            device: Some(v1::Device {
                name: "audit-rtr".into(),
                ip_address: "127.60.0.1".into(),
                site_id: site.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    expected.push(("bob", "CreateDevice", device.id.clone()));
    let credential = alice
        .inventory
        .create_credential(v1::CreateCredentialRequest {
            name: "audit-cred".into(),
            version: v1::SnmpVersion::V2c as i32,
            community: COMMUNITY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    expected.push(("alice", "CreateCredential", credential.id.clone()));
    bob.inventory
        .update_credential(v1::UpdateCredentialRequest {
            id: credential.id.clone(),
            community: Some(NEW_COMMUNITY.into()),
            description: Some("rotated".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    expected.push(("bob", "UpdateCredential", credential.id.clone()));
    bob.inventory
        .update_device(v1::UpdateDeviceRequest {
            device: Some(v1::Device {
                id: device.id.clone(),
                vendor: "Cisco".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["vendor".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap();
    expected.push(("bob", "UpdateDevice", device.id.clone()));
    let rule = bob
        .alerting
        .create_rule(v1::CreateRuleRequest {
            rule: Some(v1::Rule {
                name: "audit latency".into(),
                kind: v1::RuleKind::HighLatency as i32,
                severity: v1::Severity::High as i32,
                threshold: 50.0,
                consecutive: 2,
                min_probes: 2,
                scope: Some(v1::Scope {
                    kind: v1::ScopeKind::Global as i32,
                    value: String::new(),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    expected.push(("bob", "CreateRule", rule.id.clone()));
    let silence = bob
        .alerting
        .create_silence(v1::CreateSilenceRequest {
            silence: Some(v1::Silence {
                matchers: vec![v1::Scope {
                    kind: v1::ScopeKind::Tag as i32,
                    value: "team=nobody".into(),
                }],
                ends_at: Some(prost_types::Timestamp::from(
                    std::time::SystemTime::now() + Duration::from_secs(3600),
                )),
                created_by: "bob".into(),
                comment: "audit test".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    expected.push(("bob", "CreateSilence", silence.id.clone()));

    // An alert to acknowledge: the device answers once, then goes silent.
    eventually(
        "alerting follows the inventory",
        Duration::from_secs(20),
        || {
            let mut alerting = alice.alerting.clone();
            let device_id = device.id.clone();
            async move {
                let request = v1::GetDeviceStatusRequest { device_id };
                alerting.get_device_status(request).await.ok().map(drop)
            }
        },
    )
    .await;
    let mut ingest = Ingest::over(alice.alerting.clone()).await;
    ingest.results(1, &[(&device.id, true)]).await;
    ingest.results(2, &[(&device.id, false)]).await;
    let alert = eventually("the device-down alert", Duration::from_secs(10), || {
        let mut alerting = alice.alerting.clone();
        let device_id = device.id.clone();
        async move {
            let alerts = alerting
                .list_alerts(v1::ListAlertsRequest::default())
                .await
                .ok()?
                .into_inner()
                .alerts;
            alerts.into_iter().find(|a| a.device_id == device_id)
        }
    })
    .await;
    bob.alerting
        .ack_alert(v1::AckAlertRequest {
            id: alert.id.clone(),
            acknowledged_by: "bob".into(),
            comment: "looking".into(),
        })
        .await
        .unwrap();
    expected.push(("bob", "AckAlert", alert.id.clone()));

    // The policy: admins only (bob is refused, and nothing is recorded).
    let refused = bob
        .planner
        .set_policy(v1::SetPolicyRequest {
            target_batches: Some(8),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    eventually("the planner leads", Duration::from_secs(20), || {
        let mut planner = alice.planner.clone();
        async move {
            planner
                .set_policy(v1::SetPolicyRequest {
                    target_batches: Some(8),
                    ..Default::default()
                })
                .await
                .ok()
        }
    })
    .await;
    expected.push(("alice", "SetPolicy", String::new()));
    bob.inventory
        .delete_device(v1::DeleteDeviceRequest {
            id: device.id.clone(),
        })
        .await
        .unwrap();
    expected.push(("bob", "DeleteDevice", device.id.clone()));

    let url_args = [
        "--inventory-url",
        &urls[0],
        "--alerting-url",
        &urls[1],
        "--planner-url",
        &urls[2],
    ];
    let mut args = vec!["--json", "--token", ALICE];
    args.extend(url_args);
    let (ok, out, err) = netward_audit(&args).await;
    assert!(ok, "{out}\n{err}");
    println!("netward audit --json:\n{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // Newest first on the wire; the script reads oldest first.
    let got: Vec<(String, String, String)> = events
        .iter()
        .rev()
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap().to_string();
            (text("actor"), text("action"), text("object_id"))
        })
        .collect();
    let want: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.clone()))
        .collect();
    assert_eq!(got, want, "{out}");
    for event in &events {
        let role = event["actor_role"].as_str().unwrap();
        let actor = event["actor"].as_str().unwrap();
        assert_eq!(
            role,
            if actor == "alice" {
                "admin"
            } else {
                "operator"
            },
            "{event}"
        );
    }
    assert!(
        !out.contains(COMMUNITY) && !out.contains(NEW_COMMUNITY),
        "a secret leaked into the audit trail:\n{out}"
    );
    let created = events
        .iter()
        .find(|e| e["action"] == "CreateCredential")
        .unwrap();
    assert_eq!(created["detail"]["community_set"], true, "{created}");

    // Filters: bob's changes only; the table names every column.
    let mut args = vec!["--json", "--actor", "bob", "--token", BOB];
    args.extend(url_args);
    let (ok, out, err) = netward_audit(&args).await;
    assert!(ok, "{err}");
    let bobs = want.iter().filter(|(actor, _, _)| actor == "bob").count();
    assert_eq!(out.lines().count(), bobs, "{out}");
    let mut args = vec!["--object", &device.id, "--token", BOB];
    args.extend(url_args);
    let (ok, table, err) = netward_audit(&args).await;
    assert!(ok, "{err}");
    println!("netward audit --object {}:\n{table}", device.id);
    assert_eq!(table.lines().count(), 1 + 3, "{table}");
    assert!(table.starts_with("AT"), "{table}");

    // An unreachable planner: named on stderr, a failed exit, and the
    // other services' events still printed.
    let args = [
        "--json",
        "--token",
        ALICE,
        "--inventory-url",
        &urls[0],
        "--alerting-url",
        &urls[1],
        "--planner-url",
        "http://127.0.0.1:9",
    ];
    let (ok, out, err) = netward_audit(&args).await;
    assert!(!ok, "{out}");
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
    assert_eq!(out.lines().count(), want.len() - 1, "{out}");

    cluster.stop_all().await;
}

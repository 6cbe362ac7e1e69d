//! An ISP uplink going down, end to end: snmpsim serves a branch router
//! with two ISP uplinks (the seed's Magti and Silknet, named in ifAlias);
//! inventory, planner (SNMP every 5 s), the SNMP poller and alerting run as
//! processes of the real binary. Swapping the agent's data file flips the
//! Magti link to oper-down: an "ISP link down" alert fires naming the
//! provider, `netward interfaces` shows it, and it resolves when the link
//! comes back.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netward_shared::proto::v1;
use netward_shared::testkit::eventually;

use crate::support::NETWARD;

/// The router's MIB: system group, and ifTable/ifXTable rows for a LAN
/// port and the two uplinks; `magti_oper` is ifOperStatus of ifIndex 2.
fn record(magti_oper: u8) -> String {
    let mut lines = vec![
        "1.3.6.1.2.1.1.1.0|4|Cisco IOS Software, ISR4331".to_string(),
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.9.1.1861".to_string(),
        "1.3.6.1.2.1.1.3.0|67|8640000".to_string(),
        "1.3.6.1.2.1.1.5.0|4|tbilisi-01-rtr".to_string(),
    ];
    let interfaces = [
        (1, "Gi0/0/0", "LAN to tbilisi-01-sw1", 1),
        (2, "Gi0/0/1", "ISP1 Magti 100M", magti_oper),
        (3, "Gi0/0/2", "ISP2 Silknet backup", 1),
    ];
    // ifTable columns, then ifXTable columns, each in ifIndex order (the
    // file must be sorted by OID).
    let table = |column: u32, value: &dyn Fn(u32, &str, &str, u8) -> String| {
        interfaces
            .iter()
            .map(|(index, name, alias, oper)| {
                format!(
                    "1.3.6.1.2.1.2.2.1.{column}.{index}|{}",
                    value(*index, name, alias, *oper)
                )
            })
            .collect::<Vec<_>>()
    };
    lines.push("1.3.6.1.2.1.2.1.0|2|3".into());
    lines.extend(table(1, &|i, _, _, _| format!("2|{i}")));
    lines.extend(table(2, &|_, name, _, _| format!("4|{name}")));
    lines.extend(table(3, &|_, _, _, _| "2|6".into()));
    lines.extend(table(5, &|_, _, _, _| "66|100000000".into()));
    lines.extend(table(7, &|_, _, _, _| "2|1".into()));
    lines.extend(table(8, &|_, _, _, oper| format!("2|{oper}")));
    lines.extend(table(9, &|_, _, _, _| "67|100".into()));
    for column in [10, 11, 13, 14, 16, 17, 19, 20] {
        lines.extend(table(column, &|i, _, _, _| format!("65|{}", 1000 * i)));
    }
    let xtable = |column: u32, value: &dyn Fn(u32, &str, &str) -> String| {
        interfaces
            .iter()
            .map(|(index, name, alias, _)| {
                format!(
                    "1.3.6.1.2.1.31.1.1.1.{column}.{index}|{}",
                    value(*index, name, alias)
                )
            })
            .collect::<Vec<_>>()
    };
    lines.extend(xtable(1, &|_, name, _| format!("4|{name}")));
    for column in [6, 7, 10, 11] {
        lines.extend(xtable(column, &|i, _, _| format!("70|{}", 5000 * i)));
    }
    lines.extend(xtable(15, &|_, _, _| "66|100".into()));
    lines.extend(xtable(18, &|_, _, alias| format!("4|{alias}")));
    lines.join("\n") + "\n"
}

/// snmpsim serving `dir` on a free port; killed on drop.
struct Snmpsim {
    child: Child,
    port: u16,
}

impl Drop for Snmpsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn snmpsim(dir: &Path) -> Snmpsim {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = if which("snmpsim-command-responder") {
        "snmpsim-command-responder"
    } else {
        "snmpsimd"
    };
    let mut command = Command::new(binary);
    command
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--cache-dir={}", dir.join("cache").display()))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
        .arg("--logging-method=null");
    // snmpsim refuses to run as root: it drops to nobody, who must read
    // the data and write the index cache.
    if is_root() {
        command.args(["--process-user=nobody", "--process-group=nogroup"]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start snmpsim");
    Snmpsim { child, port }
}

/// Replaces the data file the way an editor does (write, then rename), so
/// snmpsim sees a whole new file. snmpsim notices a change by the file's
/// modification time in whole seconds (and rebuilds its index only when the
/// file is newer than it), so each version is dated `version` seconds ahead
/// of now: never the second of the version before, never older than the
/// index.
fn write_record(dir: &Path, magti_oper: u8, version: u64) {
    let staged = dir.join("isp.snmprec.new");
    std::fs::write(&staged, record(magti_oper)).unwrap();
    let target = dir.join("data/isp.snmprec");
    std::fs::rename(&staged, &target).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let touched = Command::new("touch")
        .args(["-m", "-d", &format!("@{}", now + version)])
        .arg(&target)
        .status()
        .unwrap();
    assert!(touched.success());
}

fn interfaces_cli(alerting_url: &str, device: &str) -> String {
    let output = Command::new(NETWARD)
        .args(["interfaces", device, "--alerting-url", alerting_url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "netward interfaces failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn an_isp_link_going_down_alerts_naming_the_provider() {
    if !which("snmpsimd") && !which("snmpsim-command-responder") {
        assert!(
            std::env::var_os("CI").is_none(),
            "snmpsim is not installed (scripts/setup.sh installs it)"
        );
        println!("skipped: snmpsim not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("netward-isp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_record(&dir, 1, 0);
    Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(&dir)
        .status()
        .unwrap();
    let agent = snmpsim(&dir);

    let mut cluster = crate::snmp_v3::snmp_cluster("isp-test-poller").await;
    let mut inventory_client = cluster.inventory_client();
    inventory_client
        .create_credential(v1::CreateCredentialRequest {
            name: "branch-ro".into(),
            version: v1::SnmpVersion::V2c as i32,
            community: "isp".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let imported = cluster
        .import_devices(vec![v1::ImportRow {
            line: 2,
            name: "tbilisi-01-rtr".into(),
            ip: "127.0.0.1".into(),
            site: "tbilisi-01".into(),
            snmp_version: "2c".into(),
            snmp_credential: "branch-ro".into(),
            snmp_port: agent.port.to_string(),
            snmp_profile: "interfaces".into(),
            ..Default::default()
        }])
        .await;
    assert_eq!(imported.created, 1, "{imported:?}");
    let device_id = cluster.id("tbilisi-01-rtr").to_string();
    let alerting = cluster.alerting.as_ref().unwrap();
    let planner = cluster.planner.as_ref().unwrap();
    let poller = &cluster.snmp_pollers[0];
    let alerting_url = cluster.alerting_url();
    let client = cluster.alerting_client();

    // Both uplinks classified from ifAlias, with their providers.
    let interfaces = eventually(
        "the router's interfaces are polled",
        Duration::from_secs(60),
        || {
            let mut client = client.clone();
            let device_id = device_id.clone();
            async move {
                let listed = client
                    .list_interfaces(v1::ListInterfacesRequest {
                        device_id,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                (listed.interfaces.len() == 3).then_some(listed.interfaces)
            }
        },
    )
    .await;
    let isp: Vec<(u32, &str, i32)> = interfaces
        .iter()
        .filter(|i| i.role == v1::InterfaceRole::IspUplink as i32)
        .map(|i| (i.if_index, i.isp_name.as_str(), i.oper_status))
        .collect();
    let up = v1::IfOperStatus::Up as i32;
    assert_eq!(
        isp,
        [(2, "Magti", up), (3, "Silknet", up)],
        "{interfaces:?}"
    );
    assert_eq!(interfaces[1].if_name, "Gi0/0/1");
    assert_eq!(interfaces[1].speed_bps, Some(100_000_000));

    // The Magti link goes down.
    write_record(&dir, 2, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let alert = loop {
        let open = client
            .clone()
            .list_alerts(v1::ListAlertsRequest {
                rule_kind: v1::RuleKind::IspLinkDown as i32,
                ..Default::default()
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().alerts.pop());
        if let Some(alert) = open {
            break alert;
        }
        if std::time::Instant::now() > deadline {
            // Say where it stopped: did the poll see the link down at all?
            let seen = client
                .clone()
                .list_interfaces(v1::ListInterfacesRequest {
                    device_id: device_id.clone(),
                    ..Default::default()
                })
                .await;
            let tail = |log: String| {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            };
            panic!(
                "no ISP link down alert within 60 s\ninterfaces: {seen:?}\nrecord: {}\n\
                 poller log:\n{}\nalerting log:\n{}\nplanner log:\n{}",
                std::fs::read_to_string(dir.join("data/isp.snmprec")).unwrap_or_default(),
                tail(poller.log()),
                tail(alerting.log()),
                tail(planner.log()),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(alert.isp_name, "Magti", "{alert:?}");
    assert_eq!(alert.if_index, Some(2));
    assert_eq!(alert.if_name, "Gi0/0/1");
    assert!(alert.summary.contains("ISP Magti"), "{}", alert.summary);
    assert_eq!(alert.severity, v1::Severity::High as i32);
    let all = client
        .clone()
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(all.len(), 1, "only the ISP link alert: {all:?}");

    // The CLI shows the link down, by device name.
    let table = interfaces_cli(&alerting_url, &device_id);
    let magti = table
        .lines()
        .find(|l| l.contains("Gi0/0/1"))
        .unwrap_or_else(|| panic!("no Gi0/0/1 row:\n{table}"));
    assert!(
        magti.contains("Magti") && magti.contains("up/down"),
        "{table}"
    );

    // Back up: the alert resolves.
    write_record(&dir, 1, 4);
    eventually("the alert resolves", Duration::from_secs(60), || {
        let mut client = client.clone();
        let id = alert.id.clone();
        async move {
            let alert = client
                .get_alert(v1::GetAlertRequest { id })
                .await
                .ok()?
                .into_inner()
                .alert?;
            (alert.state == v1::AlertState::Resolved as i32).then_some(())
        }
    })
    .await;

    // An operator's override in inventory wins over the patterns: the LAN
    // port becomes a third uplink (a new provider), from the next poll on.
    inventory_client
        .set_interface_override(v1::SetInterfaceOverrideRequest {
            interface_override: Some(v1::InterfaceOverride {
                device_id: device_id.clone(),
                if_index: 1,
                role: v1::InterfaceRole::IspUplink as i32,
                isp_name: "Geocell".into(),
                comment: "temporary LTE uplink".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let lan = eventually("the override applies", Duration::from_secs(60), || {
        let mut client = client.clone();
        let device_id = device_id.clone();
        async move {
            let listed = client
                .list_interfaces(v1::ListInterfacesRequest {
                    device_id,
                    role: v1::InterfaceRole::IspUplink as i32,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            listed.interfaces.into_iter().find(|i| i.if_index == 1)
        }
    })
    .await;
    assert_eq!(lan.isp_name, "Geocell");
    assert_eq!(lan.classification_confidence, 1.0);
    assert_eq!(
        lan.classification_source,
        v1::ClassificationSource::Override as i32
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

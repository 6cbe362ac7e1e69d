//! Probe-now through the planner, with real processes: two ping-executors
//! with different labels under one planner; `netward probe` and grpcurl get
//! a device's result from the executor its selector matches, the precise
//! errors for no match, an unknown device and a device without SNMP, and
//! an executor that stops answering costs the caller a bounded wait
//! (DEADLINE_EXCEEDED), or UNAVAILABLE when its session ends. A
//! region-scoped operator probes its region only (others read as
//! NOT_FOUND), a viewer not at all, and the audit trail names who probed.
//! And `netward poll` of a device on a real snmpd returns a poller's sample.

use std::process::Output;
use std::time::{Duration, Instant};

use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use tokio::process::Command;

use crate::executor::can_ping;
use crate::support::{NETWARD, grpcurl};

/// `netward <verb> <device> [--json]` against `planner_url`.
async fn cli(verb: &str, device: &str, planner_url: &str, json: bool) -> Output {
    cli_as(None, verb, device, planner_url, json).await
}

/// As [`cli`], with `token` in `NETWARD_TOKEN`.
async fn cli_as(
    token: Option<&str>,
    verb: &str,
    device: &str,
    planner_url: &str,
    json: bool,
) -> Output {
    let mut command = Command::new(NETWARD);
    command
        .args([verb, device, "--planner-url", planner_url])
        .env_remove("NETWARD_TOKEN");
    if let Some(token) = token {
        command.env("NETWARD_TOKEN", token);
    }
    if json {
        command.arg("--json");
    }
    command.output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn probe_now_goes_to_the_executor_the_selector_matches() {
    if !can_ping() {
        return;
    }
    let row = |line: u32, name: &str, ip: &str, selector: &str| v1::ImportRow {
        line,
        name: name.into(),
        ip: ip.into(),
        site: "dc-01".into(),
        executor_selector: selector.into(),
        ..Default::default()
    };
    // Heartbeats every 10 s: a silent session lasts 30 s, beyond the wait
    // of the stopped executor's probe below. The executors' results have
    // nowhere to go (no alerting): probe-now does not need it.
    let mut cluster = crate::support::cluster()
        .planner()
        .devices(vec![
            row(2, "router-b", "127.0.0.1", "zone=b"),
            row(3, "router-c", "127.0.0.2", "zone=c"),
        ])
        .set_for(
            Target::Planner,
            "NETWARD_PLANNER__HEARTBEAT_INTERVAL",
            "10s",
        )
        .start()
        .await;
    let imported = cluster.imported.as_ref().unwrap();
    assert_eq!(imported.created, 2, "{imported:?}");
    for (id, zone) in [("exec-a", "a"), ("exec-b", "b")] {
        cluster
            .add_ping_executor(&[
                ("NETWARD_PING_EXECUTOR__EXECUTOR_ID", id),
                ("NETWARD_PING_EXECUTOR__LABELS__ZONE", zone),
            ])
            .await;
    }
    let ids = cluster.ids.clone();
    let planner_url = cluster.planner_url();
    let planner_addr = cluster.planner.as_ref().unwrap().grpc_addr;

    // The CLI, by name, several times: always exec-b, the only match.
    for _ in 0..3 {
        let started = Instant::now();
        let output = cli("probe", "router-b", &planner_url, true).await;
        println!("netward probe took {:?}", started.elapsed());
        assert!(output.status.success(), "{}", text(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["executor_id"], "exec-b", "{json}");
        assert_eq!(json["outcome"], "ok", "{json}");
        assert_eq!(json["device_id"], ids["router-b"].as_str(), "{json}");
        assert_eq!(
            (json["sent"].as_u64(), json["received"].as_u64()),
            (Some(3), Some(3))
        );
        assert!(json["rtt_avg_ms"].as_f64().is_some(), "{json}");
    }
    // The summary, by id.
    let output = cli("probe", &ids["router-b"], &planner_url, false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    assert!(summary.contains("OUTCOME   OK\n"), "{summary}");
    assert!(
        summary.contains("LOSS      0.0 % (3 sent, 3 received)"),
        "{summary}"
    );
    assert!(summary.contains("EXECUTOR  exec-b (zone=b)"), "{summary}");

    // grpcurl through reflection.
    let answer = grpcurl(
        planner_addr,
        &[
            "-d",
            r#"{"device":"router-b"}"#,
            "netward.v1.PlannerService/ProbeDevice",
        ],
    )
    .await;
    assert!(answer.success, "{}", answer.stderr);
    let json: serde_json::Value = serde_json::from_str(&answer.stdout).unwrap();
    assert_eq!(json["executorId"], "exec-b", "{json}");
    assert_eq!(json["result"]["outcome"], "PROBE_OUTCOME_OK", "{json}");

    // Each probe is in the planner's audit trail, with its executor.
    let events = cluster
        .planner_client()
        .list_audit_events(v1::ListAuditEventsRequest {
            object_id: ids["router-b"].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(
        events.iter().all(|e| e.action == "ProbeDevice"
            && e.object_kind == "device"
            && e.detail.contains("\"executor_id\":\"exec-b\"")),
        "{events:?}"
    );

    // No device named: INVALID_ARGUMENT naming the field.
    let answer = grpcurl(
        planner_addr,
        &["-d", "{}", "netward.v1.PlannerService/ProbeDevice"],
    )
    .await;
    assert!(
        !answer.success
            && answer.stderr.contains("Code: InvalidArgument")
            && answer.stderr.contains("device"),
        "{}",
        answer.stderr
    );

    // No executor matches zone=c: the selector and who is connected.
    let output = cli("probe", "router-c", &planner_url, false).await;
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(
        error.contains("FAILED_PRECONDITION: no ping-executor connected to this planner matches")
            && error.contains("executor_selector {zone=c}")
            && error.contains("connected: exec-a {zone=a}, exec-b {zone=b}"),
        "{error}"
    );
    let answer = grpcurl(
        planner_addr,
        &[
            "-d",
            r#"{"device":"router-c"}"#,
            "netward.v1.PlannerService/ProbeDevice",
        ],
    )
    .await;
    assert!(!answer.success);
    assert!(
        answer.stderr.contains("Code: FailedPrecondition") && answer.stderr.contains("{zone=c}"),
        "{}",
        answer.stderr
    );

    // An unknown device; a poll of a device without SNMP.
    let output = cli("probe", "no-such-router", &planner_url, false).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("NOT_FOUND: device \"no-such-router\" not found"),
        "{}",
        text(&output.stderr)
    );
    let output = cli("poll", "router-b", &planner_url, false).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr)
            .contains("FAILED_PRECONDITION: device \"router-b\" has no SNMP settings"),
        "{}",
        text(&output.stderr)
    );

    // exec-b stops answering (SIGSTOP; its session stays for three
    // heartbeats): the caller gets DEADLINE_EXCEEDED after the probe's own
    // bound, (3 + 2) x (200 + 1000) ms + 5 s, not a hang.
    let exec_b = cluster.ping_executors.pop().unwrap();
    signal(exec_b.pid(), "-STOP").await;
    let started = Instant::now();
    let output = cli("probe", "router-b", &planner_url, false).await;
    let waited = started.elapsed();
    let error = text(&output.stderr);
    assert!(
        !output.status.success()
            && error.contains("DEADLINE_EXCEEDED: executor exec-b (version ")
            && error.contains("did not answer within 11000 ms"),
        "{error}"
    );
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");

    // Its session ends while a probe waits on it: UNAVAILABLE at once.
    let planner = cluster.planner.as_ref().unwrap();
    let sent_to_b = || {
        planner
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["message"] == "probe-now sent" && e["executor_id"] == "exec-b")
            .count()
    };
    let sent_before = sent_to_b();
    let waiting = tokio::spawn({
        let planner_url = planner_url.clone();
        async move { cli("probe", "router-b", &planner_url, false).await }
    });
    eventually("the probe waits on exec-b", Duration::from_secs(10), || {
        let sent = sent_to_b();
        async move { (sent > sent_before).then_some(()) }
    })
    .await;
    let killed_at = Instant::now();
    exec_b.kill().await;
    let output = waiting.await.unwrap();
    let error = text(&output.stderr);
    assert!(
        error
            .contains("UNAVAILABLE: executor exec-b left (its Work stream ended) before answering"),
        "{error}"
    );
    assert!(killed_at.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn poll_now_returns_a_sample_from_a_poller() {
    if !crate::snmp_v3::snmp_tools() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netward-poll-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let agent = crate::snmp_v3::snmpd(&dir);
    let mut cluster = crate::support::cluster()
        .planner()
        .snmp_pollers(1)
        .executor_ids(Target::SnmpPoller, &["poller-b"])
        .set_for(Target::SnmpPoller, "NETWARD_SNMP_POLLER__LABELS__ZONE", "b")
        .set_for(Target::Inventory, "NETWARD_SECRET_KEY", &"3c".repeat(32))
        .start()
        .await;
    cluster
        .inventory_client()
        .create_credential(crate::snmp_v3::credential("servers-v3"))
        .await
        .unwrap();
    let imported = cluster
        .import_devices(vec![v1::ImportRow {
            executor_selector: "zone=b".into(),
            ..crate::snmp_v3::server_row(agent.port)
        }])
        .await;
    assert_eq!(imported.created, 1, "{imported:?}");
    let ids = cluster.ids.clone();
    let planner_url = cluster.planner_url();
    // Imported after the planner started (the credential came first): its
    // copy of the inventory holds the device once its gauge says so.
    let metrics_addr = cluster.planner.as_ref().unwrap().metrics_addr;
    eventually(
        "the planner's copy holds the device",
        Duration::from_secs(20),
        || async move {
            let metrics = crate::support::http_get(metrics_addr, "/metrics").await;
            metrics
                .lines()
                .any(|line| line == "netward_inventory_copy_devices 1")
                .then_some(())
        },
    )
    .await;

    // The planner resolves the credential in its first second or so; until
    // then the poll is refused, saying so.
    let output = eventually("poll-now succeeds", Duration::from_secs(30), || {
        let planner_url = planner_url.clone();
        async move {
            let output = cli("poll", "linux-srv-01", &planner_url, true).await;
            if !output.status.success() {
                assert!(
                    text(&output.stderr).contains("is not resolved yet"),
                    "{}",
                    text(&output.stderr)
                );
            }
            output.status.success().then_some(output)
        }
    })
    .await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["executor_id"], "poller-b", "{json}");
    assert_eq!(json["outcome"], "ok", "{json}");
    assert_eq!(json["device_id"], ids["linux-srv-01"].as_str(), "{json}");
    assert_eq!(json["sys_name"], "netward-v3-agent", "{json}");
    assert_eq!(json["profile"], "net-snmp", "{json}");
    assert!(json["interfaces"].as_u64() >= Some(1), "{json}");
    assert!(json["sys_uptime_ticks"].as_u64().is_some(), "{json}");

    let output = cli("poll", "linux-srv-01", &planner_url, false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    assert!(
        summary.contains("SYSNAME     netward-v3-agent\n"),
        "{summary}"
    );
    assert!(
        summary.contains("EXECUTOR    poller-b (zone=b)"),
        "{summary}"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_region_scoped_operator_probes_its_region_only_and_a_viewer_not_at_all() {
    if !can_ping() {
        return;
    }
    let row = |line: u32, name: &str, ip: &str, region: &str| v1::ImportRow {
        line,
        name: name.into(),
        ip: ip.into(),
        site: format!("{name}-site"),
        region: region.into(),
        ..Default::default()
    };
    // The planner checks tokens; the executor registers with the admin's,
    // and so do the cluster's clients.
    let token = |name: &str, role: &str, secret: &str| {
        format!(
            "\n[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            netward_shared::auth::token_sha256(secret)
        )
    };
    let config = format!(
        "[auth]\npeer_token = \"t-admin\"\n{}{}regions = [\"EMEA\"]\n{}\n\
         [ping_executor]\nexecutor_id = \"exec-1\"\n",
        token("admin", "admin", "t-admin"),
        token("emea-noc", "operator", "t-emea"),
        token("viewer", "viewer", "t-viewer"),
    );
    let cluster = crate::support::cluster()
        .planner()
        .ping_executors(1)
        .devices(vec![
            row(2, "emea-rtr", "127.0.0.1", "EMEA"),
            row(3, "amer-rtr", "127.0.0.2", "AMER"),
        ])
        .config(Target::Planner, &config)
        .config(Target::PingExecutor, &config)
        .client_token("t-admin")
        .start()
        .await;
    let imported = cluster.imported.as_ref().unwrap();
    assert_eq!(imported.created, 2, "{imported:?}");
    let ids = &cluster.ids;
    let planner_url = cluster.planner_url();
    let admin = cluster.planner_client();

    // The EMEA operator: its region's router, not the other one (which
    // reads as unknown, as in the inventory).
    let output = cli_as(Some("t-emea"), "probe", "emea-rtr", &planner_url, true).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (json["executor_id"].as_str(), json["outcome"].as_str()),
        (Some("exec-1"), Some("ok"))
    );
    let output = cli_as(Some("t-emea"), "probe", "amer-rtr", &planner_url, false).await;
    assert!(
        text(&output.stderr).contains("NOT_FOUND: device \"amer-rtr\" not found"),
        "{}",
        text(&output.stderr)
    );
    let output = cli_as(
        Some("t-emea"),
        "probe",
        &ids["amer-rtr"],
        &planner_url,
        false,
    )
    .await;
    assert!(
        text(&output.stderr).contains("NOT_FOUND"),
        "{}",
        text(&output.stderr)
    );
    // A viewer may read, not probe; the admin probes anywhere.
    let output = cli_as(Some("t-viewer"), "probe", "emea-rtr", &planner_url, false).await;
    assert!(
        !output.status.success() && text(&output.stderr).contains("PERMISSION_DENIED"),
        "{}",
        text(&output.stderr)
    );
    let output = cli_as(Some("t-admin"), "probe", "amer-rtr", &planner_url, false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    // The audit trail names who probed.
    let events = admin
        .clone()
        .list_audit_events(v1::ListAuditEventsRequest {
            object_id: ids["emea-rtr"].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].actor.as_str(), events[0].action.as_str()),
        ("emea-noc", "ProbeDevice")
    );
}

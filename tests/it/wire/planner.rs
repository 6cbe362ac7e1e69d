//! PlannerService and ExecutorService over the wire: an inventory with two
//! devices (one with an executor selector), a planner leading alone (ping
//! cycles every 2 s) with a ping-executor (its own ExecutorService behind a
//! token) and an snmp-poller; and a second planner with `[[auth.tokens]]`
//! for the refusals the roles make (no token, a viewer).

use std::time::Duration;

use netward_shared::auth::token_sha256;
use netward_shared::config::Target as ClusterTarget;
use netward_shared::testkit::cluster::NOBODY;
use netward_shared::testkit::eventually;

use super::Target;
use crate::executor::can_ping;
use crate::support::Netward;

const ADMIN: &str = "wire-admin-token";
const VIEWER: &str = "wire-viewer-token";

/// An `[auth]` section with an admin and a viewer token.
fn auth_section() -> String {
    format!(
        "[auth]\npeer_token = \"wire-peer\"\n\n\
         [[auth.tokens]]\nname = \"admin\"\nrole = \"admin\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"viewer\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        token_sha256(ADMIN),
        token_sha256(VIEWER)
    )
}

/// The executors of `kind` the planner lists, once there are `count`.
async fn executors(planner: &Target, kind: &str, count: usize) -> Vec<serde_json::Value> {
    eventually(
        &format!("{count} executors of {kind} registered"),
        Duration::from_secs(30),
        || async move {
            let listed = planner
                .ok(
                    "netward.v1.PlannerService/ListExecutors",
                    &format!(r#"{{"kind":"{kind}"}}"#),
                )
                .await;
            let listed = listed["executors"].as_array().cloned().unwrap_or_default();
            (listed.len() == count).then_some(listed)
        },
    )
    .await
}

#[tokio::test]
async fn planner_and_executor_rpcs_over_the_wire() {
    // Executors with label zone=a (the ping executor's ExecutorService
    // behind the tokens of auth_section()), no alerting: results have
    // nowhere to go, which is not needed here.
    let executor_config =
        |section: &str, extra: &str| format!("{extra}\n[{section}.labels]\nzone = \"a\"\n");
    let mut cluster = crate::support::cluster()
        .planner()
        .ping_interval(Duration::from_secs(2))
        .ping_executors(1)
        .snmp_pollers(1)
        .set_for(
            ClusterTarget::Inventory,
            "NETWARD_SECRET_KEY",
            &"ab".repeat(32),
        )
        .config(
            ClusterTarget::PingExecutor,
            &executor_config("ping_executor", &auth_section()),
        )
        .config(
            ClusterTarget::SnmpPoller,
            &executor_config("snmp_poller", ""),
        )
        .executor_ids(ClusterTarget::PingExecutor, &["wire-ping"])
        .executor_ids(ClusterTarget::SnmpPoller, &["wire-snmp"])
        .start()
        .await;
    let inventory_url = cluster.inventory_url();
    // The devices' SNMP credential first, then the devices (the planner and
    // the executors already run: the import waits for the planner's copy).
    Target::new(cluster.inventory.as_ref().unwrap().grpc_addr)
        .call(
            "netward.v1.InventoryService/CreateCredential",
            r#"{"name":"wire-v2c","version":"SNMP_VERSION_V2C","community":"public"}"#,
            Duration::from_secs(10),
        )
        .await;
    // An SNMP agent that never answers: polls of it time out.
    let silent = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let row =
        |line: u32, name: &str, ip: &str, selector: &str| netward_shared::proto::v1::ImportRow {
            line,
            name: name.into(),
            ip: ip.into(),
            site: "dc-01".into(),
            executor_selector: selector.into(),
            ..Default::default()
        };
    let imported = cluster
        .import_devices(vec![
            row(2, "router-a", "127.0.0.1", "zone=a"),
            row(3, "router-z", "127.0.0.2", "zone=z"),
            netward_shared::proto::v1::ImportRow {
                snmp_version: "2c".into(),
                snmp_credential: "wire-v2c".into(),
                snmp_port: port.to_string(),
                ..row(4, "switch-s", "127.0.0.3", "zone=a")
            },
        ])
        .await;
    assert_eq!(imported.created, 3, "{imported:?}");
    let ids = cluster.ids.clone();

    let planner = Target::new(cluster.planner.as_ref().unwrap().grpc_addr);
    let (ping, poller) = (&cluster.ping_executors[0], &cluster.snmp_pollers[0]);

    // ListExecutors: each with its id, kind, labels and capacity.
    let listed = executors(&planner, "EXECUTOR_KIND_PING", 1).await;
    assert_eq!(listed[0]["executorId"], "wire-ping", "{listed:?}");
    assert_eq!(listed[0]["kind"], "EXECUTOR_KIND_PING", "{listed:?}");
    assert_eq!(listed[0]["labels"]["zone"], "a", "{listed:?}");
    assert!(
        listed[0]["capacity"].as_u64().unwrap_or(0) >= 1,
        "{listed:?}"
    );
    assert!(listed[0]["sessionId"].is_string(), "{listed:?}");
    let ping_session = listed[0]["sessionId"].clone();
    let snmp_session = executors(&planner, "EXECUTOR_KIND_SNMP", 1).await[0]["sessionId"].clone();
    let message = planner
        .err(
            "netward.v1.PlannerService/ListExecutors",
            "InvalidArgument",
            r#"{"kind":99}"#,
        )
        .await;
    assert!(message.contains("kind"), "{message}");

    // GetSizing: the documented example, what-if over the whole policy.
    let sizing = planner
        .ok(
            "netward.v1.PlannerService/GetSizing",
            r#"{"deviceCount":"875","targetBatches":10,"roundingStep":50,"minBatchSize":50,"maxBatchSize":500}"#,
        )
        .await;
    assert_eq!(sizing["deviceCount"], "875", "{sizing}");
    assert_eq!(sizing["batchSize"], 100, "{sizing}");
    assert_eq!(sizing["batchCount"], 9, "{sizing}");
    assert_eq!(sizing["unclampedBatchSize"], 100, "{sizing}");
    assert!(sizing.get("clamped").is_none(), "{sizing}");
    assert_eq!(sizing["policy"]["targetBatches"], 10, "{sizing}");
    let explanation = sizing["explanation"].as_str().unwrap_or_default();
    assert!(explanation.contains("9 batches"), "{sizing}");
    let message = planner
        .err(
            "netward.v1.PlannerService/GetSizing",
            "InvalidArgument",
            r#"{"deviceCount":"1000000001"}"#,
        )
        .await;
    assert!(message.contains("device_count"), "{message}");
    let message = planner
        .err(
            "netward.v1.PlannerService/GetSizing",
            "InvalidArgument",
            r#"{"deviceCount":"10","minBatchSize":600,"maxBatchSize":500}"#,
        )
        .await;
    assert!(message.contains("min_batch_size"), "{message}");

    // GetPolicy: the sizing policy and the configured intervals.
    let policy = planner
        .ok("netward.v1.PlannerService/GetPolicy", "{}")
        .await;
    assert_eq!(policy["pingInterval"], "2s", "{policy}");
    assert_eq!(policy["snmpInterval"], "60s", "{policy}");
    assert_eq!(policy["sizing"]["maxBatchSize"], 500, "{policy}");
    assert!(policy["defaultProbe"].is_object(), "{policy}");
    assert_eq!(policy["snmpLabelRefreshInterval"], "3600s", "{policy}");

    // SetPolicy: only the fields set change; an inverted clamp is refused.
    let set = planner
        .ok(
            "netward.v1.PlannerService/SetPolicy",
            r#"{"targetBatches":20}"#,
        )
        .await;
    assert_eq!(set["sizing"]["targetBatches"], 20, "{set}");
    assert_eq!(set["sizing"]["maxBatchSize"], 500, "{set}");
    let message = planner
        .err(
            "netward.v1.PlannerService/SetPolicy",
            "InvalidArgument",
            r#"{"minBatchSize":900,"maxBatchSize":800}"#,
        )
        .await;
    assert!(message.contains("min_batch_size"), "{message}");
    let policy = planner
        .ok("netward.v1.PlannerService/GetPolicy", "{}")
        .await;
    assert_eq!(policy["sizing"]["targetBatches"], 20, "{policy}");
    assert_eq!(policy["sizing"]["minBatchSize"], 50, "refused: unchanged");

    // ListAuditEvents: the SetPolicy change, newest first.
    let audit = planner
        .ok(
            "netward.v1.PlannerService/ListAuditEvents",
            r#"{"pageSize":10}"#,
        )
        .await;
    let events = audit["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["action"], "SetPolicy", "{audit}");
    assert_eq!(events[0]["service"], "planner", "{audit}");
    let message = planner
        .err(
            "netward.v1.PlannerService/ListAuditEvents",
            "InvalidArgument",
            r#"{"pageSize":5000}"#,
        )
        .await;
    assert!(message.contains("page_size"), "{message}");

    // WatchCycles: cycle starts (and completions) as they happen.
    let watched = planner
        .stream_ok(
            "netward.v1.PlannerService/WatchCycles",
            r#"{"kind":"EXECUTOR_KIND_PING"}"#,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        watched
            .iter()
            .any(|e| e["event"] == "CYCLE_EVENT_KIND_STARTED"
                && e["cycle"]["kind"] == "EXECUTOR_KIND_PING"),
        "{watched:?}"
    );
    let message = planner
        .stream_err(
            "netward.v1.PlannerService/WatchCycles",
            "InvalidArgument",
            r#"{"kind":99}"#,
        )
        .await;
    assert!(message.contains("kind"), "{message}");

    // GetCurrentCycle: the latest ping cycle with its batches.
    let current = planner
        .ok(
            "netward.v1.PlannerService/GetCurrentCycle",
            r#"{"kind":"EXECUTOR_KIND_PING"}"#,
        )
        .await;
    assert_eq!(current["cycle"]["kind"], "EXECUTOR_KIND_PING", "{current}");
    assert_eq!(current["cycle"]["deviceCount"], 3, "{current}");
    let batches = current["batches"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        batches.len() as u64,
        current["cycle"]["batchCount"].as_u64().unwrap_or(0),
        "{current}"
    );
    let message = planner
        .err(
            "netward.v1.PlannerService/GetCurrentCycle",
            "InvalidArgument",
            r#"{"kind":99}"#,
        )
        .await;
    assert!(message.contains("kind"), "{message}");

    // ListCycles: newest first, paged.
    let cycles = planner
        .ok(
            "netward.v1.PlannerService/ListCycles",
            r#"{"kind":"EXECUTOR_KIND_PING","pageSize":1}"#,
        )
        .await;
    let listed = cycles["cycles"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{cycles}");
    // Newest first: the current cycle read above, or one opened since (the
    // interval is 2 s and a loaded machine may be slower than that).
    let id = |value: &serde_json::Value| value.as_str().and_then(|s| s.parse::<u64>().ok());
    let newest = id(&listed[0]["cycleId"]).expect("a cycle id");
    let earlier = id(&current["cycle"]["cycleId"]).expect("a cycle id");
    assert!(newest >= earlier, "{cycles} after cycle {earlier}");
    assert!(cycles["nextPageToken"].is_string(), "{cycles}");
    let message = planner
        .err(
            "netward.v1.PlannerService/ListCycles",
            "InvalidArgument",
            r#"{"pageToken":"not-a-page"}"#,
        )
        .await;
    assert!(message.contains("page_token"), "{message}");

    // GetLeader: alone, without Redis, it leads.
    let leader = planner
        .ok("netward.v1.PlannerService/GetLeader", "{}")
        .await;
    assert_eq!(leader["leading"], true, "{leader}");
    assert_eq!(leader["leaderInstanceId"], leader["instanceId"], "{leader}");

    // ProbeDevice: on the executor the selector matches; unknown, empty
    // and unmatched devices refused as documented.
    if can_ping() {
        let probed = planner
            .ok(
                "netward.v1.PlannerService/ProbeDevice",
                r#"{"device":"router-a"}"#,
            )
            .await;
        assert_eq!(probed["executorId"], "wire-ping", "{probed}");
        assert_eq!(probed["deviceName"], "router-a", "{probed}");
        assert_eq!(probed["selector"]["zone"], "a", "{probed}");
        assert_eq!(probed["executorLabels"]["zone"], "a", "{probed}");
        assert_eq!(probed["result"]["deviceId"], ids["router-a"], "{probed}");
        assert_eq!(probed["result"]["outcome"], "PROBE_OUTCOME_OK", "{probed}");
        assert!(probed["result"].get("cycleId").is_none(), "{probed}");
    } else {
        println!("skipped: a valid ProbeDevice needs ICMP");
    }
    let message = planner
        .err(
            "netward.v1.PlannerService/ProbeDevice",
            "NotFound",
            r#"{"device":"no-such-router"}"#,
        )
        .await;
    assert!(message.contains("no-such-router"), "{message}");
    let message = planner
        .err(
            "netward.v1.PlannerService/ProbeDevice",
            "InvalidArgument",
            r#"{"device":" "}"#,
        )
        .await;
    assert!(message.contains("device"), "{message}");
    let message = planner
        .err(
            "netward.v1.PlannerService/ProbeDevice",
            "FailedPrecondition",
            r#"{"device":"router-z"}"#,
        )
        .await;
    assert!(
        message.contains("zone=z") && message.contains("wire-ping"),
        "{message}"
    );

    // PollDevice: on the poller, once the planner has resolved the
    // credential (refused, saying so, until then; the last try below
    // fails with the refusal).
    eventually(
        "the planner resolves the device's credential",
        Duration::from_secs(10),
        || {
            let planner = &planner;
            async move {
                let answer = planner
                    .call(
                        "netward.v1.PlannerService/PollDevice",
                        r#"{"device":"switch-s"}"#,
                        Duration::from_secs(10),
                    )
                    .await;
                let unresolved = answer.message.contains("is not resolved yet");
                (!unresolved).then_some(())
            }
        },
    )
    .await;
    let polled = planner
        .ok(
            "netward.v1.PlannerService/PollDevice",
            r#"{"device":"switch-s"}"#,
        )
        .await;
    assert_eq!(polled["executorId"], "wire-snmp", "{polled}");
    assert_eq!(polled["deviceName"], "switch-s", "{polled}");
    assert_eq!(polled["sample"]["deviceId"], ids["switch-s"], "{polled}");
    assert_eq!(
        polled["sample"]["outcome"], "SNMP_OUTCOME_TIMEOUT",
        "{polled}"
    );
    assert!(polled["sample"].get("cycleId").is_none(), "{polled}");

    // PollDevice: a device without SNMP settings, an unknown one.
    let message = planner
        .err(
            "netward.v1.PlannerService/PollDevice",
            "FailedPrecondition",
            r#"{"device":"router-a"}"#,
        )
        .await;
    assert!(message.contains("no SNMP settings"), "{message}");
    let message = planner
        .err(
            "netward.v1.PlannerService/PollDevice",
            "NotFound",
            r#"{"device":"no-such-router"}"#,
        )
        .await;
    assert!(message.contains("no-such-router"), "{message}");

    // Work: Register first gets Registered; anything else first is refused.
    let answers = planner
        .stream_ok(
            "netward.v1.PlannerService/Work",
            r#"{"register":{"executorId":"wire-grpcurl","kind":"EXECUTOR_KIND_SNMP","capacity":1,"hostname":"wire","labels":{"zone":"none"}}}"#,
            Duration::from_secs(3),
        )
        .await;
    let registered = &answers.first().expect("a Registered answer")["registered"];
    assert!(registered["sessionId"].is_string(), "{answers:?}");
    assert_eq!(registered["leading"], true, "{answers:?}");
    assert_eq!(
        registered["plannerInstanceId"], leader["instanceId"],
        "{answers:?}"
    );
    assert!(registered["heartbeatIntervalMs"].as_u64().unwrap_or(0) > 0);
    let message = planner
        .stream_err(
            "netward.v1.PlannerService/Work",
            "InvalidArgument",
            r#"{"heartbeat":{"inFlightBatches":0}}"#,
        )
        .await;
    assert!(message.contains("Register"), "{message}");
    let message = planner
        .stream_err(
            "netward.v1.PlannerService/Work",
            "InvalidArgument",
            r#"{"register":{"executorId":"","kind":"EXECUTOR_KIND_PING","capacity":0}}"#,
        )
        .await;
    assert!(
        message.contains("register.executor_id") && message.contains("register.capacity"),
        "{message}"
    );

    // ExecutorService on the ping-executor (behind its tokens).
    let ping_admin = Target::with_token(ping.grpc_addr, ADMIN);
    let status = ping_admin
        .ok("netward.v1.ExecutorService/GetExecutorStatus", "{}")
        .await;
    assert_eq!(status["executorId"], "wire-ping", "{status}");
    assert_eq!(status["kind"], "EXECUTOR_KIND_PING", "{status}");
    assert_eq!(status["labels"]["zone"], "a", "{status}");
    assert_eq!(status["plannerConnected"], true, "{status}");
    // The session id the planner gave this executor's Work stream.
    assert_eq!(status["plannerSessionId"], ping_session, "{status}");
    assert!(status["startedAt"].is_string(), "{status}");
    let message = Target::new(ping.grpc_addr)
        .err(
            "netward.v1.ExecutorService/GetExecutorStatus",
            "Unauthenticated",
            "{}",
        )
        .await;
    assert!(!message.is_empty());
    if can_ping() {
        let probed = ping_admin
            .ok(
                "netward.v1.ExecutorService/Probe",
                r#"{"address":"127.0.0.1","settings":{"count":2,"intervalMs":10,"timeoutMs":500}}"#,
            )
            .await;
        assert_eq!(probed["result"]["address"], "127.0.0.1", "{probed}");
        assert_eq!(probed["result"]["outcome"], "PROBE_OUTCOME_OK", "{probed}");
        assert!(probed["result"].get("deviceId").is_none(), "{probed}");
    } else {
        println!("skipped: a valid Probe needs ICMP");
    }
    let message = ping_admin
        .err(
            "netward.v1.ExecutorService/Probe",
            "InvalidArgument",
            r#"{"address":"router-a"}"#,
        )
        .await;
    assert!(message.contains("address"), "{message}");
    let message = ping_admin
        .err(
            "netward.v1.ExecutorService/Probe",
            "InvalidArgument",
            r#"{"address":"127.0.0.1","settings":{"count":101,"intervalMs":6000,"timeoutMs":10,"retries":11}}"#,
        )
        .await;
    for field in [
        "settings.count",
        "settings.interval_ms",
        "settings.timeout_ms",
        "settings.retries",
    ] {
        assert!(message.contains(field), "{field}: {message}");
    }
    let message = ping_admin
        .err(
            "netward.v1.ExecutorService/Poll",
            "FailedPrecondition",
            r#"{"address":"127.0.0.1"}"#,
        )
        .await;
    assert!(message.contains("snmp-poller"), "{message}");

    // ExecutorService on the snmp-poller: a poll of a silent port is a
    // sample saying so; a probe is the other kind's.
    let snmp = Target::new(poller.grpc_addr);
    let polled = snmp
        .ok(
            "netward.v1.ExecutorService/Poll",
            &format!(
                r#"{{"address":"127.0.0.3","target":{{"version":"SNMP_VERSION_V2C","port":{port},"credential":{{"version":"SNMP_VERSION_V2C","community":"public"}},"timeoutMs":200,"retries":0,"deviceBudgetMs":1000}}}}"#
            ),
        )
        .await;
    assert_eq!(polled["sample"]["address"], "127.0.0.3", "{polled}");
    assert_eq!(
        polled["sample"]["outcome"], "SNMP_OUTCOME_TIMEOUT",
        "{polled}"
    );
    assert!(polled["sample"].get("deviceId").is_none(), "{polled}");
    let message = snmp
        .err(
            "netward.v1.ExecutorService/Poll",
            "InvalidArgument",
            r#"{"address":"127.0.0.1","target":{"timeoutMs":5,"retries":9}}"#,
        )
        .await;
    assert!(
        message.contains("target.timeout_ms")
            && message.contains("target.retries")
            && message.contains("target.credential"),
        "{message}"
    );
    let status = snmp
        .ok("netward.v1.ExecutorService/GetExecutorStatus", "{}")
        .await;
    assert_eq!(status["executorId"], "wire-snmp", "{status}");
    assert_eq!(status["kind"], "EXECUTOR_KIND_SNMP", "{status}");
    assert_eq!(status["plannerConnected"], true, "{status}");
    assert_eq!(status["plannerSessionId"], snmp_session, "{status}");
    assert!(status.get("socketMode").is_none(), "{status}");
    // With no planner to register with: not connected, no session id.
    let lone = cluster
        .start_another(
            ClusterTarget::PingExecutor,
            &[
                ("NETWARD_PLANNER_URL", NOBODY),
                ("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "wire-lone"),
            ],
        )
        .await;
    // (It has the cluster's ping-executor config: the tokens too.)
    let status = Target::with_token(lone.grpc_addr, ADMIN)
        .ok("netward.v1.ExecutorService/GetExecutorStatus", "{}")
        .await;
    assert_eq!(status["executorId"], "wire-lone", "{status}");
    assert!(status.get("plannerConnected").is_none(), "{status}");
    assert!(status.get("plannerSessionId").is_none(), "{status}");
    drop(lone);
    let message = snmp
        .err(
            "netward.v1.ExecutorService/Probe",
            "FailedPrecondition",
            r#"{"address":"127.0.0.1"}"#,
        )
        .await;
    assert!(message.contains("ping-executor"), "{message}");

    // A planner with tokens: no token, and a viewer, refused as the roles say.
    // (Beside the cluster's: a planner with an `[auth]` of its own.)
    let config = cluster.scratch_file("planner-auth.toml", &auth_section());
    let guarded = Netward::start(
        "planner",
        &[
            "--inventory-url",
            &inventory_url,
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let anonymous = Target::new(guarded.grpc_addr);
    let viewer = Target::with_token(guarded.grpc_addr, VIEWER);
    let admin = Target::with_token(guarded.grpc_addr, ADMIN);
    anonymous
        .err(
            "netward.v1.PlannerService/GetLeader",
            "Unauthenticated",
            "{}",
        )
        .await;
    anonymous
        .err(
            "netward.v1.PlannerService/GetPolicy",
            "Unauthenticated",
            "{}",
        )
        .await;
    let message = viewer
        .err(
            "netward.v1.PlannerService/SetPolicy",
            "PermissionDenied",
            r#"{"targetBatches":5}"#,
        )
        .await;
    assert!(!message.is_empty());
    viewer
        .err(
            "netward.v1.PlannerService/ProbeDevice",
            "PermissionDenied",
            r#"{"device":"router-a"}"#,
        )
        .await;
    viewer
        .stream_err(
            "netward.v1.PlannerService/Work",
            "PermissionDenied",
            r#"{"register":{"executorId":"x","kind":"EXECUTOR_KIND_PING","capacity":1}}"#,
        )
        .await;
    admin
        .ok(
            "netward.v1.PlannerService/SetPolicy",
            r#"{"targetBatches":5}"#,
        )
        .await;
    let audit = viewer
        .ok("netward.v1.PlannerService/ListAuditEvents", "{}")
        .await;
    assert_eq!(audit["events"][0]["actor"], "admin", "{audit}");
    assert_eq!(audit["events"][0]["action"], "SetPolicy", "{audit}");
    drop(silent);
}

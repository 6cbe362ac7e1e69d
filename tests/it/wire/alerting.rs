//! AlertingService over the wire: an inventory and an alerting process of
//! the real binary on one database, with admin, viewer and executor tokens;
//! one site and one device made over grpcurl; results sent on Ingest as an
//! executor would; then every RPC once with a valid request (checking what
//! its proto comments promise) and once with one it must refuse.

use std::time::Duration;

use netward_shared::auth::token_sha256;
use netward_shared::testkit::eventually;
use serde_json::Value;

use super::Target;

const ADMIN: &str = "wire-alerting-admin";
const VIEWER: &str = "wire-alerting-viewer";
const EXECUTOR: &str = "wire-alerting-executor";
const SERVICES: &str = "wire-alerting-services";
const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

/// A config with a peer token and one named token per role used here.
fn config() -> String {
    let mut text = format!("[auth]\npeer_token = \"{SERVICES}\"\n");
    for (name, role, token) in [
        ("admin", "admin", ADMIN),
        ("viewer", "viewer", VIEWER),
        ("executor", "executor", EXECUTOR),
        ("services", "service", SERVICES),
    ] {
        text.push_str(&format!(
            "\n[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_sha256(token)
        ));
    }
    text
}

/// A ping result batch for `device` on `cycle`: answered or silent.
fn batch(sequence: u64, cycle: u64, device: &str, answered: bool) -> String {
    let (received, loss, outcome) = if answered {
        (3, 0, "PROBE_OUTCOME_OK")
    } else {
        (0, 100, "PROBE_OUTCOME_TIMEOUT")
    };
    let rtt = if answered { r#","rttAvgUs":120"# } else { "" };
    format!(
        r#"{{"batch":{{"executorId":"wire","kind":"EXECUTOR_KIND_PING","sequence":{sequence},"batchUid":"{}","cycleId":{cycle},"probes":[{{"deviceId":"{device}","cycleId":{cycle},"sent":3,"received":{received},"lossPercent":{loss},"outcome":"{outcome}"{rtt}}}]}}}}"#,
        uuid::Uuid::new_v4()
    )
}

/// Calls of AlertingService `method` that got their response headers (for
/// a stream: it is open), from alerting's `/metrics`.
async fn streams_opened(metrics: std::net::SocketAddr, method: &str) -> u64 {
    let label = format!("method=\"{method}\"");
    crate::support::http_get(metrics, "/metrics")
        .await
        .lines()
        .filter(|line| {
            line.starts_with("netward_grpc_server_request_duration_seconds_count{")
                && line.contains(&label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const HELLO: &str =
    r#"{"hello":{"executorId":"wire","kind":"EXECUTOR_KIND_PING","version":"test"}}"#;

#[tokio::test]
async fn every_alerting_rpc_answers_a_valid_request_and_refuses_an_invalid_one() {
    let cluster = crate::support::cluster()
        .config_all(&config())
        .set_for(
            netward_shared::config::Target::Inventory,
            "NETWARD_SECRET_KEY",
            &"ab".repeat(32),
        )
        .client_token(ADMIN)
        .alerting()
        .start()
        .await;
    let (inventory, alerting_process) = (
        cluster.inventory.as_ref().unwrap(),
        cluster.alerting.as_ref().unwrap(),
    );
    let admin_inventory = Target::with_token(inventory.grpc_addr, ADMIN);
    let alerting = Target::with_token(alerting_process.grpc_addr, ADMIN);
    let viewer = Target::with_token(alerting_process.grpc_addr, VIEWER);
    let executor = Target::with_token(alerting_process.grpc_addr, EXECUTOR);

    // One site and one device, made over the wire.
    let site = admin_inventory
        .ok(
            "netward.v1.InventoryService/CreateSite",
            r#"{"site":{"name":"wire-site","code":"WS","region":"Wireland"}}"#,
        )
        .await;
    let site_id = site["site"]["id"].as_str().unwrap().to_string();
    let device = admin_inventory
        .ok(
            "netward.v1.InventoryService/CreateDevice",
            &format!(
                r#"{{"device":{{"name":"wire-rtr","ipAddress":"127.41.0.1","siteId":"{site_id}"}}}}"#
            ),
        )
        .await;
    let device_id = device["device"]["id"].as_str().unwrap().to_string();
    let by_device = format!(r#"{{"deviceId":"{device_id}"}}"#);

    // Alerting follows the inventory: it knows the device soon.
    eventually(
        "alerting learns the device",
        Duration::from_secs(20),
        || {
            let (alerting, by_device) = (&alerting, &by_device);
            async move {
                let answer = alerting
                    .call(
                        "netward.v1.AlertingService/GetDeviceStatus",
                        by_device,
                        Duration::from_secs(5),
                    )
                    .await;
                answer.code.is_none().then_some(())
            }
        },
    )
    .await;

    // Ingest: hello, a silent probe (acked, stored), and a batch without a
    // batch_uid (rejected for good, naming the field).
    let bad_batch = r#"{"batch":{"executorId":"wire","sequence":2,"cycleId":1,"probes":[]}}"#;
    // (An admin token: an executor token's results need a grant from the
    // planner, which this stack has not.)
    let responses = alerting
        .stream_ok(
            "netward.v1.AlertingService/Ingest",
            &format!("{HELLO}\n{}\n{bad_batch}", batch(1, 1, &device_id, false)),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0]["ack"]["sequence"], "1", "{responses:?}");
    assert_eq!(responses[0]["ack"]["stored"], 1, "{responses:?}");
    assert_eq!(responses[1]["reject"]["sequence"], "2", "{responses:?}");
    let reason = responses[1]["reject"]["reason"].as_str().unwrap();
    assert!(reason.contains("batch_uid"), "{reason}");
    let message = alerting
        .stream_err(
            "netward.v1.AlertingService/Ingest",
            "InvalidArgument",
            &batch(1, 1, &device_id, false),
        )
        .await;
    assert!(message.contains("IngestHello"), "{message}");
    // IngestHello's executor_id and kind are required.
    let message = alerting
        .stream_err(
            "netward.v1.AlertingService/Ingest",
            "InvalidArgument",
            r#"{"hello":{"executorId":"","kind":"EXECUTOR_KIND_PING"}}"#,
        )
        .await;
    assert!(message.contains("hello.executor_id: required"), "{message}");
    let message = alerting
        .stream_err(
            "netward.v1.AlertingService/Ingest",
            "InvalidArgument",
            r#"{"hello":{"executorId":"wire"}}"#,
        )
        .await;
    assert!(message.contains("hello.kind: required"), "{message}");
    // Only executors (and admins) send results.
    viewer
        .stream_err(
            "netward.v1.AlertingService/Ingest",
            "PermissionDenied",
            HELLO,
        )
        .await;

    // Device state: DOWN after the silent probe (down_after 1).
    let status = alerting
        .ok("netward.v1.AlertingService/GetDeviceStatus", &by_device)
        .await;
    let status = &status["status"];
    assert_eq!(status["deviceName"], "wire-rtr");
    assert_eq!(status["siteId"], site_id.as_str());
    assert_eq!(status["region"], "Wireland");
    assert_eq!(status["state"], "DEVICE_STATE_DOWN");
    assert_eq!(status["consecutiveFailures"], 1);
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetDeviceStatus",
            "InvalidArgument",
            r#"{"deviceId":"nope"}"#,
        )
        .await;
    assert!(
        message.contains("device_id") && message.contains("nope"),
        "{message}"
    );
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetDeviceStatus",
            "NotFound",
            &format!(r#"{{"deviceId":"{UNKNOWN}"}}"#),
        )
        .await;
    assert!(message.contains(UNKNOWN), "{message}");

    let listed = alerting
        .ok(
            "netward.v1.AlertingService/ListDeviceStatuses",
            &format!(r#"{{"siteId":"{site_id}","states":["DEVICE_STATE_DOWN"]}}"#),
        )
        .await;
    assert_eq!(listed["statuses"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["statuses"][0]["deviceId"], device_id.as_str());
    assert_eq!(listed["totalCount"], "1", "{listed}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListDeviceStatuses",
            "InvalidArgument",
            r#"{"pageToken":"garbage"}"#,
        )
        .await;
    assert!(message.contains("page_token"), "{message}");
    // A page size above the maximum is treated as the maximum (AIP-158).
    let listed = alerting
        .ok(
            "netward.v1.AlertingService/ListDeviceStatuses",
            r#"{"pageSize":5000}"#,
        )
        .await;
    let statuses = listed["statuses"].as_array().unwrap();
    assert!(!statuses.is_empty() && statuses.len() <= 1000, "{listed}");
    // A malformed site id would match nothing: refused.
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListDeviceStatuses",
            "InvalidArgument",
            r#"{"siteId":"nope"}"#,
        )
        .await;
    assert!(message.contains("site_id"), "{message}");

    let history = alerting
        .ok("netward.v1.AlertingService/GetDeviceHistory", &by_device)
        .await;
    assert_eq!(history["deviceId"], device_id.as_str());
    assert_eq!(history["step"], "60s", "1-minute rollups: {history}");
    let changes = history["stateChanges"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["toState"] == "DEVICE_STATE_DOWN"),
        "{history}"
    );
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetDeviceHistory",
            "InvalidArgument",
            &format!(
                r#"{{"deviceId":"{device_id}","startTime":"2026-01-02T00:00:00Z","endTime":"2026-01-01T00:00:00Z"}}"#
            ),
        )
        .await;
    assert!(message.contains("start_time"), "{message}");

    // Alerts: the built-in device-down rule fired.
    let alerts = alerting
        .ok("netward.v1.AlertingService/ListAlerts", &by_device)
        .await;
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["ruleName"], "device-down", "{alerts}");
    assert_eq!(alert["state"], "ALERT_STATE_FIRING", "{alerts}");
    let alert_id = alert["id"].as_str().unwrap().to_string();
    let by_alert = format!(r#"{{"id":"{alert_id}"}}"#);
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListAlerts",
            "InvalidArgument",
            r#"{"pageToken":"garbage"}"#,
        )
        .await;
    assert!(message.contains("page_token"), "{message}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListAlerts",
            "InvalidArgument",
            r#"{"severities":[99]}"#,
        )
        .await;
    assert!(message.contains("severities"), "{message}");
    for filter in ["siteId", "deviceId", "ruleId"] {
        let message = alerting
            .err(
                "netward.v1.AlertingService/ListAlerts",
                "InvalidArgument",
                &format!(r#"{{"{filter}":"nope"}}"#),
            )
            .await;
        assert!(message.contains("not a UUID"), "{filter}: {message}");
    }
    let got = alerting
        .ok("netward.v1.AlertingService/GetAlert", &by_alert)
        .await;
    assert_eq!(got["alert"]["deviceId"], device_id.as_str());
    assert_eq!(got["alert"]["siteName"], "wire-site");
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetAlert",
            "NotFound",
            &format!(r#"{{"id":"{UNKNOWN}"}}"#),
        )
        .await;
    assert!(message.contains(UNKNOWN), "{message}");
    let acked = alerting
        .ok(
            "netward.v1.AlertingService/AckAlert",
            &format!(r#"{{"id":"{alert_id}","acknowledgedBy":"noc","comment":"on it"}}"#),
        )
        .await;
    assert_eq!(acked["alert"]["state"], "ALERT_STATE_ACKNOWLEDGED");
    assert_eq!(acked["alert"]["ackComment"], "on it");
    assert!(acked["alert"]["acknowledgedAt"].is_string(), "{acked}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/AckAlert",
            "InvalidArgument",
            &by_alert,
        )
        .await;
    assert!(message.contains("acknowledged_by"), "{message}");

    // Rules.
    let rule = alerting
        .ok(
            "netward.v1.AlertingService/CreateRule",
            r#"{"rule":{"name":"wire latency","kind":"RULE_KIND_HIGH_LATENCY","severity":"SEVERITY_HIGH","threshold":50}}"#,
        )
        .await;
    let rule = &rule["rule"];
    let rule_id = rule["id"].as_str().unwrap().to_string();
    assert_eq!(rule["enabled"], true, "unset on create = true: {rule}");
    assert_eq!(rule["scope"]["kind"], "SCOPE_KIND_GLOBAL", "unset = GLOBAL");
    assert_eq!(rule["windowProbes"], 10, "0 = 10: {rule}");
    assert_eq!(rule["builtin"], Value::Null, "not built in: {rule}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/CreateRule",
            "InvalidArgument",
            r#"{"rule":{"name":"no kind","severity":"SEVERITY_HIGH"}}"#,
        )
        .await;
    assert!(message.contains("rule.kind"), "{message}");
    let got = alerting
        .ok(
            "netward.v1.AlertingService/GetRule",
            &format!(r#"{{"id":"{rule_id}"}}"#),
        )
        .await;
    assert_eq!(got["rule"]["name"], "wire latency");
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetRule",
            "NotFound",
            &format!(r#"{{"id":"{UNKNOWN}"}}"#),
        )
        .await;
    assert!(message.contains(UNKNOWN), "{message}");
    let updated = alerting
        .ok(
            "netward.v1.AlertingService/UpdateRule",
            &format!(
                r#"{{"rule":{{"id":"{rule_id}","threshold":80,"name":"ignored"}},"updateMask":{{"paths":["threshold"]}}}}"#
            ),
        )
        .await;
    assert_eq!(updated["rule"]["threshold"], 80);
    assert_eq!(
        updated["rule"]["name"], "wire latency",
        "only masked fields"
    );
    let message = alerting
        .err(
            "netward.v1.AlertingService/UpdateRule",
            "InvalidArgument",
            &format!(
                r#"{{"rule":{{"id":"{rule_id}","kind":"RULE_KIND_PACKET_LOSS"}},"updateMask":{{"paths":["kind"]}}}}"#
            ),
        )
        .await;
    assert!(message.contains("kind"), "{message}");
    let rules = alerting
        .ok(
            "netward.v1.AlertingService/ListRules",
            r#"{"kind":"RULE_KIND_DEVICE_DOWN"}"#,
        )
        .await;
    let rules = rules["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    assert!(rules.iter().all(|r| r["kind"] == "RULE_KIND_DEVICE_DOWN"));
    let builtin = rules.iter().find(|r| r["builtin"] == true).unwrap();
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListRules",
            "InvalidArgument",
            r#"{"pageToken":"garbage"}"#,
        )
        .await;
    assert!(message.contains("page_token"), "{message}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/DeleteRule",
            "FailedPrecondition",
            &format!(r#"{{"id":"{}"}}"#, builtin["id"].as_str().unwrap()),
        )
        .await;
    assert!(message.contains("built in"), "{message}");
    alerting
        .ok(
            "netward.v1.AlertingService/DeleteRule",
            &format!(r#"{{"id":"{rule_id}"}}"#),
        )
        .await;
    alerting
        .err(
            "netward.v1.AlertingService/GetRule",
            "NotFound",
            &format!(r#"{{"id":"{rule_id}"}}"#),
        )
        .await;

    // Silences.
    let now = chrono::Utc::now();
    let silence = alerting
        .ok(
            "netward.v1.AlertingService/CreateSilence",
            &format!(
                r#"{{"silence":{{"matchers":[{{"kind":"SCOPE_KIND_DEVICE","value":"{device_id}"}}],"startsAt":"{}","endsAt":"{}","createdBy":"noc","comment":"wire"}}}}"#,
                (now - chrono::TimeDelta::minutes(1)).to_rfc3339(),
                (now + chrono::TimeDelta::hours(1)).to_rfc3339(),
            ),
        )
        .await;
    let silence_id = silence["silence"]["id"].as_str().unwrap().to_string();
    assert_eq!(silence["silence"]["active"], true, "{silence}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/CreateSilence",
            "InvalidArgument",
            &format!(
                r#"{{"silence":{{"matchers":[{{"kind":"SCOPE_KIND_DEVICE","value":"{device_id}"}}],"startsAt":"2026-01-02T00:00:00Z","endsAt":"2026-01-01T00:00:00Z","createdBy":"noc"}}}}"#
            ),
        )
        .await;
    assert!(message.contains("ends_at"), "{message}");
    let got = alerting
        .ok(
            "netward.v1.AlertingService/GetSilence",
            &format!(r#"{{"id":"{silence_id}"}}"#),
        )
        .await;
    assert_eq!(got["silence"]["createdBy"], "noc");
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetSilence",
            "NotFound",
            &format!(r#"{{"id":"{UNKNOWN}"}}"#),
        )
        .await;
    assert!(message.contains(UNKNOWN), "{message}");
    let silences = alerting
        .ok("netward.v1.AlertingService/ListSilences", &by_device)
        .await;
    assert_eq!(silences["silences"][0]["id"], silence_id.as_str());
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListSilences",
            "InvalidArgument",
            r#"{"deviceId":"nope"}"#,
        )
        .await;
    assert!(message.contains("device_id"), "{message}");
    viewer
        .err(
            "netward.v1.AlertingService/DeleteSilence",
            "PermissionDenied",
            &format!(r#"{{"id":"{silence_id}"}}"#),
        )
        .await;
    let deleted = alerting
        .ok(
            "netward.v1.AlertingService/DeleteSilence",
            &format!(r#"{{"id":"{silence_id}"}}"#),
        )
        .await;
    assert_eq!(deleted["silence"]["expired"], true, "{deleted}");
    assert_eq!(deleted["silence"]["active"], Value::Null, "{deleted}");

    // Watches: the device answers twice (up_after 2) while both are open:
    // UP, and its down alert resolves.
    let watch = Duration::from_secs(6);
    let metrics = alerting_process.metrics_addr;
    let opened_before = (
        streams_opened(metrics, "WatchDeviceStates").await,
        streams_opened(metrics, "WatchAlerts").await,
    );
    let ingest_up = async {
        // Once both watches have their response headers (the stream is
        // subscribed), not after a guessed time.
        eventually("both watches open", watch, || async move {
            let now = (
                streams_opened(metrics, "WatchDeviceStates").await,
                streams_opened(metrics, "WatchAlerts").await,
            );
            (now.0 > opened_before.0 && now.1 > opened_before.1).then_some(())
        })
        .await;
        let mut acks = Vec::new();
        for cycle in [2, 3] {
            let answered = batch(1, cycle, &device_id, true);
            acks.extend(
                alerting
                    .stream_ok(
                        "netward.v1.AlertingService/Ingest",
                        &format!("{HELLO}\n{answered}"),
                        Duration::from_secs(20),
                    )
                    .await,
            );
        }
        acks
    };
    let (states, alert_events, acks) = tokio::join!(
        viewer.stream_ok(
            "netward.v1.AlertingService/WatchDeviceStates",
            &by_device,
            watch
        ),
        viewer.stream_ok("netward.v1.AlertingService/WatchAlerts", &by_device, watch),
        ingest_up,
    );
    assert_eq!(acks[0]["ack"]["stored"], 1, "{acks:?}");
    assert!(
        states
            .iter()
            .any(|s| s["change"]["toState"] == "DEVICE_STATE_UP"
                && s["change"]["deviceId"] == device_id.as_str()),
        "{states:?}"
    );
    // Each change carries the trace context of the evaluation that made it
    // (empty here: this stack exports no spans).
    assert!(
        states.iter().all(|s| s.get("traceContext").is_some()),
        "{states:?}"
    );
    assert!(
        alert_events
            .iter()
            .any(|e| e["event"] == "ALERT_EVENT_KIND_RESOLVED"
                && e["alert"]["id"] == alert_id.as_str()),
        "{alert_events:?}"
    );
    executor
        .stream_err(
            "netward.v1.AlertingService/WatchDeviceStates",
            "PermissionDenied",
            &by_device,
        )
        .await;
    executor
        .stream_err(
            "netward.v1.AlertingService/WatchAlerts",
            "PermissionDenied",
            &by_device,
        )
        .await;
    // A malformed id in a filter is refused, not a stream that never matches.
    for method in ["WatchDeviceStates", "WatchAlerts"] {
        for (filter, field) in [("siteId", "site_id"), ("deviceId", "device_id")] {
            let message = viewer
                .stream_err(
                    &format!("netward.v1.AlertingService/{method}"),
                    "InvalidArgument",
                    &format!(r#"{{"{filter}":"nope"}}"#),
                )
                .await;
            assert!(message.contains(field), "{method} {filter}: {message}");
        }
    }
    // So is an enum value the proto does not have.
    for (method, filter) in [
        ("WatchDeviceStates", "states"),
        ("WatchAlerts", "severities"),
    ] {
        let message = viewer
            .stream_err(
                &format!("netward.v1.AlertingService/{method}"),
                "InvalidArgument",
                &format!(r#"{{"{filter}":[99]}}"#),
            )
            .await;
        assert!(message.contains(filter), "{method}: {message}");
    }
    let message = alerting
        .err(
            "netward.v1.AlertingService/AckAlert",
            "FailedPrecondition",
            &format!(r#"{{"id":"{alert_id}","acknowledgedBy":"noc"}}"#),
        )
        .await;
    assert!(message.contains("not open"), "{message}");

    // Notifications: no channel configured, so none; a bad alert id is named.
    let notifications = alerting
        .ok(
            "netward.v1.AlertingService/ListNotifications",
            &format!(r#"{{"alertId":"{alert_id}"}}"#),
        )
        .await;
    assert_eq!(
        notifications["notifications"],
        Value::Null,
        "{notifications}"
    );
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListNotifications",
            "InvalidArgument",
            r#"{"alertId":"nope"}"#,
        )
        .await;
    assert!(
        message.contains("alert_id") && message.contains("nope"),
        "{message}"
    );

    // Availability: one outage, now over.
    let availability = alerting
        .ok("netward.v1.AlertingService/GetAvailability", &by_device)
        .await;
    assert_eq!(availability["deviceId"], device_id.as_str());
    assert_eq!(availability["name"], "wire-rtr");
    assert_eq!(availability["incidents"], 1, "{availability}");
    assert_eq!(availability["deviceCount"], 1, "{availability}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetAvailability",
            "InvalidArgument",
            "{}",
        )
        .await;
    assert!(message.contains("device_id or site_id"), "{message}");
    let report = alerting
        .ok(
            "netward.v1.AlertingService/GetAvailabilityReport",
            r#"{"groupBy":"AVAILABILITY_GROUPING_SITE"}"#,
        )
        .await;
    assert_eq!(report["groupBy"], "AVAILABILITY_GROUPING_SITE");
    assert_eq!(report["rows"][0]["key"], site_id.as_str(), "{report}");
    assert_eq!(report["rows"][0]["region"], "Wireland", "{report}");
    assert_eq!(report["totals"]["incidents"], 1, "{report}");
    assert_eq!(
        report["topDevices"][0]["key"],
        device_id.as_str(),
        "{report}"
    );
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetAvailabilityReport",
            "NotFound",
            r#"{"region":"Nowhere"}"#,
        )
        .await;
    assert!(message.contains("Nowhere"), "{message}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetAvailabilityReport",
            "InvalidArgument",
            r#"{"startTime":"2026-01-02T00:00:00Z","endTime":"2026-01-01T00:00:00Z"}"#,
        )
        .await;
    assert!(message.contains("time"), "{message}");

    // The status page's summary.
    let summary = viewer
        .ok("netward.v1.AlertingService/GetStatusSummary", "{}")
        .await;
    assert_eq!(summary["inventorySynced"], true, "{summary}");
    assert_eq!(summary["sites"][0]["siteId"], site_id.as_str(), "{summary}");
    assert_eq!(summary["sites"][0]["counts"]["up"], "1", "{summary}");
    assert_eq!(summary["totals"]["total"], "1", "{summary}");
    assert!(summary["generatedAt"].is_string(), "{summary}");
    executor
        .err(
            "netward.v1.AlertingService/GetStatusSummary",
            "PermissionDenied",
            "{}",
        )
        .await;
    let message = Target::new(alerting_process.grpc_addr)
        .err(
            "netward.v1.AlertingService/GetStatusSummary",
            "Unauthenticated",
            "{}",
        )
        .await;
    assert!(message.contains("bearer token"), "{message}");

    // Interfaces: the device was never polled over SNMP.
    let interfaces = alerting
        .ok("netward.v1.AlertingService/ListInterfaces", &by_device)
        .await;
    assert_eq!(interfaces["deviceId"], device_id.as_str());
    assert_eq!(interfaces["deviceName"], "wire-rtr");
    assert_eq!(interfaces["interfaces"], Value::Null, "{interfaces}");
    assert_eq!(interfaces["polledAt"], Value::Null, "never polled");
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListInterfaces",
            "InvalidArgument",
            "{}",
        )
        .await;
    assert!(message.contains("device_id"), "{message}");
    let history = alerting
        .ok(
            "netward.v1.AlertingService/GetInterfaceHistory",
            &format!(r#"{{"deviceId":"{device_id}","ifIndex":1}}"#),
        )
        .await;
    assert_eq!(history["deviceId"], device_id.as_str());
    assert_eq!(history["ifIndex"], 1);
    assert!(history["step"].is_string(), "{history}");
    let message = alerting
        .err(
            "netward.v1.AlertingService/GetInterfaceHistory",
            "InvalidArgument",
            &by_device,
        )
        .await;
    assert!(message.contains("if_index"), "{message}");

    // The audit trail: the changes above, newest first, by the admin token.
    let audit = viewer
        .ok(
            "netward.v1.AlertingService/ListAuditEvents",
            r#"{"actor":"admin"}"#,
        )
        .await;
    let events = audit["events"].as_array().unwrap();
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions.first(), Some(&"DeleteSilence"), "{audit}");
    assert!(
        actions.contains(&"CreateRule") && actions.contains(&"AckAlert"),
        "{audit}"
    );
    let message = alerting
        .err(
            "netward.v1.AlertingService/ListAuditEvents",
            "InvalidArgument",
            r#"{"pageToken":"garbage"}"#,
        )
        .await;
    assert!(message.contains("page_token"), "{message}");
}

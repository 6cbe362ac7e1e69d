//! Every target, started as the real binary, answers the real grpcurl:
//! reflection lists its services, health says SERVING, `/metrics` serves,
//! SIGTERM stops it cleanly, and a configured token guards all but health.
//! Every metric it serves is `netward_*` with a `# HELP`, and gRPC calls are
//! counted by method and status code.

use netward_shared::config::Target;
use netward_shared::testkit::cluster::{Cluster, Node};

use crate::support::{grpcurl, http_get};

/// `target` alone as the real binary, with what it needs to run (the
/// inventory and alerting a fresh database), and `settings`: the node, and
/// the cluster that holds its database.
async fn start(target: &str, settings: &[(&str, &str)]) -> (Node, Cluster) {
    let target: Target = target.parse().unwrap();
    let mut builder = crate::support::cluster();
    builder = match target {
        Target::Inventory => builder,
        Target::Planner => builder.no_inventory().planner(),
        Target::Alerting => builder.no_inventory().alerting(),
        Target::PingExecutor => builder.no_inventory().ping_executors(1),
        Target::SnmpPoller => builder.no_inventory().snmp_pollers(1),
    };
    for (key, value) in settings {
        builder = match *key {
            // The cluster's own readiness calls send it too.
            "NETWARD_TOKEN" => builder.token(value),
            _ => builder.set(key, value),
        };
    }
    let mut cluster = builder.start().await;
    (cluster.take(target), cluster)
}

const TARGETS: [&str; 5] = [
    "inventory",
    "planner",
    "alerting",
    "ping-executor",
    "snmp-poller",
];

async fn serves_health_reflection_and_metrics(target: &'static str) {
    let (netward, _cluster) = start(target, &[]).await;

    let list = grpcurl(netward.grpc_addr, &["list"]).await;
    assert!(
        list.success,
        "{target}: grpcurl list failed: {}",
        list.stderr
    );
    let services: Vec<&str> = list.stdout.lines().collect();
    // The netward.v1 services its protos give this target, and no other.
    let own = match target {
        "inventory" => "netward.v1.InventoryService",
        "planner" => "netward.v1.PlannerService",
        "alerting" => "netward.v1.AlertingService",
        _ => "netward.v1.ExecutorService",
    };
    let ours: Vec<&str> = services
        .iter()
        .copied()
        .filter(|s| s.starts_with("netward."))
        .collect();
    assert_eq!(ours, [own], "{target}: {services:?}");
    // Every rpc of that service in the protos, by reflection, and no other.
    let methods = tokio::process::Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "10"])
        .arg(netward.grpc_addr.to_string())
        .args(["list", own])
        .output()
        .await
        .unwrap();
    assert!(methods.status.success(), "{target}: {methods:?}");
    let served: std::collections::BTreeSet<String> = String::from_utf8_lossy(&methods.stdout)
        .lines()
        .map(|m| {
            m.trim()
                .replacen("netward.v1.", "", 1)
                .replacen('.', "/", 1)
        })
        .collect();
    let short = own.trim_start_matches("netward.v1.");
    let promised: std::collections::BTreeSet<String> =
        crate::wire::coverage::rpcs(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
            .into_iter()
            .filter(|rpc| rpc.split('/').next() == Some(short))
            .collect();
    assert_eq!(served, promised, "{target}: reflection vs the protos");
    for expected in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.contains(&expected),
            "{target}: {expected} not in {services:?}"
        );
    }

    let check = grpcurl(
        netward.grpc_addr,
        &["-d", "{}", "grpc.health.v1.Health/Check"],
    )
    .await;
    assert!(
        check.success,
        "{target}: health check failed: {}",
        check.stderr
    );
    assert!(
        check.stdout.contains(r#""status": "SERVING""#),
        "{target}: {}",
        check.stdout
    );

    let metrics = http_get(netward.metrics_addr, "/metrics").await;
    let build_info = format!(r#"netward_build_info{{target="{target}""#);
    assert!(
        metrics.contains(&build_info),
        "{target}: no {build_info} in:\n{metrics}"
    );
    assert_named_and_described(target, &metrics);
    // The health check and reflection above were served and counted.
    assert!(
        metrics.contains(
            r#"netward_grpc_server_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"} 1"#
        ),
        "{target}: health check not counted in:\n{metrics}"
    );

    let (status, log) = netward.stop().await.exit();
    assert!(status.success(), "{target} exited with {status}:\n{log}");
    assert!(
        log.contains(r#""message":"stopped""#),
        "{target}: no clean stop in:\n{log}"
    );
}

/// Every sample's metric is named `netward_*` and has a `# HELP` (a
/// histogram's `_bucket`, `_sum` and `_count` samples share its HELP).
fn assert_named_and_described(target: &str, metrics: &str) {
    let described: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|help| help.split_whitespace().next())
        .collect();
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(['{', ' ']).next().unwrap_or(line))
        .collect();
    assert!(!samples.is_empty(), "{target}: no samples in:\n{metrics}");
    for name in samples {
        assert!(
            name.starts_with("netward_"),
            "{target}: {name} is not named netward_*"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| described.contains(family))
            .unwrap_or(name);
        assert!(
            described.contains(family),
            "{target}: {name} has no # HELP in:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn every_target_serves_health_reflection_and_metrics() {
    let runs = TARGETS.map(|target| tokio::spawn(serves_health_reflection_and_metrics(target)));
    for run in runs {
        run.await.unwrap();
    }
}

#[tokio::test]
async fn a_token_guards_every_call_but_health() {
    let protoset = std::env::temp_dir().join(format!("health-{}.protoset", std::process::id()));
    std::fs::write(&protoset, tonic_health::pb::FILE_DESCRIPTOR_SET).unwrap();
    let protoset = protoset.to_string_lossy().into_owned();
    for target in TARGETS {
        let (netward, _cluster) = start(target, &[("NETWARD_TOKEN", "s3cret-token")]).await;
        let addr = netward.grpc_addr;

        let anonymous = grpcurl(addr, &["list"]).await;
        assert!(
            !anonymous.success,
            "{target}: list without a token succeeded"
        );
        assert!(
            anonymous.stderr.contains("Unauthenticated"),
            "{target}: expected UNAUTHENTICATED, got: {}",
            anonymous.stderr
        );

        let wrong = grpcurl(addr, &["-H", "authorization: Bearer wrong", "list"]).await;
        assert!(
            wrong.stderr.contains("Unauthenticated"),
            "{target}: {}",
            wrong.stderr
        );

        let authorized = grpcurl(addr, &["-H", "authorization: Bearer s3cret-token", "list"]).await;
        assert!(authorized.success, "{target}: {}", authorized.stderr);
        assert!(
            authorized.stdout.contains("grpc.health.v1.Health"),
            "{target}: {}",
            authorized.stdout
        );

        // Health stays open: orchestrators probe it without credentials, and
        // without reflection (which the token guards), so grpcurl gets the
        // health schema from a protoset file here.
        let check = grpcurl(
            addr,
            &[
                "-protoset",
                &protoset,
                "-d",
                "{}",
                "grpc.health.v1.Health/Check",
            ],
        )
        .await;
        assert!(check.success, "{target}: {}", check.stderr);
        assert!(
            check.stdout.contains("SERVING"),
            "{target}: {}",
            check.stdout
        );

        let (status, log) = netward.stop().await.exit();
        assert!(status.success(), "{target}:\n{log}");
        assert!(
            !log.contains("s3cret-token"),
            "{target}: the token reached the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn a_bad_config_file_is_named_in_the_error() {
    let output = tokio::process::Command::new(crate::support::NETWARD)
        .args(["planner", "--config", "/nonexistent/netward.toml"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/netward.toml"), "{stderr}");
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_and_code() {
    let (netward, _cluster) = start("inventory", &[]).await;
    let addr = netward.grpc_addr;

    let ok = grpcurl(addr, &["-d", "{}", "netward.v1.InventoryService/ListSites"]).await;
    assert!(ok.success, "ListSites: {}", ok.stderr);
    // Neither id nor name: INVALID_ARGUMENT.
    let invalid = grpcurl(addr, &["-d", "{}", "netward.v1.InventoryService/GetDevice"]).await;
    assert!(
        invalid.stderr.contains("InvalidArgument"),
        "GetDevice: {}",
        invalid.stderr
    );

    let metrics = http_get(netward.metrics_addr, "/metrics").await;
    for expected in [
        r#"netward_grpc_server_requests_total{service="netward.v1.InventoryService",method="ListSites",code="OK"} 1"#,
        r#"netward_grpc_server_requests_total{service="netward.v1.InventoryService",method="GetDevice",code="INVALID_ARGUMENT"} 1"#,
        r#"netward_grpc_server_request_duration_seconds_count{service="netward.v1.InventoryService",method="ListSites"} 1"#,
        r#"netward_grpc_server_request_duration_seconds_count{service="netward.v1.InventoryService",method="GetDevice"} 1"#,
        "# HELP netward_grpc_server_requests_total ",
        "# HELP netward_grpc_server_request_duration_seconds ",
    ] {
        assert!(metrics.contains(expected), "no {expected} in:\n{metrics}");
    }
    assert_named_and_described("inventory", &metrics);
    assert!(netward.stop().await.clean());
}

/// `ExecutorService` over the wire, as executor.proto promises it: a ping
/// executor probes an address now and refuses a poll with
/// FAILED_PRECONDITION (the method exists, the executor is the wrong
/// kind), an snmp-poller the other way round; bad input is
/// INVALID_ARGUMENT; an idle executor has nothing unacked.
#[tokio::test]
async fn executors_answer_probe_and_poll_as_their_proto_says() {
    let (ping, _ping_cluster) = start("ping-executor", &[]).await;
    let (snmp, _snmp_cluster) = start("snmp-poller", &[]).await;
    let code = |output: &crate::support::GrpcurlOutput| {
        assert!(!output.success, "succeeded: {}", output.stdout);
        output
            .stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix("Code: "))
            .unwrap_or_default()
            .to_string()
    };

    if crate::executor::can_ping() {
        let probed = grpcurl(
            ping.grpc_addr,
            &[
                "-d",
                r#"{"address": "127.0.0.1", "settings": {"count": 2, "interval_ms": 10}}"#,
                "netward.v1.ExecutorService/Probe",
            ],
        )
        .await;
        assert!(probed.success, "{}", probed.stderr);
        let answer: serde_json::Value = serde_json::from_str(&probed.stdout).unwrap();
        assert_eq!(answer["result"]["outcome"], "PROBE_OUTCOME_OK", "{answer}");
        assert_eq!(answer["result"]["received"], 2, "{answer}");
    }
    let bad = grpcurl(
        ping.grpc_addr,
        &[
            "-d",
            r#"{"address": "not-an-address"}"#,
            "netward.v1.ExecutorService/Probe",
        ],
    )
    .await;
    assert_eq!(code(&bad), "InvalidArgument");
    assert!(
        bad.stderr.contains("not an IPv4 or IPv6 address"),
        "{}",
        bad.stderr
    );
    let wrong_kind = grpcurl(
        ping.grpc_addr,
        &[
            "-d",
            r#"{"address": "127.0.0.1"}"#,
            "netward.v1.ExecutorService/Poll",
        ],
    )
    .await;
    assert_eq!(code(&wrong_kind), "FailedPrecondition");
    assert!(
        wrong_kind.stderr.contains("snmp-poller"),
        "{}",
        wrong_kind.stderr
    );

    let wrong_kind = grpcurl(
        snmp.grpc_addr,
        &[
            "-d",
            r#"{"address": "127.0.0.1"}"#,
            "netward.v1.ExecutorService/Probe",
        ],
    )
    .await;
    assert_eq!(code(&wrong_kind), "FailedPrecondition");
    assert!(
        wrong_kind.stderr.contains("ping-executor"),
        "{}",
        wrong_kind.stderr
    );
    let bad = grpcurl(
        snmp.grpc_addr,
        &["-d", "{}", "netward.v1.ExecutorService/Poll"],
    )
    .await;
    assert_eq!(code(&bad), "InvalidArgument");

    for executor in [&ping, &snmp] {
        let status = grpcurl(
            executor.grpc_addr,
            &["-d", "{}", "netward.v1.ExecutorService/GetExecutorStatus"],
        )
        .await;
        assert!(status.success, "{}", status.stderr);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        // proto3 JSON leaves zeros out.
        assert!(status.get("resultsUnacked").is_none(), "{status}");
    }
}

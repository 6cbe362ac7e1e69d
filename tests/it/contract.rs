//! Every target, started as the real binary, answers the real grpcurl:
//! reflection lists its services, health says SERVING, `/metrics` serves,
//! SIGTERM stops it cleanly, and a configured token guards all but health.

use netward_shared::testkit::TestDatabase;

use crate::support::{Netward, grpcurl, http_get};

/// Starts `target` with what it needs to run: the inventory and alerting get
/// a fresh database (returned, so it lives as long as the process).
async fn start(target: &str, extra: &[&str]) -> (Netward, Option<TestDatabase>) {
    if target != "inventory" && target != "alerting" {
        return (Netward::start(target, extra).await, None);
    }
    let database = TestDatabase::create().await.unwrap();
    let mut args = vec!["--database-url", database.url()];
    args.extend_from_slice(extra);
    (Netward::start(target, &args).await, Some(database))
}

const TARGETS: [&str; 5] = [
    "inventory",
    "planner",
    "alerting",
    "ping-executor",
    "snmp-poller",
];

async fn serves_health_reflection_and_metrics(target: &'static str) {
    let (netward, _database) = start(target, &[]).await;

    let list = grpcurl(netward.grpc_addr, &["list"]).await;
    assert!(
        list.success,
        "{target}: grpcurl list failed: {}",
        list.stderr
    );
    let services: Vec<&str> = list.stdout.lines().collect();
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

    let (status, log) = netward.stop().await;
    assert!(status.success(), "{target} exited with {status}:\n{log}");
    assert!(
        log.contains(r#""message":"stopped""#),
        "{target}: no clean stop in:\n{log}"
    );
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
        let (netward, _database) = start(target, &["--token", "s3cret-token"]).await;
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

        let (status, log) = netward.stop().await;
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

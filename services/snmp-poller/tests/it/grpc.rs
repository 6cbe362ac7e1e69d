//! The poller's `ExecutorService` over gRPC, served by the real `run()`:
//! status, an ad-hoc poll, and precise INVALID_ARGUMENTs that never echo a
//! secret.

use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::cluster::{ClusterBuilder, runner};
use tonic_types::StatusExt;

use crate::agents::{self, COMMUNITY};

#[tokio::test]
async fn status_poll_and_validation_over_grpc() {
    // No planner and no alerting (the cluster's NOBODY): the work stream
    // and delivery keep retrying, the ExecutorService answers regardless.
    let cluster = ClusterBuilder::new()
        .runner(
            Target::SnmpPoller,
            runner(|config, listeners, stop| async move {
                netward_snmp_poller::run(&config, listeners, stop.cancelled_owned()).await
            }),
        )
        .in_process(Target::SnmpPoller)
        .no_inventory()
        .snmp_pollers(1)
        .executor_ids(Target::SnmpPoller, &["snmp-grpc-test"])
        .start()
        .await;
    let mut client = cluster.executor_client(&cluster.snmp_pollers[0]);

    let status = client
        .get_executor_status(v1::GetExecutorStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.kind(), v1::ExecutorKind::Snmp);
    assert_eq!(status.executor_id, "snmp-grpc-test");

    let probe = client.probe(v1::ProbeRequest::default()).await.unwrap_err();
    assert_eq!(probe.code(), tonic::Code::FailedPrecondition);

    let secret = "leaky-community";
    let bad = v1::PollRequest {
        address: "router-1.example".into(),
        target: Some(v1::SnmpTarget {
            version: v1::SnmpVersion::V3 as i32,
            timeout_ms: 50,
            retries: Some(9),
            profile: "nope".into(),
            credential: Some(v1::ResolvedCredential {
                version: v1::SnmpVersion::V3 as i32,
                username: "ops".into(),
                auth_protocol: v1::SnmpAuthProtocol::Sha256 as i32,
                auth_key: "short".into(),
                priv_protocol: v1::SnmpPrivProtocol::Aes128 as i32,
                priv_key: secret.into(),
                community: secret.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let status = client.poll(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "address",
            "target.timeout_ms",
            "target.retries",
            "target.profile",
            "target.credential.auth_key",
        ]
    );
    assert!(
        !status.message().contains(secret) && !status.message().contains("short"),
        "{}",
        status.message()
    );

    let mismatch = v1::PollRequest {
        address: "127.0.0.1".into(),
        target: Some(v1::SnmpTarget {
            version: v1::SnmpVersion::V2c as i32,
            credential: Some(v1::ResolvedCredential {
                version: v1::SnmpVersion::V3 as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let status = client.poll(mismatch).await.unwrap_err();
    assert!(
        status.message().contains("target.credential.version"),
        "{}",
        status.message()
    );

    if agents::tools(&["snmpd", "snmpget"]) {
        let agent = agents::snmpd();
        let response = client
            .poll(v1::PollRequest {
                address: "127.0.0.1".into(),
                target: Some(agents::v2c(agent.port, COMMUNITY, "")),
            })
            .await
            .unwrap()
            .into_inner();
        let sample = response.sample.unwrap();
        assert_eq!(
            sample.outcome(),
            v1::SnmpOutcome::Ok,
            "{}",
            sample.error_detail
        );
        assert_eq!(response.hints.unwrap().resolved_profile, "net-snmp");
    }
    let mut cluster = cluster;
    let stopped = cluster.snmp_pollers.pop().unwrap().stop().await;
    assert!(stopped.clean(), "{stopped:?}");
}

//! A batch with a dead agent among healthy ones: the healthy finish at
//! their own pace, the dead one is cut at its deadline, and the batch is
//! not held past it. Samples go to a recording alerting Ingest.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use netward_shared::client::ClientOptions;
use netward_shared::delivery::{DeliveryConfig, ResultSender};
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use netward_shared::testkit::ingest::RecordingIngest;
use netward_snmp_poller::work::{Identity, SnmpExecutor};
use tokio_util::sync::CancellationToken;

use crate::agents::{self, COMMUNITY};
use crate::snmpd::poller;

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

fn target(device_id: &str, snmp: v1::SnmpTarget) -> v1::Target {
    v1::Target {
        device_id: device_id.into(),
        device_name: device_id.into(),
        address: "127.0.0.1".into(),
        snmp: Some(snmp),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agent_does_not_hold_the_healthy_or_the_batch() {
    if !agents::tools(&["snmpd", "snmpget"]) {
        return;
    }
    let agent = agents::snmpd();
    // Bound, so no ICMP port-unreachable comes back: it just never answers.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();

    let ingest = RecordingIngest::default();
    let ingest_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    ingest.serve(ingest_addr).await;
    let stop = CancellationToken::new();
    let sender = ResultSender::start(
        DeliveryConfig {
            executor_id: "snmp-test".into(),
            kind: v1::ExecutorKind::Snmp,
            alerting_url: format!("http://{ingest_addr}"),
            client: ClientOptions::default(),
            buffer_batches: 100,
        },
        stop.clone(),
    )
    .unwrap();
    let executor = Arc::new(SnmpExecutor::new(
        Identity::new("snmp-test".into(), 100, Default::default(), "test".into()),
        Arc::new(poller().await),
        sender.clone(),
        ClientOptions::default(),
        2,
        100,
    ));

    // The dead agent would take 6 × 10 s by its timeout and retries; its
    // budget is 1.5 s. The second dead one has no budget: the batch
    // deadline (3 s) bounds it.
    let mut slow = agents::v2c(dead_port, COMMUNITY, "interfaces");
    slow.timeout_ms = 10_000;
    slow.retries = Some(5);
    let mut budgeted = slow.clone();
    budgeted.device_budget_ms = 1_500;
    let healthy = agents::v2c(agent.port, COMMUNITY, "interfaces");
    let now = SystemTime::now();
    let assignment = v1::Assignment {
        cycle_id: 7,
        batch_id: "snmp-7-01".into(),
        kind: v1::ExecutorKind::Snmp as i32,
        leader_epoch: 1,
        start_at: Some(timestamp(now)),
        deadline: Some(timestamp(now + Duration::from_secs(3))),
        targets: vec![
            target("healthy-1", healthy.clone()),
            target("dead-budgeted", budgeted),
            target("healthy-2", healthy),
            target("dead", slow),
        ],
        ..Default::default()
    };
    let began = Instant::now();
    let done = executor.run_batch(assignment).await;
    let took = began.elapsed();
    assert!(took < Duration::from_millis(3_600), "batch held {took:?}");
    assert_eq!(
        (done.devices, done.succeeded, done.failed, done.skipped),
        (4, 2, 2, 0)
    );
    assert_eq!(done.snmp_hints.len(), 4);
    assert_eq!(done.result_batches_sent, 2, "2 samples per message");

    // What alerting received: every sample, once.
    let stored = eventually("both result batches acked", Duration::from_secs(5), || {
        let stored = ingest.store.lock().unwrap().stored.len();
        std::future::ready((stored == 2).then_some(stored))
    })
    .await;
    assert_eq!(stored, 2);
    assert_eq!(sender.stats().buffered, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_agents_finish_on_time_beside_a_dead_one() {
    if !agents::tools(&["snmpd", "snmpget"]) {
        return;
    }
    let agent = agents::snmpd();
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    let poller = Arc::new(poller().await);
    let mut slow = agents::v2c(dead_port, COMMUNITY, "interfaces");
    slow.timeout_ms = 5_000;
    slow.device_budget_ms = 2_000;
    let healthy = agents::v2c(agent.port, COMMUNITY, "interfaces");

    let began = Instant::now();
    let dead_poll = {
        let poller = poller.clone();
        tokio::spawn(async move { poller.poll("127.0.0.1", "dead", &slow, None).await })
    };
    let mut healthy_polls = Vec::new();
    for i in 0..5 {
        let poller = poller.clone();
        let healthy = healthy.clone();
        healthy_polls.push(tokio::spawn(async move {
            let (sample, _) = poller
                .poll("127.0.0.1", &format!("h{i}"), &healthy, None)
                .await;
            (sample, Instant::now())
        }));
    }
    for poll in healthy_polls {
        let (sample, finished) = poll.await.unwrap();
        assert_eq!(
            sample.outcome(),
            v1::SnmpOutcome::Ok,
            "{}",
            sample.error_detail
        );
        assert!(
            finished - began < Duration::from_millis(1_500),
            "healthy waited {:?}",
            finished - began
        );
    }
    let (sample, _) = dead_poll.await.unwrap();
    let took = began.elapsed();
    assert_eq!(
        sample.outcome(),
        v1::SnmpOutcome::Timeout,
        "{}",
        sample.error_detail
    );
    assert!(sample.partial, "cut by its budget");
    assert!(
        took >= Duration::from_millis(1_900) && took < Duration::from_millis(2_600),
        "{took:?}"
    );
    assert!(
        (1_900..2_600).contains(&sample.duration_ms),
        "{}",
        sample.duration_ms
    );
}

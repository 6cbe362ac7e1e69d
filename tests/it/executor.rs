//! A real ping executor (in process, in the test kit's cluster) under a
//! real planner, delivering to a recording Ingest server: it probes what it
//! is assigned with real ICMP on loopback, every result arrives, stale
//! leader epochs are refused, and a shutdown drains running batches and
//! their results first.

use std::time::Duration;

use netward_ping_executor::icmp::{Pinger, PingerConfig};
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use netward_shared::testkit::ingest::RecordingIngest;
use tokio::time::Instant;

use crate::planner::{INTERVAL, Lab, registered};

/// ICMP needs root (raw sockets) or a ping_group_range that allows us.
pub(crate) fn can_ping() -> bool {
    match Pinger::new(PingerConfig::default()) {
        Ok(_) => true,
        Err(error) => {
            println!("skipped: no ICMP socket here ({error})");
            false
        }
    }
}

/// Opens a cycle whose batches are all due now, and dispatches it.
pub(crate) fn run_cycle(lab: &Lab) -> u64 {
    let scheduler = &lab.planner.scheduler;
    let past = Instant::now() - INTERVAL;
    let cycle = scheduler.open_cycle(v1::ExecutorKind::Ping, past).unwrap();
    scheduler.dispatch_due(Instant::now());
    cycle
}

pub(crate) async fn cycle_done(lab: &Lab, cycle: u64) -> v1::CycleSummary {
    eventually(
        &format!("cycle {cycle} completes"),
        Duration::from_secs(30),
        || {
            lab.planner.scheduler.check_timers(Instant::now());
            let summary = lab.cycle_summary(cycle);
            async move { summary.completed.then_some(summary) }
        },
    )
    .await
}

#[tokio::test]
async fn an_executor_probes_assignments_and_delivers_every_result() {
    if !can_ping() {
        return;
    }
    let mut lab = Lab::on(
        crate::support::cluster().in_process(Target::PingExecutor),
        4,
        25,
        |_| None,
    )
    .await;
    let ingest = RecordingIngest::default();
    let ingest_addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let _ingest_server = ingest.serve(ingest_addr).await;
    let alerting_url = format!("http://{ingest_addr}");
    lab.add_ping_executor(&[
        ("NETWARD_ALERTING_URL", &alerting_url),
        ("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "exec-e2e"),
        ("NETWARD_PING_EXECUTOR__RESULTS_PER_MESSAGE", "7"),
    ])
    .await;
    let mut status_client = lab.cluster.executor_client(&lab.cluster.ping_executors[0]);
    registered(&lab, 1).await;

    // Every device probed, every result delivered, the batch reported.
    let first = run_cycle(&lab);
    let summary = cycle_done(&lab, first).await;
    assert_eq!(
        (summary.done_batches, summary.succeeded, summary.failed),
        (summary.batch_count, 100, 0),
        "{summary:?}"
    );
    let probes = ingest.store.lock().unwrap().probes.clone();
    assert_eq!(probes.len(), 100);
    for probe in &probes {
        assert_eq!(probe.outcome, v1::ProbeOutcome::Ok as i32, "{probe:?}");
        assert_eq!(
            (probe.sent, probe.received, probe.loss_percent),
            (3, 3, 0.0),
            "{probe:?}"
        );
        assert_eq!(probe.cycle_id, first);
        assert!(probe.rtt_avg_us.is_some());
    }
    // 100 results in messages of at most 7 per batch.
    assert!(ingest.store.lock().unwrap().stored.len() >= 100 / 7);

    // A newer leader's epoch is remembered; an older one is refused.
    lab.planner.scheduler.set_leadership(true, 7);
    let newer = run_cycle(&lab);
    assert_eq!(cycle_done(&lab, newer).await.succeeded, 100);
    lab.planner.scheduler.set_leadership(true, 3);
    let stale = run_cycle(&lab);
    let refused = cycle_done(&lab, stale).await;
    assert_eq!(
        (refused.done_batches, refused.unserved),
        (0, refused.batch_count),
        "{refused:?}"
    );
    let status = status_client
        .get_executor_status(v1::GetExecutorStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.leader_epoch, 7);
    assert_eq!(status.stale_assignments, u64::from(refused.batch_count));
    assert_eq!(status.results_dropped, 0);
    assert_eq!(
        ingest.store.lock().unwrap().probes.len(),
        200,
        "nothing of the stale epoch was probed"
    );

    // Shutdown right after a cycle is handed out: the running batches finish
    // and their results are acked before the executor exits.
    lab.planner.scheduler.set_leadership(true, 8);
    let completed_before = status.completed_batches;
    let last = run_cycle(&lab);
    let batches = u64::from(lab.cycle_summary(last).batch_count);
    eventually(
        "every batch of the last cycle reaches the executor",
        Duration::from_secs(10),
        || {
            let mut status_client = status_client.clone();
            async move {
                let now = status_client
                    .get_executor_status(v1::GetExecutorStatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                let received =
                    u64::from(now.in_flight_batches) + now.completed_batches - completed_before;
                (received >= batches).then_some(())
            }
        },
    )
    .await;
    let executor = lab.cluster.ping_executors.pop().unwrap();
    let stopped = executor.stop().await;
    assert!(stopped.clean(), "{stopped:?}");
    let store = ingest.store.lock().unwrap();
    let drained = store.probes.iter().filter(|p| p.cycle_id == last).count();
    assert_eq!(
        drained, 100,
        "every result of the last cycle was delivered before exit"
    );
}

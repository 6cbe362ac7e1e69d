//! Stopping the real ping executor once its planner and alerting are gone:
//! it must not wait on peers that are not there. Inside the network lab
//! (real ICMP in a namespace of its own; its devices are 127.30.0.0/16).

use std::time::{Duration, Instant};

use netward_shared::proto::v1;
use netward_shared::testkit::cluster::Stopped;
use netward_shared::testkit::eventually;
use netward_shared::testkit::lab::{self, Rule};

use crate::executor::{cycle_done, run_cycle};
use crate::planner::{Lab, registered};

/// The executor's default `drain_timeout`: the drain's bound in all.
const DRAIN_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_executor_exits_within_its_bound_when_planner_and_alerting_are_gone() {
    if !lab::inside() {
        return;
    }
    // The executor is the binary; alerting is nobody's address, so every
    // result stays unacked.
    let mut lab = Lab::start(4, 25, |_| None).await;
    lab.add_ping_executor(&[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "exec-shutdown")])
        .await;
    registered(&lab, 1).await;

    // One cycle probed in full: 100 results buffered, none acked.
    let first = run_cycle(&lab);
    let summary = cycle_done(&lab, first).await;
    assert_eq!(summary.succeeded, 100, "{summary:?}");

    // A second cycle of silent devices (each probe would take 2.4 s) is
    // running when the planner goes away and SIGTERM comes.
    let _silent = Rule::down("127.30.0.0/16");
    run_cycle(&lab);
    let status = lab.cluster.executor_client(&lab.cluster.ping_executors[0]);
    eventually("the second cycle runs", Duration::from_secs(10), || {
        let mut status = status.clone();
        async move {
            let now = status
                .get_executor_status(v1::GetExecutorStatusRequest {})
                .await
                .ok()?
                .into_inner();
            (now.in_flight_batches > 0).then_some(())
        }
    })
    .await;
    // The executor outlives the lab: the planner (and inventory) go.
    let executor = lab.cluster.ping_executors.pop().unwrap();
    drop(lab);

    let signalled = Instant::now();
    let Stopped::Process { status: exit, log } = executor.stop().await else {
        panic!("the executor runs as a process");
    };
    let took = signalled.elapsed();
    println!("ping executor exited {took:?} after SIGTERM, planner and alerting gone");
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(took < DRAIN_BOUND * 2, "took {took:?}\n{log}");

    let event = |message: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["message"] == message)
    };
    let cut = "cutting running batches short: targets without a verdict are skipped";
    assert!(event(cut).is_some(), "{log}");
    let given_up = event("giving up result batches alerting has not acked")
        .unwrap_or_else(|| panic!("no given-up count in the log:\n{log}"));
    // The first cycle's 100 results; the second's silent devices were cut
    // short before a verdict, so they have none.
    assert_eq!(given_up["unacked_results"], 100, "{given_up}");
    assert!(
        given_up["unacked_batches"].as_u64().unwrap() >= 1,
        "{given_up}"
    );
}

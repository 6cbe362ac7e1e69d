//! Devices whose path is gone, inside the network lab: the kernel refuses the
//! send (no route, a blackhole or prohibit route, a filter on output), and
//! each refused request counts as sent and lost, as fping counts it. The
//! tests here own 127.28.0.0/16.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use netward_ping_executor::icmp::{Pinger, PingerConfig, ProbeFailure, ProbeSpec, SocketMode};
use netward_ping_executor::work;
use netward_shared::proto::v1;
use netward_shared::testkit::lab::{self, Path, Rule};

fn addr(third: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 28, third, host))
}

const SPEC: ProbeSpec = ProbeSpec {
    count: 3,
    interval: Duration::from_millis(50),
    timeout: Duration::from_millis(400),
    retries: 2,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_paths_are_no_route_with_their_errno_and_full_loss() {
    if !lab::inside() {
        return;
    }
    // One range per kind of refusal, and a healthy address in the same batch.
    let _withdrawn = Path::withdrawn("127.28.1.0/24");
    let _unreachable = Path::unreachable("127.28.2.0/24");
    let _blackhole = Path::blackhole("127.28.3.0/24");
    let _prohibited = Path::prohibited("127.28.4.0/24");
    let _filtered = Rule::drop_output("127.28.5.0/24");
    let refused = [
        (addr(1, 1), "ENETUNREACH"),
        (addr(2, 1), "EHOSTUNREACH"),
        (addr(3, 1), "EINVAL"),
        (addr(4, 1), "EACCES"),
        (addr(5, 1), "EPERM"),
    ];
    let healthy = addr(9, 1);
    for socket in [SocketMode::Datagram, SocketMode::Raw] {
        let pinger = Pinger::new(PingerConfig {
            socket,
            ..PingerConfig::default()
        })
        .unwrap();
        let started = Instant::now();
        let targets: Vec<IpAddr> = refused.iter().map(|(a, _)| *a).chain([healthy]).collect();
        let outcomes = join_all(targets.iter().map(|t| pinger.probe(*t, &SPEC))).await;
        for ((address, errno), outcome) in refused.iter().zip(&outcomes) {
            let Some(ProbeFailure::NoRoute(detail)) = &outcome.failure else {
                panic!("{socket:?} {address}: {outcome:?}");
            };
            assert!(
                detail.starts_with(&format!("sendto: {errno} (")),
                "{socket:?} {address}: {detail}"
            );
            // Every request, retries included, counts as sent and lost.
            assert_eq!(
                (outcome.sent, outcome.received, outcome.retries_sent),
                (SPEC.count + SPEC.retries, 0, SPEC.retries),
                "{socket:?} {address}"
            );
            assert_eq!(outcome.loss_percent(), 100.0);

            // What alerting receives: a failed probe naming the errno.
            let target = v1::Target {
                device_id: "d".into(),
                address: address.to_string(),
                ..Default::default()
            };
            let result = work::result(&target, outcome, SystemTime::now(), Duration::ZERO);
            assert_eq!(result.outcome, v1::ProbeOutcome::NoRoute as i32);
            assert_eq!(result.error_detail, *detail);
            assert_eq!((result.sent, result.loss_percent), (5, 100.0));
        }
        let ok = &outcomes[refused.len()];
        assert_eq!(ok.failure, None, "{socket:?} healthy: {ok:?}");
        assert_eq!((ok.sent, ok.received), (SPEC.count, SPEC.count));
        // The retries went out when they would after a timeout: a refused
        // request waits out its timeout, it does not fail the probe at once.
        assert!(
            started.elapsed() >= SPEC.timeout * 2,
            "{socket:?}: {:?}",
            started.elapsed()
        );
        let stats = pinger.stats();
        let refused_requests = u64::from(SPEC.count + SPEC.retries) * refused.len() as u64;
        assert_eq!(stats.no_route, refused_requests, "{socket:?}: {stats:?}");
        assert_eq!(stats.send_errors, 0, "a path error is not local trouble");
        assert_eq!(
            stats.sent,
            u64::from(SPEC.count),
            "only the healthy went out"
        );
        assert_eq!(stats.in_flight, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_back_within_the_probe_is_seen_by_its_retries() {
    if !lab::inside() {
        return;
    }
    let pinger = Pinger::new(PingerConfig::default()).unwrap();
    let spec = ProbeSpec {
        count: 1,
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        retries: 2,
    };
    let withdrawn = Path::withdrawn("127.28.6.0/24");
    let probe = pinger.probe(addr(6, 1), &spec);
    let restore = async {
        // The first request is refused; its retries go out after its
        // timeout, by when the route is back.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(withdrawn);
    };
    let (outcome, ()) = tokio::join!(probe, restore);
    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(
        (outcome.sent, outcome.received, outcome.retries_sent),
        (3, 2, 2)
    );
    assert_eq!(pinger.stats().no_route, 1);
}

//! Probing through the real engine inside the network lab. Each test owns a
//! disjoint 127.x range, so rules of one never touch another running beside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use netward_ping_executor::icmp::{
    Pinger, PingerConfig, ProbeFailure, ProbeOutcome, ProbeSpec, SocketKind, SocketMode,
};

use netward_shared::testkit::lab::{self, Rule};

fn range(second: u8, third: u8, hosts: u8) -> Vec<IpAddr> {
    (1..=hosts)
        .map(|h| IpAddr::V4(Ipv4Addr::new(127, second, third, h)))
        .collect()
}

fn quick(count: u32, retries: u32) -> ProbeSpec {
    ProbeSpec {
        count,
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        retries,
    }
}

async fn probe_all(pinger: &Pinger, targets: &[IpAddr], spec: &ProbeSpec) -> Vec<ProbeOutcome> {
    join_all(targets.iter().map(|t| pinger.probe(*t, spec))).await
}

fn pinger(socket: SocketMode) -> Arc<Pinger> {
    Pinger::new(PingerConfig {
        socket,
        ..PingerConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_addresses_report_no_loss_and_rtts() {
    if !lab::inside() {
        return;
    }
    let pinger = pinger(SocketMode::Auto);
    let targets = range(20, 0, 20);
    for outcome in probe_all(&pinger, &targets, &quick(3, 2)).await {
        assert_eq!(outcome.failure, None, "{outcome:?}");
        assert_eq!(
            (outcome.sent, outcome.received, outcome.retries_sent),
            (3, 3, 0)
        );
        assert_eq!(outcome.loss_percent(), 0.0);
        assert_eq!(outcome.rtts.len(), 3);
        // Loopback RTTs can be 0: only their presence and order are checked.
        assert!(outcome.rtt_min() <= outcome.rtt_avg() && outcome.rtt_avg() <= outcome.rtt_max());
        assert!(outcome.rtt_stddev().is_some());
    }
    let stats = pinger.stats();
    assert_eq!(stats.sent, 60);
    assert_eq!(stats.received, 60);
    assert_eq!(stats.send_errors, 0);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_is_healthy() {
    if !lab::inside() {
        return;
    }
    for socket in [SocketMode::Datagram, SocketMode::Raw] {
        let pinger = pinger(socket);
        let outcome = pinger
            .probe(IpAddr::V6(Ipv6Addr::LOCALHOST), &quick(3, 2))
            .await;
        assert_eq!(outcome.failure, None, "{socket:?}: {outcome:?}");
        assert_eq!((outcome.sent, outcome.received), (3, 3), "{socket:?}");
        assert!(pinger.stats().ipv6.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_errors_report_unreachable() {
    if !lab::inside() {
        return;
    }
    let _reject = Rule::unreachable("127.26.0.0/24");
    for socket in [SocketMode::Datagram, SocketMode::Raw] {
        let pinger = pinger(socket);
        let outcome = pinger
            .probe(IpAddr::V4(Ipv4Addr::new(127, 26, 0, 1)), &quick(2, 1))
            .await;
        assert_eq!(
            outcome.failure,
            Some(ProbeFailure::Unreachable),
            "{socket:?}: {outcome:?}"
        );
        assert_eq!((outcome.sent, outcome.received), (3, 0), "{socket:?}");
        assert_eq!(pinger.stats().unreachable, 3, "{socket:?}");
        // The kernel's errors quote the whole request: identifier, quoted
        // destination, sequence, cookie and token all match.
        assert_eq!(pinger.stats().errors_unmatched, 0, "{socket:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_addresses_time_out_after_their_retries() {
    if !lab::inside() {
        return;
    }
    let _down = Rule::down("127.21.0.0/24");
    let pinger = pinger(SocketMode::Auto);
    let spec = ProbeSpec {
        count: 3,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(300),
        retries: 2,
    };
    for outcome in probe_all(&pinger, &range(21, 0, 5), &spec).await {
        assert_eq!(outcome.failure, Some(ProbeFailure::Timeout), "{outcome:?}");
        assert_eq!(outcome.sent, spec.count + spec.retries);
        assert_eq!(outcome.retries_sent, spec.retries);
        assert_eq!(outcome.received, 0);
        assert_eq!(outcome.loss_percent(), 100.0);
        assert!(outcome.rtts.is_empty() && outcome.rtt_avg().is_none());
    }
    assert_eq!(
        pinger.stats().send_errors,
        0,
        "a silent device is not a local error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_loss_is_measured_within_bounds() {
    if !lab::inside() {
        return;
    }
    let _lossy = Rule::lossy("127.22.0.0/24", 50);
    let pinger = pinger(SocketMode::Auto);
    let outcomes = probe_all(&pinger, &range(22, 0, 200), &quick(1, 0)).await;
    let sent: u32 = outcomes.iter().map(|o| o.sent).sum();
    let received: u32 = outcomes.iter().map(|o| o.received).sum();
    assert_eq!(sent, 200);
    let loss = f64::from(sent - received) * 100.0 / f64::from(sent);
    // 50 % of 200: the standard deviation is ~3.5 points; 30–70 is > 5 sigma.
    assert!(
        (30.0..=70.0).contains(&loss),
        "loss {loss} % outside 30–70 %"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lost_packet_of_three_is_not_a_failure() {
    if !lab::inside() {
        return;
    }
    // Drops the 1st, 4th, ... request: exactly one of this probe's three.
    let _every_third = Rule::drop_every("127.23.0.1/32", 3);
    let pinger = pinger(SocketMode::Auto);
    let outcome = pinger
        .probe(IpAddr::V4(Ipv4Addr::new(127, 23, 0, 1)), &quick(3, 2))
        .await;
    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(
        (outcome.sent, outcome.received, outcome.retries_sent),
        (3, 2, 0)
    );
    assert!((outcome.loss_percent() - 100.0 / 3.0).abs() < 0.01);
}

/// Two engines probe the same addresses at once; each must count exactly its
/// own replies. With raw sockets both see every reply and must ignore (and
/// count as stray) the other's.
async fn two_engines_never_mix_replies(socket: SocketMode, second: u8) {
    let a = pinger(socket);
    let b = pinger(socket);
    assert_ne!(a.identifier(), b.identifier());
    let targets = range(second, 0, 50);
    let spec = quick(3, 0);
    let (from_a, from_b) = tokio::join!(
        probe_all(&a, &targets, &spec),
        probe_all(&b, &targets, &spec)
    );
    for outcome in from_a.iter().chain(&from_b) {
        assert_eq!((outcome.sent, outcome.received), (3, 3), "{outcome:?}");
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.sent, sa.received), (150, 150));
    assert_eq!((sb.sent, sb.received), (150, 150));
    if sa.ipv4 == Some(SocketKind::Raw) {
        // Every reply to B reached A's raw socket too (and other tests'
        // replies may add more): all must be ignored, and counted as stray
        // once each engine has read its socket (it may lag a little).
        let settled = async {
            loop {
                let (sa, sb) = (a.stats(), b.stats());
                if sa.stray >= sb.received && sb.stray >= sa.received {
                    return (sa, sb);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let settled = tokio::time::timeout(Duration::from_secs(2), settled).await;
        assert!(settled.is_ok(), "a: {:?} b: {:?}", a.stats(), b.stats());
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(
            (sa.received, sb.received),
            (150, 150),
            "nothing of the other's counted as ours"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_datagram_engines_never_mix_replies() {
    if !lab::inside() {
        return;
    }
    two_engines_never_mix_replies(SocketMode::Auto, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_raw_engines_never_mix_replies() {
    if !lab::inside() {
        return;
    }
    two_engines_never_mix_replies(SocketMode::Raw, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_addresses_are_refused_without_sending() {
    if !lab::inside() {
        return;
    }
    let pinger = pinger(SocketMode::Auto);
    for addr in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
        let outcome = pinger.probe(addr.parse().unwrap(), &quick(1, 0)).await;
        assert_eq!(
            outcome.failure,
            Some(ProbeFailure::InvalidAddress),
            "{addr}"
        );
        assert_eq!(outcome.sent, 0);
    }
    assert_eq!(pinger.stats().sent, 0);
}

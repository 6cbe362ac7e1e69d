//! The shared result sender against a real `Ingest` server built here:
//! a server that stops mid-stream and comes back gets every batch at least
//! once (stored once), nothing is dropped within the bound, and a full
//! buffer drops (and counts) its oldest batches. At shutdown the sender
//! waits for acks only while alerting is connected, within its bound.

use std::net::SocketAddr;
use std::time::Duration;

use netward_shared::client::ClientOptions;
use netward_shared::delivery::{DeliveryConfig, IN_FLIGHT_WINDOW, ResultSender, Unacked};
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use netward_shared::testkit::ingest::RecordingIngest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn sender(addr: SocketAddr, buffer_batches: usize, stop: &CancellationToken) -> ResultSender {
    ResultSender::start(
        DeliveryConfig {
            executor_id: "test-executor".into(),
            kind: v1::ExecutorKind::Ping,
            alerting_url: format!("http://{addr}"),
            client: ClientOptions::default(),
            buffer_batches,
        },
        stop.clone(),
    )
    .unwrap()
}

fn batch(i: usize) -> v1::ResultBatch {
    v1::ResultBatch {
        batch_uid: format!("batch-{i:04}"),
        cycle_id: 1,
        probes: vec![v1::ProbeResult {
            device_id: format!("device-{i}"),
            sent: 3,
            received: 3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_server_that_stops_mid_stream_gets_everything_after_it_returns() {
    let ingest = RecordingIngest::default();
    ingest.store.lock().unwrap().ack_budget = Some(30);
    let addr = free_addr().await;
    let server = ingest.serve(addr).await;
    let stop = CancellationToken::new();
    let sender = sender(addr, 1000, &stop);

    for i in 0..60 {
        sender.send(batch(i));
    }
    // The server stores 30, receives the rest, and then dies unacking them.
    let store = ingest.store.clone();
    eventually(
        "the server receives all 60",
        Duration::from_secs(10),
        || {
            let n = store.lock().unwrap().received.len();
            async move { (n == 60).then_some(()) }
        },
    )
    .await;
    // The acks may still be on their way when the last batch is received.
    eventually("30 acked", Duration::from_secs(10), || {
        let acked = sender.stats().acked;
        async move { (acked == 30).then_some(()) }
    })
    .await;
    ingest.stop();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();

    // While it is away, more results come.
    for i in 60..100 {
        sender.send(batch(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sender.stats().buffered, 70);

    ingest.store.lock().unwrap().ack_budget = None;
    let server = ingest.serve(addr).await;
    assert!(
        sender.drain(Duration::from_secs(20)).await,
        "{:?}",
        sender.stats()
    );
    let stats = sender.stats();
    let store = ingest.store.lock().unwrap();
    assert_eq!(store.stored.len(), 100, "every batch stored");
    assert!((0..100).all(|i| store.received.contains_key(&format!("batch-{i:04}"))));
    // The 30 unacked before the crash were sent again.
    assert!(stats.replayed >= 30, "{stats:?}");
    assert!(store.received.values().filter(|n| **n > 1).count() >= 30);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.acked, 100);
    assert_eq!(stats.buffered, 0);
    drop(store);
    stop.cancel();
    server.abort();
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let ingest = RecordingIngest::default();
    let addr = free_addr().await;
    let stop = CancellationToken::new();
    // Nothing listens yet: alerting is away.
    let sender = sender(addr, 10, &stop);
    for i in 0..15 {
        sender.send(batch(i));
    }
    let stats = sender.stats();
    assert_eq!((stats.dropped, stats.buffered), (5, 10));

    let server = ingest.serve(addr).await;
    assert!(
        sender.drain(Duration::from_secs(20)).await,
        "{:?}",
        sender.stats()
    );
    let store = ingest.store.lock().unwrap();
    let mut stored: Vec<&String> = store.stored.iter().collect();
    stored.sort();
    let expected: Vec<String> = (5..15).map(|i| format!("batch-{i:04}")).collect();
    assert_eq!(
        stored,
        expected.iter().collect::<Vec<_>>(),
        "the 5 oldest were the ones dropped"
    );
    assert_eq!(sender.stats().dropped, 5);
    drop(store);
    stop.cancel();
    server.abort();
}

#[tokio::test]
async fn the_shutdown_drain_waits_for_acks_only_while_alerting_is_connected() {
    let stop = CancellationToken::new();
    let unacked = |batches| Unacked {
        batches,
        results: batches,
    };

    // Nobody listens: given up at once, not after the bound.
    let away = sender(free_addr().await, 100, &stop);
    for i in 0..3 {
        away.send(batch(i));
    }
    let started = tokio::time::Instant::now();
    assert_eq!(
        away.drain_while_connected(Duration::from_secs(20)).await,
        unacked(3)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Connected and acking: everything acked, nothing given up.
    let ingest = RecordingIngest::default();
    let addr = free_addr().await;
    let server = ingest.serve(addr).await;
    let acking = sender(addr, 100, &stop);
    eventually("connected", Duration::from_secs(10), || {
        let connected = acking.stats().connected;
        async move { connected.then_some(()) }
    })
    .await;
    for i in 0..5 {
        acking.send(batch(i));
    }
    assert_eq!(
        acking.drain_while_connected(Duration::from_secs(20)).await,
        unacked(0)
    );
    assert_eq!(ingest.store.lock().unwrap().stored.len(), 5);

    // Connected but not acking (its database is away): waited for until the
    // bound, then given up.
    ingest.store.lock().unwrap().ack_budget = Some(0);
    for i in 5..7 {
        acking.send(batch(i));
    }
    let started = tokio::time::Instant::now();
    assert_eq!(
        acking
            .drain_while_connected(Duration::from_millis(500))
            .await,
        unacked(2)
    );
    assert!(started.elapsed() >= Duration::from_millis(500));

    // The stream is lost while waiting: given up then, not at the bound.
    let lost = tokio::spawn({
        let acking = acking.clone();
        async move {
            let started = tokio::time::Instant::now();
            (
                acking.drain_while_connected(Duration::from_secs(20)).await,
                started.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    ingest.stop();
    let (left, took) = tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left, unacked(2));
    assert!(took < Duration::from_secs(10), "{took:?}");
    stop.cancel();
    server.abort();
}

/// The resident set of this process, from /proc (Linux), in KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One cycle's results for 10,000 devices, 100 per message, as an executor
/// hands them to delivery.
fn cycle_batches(cycle: usize) -> Vec<v1::ResultBatch> {
    (0..100)
        .map(|b| v1::ResultBatch {
            batch_uid: format!("c{cycle:04}-b{b:03}"),
            cycle_id: cycle as u64,
            probes: (0..100)
                .map(|d| v1::ProbeResult {
                    device_id: format!("device-{:05}", b * 100 + d),
                    sent: 3,
                    received: 3,
                    address: format!("10.{}.{}.{}", b / 250, b % 250, d + 1),
                    batch_id: format!("{cycle}-{b}"),
                    loss_percent: 0.0,
                    error_detail: "x".repeat(100),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// Alerting connected but not reading (as under SIGSTOP) while 10,000
/// devices' results keep coming: what the sender holds stays within its
/// buffer plus the in-flight window — the stream no longer keeps a copy of
/// every batch — and once alerting reads again, every batch still buffered
/// is stored exactly once. The bound asserted: at most `buffer` batches
/// buffered and `IN_FLIGHT_WINDOW` on the stream at any time, and the
/// process's RSS growing by less than 64 MiB while 600,000 results (about
/// 200 MiB of messages) pass through.
#[tokio::test]
async fn a_paused_alerting_costs_the_buffer_and_the_window_not_every_batch() {
    const BUFFER: usize = 200;
    const CYCLES: usize = 60;
    let ingest = RecordingIngest::default();
    let addr = free_addr().await;
    let _server = ingest.serve(addr).await;
    let stop = CancellationToken::new();
    let sender = sender(addr, BUFFER, &stop);
    eventually("connected", Duration::from_secs(10), || {
        let connected = sender.stats().connected;
        async move { connected.then_some(()) }
    })
    .await;

    ingest.pause(true);
    let rss_before = rss_kib();
    let mut most_in_flight = 0;
    for cycle in 0..CYCLES {
        for batch in cycle_batches(cycle) {
            sender.send(batch);
        }
        // A cycle every 100 ms: the 60 s pause of the fault suite, ten
        // times faster (a 10 s interval would send one tenth as much).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = sender.stats();
        assert!(stats.buffered <= BUFFER, "{stats:?}");
        assert!(stats.in_flight <= IN_FLIGHT_WINDOW, "{stats:?}");
        most_in_flight = most_in_flight.max(stats.in_flight);
    }
    let stats = sender.stats();
    let sent = CYCLES * 100;
    assert_eq!(stats.buffered, BUFFER);
    // Whatever alerting read before the pause took hold was acked.
    assert_eq!(
        (stats.dropped + stats.acked) as usize,
        sent - BUFFER,
        "{stats:?}"
    );
    let grown_mib = match (rss_before, rss_kib()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) / 1024),
        _ => None,
    };
    println!(
        "paused alerting: {sent} batches sent, {} dropped, {} buffered, at most {most_in_flight} \
         in flight, RSS grew {grown_mib:?} MiB",
        stats.dropped, stats.buffered
    );
    if let Some(grown) = grown_mib {
        assert!(grown < 64, "RSS grew {grown} MiB");
    }
    let buffered: Vec<String> = (0..BUFFER)
        .map(|i| {
            let n = sent - BUFFER + i;
            format!("c{:04}-b{:03}", n / 100, n % 100)
        })
        .collect();

    ingest.pause(false);
    assert!(
        sender.drain(Duration::from_secs(30)).await,
        "{:?}",
        sender.stats()
    );
    let store = ingest.store.lock().unwrap();
    for uid in &buffered {
        assert!(store.stored.contains(uid), "{uid} not stored");
        assert_eq!(store.received[uid], 1, "{uid} received twice");
    }
    // What reached the stream before the pause took hold is stored too, once.
    assert!(store.received.values().all(|n| *n == 1));
    assert!(store.stored.len() <= stats.acked as usize + BUFFER + IN_FLIGHT_WINDOW);
    drop(store);
    stop.cancel();
}

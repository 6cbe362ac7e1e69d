//! The shared result sender against a real `Ingest` server built here:
//! a server that stops mid-stream and comes back gets every batch at least
//! once (stored once), nothing is dropped within the bound, and a full
//! buffer drops (and counts) its oldest batches. At shutdown the sender
//! waits for acks only while alerting is connected, within its bound.

use std::net::SocketAddr;
use std::time::Duration;

use netward_shared::delivery::{DeliveryConfig, ResultSender, Unacked};
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
            token: None,
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
    assert_eq!(sender.stats().acked, 30);
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

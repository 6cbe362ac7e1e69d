//! Live state on real Redis (`NETWARD_TEST_REDIS_URL`, default
//! 127.0.0.1:6379; skipped with a note when there is none): one hash per
//! device and one JSON message per change, rebuilds in chunks, and a Redis
//! that is away costs a bounded wait, a count and a gauge, never an error.
//! The in-process stand-in is held to the same behaviour.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures::{Stream, StreamExt};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use netward_alerting::live::{LiveDevice, LiveState};
use redis::AsyncCommands as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const TEST_REDIS_URL: &str = "NETWARD_TEST_REDIS_URL";
/// Generous: CI has two cores shared with other tests.
const PATIENCE: Duration = Duration::from_secs(5);

fn redis_url() -> String {
    std::env::var(TEST_REDIS_URL).unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// The test's own prefix, its keys deleted when it ends (also when it fails).
struct Keys {
    client: redis::Client,
    prefix: String,
}

impl Keys {
    fn live(&self) -> LiveState {
        LiveState::redis(&redis_url(), &self.prefix).unwrap()
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn hash(&self, device_id: &str) -> HashMap<String, String> {
        self.connection()
            .await
            .hgetall(format!("{}:device:{device_id}", self.prefix))
            .await
            .unwrap()
    }

    async fn device_keys(&self) -> Vec<String> {
        let mut connection = self.connection().await;
        let mut keys: Vec<String> = connection
            .scan_match::<_, String>(format!("{}:device:*", self.prefix))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        keys.sort();
        keys
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // Blocking is fine here: a test is ending, and Redis is local.
        let Ok(mut connection) = self.client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut connection)
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut connection);
        }
    }
}

/// A fresh prefix on the test server, or None (with a note) when there is none.
async fn keys() -> Option<Keys> {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            eprintln!("skipping: no redis at {url} ({error}); set {TEST_REDIS_URL} (CI has one)");
            return None;
        }
        Err(_) => {
            eprintln!("skipping: no answer from redis at {url}; set {TEST_REDIS_URL} (CI has one)");
            return None;
        }
    }
    let prefix = format!("netward:test:live:{:016x}", rand::random::<u64>());
    Some(Keys { client, prefix })
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + second, 123_456_000)
        .unwrap()
}

fn down(id: &str) -> LiveDevice {
    LiveDevice {
        device_id: id.to_string(),
        device_name: format!("{id}-rtr"),
        site: "tbilisi-01".to_string(),
        state: "DOWN".to_string(),
        since: at(0),
        reason: "3 failed probes (100% loss)".to_string(),
        maintenance: false,
        last_probe_at: Some(at(1)),
        last_loss_percent: Some(100.0),
        last_rtt_avg_us: None,
        cycle_id: 42,
    }
}

fn up(id: &str) -> LiveDevice {
    LiveDevice {
        state: "UP".to_string(),
        reason: "answers again (0% loss)".to_string(),
        maintenance: true,
        last_loss_percent: Some(12.5),
        last_rtt_avg_us: Some(1_834),
        cycle_id: 43,
        ..down(id)
    }
}

/// The next `n` items, or a failure after `PATIENCE`.
async fn next_n<S: Stream + Unpin>(stream: &mut S, n: usize) -> Vec<S::Item> {
    let mut items = Vec::new();
    while items.len() < n {
        let item = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("a message within the patience")
            .expect("the stream stays open");
        items.push(item);
    }
    items
}

#[tokio::test]
async fn publish_writes_a_hash_per_device_and_announces_each_as_json() {
    let Some(keys) = keys().await else { return };
    let live = keys.live();
    let mut watcher = live.subscribe().await.unwrap();
    // A plain Redis subscriber too: the wire format is what other tools see.
    let mut raw = keys.client.get_async_pubsub().await.unwrap();
    raw.subscribe(format!("{}:state-changes", keys.prefix))
        .await
        .unwrap();
    let mut raw = raw.into_on_message();

    let (a, b) = (down("dev-a"), up("dev-b"));
    assert!(live.publish(&[a.clone(), b.clone()]).await);

    let hash = keys.hash("dev-a").await;
    let expected: HashMap<String, String> = [
        ("device_id", "dev-a"),
        ("device_name", "dev-a-rtr"),
        ("site", "tbilisi-01"),
        ("state", "DOWN"),
        ("since", "2023-11-14T22:13:20.123456Z"),
        ("reason", "3 failed probes (100% loss)"),
        ("maintenance", "false"),
        ("last_probe_at", "2023-11-14T22:13:21.123456Z"),
        ("last_loss_percent", "100"),
        ("last_rtt_avg_us", ""),
        ("cycle_id", "42"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(hash, expected);
    let hash = keys.hash("dev-b").await;
    assert_eq!(hash["state"], "UP");
    assert_eq!(hash["maintenance"], "true");
    assert_eq!(hash["last_loss_percent"], "12.5");
    assert_eq!(hash["last_rtt_avg_us"], "1834");
    assert_eq!(live.get("dev-a").await.unwrap(), Some(a.clone()));
    assert_eq!(live.get("dev-b").await.unwrap(), Some(b.clone()));
    assert_eq!(live.get("dev-none").await.unwrap(), None);

    assert_eq!(next_n(&mut watcher, 2).await, vec![a.clone(), b.clone()]);
    let messages: Vec<serde_json::Value> = next_n(&mut raw, 2)
        .await
        .iter()
        .map(|message| serde_json::from_slice(message.get_payload_bytes()).unwrap())
        .collect();
    assert_eq!(messages[0]["device_id"], "dev-a");
    assert_eq!(messages[0]["state"], "DOWN");
    assert_eq!(messages[0]["since"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(messages[0]["last_rtt_avg_us"], serde_json::Value::Null);
    assert_eq!(messages[1]["device_id"], "dev-b");
    assert_eq!(messages[1]["last_rtt_avg_us"], 1834);
    assert_eq!(
        serde_json::from_value::<LiveDevice>(messages[1].clone()).unwrap(),
        b
    );
}

#[tokio::test]
async fn rebuild_writes_every_hash_in_chunks_and_drops_departed_devices() {
    let Some(keys) = keys().await else { return };
    let live = keys.live();
    // A device that left the inventory, and a state the rebuild replaces.
    assert!(live.publish(&[up("departed"), up("dev-00007")]).await);

    let all: Vec<LiveDevice> = (0..2_500).map(|i| down(&format!("dev-{i:05}"))).collect();
    let started = Instant::now();
    assert!(live.rebuild(&all).await);
    eprintln!("rebuilt 2,500 hashes in {:?}", started.elapsed());

    let found = keys.device_keys().await;
    assert_eq!(found.len(), 2_500);
    assert_eq!(found[0], format!("{}:device:dev-00000", keys.prefix));
    assert_eq!(found[2_499], format!("{}:device:dev-02499", keys.prefix));
    assert_eq!(live.get("departed").await.unwrap(), None);
    assert_eq!(
        live.get("dev-00007").await.unwrap(),
        Some(down("dev-00007"))
    );
    assert_eq!(
        live.get("dev-02499").await.unwrap(),
        Some(down("dev-02499"))
    );
}

/// Records counters and gauges by name; enough to read what `live` reports.
#[derive(Default)]
struct Recorded {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Recorded {
    fn handle(&self, key: &Key) -> Arc<AtomicU64> {
        self.values
            .lock()
            .unwrap()
            .entry(key.name().to_string())
            .or_default()
            .clone()
    }

    fn counter(&self, name: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |value| value.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map(|value| f64::from_bits(value.load(Ordering::SeqCst)))
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Runs `test` on a single-threaded runtime with `recorded` as this
/// thread's recorder, so the metrics seen are this test's alone.
fn with_metrics<F: Future<Output = ()>>(recorded: &Recorded, test: impl FnOnce() -> F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(recorded, || runtime.block_on(test()));
}

#[test]
fn an_unreachable_redis_costs_a_bounded_wait_and_a_count_never_an_error() {
    let recorded = Recorded::default();
    with_metrics(&recorded, || async {
        let live = LiveState::redis("redis://127.0.0.1:1", "netward:test:live:closed").unwrap();
        let started = Instant::now();
        assert!(!live.publish(&[down("dev-a"), up("dev-b")]).await);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            recorded.counter("netward_alerting_live_publish_failures_total"),
            1
        );
        assert_eq!(recorded.gauge("netward_alerting_redis_up"), Some(0.0));
        assert_eq!(recorded.gauge("netward_alerting_live_pending"), Some(2.0));

        // Until the retry is due, calls return at once, and are counted.
        let started = Instant::now();
        assert!(!live.publish(&[down("dev-c")]).await);
        assert!(!live.rebuild(&[down("dev-a")]).await);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(
            recorded.counter("netward_alerting_live_publish_failures_total"),
            3
        );
        // The rebuild replaced what was left over: it is the whole truth.
        assert_eq!(recorded.gauge("netward_alerting_live_pending"), Some(1.0));
        // Reads and watchers do get an error: they asked for Redis.
        assert!(live.get("dev-a").await.is_err());
        assert!(live.subscribe().await.is_err());
    });
}

/// Forwards connections on `listener` to Redis, for a Redis that "comes
/// back"; aborting it closes every forwarded connection, for one that goes.
async fn forward(listener: TcpListener, redis: String) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let redis = redis.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(redis).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// A local port forwarding to the test Redis, and the task doing it.
async fn forwarder(keys: &Keys) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let redis = keys.client.get_connection_info().addr().to_string();
    (port, tokio::spawn(forward(listener, redis)))
}

#[tokio::test]
async fn a_watcher_stream_ends_when_redis_drops_the_connection() {
    let Some(keys) = keys().await else { return };
    let (port, forwarder) = forwarder(&keys).await;
    let live = LiveState::redis(&format!("redis://127.0.0.1:{port}"), &keys.prefix).unwrap();
    let mut watcher = live.subscribe().await.unwrap();
    assert!(live.publish(&[down("dev-a")]).await);
    assert_eq!(next_n(&mut watcher, 1).await, vec![down("dev-a")]);
    forwarder.abort();
    let end = tokio::time::timeout(PATIENCE, watcher.next()).await;
    assert_eq!(end.unwrap(), None, "the stream ends, so the watcher knows");
}

#[test]
fn what_was_missed_is_written_when_redis_comes_back() {
    let recorded = Recorded::default();
    with_metrics(&recorded, || async {
        let Some(keys) = keys().await else { return };
        // A port nobody listens on, until the forwarder takes it.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let live = LiveState::redis(&format!("redis://127.0.0.1:{port}"), &keys.prefix).unwrap();
        assert!(!live.publish(&[down("dev-a"), down("dev-b")]).await);
        assert_eq!(recorded.gauge("netward_alerting_redis_up"), Some(0.0));

        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let redis = keys.client.get_connection_info().addr().to_string();
        let forwarder = tokio::spawn(forward(listener, redis));
        let mut watcher = live.subscribe().await.unwrap();

        let deadline = Instant::now() + PATIENCE;
        while !live.publish(&[up("dev-b")]).await {
            assert!(Instant::now() < deadline, "redis never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(recorded.gauge("netward_alerting_redis_up"), Some(1.0));
        assert_eq!(recorded.gauge("netward_alerting_live_pending"), Some(0.0));
        // The missed change is written; the newer state of dev-b wins.
        assert_eq!(live.get("dev-a").await.unwrap(), Some(down("dev-a")));
        assert_eq!(live.get("dev-b").await.unwrap(), Some(up("dev-b")));
        // Only the new change is announced: left-overs are not news.
        assert_eq!(next_n(&mut watcher, 1).await, vec![up("dev-b")]);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), watcher.next())
                .await
                .is_err()
        );
        let failures = recorded.counter("netward_alerting_live_publish_failures_total");
        assert!(failures >= 1, "{failures}");
        forwarder.abort();
    });
}

#[tokio::test]
async fn the_memory_stand_in_behaves_like_redis() {
    let live = LiveState::memory();
    let mut watcher = live.subscribe().await.unwrap();
    let (a, b) = (down("dev-a"), up("dev-b"));
    assert!(live.publish(&[a.clone(), b.clone()]).await);
    assert_eq!(live.get("dev-a").await.unwrap(), Some(a.clone()));
    assert_eq!(live.get("dev-b").await.unwrap(), Some(b.clone()));
    assert_eq!(live.get("dev-none").await.unwrap(), None);
    assert_eq!(next_n(&mut watcher, 2).await, vec![a.clone(), b.clone()]);

    let all: Vec<LiveDevice> = (0..2_500).map(|i| down(&format!("dev-{i:05}"))).collect();
    assert!(live.rebuild(&all).await);
    assert_eq!(live.get("dev-a").await.unwrap(), None);
    assert_eq!(
        live.get("dev-02499").await.unwrap(),
        Some(down("dev-02499"))
    );
    // A rebuild announces nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), watcher.next())
            .await
            .is_err()
    );
}

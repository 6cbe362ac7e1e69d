//! The notification outbox on real PostgreSQL, delivering to a real HTTP
//! server in the test (and to a real Alertmanager when one is installed):
//! exactly once per row, retries with backoff, giving up, order per alert,
//! and nothing lost when the notifier dies before delivering.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use netward_alerting::notify::{
    AlertPayload, AlertmanagerChannel, ListFilter, Measurement, Notification, NotificationEvent,
    Notifier, NotifyConfig, WebhookChannel,
};
use netward_alerting::store::PgStore;
use netward_alerting::store::postgres::enqueue;
use netward_shared::proto::v1;
use netward_shared::testkit::{TestDatabase, eventually};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One request the test server received.
#[derive(Debug, Clone)]
struct Received {
    notification_id: String,
    body: Value,
    answered: StatusCode,
}

#[derive(Clone, Default)]
struct HookState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests still to answer with 500.
    fail: Arc<AtomicUsize>,
}

/// A webhook receiver on a free loopback port.
struct Hook {
    url: String,
    state: HookState,
    server: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start(fail_first: usize) -> Hook {
        let state = HookState::default();
        state.fail.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Hook {
            url: format!("http://{addr}/hook"),
            state,
            server,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Bodies answered 2xx.
    fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered.is_success())
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(state): State<HookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let failing = state
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let notification_id = headers
        .get("x-netward-notification-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    state.received.lock().unwrap().push(Received {
        notification_id,
        body: serde_json::from_slice(&body).unwrap(),
        answered,
    });
    answered
}

fn webhook_config(url: &str) -> NotifyConfig {
    NotifyConfig {
        webhooks: vec![WebhookChannel {
            name: "noc".to_string(),
            url: url.to_string(),
            headers: HashMap::from([("x-team".to_string(), "noc".to_string().into())]),
        }],
        ..NotifyConfig::default()
    }
}

fn notification(alert_id: Uuid, event: NotificationEvent) -> Notification {
    let started_at: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    Notification {
        alert_id,
        event,
        payload: AlertPayload {
            alert_id,
            rule_name: "device down".to_string(),
            rule_kind: "DEVICE_DOWN".to_string(),
            severity: "critical".to_string(),
            state: event,
            device_id: Uuid::from_u128(0xd1),
            device_name: "atm-tbs-0042".to_string(),
            ip: "10.20.0.42".to_string(),
            site: "Tbilisi Rustaveli".to_string(),
            region: "Tbilisi".to_string(),
            parent_device_name: Some("br-tbs-rustaveli".to_string()),
            summary: "atm-tbs-0042 is down".to_string(),
            started_at,
            resolved_at: (event == NotificationEvent::Resolved)
                .then(|| started_at + TimeDelta::minutes(7)),
            measurement: Measurement {
                loss_percent: Some(100.0),
                rtt_avg_ms: (event == NotificationEvent::Resolved).then_some(12.5),
                cycle_id: Some(4711),
            },
            suppressed_reason: None,
            labels: BTreeMap::from([("team".to_string(), "noc".to_string())]),
        },
    }
}

async fn database() -> (TestDatabase, PgStore) {
    let database = TestDatabase::create().await.unwrap();
    let store = PgStore::connect(database.url()).await.unwrap();
    (database, store)
}

/// Enqueues in a transaction of its own and commits.
async fn enqueue_committed(store: &PgStore, config: &NotifyConfig, notification: &Notification) {
    let mut tx = store.pool().begin().await.unwrap();
    let rows = enqueue(&mut tx, config, notification).await.unwrap();
    assert_eq!(rows, 1);
    tx.commit().await.unwrap();
}

async fn rows(notifier: &Notifier) -> Vec<netward_alerting::notify::OutboxRow> {
    let mut rows = notifier.list(&ListFilter::default()).await.unwrap().rows;
    rows.reverse();
    rows
}

#[test]
fn config_reads_durations_and_defaults() {
    let config: NotifyConfig = serde_json::from_value(serde_json::json!({
        "webhooks": [{"name": "noc", "url": "http://127.0.0.1:9/hook",
                      "headers": {"authorization": "Bearer t0ken"}}],
        "alertmanager": [{"name": "am", "url": "http://127.0.0.1:9093"}],
        "initial_backoff": "2s",
        "max_backoff": "10m",
    }))
    .unwrap();
    assert_eq!(config.initial_backoff, Duration::from_secs(2));
    assert_eq!(config.max_backoff, Duration::from_secs(600));
    assert_eq!(config.max_attempts, 12);
    assert_eq!(config.timeout, Duration::from_secs(5));
    assert!(
        !format!("{config:?}").contains("t0ken"),
        "header values are secrets"
    );
}

#[tokio::test]
async fn webhook_gets_firing_and_resolved_exactly_once() {
    let (_database, store) = database().await;
    let hook = Hook::start(0).await;
    let config = webhook_config(&hook.url);
    let notifier = Notifier::new(Arc::new(store.clone()), config.clone()).unwrap();
    let alert = Uuid::new_v4();
    enqueue_committed(
        &store,
        &config,
        &notification(alert, NotificationEvent::Firing),
    )
    .await;
    enqueue_committed(
        &store,
        &config,
        &notification(alert, NotificationEvent::Resolved),
    )
    .await;

    let round = notifier.deliver_due(Utc::now()).await.unwrap();
    assert_eq!((round.delivered, round.retried, round.failed), (2, 0, 0));
    let received = hook.received();
    assert_eq!(received.len(), 2);
    let (firing, resolved) = (&received[0].body, &received[1].body);
    assert_eq!(firing["state"], "firing");
    assert_eq!(resolved["state"], "resolved");
    for body in [firing, resolved] {
        assert_eq!(body["alert_id"], alert.to_string());
        assert_eq!(body["rule_kind"], "DEVICE_DOWN");
        assert_eq!(body["severity"], "critical");
        assert_eq!(body["device_name"], "atm-tbs-0042");
        assert_eq!(body["ip"], "10.20.0.42");
        assert_eq!(body["site"], "Tbilisi Rustaveli");
        assert_eq!(body["parent_device_name"], "br-tbs-rustaveli");
        assert_eq!(body["measurement"]["loss_percent"], 100.0);
        assert_eq!(body["measurement"]["cycle_id"], 4711);
        assert_eq!(body["started_at"], "2026-03-01T10:00:00Z");
        assert_eq!(body["labels"]["team"], "noc");
    }
    assert_eq!(firing["measurement"]["rtt_avg_ms"], Value::Null);
    assert_eq!(firing["resolved_at"], Value::Null);
    assert_eq!(resolved["measurement"]["rtt_avg_ms"], 12.5);
    assert_eq!(resolved["resolved_at"], "2026-03-01T10:07:00Z");

    let listed = rows(&notifier).await;
    assert_eq!(listed.len(), 2);
    for (row, got) in listed.iter().zip(&received) {
        assert_eq!(got.notification_id, row.id.to_string());
        assert_eq!(row.state, v1::NotificationState::Delivered);
        assert_eq!(row.attempts, 1);
        assert!(row.delivered_at.is_some());
    }
    let message = v1::Notification::from(listed[1].clone());
    assert_eq!(message.event, v1::AlertEventKind::Resolved as i32);
    assert_eq!(message.channel, "noc");
    assert_eq!(message.channel_kind, v1::ChannelKind::Webhook as i32);
    assert_eq!(message.state, v1::NotificationState::Delivered as i32);
    assert_eq!(message.device_id, Uuid::from_u128(0xd1).to_string());
    assert_eq!(message.rule_name, "device down");
    assert!(message.next_attempt_at.is_none() && message.delivered_at.is_some());

    // Nothing is due any more, whenever we look.
    let again = notifier
        .deliver_due(Utc::now() + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(again.claimed, 0);
    assert_eq!(hook.received().len(), 2);
}

#[tokio::test]
async fn failures_back_off_then_deliver() {
    let (_database, store) = database().await;
    let hook = Hook::start(2).await;
    let config = webhook_config(&hook.url);
    let notifier = Notifier::new(Arc::new(store.clone()), config.clone()).unwrap();
    enqueue_committed(
        &store,
        &config,
        &notification(Uuid::new_v4(), NotificationEvent::Firing),
    )
    .await;

    let t0 = Utc::now();
    let round = notifier.deliver_due(t0).await.unwrap();
    assert_eq!((round.delivered, round.retried), (0, 1));
    let row = rows(&notifier).await.remove(0);
    assert_eq!(row.state, v1::NotificationState::Retrying);
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.starts_with("HTTP 500"), "{}", row.last_error);
    // First delay: initial_backoff (1 s), drawn from its upper half.
    let delay = row.next_attempt_at - t0;
    assert!(
        delay >= TimeDelta::milliseconds(500) && delay <= TimeDelta::milliseconds(1200),
        "{delay:?}"
    );
    assert_eq!(
        notifier.deliver_due(t0).await.unwrap().claimed,
        0,
        "not due yet"
    );

    let t1 = t0 + TimeDelta::seconds(2);
    assert_eq!(notifier.deliver_due(t1).await.unwrap().retried, 1);
    let row = rows(&notifier).await.remove(0);
    let delay = row.next_attempt_at - t1;
    assert!(
        delay >= TimeDelta::seconds(1) && delay <= TimeDelta::milliseconds(2200),
        "second delay doubles: {delay:?}"
    );
    assert_eq!(notifier.deliver_due(t1).await.unwrap().claimed, 0);

    let t2 = t1 + TimeDelta::seconds(5);
    assert_eq!(notifier.deliver_due(t2).await.unwrap().delivered, 1);
    let row = rows(&notifier).await.remove(0);
    assert_eq!(row.state, v1::NotificationState::Delivered);
    assert_eq!(row.attempts, 3);
    assert_eq!(row.last_error, "");
    assert_eq!(hook.received().len(), 3);
    assert_eq!(hook.delivered().len(), 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let (_database, store) = database().await;
    let hook = Hook::start(usize::MAX).await;
    let config = NotifyConfig {
        max_attempts: 3,
        ..webhook_config(&hook.url)
    };
    let notifier = Notifier::new(Arc::new(store.clone()), config.clone()).unwrap();
    enqueue_committed(
        &store,
        &config,
        &notification(Uuid::new_v4(), NotificationEvent::Firing),
    )
    .await;

    let mut now = Utc::now();
    let mut rounds = Vec::new();
    for _ in 0..4 {
        rounds.push(notifier.deliver_due(now).await.unwrap());
        now += TimeDelta::hours(1);
    }
    let retried: Vec<_> = rounds.iter().map(|r| r.retried).collect();
    let failed: Vec<_> = rounds.iter().map(|r| r.failed).collect();
    assert_eq!(retried, [1, 1, 0, 0]);
    assert_eq!(failed, [0, 0, 1, 0]);
    assert_eq!(rounds[3].claimed, 0, "a failed row is never sent again");
    let row = rows(&notifier).await.remove(0);
    assert_eq!(row.state, v1::NotificationState::Failed);
    assert_eq!(row.attempts, 3);
    assert!(row.last_error.starts_with("HTTP 500"));
    assert!(v1::Notification::from(row).next_attempt_at.is_none());
    assert_eq!(hook.received().len(), 3);

    // The state filter of ListNotifications.
    let failed = notifier
        .list(&ListFilter {
            states: vec![v1::NotificationState::Failed],
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.rows.len(), 1);
    let pending = notifier
        .list(&ListFilter {
            states: vec![
                v1::NotificationState::Pending,
                v1::NotificationState::Retrying,
            ],
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert!(pending.rows.is_empty());
}

#[tokio::test]
async fn a_resolve_never_overtakes_its_firing() {
    let (_database, store) = database().await;
    let hook = Hook::start(1).await;
    let config = webhook_config(&hook.url);
    let notifier = Notifier::new(Arc::new(store.clone()), config.clone()).unwrap();
    let alert = Uuid::new_v4();
    enqueue_committed(
        &store,
        &config,
        &notification(alert, NotificationEvent::Firing),
    )
    .await;
    enqueue_committed(
        &store,
        &config,
        &notification(alert, NotificationEvent::Resolved),
    )
    .await;

    let t0 = Utc::now();
    let round = notifier.deliver_due(t0).await.unwrap();
    assert_eq!((round.claimed, round.retried, round.delivered), (2, 1, 0));
    assert_eq!(hook.received().len(), 1, "the resolve waits for its firing");
    assert_eq!(
        notifier
            .deliver_due(t0 + TimeDelta::milliseconds(100))
            .await
            .unwrap()
            .claimed,
        0,
        "still waiting while the firing backs off"
    );

    let round = notifier
        .deliver_due(t0 + TimeDelta::seconds(5))
        .await
        .unwrap();
    assert_eq!(round.delivered, 2);
    let states: Vec<_> = hook
        .delivered()
        .iter()
        .map(|r| r.body["state"].clone())
        .collect();
    assert_eq!(states, ["firing", "resolved"]);
}

#[tokio::test]
async fn killed_before_delivery_the_restarted_notifier_delivers_exactly_once() {
    let (database, store) = database().await;
    let hook = Hook::start(0).await;
    let config = webhook_config(&hook.url);
    // Stands in for the alerts table: the alert change the notification
    // announces commits (or rolls back) with it.
    sqlx::query("CREATE TABLE test_alert_changes (alert_id uuid PRIMARY KEY)")
        .execute(store.pool())
        .await
        .unwrap();
    let alert = Uuid::new_v4();
    let first = Arc::new(Notifier::new(Arc::new(store.clone()), config.clone()).unwrap());

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO test_alert_changes VALUES ($1)")
        .bind(alert)
        .execute(&mut *tx)
        .await
        .unwrap();
    enqueue(
        &mut tx,
        &config,
        &notification(alert, NotificationEvent::Firing),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // A change that rolls back announces nothing.
    let mut tx = store.pool().begin().await.unwrap();
    let rolled_back = Uuid::new_v4();
    sqlx::query("INSERT INTO test_alert_changes VALUES ($1)")
        .bind(rolled_back)
        .execute(&mut *tx)
        .await
        .unwrap();
    enqueue(
        &mut tx,
        &config,
        &notification(rolled_back, NotificationEvent::Firing),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    // The process dies after the commit, before any delivery.
    first.wake();
    drop(first);
    store.pool().close().await;
    drop(store);
    assert!(hook.received().is_empty());

    // Restarted: a new store and notifier on the same database.
    let store = PgStore::connect(database.url()).await.unwrap();
    let second = Arc::new(Notifier::new(Arc::new(store.clone()), config).unwrap());
    let stop = CancellationToken::new();
    let running = tokio::spawn(second.clone().run(stop.clone()));
    eventually(
        "the restarted notifier delivers",
        Duration::from_secs(10),
        || async { (!hook.received().is_empty()).then_some(()) },
    )
    .await;
    stop.cancel();
    running.await.unwrap();

    // Exactly once: nothing is left to send, at any later time.
    let later = second
        .deliver_due(Utc::now() + TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(later.claimed, 0);
    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["alert_id"], alert.to_string());
    let listed = rows(&second).await;
    assert_eq!(listed.len(), 1, "the rolled-back change left no row");
    assert_eq!(listed[0].state, v1::NotificationState::Delivered);
    assert_eq!(received[0].notification_id, listed[0].id.to_string());
}

#[tokio::test]
async fn two_notifiers_never_send_a_row_twice() {
    let (database, store) = database().await;
    let hook = Hook::start(0).await;
    let config = webhook_config(&hook.url);
    for _ in 0..40 {
        enqueue_committed(
            &store,
            &config,
            &notification(Uuid::new_v4(), NotificationEvent::Firing),
        )
        .await;
    }
    let other = PgStore::connect(database.url()).await.unwrap();
    let a = Notifier::new(Arc::new(store.clone()), config.clone()).unwrap();
    let b = Notifier::new(Arc::new(other.clone()), config).unwrap();
    let now = Utc::now();
    let (ra, rb) = tokio::join!(a.deliver_due(now), b.deliver_due(now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 40);
    let mut ids: Vec<_> = hook
        .received()
        .into_iter()
        .map(|r| r.notification_id)
        .collect();
    assert_eq!(ids.len(), 40);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every row sent once");
}

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A real Alertmanager on a free loopback port, with a receiver that sends
/// nothing and storage in a temporary directory.
struct Alertmanager {
    url: String,
    dir: std::path::PathBuf,
    _process: tokio::process::Child,
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        let dir = std::env::temp_dir().join(format!("netward-am-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let port = free_port();
        let process = tokio::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No cluster: a single instance, no gossip port.
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        // reqwest's rustls needs the process's provider (ring), as in `main`.
        netward_shared::tls::install_crypto_provider();
        let client = reqwest::Client::new();
        let ready = format!("{url}/-/ready");
        eventually("alertmanager is ready", Duration::from_secs(20), || async {
            let response = client.get(&ready).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Alertmanager {
            url,
            dir,
            _process: process,
        }
    }

    async fn alerts(&self) -> Vec<Value> {
        let text = reqwest::get(format!("{}/api/v2/alerts", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    addr.port()
}

#[tokio::test]
async fn alertmanager_shows_the_firing_alert_with_our_labels_until_resolved() {
    if !std::path::Path::new(ALERTMANAGER).exists() {
        eprintln!("skipped: {ALERTMANAGER} is missing (apt-get install prometheus-alertmanager)");
        return;
    }
    let alertmanager = Alertmanager::start().await;
    let (_database, store) = database().await;
    let config = NotifyConfig {
        alertmanager: vec![AlertmanagerChannel {
            name: "am".to_string(),
            url: alertmanager.url.clone(),
        }],
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(Arc::new(store.clone()), config.clone()).unwrap();
    let alert = Uuid::new_v4();
    enqueue_committed(
        &store,
        &config,
        &notification(alert, NotificationEvent::Firing),
    )
    .await;
    let round = notifier.deliver_due(Utc::now()).await.unwrap();
    let row = rows(&notifier).await.remove(0);
    assert_eq!(round.delivered, 1, "{}", row.last_error);
    assert_eq!(row.channel_kind, v1::ChannelKind::Alertmanager);

    let shown = eventually(
        "alertmanager lists the alert",
        Duration::from_secs(10),
        || async {
            let alerts = alertmanager.alerts().await;
            alerts
                .into_iter()
                .find(|a| a["labels"]["alert_id"] == alert.to_string())
        },
    )
    .await;
    let labels = &shown["labels"];
    assert_eq!(labels["alertname"], "DEVICE_DOWN");
    assert_eq!(labels["device"], "atm-tbs-0042");
    assert_eq!(labels["instance"], "10.20.0.42");
    assert_eq!(labels["site"], "Tbilisi Rustaveli");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["team"], "noc");
    assert_eq!(shown["annotations"]["summary"], "atm-tbs-0042 is down");
    assert_eq!(shown["annotations"]["parent"], "br-tbs-rustaveli");
    assert_eq!(shown["annotations"]["cycle_id"], "4711");
    assert_eq!(shown["status"]["state"], "active");

    // The resolve carries the same labels, so it ends that very alert.
    enqueue_committed(
        &store,
        &config,
        &notification(alert, NotificationEvent::Resolved),
    )
    .await;
    assert_eq!(notifier.deliver_due(Utc::now()).await.unwrap().delivered, 1);
    eventually(
        "alertmanager no longer lists the alert as active",
        Duration::from_secs(10),
        || async {
            let alerts = alertmanager.alerts().await;
            (!alerts
                .iter()
                .any(|a| a["labels"]["alert_id"] == alert.to_string()))
            .then_some(())
        },
    )
    .await;
}

//! Retention on real PostgreSQL: old rows are pruned in batches at a chosen
//! `now`, recent and pending ones stay, and availability still knows the
//! state at a range's start from the transition kept before the cutoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use netward_alerting::AlertingConfig;
use netward_alerting::ingest::Ingestor;
use netward_alerting::retention::{Pruner, Retentions};
use netward_alerting::store::{AlertingStore, PgStore, Prunable, Pruned};
use netward_shared::client::connect;
use netward_shared::config::{ConfigLoader, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::server::Listeners;
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

const DAY: u64 = 86_400;

/// Now, to the second: PostgreSQL keeps microseconds, chrono nanoseconds.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
}

fn defaults() -> Retentions {
    AlertingConfig::default().retentions()
}

async fn store(database: &TestDatabase) -> Arc<PgStore> {
    Arc::new(PgStore::connect(database.url()).await.unwrap())
}

async fn change(store: &PgStore, device: Uuid, to: v1::DeviceState, at: DateTime<Utc>) {
    sqlx::query(
        "INSERT INTO state_changes (device_id, from_state, to_state, reason, changed_at) \
         VALUES ($1, 0, $2, 'test', $3)",
    )
    .bind(device)
    .bind(to as i16)
    .bind(at)
    .execute(store.pool())
    .await
    .unwrap();
}

async fn changes_of(store: &PgStore, device: Uuid) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT changed_at FROM state_changes WHERE device_id = $1 ORDER BY changed_at",
    )
    .bind(device)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

async fn alert(store: &PgStore, started: DateTime<Utc>, resolved: Option<DateTime<Utc>>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO alerts (id, rule_id, device_id, state, severity, started_at, resolved_at, body) \
         VALUES ($1, $2, $3, $4, 3, $5, $6, '')",
    )
    .bind(id)
    .bind(Uuid::new_v4())
    .bind(Uuid::new_v4())
    .bind(if resolved.is_some() { 3i16 } else { 1 })
    .bind(started)
    .bind(resolved)
    .execute(store.pool())
    .await
    .unwrap();
    id
}

/// An outbox row of `alert` in `state` (1 pending, 2 delivered, 3 failed).
async fn notification(store: &PgStore, alert: Uuid, state: i16, created: DateTime<Utc>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO notification_outbox (alert_id, channel, channel_kind, event, payload, state, \
             created_at, delivered_at) \
         VALUES ($1, 'hook', 1, 'firing', '{}', $2, $3, CASE WHEN $2 = 2 THEN $3 END) RETURNING id",
    )
    .bind(alert)
    .bind(state)
    .bind(created)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

async fn ids(store: &PgStore, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

fn pruned(done: &[(Prunable, Pruned)], what: Prunable) -> Pruned {
    done.iter().find(|(w, _)| *w == what).unwrap().1
}

#[tokio::test]
async fn state_changes_past_the_retention_go_but_each_device_keeps_its_state_at_the_cutoff() {
    let database = TestDatabase::create().await.unwrap();
    let store = store(&database).await;
    let now = now();
    let ago = |days: i64| now - TimeDelta::days(days);
    let (busy, quiet, recent) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    use v1::DeviceState::{Down, Up};
    // busy: three transitions past the cutoff (400 days), one within.
    for (days, to) in [(500, Up), (450, Down), (420, Up), (10, Down)] {
        change(&store, busy, to, ago(days)).await;
    }
    // quiet: UP for three years, never changed since.
    change(&store, quiet, Up, ago(3 * 365)).await;
    change(&store, recent, Down, ago(5)).await;

    let pruner = Pruner::new(store.clone(), defaults());
    let done = pruner.prune(now).await.unwrap();
    assert_eq!(pruned(&done, Prunable::StateChanges).rows, 2);
    assert_eq!(changes_of(&store, busy).await, vec![ago(420), ago(10)]);
    assert_eq!(changes_of(&store, quiet).await, vec![ago(3 * 365)]);
    assert_eq!(changes_of(&store, recent).await, vec![ago(5)]);

    // The state at a later range start is the kept transition, however old.
    let at = ago(300);
    let busy_then = store.last_change_before(busy, at).await.unwrap().unwrap();
    assert_eq!((busy_then.to, busy_then.changed_at), (Up, ago(420)));
    let quiet_then = store.last_change_before(quiet, at).await.unwrap().unwrap();
    assert_eq!(quiet_then.to, Up);
    assert!(
        store
            .last_change_before(recent, at)
            .await
            .unwrap()
            .is_none()
    );

    // A second pass finds nothing more to prune.
    let again = pruner.prune(now).await.unwrap();
    assert_eq!(pruned(&again, Prunable::StateChanges).rows, 0);
}

#[tokio::test]
async fn resolved_alerts_settled_notifications_and_ended_silences_go_pending_ones_stay() {
    let database = TestDatabase::create().await.unwrap();
    let store = store(&database).await;
    let now = now();
    let ago = |days: i64| now - TimeDelta::days(days);

    let long_resolved = alert(&store, ago(520), Some(ago(500))).await;
    let resolved = alert(&store, ago(60), Some(ago(10))).await;
    let open = alert(&store, ago(600), None).await;

    // Old and settled, alert resolved (or resolved long ago and pruned): go.
    let delivered = notification(&store, resolved, 2, ago(60)).await;
    let failed = notification(&store, long_resolved, 3, ago(520)).await;
    // Pending: stays, however old. An open alert's firing row: stays (its
    // resolve is sent only when the firing row is there). Recent: stays.
    let pending = notification(&store, resolved, 1, ago(60)).await;
    let open_firing = notification(&store, open, 2, ago(600)).await;
    let recent = notification(&store, resolved, 2, ago(5)).await;

    for (ends, id) in [(Some(ago(500)), 1), (Some(ago(10)), 2), (None, 3)] {
        sqlx::query(
            "INSERT INTO silences (id, maintenance, starts_at, ends_at, body) \
             VALUES ($1, false, $2, $3, '')",
        )
        .bind(Uuid::from_u128(id))
        .bind(ago(600))
        .bind(ends)
        .execute(store.pool())
        .await
        .unwrap();
    }

    let done = Pruner::new(store.clone(), defaults())
        .prune(now)
        .await
        .unwrap();
    assert_eq!(pruned(&done, Prunable::Alerts).rows, 1);
    assert_eq!(pruned(&done, Prunable::Notifications).rows, 2);
    assert_eq!(pruned(&done, Prunable::Silences).rows, 1);

    let mut alerts = ids(&store, "SELECT id::text FROM alerts").await;
    alerts.sort();
    let mut expected = vec![resolved.to_string(), open.to_string()];
    expected.sort();
    assert_eq!(alerts, expected);
    let mut outbox = ids(&store, "SELECT id::text FROM notification_outbox").await;
    outbox.sort();
    let mut expected: Vec<String> = [pending, open_firing, recent]
        .iter()
        .map(ToString::to_string)
        .collect();
    expected.sort();
    assert_eq!(outbox, expected);
    assert!(!outbox.contains(&delivered.to_string()) && !outbox.contains(&failed.to_string()));
    let mut silences = ids(&store, "SELECT id::text FROM silences").await;
    silences.sort();
    assert_eq!(
        silences,
        vec![
            Uuid::from_u128(2).to_string(),
            Uuid::from_u128(3).to_string()
        ]
    );
}

#[tokio::test]
async fn pruning_proceeds_in_small_batches() {
    let database = TestDatabase::create().await.unwrap();
    let store = store(&database).await;
    let now = now();
    let device = Uuid::new_v4();
    // 26 transitions past the cutoff: 25 to prune, the newest kept.
    for minute in 0..26 {
        let at = now - TimeDelta::days(450) + TimeDelta::minutes(minute);
        change(&store, device, v1::DeviceState::Up, at).await;
    }
    let done = Pruner::new(store.clone(), defaults())
        .with_batch(10)
        .prune(now)
        .await
        .unwrap();
    assert_eq!(
        pruned(&done, Prunable::StateChanges),
        Pruned {
            rows: 25,
            batches: 3
        }
    );
    assert_eq!(changes_of(&store, device).await.len(), 1);

    // The store's own loop, on one table, stops at the first short batch.
    for _ in 0..20 {
        alert(
            &store,
            now - TimeDelta::days(500),
            Some(now - TimeDelta::days(450)),
        )
        .await;
    }
    let cutoff = now - TimeDelta::days(400);
    let done = store.prune(Prunable::Alerts, cutoff, 5).await.unwrap();
    assert_eq!(
        done,
        Pruned {
            rows: 20,
            batches: 5
        }
    );
}

#[tokio::test]
async fn idempotency_keys_outlive_raw_results_by_a_day_and_rollups_keep_theirs() {
    let database = TestDatabase::create().await.unwrap();
    let store = store(&database).await;
    let now = now();
    let ago = |hours: i64| now - TimeDelta::hours(hours);
    for (uid, at) in [
        ("old", ago(9 * 24 + 1)),
        ("margin", ago(7 * 24 + 12)),
        ("new", ago(1)),
    ] {
        sqlx::query(
            "INSERT INTO ingested_batches (batch_uid, executor_id, results, received_at) \
             VALUES ($1, 'x', 1, $2)",
        )
        .bind(uid)
        .bind(at)
        .execute(store.pool())
        .await
        .unwrap();
    }
    for (days, minute) in [(401, 0), (1, 0)] {
        sqlx::query(
            "INSERT INTO probe_rollups (device_id, minute, probes, packets_sent, packets_received, \
                 rtt_samples, rtt_sum_us) VALUES ($1, $2, 1, 1, 1, 0, 0)",
        )
        .bind(Uuid::new_v4())
        .bind(now - TimeDelta::days(days) + TimeDelta::minutes(minute))
        .execute(store.pool())
        .await
        .unwrap();
    }
    let ingestor = Ingestor::new(
        store.clone(),
        Duration::from_secs(7 * DAY),
        Duration::from_secs(400 * DAY),
    );
    ingestor.maintain(now).await.unwrap();
    let mut keys = ids(&store, "SELECT batch_uid FROM ingested_batches").await;
    keys.sort();
    // "margin" is past the 7-day raw retention but within its extra day.
    assert_eq!(keys, vec!["margin".to_string(), "new".to_string()]);
    let rollups = ids(&store, "SELECT minute::text FROM probe_rollups").await;
    assert_eq!(rollups.len(), 1);
}

#[tokio::test]
async fn availability_after_the_cutoff_knows_the_state_at_its_start() {
    let database = TestDatabase::create().await.unwrap();
    let env = HashMap::from([
        (
            "NETWARD_DATABASE_URL".to_string(),
            database.url().to_string(),
        ),
        (
            "NETWARD_ALERTING__STATE_CHANGE_RETENTION".to_string(),
            "200d".to_string(),
        ),
    ]);
    let config = ConfigLoader::new(Target::Alerting).env(env).load().unwrap();
    let section: AlertingConfig = config.section().unwrap();
    assert_eq!(
        section.state_change_retention,
        Duration::from_secs(200 * DAY)
    );
    assert_eq!(section.alert_retention, Duration::from_secs(400 * DAY));

    let store = store(&database).await;
    let now = now();
    let ago = |days: i64| now - TimeDelta::days(days);
    let device = Uuid::new_v4();
    use v1::DeviceState::{Down, Up};
    // UP three years ago, DOWN for a day two years ago, UP since.
    for (days, to) in [(3 * 365, Up), (2 * 365, Down), (2 * 365 - 1, Up)] {
        change(&store, device, to, ago(days)).await;
    }
    Pruner::new(store.clone(), section.retentions())
        .prune(now)
        .await
        .unwrap();
    assert_eq!(changes_of(&store, device).await, vec![ago(2 * 365 - 1)]);

    let listeners = Listeners::local().await.unwrap();
    let addr = listeners.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        netward_alerting::run(&config, listeners, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let channel = connect(&format!("http://{addr}"), None).unwrap();
    let client = AlertingServiceClient::new(channel);
    let request = v1::GetAvailabilityRequest {
        target: Some(v1::get_availability_request::Target::DeviceId(
            device.to_string(),
        )),
        start_time: Some(prost_types::Timestamp {
            seconds: ago(150).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: ago(50).timestamp(),
            nanos: 0,
        }),
    };
    let availability = netward_shared::testkit::eventually(
        "alerting answers GetAvailability",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.get_availability(request).await.ok() }
        },
    )
    .await
    .into_inner();
    // The whole range is UP: the kept transition says so, though it is more
    // than 400 days (the longest range) before the start; nothing unknown.
    assert_eq!(availability.uptime_percent, 100.0);
    assert_eq!(availability.unknown_time.unwrap_or_default().seconds, 0);
    assert_eq!(availability.downtime.unwrap_or_default().seconds, 0);
    let _ = stop.send(());
    server.await.unwrap();
}

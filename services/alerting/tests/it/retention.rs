//! Retention through the service on real PostgreSQL: availability still
//! knows the state at a range's start from the transition kept before the
//! cutoff. (What each table keeps is in the store suite, `store.rs`, run on
//! both backends.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use netward_alerting::AlertingConfig;
use netward_alerting::retention::Pruner;
use netward_alerting::store::PgStore;
use netward_shared::client::connect;
use netward_shared::config::{ConfigLoader, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

const DAY: u64 = 86_400;

/// Now, to the second: PostgreSQL keeps microseconds, chrono nanoseconds.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
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

    let cluster = crate::alerting_alone()
        .set("NETWARD_ALERTING__STATE_CHANGE_RETENTION", "200d")
        .database(database)
        .start()
        .await;
    let client =
        AlertingServiceClient::new(connect(&cluster.alerting_url(), &Default::default()).unwrap());
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
    let mut cluster = cluster;
    let stopped = cluster.alerting.take().unwrap().stop().await;
    assert!(stopped.clean(), "{stopped:?}");
}

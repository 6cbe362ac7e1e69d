//! Faults around evaluation and ingest on real PostgreSQL: a database that
//! goes away while a device goes DOWN loses nothing (the state, its alert
//! and its notification appear once, when it answers again), poison
//! batches are rejected alone, and deleted devices leave memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use netward_alerting::alerts::AlertEngine;
use netward_alerting::backlog::Backlog;
use netward_alerting::evaluate::Evaluator;
use netward_alerting::ingest::Ingestor;
use netward_alerting::notify::{Notifier, NotifyConfig, WebhookChannel};
use netward_alerting::snmp::book::SnmpBook;
use netward_alerting::snmp::classify::{Classifier, InterfacesConfig};
use netward_alerting::snmp::rates::RateConfig;
use netward_alerting::state::{StateConfig, StateMachine};
use netward_alerting::store::{AlertingStore, PgStore, Stores};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use sqlx::Connection as _;
use uuid::Uuid;

/// Alerting's domain wired as `run` wires it, without the network.
struct Domain {
    database: TestDatabase,
    ingestor: Ingestor,
    evaluator: Arc<Evaluator>,
    alerts: Arc<AlertEngine>,
    book: Arc<SnmpBook>,
    backlog: Backlog,
    copy: SharedCopy,
}

impl Domain {
    async fn start() -> Domain {
        let database = TestDatabase::create().await.unwrap();
        let store = Arc::new(PgStore::connect(database.url()).await.unwrap());
        let copy: SharedCopy = Default::default();
        let book = Arc::new(
            SnmpBook::load(
                store.clone(),
                Classifier::new(&InterfacesConfig::default()).unwrap(),
                RateConfig::default(),
                copy.clone(),
            )
            .await
            .unwrap(),
        );
        let ingestor = Ingestor::new(
            store.clone(),
            Duration::from_secs(7 * 86_400),
            (
                Duration::from_secs(30 * 86_400),
                Duration::from_secs(400 * 86_400),
            ),
        )
        .with_snmp(book.clone())
        .with_inventory(copy.clone());
        ingestor.maintain(Utc::now()).await.unwrap();
        // A channel, so firing alerts put rows in the outbox (never sent here).
        let notify = NotifyConfig {
            webhooks: vec![WebhookChannel {
                name: "noc".into(),
                url: "http://127.0.0.1:9/hook".into(),
                headers: HashMap::new(),
            }],
            ..NotifyConfig::default()
        };
        let notifier = Arc::new(Notifier::new(store.clone(), notify).unwrap());
        let alerts = Arc::new(
            AlertEngine::start(
                &Stores::postgres(PgStore::clone(&store)),
                copy.clone(),
                Some(notifier),
            )
            .await
            .unwrap(),
        );
        let machine = StateMachine::new(StateConfig::default()).unwrap();
        let store: Arc<dyn AlertingStore> = store;
        let evaluator = Arc::new(
            Evaluator::restore(machine, store, copy.clone())
                .await
                .unwrap(),
        );
        let backlog = Backlog::new(evaluator.clone(), alerts.clone(), 1000);
        Domain {
            database,
            ingestor,
            evaluator,
            alerts,
            book,
            backlog,
            copy,
        }
    }

    /// Stores one result per device (answered or not); returns the rows to evaluate.
    async fn store(
        &self,
        devices: &[Uuid],
        answered: bool,
    ) -> Vec<netward_alerting::store::ProbeRow> {
        let batch = v1::ResultBatch {
            executor_id: "test".into(),
            batch_uid: Uuid::new_v4().to_string(),
            probes: devices
                .iter()
                .map(|d| v1::ProbeResult {
                    device_id: d.to_string(),
                    sent: 3,
                    received: if answered { 3 } else { 0 },
                    loss_percent: if answered { 0.0 } else { 100.0 },
                    rtt_avg_us: answered.then_some(150),
                    outcome: if answered {
                        v1::ProbeOutcome::Ok
                    } else {
                        v1::ProbeOutcome::Timeout
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        self.ingestor.ingest(&batch, Utc::now()).await.unwrap().rows
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(self.database.pool())
            .await
            .unwrap()
    }

    fn state(&self, device: Uuid) -> v1::DeviceState {
        self.evaluator.status(device).unwrap().state
    }
}

/// Runs SQL as the administrator (connected to another database).
async fn admin(sql: &str) {
    let mut admin = sqlx::PgConnection::connect(&netward_shared::testkit::admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// PostgreSQL goes away for the database: new connections refused, open
/// ones terminated.
pub(crate) async fn cut(database: &TestDatabase) {
    let name = database.name();
    admin(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
    ))
    .await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;
}

pub(crate) async fn restore(database: &TestDatabase) {
    let name = database.name();
    admin(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
    ))
    .await;
}

#[tokio::test]
async fn a_down_during_a_database_outage_is_evaluated_once_when_it_answers_again() {
    let domain = Domain::start().await;
    let device = Uuid::new_v4();
    for _ in 0..2 {
        let rows = domain.store(&[device], true).await;
        domain.backlog.probes(rows).await.unwrap();
    }
    assert_eq!(domain.state(device), v1::DeviceState::Up);

    // The failed probe is stored (and acked); then PostgreSQL goes away.
    let rows = domain.store(&[device], false).await;
    cut(&domain.database).await;
    assert!(domain.backlog.probes(rows).await.is_err());
    assert_eq!(
        domain.state(device),
        v1::DeviceState::Up,
        "memory changes only after a commit"
    );
    assert_eq!(domain.backlog.queued(), 1, "kept for a retry");
    assert!(domain.backlog.drain().await.is_err(), "still away");

    restore(&domain.database).await;
    domain.backlog.drain().await.unwrap();
    domain.backlog.drain().await.unwrap();
    assert_eq!(domain.backlog.queued(), 0);
    assert_eq!(domain.state(device), v1::DeviceState::Down);
    let down = format!(
        "SELECT count(*) FROM alerting.state_changes WHERE device_id = '{device}' AND to_state = {}",
        v1::DeviceState::Down as i32
    );
    assert_eq!(domain.count(&down).await, 1);
    let alerts = format!("SELECT count(*) FROM alerting.alerts WHERE device_id = '{device}'");
    assert_eq!(domain.count(&alerts).await, 1);
    let notified = format!(
        "SELECT count(*) FROM alerting.notification_outbox o JOIN alerting.alerts a ON a.id = o.alert_id \
         WHERE a.device_id = '{device}' AND o.event = 'firing'"
    );
    assert_eq!(domain.count(&notified).await, 1);
}

#[tokio::test]
async fn a_failed_alert_write_resumes_after_the_committed_state_step() {
    let domain = Domain::start().await;
    let device = Uuid::new_v4();
    for _ in 0..2 {
        let rows = domain.store(&[device], true).await;
        domain.backlog.probes(rows).await.unwrap();
    }
    // The state commits, the alert cannot (its table is away).
    sqlx::query("ALTER TABLE alerting.alerts RENAME TO alerts_away")
        .execute(domain.database.pool())
        .await
        .unwrap();
    let rows = domain.store(&[device], false).await;
    assert!(domain.backlog.probes(rows).await.is_err());
    assert_eq!(domain.state(device), v1::DeviceState::Down);
    sqlx::query("ALTER TABLE alerting.alerts_away RENAME TO alerts")
        .execute(domain.database.pool())
        .await
        .unwrap();
    domain.backlog.drain().await.unwrap();
    let down = format!(
        "SELECT count(*) FROM alerting.state_changes WHERE device_id = '{device}' AND to_state = {}",
        v1::DeviceState::Down as i32
    );
    assert_eq!(
        domain.count(&down).await,
        1,
        "the state step is not run again"
    );
    let alerts = format!("SELECT count(*) FROM alerting.alerts WHERE device_id = '{device}'");
    assert_eq!(domain.count(&alerts).await, 1);
    let notified = format!(
        "SELECT count(*) FROM alerting.notification_outbox o JOIN alerting.alerts a ON a.id = o.alert_id \
         WHERE a.device_id = '{device}' AND o.event = 'firing'"
    );
    assert_eq!(domain.count(&notified).await, 1);
}

#[tokio::test]
async fn a_device_deleted_from_the_inventory_leaves_memory_and_its_alerts_resolve() {
    let domain = Domain::start().await;
    let (kept, deleted) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let mut copy = domain.copy.write().unwrap();
        for id in [kept, deleted] {
            copy.insert(v1::Device {
                id: id.to_string(),
                name: format!("dev-{id}"),
                enabled: Some(true),
                ..Default::default()
            });
        }
        copy.synced = true;
        copy.revision = 1;
    }
    for answered in [true, true, false] {
        let rows = domain.store(&[kept, deleted], answered).await;
        domain.backlog.probes(rows).await.unwrap();
    }
    let at = Utc::now() - chrono::TimeDelta::seconds(5);
    let mut sample = crate::snmp::sample(at, 100, 1000);
    sample.device_id = deleted.to_string();
    domain
        .ingestor
        .ingest(&crate::snmp::batch(vec![sample]), Utc::now())
        .await
        .unwrap();
    assert!(domain.book.device_ids().contains(&deleted));
    assert!(domain.alerts.device_ids().contains(&deleted.to_string()));
    let open = format!(
        "SELECT count(*) FROM alerting.alerts WHERE device_id = '{deleted}' AND state <> 3"
    );
    assert_eq!(domain.count(&open).await, 1, "its DOWN alert is open");

    domain
        .copy
        .write()
        .unwrap()
        .devices
        .remove(&deleted.to_string());
    let gone = netward_alerting::forget_deleted(
        &domain.evaluator,
        &domain.alerts,
        &domain.book,
        &domain.copy,
    )
    .await
    .unwrap();
    assert_eq!(gone, vec![deleted]);
    assert!(domain.evaluator.status(deleted).is_none());
    assert!(domain.evaluator.status(kept).is_some());
    assert!(!domain.alerts.device_ids().contains(&deleted.to_string()));
    assert!(domain.alerts.device_ids().contains(&kept.to_string()));
    assert!(!domain.book.device_ids().contains(&deleted));
    assert_eq!(domain.count(&open).await, 0, "its alert resolved");
    let resolved = domain.alerts.list(true, 100).await.unwrap();
    let resolved = resolved
        .iter()
        .find(|a| a.device_id == deleted.to_string())
        .unwrap();
    assert!(
        resolved
            .summary
            .contains("device deleted from the inventory"),
        "{}",
        resolved.summary
    );
    let row = format!("SELECT count(*) FROM alerting.device_state WHERE device_id = '{deleted}'");
    assert_eq!(domain.count(&row).await, 0);

    // Results for it that arrive now are not stored, and counted.
    let rows = domain.store(&[deleted, kept], true).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].device_id, kept);
}

#[tokio::test]
async fn results_that_change_no_state_are_no_row_update_until_the_checkpoint() {
    let domain = Domain::start().await;
    let device = Uuid::new_v4();
    for _ in 0..2 {
        let rows = domain.store(&[device], true).await;
        domain.backlog.probes(rows).await.unwrap();
    }
    assert_eq!(domain.state(device), v1::DeviceState::Up);
    let stored_probe = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<Utc>>>(
            "SELECT last_probe_at FROM alerting.device_state WHERE device_id = $1",
        )
        .bind(device)
        .fetch_one(domain.database.pool())
        .await
        .unwrap()
    };
    let written = stored_probe().await;
    assert!(written.is_some(), "the transition to UP wrote the row");

    // Five more answered probes: memory follows each, the row none.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let rows = domain.store(&[device], true).await;
        domain.backlog.probes(rows).await.unwrap();
    }
    let live = domain.evaluator.status(device).unwrap().last_probe_at;
    assert!(live > written, "memory has the last result");
    assert_eq!(stored_probe().await, written, "no row update per result");

    // The checkpoint writes what memory has; nothing is left after it.
    assert_eq!(domain.evaluator.checkpoint().await.unwrap(), 1);
    let micros = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.timestamp_micros());
    assert_eq!(micros(stored_probe().await), micros(live));
    assert_eq!(domain.evaluator.checkpoint().await.unwrap(), 0);

    // A state change is written at once, with its transition.
    for _ in 0..3 {
        let rows = domain.store(&[device], false).await;
        domain.backlog.probes(rows).await.unwrap();
    }
    assert_eq!(domain.state(device), v1::DeviceState::Down);
    let state: i16 =
        sqlx::query_scalar("SELECT state FROM alerting.device_state WHERE device_id = $1")
            .bind(device)
            .fetch_one(domain.database.pool())
            .await
            .unwrap();
    assert_eq!(i32::from(state), v1::DeviceState::Down as i32);
}

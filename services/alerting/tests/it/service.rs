//! The service layer driven directly, without a network: the domain's
//! answers and errors, and the one mapping of its errors to statuses. Each
//! case runs on PostgreSQL (`service::pg::…`) and on SQLite
//! (`service::sqlite::…`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use netward_alerting::alerts::AlertEngine;
use netward_alerting::backlog::Backlog;
use netward_alerting::evaluate::Evaluator;
use netward_alerting::ingest::Ingestor;
use netward_alerting::notify::{Notifier, NotifyConfig, WebhookChannel};
use netward_alerting::service::{Alerting, BatchOutcome, Error};
use netward_alerting::snmp::book::SnmpBook;
use netward_alerting::snmp::classify::{Classifier, InterfacesConfig};
use netward_alerting::snmp::rates::RateConfig;
use netward_alerting::state::{StateConfig, StateMachine};
use netward_alerting::store::Stores;
use netward_shared::auth::Scope;
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use uuid::Uuid;

use crate::stores::Backend;

/// Each case, as a test on PostgreSQL and one on SQLite.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::postgres().await;
                    super::$case(super::alerting(&backend.stores).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::sqlite().await;
                    super::$case(super::alerting(&backend.stores).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    batches_are_stored_once_then_evaluated_and_errors_read_as_today,
    a_device_that_stops_answering_raises_one_alert_and_its_firing_notification,
);

/// The domain wired as `run` wires it, on `stores`; one webhook channel so
/// alerts put rows in the outbox (nothing delivers them here).
async fn alerting(stores: &Stores) -> Alerting {
    let stores = stores.clone();
    let copy: SharedCopy = Default::default();
    let book = Arc::new(
        SnmpBook::load(
            stores.snmp.clone(),
            Classifier::new(&InterfacesConfig::default()).unwrap(),
            RateConfig::default(),
            copy.clone(),
        )
        .await
        .unwrap(),
    );
    let ingestor = Arc::new(
        Ingestor::new(
            stores.results.clone(),
            Duration::from_secs(7 * 86_400),
            (
                Duration::from_secs(30 * 86_400),
                Duration::from_secs(400 * 86_400),
            ),
        )
        .with_snmp(book.clone()),
    );
    ingestor.maintain(Utc::now()).await.unwrap();
    let notify = NotifyConfig {
        webhooks: vec![WebhookChannel {
            name: "noc".into(),
            url: "http://127.0.0.1:9/hook".into(),
            headers: HashMap::new(),
        }],
        ..NotifyConfig::default()
    };
    let notifier = Arc::new(Notifier::new(stores.notifications.clone(), notify).unwrap());
    let alerts = Arc::new(
        AlertEngine::start(&stores, copy.clone(), Some(notifier.clone()))
            .await
            .unwrap(),
    );
    let machine = StateMachine::new(StateConfig::default()).unwrap();
    let evaluator = Arc::new(
        Evaluator::restore(machine, stores.results.clone(), copy.clone())
            .await
            .unwrap(),
    );
    let backlog = Arc::new(Backlog::new(evaluator.clone(), alerts.clone(), 1000));
    Alerting::new(ingestor, evaluator, alerts, backlog, notifier, book, copy)
}

fn batch(uid: &str, devices: &[Uuid]) -> v1::ResultBatch {
    answered(uid, devices, true)
}

fn answered(uid: &str, devices: &[Uuid], answered: bool) -> v1::ResultBatch {
    v1::ResultBatch {
        executor_id: "test".into(),
        kind: v1::ExecutorKind::Ping as i32,
        batch_uid: uid.into(),
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
    }
}

async fn batches_are_stored_once_then_evaluated_and_errors_read_as_today(alerting: Alerting) {
    let devices: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();

    // A group: a good batch, its replay, and one without its key.
    let mut group = vec![
        batch("first", &devices),
        batch("first", &devices),
        batch("", &devices[..1]),
    ];
    let stored = alerting.store_batches(&mut group).await.unwrap();
    assert_eq!(
        stored.outcomes,
        [
            BatchOutcome::Stored {
                rows: 3,
                duplicate: false
            },
            BatchOutcome::Stored {
                rows: 0,
                duplicate: true
            },
            BatchOutcome::Rejected("batch_uid: must be 1-128 characters".into()),
        ]
    );
    alerting.evaluate(stored).await;
    let status = alerting.device_status(&devices[0].to_string()).unwrap();
    assert_eq!(status.state, v1::DeviceState::Up as i32);
    assert_eq!(status.last_rtt_avg_us, Some(150));

    // Not found, invalid, failed precondition: the messages of the API.
    let unknown = Uuid::new_v4().to_string();
    let error = alerting.device_status(&unknown).unwrap_err();
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.message(),
        format!("device {unknown} is neither in the inventory nor probed")
    );
    let error = alerting.device_status("not-a-uuid").unwrap_err();
    assert!(matches!(&error, Error::InvalidArgument(v) if v[0].field == "device_id"));
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("device_id"), "{status:?}");
    let error = alerting
        .ack_alert(
            &v1::AckAlertRequest {
                id: unknown.clone(),
                acknowledged_by: "noc".into(),
                comment: String::new(),
            },
            &Scope::default(),
        )
        .await
        .unwrap_err();
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), format!("alert {unknown} is not open"));
    let error = alerting.rule("no such rule").unwrap_err();
    assert_eq!(
        tonic::Status::from(error).code(),
        tonic::Code::NotFound,
        "unknown rule"
    );
    let builtin = alerting
        .list_rules(&v1::ListRulesRequest::default())
        .unwrap()
        .rules
        .into_iter()
        .find(|r| r.builtin)
        .unwrap();
    let status = tonic::Status::from(alerting.delete_rule(&builtin.id).await.unwrap_err());
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("is built in"), "{status:?}");
}

/// Ingest, state, alert, outbox: the path a DOWN takes through the stores.
async fn a_device_that_stops_answering_raises_one_alert_and_its_firing_notification(
    alerting: Alerting,
) {
    let device = Uuid::new_v4();
    for (i, up) in [true, true, false, false].into_iter().enumerate() {
        let mut group = vec![answered(&format!("b{i}"), &[device], up)];
        let stored = alerting.store_batches(&mut group).await.unwrap();
        alerting.evaluate(stored).await;
    }
    let status = alerting.device_status(&device.to_string()).unwrap();
    assert_eq!(status.state, v1::DeviceState::Down as i32);

    let open = alerting
        .list_alerts(&v1::ListAlertsRequest::default(), &Scope::default())
        .await
        .unwrap()
        .alerts;
    assert_eq!(open.len(), 1, "one open alert per rule and device");
    assert_eq!(open[0].device_id, device.to_string());
    assert_eq!(open[0].state, v1::AlertState::Firing as i32);
    let rows = alerting
        .list_notifications(&v1::ListNotificationsRequest::default(), &Scope::default())
        .await
        .unwrap()
        .notifications;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].alert_id, open[0].id);
    assert_eq!(rows[0].channel, "noc");

    // Acknowledged, then the device answers again: resolved, and the
    // resolve is queued behind the firing.
    let acked = alerting
        .ack_alert(
            &v1::AckAlertRequest {
                id: open[0].id.clone(),
                acknowledged_by: "noc".into(),
                comment: String::new(),
            },
            &Scope::default(),
        )
        .await
        .unwrap();
    assert_eq!(acked.state, v1::AlertState::Acknowledged as i32);
    for i in 0..3 {
        let mut group = vec![answered(&format!("up{i}"), &[device], true)];
        let stored = alerting.store_batches(&mut group).await.unwrap();
        alerting.evaluate(stored).await;
    }
    let status = alerting.device_status(&device.to_string()).unwrap();
    assert_eq!(status.state, v1::DeviceState::Up as i32);
    let open = alerting
        .list_alerts(&v1::ListAlertsRequest::default(), &Scope::default())
        .await
        .unwrap()
        .alerts;
    assert!(open.is_empty(), "{open:?}");
    let rows = alerting
        .list_notifications(&v1::ListNotificationsRequest::default(), &Scope::default())
        .await
        .unwrap()
        .notifications;
    assert_eq!(rows.len(), 2);
}

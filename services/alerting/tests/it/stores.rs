//! The contract of the store traits, written once against [`Stores`] so
//! every backend runs the same checks: each case is a test on a fresh
//! PostgreSQL database (`stores::pg::…`) and one on a fresh SQLite file
//! (`stores::sqlite::…`).

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use netward_alerting::notify::{AlertPayload, ListFilter, Measurement, NotificationEvent};
use netward_alerting::store::{
    AlertNotification, AlertWrite, Attempt, CurrentInterface, DeliveryState, InterfaceMemory,
    InterfaceRollup, InterfaceSampleRow, NewNotification, NotifyWhen, PgStore, SilenceRow,
    SnmpBatch, SnmpDeviceWrite, SqliteStore, Stores,
};
use netward_shared::proto::v1;
use netward_shared::status::{DbErrorKind, classify_sqlx};
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

fn ts(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// Microseconds: what every backend keeps of an instant.
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap()
}

fn rule(name: &str, kind: v1::RuleKind) -> v1::Rule {
    v1::Rule {
        id: Uuid::new_v4().to_string(),
        name: name.into(),
        kind: kind as i32,
        ..Default::default()
    }
}

fn notification(alert: &v1::Alert, event: NotificationEvent) -> NewNotification {
    let alert_id = Uuid::parse_str(&alert.id).unwrap();
    NewNotification {
        alert_id,
        event,
        payload: AlertPayload {
            alert_id,
            rule_name: "device down".into(),
            rule_kind: "DEVICE_DOWN".into(),
            severity: "critical".into(),
            state: event,
            device_id: Uuid::parse_str(&alert.device_id).unwrap(),
            device_name: "atm-0042".into(),
            ip: "10.20.0.42".into(),
            site: "Rustaveli".into(),
            region: "Tbilisi".into(),
            parent_device_name: None,
            summary: alert.summary.clone(),
            started_at: now(),
            resolved_at: None,
            measurement: Measurement::default(),
            suppressed_reason: None,
            labels: BTreeMap::new(),
        },
        channels: vec![("noc".into(), v1::ChannelKind::Webhook)],
    }
}

/// Rules, alerts and the notifications their changes write.
pub async fn alert_store(stores: &Stores) {
    let alerts = &stores.alerts;
    let builtin = rule("device down", v1::RuleKind::DeviceDown);
    alerts.seed_rule(&builtin).await.unwrap();
    // Seeding again (another instance starting) changes nothing.
    alerts.seed_rule(&builtin).await.unwrap();
    assert_eq!(
        alerts.builtin_rules().await.unwrap(),
        [(v1::RuleKind::DeviceDown as i32, "device down".to_string())]
    );
    let mut user = rule("latency", v1::RuleKind::HighLatency);
    alerts.insert_rule(&user).await.unwrap();
    let taken = alerts
        .insert_rule(&rule("latency", v1::RuleKind::HighLatency))
        .await
        .unwrap_err();
    assert!(matches!(
        classify_sqlx(&taken),
        DbErrorKind::UniqueViolation(_)
    ));
    user.name = "a latency".into();
    user.threshold = 150.0;
    alerts.update_rule(&user).await.unwrap();
    let names: Vec<String> = alerts
        .rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a latency", "device down"]);
    let mut upgraded = builtin.clone();
    upgraded.threshold = 3.0;
    alerts.replace_rule_body(&upgraded).await.unwrap();
    alerts
        .delete_rule(Uuid::parse_str(&user.id).unwrap())
        .await
        .unwrap();
    assert_eq!(alerts.rules().await.unwrap(), [upgraded]);

    let mut alert = v1::Alert {
        id: Uuid::new_v4().to_string(),
        rule_id: builtin.id.clone(),
        device_id: Uuid::new_v4().to_string(),
        state: v1::AlertState::Firing as i32,
        severity: v1::Severity::Critical as i32,
        summary: "atm-0042 is down".into(),
        started_at: Some(ts(now())),
        ..Default::default()
    };
    let write = |alert: &v1::Alert, new: bool, when: NotifyWhen, event| AlertWrite {
        alert: alert.clone(),
        new,
        subject: String::new(),
        notify: Some(AlertNotification {
            when,
            notification: notification(alert, event),
        }),
    };
    // A change of suppression before the firing was sent sends it late.
    alerts
        .write_alerts(&[write(
            &alert,
            true,
            NotifyWhen::FiringNotSent,
            NotificationEvent::Firing,
        )])
        .await
        .unwrap();
    assert_eq!(alerts.open_alerts().await.unwrap(), [alert.clone()]);
    assert_eq!(
        stores.notifications.pending_notifications().await.unwrap(),
        1
    );
    alerts
        .write_alerts(&[write(
            &alert,
            false,
            NotifyWhen::FiringNotSent,
            NotificationEvent::Firing,
        )])
        .await
        .unwrap();
    assert_eq!(
        stores.notifications.pending_notifications().await.unwrap(),
        1
    );

    alert.state = v1::AlertState::Acknowledged as i32;
    alert.acknowledged_by = "noc".into();
    alerts.acknowledge_alert(&alert).await.unwrap();
    let id = Uuid::parse_str(&alert.id).unwrap();
    assert_eq!(alerts.alert(id).await.unwrap(), Some(alert.clone()));

    alert.state = v1::AlertState::Resolved as i32;
    alert.resolved_at = Some(ts(now()));
    alerts
        .write_alerts(&[write(
            &alert,
            false,
            NotifyWhen::FiringSent,
            NotificationEvent::Resolved,
        )])
        .await
        .unwrap();
    assert_eq!(
        stores.notifications.pending_notifications().await.unwrap(),
        2
    );
    assert!(alerts.open_alerts().await.unwrap().is_empty());
    assert!(alerts.list_alerts(false, 10).await.unwrap().is_empty());
    assert_eq!(alerts.list_alerts(true, 10).await.unwrap(), [alert.clone()]);
    // A resolved alert is not acknowledged after the fact.
    let mut late = alert.clone();
    late.state = v1::AlertState::Acknowledged as i32;
    alerts.acknowledge_alert(&late).await.unwrap();
    assert_eq!(alerts.alert(id).await.unwrap(), Some(alert));
    assert_eq!(alerts.alert(Uuid::new_v4()).await.unwrap(), None);
}

/// The outbox: claims under a lease, attempts recorded once.
pub async fn notification_store(stores: &Stores) {
    let outbox = &stores.notifications;
    let alert = v1::Alert {
        id: Uuid::new_v4().to_string(),
        device_id: Uuid::new_v4().to_string(),
        summary: "down".into(),
        ..Default::default()
    };
    let alert_id = Uuid::parse_str(&alert.id).unwrap();
    let firing = notification(&alert, NotificationEvent::Firing);
    assert_eq!(outbox.enqueue(&firing).await.unwrap(), 1);
    let resolved = notification(&alert, NotificationEvent::Resolved);
    assert_eq!(outbox.enqueue(&resolved).await.unwrap(), 1);
    assert_eq!(
        outbox.firing_payload(alert_id).await.unwrap(),
        Some(firing.payload.clone())
    );

    let t0 = now() + TimeDelta::seconds(1);
    let lease = t0 + TimeDelta::minutes(1);
    let channels = ["noc".to_string()];
    // Both rows are due; the resolve waits behind nothing (its firing is
    // claimed with it, in order).
    let claimed = outbox.claim_due(t0, &channels, 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed[0].id < claimed[1].id);
    assert_eq!(claimed[0].event, "firing");
    assert_eq!(claimed[0].attempts, 0);
    // Leased: nobody else takes them now.
    assert!(
        outbox
            .claim_due(t0, &channels, 10, lease)
            .await
            .unwrap()
            .is_empty()
    );

    let delivered = Attempt {
        id: claimed[0].id,
        state: DeliveryState::Delivered,
        next_attempt_at: t0,
        last_error: String::new(),
        at: t0,
        lease_until: lease,
    };
    assert!(outbox.record_attempt(&delivered).await.unwrap());
    // Recorded once: the lease is gone with it.
    assert!(!outbox.record_attempt(&delivered).await.unwrap());
    outbox.postpone(claimed[1].id, t0, lease).await.unwrap();
    assert_eq!(outbox.pending_notifications().await.unwrap(), 1);
    let again = outbox.claim_due(t0, &channels, 10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed[1].id);
    let retried = Attempt {
        id: again[0].id,
        state: DeliveryState::Pending,
        next_attempt_at: t0 + TimeDelta::seconds(30),
        last_error: "HTTP 503".into(),
        at: t0,
        lease_until: lease,
    };
    assert!(outbox.record_attempt(&retried).await.unwrap());

    let rows = outbox
        .list_notifications(&ListFilter::default(), 10)
        .await
        .unwrap();
    let states: Vec<v1::NotificationState> = rows.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            v1::NotificationState::Retrying,
            v1::NotificationState::Delivered
        ]
    );
    assert_eq!(rows[0].last_error, "HTTP 503");
    assert_eq!(rows[0].rule_name, "device down");
    let delivered_only = ListFilter {
        states: vec![v1::NotificationState::Delivered],
        ..ListFilter::default()
    };
    let rows = outbox
        .list_notifications(&delivered_only, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].delivered_at, Some(t0));
}

/// Silences: stored, read back, ended.
pub async fn silence_store(stores: &Stores) {
    let silences = &stores.silences;
    let starts_at = now() - TimeDelta::hours(1);
    let row = |maintenance: bool, ends_at: DateTime<Utc>| {
        let id = Uuid::new_v4();
        SilenceRow {
            id,
            maintenance,
            starts_at,
            ends_at: Some(ends_at),
            body: v1::Silence {
                id: id.to_string(),
                maintenance,
                starts_at: Some(ts(starts_at)),
                ends_at: Some(ts(ends_at)),
                ..Default::default()
            },
        }
    };
    let open = row(false, now() + TimeDelta::hours(1));
    let window = row(true, now() + TimeDelta::hours(2));
    silences.insert_silence(&open).await.unwrap();
    silences.insert_silence(&window).await.unwrap();
    assert_eq!(
        silences.silence(open.id).await.unwrap(),
        Some(open.body.clone())
    );
    assert_eq!(silences.unended_silences().await.unwrap().len(), 2);
    let ended_at = now();
    let mut ended = open.body.clone();
    ended.ends_at = Some(ts(ended_at));
    silences
        .end_silence(open.id, ended_at, &ended)
        .await
        .unwrap();
    let later = ended_at + TimeDelta::seconds(1);
    assert_eq!(
        silences.list_silences(false, None, later).await.unwrap(),
        [window.body]
    );
    assert_eq!(
        silences
            .list_silences(true, Some(false), later)
            .await
            .unwrap(),
        [ended]
    );
    assert_eq!(
        silences
            .list_silences(true, None, later)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// SNMP: a batch stored once, the view read back, history from samples
/// and rollups, devices forgotten.
pub async fn snmp_store(stores: &Stores) {
    let snmp = &stores.snmp;
    let device_id = Uuid::new_v4();
    let polled_at = now() - TimeDelta::minutes(1);
    stores
        .results
        .ensure_partitions(&[polled_at.date_naive()])
        .await
        .unwrap();
    let sample = v1::SnmpSample {
        device_id: device_id.to_string(),
        outcome: v1::SnmpOutcome::Ok as i32,
        sys_uptime_ticks: Some(1000),
        error_detail: "partial walk".into(),
        profile: "generic".into(),
        ..Default::default()
    };
    let samples = [(device_id, polled_at, &sample)];
    let status = v1::InterfaceStatus {
        if_index: 3,
        if_name: "Gi0/3".into(),
        oper_status: v1::IfOperStatus::Up as i32,
        in_bps: Some(1000.0),
        out_bps: Some(2000.0),
        ..Default::default()
    };
    let interface_samples = [InterfaceSampleRow {
        device_id,
        if_index: 3,
        polled_at,
        admin_status: 1,
        oper_status: v1::IfOperStatus::Up as i32,
        speed_bps: Some(1_000_000_000),
        hc: true,
        in_octets: Some(u64::MAX),
        out_octets: Some(1),
        in_errors: None,
        out_errors: None,
        rates: [
            Some(1000.0),
            Some(2000.0),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ],
        deltas: [Some(2), None, None, None],
        discontinuity: 0,
    }];
    let hour = polled_at.duration_trunc(TimeDelta::hours(1)).unwrap();
    let rollups = [InterfaceRollup {
        device_id,
        if_index: 3,
        hour,
        samples: 1,
        oper_up: 1,
        rate_samples: 1,
        in_sum: 1000.0,
        in_max: Some(1000.0),
        out_sum: 2000.0,
        out_max: Some(2000.0),
        deltas: [2, 0, 0, 0],
        ..Default::default()
    }];
    let memory = InterfaceMemory {
        polled_at_us: polled_at.timestamp_micros(),
        uptime_ticks: Some(1000),
        oper_changes_us: vec![polled_at.timestamp_micros()],
    };
    let interfaces = [CurrentInterface {
        device_id,
        if_index: 3,
        status: status.clone(),
        sample: v1::InterfaceSample {
            if_index: 3,
            in_octets: Some(u64::MAX),
            ..Default::default()
        },
        memory: memory.clone(),
    }];
    let devices = [SnmpDeviceWrite {
        device_id,
        polled_at,
        uptime_ticks: Some(1000),
        last_reboot_at: None,
        outcome: v1::SnmpOutcome::Ok as i32,
        sys_object_id: "1.3.6.1.4.1.9".into(),
        profile: "generic".into(),
    }];
    let batch = SnmpBatch {
        batch_uid: "snmp-1",
        executor_id: "poller",
        samples: &samples,
        interface_samples: &interface_samples,
        rollups: &rollups,
        interfaces: &interfaces,
        devices: &devices,
    };
    assert!(snmp.store_snmp_batch(batch).await.unwrap());
    assert!(!snmp.store_snmp_batch(batch).await.unwrap(), "a replay");

    let current = snmp.current_interfaces().await.unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].status, status);
    assert_eq!(current[0].sample.in_octets, Some(u64::MAX));
    assert_eq!(current[0].memory, memory);
    let polls = snmp.snmp_devices().await.unwrap();
    assert_eq!(polls.len(), 1);
    assert_eq!(
        (
            polls[0].polled_at,
            polls[0].uptime_ticks,
            polls[0].detail.as_str()
        ),
        (polled_at, Some(1000), "partial walk")
    );

    let range = (hour, now() + TimeDelta::hours(1));
    let raw = snmp
        .interface_history(device_id, 3, range, 3600, true)
        .await
        .unwrap();
    let rolled = snmp
        .interface_history(device_id, 3, range, 3600, false)
        .await
        .unwrap();
    for points in [&raw, &rolled] {
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].sample_count, 1);
        assert_eq!(points[0].in_bps_max, Some(1000.0));
        assert_eq!(points[0].in_errors, 2);
        assert_eq!(points[0].oper_up_percent, 100.0);
    }

    snmp.forget_snmp_devices(&[device_id]).await.unwrap();
    assert!(snmp.current_interfaces().await.unwrap().is_empty());
    assert!(snmp.snmp_devices().await.unwrap().is_empty());
}

/// Stores on a fresh database, dropped (PostgreSQL) or deleted (SQLite)
/// with it.
pub struct Backend {
    pub stores: Stores,
    _database: Option<TestDatabase>,
    file: Option<std::path::PathBuf>,
}

impl Backend {
    pub async fn postgres() -> Backend {
        let database = TestDatabase::create().await.unwrap();
        let stores = Stores::postgres(PgStore::connect(database.url()).await.unwrap());
        Backend {
            stores,
            _database: Some(database),
            file: None,
        }
    }

    pub async fn sqlite() -> Backend {
        let file = std::env::temp_dir().join(format!(
            "netward-alerting-stores-{}.db",
            Uuid::new_v4().simple()
        ));
        let url = format!("sqlite://{}", file.display());
        let stores = Stores::sqlite(SqliteStore::connect(&url).await.unwrap());
        Backend {
            stores,
            _database: None,
            file: Some(file),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// Each case, as a test on PostgreSQL (`stores::pg::…`) and one on SQLite
/// (`stores::sqlite::…`).
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::postgres().await;
                    super::$case(&backend.stores).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::sqlite().await;
                    super::$case(&backend.stores).await;
                }
            )*
        }
    };
}

on_both_backends!(alert_store, notification_store, silence_store, snmp_store);

//! The contract of the store traits, written once against [`Stores`] so
//! every backend runs the same checks: each case is a test on a fresh
//! PostgreSQL database (`stores::pg::…`) and one on a fresh SQLite file
//! (`stores::sqlite::…`).

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use netward_alerting::notify::{AlertPayload, ListFilter, Measurement, NotificationEvent};
use netward_alerting::rollup::Roller;
use netward_alerting::store::{
    AlertNotification, AlertWrite, Attempt, CurrentInterface, DeliveryState, InterfaceMemory,
    InterfaceSampleRow, NewNotification, NotifyWhen, PgStore, PollRow, SilenceRow, SnmpBatch,
    SnmpDeviceWrite, SqliteStore, Stores,
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

/// SNMP: a batch stored once, the view read back, history from the raw
/// poll and from its hour once rolled, devices forgotten.
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
    let status = v1::InterfaceStatus {
        if_index: 3,
        if_name: "Gi0/3".into(),
        oper_status: v1::IfOperStatus::Up as i32,
        in_bps: Some(1000.0),
        out_bps: Some(2000.0),
        ..Default::default()
    };
    let polls = [PollRow {
        device_id,
        polled_at,
        sample: &sample,
        interfaces: vec![InterfaceSampleRow {
            speed_bps: Some(1_000_000_000),
            deltas: [Some(2), Some(0), Some(0), Some(0)],
            ..InterfaceSampleRow::of(&status, [None; 4], 0)
        }],
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
        detail: "partial walk".into(),
        sys_object_id: "1.3.6.1.4.1.9".into(),
        profile: "generic".into(),
    }];
    let batch = SnmpBatch {
        batch_uid: "snmp-1",
        executor_id: "poller",
        polls: &polls,
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
    let polled = snmp.snmp_devices().await.unwrap();
    assert_eq!(polled.len(), 1);
    assert_eq!(
        (
            polled[0].polled_at,
            polled[0].uptime_ticks,
            polled[0].detail.as_str()
        ),
        (polled_at, Some(1000), "partial walk")
    );

    let hour = polled_at.duration_trunc(TimeDelta::hours(1)).unwrap();
    let range = (hour, now() + TimeDelta::hours(1));
    let raw = snmp
        .interface_history(device_id, 3, range, 3600, true)
        .await
        .unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].sample_count, 1);
    assert_eq!(raw[0].in_bps_max, Some(1000.0));
    assert_eq!(raw[0].in_bps_avg, Some(1000.0));
    assert_eq!(raw[0].in_errors, 2);
    assert_eq!(raw[0].oper_up_percent, 100.0);
    // Rolled once its day has closed: the hour answers the same.
    let rolled = Roller::new(stores.results.clone())
        .with_snmp(snmp.clone())
        .run(now() + TimeDelta::days(2))
        .await
        .unwrap();
    assert!(rolled.interface_days >= 1, "{rolled:?}");
    let hourly = snmp
        .interface_history(device_id, 3, range, 3600, false)
        .await
        .unwrap();
    assert_eq!(hourly, raw);

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

on_both_backends!(
    alert_store,
    notification_store,
    silence_store,
    snmp_store,
    one_alert_is_open_per_rule_device_and_subject,
    notifications_follow_when_the_firing_was_sent,
    retries_wait_their_turn_and_given_up_rows_leave_the_pending,
    concurrent_claims_never_take_the_same_row,
    notifications_are_listed_by_alert_channel_state_and_page,
    silences_expire_by_their_end_and_windows_without_one_stay,
    snmp_hours_merge_current_views_move_on_and_counters_keep_their_bits,
);

fn firing_alert(rule_id: &str, device_id: Uuid, at: DateTime<Utc>) -> v1::Alert {
    v1::Alert {
        id: Uuid::new_v4().to_string(),
        rule_id: rule_id.into(),
        device_id: device_id.to_string(),
        state: v1::AlertState::Firing as i32,
        severity: v1::Severity::Critical as i32,
        summary: "down".into(),
        started_at: Some(ts(at)),
        ..Default::default()
    }
}

fn new_alert(alert: &v1::Alert, subject: &str) -> AlertWrite {
    AlertWrite {
        alert: alert.clone(),
        new: true,
        subject: subject.into(),
        notify: Some(AlertNotification {
            when: NotifyWhen::Always,
            notification: notification(alert, NotificationEvent::Firing),
        }),
    }
}

/// The database keeps one open alert per (rule, device, subject): a second
/// fails the whole write (its notification too), a resolved one frees the
/// key, another subject is another alert.
pub async fn one_alert_is_open_per_rule_device_and_subject(stores: &Stores) {
    let alerts = &stores.alerts;
    let rule_id = Uuid::new_v4().to_string();
    let device = Uuid::new_v4();
    let t0 = now() - TimeDelta::minutes(10);
    let mut first = firing_alert(&rule_id, device, t0);
    alerts.write_alerts(&[new_alert(&first, "")]).await.unwrap();

    let twin = firing_alert(&rule_id, device, t0 + TimeDelta::minutes(1));
    let other = firing_alert(&rule_id, device, t0 + TimeDelta::minutes(2));
    let error = alerts
        .write_alerts(&[new_alert(&other, "3"), new_alert(&twin, "")])
        .await
        .unwrap_err();
    assert!(
        matches!(classify_sqlx(&error), DbErrorKind::UniqueViolation(_)),
        "{error:?}"
    );
    assert_eq!(alerts.open_alerts().await.unwrap(), [first.clone()]);
    assert_eq!(
        stores.notifications.pending_notifications().await.unwrap(),
        1,
        "all or nothing"
    );

    // Another subject (an interface) is another alert; newest first.
    alerts
        .write_alerts(&[new_alert(&other, "3")])
        .await
        .unwrap();
    first.state = v1::AlertState::Resolved as i32;
    first.resolved_at = Some(ts(t0 + TimeDelta::minutes(3)));
    let resolve = AlertWrite {
        alert: first.clone(),
        new: false,
        subject: String::new(),
        notify: None,
    };
    alerts.write_alerts(&[resolve]).await.unwrap();
    let again = firing_alert(&rule_id, device, t0 + TimeDelta::minutes(4));
    alerts.write_alerts(&[new_alert(&again, "")]).await.unwrap();
    assert_eq!(
        alerts.list_alerts(false, 10).await.unwrap(),
        [again.clone(), other.clone()]
    );
    assert_eq!(
        alerts.list_alerts(true, 10).await.unwrap(),
        [again.clone(), other, first]
    );
    assert_eq!(alerts.list_alerts(true, 1).await.unwrap(), [again]);
}

/// A resolve is announced only after its firing; a change of suppression
/// sends the firing late, once.
pub async fn notifications_follow_when_the_firing_was_sent(stores: &Stores) {
    let alerts = &stores.alerts;
    let mut alert = firing_alert(&Uuid::new_v4().to_string(), Uuid::new_v4(), now());
    let alert_id = Uuid::parse_str(&alert.id).unwrap();
    // Born suppressed: no notification.
    let suppressed = AlertWrite {
        alert: alert.clone(),
        new: true,
        subject: String::new(),
        notify: None,
    };
    alerts.write_alerts(&[suppressed]).await.unwrap();
    let change = |alert: &v1::Alert, when, event| AlertWrite {
        alert: alert.clone(),
        new: false,
        subject: String::new(),
        notify: Some(AlertNotification {
            when,
            notification: notification(alert, event),
        }),
    };
    let pending = || async { stores.notifications.pending_notifications().await.unwrap() };
    // A resolve of an alert never announced stays quiet.
    alerts
        .write_alerts(&[change(
            &alert,
            NotifyWhen::FiringSent,
            NotificationEvent::Resolved,
        )])
        .await
        .unwrap();
    assert_eq!(pending().await, 0);
    assert_eq!(
        stores.notifications.firing_payload(alert_id).await.unwrap(),
        None
    );
    // Unsuppressed: the firing goes out late, once.
    for _ in 0..2 {
        alerts
            .write_alerts(&[change(
                &alert,
                NotifyWhen::FiringNotSent,
                NotificationEvent::Firing,
            )])
            .await
            .unwrap();
        assert_eq!(pending().await, 1);
    }
    assert!(
        stores
            .notifications
            .firing_payload(alert_id)
            .await
            .unwrap()
            .is_some()
    );
    alert.state = v1::AlertState::Resolved as i32;
    alert.resolved_at = Some(ts(now()));
    alerts
        .write_alerts(&[change(
            &alert,
            NotifyWhen::FiringSent,
            NotificationEvent::Resolved,
        )])
        .await
        .unwrap();
    assert_eq!(pending().await, 2);
    let events: Vec<NotificationEvent> = stores
        .notifications
        .list_notifications(&ListFilter::default(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.event)
        .collect();
    assert_eq!(
        events,
        [NotificationEvent::Resolved, NotificationEvent::Firing]
    );
}

fn attempt(
    id: i64,
    state: DeliveryState,
    next: DateTime<Utc>,
    at: DateTime<Utc>,
    lease: DateTime<Utc>,
) -> Attempt {
    Attempt {
        id,
        state,
        next_attempt_at: next,
        last_error: if state == DeliveryState::Delivered {
            String::new()
        } else {
            "connection refused".into()
        },
        at,
        lease_until: lease,
    }
}

/// A row backing off holds back the younger rows of its (alert, channel)
/// but not other alerts' or channels'; a row given up is no longer pending
/// and never claimed again; only the channels asked for are claimed.
pub async fn retries_wait_their_turn_and_given_up_rows_leave_the_pending(stores: &Stores) {
    let outbox = &stores.notifications;
    let alert = firing_alert("", Uuid::new_v4(), now());
    let other = firing_alert("", Uuid::new_v4(), now());
    let mut firing = notification(&alert, NotificationEvent::Firing);
    firing
        .channels
        .push(("pager".into(), v1::ChannelKind::Alertmanager));
    assert_eq!(outbox.enqueue(&firing).await.unwrap(), 2);
    outbox
        .enqueue(&notification(&alert, NotificationEvent::Resolved))
        .await
        .unwrap();
    outbox
        .enqueue(&notification(&other, NotificationEvent::Firing))
        .await
        .unwrap();
    assert_eq!(outbox.pending_notifications().await.unwrap(), 4);

    let noc = ["noc".to_string()];
    let t0 = now() + TimeDelta::seconds(1);
    let lease = t0 + TimeDelta::minutes(1);
    // One at a time: the limit holds, in id order.
    let first = outbox.claim_due(t0, &noc, 1, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].alert_id, Uuid::parse_str(&alert.id).unwrap());
    assert_eq!(first[0].channel, "noc");
    assert_eq!(first[0].payload["rule_name"], "device down");
    // Its firing is leased: the resolve waits, the other alert does not.
    let next = outbox.claim_due(t0, &noc, 10, lease).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].alert_id, Uuid::parse_str(&other.id).unwrap());
    outbox.postpone(next[0].id, t0, lease).await.unwrap();

    // The firing fails: backing off 30 s, the resolve still waits.
    let retry_at = t0 + TimeDelta::seconds(30);
    assert!(
        outbox
            .record_attempt(&attempt(
                first[0].id,
                DeliveryState::Pending,
                retry_at,
                t0,
                lease
            ))
            .await
            .unwrap()
    );
    let claimed = outbox.claim_due(t0, &noc, 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the other alert's row");
    assert_eq!(claimed[0].id, next[0].id);
    assert!(
        outbox
            .record_attempt(&attempt(
                claimed[0].id,
                DeliveryState::Delivered,
                t0,
                t0,
                lease
            ))
            .await
            .unwrap()
    );

    // Due again: the firing comes back with its attempt counted, then is
    // given up for good; the resolve follows.
    let t1 = retry_at + TimeDelta::seconds(1);
    let lease1 = t1 + TimeDelta::minutes(1);
    let again = outbox.claim_due(t1, &noc, 10, lease1).await.unwrap();
    assert_eq!(again.len(), 2, "the firing and, behind it, the resolve");
    assert_eq!((again[0].id, again[0].attempts), (first[0].id, 1));
    assert_eq!(again[1].event, "resolved");
    assert!(
        outbox
            .record_attempt(&attempt(again[0].id, DeliveryState::Failed, t1, t1, lease1))
            .await
            .unwrap()
    );
    // An attempt under an expired lease is not recorded.
    assert!(
        !outbox
            .record_attempt(&attempt(
                again[1].id,
                DeliveryState::Delivered,
                t1,
                t1,
                lease
            ))
            .await
            .unwrap()
    );
    // Given up: not pending; the other channel's row and the resolve are.
    assert_eq!(outbox.pending_notifications().await.unwrap(), 2);
    let t2 = lease1 + TimeDelta::seconds(1);
    let later = outbox
        .claim_due(t2, &noc, 10, t2 + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].event, "resolved");
    let pager = outbox
        .claim_due(t2, &["pager".to_string()], 10, t2 + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(pager.len(), 1);
    assert_eq!(pager[0].channel, "pager");
    let failed = ListFilter {
        states: vec![v1::NotificationState::Failed],
        ..ListFilter::default()
    };
    let rows = outbox.list_notifications(&failed, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].attempts), (first[0].id, 2));
    assert_eq!(rows[0].last_error, "connection refused");
    assert_eq!(rows[0].delivered_at, None);
}

/// Claims running at once (instances sharing the database) split the due
/// rows between them: each row is taken once.
pub async fn concurrent_claims_never_take_the_same_row(stores: &Stores) {
    let outbox = stores.notifications.clone();
    for _ in 0..40 {
        let alert = firing_alert("", Uuid::new_v4(), now());
        outbox
            .enqueue(&notification(&alert, NotificationEvent::Firing))
            .await
            .unwrap();
    }
    let t0 = now() + TimeDelta::seconds(1);
    let lease = t0 + TimeDelta::minutes(1);
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let claimed = outbox
                        .claim_due(t0, &["noc".to_string()], 3, lease)
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return ids;
                    }
                    ids.extend(claimed.into_iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    for claim in claims {
        ids.extend(claim.await.unwrap());
    }
    let taken = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((taken, ids.len()), (40, 40));
}

/// ListNotifications' filters: state (retrying is pending with attempts),
/// alert, channel, and the page before an id, newest first.
pub async fn notifications_are_listed_by_alert_channel_state_and_page(stores: &Stores) {
    let outbox = &stores.notifications;
    let alert = firing_alert("", Uuid::new_v4(), now());
    let other = firing_alert("", Uuid::new_v4(), now());
    let mut firing = notification(&alert, NotificationEvent::Firing);
    firing
        .channels
        .push(("pager".into(), v1::ChannelKind::Alertmanager));
    outbox.enqueue(&firing).await.unwrap();
    outbox
        .enqueue(&notification(&other, NotificationEvent::Firing))
        .await
        .unwrap();
    let all = outbox
        .list_notifications(&ListFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(
        all.iter()
            .all(|r| r.state == v1::NotificationState::Pending)
    );
    assert_eq!(all[0].device_id, other.device_id);
    assert_eq!(all[1].channel_kind, v1::ChannelKind::Alertmanager);

    let t0 = now() + TimeDelta::seconds(1);
    let lease = t0 + TimeDelta::minutes(1);
    let claimed = outbox
        .claim_due(t0, &["pager".to_string()], 10, lease)
        .await
        .unwrap();
    outbox
        .record_attempt(&attempt(
            claimed[0].id,
            DeliveryState::Pending,
            t0 + TimeDelta::seconds(30),
            t0,
            lease,
        ))
        .await
        .unwrap();
    let filter = |states: Vec<v1::NotificationState>,
                  alert_id: Option<&v1::Alert>,
                  channel: Option<&str>,
                  before_id: Option<i64>| ListFilter {
        states,
        alert_id: alert_id.map(|a| Uuid::parse_str(&a.id).unwrap()),
        channel: channel.map(str::to_string),
        before_id,
        limit: 0,
    };
    let ids = |rows: Vec<netward_alerting::notify::OutboxRow>| -> Vec<i64> {
        rows.into_iter().map(|r| r.id).collect()
    };
    let retrying = outbox
        .list_notifications(
            &filter(vec![v1::NotificationState::Retrying], None, None, None),
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(retrying), [claimed[0].id]);
    let pending = outbox
        .list_notifications(
            &filter(vec![v1::NotificationState::Pending], None, None, None),
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(pending), [all[0].id, all[2].id]);
    let by_alert = outbox
        .list_notifications(&filter(vec![], Some(&alert), None, None), 10)
        .await
        .unwrap();
    assert_eq!(ids(by_alert), [all[1].id, all[2].id]);
    let by_channel = outbox
        .list_notifications(&filter(vec![], None, Some("noc"), None), 10)
        .await
        .unwrap();
    assert_eq!(ids(by_channel), [all[0].id, all[2].id]);
    let page = outbox
        .list_notifications(&filter(vec![], None, None, Some(all[0].id)), 1)
        .await
        .unwrap();
    assert_eq!(ids(page), [all[1].id]);
}

/// A silence ends by its `ends_at`: unended ones are loaded, ended ones
/// listed only when asked; a weekly window without an end never ends.
pub async fn silences_expire_by_their_end_and_windows_without_one_stay(stores: &Stores) {
    let silences = &stores.silences;
    let t0 = now();
    let row = |maintenance: bool, ends_at: Option<DateTime<Utc>>| {
        let id = Uuid::new_v4();
        SilenceRow {
            id,
            maintenance,
            starts_at: t0 - TimeDelta::hours(2),
            ends_at,
            body: v1::Silence {
                id: id.to_string(),
                maintenance,
                comment: format!("{maintenance} {ends_at:?}"),
                ..Default::default()
            },
        }
    };
    let expired = row(false, Some(t0 - TimeDelta::hours(1)));
    let weekly = row(true, None);
    let soon = row(false, Some(t0 + TimeDelta::seconds(2)));
    for silence in [&expired, &weekly, &soon] {
        silences.insert_silence(silence).await.unwrap();
    }
    let ids = |list: Vec<v1::Silence>| -> Vec<String> {
        let mut ids: Vec<String> = list.into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        ids(silences.unended_silences().await.unwrap()),
        sorted(vec![weekly.body.id.clone(), soon.body.id.clone()])
    );
    // Listed at an instant past `soon`'s end: only the window stays.
    let later = t0 + TimeDelta::seconds(3);
    assert_eq!(
        silences.list_silences(false, None, later).await.unwrap(),
        std::slice::from_ref(&weekly.body)
    );
    // Newest first, filtered by kind.
    assert_eq!(
        silences
            .list_silences(true, Some(false), later)
            .await
            .unwrap(),
        [soon.body.clone(), expired.body.clone()]
    );
    assert_eq!(
        silences
            .list_silences(true, Some(true), later)
            .await
            .unwrap(),
        std::slice::from_ref(&weekly.body)
    );
    assert_eq!(silences.silence(Uuid::new_v4()).await.unwrap(), None);
    // Ending the window: it is gone from the unended ones.
    let mut ended = weekly.body.clone();
    ended.ends_at = Some(ts(t0 - TimeDelta::seconds(1)));
    silences
        .end_silence(weekly.id, t0 - TimeDelta::seconds(1), &ended)
        .await
        .unwrap();
    assert_eq!(
        ids(silences.unended_silences().await.unwrap()),
        std::slice::from_ref(&soon.body.id)
    );
    assert_eq!(silences.silence(weekly.id).await.unwrap(), Some(ended));
}

fn interface_row(in_bps: u64, up: bool) -> InterfaceSampleRow {
    InterfaceSampleRow {
        if_index: 7,
        admin_status: 1,
        oper_status: if up { 1 } else { 2 },
        speed_bps: Some(u64::MAX),
        discontinuity: 0,
        in_bps: Some(in_bps),
        out_bps: Some(in_bps / 2),
        in_utilisation: None,
        out_utilisation: up.then_some(500),
        deltas: [Some(1), Some(2), None, Some(4)],
    }
}

/// Two polls in one hour: the hour's rollup adds them up (sums, peaks,
/// counts), raw history gives each poll per minute and the same sums per
/// hour, the current view and the device's last poll move on (an empty
/// sysObjectID keeps the stored one), and 64-bit counters come back bit
/// for bit.
pub async fn snmp_hours_merge_current_views_move_on_and_counters_keep_their_bits(stores: &Stores) {
    let snmp = &stores.snmp;
    let device_id = Uuid::new_v4();
    let hour = (now() - TimeDelta::days(1))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    stores
        .results
        .ensure_partitions(&[hour.date_naive()])
        .await
        .unwrap();
    let polls = [
        (
            hour + TimeDelta::minutes(1),
            1000,
            true,
            "1.3.6.1.4.1.9",
            Some(100),
        ),
        (hour + TimeDelta::minutes(2), 3000, false, "", None),
    ];
    for (n, (at, in_bps, up, sys_object_id, reboot)) in polls.into_iter().enumerate() {
        let sample = v1::SnmpSample {
            device_id: device_id.to_string(),
            outcome: v1::SnmpOutcome::Ok as i32,
            sys_uptime_ticks: Some(100 + n as u32),
            error_detail: format!("poll {n}"),
            ..Default::default()
        };
        let rows = [PollRow {
            device_id,
            polled_at: at,
            sample: &sample,
            interfaces: vec![interface_row(in_bps, up)],
        }];
        let status = v1::InterfaceStatus {
            if_index: 7,
            if_name: format!("Gi0/7 poll {n}"),
            in_bps: Some(in_bps as f64),
            ..Default::default()
        };
        let memory = InterfaceMemory {
            polled_at_us: at.timestamp_micros(),
            uptime_ticks: Some(100 + n as u32),
            oper_changes_us: (0..=n as i64).collect(),
        };
        let interfaces = [CurrentInterface {
            device_id,
            if_index: 7,
            status,
            sample: v1::InterfaceSample {
                if_index: 7,
                in_octets: Some(u64::MAX - n as u64),
                ..Default::default()
            },
            memory,
        }];
        let devices = [SnmpDeviceWrite {
            device_id,
            polled_at: at,
            uptime_ticks: Some(100 + n as u32),
            last_reboot_at: reboot.map(|s| hour + TimeDelta::seconds(s)),
            outcome: v1::SnmpOutcome::Ok as i32,
            detail: sample.error_detail.clone(),
            sys_object_id: sys_object_id.into(),
            profile: String::new(),
        }];
        let uid = format!("snmp-{device_id}-{n}");
        let batch = SnmpBatch {
            batch_uid: &uid,
            executor_id: "poller",
            polls: &rows,
            interfaces: &interfaces,
            devices: &devices,
        };
        assert!(snmp.store_snmp_batch(batch).await.unwrap());
    }

    let current = snmp.current_interfaces().await.unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].status.if_name, "Gi0/7 poll 1");
    assert_eq!(current[0].sample.in_octets, Some(u64::MAX - 1));
    assert_eq!(current[0].memory.oper_changes_us, [0, 1]);
    let devices = snmp.snmp_devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    let device = &devices[0];
    assert_eq!(
        (
            device.polled_at,
            device.uptime_ticks,
            device.last_reboot_at,
            device.detail.as_str()
        ),
        (polls[1].0, Some(101), None, "poll 1")
    );

    let range = (hour, hour + TimeDelta::hours(1));
    Roller::new(stores.results.clone())
        .with_snmp(snmp.clone())
        .run(now() + TimeDelta::days(1))
        .await
        .unwrap();
    let rolled = snmp
        .interface_history(device_id, 7, range, 3600, false)
        .await
        .unwrap();
    assert_eq!(rolled.len(), 1);
    let point = &rolled[0];
    assert_eq!(point.time, Some(ts(hour)));
    assert_eq!(point.sample_count, 2);
    assert_eq!(point.in_bps_avg, Some(2000.0));
    assert_eq!(point.in_bps_max, Some(3000.0));
    assert_eq!(point.out_bps_max, Some(1500.0));
    assert_eq!(
        point.out_utilisation_max_percent,
        Some(5.0),
        "a peak outlives a poll without one"
    );
    assert_eq!(point.in_utilisation_max_percent, None);
    assert_eq!(
        (
            point.in_errors,
            point.out_errors,
            point.in_discards,
            point.out_discards
        ),
        (2, 4, 0, 8)
    );
    assert_eq!(point.oper_up_percent, 50.0);

    // Raw, per minute: one point per poll.
    let raw = snmp
        .interface_history(device_id, 7, range, 60, true)
        .await
        .unwrap();
    let times: Vec<_> = raw.iter().map(|p| p.time).collect();
    assert_eq!(times, [Some(ts(polls[0].0)), Some(ts(polls[1].0))]);
    assert_eq!(raw[1].in_bps_avg, Some(3000.0));
    assert_eq!(raw[1].out_utilisation_max_percent, None);
    assert_eq!(
        (raw[1].in_errors, raw[1].in_discards, raw[1].out_discards),
        (1, 0, 4)
    );
    assert_eq!(
        (raw[0].oper_up_percent, raw[1].oper_up_percent),
        (100.0, 0.0)
    );
    // Per hour from the raw polls: what the rollup says.
    let raw_hour = snmp
        .interface_history(device_id, 7, range, 3600, true)
        .await
        .unwrap();
    assert_eq!(raw_hour, rolled);
    // Another interface: nothing.
    assert!(
        snmp.interface_history(device_id, 8, range, 3600, true)
            .await
            .unwrap()
            .is_empty()
    );
}

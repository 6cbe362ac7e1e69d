//! SNMP samples through the real ingest path into real PostgreSQL: a 32-bit
//! counter wrap gives the right rate (no spike), a reboot (sysUpTime went
//! back) gives no rate and is remembered, a replayed batch is stored once,
//! the ISP uplink is classified from its ifAlias, the current view survives
//! a restart (its rates exactly with the checkpoint, the first one skipped
//! without), and interface history sums the stored polls (a row each).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use netward_alerting::ingest::Ingestor;
use netward_alerting::snmp::book::SnmpBook;
use netward_alerting::snmp::classify::{Classifier, InterfacesConfig};
use netward_alerting::snmp::rates::RateConfig;
use netward_alerting::store::PgStore;
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

const DEVICE: Uuid = Uuid::from_u128(0x5e_0001);

pub(crate) fn sample(at: DateTime<Utc>, uptime_ticks: u32, in_octets: u64) -> v1::SnmpSample {
    v1::SnmpSample {
        device_id: DEVICE.to_string(),
        address: "127.0.0.1".into(),
        cycle_id: 1,
        polled_at: Some(SystemTime::from(at).into()),
        sys_uptime_ticks: Some(uptime_ticks),
        outcome: v1::SnmpOutcome::Ok as i32,
        profile: "interfaces".into(),
        values: vec![v1::ScalarValue {
            oid: "1.3.6.1.2.1.25.3.3.1.2.196608".into(),
            name: "hrProcessorLoad".into(),
            instance: "196608".into(),
            value: Some(v1::scalar_value::Value::Integer(12)),
            ..Default::default()
        }],
        interfaces: vec![v1::InterfaceSample {
            if_index: 2,
            if_name: "Gi0/0/1".into(),
            if_alias: "ISP1 Magti 100M".into(),
            admin_status: v1::IfAdminStatus::Up as i32,
            oper_status: v1::IfOperStatus::Up as i32,
            speed_bps: Some(100_000_000),
            hc: false,
            in_octets: Some(in_octets),
            out_octets: Some(1000),
            in_errors: Some(0),
            out_errors: Some(0),
            labels_refreshed: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn batch(samples: Vec<v1::SnmpSample>) -> v1::ResultBatch {
    v1::ResultBatch {
        executor_id: "snmp-test".into(),
        kind: v1::ExecutorKind::Snmp as i32,
        batch_uid: Uuid::new_v4().to_string(),
        samples,
        ..Default::default()
    }
}

async fn open(database: &TestDatabase) -> (Ingestor, Arc<SnmpBook>) {
    let store = Arc::new(PgStore::connect(database.url()).await.unwrap());
    let book = Arc::new(
        SnmpBook::load(
            store.clone(),
            Classifier::new(&InterfacesConfig::default()).unwrap(),
            RateConfig::default(),
            Default::default(),
        )
        .await
        .unwrap(),
    );
    let ingestor = Ingestor::new(
        store,
        Duration::from_secs(7 * 86_400),
        (
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
    )
    .with_snmp(book.clone());
    ingestor.maintain(Utc::now()).await.unwrap();
    (ingestor, book)
}

#[tokio::test]
async fn wraps_reboots_and_replays_of_interface_counters() {
    let database = TestDatabase::create().await.unwrap();
    let (ingestor, book) = open(&database).await;
    // Microseconds: PostgreSQL's precision, so instants read back equal.
    let t0 = (Utc::now() - TimeDelta::minutes(3)).trunc_subsecs(6);
    let t1 = t0 + TimeDelta::seconds(60);
    let t2 = t1 + TimeDelta::seconds(60);

    // First poll: a base, no rate yet; the uplink is classified.
    let first = ingestor
        .ingest(&batch(vec![sample(t0, 100_000, 4_294_967_000)]), Utc::now())
        .await
        .unwrap();
    assert_eq!(first.snmp.samples, 1);
    let status = &first.snmp.interfaces[0].status;
    assert_eq!(status.role, v1::InterfaceRole::IspUplink as i32);
    assert_eq!(status.isp_name, "Magti");
    assert_eq!(status.in_bps, None);

    // Second poll: the 32-bit counter wrapped: 296 + 1,000 octets in 60 s.
    let wrapped = batch(vec![sample(t1, 106_000, 1_000)]);
    let second = ingestor.ingest(&wrapped, Utc::now()).await.unwrap();
    let status = &second.snmp.interfaces[0].status;
    let in_bps = status.in_bps.unwrap();
    assert!((in_bps - 1296.0 * 8.0 / 60.0).abs() < 0.01, "{in_bps}");
    assert_eq!(
        status.last_discontinuity,
        v1::CounterDiscontinuity::Wrap as i32
    );
    assert_eq!(status.out_bps, Some(0.0));

    // No status changed: the view row still holds the first poll's
    // counters (the checkpoint writes the rest), a poll is a row.
    let base = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (memory ->> 'polled_at_us')::int8 FROM alerting.interfaces",
        )
        .fetch_one(database.pool())
        .await
        .unwrap()
    };
    assert_eq!(base().await, t0.timestamp_micros());

    // The same batch again: acked as a duplicate, nothing stored twice.
    let replay = ingestor.ingest(&wrapped, Utc::now()).await.unwrap();
    assert!(replay.stored.duplicate && replay.snmp.duplicate);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM alerting.snmp_raw")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(rows, 2);

    // Third poll: sysUpTime went back (a reboot 20 s before the poll) and
    // the counter restarted: no rate, the reboot is remembered.
    let third = ingestor
        .ingest(&batch(vec![sample(t2, 2_000, 50_000)]), Utc::now())
        .await
        .unwrap();
    let status = &third.snmp.interfaces[0].status;
    assert_eq!(status.in_bps, None, "no rate across a reboot");
    assert_eq!(
        status.last_discontinuity,
        v1::CounterDiscontinuity::Reboot as i32
    );
    let rebooted = third.snmp.devices[0].last_reboot_at.unwrap();
    assert_eq!(rebooted, t2 - TimeDelta::seconds(20));

    // A restarted alerting continues from the stored view: stopped with
    // its checkpoint, the next rate is computed against the third poll,
    // not from scratch.
    assert_eq!(book.checkpoint().await.unwrap(), 1);
    assert_eq!(base().await, t2.timestamp_micros());
    drop((ingestor, book));
    let (ingestor, book) = open(&database).await;
    let (polled, interfaces) = book.interfaces_of(DEVICE);
    assert_eq!(polled, Some(t2));
    assert_eq!(interfaces[0].if_name, "Gi0/0/1");
    let fourth = ingestor
        .ingest(
            &batch(vec![sample(t2 + TimeDelta::seconds(60), 8_000, 80_000)]),
            Utc::now(),
        )
        .await
        .unwrap();
    let in_bps = fourth.snmp.interfaces[0].status.in_bps.unwrap();
    assert!((in_bps - 30_000.0 * 8.0 / 60.0).abs() < 0.01, "{in_bps}");

    // Stopped without its checkpoint (a crash), it does not know which
    // polls came after the stored counters: the first rate is skipped (a
    // rate against them would count the fourth poll's deltas again), the
    // next is right.
    drop((ingestor, book));
    let (ingestor, book) = open(&database).await;
    let t4 = t2 + TimeDelta::seconds(120);
    let fifth = ingestor
        .ingest(&batch(vec![sample(t4, 14_000, 86_000)]), Utc::now())
        .await
        .unwrap();
    assert_eq!(fifth.snmp.interfaces[0].status.in_bps, None);
    let sixth = ingestor
        .ingest(
            &batch(vec![sample(t4 + TimeDelta::seconds(60), 20_000, 92_000)]),
            Utc::now(),
        )
        .await
        .unwrap();
    let in_bps = sixth.snmp.interfaces[0].status.in_bps.unwrap();
    assert!((in_bps - 6_000.0 * 8.0 / 60.0).abs() < 0.01, "{in_bps}");

    // History: the six polls, of which three have rates (after the wrap,
    // after the clean restart, after the skipped one).
    let (step, points) = book
        .history(
            DEVICE,
            2,
            (
                t0 - TimeDelta::minutes(1),
                Utc::now() + TimeDelta::minutes(10),
            ),
            3600,
        )
        .await
        .unwrap();
    assert_eq!(step, 3600);
    let samples: u32 = points.iter().map(|p| p.sample_count).sum();
    assert_eq!(samples, 6);
    let peak = points
        .iter()
        .filter_map(|p| p.in_bps_max)
        .fold(0.0, f64::max);
    assert!((peak - 4000.0).abs() < 0.01, "{points:?}");
    assert!(points.iter().all(|p| p.oper_up_percent == 100.0));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM alerting.snmp_raw")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(stored, 6);
}

#[tokio::test]
async fn a_batch_with_bad_samples_stores_the_good_ones() {
    let database = TestDatabase::create().await.unwrap();
    let (ingestor, _book) = open(&database).await;
    let mut bad = sample(Utc::now(), 100, 1);
    bad.device_id = "not-a-uuid".into();
    let mixed = batch(vec![bad, sample(Utc::now(), 100, 1)]);
    let stored = ingestor.ingest(&mixed, Utc::now()).await.unwrap();
    assert_eq!((stored.skipped, stored.snmp.samples), (1, 1));
    let both = v1::ResultBatch {
        probes: vec![v1::ProbeResult::default()],
        ..batch(vec![sample(Utc::now(), 100, 1)])
    };
    let rejected = ingestor.ingest(&both, Utc::now()).await;
    assert!(rejected.is_err(), "probes and samples in one batch");
}

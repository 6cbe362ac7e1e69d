//! The store test-suite: every case is written once against
//! `AlertingStore` and run on both backends, a fresh PostgreSQL database
//! (`store::pg::…`) and a fresh SQLite file (`store::sqlite::…`). Rows the
//! trait cannot write (alerts, notifications, silences, old keys) are put in
//! with the same SQL on both, only the parameters differ.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use netward_alerting::AlertingConfig;
use netward_alerting::ingest::Ingestor;
use netward_alerting::retention::{Pruner, Retentions};
use netward_alerting::rollup::Roller;
use netward_alerting::snmp::book::SnmpBook;
use netward_alerting::snmp::classify::{Classifier, InterfacesConfig};
use netward_alerting::snmp::rates::RateConfig;
use netward_alerting::store::{
    AlertingStore, BatchRows, ChangeRow, Cutoffs, HistoryRow, InterfaceSampleRow, PgStore, PollRow,
    ProbeRow, Prunable, Pruned, SnmpBatch, SnmpStore, SqliteStore, StateRow, Stored, Tier,
};
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use uuid::Uuid;

/// Each case, as a test on PostgreSQL and one on SQLite.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&super::Backend::postgres().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&super::Backend::sqlite().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_batch_is_stored_once_and_a_replay_stores_nothing,
    results_stamped_with_the_same_instant_are_all_kept,
    history_answers_the_same_from_raw_results_and_from_each_tier,
    late_results_are_rolled_up_again,
    states_are_upserted_and_transitions_appended,
    forgotten_states_go_and_their_transitions_stay,
    partitions_are_made_ahead_and_raw_days_expire_past_the_retention,
    expire_keeps_the_day_of_its_cutoff,
    state_changes_past_the_retention_go_but_each_device_keeps_its_state_at_the_cutoff,
    resolved_alerts_settled_notifications_and_ended_silences_go_pending_ones_stay,
    pruning_proceeds_in_small_batches,
    idempotency_keys_outlive_raw_results_by_a_day_and_rollups_keep_theirs,
    a_day_of_polls_rolls_into_hours_that_answer_as_the_raw_polls_do,
    a_replayed_snmp_batch_or_poll_stores_nothing,
    late_polls_are_rolled_up_again,
    snmp_polls_and_hours_go_past_their_retentions_by_partition,
);

enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A store on a fresh database, and a pool for the rows the trait does not
/// write. Dropping it drops the database (PostgreSQL) or deletes the file.
struct Backend {
    store: Arc<dyn AlertingStore>,
    snmp: Arc<dyn SnmpStore>,
    pool: Pool,
    _database: Option<TestDatabase>,
    file: Option<std::path::PathBuf>,
}

impl Backend {
    async fn postgres() -> Backend {
        let database = TestDatabase::create().await.unwrap();
        let store = Arc::new(PgStore::connect(database.url()).await.unwrap());
        Backend {
            pool: Pool::Pg(store.pool().clone()),
            snmp: store.clone(),
            store,
            _database: Some(database),
            file: None,
        }
    }

    async fn sqlite() -> Backend {
        let file =
            std::env::temp_dir().join(format!("netward-alerting-{}.db", Uuid::new_v4().simple()));
        let store = Arc::new(
            SqliteStore::connect(&format!("sqlite://{}", file.display()))
                .await
                .unwrap(),
        );
        Backend {
            pool: Pool::Sqlite(store.pool().clone()),
            snmp: store.clone(),
            store,
            _database: None,
            file: Some(file),
        }
    }

    fn store(&self) -> Arc<dyn AlertingStore> {
        self.store.clone()
    }

    async fn count(&self, sql: &str) -> i64 {
        let sql = AssertSqlSafe(sql.to_string());
        match &self.pool {
            Pool::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap()
    }

    async fn uuids(&self, sql: &str) -> Vec<Uuid> {
        let sql = AssertSqlSafe(sql.to_string());
        let mut ids: Vec<Uuid> = match &self.pool {
            Pool::Pg(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap();
        ids.sort();
        ids
    }

    async fn numbers(&self, sql: &str) -> Vec<i64> {
        let sql = AssertSqlSafe(sql.to_string());
        let mut ids: Vec<i64> = match &self.pool {
            Pool::Pg(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap();
        ids.sort();
        ids
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        let sql = AssertSqlSafe(sql.to_string());
        let mut ids: Vec<String> = match &self.pool {
            Pool::Pg(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap();
        ids.sort();
        ids
    }

    /// An alert, resolved (state 3) when `resolved` is given, else firing.
    async fn alert(&self, started: DateTime<Utc>, resolved: Option<DateTime<Utc>>) -> Uuid {
        let id = Uuid::new_v4();
        let state = if resolved.is_some() { 3 } else { 1 };
        let sql = "INSERT INTO alerts (id, rule_id, device_id, state, severity, started_at, \
                       resolved_at, body) VALUES ($1, $2, $3, $4, 3, $5, $6, $7)";
        match &self.pool {
            Pool::Pg(pool) => sqlx::query(sql)
                .bind(id)
                .bind(Uuid::new_v4())
                .bind(Uuid::new_v4())
                .bind(state as i16)
                .bind(started)
                .bind(resolved)
                .bind(Vec::<u8>::new())
                .execute(pool)
                .await
                .map(drop),
            Pool::Sqlite(pool) => sqlx::query(sql)
                .bind(id)
                .bind(Uuid::new_v4())
                .bind(Uuid::new_v4())
                .bind(state)
                .bind(started.timestamp_micros())
                .bind(resolved.map(|t| t.timestamp_micros()))
                .bind(Vec::<u8>::new())
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
        id
    }

    /// An outbox row of `alert` in `state` (1 pending, 2 delivered, 3 failed).
    async fn notification(&self, alert: Uuid, state: i16, created: DateTime<Utc>) -> i64 {
        let sql = "INSERT INTO notification_outbox (alert_id, channel, channel_kind, event, \
                       payload, state, created_at, delivered_at) \
                   VALUES ($1, 'hook', 1, 'firing', $2, $3, $4, $5) RETURNING id";
        let delivered = (state == 2).then_some(created);
        match &self.pool {
            Pool::Pg(pool) => {
                sqlx::query_scalar(sql)
                    .bind(alert)
                    .bind(serde_json::json!({}))
                    .bind(state)
                    .bind(created)
                    .bind(delivered)
                    .fetch_one(pool)
                    .await
            }
            Pool::Sqlite(pool) => {
                sqlx::query_scalar(sql)
                    .bind(alert)
                    .bind("{}")
                    .bind(state)
                    .bind(created.timestamp_micros())
                    .bind(delivered.map(|t| t.timestamp_micros()))
                    .fetch_one(pool)
                    .await
            }
        }
        .unwrap()
    }

    async fn silence(&self, id: Uuid, starts: DateTime<Utc>, ends: Option<DateTime<Utc>>) {
        let sql = "INSERT INTO silences (id, maintenance, starts_at, ends_at, body) \
                   VALUES ($1, false, $2, $3, $4)";
        match &self.pool {
            Pool::Pg(pool) => sqlx::query(sql)
                .bind(id)
                .bind(starts)
                .bind(ends)
                .bind(Vec::<u8>::new())
                .execute(pool)
                .await
                .map(drop),
            Pool::Sqlite(pool) => sqlx::query(sql)
                .bind(id)
                .bind(starts.timestamp_micros())
                .bind(ends.map(|t| t.timestamp_micros()))
                .bind(Vec::<u8>::new())
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
    }

    /// An idempotency key received at `at`.
    async fn key(&self, uid: &str, at: DateTime<Utc>) {
        let sql = "INSERT INTO ingested_batches (batch_uid, executor_id, results, received_at) \
                   VALUES ($1, 'x', 1, $2)";
        match &self.pool {
            Pool::Pg(pool) => sqlx::query(sql)
                .bind(uid)
                .bind(at)
                .execute(pool)
                .await
                .map(drop),
            Pool::Sqlite(pool) => sqlx::query(sql)
                .bind(uid)
                .bind(at.timestamp_micros())
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
    }

    /// The tables of the schema whose names start with `prefix`
    /// (PostgreSQL's partitions; SQLite has none).
    async fn tables(&self, prefix: &str) -> Vec<String> {
        match &self.pool {
            Pool::Pg(pool) => {
                let mut names: Vec<String> = sqlx::query_scalar(
                    "SELECT c.relname::text FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'alerting' AND c.relkind = 'r' AND c.relname LIKE $1",
                )
                .bind(format!("{prefix}%"))
                .fetch_all(pool)
                .await
                .unwrap();
                names.sort();
                names
            }
            Pool::Sqlite(_) => Vec::new(),
        }
    }

    /// A book over the store (interfaces classified by the defaults).
    async fn book(&self) -> SnmpBook {
        SnmpBook::load(
            self.snmp.clone(),
            Classifier::new(&InterfacesConfig::default()).unwrap(),
            RateConfig::default(),
            Default::default(),
        )
        .await
        .unwrap()
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

/// Now, to the second (both backends keep microseconds, chrono nanoseconds).
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
}

fn defaults() -> Retentions {
    AlertingConfig::default().retentions()
}

/// A result of `device` at `at`: `rtt` as (min, avg, max) when it answered.
fn row(device: Uuid, at: DateTime<Utc>, rtt: Option<(u32, u32, u32)>) -> ProbeRow {
    ProbeRow {
        device_id: device,
        probed_at: at,
        result: v1::ProbeResult {
            device_id: device.to_string(),
            cycle_id: 7,
            batch_id: "7-0".into(),
            sent: 3,
            received: if rtt.is_some() { 3 } else { 0 },
            loss_percent: if rtt.is_some() { 0.0 } else { 100.0 },
            rtt_min_us: rtt.map(|r| r.0),
            rtt_avg_us: rtt.map(|r| r.1),
            rtt_max_us: rtt.map(|r| r.2),
            outcome: if rtt.is_some() {
                v1::ProbeOutcome::Ok
            } else {
                v1::ProbeOutcome::Timeout
            } as i32,
            ..Default::default()
        },
    }
}

fn batch<'a>(uid: &'a str, rows: &'a [ProbeRow]) -> BatchRows<'a> {
    BatchRows {
        batch_uid: uid,
        executor_id: "test",
        rows,
    }
}

fn stored(rows: u32) -> Stored {
    Stored {
        rows,
        duplicate: false,
    }
}

const DUPLICATE: Stored = Stored {
    rows: 0,
    duplicate: true,
};

async fn store_rows(backend: &Backend, uid: &str, rows: &[ProbeRow]) -> Stored {
    let store = backend.store();
    let days: Vec<NaiveDate> = rows.iter().map(|r| r.probed_at.date_naive()).collect();
    store.ensure_partitions(&days).await.unwrap();
    store
        .store_probe_batches(&[batch(uid, rows)])
        .await
        .unwrap()[0]
}

fn change(device: Uuid, to: v1::DeviceState, at: DateTime<Utc>) -> ChangeRow {
    ChangeRow {
        device_id: device,
        from: v1::DeviceState::Unknown,
        to,
        maintenance: false,
        reason: "test".into(),
        changed_at: at,
        cycle_id: 0,
        stale: false,
    }
}

async fn changes_of(backend: &Backend, device: Uuid) -> Vec<DateTime<Utc>> {
    let all = backend
        .store()
        .changes(device, DateTime::UNIX_EPOCH, now() + TimeDelta::days(1))
        .await
        .unwrap();
    all.iter().map(|c| c.changed_at).collect()
}

fn pruned(done: &[(Prunable, Pruned)], what: Prunable) -> Pruned {
    done.iter().find(|(w, _)| *w == what).unwrap().1
}

async fn a_batch_is_stored_once_and_a_replay_stores_nothing(backend: &Backend) {
    let store = backend.store();
    let at = now();
    store.ensure_partitions(&[at.date_naive()]).await.unwrap();
    let (a, b, c): (Vec<_>, Vec<_>, Vec<_>) = (
        (0..3)
            .map(|_| row(Uuid::new_v4(), at, Some((1, 2, 3))))
            .collect(),
        (0..2).map(|_| row(Uuid::new_v4(), at, None)).collect(),
        vec![row(Uuid::new_v4(), at, None)],
    );
    let first = store
        .store_probe_batches(&[batch("a", &a), batch("b", &b), batch("empty", &[])])
        .await
        .unwrap();
    assert_eq!(first, vec![stored(3), stored(2), stored(0)]);

    // A replay in a group with a new batch: the replay stores nothing and
    // says so, the new one is stored; and a group of replays only.
    let second = store
        .store_probe_batches(&[batch("a", &a), batch("c", &c)])
        .await
        .unwrap();
    assert_eq!(second, vec![DUPLICATE, stored(1)]);
    let third = store
        .store_probe_batches(&[batch("b", &b), batch("empty", &[])])
        .await
        .unwrap();
    assert_eq!(third, vec![DUPLICATE, DUPLICATE]);

    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        6
    );
    assert_eq!(
        backend.count("SELECT count(*) FROM ingested_batches").await,
        4
    );
    Roller::new(store.clone())
        .run(now() + TimeDelta::days(1))
        .await
        .unwrap();
    let probes: u32 = store
        .rollups(
            Tier::Minute,
            None,
            DateTime::UNIX_EPOCH,
            now() + TimeDelta::days(1),
            None,
            100,
        )
        .await
        .unwrap()
        .iter()
        .flat_map(|r| r.entries.iter().map(|(_, a)| a.probes))
        .sum();
    assert_eq!(probes, 6, "rollups count each result once");
}

async fn results_stamped_with_the_same_instant_are_all_kept(backend: &Backend) {
    // Results without a time are stamped with the time received, so one
    // device may have several at the same microsecond, in one batch or in
    // successive ones.
    let device = Uuid::new_v4();
    let at = now() + TimeDelta::microseconds(123);
    let same: Vec<ProbeRow> = (0..3).map(|_| row(device, at, Some((5, 6, 7)))).collect();
    assert_eq!(store_rows(backend, "one", &same).await, stored(3));
    assert_eq!(store_rows(backend, "two", &same[..2]).await, stored(2));
    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        5
    );
    let history = backend
        .store()
        .history(
            device,
            at - TimeDelta::hours(1),
            at + TimeDelta::hours(1),
            3600,
        )
        .await
        .unwrap();
    assert_eq!(history.iter().map(|h| h.probes).sum::<u32>(), 5);
}

async fn history_answers_the_same_from_raw_results_and_from_each_tier(backend: &Backend) {
    let store = backend.store();
    let (device, other) = (Uuid::new_v4(), Uuid::new_v4());
    let m0 = now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(2);
    let s = |seconds: i64| m0 + TimeDelta::seconds(seconds);

    // Minute 0 from two batches (one result without RTT); minute 1 from
    // one; minute 5 first without RTT, then with: the merge keeps the side
    // that has a value.
    let first = [
        row(device, s(10), Some((100, 200, 300))),
        row(device, s(70), Some((50, 60, 70))),
        row(device, s(300), None),
        row(other, s(10), Some((1, 1, 1))),
    ];
    let second = [
        row(device, s(20), None),
        row(device, s(30), Some((90, 400, 900))),
        row(device, s(310), Some((10, 20, 30))),
    ];
    assert_eq!(store_rows(backend, "first", &first).await, stored(4));
    assert_eq!(store_rows(backend, "second", &second).await, stored(3));

    let minutes = store
        .history(device, m0, m0 + TimeDelta::minutes(10), 60)
        .await
        .unwrap();
    assert_eq!(
        minutes,
        vec![
            HistoryRow {
                time: m0,
                probes: 3,
                packets_sent: 9,
                packets_received: 6,
                rtt_min_us: Some(90),
                rtt_avg_us: Some(300),
                rtt_max_us: Some(900),
            },
            HistoryRow {
                time: s(60),
                probes: 1,
                packets_sent: 3,
                packets_received: 3,
                rtt_min_us: Some(50),
                rtt_avg_us: Some(60),
                rtt_max_us: Some(70),
            },
            HistoryRow {
                time: s(300),
                probes: 2,
                packets_sent: 6,
                packets_received: 3,
                rtt_min_us: Some(10),
                rtt_avg_us: Some(20),
                rtt_max_us: Some(30),
            },
        ]
    );

    // Five-minute steps sum the minutes of each step; a step shorter than a
    // minute counts as a minute.
    let steps = store
        .history(device, m0, m0 + TimeDelta::minutes(10), 300)
        .await
        .unwrap();
    assert_eq!(
        steps,
        vec![
            HistoryRow {
                time: m0,
                probes: 4,
                packets_sent: 12,
                packets_received: 9,
                rtt_min_us: Some(50),
                rtt_avg_us: Some(220),
                rtt_max_us: Some(900),
            },
            HistoryRow {
                time: s(300),
                probes: 2,
                packets_sent: 6,
                packets_received: 3,
                rtt_min_us: Some(10),
                rtt_avg_us: Some(20),
                rtt_max_us: Some(30),
            },
        ]
    );
    let short = store
        .history(device, m0, m0 + TimeDelta::minutes(10), 1)
        .await
        .unwrap();
    assert_eq!(short, minutes);

    // [from, to): the range's end is not in it.
    let middle = store.history(device, s(60), s(300), 60).await.unwrap();
    assert_eq!(
        middle.iter().map(|h| h.time).collect::<Vec<_>>(),
        vec![s(60)]
    );
    let nothing = store.history(Uuid::new_v4(), m0, s(600), 60).await.unwrap();
    assert!(nothing.is_empty());

    // Rolled up, the one-minute tier answers what the raw results did:
    // the same minutes, the same steps, the same range ends.
    let day = m0.duration_trunc(TimeDelta::days(1)).unwrap();
    let whole_day = |step| store.history(device, day, day + TimeDelta::days(1), step);
    let hours = whole_day(3600).await.unwrap();
    assert_eq!(hours.iter().map(|h| h.probes).sum::<u32>(), 6);
    let rolled = Roller::new(store.clone())
        .run(now() + TimeDelta::days(2))
        .await
        .unwrap();
    assert!(rolled.blocks >= 1 && rolled.days >= 1, "{rolled:?}");
    let mark = store.rollup_mark(Tier::Minute).await.unwrap().unwrap();
    assert!(
        mark > s(600),
        "the one-minute tier covers the range: {mark}"
    );
    let history = |step| store.history(device, m0, m0 + TimeDelta::minutes(10), step);
    assert_eq!(history(60).await.unwrap(), minutes);
    assert_eq!(history(300).await.unwrap(), steps);
    assert_eq!(
        store.history(device, s(60), s(300), 60).await.unwrap(),
        middle
    );
    assert_eq!(whole_day(3600).await.unwrap(), hours);
    let rows = store
        .rollups(
            Tier::Minute,
            Some(device),
            day,
            day + TimeDelta::days(1),
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one row per device and 10-minute block");
    assert_eq!(rows[0].entries.len(), 3, "an entry per minute with probes");
    // Rolling again changes nothing.
    Roller::new(store.clone())
        .run(now() + TimeDelta::days(2))
        .await
        .unwrap();
    assert_eq!(history(60).await.unwrap(), minutes);

    // With raw results and one-minute rows of the day gone, the hourly
    // tier answers the hours alone.
    let next = day.date_naive() + TimeDelta::days(1);
    store
        .expire(Cutoffs {
            minute_before: next,
            ..Cutoffs::raw_only(next)
        })
        .await
        .unwrap();
    assert!(
        store
            .raw_rows(day, day + TimeDelta::days(1), None)
            .await
            .unwrap()
            .is_empty()
    );
    let minute_rows = store
        .rollups(Tier::Minute, None, day, day + TimeDelta::days(1), None, 100)
        .await
        .unwrap();
    assert!(minute_rows.is_empty(), "{minute_rows:?}");
    assert_eq!(whole_day(3600).await.unwrap(), hours);
    // A finer step gets what the tier has: hours.
    assert_eq!(whole_day(60).await.unwrap(), hours);
}

async fn late_results_are_rolled_up_again(backend: &Backend) {
    let store = backend.store();
    let device = Uuid::new_v4();
    let m0 = now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(3);
    let ingestor = Ingestor::new(
        store.clone(),
        Duration::from_secs(7 * 86_400),
        (
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
    );
    let result = |at: DateTime<Utc>| v1::ProbeResult {
        device_id: device.to_string(),
        cycle_id: 7,
        batch_id: "b".into(),
        sent: 3,
        received: 3,
        loss_percent: 0.0,
        rtt_min_us: Some(5),
        rtt_avg_us: Some(6),
        rtt_max_us: Some(7),
        outcome: v1::ProbeOutcome::Ok as i32,
        probed_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    let send = |uid: &str, at| v1::ResultBatch {
        batch_uid: uid.into(),
        executor_id: "e".into(),
        probes: vec![result(at)],
        ..Default::default()
    };
    ingestor.ingest(&send("on-time", m0), now()).await.unwrap();
    let roller = Roller::new(store.clone());
    roller.run(now()).await.unwrap();
    let probes = || async {
        store
            .rollups(
                Tier::Minute,
                Some(device),
                m0,
                m0 + TimeDelta::minutes(10),
                None,
                10,
            )
            .await
            .unwrap()
            .iter()
            .flat_map(|r| r.entries.iter().map(|(_, a)| a.probes))
            .sum::<u32>()
    };
    assert_eq!(probes().await, 1);
    // A replayed result for the same block arrives after it was rolled.
    ingestor
        .ingest(&send("late", m0 + TimeDelta::seconds(30)), now())
        .await
        .unwrap();
    assert_eq!(store.late().await.unwrap(), vec![(m0, device)]);
    let rolled = roller.run(now()).await.unwrap();
    assert_eq!(rolled.late, 1);
    assert_eq!(probes().await, 2);
    assert!(store.late().await.unwrap().is_empty());
}

fn state(device: Uuid, to: v1::DeviceState, since: DateTime<Utc>) -> StateRow {
    StateRow {
        reason: format!("now {to:?}"),
        maintenance: true,
        last_probe_at: Some(since + TimeDelta::seconds(3)),
        last_outcome: v1::ProbeOutcome::Timeout as i32,
        last_loss_percent: Some(33.5),
        last_rtt_avg_us: Some(1234),
        last_cycle_id: 42,
        consecutive_failures: 3,
        memory: serde_json::json!({"failures": 3, "recent": [1, 2]}),
        state: to,
        ..StateRow::unknown(device, since)
    }
}

fn same_state(a: &StateRow, b: &StateRow) -> bool {
    (
        a.device_id,
        a.state,
        a.since,
        &a.reason,
        a.maintenance,
        a.last_probe_at,
        a.last_outcome,
        a.last_loss_percent,
        a.last_rtt_avg_us,
        a.last_cycle_id,
        a.consecutive_failures,
        &a.memory,
    ) == (
        b.device_id,
        b.state,
        b.since,
        &b.reason,
        b.maintenance,
        b.last_probe_at,
        b.last_outcome,
        b.last_loss_percent,
        b.last_rtt_avg_us,
        b.last_cycle_id,
        b.consecutive_failures,
        &b.memory,
    )
}

fn same_change(a: &ChangeRow, b: &ChangeRow) -> bool {
    (
        a.device_id,
        a.from,
        a.to,
        a.maintenance,
        &a.reason,
        a.changed_at,
        a.cycle_id,
        a.stale,
    ) == (
        b.device_id,
        b.from,
        b.to,
        b.maintenance,
        &b.reason,
        b.changed_at,
        b.cycle_id,
        b.stale,
    )
}

async fn states_are_upserted_and_transitions_appended(backend: &Backend) {
    use v1::DeviceState::{Down, Unknown, Up};
    let store = backend.store();
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    // One base instant: `t(1)` must be the same instant when saved and
    // when asked about (a fresh `now()` per call drifted under load).
    let base = now() - TimeDelta::hours(1);
    let t = |minutes: i64| base + TimeDelta::minutes(minutes);

    let up = ChangeRow {
        from: Unknown,
        cycle_id: 41,
        ..change(one, Up, t(1))
    };
    let initial = [state(one, Up, t(1)), state(two, Down, t(0))];
    store
        .save_states(&initial, std::slice::from_ref(&up))
        .await
        .unwrap();
    let mut states = store.states().await.unwrap();
    states.sort_by_key(|s| s.device_id);
    let mut expected = initial.to_vec();
    expected.sort_by_key(|s| s.device_id);
    assert_eq!(states.len(), 2);
    for (got, want) in states.iter().zip(&expected) {
        assert!(same_state(got, want), "{got:?} != {want:?}");
    }

    // A second save replaces the device's row and appends its transitions;
    // two at the same instant stay in the order they were saved.
    let down = ChangeRow {
        from: Up,
        maintenance: true,
        stale: true,
        reason: "no answer".into(),
        cycle_id: u64::MAX,
        ..change(one, Down, t(5))
    };
    let again = ChangeRow {
        from: Down,
        ..change(one, Up, t(5))
    };
    let now_down = StateRow {
        last_loss_percent: None,
        last_rtt_avg_us: None,
        last_probe_at: None,
        memory: serde_json::Value::Null,
        ..state(one, Down, t(5))
    };
    store
        .save_states(
            std::slice::from_ref(&now_down),
            &[down.clone(), again.clone()],
        )
        .await
        .unwrap();
    let states = store.states().await.unwrap();
    assert_eq!(states.len(), 2);
    let saved = states.iter().find(|s| s.device_id == one).unwrap();
    assert!(same_state(saved, &now_down), "{saved:?}");

    let all = store.changes(one, t(0), t(10)).await.unwrap();
    // u64::MAX does not fit a signed column: both backends keep i64::MAX.
    let down = ChangeRow {
        cycle_id: i64::MAX as u64,
        ..down
    };
    assert_eq!(all.len(), 3);
    for (got, want) in all.iter().zip([&up, &down, &again]) {
        assert!(same_change(got, want), "{got:?} != {want:?}");
    }
    // [from, to) on both ends.
    let later = store.changes(one, t(5), t(10)).await.unwrap();
    assert_eq!(later.len(), 2);
    assert!(store.changes(one, t(0), t(1)).await.unwrap().is_empty());
    assert!(store.changes(two, t(0), t(10)).await.unwrap().is_empty());

    // The state at an instant: the last transition strictly before it.
    let at = |m| store.last_change_before(one, t(m));
    assert!(at(1).await.unwrap().is_none());
    assert!(same_change(&at(2).await.unwrap().unwrap(), &up));
    assert!(same_change(&at(5).await.unwrap().unwrap(), &up));
    assert!(same_change(&at(6).await.unwrap().unwrap(), &again));

    // Nothing to save is fine.
    store.save_states(&[], &[]).await.unwrap();
}

async fn forgotten_states_go_and_their_transitions_stay(backend: &Backend) {
    use v1::DeviceState::{Down, Up};
    let store = backend.store();
    let at = now() - TimeDelta::minutes(5);
    let devices: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let states: Vec<StateRow> = devices.iter().map(|d| state(*d, Up, at)).collect();
    let changes: Vec<ChangeRow> = devices.iter().map(|d| change(*d, Down, at)).collect();
    store.save_states(&states, &changes).await.unwrap();

    store
        .forget_states(&[devices[0], devices[2], Uuid::new_v4()])
        .await
        .unwrap();
    store.forget_states(&[]).await.unwrap();
    let left: Vec<Uuid> = store
        .states()
        .await
        .unwrap()
        .iter()
        .map(|s| s.device_id)
        .collect();
    assert_eq!(left, vec![devices[1]]);
    for device in &devices {
        assert_eq!(changes_of(backend, *device).await, vec![at]);
    }
}

async fn partitions_are_made_ahead_and_raw_days_expire_past_the_retention(backend: &Backend) {
    let store = backend.store();
    let now = now();
    let today = now.date_naive();
    let day = |offset: i64| today + TimeDelta::days(offset);
    let ingestor = Ingestor::new(
        store.clone(),
        Duration::from_secs(7 * 86_400),
        (
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
    );
    assert!(ingestor.maintain(now).await.unwrap().is_empty());
    let partitions = store.partitions().await.unwrap();
    assert_eq!(partitions, (-1..=2).map(day).collect::<Vec<_>>());

    // Results five days old get their day on demand; results older than
    // the retention are not stored.
    let batch = |uid: &str, devices: usize, at: DateTime<Utc>| v1::ResultBatch {
        executor_id: "test".into(),
        batch_uid: uid.into(),
        probes: (0..devices)
            .map(|_| v1::ProbeResult {
                device_id: Uuid::new_v4().to_string(),
                sent: 3,
                received: 3,
                rtt_avg_us: Some(150),
                outcome: v1::ProbeOutcome::Ok as i32,
                probed_at: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let old = ingestor
        .ingest(&batch("old", 3, now - TimeDelta::days(5)), now)
        .await
        .unwrap();
    assert_eq!((old.stored.rows, old.skipped), (3, 0));
    let fresh = ingestor.ingest(&batch("new", 2, now), now).await.unwrap();
    assert_eq!(fresh.stored.rows, 2);
    assert!(store.partitions().await.unwrap().contains(&day(-5)));
    let ancient = ingestor
        .ingest(&batch("ancient", 2, now - TimeDelta::days(30)), now)
        .await
        .unwrap();
    assert_eq!((ancient.stored.rows, ancient.skipped), (0, 2));
    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        5
    );

    // Three days later the five-day-old day is past the 7-day retention:
    // dropped with its rows; its rollups stay; days ahead are made.
    let later = now + TimeDelta::days(3);
    // Raw days go only once rolled up: before, maintain holds them.
    assert!(ingestor.maintain(later).await.unwrap().is_empty());
    Roller::new(store.clone()).run(later).await.unwrap();
    let dropped = ingestor.maintain(later).await.unwrap();
    assert_eq!(dropped, vec![day(-5)]);
    let partitions = store.partitions().await.unwrap();
    assert_eq!(partitions.first(), Some(&day(-1)));
    assert_eq!(partitions.last(), Some(&day(5)));
    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        2
    );
    let rolled: u32 = store
        .rollups(Tier::Minute, None, DateTime::UNIX_EPOCH, later, None, 100)
        .await
        .unwrap()
        .iter()
        .flat_map(|r| r.entries.iter().map(|(_, a)| a.probes))
        .sum();
    assert_eq!(rolled, 5);
    // Nothing more to drop.
    assert!(ingestor.maintain(later).await.unwrap().is_empty());
}

async fn expire_keeps_the_day_of_its_cutoff(backend: &Backend) {
    let store = backend.store();
    let noon = |day: NaiveDate| day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let before = now().date_naive() - TimeDelta::days(10);
    let device = Uuid::new_v4();
    for (offset, uid) in [(-2, "a"), (-1, "b"), (0, "c"), (1, "d")] {
        let day = before + TimeDelta::days(offset);
        let rows = [row(device, noon(day), None), row(device, noon(day), None)];
        assert_eq!(store_rows(backend, uid, &rows).await, stored(2));
    }
    let dropped = store.expire(Cutoffs::raw_only(before)).await.unwrap();
    assert_eq!(
        dropped,
        vec![before - TimeDelta::days(2), before - TimeDelta::days(1)]
    );
    assert_eq!(
        store.partitions().await.unwrap(),
        vec![before, before + TimeDelta::days(1)]
    );
    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        4
    );
    // The days can be made again, empty.
    store
        .ensure_partitions(&[before - TimeDelta::days(1)])
        .await
        .unwrap();
    assert_eq!(store.partitions().await.unwrap().len(), 3);
    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        4
    );
}

async fn state_changes_past_the_retention_go_but_each_device_keeps_its_state_at_the_cutoff(
    backend: &Backend,
) {
    use v1::DeviceState::{Down, Up};
    let store = backend.store();
    let now = now();
    let ago = |days: i64| now - TimeDelta::days(days);
    let (busy, quiet, recent) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // busy: three transitions past the cutoff (400 days), one within.
    let mut changes: Vec<ChangeRow> = [(500, Up), (450, Down), (420, Up), (10, Down)]
        .into_iter()
        .map(|(days, to)| change(busy, to, ago(days)))
        .collect();
    // quiet: UP for three years, never changed since.
    changes.push(change(quiet, Up, ago(3 * 365)));
    changes.push(change(recent, Down, ago(5)));
    store.save_states(&[], &changes).await.unwrap();

    let pruner = Pruner::new(store.clone(), defaults());
    let done = pruner.prune(now).await.unwrap();
    assert_eq!(pruned(&done, Prunable::StateChanges).rows, 2);
    assert_eq!(changes_of(backend, busy).await, vec![ago(420), ago(10)]);
    assert_eq!(changes_of(backend, quiet).await, vec![ago(3 * 365)]);
    assert_eq!(changes_of(backend, recent).await, vec![ago(5)]);

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

async fn resolved_alerts_settled_notifications_and_ended_silences_go_pending_ones_stay(
    backend: &Backend,
) {
    let now = now();
    let ago = |days: i64| now - TimeDelta::days(days);

    let long_resolved = backend.alert(ago(520), Some(ago(500))).await;
    let resolved = backend.alert(ago(60), Some(ago(10))).await;
    let open = backend.alert(ago(600), None).await;

    // Old and settled, alert resolved (or resolved long ago and pruned): go.
    let delivered = backend.notification(resolved, 2, ago(60)).await;
    let failed = backend.notification(long_resolved, 3, ago(520)).await;
    // Pending: stays, however old. An open alert's firing row: stays (its
    // resolve is sent only when the firing row is there). Recent: stays.
    let pending = backend.notification(resolved, 1, ago(60)).await;
    let open_firing = backend.notification(open, 2, ago(600)).await;
    let recent = backend.notification(resolved, 2, ago(5)).await;

    for (ends, id) in [(Some(ago(500)), 1), (Some(ago(10)), 2), (None, 3)] {
        backend.silence(Uuid::from_u128(id), ago(600), ends).await;
    }

    let done = Pruner::new(backend.store(), defaults())
        .prune(now)
        .await
        .unwrap();
    assert_eq!(pruned(&done, Prunable::Alerts).rows, 1);
    assert_eq!(pruned(&done, Prunable::Notifications).rows, 2);
    assert_eq!(pruned(&done, Prunable::Silences).rows, 1);

    let mut expected = vec![resolved, open];
    expected.sort();
    assert_eq!(backend.uuids("SELECT id FROM alerts").await, expected);
    let outbox = backend.numbers("SELECT id FROM notification_outbox").await;
    let mut expected = vec![pending, open_firing, recent];
    expected.sort();
    assert_eq!(outbox, expected);
    assert!(!outbox.contains(&delivered) && !outbox.contains(&failed));
    assert_eq!(
        backend.uuids("SELECT id FROM silences").await,
        vec![Uuid::from_u128(2), Uuid::from_u128(3)]
    );
}

async fn pruning_proceeds_in_small_batches(backend: &Backend) {
    let store = backend.store();
    let now = now();
    let device = Uuid::new_v4();
    // 26 transitions past the cutoff: 25 to prune, the newest kept.
    let changes: Vec<ChangeRow> = (0..26)
        .map(|minute| {
            let at = now - TimeDelta::days(450) + TimeDelta::minutes(minute);
            change(device, v1::DeviceState::Up, at)
        })
        .collect();
    store.save_states(&[], &changes).await.unwrap();
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
    assert_eq!(changes_of(backend, device).await.len(), 1);

    // The store's own loop, on one table, stops at the first short batch.
    for _ in 0..20 {
        backend
            .alert(now - TimeDelta::days(500), Some(now - TimeDelta::days(450)))
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
    assert_eq!(
        store
            .prune_batch(Prunable::Alerts, cutoff, 5)
            .await
            .unwrap(),
        0
    );
}

async fn idempotency_keys_outlive_raw_results_by_a_day_and_rollups_keep_theirs(backend: &Backend) {
    let store = backend.store();
    let now = now();
    let ago = |hours: i64| now - TimeDelta::hours(hours);
    for (uid, at) in [
        ("old", ago(9 * 24 + 1)),
        ("margin", ago(7 * 24 + 12)),
        ("new", ago(1)),
    ] {
        backend.key(uid, at).await;
    }
    // "ancient" is a month past the hourly tier's 400 days (PostgreSQL
    // drops that tier by the month).
    for (uid, days) in [("ancient", 431), ("recent", 1)] {
        let at = now - TimeDelta::days(days);
        let stored = store_rows(backend, uid, &[row(Uuid::new_v4(), at, None)]).await;
        assert_eq!(stored, self::stored(1));
    }
    let ingestor = Ingestor::new(
        store.clone(),
        Duration::from_secs(7 * 86_400),
        (
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
    );
    Roller::new(store.clone()).run(now).await.unwrap();
    let rows = |tier| {
        let store = store.clone();
        async move {
            store
                .rollups(tier, None, DateTime::UNIX_EPOCH, now, None, 100)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!((rows(Tier::Minute).await, rows(Tier::Hour).await), (2, 2));
    ingestor.maintain(now).await.unwrap();
    // "margin" is past the 7-day raw retention but within its extra day;
    // "ancient" and "recent" were received just now.
    assert_eq!(
        backend
            .strings("SELECT batch_uid FROM ingested_batches")
            .await,
        ["ancient", "margin", "new", "recent"]
    );
    // Each tier keeps its own retention: raw 7 days, one-minute 30,
    // hourly 400.
    assert_eq!((rows(Tier::Minute).await, rows(Tier::Hour).await), (1, 1));
    assert_eq!(
        backend
            .count("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .await,
        1
    );
}

/// Interface `if_index` at minute `minute` of the day: rates that vary,
/// some interfaces down, now and then errors, a few odd utilisations, no
/// rates at the day's first poll.
fn interface_at(if_index: u32, minute: i64) -> InterfaceSampleRow {
    let speed = if if_index > 44 {
        10_000_000_000
    } else {
        1_000_000_000
    };
    let n = u64::from(if_index) * 7_919 + minute as u64 * 104_729;
    let rated = minute > 0;
    let in_bps = rated.then_some(n % (speed / 3));
    let out_bps = rated.then_some(n * 31 % (speed / 5));
    let utilisation =
        |bps: Option<u64>| bps.map(|b| (b as f64 * 10_000.0 / speed as f64).round() as u32);
    let errors = rated && n.is_multiple_of(97);
    InterfaceSampleRow {
        if_index,
        admin_status: 1,
        oper_status: if if_index.is_multiple_of(5) && minute % 180 < 20 {
            2
        } else {
            1
        },
        speed_bps: Some(speed),
        discontinuity: i32::from(minute == 0),
        in_bps,
        out_bps,
        in_utilisation: if minute % 61 == 7 {
            Some(9_999)
        } else {
            utilisation(in_bps)
        },
        out_utilisation: utilisation(out_bps),
        deltas: [
            rated.then_some(if errors { 3 } else { 0 }),
            rated.then_some(0),
            rated.then_some(i64::from(errors)),
            if if_index == 2 {
                None
            } else {
                rated.then_some(0)
            },
        ],
    }
}

/// Polls of `device` at each of `minutes` of `day` with `interfaces`,
/// stored in batches of an hour's polls.
async fn store_polls(
    backend: &Backend,
    device: Uuid,
    day: DateTime<Utc>,
    minutes: std::ops::Range<i64>,
    interfaces: std::ops::RangeInclusive<u32>,
) {
    let sample = v1::SnmpSample {
        device_id: device.to_string(),
        outcome: v1::SnmpOutcome::Ok as i32,
        profile: "interfaces".into(),
        ..Default::default()
    };
    let minutes: Vec<i64> = minutes.collect();
    for hour in minutes.chunks(60) {
        let polls: Vec<PollRow<'_>> = hour
            .iter()
            .map(|minute| PollRow {
                device_id: device,
                polled_at: day + TimeDelta::minutes(*minute) + TimeDelta::milliseconds(1_234),
                sample: &sample,
                interfaces: interfaces
                    .clone()
                    .map(|i| interface_at(i, *minute))
                    .collect(),
            })
            .collect();
        let uid = Uuid::new_v4().to_string();
        let batch = SnmpBatch {
            batch_uid: &uid,
            executor_id: "poller",
            polls: &polls,
            interfaces: &[],
            devices: &[],
        };
        assert!(backend.snmp.store_snmp_batch(batch).await.unwrap());
    }
}

async fn a_day_of_polls_rolls_into_hours_that_answer_as_the_raw_polls_do(backend: &Backend) {
    let (store, snmp) = (backend.store(), backend.snmp.clone());
    let day = (now() - TimeDelta::days(3))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let next = day + TimeDelta::days(1);
    store.ensure_partitions(&[day.date_naive()]).await.unwrap();
    // A 48-port switch polled every minute of the day; a router with two
    // interfaces polled from noon on.
    let (switch, router) = (Uuid::new_v4(), Uuid::new_v4());
    store_polls(backend, switch, day, 0..1440, 1..=48).await;
    store_polls(backend, router, day, 720..1440, 1..=2).await;
    assert_eq!(backend.count("SELECT count(*) FROM snmp_raw").await, 2160);

    let roller = Roller::new(store.clone()).with_snmp(snmp.clone());
    let rolled = roller.run(day + TimeDelta::days(2)).await.unwrap();
    assert_eq!(rolled.interface_days, 1, "{rolled:?}");
    assert_eq!(snmp.interface_mark().await.unwrap(), Some(next));
    let rows = snmp
        .interface_rollups(None, (day, next), None, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "a row per device and day");
    let of = |device| rows.iter().find(|r| r.device_id == device).unwrap();
    let switch_day = &of(switch).interfaces;
    assert_eq!(switch_day.len(), 48);
    for interface in switch_day {
        assert_eq!(interface.hours.len(), 24);
        assert!(interface.hours.iter().all(|(_, agg)| agg.samples == 60));
    }
    assert_eq!(of(router).interfaces[1].hours.len(), 12);
    // Rolling again changes nothing.
    assert_eq!(
        roller
            .run(day + TimeDelta::days(2))
            .await
            .unwrap()
            .interface_days,
        0
    );

    // Every step of whole hours sums the same from the hours as from the
    // raw polls, over the day and over part of it.
    for if_index in [1, 2, 5, 17, 48] {
        for step in [3600, 7200, 5 * 3600, 86_400] {
            for range in [
                (day, next),
                (day + TimeDelta::hours(5), day + TimeDelta::hours(17)),
            ] {
                let from_raw = snmp
                    .interface_history(switch, if_index, range, step, true)
                    .await
                    .unwrap();
                let from_hours = snmp
                    .interface_history(switch, if_index, range, step, false)
                    .await
                    .unwrap();
                assert!(!from_raw.is_empty());
                assert_eq!(from_raw, from_hours, "ifIndex {if_index}, step {step}");
            }
        }
    }
    let router_raw = snmp
        .interface_history(router, 2, (day, next), 3600, true)
        .await
        .unwrap();
    assert_eq!(router_raw.len(), 12);
    assert_eq!(
        router_raw,
        snmp.interface_history(router, 2, (day, next), 3600, false)
            .await
            .unwrap()
    );

    // The book picks the tier: minutes from raw polls while they exist;
    // once they are gone, the hours, whatever step was asked for.
    let book = backend.book().await;
    let (step, minutes) = book.history(switch, 17, (day, next), 60).await.unwrap();
    assert_eq!((step, minutes.len()), (60, 1440));
    let (step, hours) = book.history(switch, 17, (day, next), 3600).await.unwrap();
    let from_raw = snmp
        .interface_history(switch, 17, (day, next), 3600, true)
        .await
        .unwrap();
    assert_eq!((step, &hours), (3600, &from_raw));
    store
        .expire(Cutoffs::raw_only(next.date_naive()))
        .await
        .unwrap();
    assert_eq!(backend.count("SELECT count(*) FROM snmp_raw").await, 0);
    let (step, after) = book.history(switch, 17, (day, next), 60).await.unwrap();
    assert_eq!((step, &after), (3600, &from_raw));
}

async fn a_replayed_snmp_batch_or_poll_stores_nothing(backend: &Backend) {
    let (store, snmp) = (backend.store(), backend.snmp.clone());
    let device = Uuid::new_v4();
    let at = now() - TimeDelta::minutes(10);
    store.ensure_partitions(&[at.date_naive()]).await.unwrap();
    let sample = v1::SnmpSample::default();
    let poll = |minutes: i64| PollRow {
        device_id: device,
        polled_at: at + TimeDelta::minutes(minutes),
        sample: &sample,
        interfaces: vec![interface_at(1, 5), interface_at(2, 5)],
    };
    let batch = |uid, polls| SnmpBatch {
        batch_uid: uid,
        executor_id: "poller",
        polls,
        interfaces: &[],
        devices: &[],
    };
    let first = [poll(0), poll(1)];
    assert!(snmp.store_snmp_batch(batch("a", &first)).await.unwrap());
    assert!(!snmp.store_snmp_batch(batch("a", &first)).await.unwrap());
    // A new batch carrying a poll already stored (same device, same
    // instant) stores only its new poll.
    let second = [poll(1), poll(2)];
    assert!(snmp.store_snmp_batch(batch("b", &second)).await.unwrap());
    assert_eq!(backend.count("SELECT count(*) FROM snmp_raw").await, 3);
    let range = (at - TimeDelta::hours(1), at + TimeDelta::hours(1));
    let points = snmp
        .interface_history(device, 1, range, 7200, true)
        .await
        .unwrap();
    assert_eq!(points.iter().map(|p| p.sample_count).sum::<u32>(), 3);
}

async fn late_polls_are_rolled_up_again(backend: &Backend) {
    let (store, snmp) = (backend.store(), backend.snmp.clone());
    let device = Uuid::new_v4();
    let day = (now() - TimeDelta::days(2))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    store.ensure_partitions(&[day.date_naive()]).await.unwrap();
    let book = backend.book().await;
    let sample = |minute: i64, octets: u64| v1::SnmpSample {
        device_id: device.to_string(),
        outcome: v1::SnmpOutcome::Ok as i32,
        sys_uptime_ticks: Some(100_000 + minute as u32 * 6_000),
        interfaces: vec![v1::InterfaceSample {
            if_index: 1,
            admin_status: 1,
            oper_status: 1,
            speed_bps: Some(1_000_000),
            in_octets: Some(octets),
            out_octets: Some(octets),
            labels_refreshed: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let at = |minute: i64| day + TimeDelta::hours(10) + TimeDelta::minutes(minute);
    let first = sample(0, 1_000);
    book.store("on-time", "poller", &[(device, at(0), &first)])
        .await
        .unwrap();
    // Stored long after its day closed: noted at once, rolled with the day.
    assert_eq!(snmp.interfaces_late().await.unwrap(), vec![(day, device)]);
    let roller = Roller::new(store.clone()).with_snmp(snmp.clone());
    roller.run(now()).await.unwrap();
    let samples = || async {
        snmp.interface_history(device, 1, (day, day + TimeDelta::days(1)), 86_400, false)
            .await
            .unwrap()
            .iter()
            .map(|p| p.sample_count)
            .sum::<u32>()
    };
    assert_eq!(samples().await, 1);
    // A poll of the rolled day arrives (a replay from a poller's buffer):
    // noted, rolled again, its hour now counts both.
    let second = sample(1, 61_000);
    book.store("late", "poller", &[(device, at(1), &second)])
        .await
        .unwrap();
    assert_eq!(snmp.interfaces_late().await.unwrap(), vec![(day, device)]);
    let rolled = roller.run(now()).await.unwrap();
    assert_eq!(rolled.interface_late, 1);
    assert_eq!(samples().await, 2);
    let hour = snmp
        .interface_history(device, 1, (day, day + TimeDelta::days(1)), 3600, false)
        .await
        .unwrap();
    assert_eq!(hour[0].in_bps_max, Some(8_000.0), "60,000 octets in 60 s");
    assert!(snmp.interfaces_late().await.unwrap().is_empty());
}

async fn snmp_polls_and_hours_go_past_their_retentions_by_partition(backend: &Backend) {
    let (store, snmp) = (backend.store(), backend.snmp.clone());
    let now = now();
    let day = |days: i64| {
        (now - TimeDelta::days(days))
            .duration_trunc(TimeDelta::days(1))
            .unwrap()
    };
    let (old, ancient) = (day(10), day(431));
    store
        .ensure_partitions(&[old.date_naive(), ancient.date_naive()])
        .await
        .unwrap();
    let device = Uuid::new_v4();
    store_polls(backend, device, old, 0..3, 1..=4).await;
    store_polls(backend, device, ancient, 0..2, 1..=4).await;
    let book = Arc::new(backend.book().await);
    let ingestor = Ingestor::new(
        store.clone(),
        Duration::from_secs(7 * 86_400),
        (
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
    )
    .with_snmp(book);
    let raw_rows = || backend.count("SELECT count(*) FROM snmp_raw");

    // Probe results rolled, interfaces not yet: raw days are held back.
    Roller::new(store.clone()).run(now).await.unwrap();
    ingestor.maintain(now).await.unwrap();
    assert_eq!(raw_rows().await, 5);
    Roller::new(store.clone())
        .with_snmp(snmp.clone())
        .run(now)
        .await
        .unwrap();
    let dropped = ingestor.maintain(now).await.unwrap();
    assert!(dropped.contains(&old.date_naive()) && dropped.contains(&ancient.date_naive()));
    assert_eq!(raw_rows().await, 0);
    let stamp = |at: DateTime<Utc>, format: &str| at.format(format).to_string();
    if let Pool::Pg(_) = backend.pool {
        let raw = backend.tables("snmp_raw_").await;
        assert!(
            !raw.contains(&format!("snmp_raw_{}", stamp(old, "%Y%m%d"))),
            "{raw:?}"
        );
        let hourly = backend.tables("interface_rollups_1h_").await;
        assert!(hourly.contains(&format!("interface_rollups_1h_{}", stamp(old, "%Y%m"))));
        assert!(
            !hourly.contains(&format!("interface_rollups_1h_{}", stamp(ancient, "%Y%m"))),
            "{hourly:?}"
        );
    }
    // The old day's hours stay (400 days); the ancient day's went with its
    // month.
    let rows = snmp
        .interface_rollups(None, (ancient, now), None, 10)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.start).collect::<Vec<_>>(), [old]);
    let history = book_history(backend, device, old).await;
    assert_eq!(history, 3);
}

/// Samples the book's history finds for ifIndex 1 over `day`.
async fn book_history(backend: &Backend, device: Uuid, day: DateTime<Utc>) -> u32 {
    let (_, points) = backend
        .book()
        .await
        .history(device, 1, (day, day + TimeDelta::days(1)), 60)
        .await
        .unwrap();
    points.iter().map(|p| p.sample_count).sum()
}

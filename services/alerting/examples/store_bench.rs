//! Benchmark of alerting's store on both backends (not a test): a day (by
//! default) of 10-second probe results for a fleet, written through
//! `AlertingStore::store_probe_batches` in groups of 500-result batches as
//! ingest writes them, then rolled up into the one-minute and hourly tiers
//! (`rollup::Roller`), into a fresh PostgreSQL database and a fresh SQLite
//! file. Prints, per backend: results/s of the writes; bytes at rest per
//! raw result, per one-minute rollup row (10 entries) and per hourly row
//! (24 entries), indexes and TOAST included (PostgreSQL:
//! `pg_total_relation_size` of the partitions; SQLite: `dbstat` pages); the
//! projection per device at the default retentions (raw 7 days, one-minute
//! 30, hourly 400); how long the rollup and `expire` of the day took.
//!
//! Then the same for SNMP (`--snmp-devices`, 0 to skip): switches with 48
//! interfaces (44 access ports at 1 Gbit/s, a third of them down, 4
//! uplinks at 10 Gbit/s; traffic following the day with noise; now and
//! then errors and discards) and a Cisco profile's scalars (sysDescr,
//! sysObjectID, sysUpTime, sysName, three CPU loads, two memory pools),
//! polled every 60 s, written through `SnmpStore::store_snmp_batch` in
//! batches of 50 polls, rolled into the hourly interface tier. Prints bytes
//! per interface sample at rest (the row's header, key and scalar values
//! shared out), bytes per poll and of its scalar values, bytes per hourly
//! entry (an interface's hour) and per day row, and the projection per
//! 48-interface device (raw 7 days, hourly 400).
//!
//! `cargo run --release -p netward-alerting --example store_bench -- --devices 1000 --hours 24 --snmp-devices 100`
//!
//! PostgreSQL comes from `NETWARD_TEST_DATABASE_URL` (default the local
//! server as user postgres); its database is dropped at the end, and the
//! SQLite file is written in the temporary directory and deleted. Measured
//! figures are in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use netward_alerting::rollup::Roller;
use netward_alerting::store::{
    AlertingStore, BatchRows, Cutoffs, InterfaceSampleRow, PgStore, PollRow, ProbeRow, SnmpBatch,
    SnmpStore, SqliteStore,
};
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use uuid::Uuid;

/// Results per `ResultBatch`, as executors send them.
const BATCH: usize = 500;
/// Batches per `store_probe_batches` call (ingest stores the batches a
/// stream received together in one transaction).
const GROUP: usize = 4;

/// Seconds between cycles (the default ping interval).
const INTERVAL: i64 = 10;

/// Interfaces of each SNMP device, and polls per SNMP batch.
const INTERFACES: u32 = 48;
const SNMP_BATCH: usize = 50;

const USAGE: &str = "store_bench [--devices N] [--hours 1-24] [--snmp-devices N]\n\
    --devices N       devices probed every 10 s (default 1000; 0 skips probe results)\n\
    --hours N         hours of data, one day at most (default 24)\n\
    --snmp-devices N  48-interface devices polled every 60 s (default 100; 0 skips SNMP)";

struct Args {
    devices: usize,
    hours: u64,
    snmp_devices: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        devices: 1_000,
        hours: 24,
        snmp_devices: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--devices" => args.devices = value()?.parse()?,
            "--hours" => args.hours = value()?.parse()?,
            "--snmp-devices" => args.snmp_devices = value()?.parse()?,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument: {other}\n{USAGE}"),
        }
    }
    if !(1..=24).contains(&args.hours) {
        bail!("--hours must be 1 to 24");
    }
    Ok(args)
}

/// One cycle's results for every device, `at` plus a spread over the minute.
fn cycle_rows(devices: &[Uuid], cycle: u64, start: DateTime<Utc>) -> Vec<ProbeRow> {
    let at = start + TimeDelta::seconds(cycle as i64 * INTERVAL);
    let spread = INTERVAL * 1_000_000 / devices.len().max(1) as i64;
    devices
        .iter()
        .enumerate()
        .map(|(i, device)| {
            let rtt = 800 + (i as u32 * 37 + cycle as u32 * 11) % 4000;
            let lost = (i as u64 + cycle).is_multiple_of(50);
            ProbeRow {
                device_id: *device,
                probed_at: at + TimeDelta::microseconds(i as i64 * spread + (i as i64 % 997)),
                result: v1::ProbeResult {
                    device_id: device.to_string(),
                    cycle_id: 1_000 + cycle,
                    batch_id: format!("{}-{}", 1_000 + cycle, i / BATCH),
                    sent: 3,
                    received: if lost { 2 } else { 3 },
                    loss_percent: if lost { 100.0 / 3.0 } else { 0.0 },
                    rtt_min_us: Some(rtt - 100),
                    rtt_avg_us: Some(rtt),
                    rtt_max_us: Some(rtt + 100),
                    rtt_stddev_us: Some(40),
                    outcome: v1::ProbeOutcome::Ok as i32,
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// Writes every cycle; returns the time spent in the store.
async fn write(
    store: &dyn AlertingStore,
    devices: &[Uuid],
    cycles: u64,
    start: DateTime<Utc>,
) -> anyhow::Result<Duration> {
    let mut spent = Duration::ZERO;
    for cycle in 0..cycles {
        let rows = cycle_rows(devices, cycle, start);
        let uids: Vec<String> = (0..rows.len().div_ceil(BATCH))
            .map(|_| Uuid::new_v4().to_string())
            .collect();
        let batches: Vec<BatchRows<'_>> = rows
            .chunks(BATCH)
            .zip(&uids)
            .map(|(rows, uid)| BatchRows {
                batch_uid: uid,
                executor_id: "ping-executor-1",
                rows,
            })
            .collect();
        let started = Instant::now();
        for group in batches.chunks(GROUP) {
            store.store_probe_batches(group).await?;
        }
        spent += started.elapsed();
    }
    Ok(spent)
}

/// Bytes and rows of one kind of stored data.
#[derive(Default)]
struct Size {
    bytes: u64,
    rows: u64,
}

impl Size {
    fn per_row(&self) -> f64 {
        self.bytes as f64 / self.rows.max(1) as f64
    }
}

/// The database a backend's store writes to, for measuring it.
enum Db {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        let sql = AssertSqlSafe(sql.to_string());
        Ok(match self {
            Db::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// The bytes of `table` with its indexes and TOAST (PostgreSQL: of its
    /// partitions; SQLite: its pages, the log checkpointed first), and
    /// `rows` (a count) of it.
    async fn size(&self, table: &str, rows: &str) -> anyhow::Result<Size> {
        let bytes: i64 = match self {
            Db::Pg(pool) => {
                sqlx::query_scalar(
                    "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::int8 \
                     FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
                     JOIN pg_namespace n ON n.oid = p.relnamespace \
                     WHERE p.relname = $1 AND n.nspname = 'alerting'",
                )
                .bind(table)
                .fetch_one(pool)
                .await?
            }
            Db::Sqlite(pool) => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
                sqlx::query_scalar(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat \
                     WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = ?1)",
                )
                .bind(table)
                .fetch_one(pool)
                .await?
            }
        };
        let rows = self.scalar(&format!("SELECT {rows} FROM {table}")).await?;
        Ok(Size {
            bytes: bytes as u64,
            rows: rows as u64,
        })
    }

    /// The bytes a column's values take (PostgreSQL: as stored,
    /// compressed or not).
    async fn column_bytes(&self, table: &str, column: &str) -> anyhow::Result<i64> {
        let sql = match self {
            Db::Pg(_) => {
                format!("SELECT coalesce(sum(pg_column_size({column})), 0)::int8 FROM {table}")
            }
            Db::Sqlite(_) => format!("SELECT coalesce(sum(length({column})), 0) FROM {table}"),
        };
        self.scalar(&sql).await
    }
}

struct Figures {
    results: u64,
    write: Duration,
    roll: Duration,
    raw: Size,
    minute: Size,
    hour: Size,
    expire: Duration,
}

impl Figures {
    fn print(&self, backend: &str) {
        let raw = self.raw.bytes as f64 / self.results as f64;
        let projected = raw * 8_640.0 * 7.0
            + self.minute.per_row() * 144.0 * 30.0
            + self.hour.per_row() * 400.0;
        println!(
            "{backend:<10} {:>9} results in {:>6.1} s = {:>7.0} results/s | raw {:>5.1} B/result \
             | 1-min {:>6.1} B/row ({} rows) | hourly {:>6.1} B/row ({} rows) | rollup {:>5.1} s \
             | projected {:>4.2} MB/device | expire of the day {:>5.2} s",
            self.results,
            self.write.as_secs_f64(),
            self.results as f64 / self.write.as_secs_f64(),
            raw,
            self.minute.per_row(),
            self.minute.rows,
            self.hour.per_row(),
            self.hour.rows,
            self.roll.as_secs_f64(),
            projected / 1e6,
            self.expire.as_secs_f64(),
        );
    }
}

/// Writes the day, rolls it up, measures.
async fn run<S: AlertingStore>(
    store: Arc<S>,
    db: &Db,
    devices: &[Uuid],
    cycles: u64,
    day: NaiveDate,
) -> anyhow::Result<Figures> {
    store.ensure_partitions(&[day]).await?;
    let start = day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let write = write(store.as_ref(), devices, cycles, start).await?;
    let started = Instant::now();
    let rolled = Roller::new(store.clone())
        .run(start + TimeDelta::days(2))
        .await?;
    let roll = started.elapsed();
    if rolled.days != 1 {
        bail!("rolled {rolled:?}: expected the whole day");
    }
    // Rows: results for the raw table, rows for the tiers.
    let raw = db
        .size("probe_raw", "CAST(coalesce(sum(results), 0) AS BIGINT)")
        .await?;
    let minute = db.size("probe_rollups_1m", "count(*)").await?;
    let hour = db.size("probe_rollups_1h", "count(*)").await?;
    let started = Instant::now();
    store
        .expire(Cutoffs::raw_only(day + TimeDelta::days(1)))
        .await?;
    Ok(Figures {
        results: raw.rows,
        write,
        roll,
        raw,
        minute,
        hour,
        expire: started.elapsed(),
    })
}

/// A fast, reproducible hash: the "random" in the generated traffic.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fraction in [0, 1) from a hash.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Interface `if_index` of SNMP device number `device` at `minute` of the
/// day, as the book stores it: rates from the counters (fractional bps),
/// utilisation over the speed, error and discard deltas.
fn interface_at(device: u64, if_index: u32, minute: i64) -> InterfaceSampleRow {
    let seed = mix(device << 8 | u64::from(if_index));
    let uplink = if_index > 44;
    let speed: u64 = if uplink {
        10_000_000_000
    } else {
        1_000_000_000
    };
    let down = !uplink && seed.is_multiple_of(3);
    let rated = minute > 0;
    // A working day's curve around a level of its own, noise on top.
    let hour = minute as f64 / 60.0;
    let curve = 0.25 + 0.75 * (-((hour - 14.0) / 4.0).powi(2)).exp();
    let level = if uplink {
        0.05 + 0.25 * unit(seed)
    } else {
        0.3 * unit(seed).powi(3)
    };
    let noise = |salt: u64| 0.8 + 0.4 * unit(mix(seed ^ (minute as u64) << 16 ^ salt));
    let bps = |salt: u64, share: f64| {
        (rated && !down).then(|| speed as f64 * level * curve * share * noise(salt))
    };
    let (in_bps, out_bps) = (bps(1, 1.0), bps(2, 0.4));
    let status = v1::InterfaceStatus {
        if_index,
        admin_status: 1,
        oper_status: if down { 2 } else { 1 },
        speed_bps: Some(speed),
        in_bps: in_bps.or(rated.then_some(0.0)),
        out_bps: out_bps.or(rated.then_some(0.0)),
        in_utilisation_percent: in_bps
            .or(rated.then_some(0.0))
            .map(|b| b / speed as f64 * 100.0),
        out_utilisation_percent: out_bps
            .or(rated.then_some(0.0))
            .map(|b| b / speed as f64 * 100.0),
        ..Default::default()
    };
    // Errors on about one sample in 500, discards on busy uplinks.
    let event = mix(seed ^ minute as u64);
    let errors = i64::from(!down && event.is_multiple_of(500)) * (1 + (event >> 20) as i64 % 5);
    let discards = i64::from(uplink && curve > 0.9 && event.is_multiple_of(7))
        * (1 + (event >> 24) as i64 % 50);
    let deltas = [errors, 0, 0, discards].map(|d| rated.then_some(d));
    InterfaceSampleRow::of(&status, deltas, i32::from(!rated))
}

/// What a Cisco switch's profile returns besides its interfaces.
fn poll_sample(device: u64, minute: i64) -> v1::SnmpSample {
    use v1::scalar_value::Value;
    let scalar = |oid: &str, name: &str, instance: &str, value| v1::ScalarValue {
        oid: oid.into(),
        name: name.into(),
        instance: instance.into(),
        value: Some(value),
        exception: 0,
    };
    let uptime = 123_456_789 + minute as u32 * 6_000;
    let load = |salt| Value::Gauge32((mix(device ^ minute as u64 ^ salt) % 30) as u32);
    v1::SnmpSample {
        cycle_id: 10_000 + minute as u64,
        duration_ms: 300 + (mix(device ^ minute as u64) % 900) as u32,
        sys_uptime_ticks: Some(uptime),
        outcome: v1::SnmpOutcome::Ok as i32,
        profile: "cisco".into(),
        requests_sent: 6,
        values: vec![
            scalar(
                "1.3.6.1.2.1.1.1.0",
                "sysDescr",
                "0",
                Value::Text(
                    "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version \
                     15.2(7)E4, RELEASE SOFTWARE (fc2) Technical Support: \
                     http://www.cisco.com/techsupport Copyright (c) 1986-2021 by Cisco \
                     Systems, Inc. Compiled Thu 11-Feb-21 09:48 by prod_rel_team"
                        .into(),
                ),
            ),
            scalar(
                "1.3.6.1.2.1.1.2.0",
                "sysObjectID",
                "0",
                Value::ObjectId("1.3.6.1.4.1.9.1.1208".into()),
            ),
            scalar(
                "1.3.6.1.2.1.1.3.0",
                "sysUpTime",
                "0",
                Value::Timeticks(uptime),
            ),
            scalar(
                "1.3.6.1.2.1.1.5.0",
                "sysName",
                "0",
                Value::Text(format!("tbilisi-{device:03}-sw1")),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.109.1.1.1.1.6.1",
                "cpmCPUTotal5secRev",
                "1",
                load(1),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.109.1.1.1.1.7.1",
                "cpmCPUTotal1minRev",
                "1",
                load(2),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.109.1.1.1.1.8.1",
                "cpmCPUTotal5minRev",
                "1",
                load(3),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.48.1.1.1.2.1",
                "ciscoMemoryPoolName",
                "1",
                Value::Text("Processor".into()),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.48.1.1.1.2.2",
                "ciscoMemoryPoolName",
                "2",
                Value::Text("I/O".into()),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.48.1.1.1.5.1",
                "ciscoMemoryPoolUsed",
                "1",
                Value::Gauge32(61_234_567),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.48.1.1.1.5.2",
                "ciscoMemoryPoolUsed",
                "2",
                Value::Gauge32(12_345_678),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.48.1.1.1.6.1",
                "ciscoMemoryPoolFree",
                "1",
                Value::Gauge32(212_345_678),
            ),
            scalar(
                "1.3.6.1.4.1.9.9.48.1.1.1.6.2",
                "ciscoMemoryPoolFree",
                "2",
                Value::Gauge32(21_234_567),
            ),
        ],
        ..Default::default()
    }
}

struct SnmpFigures {
    polls: u64,
    write: Duration,
    roll: Duration,
    raw: Size,
    /// Bytes of the polls' outcome and scalar values.
    poll_bytes: i64,
    hour: Size,
    /// Interface hours in the hourly rows.
    entries: u64,
}

impl SnmpFigures {
    fn print(&self, backend: &str) {
        let samples = self.polls as f64 * f64::from(INTERFACES);
        let per_poll = self.raw.bytes as f64 / self.polls as f64;
        let projected = per_poll * 1_440.0 * 7.0 + self.hour.per_row() * 400.0;
        println!(
            "{backend:<10} {:>9} polls in {:>6.1} s = {:>6.0} polls/s | raw {:>5.1} B/interface \
             sample ({:>6.1} B/poll, of which scalars {:>5.1}) | hourly {:>5.1} B/entry, \
             {:>6.0} B/row ({} rows) | rollup {:>5.1} s | projected {:>5.2} MB/device",
            self.polls,
            self.write.as_secs_f64(),
            self.polls as f64 / self.write.as_secs_f64(),
            self.raw.bytes as f64 / samples,
            per_poll,
            self.poll_bytes as f64 / self.polls as f64,
            self.hour.bytes as f64 / self.entries.max(1) as f64,
            self.hour.per_row(),
            self.hour.rows,
            self.roll.as_secs_f64(),
            projected / 1e6,
        );
    }
}

/// Polls every SNMP device every minute of `hours`, in batches; rolls
/// the day into the hourly tier; measures.
async fn run_snmp<S: AlertingStore + SnmpStore>(
    store: Arc<S>,
    db: &Db,
    devices: &[Uuid],
    hours: u64,
    day: NaiveDate,
) -> anyhow::Result<SnmpFigures> {
    store.ensure_partitions(&[day]).await?;
    let start = day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let mut write = Duration::ZERO;
    for minute in 0..(hours as i64 * 60) {
        let samples: Vec<v1::SnmpSample> = (0..devices.len() as u64)
            .map(|d| poll_sample(d, minute))
            .collect();
        let polls: Vec<PollRow<'_>> = devices
            .iter()
            .zip(&samples)
            .enumerate()
            .map(|(d, (device_id, sample))| PollRow {
                device_id: *device_id,
                // Spread over the minute as a poller's batches are.
                polled_at: start
                    + TimeDelta::minutes(minute)
                    + TimeDelta::milliseconds(d as i64 * 50_000 / devices.len() as i64),
                sample,
                interfaces: (1..=INTERFACES)
                    .map(|i| interface_at(d as u64, i, minute))
                    .collect(),
            })
            .collect();
        let started = Instant::now();
        for chunk in polls.chunks(SNMP_BATCH) {
            let uid = Uuid::new_v4().to_string();
            store
                .store_snmp_batch(SnmpBatch {
                    batch_uid: &uid,
                    executor_id: "snmp-poller-1",
                    polls: chunk,
                    interfaces: &[],
                    devices: &[],
                })
                .await?;
        }
        write += started.elapsed();
    }
    let started = Instant::now();
    let snmp: Arc<dyn SnmpStore> = store.clone();
    let rolled = Roller::new(store.clone())
        .with_snmp(snmp.clone())
        .run(start + TimeDelta::days(2))
        .await?;
    let roll = started.elapsed();
    if rolled.interface_days != 1 {
        bail!("rolled {rolled:?}: expected the whole day");
    }
    let raw = db.size("snmp_raw", "count(*)").await?;
    let poll_bytes = db.column_bytes("snmp_raw", "poll").await?;
    let hour = db.size("interface_rollups_1h", "count(*)").await?;
    let mut entries = 0u64;
    let mut after = None;
    loop {
        let rows = snmp
            .interface_rollups(None, (start, start + TimeDelta::days(1)), after, 1_000)
            .await?;
        entries += rows
            .iter()
            .flat_map(|r| &r.interfaces)
            .map(|i| i.hours.len() as u64)
            .sum::<u64>();
        match rows.last() {
            Some(last) if rows.len() == 1_000 => after = Some((last.device_id, last.start)),
            _ => break,
        }
    }
    Ok(SnmpFigures {
        polls: raw.rows,
        write,
        roll,
        raw,
        poll_bytes,
        hour,
        entries,
    })
}

/// Both benchmarks on one backend, each on a store of its own.
async fn bench<S, F>(
    args: &Args,
    ids: &[Uuid],
    snmp_ids: &[Uuid],
    day: NaiveDate,
    backend: &str,
    mut open: F,
) -> anyhow::Result<()>
where
    S: AlertingStore + SnmpStore,
    F: AsyncFnMut() -> anyhow::Result<(Arc<S>, Db)>,
{
    if args.devices > 0 {
        let (store, db) = open().await?;
        let cycles = args.hours * 3_600 / INTERVAL as u64;
        run(store, &db, ids, cycles, day).await?.print(backend);
    }
    if args.snmp_devices > 0 {
        let (store, db) = open().await?;
        run_snmp(store, &db, snmp_ids, args.hours, day)
            .await?
            .print(backend);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let cycles = args.hours * 3_600 / INTERVAL as u64;
    let ids: Vec<Uuid> = (0..args.devices).map(|_| Uuid::new_v4()).collect();
    let snmp_ids: Vec<Uuid> = (0..args.snmp_devices).map(|_| Uuid::new_v4()).collect();
    // A past day, so every cycle falls on it and the day rolls up whole.
    let day = Utc::now().date_naive() - TimeDelta::days(3);
    println!(
        "{} devices × {cycles} {INTERVAL}-second cycles, {BATCH}-result batches, {GROUP} per transaction; \
         {} SNMP devices × {INTERFACES} interfaces × {} 60-second polls, {SNMP_BATCH} polls per batch",
        args.devices,
        args.snmp_devices,
        args.hours * 60,
    );
    let mut databases = Vec::new();
    let postgres = async || {
        let database = TestDatabase::create().await?;
        let store = Arc::new(PgStore::connect(database.url()).await?);
        let db = Db::Pg(store.pool().clone());
        databases.push(database);
        Ok((store, db))
    };
    bench(&args, &ids, &snmp_ids, day, "postgres", postgres).await?;
    let mut files = Vec::new();
    let sqlite = async || {
        let file = std::env::temp_dir().join(format!("netward-store-bench-{}.db", Uuid::new_v4()));
        let store = Arc::new(SqliteStore::connect(&format!("sqlite://{}", file.display())).await?);
        let db = Db::Sqlite(store.pool().clone());
        files.push(file);
        Ok((store, db))
    };
    let done = bench(&args, &ids, &snmp_ids, day, "sqlite", sqlite).await;
    for file in &files {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
    done
}

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
//! `cargo run --release -p netward-alerting --example store_bench -- --devices 1000 --hours 24`
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
use netward_alerting::store::{AlertingStore, BatchRows, Cutoffs, PgStore, ProbeRow, SqliteStore};
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

/// Results per `ResultBatch`, as executors send them.
const BATCH: usize = 500;
/// Batches per `store_probe_batches` call (ingest stores the batches a
/// stream received together in one transaction).
const GROUP: usize = 4;

/// Seconds between cycles (the default ping interval).
const INTERVAL: i64 = 10;

fn args() -> anyhow::Result<(usize, u64)> {
    let (mut devices, mut hours) = (1_000usize, 24u64);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--devices" => devices = value()?.parse()?,
            "--hours" => hours = value()?.parse()?,
            other => bail!("unknown argument: {other} (try --devices N --hours N)"),
        }
    }
    if devices == 0 || !(1..=24).contains(&hours) {
        bail!("--devices must be at least 1 and --hours 1 to 24");
    }
    Ok((devices, hours))
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

/// Writes the day, rolls it up, measures; `size` measures a table family.
async fn run<S, F>(
    store: Arc<S>,
    devices: &[Uuid],
    cycles: u64,
    day: NaiveDate,
    size: F,
) -> anyhow::Result<Figures>
where
    S: AlertingStore,
    F: AsyncFn(&'static str) -> anyhow::Result<Size>,
{
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
    let raw = size("probe_raw").await?;
    let minute = size("probe_rollups_1m").await?;
    let hour = size("probe_rollups_1h").await?;
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

async fn postgres(devices: &[Uuid], cycles: u64, day: NaiveDate) -> anyhow::Result<Figures> {
    let database = TestDatabase::create().await?;
    let store = Arc::new(PgStore::connect(database.url()).await?);
    let pool = store.pool().clone();
    run(store, devices, cycles, day, async |table| {
        // Rows: results for the raw table, rows for the tiers.
        let rows_sql = if table == "probe_raw" {
            "SELECT coalesce(sum(results), 0)::int8 FROM probe_raw".to_string()
        } else {
            format!("SELECT count(*) FROM {table}")
        };
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(rows_sql))
            .fetch_one(&pool)
            .await?;
        let bytes: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::int8 FROM pg_inherits i \
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE p.relname = $1 AND n.nspname = 'alerting'",
        )
        .bind(table)
        .fetch_one(&pool)
        .await?;
        Ok(Size {
            bytes: bytes as u64,
            rows: rows as u64,
        })
    })
    .await
}

async fn sqlite(devices: &[Uuid], cycles: u64, day: NaiveDate) -> anyhow::Result<Figures> {
    let file = std::env::temp_dir().join(format!("netward-store-bench-{}.db", Uuid::new_v4()));
    let figures = async {
        let store = Arc::new(SqliteStore::connect(&format!("sqlite://{}", file.display())).await?);
        let pool = store.pool().clone();
        run(store, devices, cycles, day, async |table| {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await?;
            let rows_sql = if table == "probe_raw" {
                "SELECT coalesce(sum(results), 0) FROM probe_raw".to_string()
            } else {
                format!("SELECT count(*) FROM {table}")
            };
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(rows_sql))
                .fetch_one(&pool)
                .await?;
            // dbstat: the pages of the table and its indexes.
            let bytes: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat \
                 WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = ?1)",
            )
            .bind(table)
            .fetch_one(&pool)
            .await?;
            Ok(Size {
                bytes: bytes as u64,
                rows: rows as u64,
            })
        })
        .await
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    figures
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (devices, hours) = args()?;
    let cycles = hours * 3_600 / INTERVAL as u64;
    let ids: Vec<Uuid> = (0..devices).map(|_| Uuid::new_v4()).collect();
    // A past day, so every cycle falls on it and the day rolls up whole.
    let day = Utc::now().date_naive() - TimeDelta::days(3);
    println!(
        "{devices} devices × {cycles} {INTERVAL}-second cycles, {BATCH}-result batches, {GROUP} per transaction"
    );
    let postgres = postgres(&ids, cycles, day).await?;
    postgres.print("postgres");
    let sqlite = sqlite(&ids, cycles, day).await?;
    sqlite.print("sqlite");
    Ok(())
}

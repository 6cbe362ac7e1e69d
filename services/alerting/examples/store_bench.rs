//! Benchmark of alerting's store on both backends (not a test): the same
//! probe results, written through `AlertingStore::store_probe_batches` in
//! groups of 500-result batches, into a fresh PostgreSQL database and a
//! fresh SQLite file. Prints, per backend, results/s of the writes (raw rows
//! and their one-minute rollups, as ingest writes them), bytes on disk per
//! stored result (PostgreSQL: `pg_total_relation_size` of the
//! `probe_results` partitions, indexes included; SQLite: the day tables'
//! pages, and the whole file after a checkpoint), the rollups' share, and
//! how long `expire` took to drop the day.
//!
//! `cargo run --release -p netward-alerting --example store_bench -- --devices 10000 --results 1000000`
//! One result per device per minute (a cycle), as a one-minute cycle writes
//! them. PostgreSQL comes from `NETWARD_TEST_DATABASE_URL` (default the
//! local server as user postgres); its database is dropped at the end, and
//! the SQLite file is written in the temporary directory and deleted.
//!
//! Measured here (release, 2 cores shared with other builds, load ~9):
//!
//! | backend | results/s | raw B/result | rollups B/result | all B/result | expire of the day |
//! |---|---|---|---|---|---|
//! | SQLite | 3,122 | 85.4 | 83.1 | 168.9 (file) | 2.98 s (100 batched deletes + DROP) |
//! | PostgreSQL | 32,604 | 163.3 | 156.3 | 320.4 | 0.59 s (DROP partition) |
//!
//! SQLite's rate falls as the day grows (6,700/s at 100,000 results): each
//! commit writes every leaf page it touched to the WAL, and device-ordered
//! keys (the day table's and the rollups') touch about one page per result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use netward_alerting::store::{AlertingStore, BatchRows, PgStore, ProbeRow, SqliteStore};
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

/// Results per `ResultBatch`, as executors send them.
const BATCH: usize = 500;
/// Batches per `store_probe_batches` call (ingest stores the batches a
/// stream received together in one transaction).
const GROUP: usize = 4;

fn args() -> anyhow::Result<(usize, usize)> {
    let (mut devices, mut results) = (10_000usize, 1_000_000usize);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--devices" => devices = value()?.parse()?,
            "--results" => results = value()?.parse()?,
            other => bail!("unknown argument: {other} (try --devices N --results N)"),
        }
    }
    if devices == 0 || results < devices {
        bail!("--devices must be at least 1 and --results at least --devices");
    }
    Ok((devices, results))
}

/// One cycle's results for every device, `at` plus a spread over the minute.
fn cycle_rows(devices: &[Uuid], cycle: u64, start: DateTime<Utc>) -> Vec<ProbeRow> {
    let at = start + TimeDelta::minutes(cycle as i64);
    let spread = 60_000_000 / devices.len().max(1) as i64;
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

struct Figures {
    results: u64,
    write: Duration,
    raw_bytes: u64,
    rollup_bytes: u64,
    total_bytes: u64,
    expire: Duration,
}

impl Figures {
    fn print(&self, backend: &str) {
        let per = |bytes: u64| bytes as f64 / self.results as f64;
        println!(
            "{backend:<10} {:>9} results in {:>7.1} s = {:>7.0} results/s | raw {:>6.1} B/result \
             | rollups {:>6.1} B/result | all tables {:>6.1} B/result | expire of the day {:>6.2} s",
            self.results,
            self.write.as_secs_f64(),
            self.results as f64 / self.write.as_secs_f64(),
            per(self.raw_bytes),
            per(self.rollup_bytes),
            per(self.total_bytes),
            self.expire.as_secs_f64(),
        );
    }
}

async fn postgres(devices: &[Uuid], cycles: u64, day: NaiveDate) -> anyhow::Result<Figures> {
    let database = TestDatabase::create().await?;
    let store = Arc::new(PgStore::connect(database.url()).await?);
    store.ensure_partitions(&[day]).await?;
    let start = day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let write = write(store.as_ref(), devices, cycles, start).await?;
    let pool = store.pool();
    let results: i64 = sqlx::query_scalar("SELECT count(*) FROM probe_results")
        .fetch_one(pool)
        .await?;
    let raw_bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::int8 FROM pg_inherits i \
         JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
         WHERE p.relname = 'probe_results' AND n.nspname = 'alerting'",
    )
    .fetch_one(pool)
    .await?;
    let rollup_bytes: i64 =
        sqlx::query_scalar("SELECT pg_total_relation_size('alerting.probe_rollups')")
            .fetch_one(pool)
            .await?;
    let total_bytes: i64 = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(c.oid))::int8 FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'alerting' AND c.relkind IN ('r', 'm')",
    )
    .fetch_one(pool)
    .await?;
    let started = Instant::now();
    store
        .expire(day + TimeDelta::days(1), DateTime::UNIX_EPOCH)
        .await?;
    let expire = started.elapsed();
    Ok(Figures {
        results: results as u64,
        write,
        raw_bytes: raw_bytes as u64,
        rollup_bytes: rollup_bytes as u64,
        total_bytes: total_bytes as u64,
        expire,
    })
}

async fn sqlite(devices: &[Uuid], cycles: u64, day: NaiveDate) -> anyhow::Result<Figures> {
    let file = std::env::temp_dir().join(format!("netward-store-bench-{}.db", Uuid::new_v4()));
    let figures = async {
        let store = SqliteStore::connect(&format!("sqlite://{}", file.display())).await?;
        store.ensure_partitions(&[day]).await?;
        let start = day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
        let write = write(&store, devices, cycles, start).await?;
        let pool = store.pool();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await?;
        let results: i64 = sqlx::query_scalar("SELECT count(*) FROM probe_results")
            .fetch_one(pool)
            .await?;
        // dbstat: the pages of each table and index.
        let raw_bytes: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'probe_results_%'",
        )
        .fetch_one(pool)
        .await?;
        let rollup_bytes: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'probe_rollups%' \
             OR name = 'sqlite_autoindex_probe_rollups_1'",
        )
        .fetch_one(pool)
        .await?;
        let total_bytes = std::fs::metadata(&file)?.len();
        let started = Instant::now();
        store
            .expire(day + TimeDelta::days(1), DateTime::UNIX_EPOCH)
            .await?;
        let expire = started.elapsed();
        anyhow::Ok(Figures {
            results: results as u64,
            write,
            raw_bytes: raw_bytes as u64,
            rollup_bytes: rollup_bytes as u64,
            total_bytes,
            expire,
        })
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    figures
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (devices, results) = args()?;
    let cycles = (results / devices) as u64;
    let ids: Vec<Uuid> = (0..devices).map(|_| Uuid::new_v4()).collect();
    // A past day, so every cycle falls on it (at most 1,440 of them).
    let day = Utc::now().date_naive() - TimeDelta::days(2);
    if cycles > 1_440 {
        bail!("at most 1,440 cycles (one day of one-minute cycles): raise --devices");
    }
    println!(
        "{devices} devices × {cycles} one-minute cycles, {BATCH}-result batches, {GROUP} per transaction"
    );
    let sqlite = sqlite(&ids, cycles, day).await?;
    sqlite.print("sqlite");
    let postgres = postgres(&ids, cycles, day).await?;
    postgres.print("postgres");
    Ok(())
}

//! The SQLite store of the embedded default (`netward up`): one file in WAL
//! mode, every write in a `BEGIN IMMEDIATE` transaction (SQLite has one
//! writer at a time; taking the lock up front means a busy writer waits for
//! `busy_timeout` instead of failing on a stale snapshot). Instants are
//! INTEGER Unix microseconds, UUIDs 16-byte BLOBs.
//!
//! SQLite has no partitions: raw probe results go in one WITHOUT ROWID table
//! per UTC day, `probe_results_YYYYMMDD`, behind a view `probe_results` that
//! is their union (see `migrations-sqlite/0001_results_and_state.sql` for
//! why). Here a "partition" is such a day table: `ensure_partitions` creates
//! them, `partitions` lists them, and `expire` empties one in short batched
//! deletes and then drops it. The SNMP raw tables are plain tables whose old
//! rows `expire` deletes the same way.

mod alerts;
mod notifications;
mod silences;
mod snmp;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;

use netward_shared::proto::v1;

use super::postgres::{partition_day, partition_of};
use super::{
    AlertingStore, BatchRows, ChangeRow, HistoryRow, PRUNE_BATCH, ProbeRow, Prunable, Pruned,
    StateRow, StoreResult, Stored,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The most SELECTs SQLite joins in one compound (`UNION ALL`) select
/// (`SQLITE_MAX_COMPOUND_SELECT` is 500); the view nests groups of these.
const DAYS_PER_UNION: usize = 400;

/// The columns of a day table, as the view shows them (`seq` only tells
/// apart results of one device stamped with the same microsecond).
const RESULT_COLUMNS: &str = "device_id, probed_at, cycle_id, batch_id, executor_id, sent, \
     received, loss_percent, rtt_min_us, rtt_avg_us, rtt_max_us, rtt_stddev_us, outcome, \
     retries_sent";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file of `url`
    /// (`sqlite://PATH` or `sqlite:PATH`) in WAL mode and migrates it.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction, holding SQLite's write lock from its start.
    async fn write(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Rebuilds the `probe_results` view over the day tables there are.
    async fn rebuild_view(tx: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let days = day_tables(&mut *tx).await?;
        sqlx::query("DROP VIEW IF EXISTS probe_results")
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(view_sql(&days)))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Deletes rows of `table` whose `column` is before `cutoff`,
    /// [`PRUNE_BATCH`] rows per transaction, found by `key` (its rowid or
    /// primary key columns); returns how many went.
    async fn delete_before(
        &self,
        table: &str,
        key: &str,
        column: &str,
        cutoff: i64,
    ) -> StoreResult<u64> {
        // Names are constants or built from dates: nothing from input.
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN \
             (SELECT {key} FROM {table} WHERE {column} < ?1 LIMIT ?2)"
        );
        let mut deleted = 0;
        loop {
            let mut tx = self.write().await?;
            let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(cutoff)
                .bind(i64::from(PRUNE_BATCH))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            deleted += rows;
            if rows < u64::from(PRUNE_BATCH) {
                return Ok(deleted);
            }
        }
    }
}

/// An instant as stored: Unix microseconds.
fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored instant (out-of-range values, which this store never writes,
/// read as the epoch).
fn instant(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Rows bound as one JSON array of arrays (serde writes a tuple as an
/// array), which the statement reads back with `json_each`: one short
/// statement, prepared once per connection, whatever the number of rows
/// (a multi-row VALUES list is a new statement for every row count, and
/// preparing one of a thousand rows takes longer than running it).
fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The day tables there are, oldest first.
async fn day_tables(conn: &mut SqliteConnection) -> Result<Vec<NaiveDate>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'probe_results\\_%' ESCAPE '\\'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut days: Vec<NaiveDate> = names.iter().filter_map(|n| partition_day(n)).collect();
    days.sort();
    Ok(days)
}

/// The `probe_results` view over `days` (an empty one without days).
fn view_sql(days: &[NaiveDate]) -> String {
    if days.is_empty() {
        return format!(
            "CREATE VIEW probe_results AS SELECT {} WHERE 0",
            RESULT_COLUMNS
                .split(", ")
                .map(|c| format!("NULL AS {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let groups: Vec<String> = days
        .chunks(DAYS_PER_UNION)
        .map(|group| {
            let union = group
                .iter()
                .map(|day| {
                    format!(
                        "SELECT {RESULT_COLUMNS} FROM {}",
                        partition_of("probe_results", *day)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            format!("SELECT * FROM ({union})")
        })
        .collect();
    format!(
        "CREATE VIEW probe_results AS {}",
        groups.join(" UNION ALL ")
    )
}

/// A day table: clustered by device (no other index), STRICT like the rest.
fn day_table_sql(day: NaiveDate) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} ( \
             device_id      BLOB NOT NULL, \
             probed_at      INTEGER NOT NULL, \
             seq            INTEGER NOT NULL, \
             cycle_id       INTEGER NOT NULL, \
             batch_id       TEXT NOT NULL, \
             executor_id    TEXT NOT NULL, \
             sent           INTEGER NOT NULL, \
             received       INTEGER NOT NULL, \
             loss_percent   REAL NOT NULL, \
             rtt_min_us     INTEGER, \
             rtt_avg_us     INTEGER, \
             rtt_max_us     INTEGER, \
             rtt_stddev_us  INTEGER, \
             outcome        INTEGER NOT NULL, \
             retries_sent   INTEGER NOT NULL, \
             PRIMARY KEY (device_id, probed_at, seq) \
         ) STRICT, WITHOUT ROWID",
        partition_of("probe_results", day)
    )
}

/// The insert of results into the day table `table`, from a JSON array of
/// [`ResultJson`]. Each row's `seq` is its rank among the statement's rows
/// with the same (device, instant), computed by the caller, plus one past
/// the highest already stored, so the key is unique however the results
/// were stamped.
fn insert_results_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (device_id, probed_at, seq, cycle_id, batch_id, executor_id, sent, \
             received, loss_percent, rtt_min_us, rtt_avg_us, rtt_max_us, rtt_stddev_us, outcome, \
             retries_sent) \
         SELECT unhex(r.value ->> 0, '-'), r.value ->> 1, \
                r.value ->> 2 + coalesce((SELECT max(p.seq) + 1 FROM {table} p \
                    WHERE p.device_id = unhex(r.value ->> 0, '-') AND p.probed_at = r.value ->> 1), 0), \
                r.value ->> 3, r.value ->> 4, r.value ->> 5, r.value ->> 6, r.value ->> 7, \
                r.value ->> 8, r.value ->> 9, r.value ->> 10, r.value ->> 11, r.value ->> 12, \
                r.value ->> 13, r.value ->> 14 \
         FROM json_each(?1) AS r"
    )
}

/// A result as bound: device, probed_at, rank, cycle_id, batch_id,
/// executor_id, sent, received, loss_percent, rtt min/avg/max/stddev,
/// outcome, retries_sent.
type ResultJson<'a> = (
    Uuid,
    i64,
    i64,
    i64,
    &'a str,
    &'a str,
    u32,
    u32,
    f64,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    i32,
    u32,
);

/// Records a batch's idempotency key in the batch's transaction; false
/// when it was stored before (a replay: the caller stores nothing). The
/// SQLite twin of `postgres::claim_batch`.
pub(crate) async fn claim_batch(
    tx: &mut SqliteConnection,
    batch_uid: &str,
    executor_id: &str,
    results: usize,
) -> Result<bool, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO ingested_batches (batch_uid, executor_id, results) VALUES (?1, ?2, ?3) \
         ON CONFLICT (batch_uid) DO NOTHING",
    )
    .bind(batch_uid)
    .bind(executor_id)
    .bind(i64::try_from(results).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(fresh == 1)
}

fn opt_i64(value: Option<u32>) -> Option<i64> {
    value.map(i64::from)
}

/// One minute of one device, merged from the rows of a batch.
#[derive(Default)]
struct Rollup {
    probes: i64,
    sent: i64,
    received: i64,
    rtt_samples: i64,
    rtt_sum: i64,
    rtt_min: Option<i64>,
    rtt_max: Option<i64>,
}

fn state_of(code: i64) -> v1::DeviceState {
    i32::try_from(code)
        .ok()
        .and_then(|c| v1::DeviceState::try_from(c).ok())
        .unwrap_or(v1::DeviceState::Unknown)
}

/// A `state_changes` row as selected: from, to, maintenance, reason,
/// changed_at, cycle_id, stale.
type ChangeColumns = (i64, i64, bool, String, i64, i64, bool);

const CHANGE_COLUMNS: &str =
    "from_state, to_state, maintenance, reason, changed_at, cycle_id, stale";

fn change_row(
    device_id: Uuid,
    (from, to, maintenance, reason, changed_at, cycle, stale): ChangeColumns,
) -> ChangeRow {
    ChangeRow {
        device_id,
        from: state_of(from),
        to: state_of(to),
        maintenance,
        reason,
        changed_at: instant(changed_at),
        cycle_id: cycle.max(0) as u64,
        stale,
    }
}

/// One batch of [`Prunable`]: ?1 the cutoff (microseconds), ?2 the batch
/// size. Rows are picked by key and deleted in the same statement; the keep
/// rules are PostgreSQL's (`postgres::prune_sql`).
fn prune_sql(what: Prunable) -> &'static str {
    match what {
        // A row goes only when a newer one of its device is also before the
        // cutoff: each device keeps its state at the cutoff.
        Prunable::StateChanges => {
            "DELETE FROM state_changes WHERE id IN ( \
                 SELECT s.id FROM state_changes s \
                 WHERE s.changed_at < ?1 AND EXISTS ( \
                     SELECT 1 FROM state_changes n \
                     WHERE n.device_id = s.device_id AND n.changed_at < ?1 \
                       AND (n.changed_at, n.id) > (s.changed_at, s.id)) \
                 LIMIT ?2)"
        }
        Prunable::Alerts => {
            "DELETE FROM alerts WHERE id IN ( \
                 SELECT id FROM alerts WHERE state = 3 AND resolved_at < ?1 LIMIT ?2)"
        }
        // An open alert keeps its rows: resolving it looks for its firing.
        Prunable::Notifications => {
            "DELETE FROM notification_outbox WHERE id IN ( \
                 SELECT o.id FROM notification_outbox o \
                 WHERE o.state <> 1 AND o.created_at < ?1 AND NOT EXISTS ( \
                     SELECT 1 FROM alerts a WHERE a.id = o.alert_id AND a.state <> 3) \
                 LIMIT ?2)"
        }
        Prunable::Silences => {
            "DELETE FROM silences WHERE id IN ( \
                 SELECT id FROM silences WHERE ends_at < ?1 LIMIT ?2)"
        }
        Prunable::IdempotencyKeys => {
            "DELETE FROM ingested_batches WHERE batch_uid IN ( \
                 SELECT batch_uid FROM ingested_batches WHERE received_at < ?1 LIMIT ?2)"
        }
        Prunable::ProbeRollups => {
            "DELETE FROM probe_rollups WHERE (device_id, minute) IN ( \
                 SELECT device_id, minute FROM probe_rollups WHERE minute < ?1 LIMIT ?2)"
        }
        Prunable::InterfaceRollups => {
            "DELETE FROM interface_rollups WHERE (device_id, if_index, hour) IN ( \
                 SELECT device_id, if_index, hour FROM interface_rollups WHERE hour < ?1 LIMIT ?2)"
        }
    }
}

#[async_trait]
impl AlertingStore for SqliteStore {
    async fn history(
        &self,
        device_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<HistoryRow>> {
        type Row = (i64, i64, i64, i64, Option<i64>, Option<i64>, i64, i64);
        let step = step_seconds.max(60).saturating_mul(1_000_000);
        // Minutes are after 1970, so integer division floors as PostgreSQL's
        // floor(epoch / step) does.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT (minute / ?4) * ?4 AS bucket, sum(probes), sum(packets_sent), \
                    sum(packets_received), min(rtt_min_us), max(rtt_max_us), sum(rtt_sum_us), \
                    sum(rtt_samples) \
             FROM probe_rollups WHERE device_id = ?1 AND minute >= ?2 AND minute < ?3 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(device_id)
        .bind(micros(from))
        .bind(micros(to))
        .bind(step)
        .fetch_all(&self.pool)
        .await?;
        let clamp = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
        Ok(rows
            .into_iter()
            .map(
                |(time, probes, sent, received, min, max, sum, samples)| HistoryRow {
                    time: instant(time),
                    probes: clamp(probes),
                    packets_sent: sent.max(0) as u64,
                    packets_received: received.max(0) as u64,
                    rtt_min_us: min.map(clamp),
                    rtt_avg_us: (samples > 0).then(|| clamp(sum / samples)),
                    rtt_max_us: max.map(clamp),
                },
            )
            .collect())
    }

    async fn save_states(&self, states: &[StateRow], changes: &[ChangeRow]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        if !states.is_empty() {
            let rows: Vec<_> = states
                .iter()
                .map(|row| {
                    (
                        row.device_id,
                        row.state as i32,
                        micros(row.since),
                        &row.reason,
                        row.maintenance,
                        row.last_probe_at.map(micros),
                        row.last_outcome,
                        // PostgreSQL keeps a real (f32): the same precision here.
                        row.last_loss_percent.map(|l| f64::from(l as f32)),
                        row.last_rtt_avg_us,
                        row.last_cycle_id.min(i64::MAX as u64),
                        row.consecutive_failures,
                        row.memory.to_string(),
                    )
                })
                .collect();
            sqlx::query(
                "INSERT INTO device_state (device_id, state, since, reason, maintenance, \
                     last_probe_at, last_outcome, last_loss_percent, last_rtt_avg_us, \
                     last_cycle_id, consecutive_failures, memory) \
                 SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, \
                        value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, \
                        value ->> 9, value ->> 10, value ->> 11 \
                 FROM json_each(?1) WHERE true \
                 ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, \
                     since = excluded.since, reason = excluded.reason, \
                     maintenance = excluded.maintenance, last_probe_at = excluded.last_probe_at, \
                     last_outcome = excluded.last_outcome, \
                     last_loss_percent = excluded.last_loss_percent, \
                     last_rtt_avg_us = excluded.last_rtt_avg_us, \
                     last_cycle_id = excluded.last_cycle_id, \
                     consecutive_failures = excluded.consecutive_failures, \
                     memory = excluded.memory",
            )
            .bind(json_rows(&rows)?)
            .execute(&mut *tx)
            .await?;
        }
        if !changes.is_empty() {
            let rows: Vec<_> = changes
                .iter()
                .map(|change| {
                    (
                        change.device_id,
                        change.from as i32,
                        change.to as i32,
                        change.maintenance,
                        &change.reason,
                        micros(change.changed_at),
                        change.cycle_id.min(i64::MAX as u64),
                        change.stale,
                    )
                })
                .collect();
            // json_each yields the rows in order: ids follow the slice.
            sqlx::query(
                "INSERT INTO state_changes (device_id, from_state, to_state, maintenance, reason, \
                     changed_at, cycle_id, stale) \
                 SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, \
                        value ->> 4, value ->> 5, value ->> 6, value ->> 7 \
                 FROM json_each(?1) ORDER BY key",
            )
            .bind(json_rows(&rows)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn forget_states(&self, devices: &[Uuid]) -> StoreResult<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        sqlx::query(
            "DELETE FROM device_state WHERE device_id IN \
             (SELECT unhex(value, '-') FROM json_each(?1))",
        )
        .bind(json_rows(devices)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn states(&self) -> StoreResult<Vec<StateRow>> {
        type Row = (
            Uuid,
            i64,
            i64,
            String,
            bool,
            Option<i64>,
            i64,
            Option<f64>,
            Option<i64>,
            i64,
            i64,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT device_id, state, since, reason, maintenance, last_probe_at, last_outcome, \
                    last_loss_percent, last_rtt_avg_us, last_cycle_id, consecutive_failures, memory \
             FROM device_state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(
                    device_id,
                    state,
                    since,
                    reason,
                    maintenance,
                    last_probe_at,
                    outcome,
                    loss,
                    rtt,
                    cycle,
                    failures,
                    memory,
                )| {
                    let memory = serde_json::from_str(&memory)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                    Ok(StateRow {
                        device_id,
                        state: state_of(state),
                        since: instant(since),
                        reason,
                        maintenance,
                        last_probe_at: last_probe_at.map(instant),
                        last_outcome: i32::try_from(outcome).unwrap_or_default(),
                        last_loss_percent: loss,
                        last_rtt_avg_us: rtt.map(|r| r.clamp(0, i64::from(u32::MAX)) as u32),
                        last_cycle_id: cycle.max(0) as u64,
                        consecutive_failures: failures.clamp(0, i64::from(u32::MAX)) as u32,
                        memory,
                        stale: false,
                        last_result_at: None,
                    })
                },
            )
            .collect()
    }

    async fn changes(
        &self,
        device_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<ChangeRow>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM state_changes \
             WHERE device_id = ?1 AND changed_at >= ?2 AND changed_at < ?3 ORDER BY changed_at, id"
        );
        let rows = sqlx::query_as::<_, ChangeColumns>(AssertSqlSafe(sql))
            .bind(device_id)
            .bind(micros(from))
            .bind(micros(to))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| change_row(device_id, row))
            .collect())
    }

    async fn last_change_before(
        &self,
        device_id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<ChangeRow>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM state_changes \
             WHERE device_id = ?1 AND changed_at < ?2 ORDER BY changed_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query_as::<_, ChangeColumns>(AssertSqlSafe(sql))
            .bind(device_id)
            .bind(micros(at))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| change_row(device_id, row)))
    }

    async fn store_probe_batches(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>> {
        let mut tx = self.write().await?;
        // Each batch's key first: a replayed one is a duplicate and
        // contributes no rows.
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut days: BTreeMap<NaiveDate, Vec<(&str, &ProbeRow)>> = BTreeMap::new();
        for group in batches {
            if claim_batch(
                &mut tx,
                group.batch_uid,
                group.executor_id,
                group.rows.len(),
            )
            .await?
            {
                for row in group.rows {
                    days.entry(row.probed_at.date_naive())
                        .or_default()
                        .push((group.executor_id, row));
                }
                outcomes.push(Stored {
                    rows: u32::try_from(group.rows.len()).unwrap_or(u32::MAX),
                    duplicate: false,
                });
            } else {
                outcomes.push(Stored {
                    rows: 0,
                    duplicate: true,
                });
            }
        }

        let mut rollups: BTreeMap<(Uuid, i64), Rollup> = BTreeMap::new();
        for (day, rows) in &days {
            let table = partition_of("probe_results", *day);
            // The rank of each row among this statement's rows of the same
            // device and instant.
            let mut ranks: HashMap<(Uuid, i64), i64> = HashMap::new();
            let mut bound: Vec<ResultJson<'_>> = Vec::with_capacity(rows.len());
            for (executor_id, row) in rows {
                let r = &row.result;
                let at = micros(row.probed_at);
                let rank = ranks.entry((row.device_id, at)).or_insert(-1);
                *rank += 1;
                bound.push((
                    row.device_id,
                    at,
                    *rank,
                    r.cycle_id.min(i64::MAX as u64) as i64,
                    &r.batch_id,
                    executor_id,
                    r.sent,
                    r.received,
                    r.loss_percent,
                    r.rtt_min_us,
                    r.rtt_avg_us,
                    r.rtt_max_us,
                    r.rtt_stddev_us,
                    r.outcome,
                    r.retries_sent,
                ));

                let minute = at - at.rem_euclid(60_000_000);
                let rollup = rollups.entry((row.device_id, minute)).or_default();
                rollup.probes += 1;
                rollup.sent += i64::from(r.sent);
                rollup.received += i64::from(r.received);
                if let Some(avg) = r.rtt_avg_us {
                    rollup.rtt_samples += 1;
                    rollup.rtt_sum += i64::from(avg);
                }
                if let Some(min) = opt_i64(r.rtt_min_us) {
                    rollup.rtt_min = Some(rollup.rtt_min.map_or(min, |m| m.min(min)));
                }
                if let Some(max) = opt_i64(r.rtt_max_us) {
                    rollup.rtt_max = Some(rollup.rtt_max.map_or(max, |m| m.max(max)));
                }
            }
            sqlx::query(AssertSqlSafe(insert_results_sql(&table)))
                .bind(json_rows(&bound)?)
                .execute(&mut *tx)
                .await?;
        }

        if !rollups.is_empty() {
            let rows: Vec<_> = rollups
                .into_iter()
                .map(|((device, minute), r)| {
                    let Rollup {
                        probes,
                        sent,
                        received,
                        rtt_samples,
                        rtt_sum,
                        rtt_min,
                        rtt_max,
                    } = r;
                    (
                        device,
                        minute,
                        probes,
                        sent,
                        received,
                        rtt_samples,
                        rtt_sum,
                        rtt_min,
                        rtt_max,
                    )
                })
                .collect();
            // min()/max() of SQLite are NULL when either side is: coalesce
            // keeps the side that has a value, as LEAST/GREATEST do.
            sqlx::query(
                "INSERT INTO probe_rollups (device_id, minute, probes, packets_sent, \
                     packets_received, rtt_samples, rtt_sum_us, rtt_min_us, rtt_max_us) \
                 SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, \
                        value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8 \
                 FROM json_each(?1) WHERE true \
                 ON CONFLICT (device_id, minute) DO UPDATE SET \
                     probes = probes + excluded.probes, \
                     packets_sent = packets_sent + excluded.packets_sent, \
                     packets_received = packets_received + excluded.packets_received, \
                     rtt_samples = rtt_samples + excluded.rtt_samples, \
                     rtt_sum_us = rtt_sum_us + excluded.rtt_sum_us, \
                     rtt_min_us = coalesce(min(rtt_min_us, excluded.rtt_min_us), rtt_min_us, \
                                           excluded.rtt_min_us), \
                     rtt_max_us = coalesce(max(rtt_max_us, excluded.rtt_max_us), rtt_max_us, \
                                           excluded.rtt_max_us)",
            )
            .bind(json_rows(&rows)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn ensure_partitions(&self, days: &[NaiveDate]) -> StoreResult<()> {
        if days.is_empty() {
            return Ok(());
        }
        // Under the write lock: two instances on one file cannot race.
        let mut tx = self.write().await?;
        let existing = day_tables(&mut tx).await?;
        let missing: Vec<NaiveDate> = days
            .iter()
            .filter(|day| !existing.contains(day))
            .copied()
            .collect();
        if missing.is_empty() {
            return tx.commit().await;
        }
        for day in missing {
            sqlx::query(AssertSqlSafe(day_table_sql(day)))
                .execute(&mut *tx)
                .await?;
        }
        Self::rebuild_view(&mut tx).await?;
        tx.commit().await
    }

    async fn partitions(&self) -> StoreResult<Vec<NaiveDate>> {
        let mut conn = self.pool.acquire().await?;
        day_tables(&mut conn).await
    }

    async fn expire(
        &self,
        before: NaiveDate,
        rollups_before: DateTime<Utc>,
    ) -> StoreResult<Vec<NaiveDate>> {
        let old: Vec<NaiveDate> = self
            .partitions()
            .await?
            .into_iter()
            .filter(|day| *day < before)
            .collect();
        // Each old day is emptied in short transactions first, so the DROP
        // that follows has nothing left to walk: no statement holds the
        // write lock for long, however big the day was.
        for day in &old {
            let table = partition_of("probe_results", *day);
            self.delete_before(&table, "device_id, probed_at, seq", "probed_at", i64::MAX)
                .await?;
        }
        if !old.is_empty() {
            let mut tx = self.write().await?;
            for day in &old {
                let sql = format!(
                    "DROP TABLE IF EXISTS {}",
                    partition_of("probe_results", *day)
                );
                sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
            }
            Self::rebuild_view(&mut tx).await?;
            tx.commit().await?;
        }
        // The SNMP raw tables keep the same days.
        let raw_before = micros(midnight(before));
        for table in ["snmp_samples", "interface_samples"] {
            let rows = self
                .delete_before(table, "rowid", "polled_at", raw_before)
                .await?;
            if rows > 0 {
                tracing::info!(table, rows, %before, "pruned rows past the retention");
            }
        }
        // Keys a day longer than the rows, as in PostgreSQL: a replay that
        // no longer finds its key only carries results ingest skips.
        let keys_before = before.pred_opt().map(midnight).unwrap_or(rollups_before);
        for (what, cutoff) in [
            (Prunable::IdempotencyKeys, keys_before),
            (Prunable::ProbeRollups, rollups_before),
            (Prunable::InterfaceRollups, rollups_before),
        ] {
            let Pruned { rows, .. } = self.prune(what, cutoff, PRUNE_BATCH).await?;
            if rows > 0 {
                tracing::info!(table = what.table(), rows, %cutoff, "pruned rows past the retention");
            }
        }
        Ok(old)
    }

    async fn prune_batch(
        &self,
        what: Prunable,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let done = sqlx::query(prune_sql(what))
            .bind(micros(cutoff))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_nests_unions_past_sqlites_compound_limit() {
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let days: Vec<NaiveDate> = start.iter_days().take(DAYS_PER_UNION + 1).collect();
        let sql = view_sql(&days);
        assert_eq!(sql.matches("SELECT * FROM (").count(), 2);
        assert_eq!(
            sql.matches("FROM probe_results_").count(),
            DAYS_PER_UNION + 1
        );
        assert!(view_sql(&[]).ends_with("WHERE 0"));
    }

    #[test]
    fn rows_are_bound_as_json_arrays() {
        let device = Uuid::from_u128(1);
        let json = json_rows(&[(device, 2i64, None::<u32>, "a\"b", true)]).unwrap();
        assert_eq!(
            json,
            r#"[["00000000-0000-0000-0000-000000000001",2,null,"a\"b",true]]"#
        );
    }
}

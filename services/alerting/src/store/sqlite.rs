//! The SQLite store of the embedded default (`netward up`): one file in WAL
//! mode, every write in a `BEGIN IMMEDIATE` transaction (SQLite has one
//! writer at a time; taking the lock up front means a busy writer waits for
//! `busy_timeout` instead of failing on a stale snapshot). Instants are
//! INTEGER Unix microseconds, UUIDs 16-byte BLOBs.
//!
//! SQLite has no partitions: raw results and rollups (packed, few rows:
//! `tiers.rs`) and the SNMP raw tables are plain tables whose old rows
//! `expire` deletes in short batches; the days made ready for results are
//! listed in `raw_days`.

mod alerts;
mod notifications;
mod silences;
mod snmp;
mod tiers;
mod transitions;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;

use netward_shared::proto::v1;

use crate::availability::Transition;

use super::{
    AlertingStore, BatchRows, ChangeRow, Cutoffs, PRUNE_BATCH, Prunable, RollupRow, StateRow,
    StoreResult, Stored, StoredRaw, Tier,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

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
        let store = Self { pool };
        store.drop_legacy_day_tables().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction, holding SQLite's write lock from its start.
    async fn write(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
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
    }
}

#[async_trait]
impl AlertingStore for SqliteStore {
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

    async fn states_at(
        &self,
        devices: &[Uuid],
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Transition)>> {
        self.read_states_at(devices, at).await
    }

    async fn scan_changes(
        &self,
        devices: &[Uuid],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        visit: &mut (dyn FnMut(Uuid, Transition) + Send),
    ) -> StoreResult<u64> {
        self.scan_transitions(devices, from, to, visit).await
    }

    async fn store_probe_batches(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>> {
        self.store_packed(batches).await
    }

    async fn raw_rows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        device: Option<Uuid>,
    ) -> StoreResult<Vec<StoredRaw>> {
        self.read_raw(from, to, device).await
    }

    async fn raw_from(&self, from: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>> {
        self.first_raw_from(from).await
    }

    async fn rollup_mark(&self, tier: Tier) -> StoreResult<Option<DateTime<Utc>>> {
        self.mark(tier.table()).await
    }

    async fn set_rollup_mark(&self, tier: Tier, until: DateTime<Utc>) -> StoreResult<()> {
        self.set_mark(tier.table(), until).await
    }

    async fn tier_floor(&self, tier: Tier) -> StoreResult<Option<DateTime<Utc>>> {
        self.floor(tier).await
    }

    async fn put_rollups(&self, tier: Tier, rows: &[RollupRow]) -> StoreResult<()> {
        self.write_rollups(tier, rows).await
    }

    async fn rollups(
        &self,
        tier: Tier,
        device: Option<Uuid>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<RollupRow>> {
        self.read_rollups(tier, device, (from, to), after, limit)
            .await
    }

    async fn mark_late(&self, late: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        self.note_late(late).await
    }

    async fn late(&self) -> StoreResult<Vec<(DateTime<Utc>, Uuid)>> {
        self.late_pairs().await
    }

    async fn clear_late(&self, done: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        self.clear_late_pairs(done).await
    }

    async fn ensure_partitions(&self, days: &[NaiveDate]) -> StoreResult<()> {
        self.ensure_days(days).await
    }

    async fn partitions(&self) -> StoreResult<Vec<NaiveDate>> {
        self.raw_days().await
    }

    async fn expire(&self, cutoffs: Cutoffs) -> StoreResult<Vec<NaiveDate>> {
        self.expire_tiers(cutoffs).await
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

/// `select` over [?1, ?2) of `time`, by device then time, ?3's rows only
/// when `device`, after the key (?4, ?5) when `after`, at most ?6. Each
/// case is a statement of its own: `?3 IS NULL OR …` keeps the planner
/// from using the key's index. Across devices the time's own index is
/// ruled out (`+`): through it every page would sort the whole range
/// again; the key's index reads the pages in order.
fn keyset_sql(select: &str, time: &str, device: bool, after: bool) -> String {
    let (device, time_of_range) = if device {
        ("AND device_id = ?3", time.to_string())
    } else {
        ("AND ?3 IS NULL", format!("+{time}"))
    };
    let after = if after {
        format!("AND (device_id, {time}) > (?4, ?5)")
    } else {
        "AND ?4 IS NULL AND ?5 IS NULL".to_string()
    };
    format!(
        "{select} WHERE {time_of_range} >= ?1 AND {time_of_range} < ?2 {device} {after} \
         ORDER BY device_id, {time} LIMIT ?6"
    )
}

/// A keyset page: `select` (device id, time in µs, packed bytes) over
/// `range` of `time`, by device then time, of `device` only when given,
/// after `after`, at most `limit` rows (see [`keyset_sql`]).
pub(crate) async fn keyset_rows(
    pool: &sqlx::SqlitePool,
    (select, time): (&str, &str),
    device: Option<uuid::Uuid>,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<(uuid::Uuid, DateTime<Utc>)>,
    limit: u32,
) -> Result<Vec<(uuid::Uuid, i64, Vec<u8>)>, sqlx::Error> {
    let sql = keyset_sql(select, time, device.is_some(), after.is_some());
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(micros(from))
        .bind(micros(to))
        .bind(device)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| micros(a.1)))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

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

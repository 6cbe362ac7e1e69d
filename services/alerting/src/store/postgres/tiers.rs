//! Raw results and rollup tiers in PostgreSQL: packed rows (see
//! `store::packed`), daily partitions for the raw rows (probe results and
//! SNMP polls) and the one-minute tier, monthly ones for the hourly tiers
//! (probes' and interfaces'), all managed by name and dropped whole past
//! their retention.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{PgStore, claim_batch, keyset_rows};
use crate::store::packed::{self, RawResult};
use crate::store::{
    BatchRows, Cutoffs, PRUNE_BATCH, Prunable, Pruned, RollupRow, StoreResult, Stored, StoredRaw,
    Tier,
};

/// The tables partitioned by day with the raw results' retention; their
/// partitions are made and dropped together, `probe_raw`'s list standing
/// for all.
const RAW_DAILY: [&str; 2] = ["probe_raw", "snmp_raw"];

/// The tables partitioned by month with the hourly retention.
const HOURLY_MONTHLY: [&str; 2] = ["probe_rollups_1h", "interface_rollups_1h"];

fn monthly_partition_of(table: &str, month: NaiveDate) -> String {
    format!("{table}_{}", month.format("%Y%m"))
}

pub(crate) fn partition_of(table: &str, day: NaiveDate) -> String {
    format!("{table}_{}", day.format("%Y%m%d"))
}

/// The first day of `day`'s month.
fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn next_month(month: NaiveDate) -> NaiveDate {
    month
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(month)
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// A partition of `table` over [from, to), named `name`.
fn partition_sql(table: &str, name: &str, from: NaiveDate, to: NaiveDate) -> String {
    // Names and bounds are built from dates only: nothing from input.
    format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ('{}') TO ('{}')",
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d")
    )
}

impl PgStore {
    async fn create_partition(&self, sql: String, name: &str) -> StoreResult<()> {
        if let Err(error) = sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await {
            // Another instance may have created it a moment ago.
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND n.nspname = 'alerting')",
            )
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
            if !exists {
                return Err(error);
            }
        }
        Ok(())
    }

    /// The partitions of `parent`, by name.
    async fn children(&self, parent: &str) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE p.relname = $1 AND n.nspname = 'alerting'",
        )
        .bind(parent)
        .fetch_all(&self.pool)
        .await
    }

    /// The days (or months, for the hourly tier) `table` has partitions of.
    pub(super) async fn partition_starts(
        &self,
        table: &str,
        format: &str,
    ) -> StoreResult<Vec<NaiveDate>> {
        let prefix = format!("{table}_");
        let mut starts: Vec<NaiveDate> = self
            .children(table)
            .await?
            .iter()
            .filter_map(|name| {
                let stamp = name.strip_prefix(&prefix)?;
                if format == "%Y%m" {
                    NaiveDate::parse_from_str(&format!("{stamp}01"), "%Y%m%d").ok()
                } else {
                    NaiveDate::parse_from_str(stamp, format).ok()
                }
            })
            .collect();
        starts.sort();
        Ok(starts)
    }

    async fn drop_table(&self, name: &str) -> StoreResult<()> {
        let sql = format!("DROP TABLE IF EXISTS {name}");
        sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn ensure_tier_partitions(&self, days: &[NaiveDate]) -> StoreResult<()> {
        for day in days {
            let next = day.succ_opt().unwrap_or(*day);
            let month = month_of(*day);
            for table in HOURLY_MONTHLY {
                let hourly = monthly_partition_of(table, month);
                self.create_partition(
                    partition_sql(table, &hourly, month, next_month(month)),
                    &hourly,
                )
                .await?;
            }
            let minute = partition_of("probe_rollups_1m", *day);
            self.create_partition(
                partition_sql("probe_rollups_1m", &minute, *day, next),
                &minute,
            )
            .await?;
            // The reference table last: a day is listed only when all exist.
            for table in RAW_DAILY.iter().rev() {
                let name = partition_of(table, *day);
                self.create_partition(partition_sql(table, &name, *day, next), &name)
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn raw_days(&self) -> StoreResult<Vec<NaiveDate>> {
        self.partition_starts("probe_raw", "%Y%m%d").await
    }

    pub(super) async fn expire_tiers(&self, cutoffs: Cutoffs) -> StoreResult<Vec<NaiveDate>> {
        let mut dropped = Vec::new();
        for day in self.raw_days().await? {
            if day < cutoffs.raw_before {
                for table in RAW_DAILY {
                    self.drop_table(&partition_of(table, day)).await?;
                }
                dropped.push(day);
            }
        }
        for day in self.partition_starts("probe_rollups_1m", "%Y%m%d").await? {
            if day < cutoffs.minute_before {
                self.drop_table(&partition_of("probe_rollups_1m", day))
                    .await?;
                tracing::info!(%day, "dropped a one-minute rollup partition past its retention");
            }
        }
        for table in HOURLY_MONTHLY {
            for month in self.partition_starts(table, "%Y%m").await? {
                if next_month(month) <= cutoffs.hour_before {
                    self.drop_table(&monthly_partition_of(table, month)).await?;
                    tracing::info!(table, %month, "dropped an hourly rollup partition past its retention");
                }
            }
        }
        let what = Prunable::IdempotencyKeys;
        let cutoff = cutoffs.keys_before;
        let Pruned { rows, .. } =
            crate::store::AlertingStore::prune(self, what, cutoff, PRUNE_BATCH).await?;
        if rows > 0 {
            tracing::info!(table = what.table(), rows, %cutoff, "pruned rows past the retention");
        }
        Ok(dropped)
    }

    pub(super) async fn store_packed(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>> {
        let mut tx = self.pool.begin().await?;
        // Each batch's key first: a replayed one is a duplicate and
        // contributes no rows.
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut rows = Vec::new();
        for group in batches {
            let fresh = claim_batch(
                &mut tx,
                group.batch_uid,
                group.executor_id,
                group.rows.len(),
            )
            .await?;
            if fresh {
                let results: Vec<RawResult> = group
                    .rows
                    .iter()
                    .map(|r| RawResult::of(r.device_id, r.probed_at, &r.result))
                    .collect();
                rows.extend(packed::pack_results(group.executor_id, &results));
            }
            outcomes.push(Stored {
                rows: if fresh {
                    u32::try_from(group.rows.len()).unwrap_or(u32::MAX)
                } else {
                    0
                },
                duplicate: !fresh,
            });
        }
        if !rows.is_empty() {
            let mut at = Vec::with_capacity(rows.len());
            let mut executor = Vec::with_capacity(rows.len());
            let mut count = Vec::with_capacity(rows.len());
            let mut devices = Vec::with_capacity(rows.len());
            let mut results = Vec::with_capacity(rows.len());
            for row in rows {
                at.push(row.probed_at);
                executor.push(row.executor_id);
                count.push(i32::try_from(row.count).unwrap_or(i32::MAX));
                devices.push(row.devices);
                results.push(row.results);
            }
            sqlx::query(
                "INSERT INTO probe_raw (probed_at, executor_id, results, devices, packed) \
                 SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::int4[], $4::bytea[], $5::bytea[])",
            )
            .bind(&at)
            .bind(&executor)
            .bind(&count)
            .bind(&devices)
            .bind(&results)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub(super) async fn read_raw(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        device: Option<Uuid>,
    ) -> StoreResult<Vec<StoredRaw>> {
        let rows: Vec<(DateTime<Utc>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT probed_at, devices, packed FROM probe_raw \
             WHERE probed_at >= $1 AND probed_at < $2 \
               AND ($3::bytea IS NULL OR position($3::bytea IN devices) > 0) \
             ORDER BY probed_at",
        )
        .bind(from)
        .bind(to)
        .bind(device.map(|d| d.as_bytes().to_vec()))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(probed_at, devices, results)| StoredRaw {
                probed_at,
                devices,
                results,
            })
            .collect())
    }

    pub(super) async fn first_raw_from(
        &self,
        from: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT min(probed_at) FROM probe_raw WHERE probed_at >= $1")
            .bind(from)
            .fetch_one(&self.pool)
            .await
    }

    /// The progress mark of the tier named `tier` (its table's name).
    pub(super) async fn mark(&self, tier: &str) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT done_until FROM rollup_marks WHERE tier = $1")
            .bind(tier)
            .fetch_optional(&self.pool)
            .await
    }

    pub(super) async fn set_mark(&self, tier: &str, until: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO rollup_marks (tier, done_until) VALUES ($1, $2) \
             ON CONFLICT (tier) DO UPDATE SET done_until = EXCLUDED.done_until",
        )
        .bind(tier)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn floor(&self, tier: Tier) -> StoreResult<Option<DateTime<Utc>>> {
        let first = match tier {
            Tier::Minute => self
                .partition_starts("probe_rollups_1m", "%Y%m%d")
                .await?
                .first()
                .copied(),
            Tier::Hour => self
                .partition_starts("probe_rollups_1h", "%Y%m")
                .await?
                .first()
                .copied(),
        };
        Ok(first.map(midnight))
    }

    pub(super) async fn write_rollups(&self, tier: Tier, rows: &[RollupRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let device: Vec<Uuid> = rows.iter().map(|r| r.device_id).collect();
        let start: Vec<DateTime<Utc>> = rows.iter().map(|r| r.start).collect();
        let entries: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| packed::pack_rollups(&r.entries))
            .collect();
        let sql = format!(
            "INSERT INTO {} (device_id, start, entries) \
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bytea[]) \
             ON CONFLICT (device_id, start) DO UPDATE SET entries = EXCLUDED.entries",
            tier.table()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&device)
            .bind(&start)
            .bind(&entries)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn read_rollups(
        &self,
        tier: Tier,
        device: Option<Uuid>,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        after: Option<(Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<RollupRow>> {
        let rows = keyset_rows(
            &self.pool,
            (
                &format!("SELECT device_id, start, entries FROM {}", tier.table()),
                "start",
            ),
            device,
            (from, to),
            after,
            limit,
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(device_id, start, entries)| {
                match packed::unpack_rollups(&entries) {
                    Ok(entries) => Some(RollupRow {
                        device_id,
                        start,
                        entries,
                    }),
                    Err(error) => {
                        tracing::error!(%error, %device_id, %start, "skipping a damaged rollup row");
                        None
                    }
                }
            })
            .collect())
    }

    pub(super) async fn note_late(&self, late: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let block: Vec<DateTime<Utc>> = late.iter().map(|l| l.0).collect();
        let device: Vec<Uuid> = late.iter().map(|l| l.1).collect();
        sqlx::query(
            "INSERT INTO rollup_late (block, device_id) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(&block)
        .bind(&device)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn late_pairs(&self) -> StoreResult<Vec<(DateTime<Utc>, Uuid)>> {
        sqlx::query_as("SELECT block, device_id FROM rollup_late ORDER BY block, device_id")
            .fetch_all(&self.pool)
            .await
    }

    pub(super) async fn clear_late_pairs(&self, done: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let block: Vec<DateTime<Utc>> = done.iter().map(|l| l.0).collect();
        let device: Vec<Uuid> = done.iter().map(|l| l.1).collect();
        sqlx::query(
            "DELETE FROM rollup_late WHERE (block, device_id) IN \
             (SELECT * FROM UNNEST($1::timestamptz[], $2::uuid[]))",
        )
        .bind(&block)
        .bind(&device)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(partition_of("probe_raw", day), "probe_raw_20261127");
        assert_eq!(month_of(day), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!(
            next_month(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
    }
}

//! Raw results and rollup tiers in SQLite: the packed rows of
//! `store::packed` and `store::packed_snmp` in plain tables
//! (`migrations-sqlite/0009`, `0010`), old rows deleted in short batches.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{SqliteStore, claim_batch, instant, keyset_rows, micros, midnight};
use crate::store::packed::{self, RawResult};
use crate::store::{
    AlertingStore, BatchRows, Cutoffs, PRUNE_BATCH, Prunable, Pruned, RollupRow, StoreResult,
    Stored, StoredRaw, Tier,
};

impl SqliteStore {
    /// Drops the per-result day tables of the earlier layout, if any.
    pub(super) async fn drop_legacy_day_tables(&self) -> StoreResult<()> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND name LIKE 'probe_results\\_%' ESCAPE '\\'",
        )
        .fetch_all(&self.pool)
        .await?;
        for name in names {
            // Names come from the schema and match the pattern above.
            if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                let sql = format!("DROP TABLE IF EXISTS {name}");
                sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn store_packed(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>> {
        let mut tx = self.write().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
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
                for row in packed::pack_results(group.executor_id, &results) {
                    sqlx::query(
                        "INSERT INTO probe_raw (probed_at, executor_id, results, devices, packed) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .bind(micros(row.probed_at))
                    .bind(&row.executor_id)
                    .bind(i64::from(row.count))
                    .bind(&row.devices)
                    .bind(&row.results)
                    .execute(&mut *tx)
                    .await?;
                }
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
        tx.commit().await?;
        Ok(outcomes)
    }

    pub(super) async fn read_raw(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        device: Option<Uuid>,
    ) -> StoreResult<Vec<StoredRaw>> {
        // instr() searches a BLOB byte by byte when both sides are BLOBs.
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT probed_at, devices, packed FROM probe_raw \
             WHERE probed_at >= ?1 AND probed_at < ?2 AND (?3 IS NULL OR instr(devices, ?3) > 0) \
             ORDER BY probed_at",
        )
        .bind(micros(from))
        .bind(micros(to))
        .bind(device.map(|d| d.as_bytes().to_vec()))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, devices, results)| StoredRaw {
                probed_at: instant(at),
                devices,
                results,
            })
            .collect())
    }

    pub(super) async fn first_raw_from(
        &self,
        from: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT min(probed_at) FROM probe_raw WHERE probed_at >= ?1")
                .bind(micros(from))
                .fetch_one(&self.pool)
                .await?;
        Ok(oldest.map(instant))
    }

    /// The progress mark of the tier named `tier` (its table's name).
    pub(super) async fn mark(&self, tier: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let mark: Option<i64> =
            sqlx::query_scalar("SELECT done_until FROM rollup_marks WHERE tier = ?1")
                .bind(tier)
                .fetch_optional(&self.pool)
                .await?;
        Ok(mark.map(instant))
    }

    pub(super) async fn set_mark(&self, tier: &str, until: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO rollup_marks (tier, done_until) VALUES (?1, ?2) \
             ON CONFLICT (tier) DO UPDATE SET done_until = excluded.done_until",
        )
        .bind(tier)
        .bind(micros(until))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub(super) async fn floor(&self, tier: Tier) -> StoreResult<Option<DateTime<Utc>>> {
        let sql = format!("SELECT min(start) FROM {}", tier.table());
        let first: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?;
        Ok(first.map(|at| midnight(instant(at).date_naive())))
    }

    pub(super) async fn write_rollups(&self, tier: Tier, rows: &[RollupRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} (device_id, start, entries) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device_id, start) DO UPDATE SET entries = excluded.entries",
            tier.table()
        );
        let mut tx = self.write().await?;
        for row in rows {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(row.device_id)
                .bind(micros(row.start))
                .bind(packed::pack_rollups(&row.entries))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
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
            .filter_map(
                |(device_id, start, entries)| match packed::unpack_rollups(&entries) {
                    Ok(entries) => Some(RollupRow {
                        device_id,
                        start: instant(start),
                        entries,
                    }),
                    Err(error) => {
                        tracing::error!(%error, %device_id, start, "skipping a damaged rollup row");
                        None
                    }
                },
            )
            .collect())
    }

    pub(super) async fn note_late(&self, late: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for (block, device) in late {
            sqlx::query(
                "INSERT INTO rollup_late (block, device_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )
            .bind(micros(*block))
            .bind(device)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub(super) async fn late_pairs(&self) -> StoreResult<Vec<(DateTime<Utc>, Uuid)>> {
        let rows: Vec<(i64, Uuid)> =
            sqlx::query_as("SELECT block, device_id FROM rollup_late ORDER BY block, device_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(b, d)| (instant(b), d)).collect())
    }

    pub(super) async fn clear_late_pairs(&self, done: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for (block, device) in done {
            sqlx::query("DELETE FROM rollup_late WHERE block = ?1 AND device_id = ?2")
                .bind(micros(*block))
                .bind(device)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    pub(super) async fn ensure_days(&self, days: &[NaiveDate]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for day in days {
            sqlx::query("INSERT INTO raw_days (day) VALUES (?1) ON CONFLICT DO NOTHING")
                .bind(day.format("%Y-%m-%d").to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    pub(super) async fn raw_days(&self) -> StoreResult<Vec<NaiveDate>> {
        let days: Vec<String> = sqlx::query_scalar("SELECT day FROM raw_days ORDER BY day")
            .fetch_all(&self.pool)
            .await?;
        Ok(days
            .iter()
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .collect())
    }

    pub(super) async fn expire_tiers(&self, cutoffs: Cutoffs) -> StoreResult<Vec<NaiveDate>> {
        let raw_before = micros(midnight(cutoffs.raw_before));
        for (table, key, column, before) in [
            ("probe_raw", "rowid", "probed_at", raw_before),
            ("snmp_raw", "rowid", "polled_at", raw_before),
            (
                "probe_rollups_1m",
                "device_id, start",
                "start",
                micros(midnight(cutoffs.minute_before)),
            ),
            (
                "probe_rollups_1h",
                "device_id, start",
                "start",
                micros(midnight(cutoffs.hour_before)),
            ),
            (
                "interface_rollups_1h",
                "rowid",
                "start",
                micros(midnight(cutoffs.hour_before)),
            ),
        ] {
            let rows = self.delete_before(table, key, column, before).await?;
            if rows > 0 {
                tracing::info!(table, rows, "pruned rows past the retention");
            }
        }
        let dropped: Vec<NaiveDate> = self
            .raw_days()
            .await?
            .into_iter()
            .filter(|day| *day < cutoffs.raw_before)
            .collect();
        let mut tx = self.write().await?;
        for day in &dropped {
            sqlx::query("DELETE FROM raw_days WHERE day = ?1")
                .bind(day.format("%Y-%m-%d").to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let what = Prunable::IdempotencyKeys;
        let cutoff = cutoffs.keys_before;
        let Pruned { rows, .. } = self.prune(what, cutoff, PRUNE_BATCH).await?;
        if rows > 0 {
            tracing::info!(table = what.table(), rows, %cutoff, "pruned rows past the retention");
        }
        Ok(dropped)
    }
}

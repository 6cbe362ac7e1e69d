//! Probe results, device states and retention in PostgreSQL: UNNEST batch
//! inserts, rollups merged with ON CONFLICT, daily partitions managed by
//! name (`probe_results_YYYYMMDD`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use netward_shared::proto::v1;

use super::{PgStore, claim_batch};
use crate::store::{
    AlertingStore, BatchRows, ChangeRow, HistoryRow, PRUNE_BATCH, ProbeRow, Prunable, Pruned,
    StateRow, StoreResult, Stored,
};

/// The raw tables partitioned by day; their partitions are made and
/// dropped together, `probe_results`' list standing for all.
const PARTITIONED: [&str; 3] = ["probe_results", "snmp_samples", "interface_samples"];

pub(crate) fn partition_of(table: &str, day: NaiveDate) -> String {
    format!("{table}_{}", day.format("%Y%m%d"))
}

pub(crate) fn partition_day(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("probe_results_")?, "%Y%m%d").ok()
}

fn opt_i32(value: Option<u32>) -> Option<i32> {
    value.map(|v| v.min(i32::MAX as u32) as i32)
}

/// One minute of one device, merged from the rows of a batch.
#[derive(Default)]
struct Rollup {
    probes: i32,
    sent: i64,
    received: i64,
    rtt_samples: i32,
    rtt_sum: i64,
    rtt_min: Option<i32>,
    rtt_max: Option<i32>,
}

fn state_of(code: i16) -> v1::DeviceState {
    v1::DeviceState::try_from(i32::from(code)).unwrap_or(v1::DeviceState::Unknown)
}

/// A `state_changes` row as selected: from, to, maintenance, reason,
/// changed_at, cycle_id, stale.
type ChangeColumns = (i16, i16, bool, String, DateTime<Utc>, i64, bool);

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
        changed_at,
        cycle_id: cycle.max(0) as u64,
        stale,
    }
}

/// One batch of [`Prunable`]: $1 the cutoff, $2 the batch size. Rows are
/// picked by key (or `ctid` where the key has several columns) and deleted
/// in the same statement; `ARRAY(…)` makes PostgreSQL look each up
/// directly instead of joining.
fn prune_sql(what: Prunable) -> &'static str {
    match what {
        // A row goes only when a newer one of its device is also before the
        // cutoff: each device keeps its state at the cutoff.
        Prunable::StateChanges => {
            "DELETE FROM state_changes WHERE id = ANY(ARRAY( \
                 SELECT s.id FROM state_changes s \
                 WHERE s.changed_at < $1 AND EXISTS ( \
                     SELECT 1 FROM state_changes n \
                     WHERE n.device_id = s.device_id AND n.changed_at < $1 \
                       AND (n.changed_at, n.id) > (s.changed_at, s.id)) \
                 LIMIT $2))"
        }
        Prunable::Alerts => {
            "DELETE FROM alerts WHERE id = ANY(ARRAY( \
                 SELECT id FROM alerts WHERE state = 3 AND resolved_at < $1 LIMIT $2))"
        }
        // An open alert keeps its rows: resolving it looks for its firing.
        Prunable::Notifications => {
            "DELETE FROM notification_outbox WHERE id = ANY(ARRAY( \
                 SELECT o.id FROM notification_outbox o \
                 WHERE o.state <> 1 AND o.created_at < $1 AND NOT EXISTS ( \
                     SELECT 1 FROM alerts a WHERE a.id = o.alert_id AND a.state <> 3) \
                 LIMIT $2))"
        }
        Prunable::Silences => {
            "DELETE FROM silences WHERE id = ANY(ARRAY( \
                 SELECT id FROM silences WHERE ends_at < $1 LIMIT $2))"
        }
        Prunable::IdempotencyKeys => {
            "DELETE FROM ingested_batches WHERE batch_uid = ANY(ARRAY( \
                 SELECT batch_uid FROM ingested_batches WHERE received_at < $1 LIMIT $2))"
        }
        Prunable::ProbeRollups => {
            "DELETE FROM probe_rollups WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM probe_rollups WHERE minute < $1 LIMIT $2))"
        }
        Prunable::InterfaceRollups => {
            "DELETE FROM interface_rollups WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM interface_rollups WHERE hour < $1 LIMIT $2))"
        }
    }
}

#[async_trait]
impl AlertingStore for PgStore {
    async fn history(
        &self,
        device_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<HistoryRow>> {
        type Row = (
            DateTime<Utc>,
            i64,
            i64,
            i64,
            Option<i32>,
            Option<i32>,
            i64,
            i64,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT to_timestamp(floor(extract(epoch FROM minute) / $4) * $4) AS bucket, \
                    sum(probes)::int8, sum(packets_sent)::int8, sum(packets_received)::int8, \
                    min(rtt_min_us), max(rtt_max_us), sum(rtt_sum_us)::int8, sum(rtt_samples)::int8 \
             FROM probe_rollups WHERE device_id = $1 AND minute >= $2 AND minute < $3 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(device_id)
        .bind(from)
        .bind(to)
        .bind(step_seconds.max(60) as f64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(time, probes, sent, received, min, max, sum, samples)| HistoryRow {
                    time,
                    probes: probes.max(0) as u32,
                    packets_sent: sent.max(0) as u64,
                    packets_received: received.max(0) as u64,
                    rtt_min_us: min.map(|v| v.max(0) as u32),
                    rtt_avg_us: (samples > 0).then(|| (sum / samples).max(0) as u32),
                    rtt_max_us: max.map(|v| v.max(0) as u32),
                },
            )
            .collect())
    }

    async fn save_states(&self, states: &[StateRow], changes: &[ChangeRow]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if !states.is_empty() {
            let mut ids = Vec::new();
            let mut state = Vec::new();
            let mut since = Vec::new();
            let mut reason = Vec::new();
            let mut maintenance = Vec::new();
            let mut probe_at = Vec::new();
            let mut outcome = Vec::new();
            let mut loss = Vec::new();
            let mut rtt = Vec::new();
            let mut cycle = Vec::new();
            let mut failures = Vec::new();
            let mut memory = Vec::new();
            for row in states {
                ids.push(row.device_id);
                state.push(row.state as i16);
                since.push(row.since);
                reason.push(row.reason.clone());
                maintenance.push(row.maintenance);
                probe_at.push(row.last_probe_at);
                outcome.push(row.last_outcome as i16);
                loss.push(row.last_loss_percent.map(|l| l as f32));
                rtt.push(opt_i32(row.last_rtt_avg_us));
                cycle.push(row.last_cycle_id.min(i64::MAX as u64) as i64);
                failures.push(row.consecutive_failures.min(i32::MAX as u32) as i32);
                memory.push(row.memory.to_string());
            }
            sqlx::query(
                "INSERT INTO device_state (device_id, state, since, reason, maintenance, last_probe_at, \
                     last_outcome, last_loss_percent, last_rtt_avg_us, last_cycle_id, \
                     consecutive_failures, memory) \
                 SELECT d, s, si, r, m, p, o, l, rt, c, f, mem::jsonb \
                 FROM UNNEST($1::uuid[], $2::int2[], $3::timestamptz[], $4::text[], $5::bool[], \
                             $6::timestamptz[], $7::int2[], $8::float4[], $9::int4[], $10::int8[], \
                             $11::int4[], $12::text[]) AS v(d, s, si, r, m, p, o, l, rt, c, f, mem) \
                 ON CONFLICT (device_id) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since, \
                     reason = EXCLUDED.reason, maintenance = EXCLUDED.maintenance, \
                     last_probe_at = EXCLUDED.last_probe_at, last_outcome = EXCLUDED.last_outcome, \
                     last_loss_percent = EXCLUDED.last_loss_percent, \
                     last_rtt_avg_us = EXCLUDED.last_rtt_avg_us, last_cycle_id = EXCLUDED.last_cycle_id, \
                     consecutive_failures = EXCLUDED.consecutive_failures, memory = EXCLUDED.memory",
            )
            .bind(&ids)
            .bind(&state)
            .bind(&since)
            .bind(&reason)
            .bind(&maintenance)
            .bind(&probe_at)
            .bind(&outcome)
            .bind(&loss)
            .bind(&rtt)
            .bind(&cycle)
            .bind(&failures)
            .bind(&memory)
            .execute(&mut *tx)
            .await?;
        }
        if !changes.is_empty() {
            let ids: Vec<uuid::Uuid> = changes.iter().map(|c| c.device_id).collect();
            let from: Vec<i16> = changes.iter().map(|c| c.from as i16).collect();
            let to: Vec<i16> = changes.iter().map(|c| c.to as i16).collect();
            let maintenance: Vec<bool> = changes.iter().map(|c| c.maintenance).collect();
            let stale: Vec<bool> = changes.iter().map(|c| c.stale).collect();
            let reason: Vec<String> = changes.iter().map(|c| c.reason.clone()).collect();
            let at: Vec<DateTime<Utc>> = changes.iter().map(|c| c.changed_at).collect();
            let cycle: Vec<i64> = changes
                .iter()
                .map(|c| c.cycle_id.min(i64::MAX as u64) as i64)
                .collect();
            sqlx::query(
                "INSERT INTO state_changes (device_id, from_state, to_state, maintenance, reason, changed_at, cycle_id, stale) \
                 SELECT * FROM UNNEST($1::uuid[], $2::int2[], $3::int2[], $4::bool[], $5::text[], \
                                      $6::timestamptz[], $7::int8[], $8::bool[])",
            )
            .bind(&ids)
            .bind(&from)
            .bind(&to)
            .bind(&maintenance)
            .bind(&reason)
            .bind(&at)
            .bind(&cycle)
            .bind(&stale)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn forget_states(&self, devices: &[Uuid]) -> StoreResult<()> {
        sqlx::query("DELETE FROM device_state WHERE device_id = ANY($1)")
            .bind(devices)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn states(&self) -> StoreResult<Vec<StateRow>> {
        let rows = sqlx::query_as::<_, (uuid::Uuid, i16, DateTime<Utc>, String, bool, Option<DateTime<Utc>>, i16, Option<f32>, Option<i32>, i64, i32, serde_json::Value)>(
            "SELECT device_id, state, since, reason, maintenance, last_probe_at, last_outcome, \
                    last_loss_percent, last_rtt_avg_us, last_cycle_id, consecutive_failures, memory \
             FROM device_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
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
                )| StateRow {
                    device_id,
                    state: state_of(state),
                    since,
                    reason,
                    maintenance,
                    last_probe_at,
                    last_outcome: i32::from(outcome),
                    last_loss_percent: loss.map(f64::from),
                    last_rtt_avg_us: rtt.map(|r| r.max(0) as u32),
                    last_cycle_id: cycle.max(0) as u64,
                    consecutive_failures: failures.max(0) as u32,
                    memory,
                    stale: false,
                    last_result_at: None,
                },
            )
            .collect())
    }

    async fn changes(
        &self,
        device_id: uuid::Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<ChangeRow>> {
        let rows = sqlx::query_as::<_, ChangeColumns>(
            "SELECT from_state, to_state, maintenance, reason, changed_at, cycle_id, stale FROM state_changes \
             WHERE device_id = $1 AND changed_at >= $2 AND changed_at < $3 ORDER BY changed_at, id",
        )
        .bind(device_id)
        .bind(from)
        .bind(to)
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
        let row = sqlx::query_as::<_, ChangeColumns>(
            "SELECT from_state, to_state, maintenance, reason, changed_at, cycle_id, stale FROM state_changes \
             WHERE device_id = $1 AND changed_at < $2 ORDER BY changed_at DESC, id DESC LIMIT 1",
        )
        .bind(device_id)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| change_row(device_id, row)))
    }

    async fn store_probe_batches(&self, batches: &[BatchRows<'_>]) -> StoreResult<Vec<Stored>> {
        let mut tx = self.pool.begin().await?;
        // Each batch's key first: a replayed one is a duplicate and
        // contributes no rows.
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut fresh: Vec<(&BatchRows<'_>, &ProbeRow)> = Vec::new();
        for group in batches {
            if claim_batch(
                &mut tx,
                group.batch_uid,
                group.executor_id,
                group.rows.len(),
            )
            .await?
            {
                fresh.extend(group.rows.iter().map(|row| (group, row)));
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
        if fresh.is_empty() {
            tx.commit().await?;
            return Ok(outcomes);
        }

        let n = fresh.len();
        let mut device: Vec<Uuid> = Vec::with_capacity(n);
        let mut probed_at: Vec<DateTime<Utc>> = Vec::with_capacity(n);
        let mut cycle: Vec<i64> = Vec::with_capacity(n);
        let mut batch: Vec<String> = Vec::with_capacity(n);
        let mut executor: Vec<&str> = Vec::with_capacity(n);
        let mut sent: Vec<i16> = Vec::with_capacity(n);
        let mut received: Vec<i16> = Vec::with_capacity(n);
        let mut loss: Vec<f32> = Vec::with_capacity(n);
        let mut rtt_min: Vec<Option<i32>> = Vec::with_capacity(n);
        let mut rtt_avg: Vec<Option<i32>> = Vec::with_capacity(n);
        let mut rtt_max: Vec<Option<i32>> = Vec::with_capacity(n);
        let mut rtt_stddev: Vec<Option<i32>> = Vec::with_capacity(n);
        let mut outcome: Vec<i16> = Vec::with_capacity(n);
        let mut retries: Vec<i16> = Vec::with_capacity(n);
        let mut rollups: BTreeMap<(Uuid, DateTime<Utc>), Rollup> = BTreeMap::new();
        for (group, row) in fresh {
            let r = &row.result;
            executor.push(group.executor_id);
            device.push(row.device_id);
            probed_at.push(row.probed_at);
            cycle.push(r.cycle_id.min(i64::MAX as u64) as i64);
            batch.push(r.batch_id.clone());
            sent.push(r.sent.min(i16::MAX as u32) as i16);
            received.push(r.received.min(i16::MAX as u32) as i16);
            loss.push(r.loss_percent as f32);
            rtt_min.push(opt_i32(r.rtt_min_us));
            rtt_avg.push(opt_i32(r.rtt_avg_us));
            rtt_max.push(opt_i32(r.rtt_max_us));
            rtt_stddev.push(opt_i32(r.rtt_stddev_us));
            outcome.push(r.outcome as i16);
            retries.push(r.retries_sent.min(i16::MAX as u32) as i16);

            let minute = row
                .probed_at
                .duration_trunc(TimeDelta::minutes(1))
                .unwrap_or(row.probed_at);
            let rollup = rollups.entry((row.device_id, minute)).or_default();
            rollup.probes += 1;
            rollup.sent += i64::from(r.sent);
            rollup.received += i64::from(r.received);
            if let Some(avg) = opt_i32(r.rtt_avg_us) {
                rollup.rtt_samples += 1;
                rollup.rtt_sum += i64::from(avg);
            }
            if let Some(min) = opt_i32(r.rtt_min_us) {
                rollup.rtt_min = Some(rollup.rtt_min.map_or(min, |m| m.min(min)));
            }
            if let Some(max) = opt_i32(r.rtt_max_us) {
                rollup.rtt_max = Some(rollup.rtt_max.map_or(max, |m| m.max(max)));
            }
        }
        sqlx::query(
            "INSERT INTO probe_results (device_id, probed_at, cycle_id, batch_id, executor_id, sent, \
                 received, loss_percent, rtt_min_us, rtt_avg_us, rtt_max_us, rtt_stddev_us, outcome, \
                 retries_sent) \
             SELECT d, t, c, b, e, s, r, l, mn, av, mx, sd, o, rt \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int8[], $4::text[], $5::int2[], \
                         $6::int2[], $7::float4[], $8::int4[], $9::int4[], $10::int4[], $11::int4[], \
                         $12::int2[], $13::int2[], $14::text[]) \
                  AS v(d, t, c, b, s, r, l, mn, av, mx, sd, o, rt, e)",
        )
        .bind(&device)
        .bind(&probed_at)
        .bind(&cycle)
        .bind(&batch)
        .bind(&sent)
        .bind(&received)
        .bind(&loss)
        .bind(&rtt_min)
        .bind(&rtt_avg)
        .bind(&rtt_max)
        .bind(&rtt_stddev)
        .bind(&outcome)
        .bind(&retries)
        .bind(&executor)
        .execute(&mut *tx)
        .await?;

        let mut r_device = Vec::with_capacity(rollups.len());
        let mut r_minute = Vec::with_capacity(rollups.len());
        let mut r_probes = Vec::with_capacity(rollups.len());
        let mut r_sent = Vec::with_capacity(rollups.len());
        let mut r_received = Vec::with_capacity(rollups.len());
        let mut r_samples = Vec::with_capacity(rollups.len());
        let mut r_sum = Vec::with_capacity(rollups.len());
        let mut r_min = Vec::with_capacity(rollups.len());
        let mut r_max = Vec::with_capacity(rollups.len());
        for ((device, minute), rollup) in rollups {
            r_device.push(device);
            r_minute.push(minute);
            r_probes.push(rollup.probes);
            r_sent.push(rollup.sent);
            r_received.push(rollup.received);
            r_samples.push(rollup.rtt_samples);
            r_sum.push(rollup.rtt_sum);
            r_min.push(rollup.rtt_min);
            r_max.push(rollup.rtt_max);
        }
        sqlx::query(
            "INSERT INTO probe_rollups (device_id, minute, probes, packets_sent, packets_received, \
                 rtt_samples, rtt_sum_us, rtt_min_us, rtt_max_us) \
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int4[], $4::int8[], $5::int8[], \
                                  $6::int4[], $7::int8[], $8::int4[], $9::int4[]) \
             ON CONFLICT (device_id, minute) DO UPDATE SET \
                 probes = probe_rollups.probes + EXCLUDED.probes, \
                 packets_sent = probe_rollups.packets_sent + EXCLUDED.packets_sent, \
                 packets_received = probe_rollups.packets_received + EXCLUDED.packets_received, \
                 rtt_samples = probe_rollups.rtt_samples + EXCLUDED.rtt_samples, \
                 rtt_sum_us = probe_rollups.rtt_sum_us + EXCLUDED.rtt_sum_us, \
                 rtt_min_us = LEAST(probe_rollups.rtt_min_us, EXCLUDED.rtt_min_us), \
                 rtt_max_us = GREATEST(probe_rollups.rtt_max_us, EXCLUDED.rtt_max_us)",
        )
        .bind(&r_device)
        .bind(&r_minute)
        .bind(&r_probes)
        .bind(&r_sent)
        .bind(&r_received)
        .bind(&r_samples)
        .bind(&r_sum)
        .bind(&r_min)
        .bind(&r_max)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn ensure_partitions(&self, days: &[NaiveDate]) -> StoreResult<()> {
        for day in days {
            let next = day.succ_opt().unwrap_or(*day);
            // The reference table last: a day is listed only when all exist.
            for table in PARTITIONED.iter().rev() {
                // Names and bounds are built from dates only: nothing from input.
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {table} \
                     FOR VALUES FROM ('{}') TO ('{}')",
                    partition_of(table, *day),
                    day.format("%Y-%m-%d"),
                    next.format("%Y-%m-%d")
                );
                if let Err(error) = sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await {
                    // Another instance may have created it a moment ago.
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relname = $1 AND n.nspname = 'alerting')",
                    )
                    .bind(partition_of(table, *day))
                    .fetch_one(&self.pool)
                    .await?;
                    if !exists {
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    async fn partitions(&self) -> StoreResult<Vec<NaiveDate>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE p.relname = 'probe_results' AND n.nspname = 'alerting'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut days: Vec<NaiveDate> = names.iter().filter_map(|n| partition_day(n)).collect();
        days.sort();
        Ok(days)
    }

    async fn expire(
        &self,
        before: NaiveDate,
        rollups_before: DateTime<Utc>,
    ) -> StoreResult<Vec<NaiveDate>> {
        let mut dropped = Vec::new();
        for day in self.partitions().await? {
            if day < before {
                for table in PARTITIONED {
                    let sql = format!("DROP TABLE IF EXISTS {}", partition_of(table, day));
                    sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await?;
                }
                dropped.push(day);
            }
        }
        // Keys a day longer than the rows: the day covers the whole-day
        // rounding of `before` and the few minutes a result may be stamped
        // ahead of its arrival.
        let keys_before = before
            .pred_opt()
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or(rollups_before);
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
        Ok(dropped)
    }

    async fn prune_batch(
        &self,
        what: Prunable,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let done = sqlx::query(prune_sql(what))
            .bind(cutoff)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(partition_of("probe_results", day), "probe_results_20261127");
        assert_eq!(partition_day("probe_results_20261127"), Some(day));
        assert_eq!(partition_day("probe_results_default"), None);
        assert_eq!(partition_day("other_20261127"), None);
    }
}

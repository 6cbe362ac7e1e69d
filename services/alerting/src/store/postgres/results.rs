//! Device states, transitions and row-by-row retention in PostgreSQL, and
//! the `AlertingStore` trait's entry points for raw results and rollup
//! tiers (their queries are in `tiers.rs`).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use netward_shared::proto::v1;

use super::PgStore;
use crate::availability::Transition;
use crate::store::{
    AlertingStore, BatchRows, ChangeRow, Cutoffs, Prunable, RollupRow, StateRow, StoreResult,
    Stored, StoredRaw, Tier,
};

fn opt_i32(value: Option<u32>) -> Option<i32> {
    value.map(|v| v.min(i32::MAX as u32) as i32)
}

pub(super) fn state_of(code: i16) -> v1::DeviceState {
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
    }
}

#[async_trait]
impl AlertingStore for PgStore {
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
        self.ensure_tier_partitions(days).await
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
        let done = sqlx::query(prune_sql(what))
            .bind(cutoff)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

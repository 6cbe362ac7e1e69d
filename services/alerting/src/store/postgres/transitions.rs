//! Many devices' transitions at once, for availability reports: each
//! device's state at the start of a period (one index probe per device) and
//! the period's transitions, streamed in time order from one scan.

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use uuid::Uuid;

use super::PgStore;
use super::results::state_of;
use crate::availability::Transition;
use crate::store::StoreResult;

/// device_id, to_state, maintenance, stale, changed_at.
type Columns = (Uuid, i16, bool, bool, DateTime<Utc>);

fn transition((device_id, to, maintenance, stale, at): Columns) -> (Uuid, Transition) {
    (
        device_id,
        Transition {
            at,
            to: state_of(to),
            maintenance,
            stale,
        },
    )
}

impl PgStore {
    pub(super) async fn read_states_at(
        &self,
        devices: &[Uuid],
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Transition)>> {
        // A lateral probe per device walks (device_id, changed_at) backwards
        // and stops at the first row: a device's older history is never
        // read, however long the retention.
        let rows = sqlx::query_as::<_, Columns>(
            "SELECT d.id, s.to_state, s.maintenance, s.stale, s.changed_at \
             FROM unnest($1::uuid[]) AS d(id) \
             CROSS JOIN LATERAL ( \
                 SELECT to_state, maintenance, stale, changed_at FROM state_changes \
                 WHERE device_id = d.id AND changed_at < $2 \
                 ORDER BY changed_at DESC, id DESC LIMIT 1) s",
        )
        .bind(devices)
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(transition).collect())
    }

    pub(super) async fn scan_transitions(
        &self,
        devices: &[Uuid],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        visit: &mut (dyn FnMut(Uuid, Transition) + Send),
    ) -> StoreResult<u64> {
        // The period by `state_changes_changed_idx`; the device list is a
        // hashed array lookup (PostgreSQL 14+), so 100,000 ids cost no more
        // per row than ten.
        let mut rows = sqlx::query_as::<_, Columns>(
            "SELECT device_id, to_state, maintenance, stale, changed_at FROM state_changes \
             WHERE changed_at >= $2 AND changed_at < $3 AND device_id = ANY($1) \
             ORDER BY changed_at, id",
        )
        .bind(devices)
        .bind(from)
        .bind(to)
        .fetch(&self.pool);
        let mut read = 0;
        while let Some(row) = rows.try_next().await? {
            let (device, change) = transition(row);
            visit(device, change);
            read += 1;
        }
        Ok(read)
    }
}

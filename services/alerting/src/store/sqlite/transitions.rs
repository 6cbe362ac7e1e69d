//! Many devices' transitions at once, for availability reports, in SQLite:
//! the twin of `postgres/transitions.rs`, the device list bound as one JSON
//! array.

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use uuid::Uuid;

use super::{SqliteStore, instant, json_rows, micros, state_of};
use crate::availability::Transition;
use crate::store::StoreResult;

/// device_id, to_state, maintenance, stale, changed_at.
type Columns = (Uuid, i64, bool, bool, i64);

fn transition((device_id, to, maintenance, stale, at): Columns) -> (Uuid, Transition) {
    (
        device_id,
        Transition {
            at: instant(at),
            to: state_of(to),
            maintenance,
            stale,
        },
    )
}

impl SqliteStore {
    pub(super) async fn read_states_at(
        &self,
        devices: &[Uuid],
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Transition)>> {
        // One probe of (device_id, changed_at) per device, newest first;
        // the index carries the rowid (`id`), so the tie-break is free.
        let rows = sqlx::query_as::<_, Columns>(
            "SELECT s.device_id, s.to_state, s.maintenance, s.stale, s.changed_at \
             FROM json_each(?1) AS d JOIN state_changes s ON s.id = ( \
                 SELECT id FROM state_changes \
                 WHERE device_id = unhex(d.value, '-') AND changed_at < ?2 \
                 ORDER BY changed_at DESC, id DESC LIMIT 1)",
        )
        .bind(json_rows(devices)?)
        .bind(micros(at))
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
        let mut rows = sqlx::query_as::<_, Columns>(
            "SELECT device_id, to_state, maintenance, stale, changed_at FROM state_changes \
             WHERE changed_at >= ?2 AND changed_at < ?3 \
               AND device_id IN (SELECT unhex(value, '-') FROM json_each(?1)) \
             ORDER BY changed_at, id",
        )
        .bind(json_rows(devices)?)
        .bind(micros(from))
        .bind(micros(to))
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

//! The notification outbox in SQLite. PostgreSQL serialises claims with an
//! advisory lock and `FOR UPDATE SKIP LOCKED`; here a claim is one
//! `BEGIN IMMEDIATE` transaction that selects the due rows and moves them
//! onto the lease in the same statement. SQLite has one writer at a time,
//! so two claims (other tasks, other processes on the file) run one after
//! the other and the second sees the first one's leases: no row is taken
//! twice. Attempts are recorded only under the claim's lease, as there.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, instant, micros};
use crate::notify::{AlertPayload, ListFilter, NotificationEvent, OutboxRow};
use crate::store::{
    Attempt, ClaimedNotification, DeliveryState, NewNotification, NotificationStore, StoreResult,
};

const PENDING: i64 = 1;
const DELIVERED: i64 = 2;
const FAILED: i64 = 3;

fn state_code(state: DeliveryState) -> i64 {
    match state {
        DeliveryState::Pending => PENDING,
        DeliveryState::Delivered => DELIVERED,
        DeliveryState::Failed => FAILED,
    }
}

fn json_error(error: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}

/// Writes the outbox rows of one notification inside the caller's
/// transaction, one per channel in the given order; returns the number of
/// rows.
pub(super) async fn insert_outbox(
    tx: &mut SqliteConnection,
    notification: &NewNotification,
) -> Result<u64, sqlx::Error> {
    let payload = serde_json::to_string(&notification.payload)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let now = micros(Utc::now());
    let mut rows = 0;
    for (channel, kind) in &notification.channels {
        rows += sqlx::query(
            "INSERT INTO notification_outbox (alert_id, channel, channel_kind, event, payload, \
                 state, next_attempt_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )
        .bind(notification.alert_id)
        .bind(channel)
        .bind(*kind as i32)
        .bind(notification.event.as_str())
        .bind(&payload)
        .bind(PENDING)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    Ok(rows)
}

/// A row claimed for delivery, as returned.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    alert_id: Uuid,
    channel: String,
    event: String,
    payload: String,
    attempts: i32,
}

/// An outbox row as `list_notifications` selects it.
#[derive(sqlx::FromRow)]
struct RawRow {
    id: i64,
    alert_id: Uuid,
    channel: String,
    channel_kind: i32,
    event: String,
    state: i64,
    attempts: i64,
    last_error: String,
    next_attempt_at: i64,
    created_at: i64,
    delivered_at: Option<i64>,
    device_id: String,
    rule_name: String,
}

impl From<RawRow> for OutboxRow {
    fn from(raw: RawRow) -> Self {
        let state = match (raw.state, raw.attempts) {
            (DELIVERED, _) => v1::NotificationState::Delivered,
            (FAILED, _) => v1::NotificationState::Failed,
            (_, 0) => v1::NotificationState::Pending,
            _ => v1::NotificationState::Retrying,
        };
        Self {
            id: raw.id,
            alert_id: raw.alert_id,
            channel: raw.channel,
            channel_kind: v1::ChannelKind::try_from(raw.channel_kind)
                .unwrap_or(v1::ChannelKind::Unspecified),
            // The column's CHECK allows nothing else.
            event: NotificationEvent::parse(&raw.event).unwrap_or(NotificationEvent::Firing),
            state,
            attempts: u32::try_from(raw.attempts).unwrap_or(0),
            last_error: raw.last_error,
            next_attempt_at: instant(raw.next_attempt_at),
            created_at: instant(raw.created_at),
            delivered_at: raw.delivered_at.map(instant),
            device_id: raw.device_id,
            rule_name: raw.rule_name,
        }
    }
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn enqueue(&self, notification: &NewNotification) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let rows = insert_outbox(&mut tx, notification).await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        channels: &[String],
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedNotification>> {
        let channels =
            serde_json::to_string(channels).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        // The write lock is held from BEGIN: no other claim runs between the
        // select and the update. A row waits while an older row of its
        // (alert, channel) is pending and not due: backing off, or leased
        // to a sender right now.
        let mut tx = self.write().await?;
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "UPDATE notification_outbox SET next_attempt_at = ?4
             WHERE id IN (
                 SELECT n.id FROM notification_outbox n
                 WHERE n.state = 1 AND n.next_attempt_at <= ?1
                   AND n.channel IN (SELECT value FROM json_each(?2))
                   AND NOT EXISTS (
                       SELECT 1 FROM notification_outbox o
                       WHERE o.alert_id = n.alert_id AND o.channel = n.channel
                         AND o.state = 1 AND o.id < n.id AND o.next_attempt_at > ?1)
                 ORDER BY n.id
                 LIMIT ?3)
             RETURNING id, alert_id, channel, event, payload, attempts",
        )
        .bind(micros(now))
        .bind(channels)
        .bind(limit)
        .bind(micros(lease_until))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.sort_by_key(|row| row.id);
        rows.into_iter()
            .map(|row| {
                Ok(ClaimedNotification {
                    id: row.id,
                    alert_id: row.alert_id,
                    channel: row.channel,
                    event: row.event,
                    payload: serde_json::from_str(&row.payload).map_err(json_error)?,
                    attempts: row.attempts,
                })
            })
            .collect()
    }

    async fn postpone(
        &self,
        id: i64,
        due_at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = ?2
             WHERE id = ?1 AND state = 1 AND next_attempt_at = ?3",
        )
        .bind(id)
        .bind(micros(due_at))
        .bind(micros(lease_until))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn record_attempt(&self, attempt: &Attempt) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let recorded = sqlx::query(
            "UPDATE notification_outbox
             SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4,
                 delivered_at = CASE WHEN ?2 = 2 THEN ?5 ELSE delivered_at END
             WHERE id = ?1 AND state = 1 AND next_attempt_at = ?6",
        )
        .bind(attempt.id)
        .bind(state_code(attempt.state))
        .bind(micros(attempt.next_attempt_at))
        .bind(&attempt.last_error)
        .bind(micros(attempt.at))
        .bind(micros(attempt.lease_until))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(recorded.rows_affected() > 0)
    }

    async fn firing_payload(&self, alert_id: Uuid) -> StoreResult<Option<AlertPayload>> {
        let firing: Option<String> = sqlx::query_scalar(
            "SELECT payload FROM notification_outbox
             WHERE alert_id = ?1 AND event = 'firing' ORDER BY id DESC LIMIT 1",
        )
        .bind(alert_id)
        .fetch_optional(&self.pool)
        .await?;
        firing
            .map(|f| serde_json::from_str(&f).map_err(json_error))
            .transpose()
    }

    async fn pending_notifications(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT count(*) FROM notification_outbox WHERE state = 1")
            .fetch_one(&self.pool)
            .await
    }

    async fn list_notifications(
        &self,
        filter: &ListFilter,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        let states: Vec<i32> = filter.states.iter().map(|s| *s as i32).collect();
        let states =
            serde_json::to_string(&states).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let rows = sqlx::query_as::<_, RawRow>(
            "SELECT id, alert_id, channel, channel_kind, event, state, attempts, last_error,
                    next_attempt_at, created_at, delivered_at,
                    COALESCE(payload ->> '$.device_id', '') AS device_id,
                    COALESCE(payload ->> '$.rule_name', '') AS rule_name
             FROM notification_outbox
             WHERE (json_array_length(?1) = 0
                    OR (CASE WHEN state = 1 AND attempts > 0 THEN 4 ELSE state END)
                       IN (SELECT value FROM json_each(?1)))
               AND (?2 IS NULL OR alert_id = ?2)
               AND (?3 IS NULL OR channel = ?3)
               AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC
             LIMIT ?5",
        )
        .bind(states)
        .bind(filter.alert_id)
        .bind(filter.channel.as_deref())
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(OutboxRow::from).collect())
    }
}

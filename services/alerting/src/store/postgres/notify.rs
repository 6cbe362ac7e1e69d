//! The notification outbox in PostgreSQL: claims serialised by an advisory
//! lock and `FOR UPDATE SKIP LOCKED`, attempts recorded only under the
//! claim's lease.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::PgStore;
use crate::notify::{
    AlertPayload, ListFilter, Notification, NotificationEvent, NotifyConfig, OutboxRow,
};
use crate::store::{
    Attempt, ClaimedNotification, DeliveryState, NewNotification, NotificationStore, StoreResult,
};

/// Advisory lock taken while claiming, so concurrent claims (other
/// instances) see each other's leases and keep per-alert order. ASCII
/// "nwoutbox".
const CLAIM_LOCK: i64 = 0x6e77_6f75_7462_6f78;

const PENDING: i16 = 1;
const DELIVERED: i16 = 2;
const FAILED: i16 = 3;

fn state_code(state: DeliveryState) -> i16 {
    match state {
        DeliveryState::Pending => PENDING,
        DeliveryState::Delivered => DELIVERED,
        DeliveryState::Failed => FAILED,
    }
}

/// Writes the outbox rows of one notification inside the caller's
/// transaction; returns the number of rows.
pub(super) async fn insert_outbox(
    tx: &mut PgConnection,
    notification: &NewNotification,
) -> Result<u64, sqlx::Error> {
    let (names, kinds): (Vec<String>, Vec<i16>) = notification
        .channels
        .iter()
        .map(|(name, kind)| (name.clone(), *kind as i16))
        .unzip();
    if names.is_empty() {
        return Ok(0);
    }
    let inserted = sqlx::query(
        "INSERT INTO notification_outbox (alert_id, channel, channel_kind, event, payload, state)
         SELECT $1, c.name, c.kind, $4, $5, $6
         FROM UNNEST($2::text[], $3::int2[]) AS c(name, kind)",
    )
    .bind(notification.alert_id)
    .bind(&names)
    .bind(&kinds)
    .bind(notification.event.as_str())
    .bind(Json(&notification.payload))
    .bind(PENDING)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected())
}

/// Writes one outbox row per configured channel inside the caller's
/// transaction (a change of its own committing with the notification);
/// returns the number of rows. Call `Notifier::wake` after the commit.
pub async fn enqueue(
    tx: &mut PgConnection,
    config: &NotifyConfig,
    notification: &Notification,
) -> Result<u64, sqlx::Error> {
    match crate::notify::outbox_entry(config, notification, &[]) {
        Some(entry) => insert_outbox(tx, &entry).await,
        None => Ok(0),
    }
}

/// A row claimed for delivery, as selected.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    alert_id: Uuid,
    channel: String,
    event: String,
    payload: Json<serde_json::Value>,
    attempts: i32,
}

/// An outbox row as `list_notifications` selects it.
#[derive(sqlx::FromRow)]
struct RawRow {
    id: i64,
    alert_id: Uuid,
    channel: String,
    channel_kind: i16,
    event: String,
    state: i16,
    attempts: i32,
    last_error: String,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    device_id: String,
    rule_name: String,
}

impl From<RawRow> for OutboxRow {
    fn from(raw: RawRow) -> Self {
        use netward_shared::proto::v1;
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
            channel_kind: v1::ChannelKind::try_from(i32::from(raw.channel_kind))
                .unwrap_or(v1::ChannelKind::Unspecified),
            // The column's CHECK allows nothing else.
            event: NotificationEvent::parse(&raw.event).unwrap_or(NotificationEvent::Firing),
            state,
            attempts: u32::try_from(raw.attempts).unwrap_or(0),
            last_error: raw.last_error,
            next_attempt_at: raw.next_attempt_at,
            created_at: raw.created_at,
            delivered_at: raw.delivered_at,
            device_id: raw.device_id,
            rule_name: raw.rule_name,
        }
    }
}

#[async_trait]
impl NotificationStore for PgStore {
    async fn enqueue(&self, notification: &NewNotification) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
        // Serialises claims across instances; held for one short statement.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(&mut *tx)
            .await?;
        // A row waits while an older row of its (alert, channel) is pending
        // and not due: backing off, or leased to a sender right now.
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "WITH due AS (
                 SELECT n.id FROM notification_outbox n
                 WHERE n.state = 1 AND n.next_attempt_at <= $1 AND n.channel = ANY($2)
                   AND NOT EXISTS (
                       SELECT 1 FROM notification_outbox o
                       WHERE o.alert_id = n.alert_id AND o.channel = n.channel
                         AND o.state = 1 AND o.id < n.id AND o.next_attempt_at > $1)
                 ORDER BY n.id
                 LIMIT $3
                 FOR UPDATE OF n SKIP LOCKED)
             UPDATE notification_outbox t SET next_attempt_at = $4
             FROM due WHERE t.id = due.id
             RETURNING t.id, t.alert_id, t.channel, t.event, t.payload, t.attempts",
        )
        .bind(now)
        .bind(channels)
        .bind(limit)
        .bind(lease_until)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.sort_by_key(|row| row.id);
        Ok(rows
            .into_iter()
            .map(|row| ClaimedNotification {
                id: row.id,
                alert_id: row.alert_id,
                channel: row.channel,
                event: row.event,
                payload: row.payload.0,
                attempts: row.attempts,
            })
            .collect())
    }

    async fn postpone(
        &self,
        id: i64,
        due_at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = $2
             WHERE id = $1 AND state = 1 AND next_attempt_at = $3",
        )
        .bind(id)
        .bind(due_at)
        .bind(lease_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_attempt(&self, attempt: &Attempt) -> StoreResult<bool> {
        let recorded = sqlx::query(
            "UPDATE notification_outbox
             SET state = $2, attempts = attempts + 1, next_attempt_at = $3, last_error = $4,
                 delivered_at = CASE WHEN $2 = 2 THEN $5 ELSE delivered_at END
             WHERE id = $1 AND state = 1 AND next_attempt_at = $6",
        )
        .bind(attempt.id)
        .bind(state_code(attempt.state))
        .bind(attempt.next_attempt_at)
        .bind(&attempt.last_error)
        .bind(attempt.at)
        .bind(attempt.lease_until)
        .execute(&self.pool)
        .await?;
        Ok(recorded.rows_affected() > 0)
    }

    async fn firing_payload(&self, alert_id: Uuid) -> StoreResult<Option<AlertPayload>> {
        let firing: Option<Json<AlertPayload>> = sqlx::query_scalar(
            "SELECT payload FROM notification_outbox
             WHERE alert_id = $1 AND event = 'firing' ORDER BY id DESC LIMIT 1",
        )
        .bind(alert_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(firing.map(|f| f.0))
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
        let states: Vec<i16> = filter.states.iter().map(|s| *s as i16).collect();
        let rows = sqlx::query_as::<_, RawRow>(
            "SELECT id, alert_id, channel, channel_kind, event, state, attempts, last_error,
                    next_attempt_at, created_at, delivered_at,
                    COALESCE(payload->>'device_id', '') AS device_id,
                    COALESCE(payload->>'rule_name', '') AS rule_name
             FROM notification_outbox
             WHERE (cardinality($1::int2[]) = 0
                    OR (CASE WHEN state = 1 AND attempts > 0 THEN 4 ELSE state END) = ANY($1))
               AND ($2::uuid IS NULL OR alert_id = $2)
               AND ($3::text IS NULL OR channel = $3)
               AND ($4::int8 IS NULL OR id < $4)
             ORDER BY id DESC
             LIMIT $5",
        )
        .bind(&states)
        .bind(filter.alert_id)
        .bind(filter.channel.as_deref())
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(OutboxRow::from).collect())
    }
}

//! The notification outbox as stored: rows written with the alert change
//! they announce, claimed under a lease by a notifier, and each attempt
//! recorded on its row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use uuid::Uuid;

use super::StoreResult;
use crate::notify::{AlertPayload, ListFilter, NotificationEvent, OutboxRow};

/// One notification to put in the outbox: a row per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub alert_id: Uuid,
    pub event: NotificationEvent,
    /// The body, its `state` already that of `event`.
    pub payload: AlertPayload,
    /// The channels (name, kind) it goes to; never empty.
    pub channels: Vec<(String, v1::ChannelKind)>,
}

/// Where a row stands: pending (never tried or to be retried), delivered,
/// or failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// A row claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedNotification {
    pub id: i64,
    pub alert_id: Uuid,
    pub channel: String,
    /// `firing` or `resolved`.
    pub event: String,
    pub payload: serde_json::Value,
    /// Attempts before this one.
    pub attempts: i32,
}

/// The outcome of one attempt to record on its row.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: i64,
    pub state: DeliveryState,
    /// When the row is due again (a retry), or the attempt's time.
    pub next_attempt_at: DateTime<Utc>,
    /// Empty when delivered.
    pub last_error: String,
    pub at: DateTime<Utc>,
    /// The lease the row was claimed under: recorded only while it holds.
    pub lease_until: DateTime<Utc>,
}

/// The outbox.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Writes one pending row per channel; returns the number of rows.
    async fn enqueue(&self, notification: &NewNotification) -> StoreResult<u64>;
    /// Claims up to `limit` due rows of `channels` at `now`, in id order,
    /// moving their `next_attempt_at` to `lease_until`. A row waits while an
    /// older pending row of its (alert, channel) is not due. Concurrent
    /// claims (other instances) never take the same row.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        channels: &[String],
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedNotification>>;
    /// Makes a claimed row due again at `due_at` without an attempt (a row
    /// ahead of it failed), if it still holds the lease.
    async fn postpone(
        &self,
        id: i64,
        due_at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Records an attempt; false when the row no longer holds the lease
    /// (another sender took it).
    async fn record_attempt(&self, attempt: &Attempt) -> StoreResult<bool>;
    /// The payload of the alert's latest firing row, if any.
    async fn firing_payload(&self, alert_id: Uuid) -> StoreResult<Option<AlertPayload>>;
    /// Rows pending (never tried or to be retried).
    async fn pending_notifications(&self) -> StoreResult<i64>;
    /// Up to `limit` rows matching `filter` (its `limit` is ignored),
    /// newest first.
    async fn list_notifications(
        &self,
        filter: &ListFilter,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>>;
}

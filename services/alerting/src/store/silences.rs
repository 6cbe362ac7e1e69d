//! Silences and maintenance windows as stored: a protobuf body beside the
//! window's bounds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use uuid::Uuid;

use super::StoreResult;

/// A silence to store.
#[derive(Debug, Clone)]
pub struct SilenceRow {
    pub id: Uuid,
    pub maintenance: bool,
    pub starts_at: DateTime<Utc>,
    /// `None`: a weekly window without an end.
    pub ends_at: Option<DateTime<Utc>>,
    pub body: v1::Silence,
}

/// Silences.
#[async_trait]
pub trait SilenceStore: Send + Sync + 'static {
    /// Every silence that has not ended by the database's clock.
    async fn unended_silences(&self) -> StoreResult<Vec<v1::Silence>>;
    async fn insert_silence(&self, silence: &SilenceRow) -> StoreResult<()>;
    async fn silence(&self, id: Uuid) -> StoreResult<Option<v1::Silence>>;
    /// Moves a silence's end (and its body) to `ends_at`.
    async fn end_silence(
        &self,
        id: Uuid,
        ends_at: DateTime<Utc>,
        body: &v1::Silence,
    ) -> StoreResult<()>;
    /// Silences, newest first: those not ended at `now`, or all when
    /// `include_ended`; only maintenance windows (or only silences) when
    /// `maintenance` says so.
    async fn list_silences(
        &self,
        include_ended: bool,
        maintenance: Option<bool>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<v1::Silence>>;
}

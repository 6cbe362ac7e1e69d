//! Alerting's storage: one trait, a PostgreSQL implementation (schema
//! `alerting`), later a SQLite one for the embedded default. Writes are
//! batched and idempotent; the service decides, the store persists.

mod postgres;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use netward_shared::proto::v1;

pub use postgres::PgStore;

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// What storing one `ResultBatch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Probe rows written (0 for a duplicate).
    pub rows: u32,
    /// The batch's `batch_uid` was stored before: nothing was written.
    pub duplicate: bool,
}

/// A probe result ready to store: ids parsed, times settled.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub device_id: uuid::Uuid,
    pub probed_at: DateTime<Utc>,
    pub result: v1::ProbeResult,
}

#[async_trait]
pub trait AlertingStore: Send + Sync + 'static {
    /// Stores a batch's rows and their rollups in one transaction, unless its
    /// `batch_uid` was stored before. Partitions for the rows' days must exist.
    async fn store_probes(
        &self,
        batch_uid: &str,
        executor_id: &str,
        rows: &[ProbeRow],
    ) -> StoreResult<Stored>;
    /// Creates the daily partitions of `days` that do not exist yet.
    async fn ensure_partitions(&self, days: &[NaiveDate]) -> StoreResult<()>;
    /// The days that have a partition.
    async fn partitions(&self) -> StoreResult<Vec<NaiveDate>>;
    /// Drops raw partitions (and idempotency keys) older than `before`, and
    /// rollups older than `rollups_before`; returns the dropped days.
    async fn expire(
        &self,
        before: NaiveDate,
        rollups_before: DateTime<Utc>,
    ) -> StoreResult<Vec<NaiveDate>>;
}

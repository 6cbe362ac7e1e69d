//! The audit trail's table (`audit_events`): every rule, silence and
//! acknowledgement change, recorded by the service right after it succeeded.

use async_trait::async_trait;
use netward_shared::audit::{self, AuditEvent, AuditQuery};

use super::{PgStore, SqliteStore, StoreResult};

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Events matching `query`, newest first, at most `query.size + 1`.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

#[async_trait]
impl AuditStore for PgStore {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        audit::pg::insert(self.pool(), event).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        audit::pg::list(self.pool(), query).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        audit::sqlite::insert(self.pool(), event).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        audit::sqlite::list(self.pool(), query).await
    }
}

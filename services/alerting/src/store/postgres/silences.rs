//! Silences in PostgreSQL: a protobuf body beside the window's bounds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use prost::Message as _;
use uuid::Uuid;

use super::PgStore;
use crate::store::{SilenceRow, SilenceStore, StoreResult, decode_all};

#[async_trait]
impl SilenceStore for PgStore {
    async fn unended_silences(&self) -> StoreResult<Vec<v1::Silence>> {
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM silences WHERE ends_at IS NULL OR ends_at > now()",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(&bodies))
    }

    async fn insert_silence(&self, silence: &SilenceRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO silences (id, maintenance, starts_at, ends_at, created_at, body) \
             VALUES ($1, $2, $3, $4, now(), $5)",
        )
        .bind(silence.id)
        .bind(silence.maintenance)
        .bind(silence.starts_at)
        .bind(silence.ends_at)
        .bind(silence.body.encode_to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn silence(&self, id: Uuid) -> StoreResult<Option<v1::Silence>> {
        let body: Option<Vec<u8>> = sqlx::query_scalar("SELECT body FROM silences WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.and_then(|b| v1::Silence::decode(b.as_slice()).ok()))
    }

    async fn end_silence(
        &self,
        id: Uuid,
        ends_at: DateTime<Utc>,
        body: &v1::Silence,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE silences SET ends_at = $2, body = $3 WHERE id = $1")
            .bind(id)
            .bind(ends_at)
            .bind(body.encode_to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_silences(
        &self,
        include_ended: bool,
        maintenance: Option<bool>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<v1::Silence>> {
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM silences \
             WHERE ($1 OR ends_at IS NULL OR ends_at > $2) \
               AND ($3::boolean IS NULL OR maintenance = $3) \
             ORDER BY created_at DESC, id",
        )
        .bind(include_ended)
        .bind(now)
        .bind(maintenance)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(&bodies))
    }
}

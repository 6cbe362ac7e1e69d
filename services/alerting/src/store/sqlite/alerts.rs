//! Rules and alerts in SQLite: protobuf bodies (BLOB) beside the columns
//! they are queried by, as in PostgreSQL. "One open alert per rule, device
//! and subject" is the same partial unique index (`alerts_open_key`).

use async_trait::async_trait;
use chrono::Utc;
use netward_shared::proto::v1;
use prost::Message as _;
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::notifications::insert_outbox;
use super::{SqliteStore, micros};
use crate::store::{AlertStore, AlertWrite, NotifyWhen, StoreResult, decode_all, uuid_of};

/// Whether a firing notification of the alert is in the outbox (sent or due).
async fn fired_notified(tx: &mut SqliteConnection, alert_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox WHERE alert_id = ?1 AND event = 'firing')",
    )
    .bind(alert_id)
    .fetch_one(&mut *tx)
    .await
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn builtin_rules(&self) -> StoreResult<Vec<(i32, String)>> {
        let seeded: Vec<(i32, String)> =
            sqlx::query_as("SELECT kind, name FROM rules WHERE builtin")
                .fetch_all(&self.pool)
                .await?;
        Ok(seeded)
    }

    async fn seed_rule(&self, rule: &v1::Rule) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO rules (id, name, kind, enabled, builtin, body) \
             VALUES (?1, ?2, ?3, 1, 1, ?4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(uuid_of(&rule.id))
        .bind(&rule.name)
        .bind(rule.kind)
        .bind(rule.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn rules(&self) -> StoreResult<Vec<v1::Rule>> {
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM rules ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(decode_all(&bodies))
    }

    async fn insert_rule(&self, rule: &v1::Rule) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO rules (id, name, kind, enabled, builtin, body) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        )
        .bind(uuid_of(&rule.id))
        .bind(&rule.name)
        .bind(rule.kind)
        .bind(rule.enabled.unwrap_or(true))
        .bind(rule.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn update_rule(&self, rule: &v1::Rule) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE rules SET name = ?2, enabled = ?3, body = ?4 WHERE id = ?1")
            .bind(uuid_of(&rule.id))
            .bind(&rule.name)
            .bind(rule.enabled.unwrap_or(true))
            .bind(rule.encode_to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn replace_rule_body(&self, rule: &v1::Rule) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE rules SET body = ?2 WHERE id = ?1")
            .bind(uuid_of(&rule.id))
            .bind(rule.encode_to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn delete_rule(&self, id: Uuid) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM rules WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn open_alerts(&self) -> StoreResult<Vec<v1::Alert>> {
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM alerts WHERE state <> 3")
            .fetch_all(&self.pool)
            .await?;
        Ok(decode_all(&bodies))
    }

    async fn write_alerts(&self, writes: &[AlertWrite]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for write in writes {
            let alert = &write.alert;
            let id = uuid_of(&alert.id);
            if write.new {
                sqlx::query(
                    "INSERT INTO alerts (id, rule_id, device_id, interface, state, severity, \
                         started_at, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .bind(id)
                .bind(uuid_of(&alert.rule_id))
                .bind(uuid_of(&alert.device_id))
                .bind(&write.subject)
                .bind(alert.state)
                .bind(alert.severity)
                .bind(micros(
                    alert
                        .started_at
                        .as_ref()
                        .and_then(crate::from_timestamp)
                        .unwrap_or_else(Utc::now),
                ))
                .bind(alert.encode_to_vec())
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE alerts SET state = ?2, resolved_at = ?3, body = ?4 WHERE id = ?1",
                )
                .bind(id)
                .bind(alert.state)
                .bind(
                    alert
                        .resolved_at
                        .as_ref()
                        .map(|t| micros(crate::from_timestamp(t).unwrap_or_else(Utc::now))),
                )
                .bind(alert.encode_to_vec())
                .execute(&mut *tx)
                .await?;
            }
            // The notification commits with the alert change, or neither
            // does: a crash in between loses nothing.
            let Some(notify) = &write.notify else {
                continue;
            };
            let due = match notify.when {
                NotifyWhen::Always => true,
                NotifyWhen::FiringSent => fired_notified(&mut tx, id).await?,
                NotifyWhen::FiringNotSent => !fired_notified(&mut tx, id).await?,
            };
            if due {
                insert_outbox(&mut tx, &notify.notification).await?;
            }
        }
        tx.commit().await
    }

    async fn acknowledge_alert(&self, alert: &v1::Alert) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE alerts SET state = ?2, body = ?3 WHERE id = ?1 AND state <> 3")
            .bind(uuid_of(&alert.id))
            .bind(alert.state)
            .bind(alert.encode_to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn list_alerts(&self, include_resolved: bool, limit: i64) -> StoreResult<Vec<v1::Alert>> {
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM alerts WHERE (?1 OR state <> 3) \
             ORDER BY started_at DESC, id LIMIT ?2",
        )
        .bind(include_resolved)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(&bodies))
    }

    async fn alert(&self, id: Uuid) -> StoreResult<Option<v1::Alert>> {
        let body: Option<Vec<u8>> = sqlx::query_scalar("SELECT body FROM alerts WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.and_then(|b| v1::Alert::decode(b.as_slice()).ok()))
    }
}

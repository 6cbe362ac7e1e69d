//! SNMP polls in SQLite: a packed row per device and poll in `snmp_raw`
//! and hourly interface rows per device and day in `interface_rollups_1h`,
//! plain tables whose old rows `expire` deletes (`tiers.rs`); the current
//! view upserted. The view's rows go in one statement, bound as a JSON
//! array of rows (see `json_rows`; blobs ride in it as hex, UUIDs as their
//! hyphenated text); packed rows are bound one by one as blobs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use prost::Message as _;
use serde_json::{Value, json};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, claim_batch, instant, json_rows, keyset_rows, micros};
use crate::store::packed_snmp;
use crate::store::{
    CurrentInterface, INTERFACE_HOURS, InterfaceMemory, InterfaceRollupRow, PollRow, SnmpBatch,
    SnmpDeviceRow, SnmpDeviceWrite, SnmpStore, StoreResult, StoredPoll,
};

fn index_of(if_index: u32) -> i64 {
    i64::from(if_index.min(i32::MAX as u32))
}

/// Bytes as the hex text `unhex()` reads back.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn encode_error(error: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(error))
}

#[async_trait]
impl SnmpStore for SqliteStore {
    async fn current_interfaces(&self) -> StoreResult<Vec<CurrentInterface>> {
        type InterfaceRow = (Uuid, i64, Vec<u8>, Vec<u8>, String);
        let rows: Vec<InterfaceRow> =
            sqlx::query_as("SELECT device_id, if_index, body, sample, memory FROM interfaces")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(device_id, index, body, sample, memory)| {
                Some(CurrentInterface {
                    device_id,
                    if_index: u32::try_from(index).ok()?,
                    status: v1::InterfaceStatus::decode(body.as_slice()).ok()?,
                    sample: v1::InterfaceSample::decode(sample.as_slice()).ok()?,
                    memory: serde_json::from_str::<InterfaceMemory>(&memory).ok()?,
                })
            })
            .collect())
    }

    async fn snmp_devices(&self) -> StoreResult<Vec<SnmpDeviceRow>> {
        type DeviceRow = (Uuid, i64, Option<i64>, Option<i64>, i32, String);
        let rows: Vec<DeviceRow> = sqlx::query_as(
            "SELECT device_id, polled_at, sys_uptime_ticks, last_reboot_at, outcome, error_detail \
             FROM snmp_devices",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(device_id, polled_at, uptime, last_reboot_at, outcome, detail)| SnmpDeviceRow {
                    device_id,
                    polled_at: instant(polled_at),
                    uptime_ticks: uptime.and_then(|u| u32::try_from(u).ok()),
                    last_reboot_at: last_reboot_at.map(instant),
                    outcome,
                    detail,
                },
            )
            .collect())
    }

    async fn store_snmp_batch(&self, batch: SnmpBatch<'_>) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        if !claim_batch(
            &mut tx,
            batch.batch_uid,
            batch.executor_id,
            batch.polls.len(),
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(false);
        }
        write_polls(&mut tx, batch.polls).await?;
        write_current(&mut tx, batch.interfaces, batch.devices).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn save_interfaces(&self, interfaces: &[CurrentInterface]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        write_current(&mut tx, interfaces, &[]).await?;
        tx.commit().await
    }

    async fn interface_polls(
        &self,
        device: Option<Uuid>,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        after: Option<(Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredPoll>> {
        let rows = keyset_rows(
            &self.pool,
            (
                "SELECT device_id, polled_at, interfaces FROM snmp_raw",
                "polled_at",
            ),
            device,
            (from, to),
            after,
            limit,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(device_id, polled_at, interfaces)| StoredPoll {
                device_id,
                polled_at: instant(polled_at),
                interfaces,
            })
            .collect())
    }

    async fn snmp_raw_days(&self) -> StoreResult<Vec<DateTime<Utc>>> {
        let days = self.raw_days().await?;
        Ok(days.iter().map(|day| super::midnight(*day)).collect())
    }

    async fn interface_rollups(
        &self,
        device: Option<Uuid>,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        after: Option<(Uuid, DateTime<Utc>)>,
        limit: u32,
    ) -> StoreResult<Vec<InterfaceRollupRow>> {
        let rows = keyset_rows(
            &self.pool,
            (
                "SELECT device_id, start, entries FROM interface_rollups_1h",
                "start",
            ),
            device,
            (from, to),
            after,
            limit,
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(device_id, start, entries)| match packed_snmp::unpack_hours(&entries) {
                    Ok(interfaces) => Some(InterfaceRollupRow {
                        device_id,
                        start: instant(start),
                        interfaces,
                    }),
                    Err(error) => {
                        tracing::error!(%error, %device_id, start, "skipping a damaged interface rollup row");
                        None
                    }
                },
            )
            .collect())
    }

    async fn put_interface_rollups(&self, rows: &[InterfaceRollupRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO interface_rollups_1h (device_id, start, entries) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (device_id, start) DO UPDATE SET entries = excluded.entries",
            )
            .bind(row.device_id)
            .bind(micros(row.start))
            .bind(packed_snmp::pack_hours(&row.interfaces))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn interface_mark(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.mark(INTERFACE_HOURS).await
    }

    async fn set_interface_mark(&self, until: DateTime<Utc>) -> StoreResult<()> {
        self.set_mark(INTERFACE_HOURS, until).await
    }

    async fn note_interfaces_late(&self, late: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for (day, device) in late {
            sqlx::query(
                "INSERT INTO interface_rollup_late (day, device_id) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(micros(*day))
            .bind(device)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn interfaces_late(&self) -> StoreResult<Vec<(DateTime<Utc>, Uuid)>> {
        let rows: Vec<(i64, Uuid)> = sqlx::query_as(
            "SELECT day, device_id FROM interface_rollup_late ORDER BY day, device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(d, id)| (instant(d), id)).collect())
    }

    async fn clear_interfaces_late(&self, done: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for (day, device) in done {
            sqlx::query("DELETE FROM interface_rollup_late WHERE day = ?1 AND device_id = ?2")
                .bind(micros(*day))
                .bind(device)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    async fn forget_snmp_devices(&self, devices: &[Uuid]) -> StoreResult<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let devices = json_rows(devices)?;
        let mut tx = self.write().await?;
        sqlx::query(
            "DELETE FROM interfaces WHERE device_id IN \
             (SELECT unhex(value, '-') FROM json_each(?1))",
        )
        .bind(&devices)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM snmp_devices WHERE device_id IN \
             (SELECT unhex(value, '-') FROM json_each(?1))",
        )
        .bind(&devices)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

/// One row per poll; a poll already stored (same device and instant)
/// stays as it was.
async fn write_polls(tx: &mut SqliteConnection, polls: &[PollRow<'_>]) -> StoreResult<()> {
    for poll in polls {
        sqlx::query(
            "INSERT INTO snmp_raw (device_id, polled_at, poll, interfaces) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )
        .bind(poll.device_id)
        .bind(micros(poll.polled_at))
        .bind(packed_snmp::pack_poll(poll.sample))
        .bind(packed_snmp::pack_interfaces(&poll.interfaces))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn write_current(
    tx: &mut SqliteConnection,
    interfaces: &[CurrentInterface],
    devices: &[SnmpDeviceWrite],
) -> Result<(), sqlx::Error> {
    let now = micros(Utc::now());
    if !interfaces.is_empty() {
        let rows = interfaces
            .iter()
            .map(|i| {
                Ok(json!([
                    i.device_id,
                    index_of(i.if_index),
                    hex(&i.status.encode_to_vec()),
                    hex(&i.sample.encode_to_vec()),
                    serde_json::to_string(&i.memory).map_err(encode_error)?,
                ]))
            })
            .collect::<Result<Vec<Value>, sqlx::Error>>()?;
        sqlx::query(
            "INSERT INTO interfaces (device_id, if_index, body, sample, memory, updated_at) \
             SELECT unhex(value ->> 0, '-'), value ->> 1, unhex(value ->> 2), \
                    unhex(value ->> 3), value ->> 4, ?2 \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (device_id, if_index) DO UPDATE SET body = excluded.body, \
                 sample = excluded.sample, memory = excluded.memory, \
                 updated_at = excluded.updated_at",
        )
        .bind(json_rows(&rows)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if devices.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!([
                d.device_id,
                micros(d.polled_at),
                d.outcome,
                d.uptime_ticks,
                d.sys_object_id,
                d.profile,
                d.last_reboot_at.map(micros),
                d.detail,
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO snmp_devices (device_id, polled_at, outcome, sys_uptime_ticks, \
             sys_object_id, profile, last_reboot_at, error_detail) \
         SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                value ->> 5, value ->> 6, value ->> 7 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (device_id) DO UPDATE SET polled_at = excluded.polled_at, \
             outcome = excluded.outcome, sys_uptime_ticks = excluded.sys_uptime_ticks, \
             sys_object_id = CASE WHEN excluded.sys_object_id = '' \
                 THEN snmp_devices.sys_object_id ELSE excluded.sys_object_id END, \
             profile = CASE WHEN excluded.profile = '' \
                 THEN snmp_devices.profile ELSE excluded.profile END, \
             last_reboot_at = excluded.last_reboot_at, error_detail = excluded.error_detail",
    )
    .bind(json_rows(&rows)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

//! SNMP polls in PostgreSQL: a packed row per device and poll in daily
//! partitions of `snmp_raw` (made and dropped with `probe_raw`'s, see
//! `tiers.rs`), hourly interface rows per device and day in monthly
//! partitions of `interface_rollups_1h`, the current view upserted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use prost::Message as _;
use sqlx::types::Json;
use uuid::Uuid;

use super::{PgStore, claim_batch, keyset_rows};
use crate::store::packed_snmp;
use crate::store::{
    CurrentInterface, INTERFACE_HOURS, InterfaceMemory, InterfaceRollupRow, PollRow, SnmpBatch,
    SnmpDeviceRow, SnmpDeviceWrite, SnmpStore, StoreResult, StoredPoll,
};

fn index_of(if_index: u32) -> i32 {
    i32::try_from(if_index).unwrap_or(i32::MAX)
}

#[async_trait]
impl SnmpStore for PgStore {
    async fn current_interfaces(&self) -> StoreResult<Vec<CurrentInterface>> {
        type InterfaceRow = (Uuid, i32, Vec<u8>, Vec<u8>, Json<InterfaceMemory>);
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
                    memory: memory.0,
                })
            })
            .collect())
    }

    async fn snmp_devices(&self) -> StoreResult<Vec<SnmpDeviceRow>> {
        type DeviceRow = (
            Uuid,
            DateTime<Utc>,
            Option<i64>,
            Option<DateTime<Utc>>,
            i16,
            String,
        );
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
                    polled_at,
                    uptime_ticks: uptime.and_then(|u| u32::try_from(u).ok()),
                    last_reboot_at,
                    outcome: i32::from(outcome),
                    detail,
                },
            )
            .collect())
    }

    async fn store_snmp_batch(&self, batch: SnmpBatch<'_>) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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
                polled_at,
                interfaces,
            })
            .collect())
    }

    async fn snmp_raw_days(&self) -> StoreResult<Vec<DateTime<Utc>>> {
        let days = self.partition_starts("snmp_raw", "%Y%m%d").await?;
        Ok(days
            .iter()
            .map(|day| day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
            .collect())
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
            .filter_map(|(device_id, start, entries)| {
                match packed_snmp::unpack_hours(&entries) {
                    Ok(interfaces) => Some(InterfaceRollupRow {
                        device_id,
                        start,
                        interfaces,
                    }),
                    Err(error) => {
                        tracing::error!(%error, %device_id, %start, "skipping a damaged interface rollup row");
                        None
                    }
                }
            })
            .collect())
    }

    async fn put_interface_rollups(&self, rows: &[InterfaceRollupRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let device: Vec<Uuid> = rows.iter().map(|r| r.device_id).collect();
        let start: Vec<DateTime<Utc>> = rows.iter().map(|r| r.start).collect();
        let entries: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| packed_snmp::pack_hours(&r.interfaces))
            .collect();
        sqlx::query(
            "INSERT INTO interface_rollups_1h (device_id, start, entries) \
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bytea[]) \
             ON CONFLICT (device_id, start) DO UPDATE SET entries = EXCLUDED.entries",
        )
        .bind(&device)
        .bind(&start)
        .bind(&entries)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn interface_mark(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.mark(INTERFACE_HOURS).await
    }

    async fn set_interface_mark(&self, until: DateTime<Utc>) -> StoreResult<()> {
        self.set_mark(INTERFACE_HOURS, until).await
    }

    async fn note_interfaces_late(&self, late: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let day: Vec<DateTime<Utc>> = late.iter().map(|l| l.0).collect();
        let device: Vec<Uuid> = late.iter().map(|l| l.1).collect();
        sqlx::query(
            "INSERT INTO interface_rollup_late (day, device_id) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(&day)
        .bind(&device)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn interfaces_late(&self) -> StoreResult<Vec<(DateTime<Utc>, Uuid)>> {
        sqlx::query_as("SELECT day, device_id FROM interface_rollup_late ORDER BY day, device_id")
            .fetch_all(&self.pool)
            .await
    }

    async fn clear_interfaces_late(&self, done: &[(DateTime<Utc>, Uuid)]) -> StoreResult<()> {
        let day: Vec<DateTime<Utc>> = done.iter().map(|l| l.0).collect();
        let device: Vec<Uuid> = done.iter().map(|l| l.1).collect();
        sqlx::query(
            "DELETE FROM interface_rollup_late WHERE (day, device_id) IN \
             (SELECT * FROM UNNEST($1::timestamptz[], $2::uuid[]))",
        )
        .bind(&day)
        .bind(&device)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_snmp_devices(&self, devices: &[Uuid]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM interfaces WHERE device_id = ANY($1)")
            .bind(devices)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM snmp_devices WHERE device_id = ANY($1)")
            .bind(devices)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// One row per poll; a poll already stored (same device and instant)
/// stays as it was.
async fn write_polls(tx: &mut sqlx::PgConnection, polls: &[PollRow<'_>]) -> StoreResult<()> {
    if polls.is_empty() {
        return Ok(());
    }
    let device: Vec<Uuid> = polls.iter().map(|p| p.device_id).collect();
    let at: Vec<DateTime<Utc>> = polls.iter().map(|p| p.polled_at).collect();
    let poll: Vec<Vec<u8>> = polls
        .iter()
        .map(|p| packed_snmp::pack_poll(p.sample))
        .collect();
    let interfaces: Vec<Vec<u8>> = polls
        .iter()
        .map(|p| packed_snmp::pack_interfaces(&p.interfaces))
        .collect();
    sqlx::query(
        "INSERT INTO snmp_raw (device_id, polled_at, poll, interfaces) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bytea[], $4::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&device)
    .bind(&at)
    .bind(&poll)
    .bind(&interfaces)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_current(
    tx: &mut sqlx::PgConnection,
    interfaces: &[CurrentInterface],
    devices: &[SnmpDeviceWrite],
) -> Result<(), sqlx::Error> {
    if !interfaces.is_empty() {
        sqlx::query(
            "INSERT INTO interfaces (device_id, if_index, body, sample, memory, updated_at) \
             SELECT d, i, b, s, m, now() \
             FROM UNNEST($1::uuid[], $2::int4[], $3::bytea[], $4::bytea[], $5::jsonb[]) AS x(d, i, b, s, m) \
             ON CONFLICT (device_id, if_index) DO UPDATE SET body = EXCLUDED.body, \
                 sample = EXCLUDED.sample, memory = EXCLUDED.memory, updated_at = now()",
        )
        .bind(interfaces.iter().map(|i| i.device_id).collect::<Vec<_>>())
        .bind(interfaces.iter().map(|i| index_of(i.if_index)).collect::<Vec<_>>())
        .bind(interfaces.iter().map(|i| i.status.encode_to_vec()).collect::<Vec<_>>())
        .bind(interfaces.iter().map(|i| i.sample.encode_to_vec()).collect::<Vec<_>>())
        .bind(interfaces.iter().map(|i| Json(i.memory.clone())).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    if devices.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO snmp_devices (device_id, polled_at, outcome, sys_uptime_ticks, sys_object_id, profile, last_reboot_at, error_detail) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int2[], $4::int8[], $5::text[], $6::text[], $7::timestamptz[], $8::text[]) \
         ON CONFLICT (device_id) DO UPDATE SET polled_at = EXCLUDED.polled_at, outcome = EXCLUDED.outcome, \
             sys_uptime_ticks = EXCLUDED.sys_uptime_ticks, \
             sys_object_id = CASE WHEN EXCLUDED.sys_object_id = '' THEN snmp_devices.sys_object_id ELSE EXCLUDED.sys_object_id END, \
             profile = CASE WHEN EXCLUDED.profile = '' THEN snmp_devices.profile ELSE EXCLUDED.profile END, \
             last_reboot_at = EXCLUDED.last_reboot_at, error_detail = EXCLUDED.error_detail",
    )
    .bind(devices.iter().map(|d| d.device_id).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.polled_at).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.outcome as i16).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.uptime_ticks.map(i64::from)).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.sys_object_id.clone()).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.profile.clone()).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.last_reboot_at).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.detail.clone()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

//! SNMP polls in PostgreSQL: samples and interface samples in daily
//! partitions (UNNEST inserts), hourly rollups merged with ON CONFLICT,
//! the current view upserted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use prost::Message as _;
use sqlx::types::Json;
use uuid::Uuid;

use super::{PgStore, claim_batch};
use crate::snmp::book::scalar_json;
use crate::store::bits;
use crate::store::{
    CurrentInterface, InterfaceMemory, InterfaceRollup, InterfaceSampleRow, SampleRef, SnmpBatch,
    SnmpDeviceRow, SnmpDeviceWrite, SnmpStore, StoreResult,
};
use crate::timestamp as ts;

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
            Option<String>,
        );
        // The last poll's detail lives with its sample (one index lookup
        // per device); a sample already dropped by retention leaves it empty.
        let rows: Vec<DeviceRow> = sqlx::query_as(
            "SELECT d.device_id, d.polled_at, d.sys_uptime_ticks, d.last_reboot_at, d.outcome, \
             (SELECT s.error_detail FROM snmp_samples s WHERE s.device_id = d.device_id \
              ORDER BY s.polled_at DESC LIMIT 1) \
             FROM snmp_devices d",
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
                    detail: detail.unwrap_or_default(),
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
            batch.samples.len(),
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(false);
        }
        write_samples(&mut tx, batch.executor_id, batch.samples).await?;
        write_interface_rows(&mut tx, batch.interface_samples).await?;
        write_rollups(&mut tx, batch.rollups).await?;
        write_current(&mut tx, batch.interfaces, batch.devices).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn interface_history(
        &self,
        device_id: Uuid,
        if_index: u32,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        step_seconds: i64,
        raw: bool,
    ) -> StoreResult<Vec<v1::InterfaceHistoryPoint>> {
        type Row = (
            DateTime<Utc>,
            i64,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<f64>,
        );
        let index = index_of(if_index);
        let rows: Vec<Row> = if raw {
            sqlx::query_as(
                "SELECT to_timestamp(floor(extract(epoch FROM polled_at) / $4) * $4) AS bucket, \
                        count(*), avg(in_bps), max(in_bps), avg(out_bps), max(out_bps), \
                        max(in_utilisation), max(out_utilisation), \
                        sum(in_errors_delta)::int8, sum(out_errors_delta)::int8, \
                        sum(in_discards_delta)::int8, sum(out_discards_delta)::int8, \
                        100.0 * avg((oper_status = 1)::int)::float8 \
                 FROM interface_samples \
                 WHERE device_id = $1 AND if_index = $2 AND polled_at >= $3 AND polled_at < $5 \
                 GROUP BY bucket ORDER BY bucket",
            )
            .bind(device_id)
            .bind(index)
            .bind(start)
            .bind(step_seconds as f64)
            .bind(end)
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query_as(
                "SELECT to_timestamp(floor(extract(epoch FROM hour) / $4) * $4) AS bucket, \
                        sum(samples)::int8, \
                        sum(in_bps_sum) / NULLIF(sum(rate_samples), 0), max(in_bps_max), \
                        sum(out_bps_sum) / NULLIF(sum(rate_samples), 0), max(out_bps_max), \
                        max(in_utilisation_max), max(out_utilisation_max), \
                        sum(in_errors)::int8, sum(out_errors)::int8, \
                        sum(in_discards)::int8, sum(out_discards)::int8, \
                        100.0 * sum(oper_up)::float8 / NULLIF(sum(samples), 0) \
                 FROM interface_rollups \
                 WHERE device_id = $1 AND if_index = $2 AND hour >= $3 AND hour < $5 \
                 GROUP BY bucket ORDER BY bucket",
            )
            .bind(device_id)
            .bind(index)
            .bind(start)
            .bind(step_seconds as f64)
            .bind(end)
            .fetch_all(&self.pool)
            .await?
        };
        let count = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
        Ok(rows
            .into_iter()
            .map(|r| v1::InterfaceHistoryPoint {
                time: Some(ts(r.0)),
                sample_count: u32::try_from(r.1).unwrap_or(u32::MAX),
                in_bps_avg: r.2,
                in_bps_max: r.3,
                out_bps_avg: r.4,
                out_bps_max: r.5,
                in_utilisation_max_percent: r.6,
                out_utilisation_max_percent: r.7,
                in_errors: count(r.8),
                out_errors: count(r.9),
                in_discards: count(r.10),
                out_discards: count(r.11),
                oper_up_percent: r.12.unwrap_or(0.0),
            })
            .collect())
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

async fn write_samples(
    tx: &mut sqlx::PgConnection,
    executor_id: &str,
    samples: &[SampleRef<'_>],
) -> Result<(), sqlx::Error> {
    let values: Vec<Json<Vec<serde_json::Value>>> = samples
        .iter()
        .map(|(_, _, s)| Json(s.values.iter().map(scalar_json).collect()))
        .collect();
    sqlx::query(
        "INSERT INTO snmp_samples (device_id, polled_at, cycle_id, executor_id, outcome, partial, \
             duration_ms, sys_uptime_ticks, requests_sent, profile, error_detail, scalar_values) \
         SELECT d, t, c, $12, o, p, du, u, r, pr, e, v \
         FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int8[], $4::int2[], $5::bool[], \
                     $6::int4[], $7::int8[], $8::int4[], $9::text[], $10::text[], $11::jsonb[]) \
              AS x(d, t, c, o, p, du, u, r, pr, e, v)",
    )
    .bind(samples.iter().map(|(d, _, _)| *d).collect::<Vec<_>>())
    .bind(samples.iter().map(|(_, t, _)| *t).collect::<Vec<_>>())
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.cycle_id.min(i64::MAX as u64) as i64)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.outcome as i16)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.partial)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.duration_ms.min(i32::MAX as u32) as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.sys_uptime_ticks.map(i64::from))
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.requests_sent.min(i32::MAX as u32) as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.profile.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        samples
            .iter()
            .map(|(_, _, s)| s.error_detail.clone())
            .collect::<Vec<_>>(),
    )
    .bind(values)
    .bind(executor_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Interface samples column by column (written with UNNEST).
#[derive(Default)]
struct Rows {
    device: Vec<Uuid>,
    if_index: Vec<i32>,
    polled_at: Vec<DateTime<Utc>>,
    admin: Vec<i16>,
    oper: Vec<i16>,
    speed: Vec<Option<i64>>,
    hc: Vec<bool>,
    in_octets: Vec<Option<i64>>,
    out_octets: Vec<Option<i64>>,
    in_errors: Vec<Option<i64>>,
    out_errors: Vec<Option<i64>>,
    rates: [Vec<Option<f64>>; 10],
    deltas: [Vec<Option<i64>>; 4],
    discontinuity: Vec<i16>,
}

async fn write_interface_rows(
    tx: &mut sqlx::PgConnection,
    samples: &[InterfaceSampleRow],
) -> Result<(), sqlx::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut rows = Rows::default();
    for sample in samples {
        rows.device.push(sample.device_id);
        rows.if_index.push(index_of(sample.if_index));
        rows.polled_at.push(sample.polled_at);
        rows.admin.push(sample.admin_status as i16);
        rows.oper.push(sample.oper_status as i16);
        rows.speed
            .push(sample.speed_bps.map(|s| s.min(i64::MAX as u64) as i64));
        rows.hc.push(sample.hc);
        rows.in_octets.push(bits(sample.in_octets));
        rows.out_octets.push(bits(sample.out_octets));
        rows.in_errors.push(bits(sample.in_errors));
        rows.out_errors.push(bits(sample.out_errors));
        for (column, value) in rows.rates.iter_mut().zip(sample.rates) {
            column.push(value);
        }
        for (column, value) in rows.deltas.iter_mut().zip(sample.deltas) {
            column.push(value);
        }
        rows.discontinuity.push(sample.discontinuity as i16);
    }
    let [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9] = &rows.rates;
    let [d0, d1, d2, d3] = &rows.deltas;
    sqlx::query(
        "INSERT INTO interface_samples (device_id, if_index, polled_at, admin_status, oper_status, \
             speed_bps, hc, in_octets, out_octets, in_errors, out_errors, in_bps, out_bps, \
             in_utilisation, out_utilisation, in_pps, out_pps, in_errors_ps, out_errors_ps, \
             in_discards_ps, out_discards_ps, in_errors_delta, out_errors_delta, \
             in_discards_delta, out_discards_delta, discontinuity) \
         SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::timestamptz[], $4::int2[], $5::int2[], \
             $6::int8[], $7::bool[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
             $12::float8[], $13::float8[], $14::float8[], $15::float8[], $16::float8[], \
             $17::float8[], $18::float8[], $19::float8[], $20::float8[], $21::float8[], \
             $22::int8[], $23::int8[], $24::int8[], $25::int8[], $26::int2[])",
    )
    .bind(&rows.device)
    .bind(&rows.if_index)
    .bind(&rows.polled_at)
    .bind(&rows.admin)
    .bind(&rows.oper)
    .bind(&rows.speed)
    .bind(&rows.hc)
    .bind(&rows.in_octets)
    .bind(&rows.out_octets)
    .bind(&rows.in_errors)
    .bind(&rows.out_errors)
    .bind(r0)
    .bind(r1)
    .bind(r2)
    .bind(r3)
    .bind(r4)
    .bind(r5)
    .bind(r6)
    .bind(r7)
    .bind(r8)
    .bind(r9)
    .bind(d0)
    .bind(d1)
    .bind(d2)
    .bind(d3)
    .bind(&rows.discontinuity)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_rollups(
    tx: &mut sqlx::PgConnection,
    rollups: &[InterfaceRollup],
) -> Result<(), sqlx::Error> {
    if rollups.is_empty() {
        return Ok(());
    }
    let values = rollups;
    sqlx::query(
        "INSERT INTO interface_rollups AS r (device_id, if_index, hour, samples, oper_up, \
             rate_samples, in_bps_sum, in_bps_max, out_bps_sum, out_bps_max, in_utilisation_max, \
             out_utilisation_max, in_errors, out_errors, in_discards, out_discards) \
         SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::timestamptz[], $4::int4[], $5::int4[], \
             $6::int4[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
             $12::float8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[]) \
         ON CONFLICT (device_id, if_index, hour) DO UPDATE SET \
             samples = r.samples + EXCLUDED.samples, \
             oper_up = r.oper_up + EXCLUDED.oper_up, \
             rate_samples = r.rate_samples + EXCLUDED.rate_samples, \
             in_bps_sum = r.in_bps_sum + EXCLUDED.in_bps_sum, \
             in_bps_max = GREATEST(r.in_bps_max, EXCLUDED.in_bps_max), \
             out_bps_sum = r.out_bps_sum + EXCLUDED.out_bps_sum, \
             out_bps_max = GREATEST(r.out_bps_max, EXCLUDED.out_bps_max), \
             in_utilisation_max = GREATEST(r.in_utilisation_max, EXCLUDED.in_utilisation_max), \
             out_utilisation_max = GREATEST(r.out_utilisation_max, EXCLUDED.out_utilisation_max), \
             in_errors = r.in_errors + EXCLUDED.in_errors, \
             out_errors = r.out_errors + EXCLUDED.out_errors, \
             in_discards = r.in_discards + EXCLUDED.in_discards, \
             out_discards = r.out_discards + EXCLUDED.out_discards",
    )
    .bind(values.iter().map(|v| v.device_id).collect::<Vec<_>>())
    .bind(
        values
            .iter()
            .map(|v| index_of(v.if_index))
            .collect::<Vec<_>>(),
    )
    .bind(values.iter().map(|v| v.hour).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.samples).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.oper_up).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.rate_samples).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.in_sum).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.in_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.out_sum).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.out_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.in_util_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.out_util_max).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[0]).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[1]).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[2]).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.deltas[3]).collect::<Vec<_>>())
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
    sqlx::query(
        "INSERT INTO snmp_devices (device_id, polled_at, outcome, sys_uptime_ticks, sys_object_id, profile, last_reboot_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int2[], $4::int8[], $5::text[], $6::text[], $7::timestamptz[]) \
         ON CONFLICT (device_id) DO UPDATE SET polled_at = EXCLUDED.polled_at, outcome = EXCLUDED.outcome, \
             sys_uptime_ticks = EXCLUDED.sys_uptime_ticks, \
             sys_object_id = CASE WHEN EXCLUDED.sys_object_id = '' THEN snmp_devices.sys_object_id ELSE EXCLUDED.sys_object_id END, \
             profile = CASE WHEN EXCLUDED.profile = '' THEN snmp_devices.profile ELSE EXCLUDED.profile END, \
             last_reboot_at = EXCLUDED.last_reboot_at",
    )
    .bind(devices.iter().map(|d| d.device_id).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.polled_at).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.outcome as i16).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.uptime_ticks.map(i64::from)).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.sys_object_id.clone()).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.profile.clone()).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.last_reboot_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

//! SNMP polls in SQLite: samples and interface samples in plain tables
//! (`expire` deletes their old rows), hourly rollups merged with
//! `ON CONFLICT`, the current view upserted. Each table's rows go in one
//! statement, bound as a JSON array of rows (see `json_rows`); blobs ride
//! in it as hex, UUIDs as their hyphenated text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::proto::v1;
use prost::Message as _;
use serde_json::{Value, json};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, claim_batch, instant, json_rows, micros};
use crate::snmp::book::scalar_json;
use crate::store::bits;
use crate::store::{
    CurrentInterface, InterfaceMemory, InterfaceRollup, InterfaceSampleRow, SampleRef, SnmpBatch,
    SnmpDeviceRow, SnmpDeviceWrite, SnmpStore, StoreResult,
};
use crate::timestamp as ts;

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
        type DeviceRow = (Uuid, i64, Option<i64>, Option<i64>, i32, Option<String>);
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
                    polled_at: instant(polled_at),
                    uptime_ticks: uptime.and_then(|u| u32::try_from(u).ok()),
                    last_reboot_at: last_reboot_at.map(instant),
                    outcome,
                    detail: detail.unwrap_or_default(),
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
            i64,
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
        let step = step_seconds.max(1).saturating_mul(1_000_000);
        // Instants are after 1970, so integer division floors as
        // PostgreSQL's floor(epoch / step) does.
        let sql = if raw {
            "SELECT (polled_at / ?4) * ?4 AS bucket, \
                    count(*), avg(in_bps), max(in_bps), avg(out_bps), max(out_bps), \
                    max(in_utilisation), max(out_utilisation), \
                    sum(in_errors_delta), sum(out_errors_delta), \
                    sum(in_discards_delta), sum(out_discards_delta), \
                    100.0 * avg(oper_status = 1) \
             FROM interface_samples \
             WHERE device_id = ?1 AND if_index = ?2 AND polled_at >= ?3 AND polled_at < ?5 \
             GROUP BY bucket ORDER BY bucket"
        } else {
            "SELECT (hour / ?4) * ?4 AS bucket, \
                    sum(samples), \
                    sum(in_bps_sum) / NULLIF(sum(rate_samples), 0), max(in_bps_max), \
                    sum(out_bps_sum) / NULLIF(sum(rate_samples), 0), max(out_bps_max), \
                    max(in_utilisation_max), max(out_utilisation_max), \
                    sum(in_errors), sum(out_errors), sum(in_discards), sum(out_discards), \
                    100.0 * sum(oper_up) / NULLIF(sum(samples), 0) \
             FROM interface_rollups \
             WHERE device_id = ?1 AND if_index = ?2 AND hour >= ?3 AND hour < ?5 \
             GROUP BY bucket ORDER BY bucket"
        };
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(device_id)
            .bind(index)
            .bind(micros(start))
            .bind(step)
            .bind(micros(end))
            .fetch_all(&self.pool)
            .await?;
        let count = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
        Ok(rows
            .into_iter()
            .map(|r| v1::InterfaceHistoryPoint {
                time: Some(ts(instant(r.0))),
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

async fn write_samples(
    tx: &mut SqliteConnection,
    executor_id: &str,
    samples: &[SampleRef<'_>],
) -> Result<(), sqlx::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let rows = samples
        .iter()
        .map(|(device_id, polled_at, s)| {
            let values: Vec<Value> = s.values.iter().map(scalar_json).collect();
            Ok(json!([
                device_id,
                micros(*polled_at),
                s.cycle_id.min(i64::MAX as u64),
                s.outcome,
                s.partial,
                s.duration_ms.min(i32::MAX as u32),
                s.sys_uptime_ticks,
                s.requests_sent.min(i32::MAX as u32),
                s.profile,
                s.error_detail,
                serde_json::to_string(&values).map_err(encode_error)?,
            ]))
        })
        .collect::<Result<Vec<Value>, sqlx::Error>>()?;
    sqlx::query(
        "INSERT INTO snmp_samples (device_id, polled_at, cycle_id, executor_id, outcome, partial, \
             duration_ms, sys_uptime_ticks, requests_sent, profile, error_detail, scalar_values) \
         SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, ?2, value ->> 3, \
                value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, \
                value ->> 10 \
         FROM json_each(?1)",
    )
    .bind(json_rows(&rows)?)
    .bind(executor_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_interface_rows(
    tx: &mut SqliteConnection,
    samples: &[InterfaceSampleRow],
) -> Result<(), sqlx::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = samples
        .iter()
        .map(|s| {
            let [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9] = s.rates;
            let [d0, d1, d2, d3] = s.deltas;
            json!([
                s.device_id,
                index_of(s.if_index),
                micros(s.polled_at),
                s.admin_status,
                s.oper_status,
                s.speed_bps.map(|v| v.min(i64::MAX as u64)),
                s.hc,
                bits(s.in_octets),
                bits(s.out_octets),
                bits(s.in_errors),
                bits(s.out_errors),
                r0,
                r1,
                r2,
                r3,
                r4,
                r5,
                r6,
                r7,
                r8,
                r9,
                d0,
                d1,
                d2,
                d3,
                s.discontinuity,
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO interface_samples (device_id, if_index, polled_at, admin_status, oper_status, \
             speed_bps, hc, in_octets, out_octets, in_errors, out_errors, in_bps, out_bps, \
             in_utilisation, out_utilisation, in_pps, out_pps, in_errors_ps, out_errors_ps, \
             in_discards_ps, out_discards_ps, in_errors_delta, out_errors_delta, \
             in_discards_delta, out_discards_delta, discontinuity) \
         SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, \
             value ->> 11, value ->> 12, value ->> 13, value ->> 14, value ->> 15, \
             value ->> 16, value ->> 17, value ->> 18, value ->> 19, value ->> 20, \
             value ->> 21, value ->> 22, value ->> 23, value ->> 24, value ->> 25 \
         FROM json_each(?1)",
    )
    .bind(json_rows(&rows)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_rollups(
    tx: &mut SqliteConnection,
    rollups: &[InterfaceRollup],
) -> Result<(), sqlx::Error> {
    if rollups.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = rollups
        .iter()
        .map(|r| {
            json!([
                r.device_id,
                index_of(r.if_index),
                micros(r.hour),
                r.samples,
                r.oper_up,
                r.rate_samples,
                r.in_sum,
                r.in_max,
                r.out_sum,
                r.out_max,
                r.in_util_max,
                r.out_util_max,
                r.deltas[0],
                r.deltas[1],
                r.deltas[2],
                r.deltas[3],
            ])
        })
        .collect();
    // min()/max() of SQLite are NULL when either side is: coalesce keeps
    // the side that has a value, as GREATEST does.
    sqlx::query(
        "INSERT INTO interface_rollups (device_id, if_index, hour, samples, oper_up, \
             rate_samples, in_bps_sum, in_bps_max, out_bps_sum, out_bps_max, in_utilisation_max, \
             out_utilisation_max, in_errors, out_errors, in_discards, out_discards) \
         SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, \
             value ->> 11, value ->> 12, value ->> 13, value ->> 14, value ->> 15 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (device_id, if_index, hour) DO UPDATE SET \
             samples = samples + excluded.samples, \
             oper_up = oper_up + excluded.oper_up, \
             rate_samples = rate_samples + excluded.rate_samples, \
             in_bps_sum = in_bps_sum + excluded.in_bps_sum, \
             in_bps_max = coalesce(max(in_bps_max, excluded.in_bps_max), in_bps_max, \
                                   excluded.in_bps_max), \
             out_bps_sum = out_bps_sum + excluded.out_bps_sum, \
             out_bps_max = coalesce(max(out_bps_max, excluded.out_bps_max), out_bps_max, \
                                    excluded.out_bps_max), \
             in_utilisation_max = coalesce(max(in_utilisation_max, excluded.in_utilisation_max), \
                                           in_utilisation_max, excluded.in_utilisation_max), \
             out_utilisation_max = coalesce(max(out_utilisation_max, excluded.out_utilisation_max), \
                                            out_utilisation_max, excluded.out_utilisation_max), \
             in_errors = in_errors + excluded.in_errors, \
             out_errors = out_errors + excluded.out_errors, \
             in_discards = in_discards + excluded.in_discards, \
             out_discards = out_discards + excluded.out_discards",
    )
    .bind(json_rows(&rows)?)
    .execute(&mut *tx)
    .await?;
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
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO snmp_devices (device_id, polled_at, outcome, sys_uptime_ticks, \
             sys_object_id, profile, last_reboot_at) \
         SELECT unhex(value ->> 0, '-'), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                value ->> 5, value ->> 6 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (device_id) DO UPDATE SET polled_at = excluded.polled_at, \
             outcome = excluded.outcome, sys_uptime_ticks = excluded.sys_uptime_ticks, \
             sys_object_id = CASE WHEN excluded.sys_object_id = '' \
                 THEN snmp_devices.sys_object_id ELSE excluded.sys_object_id END, \
             profile = CASE WHEN excluded.profile = '' \
                 THEN snmp_devices.profile ELSE excluded.profile END, \
             last_reboot_at = excluded.last_reboot_at",
    )
    .bind(json_rows(&rows)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

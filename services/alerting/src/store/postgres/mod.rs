//! The PostgreSQL store (schema `alerting`): one pool behind every trait of
//! `store`. Each aggregate's queries live in a file of their own: probe
//! results' states and retention (`results.rs`), raw results and rollup
//! tiers (`tiers.rs`), many devices' transitions for reports
//! (`transitions.rs`), rules and alerts, the
//! notification outbox, silences, SNMP interfaces and polls.

mod alerts;
mod notify;
mod results;
mod silences;
mod snmp;
mod tiers;
mod transitions;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use notify::enqueue;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects with `search_path = alerting`, creates the schema if needed,
    /// and migrates (bookkeeping in the schema, apart from other services').
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = url
            .parse::<PgConnectOptions>()?
            .options([("search_path", "alerting")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        // Two instances starting at once race on IF NOT EXISTS: the loser
        // sees a unique violation, which means the schema is there.
        if let Err(error) = sqlx::query("CREATE SCHEMA IF NOT EXISTS alerting")
            .execute(&pool)
            .await
        {
            let exists = error
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "23505" || code == "42P06");
            if !exists {
                return Err(error);
            }
        }
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Records a batch's idempotency key in the batch's transaction; false
/// when it was stored before (a replay: the caller stores nothing).
async fn claim_batch(
    tx: &mut sqlx::PgConnection,
    batch_uid: &str,
    executor_id: &str,
    results: usize,
) -> Result<bool, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO ingested_batches (batch_uid, executor_id, results) VALUES ($1, $2, $3) \
         ON CONFLICT (batch_uid) DO NOTHING",
    )
    .bind(batch_uid)
    .bind(executor_id)
    .bind(i32::try_from(results).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(fresh == 1)
}

/// `select` over [$1, $2) of `time`, by device then time, `$3`'s rows
/// only when `device`, after the key ($4, $5) when `after`, at most $6.
/// Each case is a statement of its own: with `$3 IS NULL OR …` a cached
/// generic plan could not use the key's index, and every page of a roll
/// would scan the day again.
fn keyset_sql(select: &str, time: &str, device: bool, after: bool) -> String {
    let device = if device {
        "AND device_id = $3".to_string()
    } else {
        "AND $3::uuid IS NULL".to_string()
    };
    let after = if after {
        format!("AND (device_id, {time}) > ($4, $5)")
    } else {
        "AND $4::uuid IS NULL AND $5::timestamptz IS NULL".to_string()
    };
    format!(
        "{select} WHERE {time} >= $1 AND {time} < $2 {device} {after} \
         ORDER BY device_id, {time} LIMIT $6"
    )
}

/// A keyset page: `select` (device id, time, packed bytes) over `range` of
/// `time`, by device then time, of `device` only when given, after `after`,
/// at most `limit` rows (see [`keyset_sql`]).
pub(crate) async fn keyset_rows(
    pool: &sqlx::PgPool,
    (select, time): (&str, &str),
    device: Option<uuid::Uuid>,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    after: Option<(uuid::Uuid, chrono::DateTime<chrono::Utc>)>,
    limit: u32,
) -> Result<Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>, Vec<u8>)>, sqlx::Error> {
    let sql = keyset_sql(select, time, device.is_some(), after.is_some());
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .bind(device)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}

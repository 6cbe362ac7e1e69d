//! The SQLite store, for the embedded default (`netward up`: one process, the
//! inventory in one file). Same semantics as the PostgreSQL store: SQLite
//! has one writer at a time and every write is a `BEGIN IMMEDIATE`
//! transaction, so revisions are handed out in commit order; reads see one
//! consistent snapshot per transaction (WAL).
//!
//! Batches travel as one JSON array bound to one statement (`json_each`
//! stands in for PostgreSQL's UNNEST; ids and bytes as hex, `unhex` on the
//! way in), so an import of 100,000 devices is a handful of statements: each
//! statement is a round trip to sqlx's SQLite worker thread.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::audit::{self, AuditEvent, AuditQuery};
use netward_shared::proto::v1;
use prost::Message as _;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::{
    ChangeBatch, DeviceFilter, DeviceIndexEntry, DeviceWrite, InventoryStore, Key, Page,
    PageRequest, SiteFilter, StoreResult, StoredCredential, finish_page, json_map, json_names,
    like_pattern, map_json, opt_u32, page_size, parse_id,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's writers queue here, in order, instead of in SQLite's
    /// busy handler (which polls with sleeps and gives up after its
    /// timeout). `BEGIN IMMEDIATE` still serializes against other processes.
    write_turn: Arc<Mutex<()>>,
}

/// A write transaction and the write turn it holds. The transaction is
/// declared first, so on an early return it starts its rollback before the
/// next writer gets the turn.
struct Write<'a> {
    tx: Transaction<'static, Sqlite>,
    _turn: MutexGuard<'a, ()>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file `url` names
    /// (`sqlite:PATH` or `sqlite://PATH`; `sqlite::memory:` for a database
    /// that lives as long as the store) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // An in-memory database (`sqlite::memory:`) lives only while a
        // connection to it is open, and its connections share one cache that
        // refuses a reader during a write: keep exactly one, for good.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        }
        .connect_with(options)
        .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            write_turn: Arc::new(Mutex::new(())),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Begins a write: `BEGIN IMMEDIATE` takes SQLite's write lock up front,
    /// so a transaction never reads first and then fails to upgrade.
    async fn write(&self) -> StoreResult<Write<'_>> {
        let turn = self.write_turn.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Write { tx, _turn: turn })
    }
}

// ---- constraint names -------------------------------------------------------

/// A SQLite constraint error under the name PostgreSQL gives the constraint.
/// SQLite names a violated UNIQUE constraint by its columns ("UNIQUE
/// constraint failed: devices.name") and a foreign key not at all; the
/// service speaks one vocabulary, the constraint names of the PostgreSQL
/// schema (see `error::from_store`).
#[derive(Debug)]
struct NamedConstraint {
    source: Box<dyn DatabaseError>,
    constraint: &'static str,
}

impl std::fmt::Display for NamedConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (constraint {})", self.source, self.constraint)
    }
}

impl std::error::Error for NamedConstraint {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_error())
    }
}

impl DatabaseError for NamedConstraint {
    fn message(&self) -> &str {
        self.source.message()
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.source.code()
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn constraint(&self) -> Option<&str> {
        Some(self.constraint)
    }

    fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}

/// The PostgreSQL name of the unique constraint SQLite reports by columns.
fn unique_constraint(message: &str) -> Option<&'static str> {
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    Some(match columns {
        "sites.id" => "sites_pkey",
        "sites.name" => "sites_name_key",
        "sites.code" => "sites_code_key",
        "credentials.id" => "credentials_pkey",
        "credentials.name" => "credentials_name_key",
        "devices.id" => "devices_pkey",
        "devices.name" => "devices_name_key",
        "devices.ip_address" => "devices_ip_address_key",
        "interface_overrides.device_id, interface_overrides.if_index, interface_overrides.if_name" => {
            "interface_overrides_pkey"
        }
        _ => return None,
    })
}

/// Names the constraint of a SQLite constraint error: a unique one from the
/// message, a foreign key from `foreign_key` (the caller knows which one
/// its statement can break). Every other error passes unchanged.
fn named(error: sqlx::Error, foreign_key: Option<&'static str>) -> sqlx::Error {
    let sqlx::Error::Database(source) = error else {
        return error;
    };
    let constraint = match source.kind() {
        ErrorKind::UniqueViolation => unique_constraint(source.message()),
        ErrorKind::ForeignKeyViolation => foreign_key,
        _ => None,
    };
    match constraint {
        Some(constraint) => sqlx::Error::Database(Box::new(NamedConstraint { source, constraint })),
        None => sqlx::Error::Database(source),
    }
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.kind() == ErrorKind::ForeignKeyViolation)
}

// ---- rows -------------------------------------------------------------------

macro_rules! device_select {
    () => {
        "SELECT d.id, d.name, d.ip_address, d.site_id, s.name AS site_name, s.code AS site_code, \
                s.region, d.device_type, d.vendor, d.model, d.tags, d.enabled, \
                d.parent_id, p.name AS parent_name, d.has_snmp, d.snmp_enabled, d.snmp_version, \
                d.snmp_port, d.snmp_credential_id, c.name AS credential_name, d.snmp_profile, \
                d.probe_count, d.probe_timeout_ms, d.probe_interval_ms, d.probe_retries, \
                d.executor_selector, d.description, d.created_at, d.updated_at, d.revision \
         FROM devices d \
         JOIN sites s ON s.id = d.site_id \
         LEFT JOIN devices p ON p.id = d.parent_id \
         LEFT JOIN credentials c ON c.id = d.snmp_credential_id "
    };
}

macro_rules! site_select {
    () => {
        "SELECT s.id, s.name, s.code, s.region, s.address, s.latitude, s.longitude, s.active, \
                s.created_at, s.updated_at, \
                (SELECT count(*) FROM devices d WHERE d.site_id = s.id) AS device_count \
         FROM sites s "
    };
}

macro_rules! credential_select {
    () => {
        "SELECT c.id, c.name, c.version, c.community, c.username, c.auth_protocol, c.auth_key, \
                c.priv_protocol, c.priv_key, c.context_name, c.description, c.created_at, \
                c.updated_at, \
                (SELECT count(*) FROM devices d WHERE d.snmp_credential_id = c.id) AS device_count \
         FROM credentials c "
    };
}

/// The filter of a device listing and its count: ?1 site, ?2 region, ?3
/// type, ?4 tags (a JSON object every pair of which the device must carry),
/// ?5 enabled, ?6 SNMP enabled, ?7 LIKE pattern, ?8 parent.
macro_rules! device_filter {
    () => {
        "WHERE (?1 IS NULL OR d.site_id = ?1) AND (?2 IS NULL OR s.region = ?2) \
           AND (?3 IS NULL OR d.device_type = ?3) \
           AND NOT EXISTS (SELECT 1 FROM json_each(?4) f WHERE NOT EXISTS \
               (SELECT 1 FROM json_each(d.tags) t WHERE t.key = f.key AND t.value = f.value)) \
           AND (?5 IS NULL OR d.enabled = ?5) \
           AND (?6 IS NULL OR (d.has_snmp AND d.snmp_enabled) = ?6) \
           AND (?7 IS NULL OR d.name LIKE ?7 ESCAPE '\\' OR d.ip_address LIKE ?7 ESCAPE '\\') \
           AND (?8 IS NULL OR d.parent_id = ?8) \
           AND (?9 IS NULL OR s.name IN (SELECT value FROM json_each(?9))) "
    };
}

macro_rules! site_filter {
    () => {
        "WHERE (?1 IS NULL OR s.region = ?1) AND (?2 IS NULL OR s.active = ?2) \
           AND (?3 IS NULL OR s.name LIKE ?3 ESCAPE '\\' OR s.code LIKE ?3 ESCAPE '\\' \
                OR s.address LIKE ?3 ESCAPE '\\') \
           AND (?4 IS NULL OR s.name IN (SELECT value FROM json_each(?4))) "
    };
}

macro_rules! credential_filter {
    () => {
        "WHERE (?1 IS NULL OR c.name LIKE ?1 ESCAPE '\\' OR c.description LIKE ?1 ESCAPE '\\') "
    };
}

/// An interface override's page key, "device_id/if_index/if_name" with the
/// id in its hyphenated text form and the index padded to ten digits, as
/// the PostgreSQL store builds it (so page tokens mean the same on both).
macro_rules! override_key {
    () => {
        "(lower(hex(substr(device_id, 1, 4))) || '-' || lower(hex(substr(device_id, 5, 2))) || '-' \
          || lower(hex(substr(device_id, 7, 2))) || '-' || lower(hex(substr(device_id, 9, 2))) \
          || '-' || lower(hex(substr(device_id, 11, 6))) || '/' || printf('%010d', if_index) \
          || '/' || if_name)"
    };
}

/// Now, as stored: Unix microseconds UTC.
fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Ids as a JSON array of hex strings, for `IN (SELECT unhex(value) FROM
/// json_each(?))`: SQLite's stand-in for PostgreSQL's `= ANY($1)`.
fn id_list(ids: &[Uuid]) -> String {
    let texts: Vec<String> = ids.iter().map(|id| id.simple().to_string()).collect();
    serde_json::to_string(&texts).expect("a list of strings always serializes")
}

fn device_from_row(row: &SqliteRow) -> StoreResult<v1::Device> {
    let parent_id: Option<Uuid> = row.try_get("parent_id")?;
    let has_snmp: bool = row.try_get("has_snmp")?;
    let credential_id: Option<Uuid> = row.try_get("snmp_credential_id")?;
    let snmp = has_snmp
        .then(|| -> StoreResult<v1::SnmpSettings> {
            Ok(v1::SnmpSettings {
                enabled: row.try_get("snmp_enabled")?,
                version: row.try_get("snmp_version")?,
                port: row.try_get::<i32, _>("snmp_port")?.max(0) as u32,
                credential_id: credential_id.map(|id| id.to_string()).unwrap_or_default(),
                credential_name: row
                    .try_get::<Option<String>, _>("credential_name")?
                    .unwrap_or_default(),
                profile: row.try_get("snmp_profile")?,
            })
        })
        .transpose()?;
    let probe = v1::ProbeOverrides {
        count: opt_u32(row.try_get("probe_count")?),
        timeout_ms: opt_u32(row.try_get("probe_timeout_ms")?),
        interval_ms: opt_u32(row.try_get("probe_interval_ms")?),
        retries: opt_u32(row.try_get("probe_retries")?),
    };
    let has_probe = probe.count.is_some()
        || probe.timeout_ms.is_some()
        || probe.interval_ms.is_some()
        || probe.retries.is_some();
    Ok(v1::Device {
        id: row.try_get::<Uuid, _>("id")?.to_string(),
        name: row.try_get("name")?,
        ip_address: row.try_get("ip_address")?,
        site_id: row.try_get::<Uuid, _>("site_id")?.to_string(),
        site_name: row.try_get("site_name")?,
        site_code: row.try_get("site_code")?,
        region: row.try_get("region")?,
        device_type: row.try_get("device_type")?,
        vendor: row.try_get("vendor")?,
        model: row.try_get("model")?,
        tags: json_map(row.try_get("tags")?),
        enabled: Some(row.try_get("enabled")?),
        parent_device_id: parent_id.map(|id| id.to_string()).unwrap_or_default(),
        parent_device_name: row
            .try_get::<Option<String>, _>("parent_name")?
            .unwrap_or_default(),
        snmp,
        probe_overrides: has_probe.then_some(probe),
        executor_selector: json_map(row.try_get("executor_selector")?),
        description: row.try_get("description")?,
        interface_overrides: Vec::new(),
        created_at: Some(timestamp(row.try_get("created_at")?)),
        updated_at: Some(timestamp(row.try_get("updated_at")?)),
        revision: row.try_get::<i64, _>("revision")?.max(0) as u64,
    })
}

fn site_from_row(row: &SqliteRow) -> StoreResult<v1::Site> {
    Ok(v1::Site {
        id: row.try_get::<Uuid, _>("id")?.to_string(),
        name: row.try_get("name")?,
        code: row.try_get("code")?,
        region: row.try_get("region")?,
        address: row.try_get("address")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        active: Some(row.try_get("active")?),
        device_count: row.try_get::<i64, _>("device_count")?.max(0) as u32,
        created_at: Some(timestamp(row.try_get("created_at")?)),
        updated_at: Some(timestamp(row.try_get("updated_at")?)),
    })
}

fn credential_from_row(row: &SqliteRow) -> StoreResult<StoredCredential> {
    let community: Option<Vec<u8>> = row.try_get("community")?;
    let auth_key: Option<Vec<u8>> = row.try_get("auth_key")?;
    let priv_key: Option<Vec<u8>> = row.try_get("priv_key")?;
    Ok(StoredCredential {
        credential: v1::SnmpCredential {
            id: row.try_get::<Uuid, _>("id")?.to_string(),
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            community_set: community.is_some(),
            username: row.try_get("username")?,
            auth_protocol: row.try_get("auth_protocol")?,
            auth_key_set: auth_key.is_some(),
            priv_protocol: row.try_get("priv_protocol")?,
            priv_key_set: priv_key.is_some(),
            context_name: row.try_get("context_name")?,
            description: row.try_get("description")?,
            device_count: row.try_get::<i64, _>("device_count")?.max(0) as u32,
            created_at: Some(timestamp(row.try_get("created_at")?)),
            updated_at: Some(timestamp(row.try_get("updated_at")?)),
        },
        community,
        auth_key,
        priv_key,
    })
}

fn override_from_row(row: &SqliteRow) -> StoreResult<v1::InterfaceOverride> {
    Ok(v1::InterfaceOverride {
        device_id: row.try_get::<Uuid, _>("device_id")?.to_string(),
        if_index: row
            .try_get::<i64, _>("if_index")?
            .clamp(0, i64::from(u32::MAX)) as u32,
        if_name: row.try_get("if_name")?,
        role: row.try_get("role")?,
        isp_name: row.try_get("isp_name")?,
        monitored: row.try_get("monitored")?,
        comment: row.try_get("comment")?,
        updated_at: Some(timestamp(row.try_get("updated_at")?)),
    })
}

// ---- statements shared by several methods -----------------------------------

async fn load_devices(conn: &mut SqliteConnection, ids: &[Uuid]) -> StoreResult<Vec<v1::Device>> {
    let rows = sqlx::query(concat!(
        device_select!(),
        "WHERE d.id IN (SELECT unhex(value) FROM json_each(?1))"
    ))
    .bind(id_list(ids))
    .fetch_all(&mut *conn)
    .await?;
    let mut devices = rows
        .iter()
        .map(device_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    attach_overrides(conn, &mut devices).await?;
    Ok(devices)
}

async fn attach_overrides(
    conn: &mut SqliteConnection,
    devices: &mut [v1::Device],
) -> StoreResult<()> {
    let ids: Vec<Uuid> = devices.iter().filter_map(|d| parse_id(&d.id)).collect();
    let rows = sqlx::query(
        "SELECT * FROM interface_overrides \
         WHERE device_id IN (SELECT unhex(value) FROM json_each(?1)) \
         ORDER BY device_id, if_index, if_name",
    )
    .bind(id_list(&ids))
    .fetch_all(&mut *conn)
    .await?;
    group_overrides(&rows, devices)
}

/// Hands each device its overrides (`rows` ordered by device, index, name).
fn group_overrides(rows: &[SqliteRow], devices: &mut [v1::Device]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut by_device: HashMap<String, Vec<v1::InterfaceOverride>> = HashMap::new();
    for row in rows {
        let value = override_from_row(row)?;
        by_device
            .entry(value.device_id.clone())
            .or_default()
            .push(value);
    }
    for device in devices {
        if let Some(list) = by_device.remove(&device.id) {
            device.interface_overrides = list;
        }
    }
    Ok(())
}

/// Gives each (device, kind) the next revision, stamps it on the device row,
/// and logs the device as it now is. Deletions are logged before the row
/// goes. Runs inside a write transaction, which is what orders revisions.
async fn log_changes(
    conn: &mut SqliteConnection,
    items: &[(Uuid, v1::ChangeKind)],
    now: i64,
    traceparent: &str,
) -> StoreResult<(Vec<v1::Device>, u64)> {
    let last: i64 =
        sqlx::query_scalar("UPDATE revision_counter SET current = current + ?1 RETURNING current")
            .bind(items.len() as i64)
            .fetch_one(&mut *conn)
            .await?;
    if items.is_empty() {
        return Ok((Vec::new(), last.max(0) as u64));
    }
    let first = last - items.len() as i64 + 1;
    let ids: Vec<Uuid> = items.iter().map(|(id, _)| *id).collect();
    // The n-th item (json_each's key) gets revision first + n.
    sqlx::query(
        "UPDATE devices SET revision = ?2 + j.key FROM json_each(?1) j \
         WHERE devices.id = unhex(j.value)",
    )
    .bind(id_list(&ids))
    .bind(first)
    .execute(&mut *conn)
    .await?;
    let mut devices: HashMap<String, v1::Device> = load_devices(conn, &ids)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let mut ordered = Vec::with_capacity(items.len());
    let mut changes = Vec::with_capacity(items.len());
    for (id, kind) in items {
        let device = devices.remove(&id.to_string()).ok_or_else(|| {
            sqlx::Error::Protocol(format!("device {id} vanished while logging its change"))
        })?;
        changes.push(serde_json::json!([
            id.simple().to_string(),
            *kind as i32,
            hex::encode(device.encode_to_vec()),
        ]));
        ordered.push(device);
    }
    sqlx::query(
        "INSERT INTO device_changes (revision, device_id, kind, device, changed_at, traceparent) \
         SELECT ?2 + key, unhex(value ->> 0), value ->> 1, unhex(value ->> 2), ?3, ?4 \
         FROM json_each(?1)",
    )
    .bind(serde_json::Value::Array(changes).to_string())
    .bind(first)
    .bind(now)
    .bind(traceparent)
    .execute(&mut *conn)
    .await?;
    Ok((ordered, last as u64))
}

async fn insert_sites(
    conn: &mut SqliteConnection,
    sites: &[v1::Site],
    now: i64,
) -> StoreResult<()> {
    if sites.is_empty() {
        return Ok(());
    }
    let rows = sites
        .iter()
        .map(|site| {
            let id = parse_id(&site.id)
                .ok_or_else(|| sqlx::Error::Protocol("unassigned site id".into()))?;
            Ok(serde_json::json!({
                "id": id.simple().to_string(),
                "name": site.name,
                "code": site.code,
                "region": site.region,
                "address": site.address,
                "latitude": site.latitude,
                "longitude": site.longitude,
                "active": site.active.unwrap_or(true),
            }))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    sqlx::query(
        "INSERT INTO sites (id, name, code, region, address, latitude, longitude, active, \
             created_at, updated_at) \
         SELECT unhex(value ->> 'id'), value ->> 'name', value ->> 'code', value ->> 'region', \
             value ->> 'address', value ->> 'latitude', value ->> 'longitude', \
             value ->> 'active', ?2, ?2 \
         FROM json_each(?1)",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(|e| named(e, None))?;
    Ok(())
}

/// Inserts or replaces devices (ids resolved), in one statement.
async fn upsert_devices(
    conn: &mut SqliteConnection,
    devices: &[&v1::Device],
    now: i64,
) -> StoreResult<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let hex_id = |text: &str, what: &str| {
        parse_id(text)
            .map(|id| id.simple().to_string())
            .ok_or_else(|| sqlx::Error::Protocol(format!("unresolved {what} {text:?}")))
    };
    let optional_id = |text: &str| parse_id(text).map(|id| id.simple().to_string());
    let to_i32 = |v: Option<u32>| v.map(|v| v.min(i32::MAX as u32) as i32);
    let rows = devices
        .iter()
        .map(|device| {
            let snmp = device.snmp.clone();
            let has_snmp = snmp.is_some();
            let snmp = snmp.unwrap_or_default();
            let probe = device.probe_overrides.unwrap_or_default();
            Ok(serde_json::json!({
                "id": hex_id(&device.id, "device id")?,
                "name": device.name,
                "ip_address": device.ip_address,
                "site_id": hex_id(&device.site_id, "site id")?,
                "device_type": device.device_type,
                "vendor": device.vendor,
                "model": device.model,
                "tags": map_json(&device.tags),
                "enabled": device.enabled.unwrap_or(true),
                "parent_id": optional_id(&device.parent_device_id),
                "has_snmp": has_snmp,
                "snmp_enabled": snmp.enabled,
                "snmp_version": snmp.version,
                "snmp_port": snmp.port.min(65_535),
                "snmp_credential_id": optional_id(&snmp.credential_id),
                "snmp_profile": snmp.profile,
                "probe_count": to_i32(probe.count),
                "probe_timeout_ms": to_i32(probe.timeout_ms),
                "probe_interval_ms": to_i32(probe.interval_ms),
                "probe_retries": to_i32(probe.retries),
                "executor_selector": map_json(&device.executor_selector),
                "description": device.description,
            }))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let rows = serde_json::Value::Array(rows).to_string();
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the
    // INSERT, not to a join.
    let upserted = sqlx::query(
        "INSERT INTO devices (id, name, ip_address, site_id, device_type, vendor, model, tags, \
             enabled, parent_id, has_snmp, snmp_enabled, snmp_version, snmp_port, \
             snmp_credential_id, snmp_profile, probe_count, probe_timeout_ms, \
             probe_interval_ms, probe_retries, executor_selector, description, created_at, \
             updated_at, revision) \
         SELECT unhex(value ->> 'id'), value ->> 'name', value ->> 'ip_address', \
             unhex(value ->> 'site_id'), value ->> 'device_type', value ->> 'vendor', \
             value ->> 'model', value ->> 'tags', value ->> 'enabled', \
             unhex(value ->> 'parent_id'), value ->> 'has_snmp', value ->> 'snmp_enabled', \
             value ->> 'snmp_version', value ->> 'snmp_port', \
             unhex(value ->> 'snmp_credential_id'), value ->> 'snmp_profile', \
             value ->> 'probe_count', value ->> 'probe_timeout_ms', \
             value ->> 'probe_interval_ms', value ->> 'probe_retries', \
             value ->> 'executor_selector', value ->> 'description', ?2, ?2, 0 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, ip_address = excluded.ip_address, \
             site_id = excluded.site_id, device_type = excluded.device_type, \
             vendor = excluded.vendor, model = excluded.model, tags = excluded.tags, \
             enabled = excluded.enabled, parent_id = excluded.parent_id, \
             has_snmp = excluded.has_snmp, snmp_enabled = excluded.snmp_enabled, \
             snmp_version = excluded.snmp_version, snmp_port = excluded.snmp_port, \
             snmp_credential_id = excluded.snmp_credential_id, \
             snmp_profile = excluded.snmp_profile, probe_count = excluded.probe_count, \
             probe_timeout_ms = excluded.probe_timeout_ms, \
             probe_interval_ms = excluded.probe_interval_ms, \
             probe_retries = excluded.probe_retries, \
             executor_selector = excluded.executor_selector, \
             description = excluded.description, updated_at = excluded.updated_at",
    )
    .bind(&rows)
    .bind(now)
    .execute(&mut *conn)
    .await;
    match upserted {
        Ok(_) => Ok(()),
        // The parent key is deferred (checked at commit): an immediate
        // failure is a missing site or credential.
        Err(error) if is_foreign_key_violation(&error) => {
            let missing_sites: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM json_each(?1) \
                 WHERE unhex(value ->> 'site_id') NOT IN (SELECT id FROM sites)",
            )
            .bind(&rows)
            .fetch_one(&mut *conn)
            .await?;
            let constraint = match missing_sites {
                0 => "devices_credential_fkey",
                _ => "devices_site_fkey",
            };
            Err(named(error, Some(constraint)))
        }
        Err(error) => Err(named(error, None)),
    }
}

#[async_trait]
impl InventoryStore for SqliteStore {
    async fn create_site(&self, site: &v1::Site) -> StoreResult<v1::Site> {
        let mut write = self.write().await?;
        insert_sites(&mut write.tx, std::slice::from_ref(site), now_micros()).await?;
        let row = sqlx::query(concat!(site_select!(), "WHERE s.id = ?1"))
            .bind(parse_id(&site.id).unwrap_or_default())
            .fetch_one(&mut *write.tx)
            .await?;
        write.tx.commit().await?;
        site_from_row(&row)
    }

    async fn get_site(&self, key: &Key) -> StoreResult<Option<v1::Site>> {
        let row = match key {
            Key::Id(id) => {
                sqlx::query(concat!(site_select!(), "WHERE s.id = ?1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Key::Name(name) => {
                sqlx::query(concat!(site_select!(), "WHERE s.name = ?1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(site_from_row).transpose()
    }

    async fn update_site(&self, site: &v1::Site, traceparent: &str) -> StoreResult<v1::Site> {
        let id = parse_id(&site.id).unwrap_or_default();
        let now = now_micros();
        let mut write = self.write().await?;
        let before: Option<(String, String, String)> =
            sqlx::query_as("SELECT name, code, region FROM sites WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *write.tx)
                .await?;
        let Some(before) = before else {
            return Err(sqlx::Error::RowNotFound);
        };
        sqlx::query(
            "UPDATE sites SET name = ?2, code = ?3, region = ?4, address = ?5, latitude = ?6, \
                 longitude = ?7, active = ?8, updated_at = ?9 WHERE id = ?1",
        )
        .bind(id)
        .bind(&site.name)
        .bind(&site.code)
        .bind(&site.region)
        .bind(&site.address)
        .bind(site.latitude)
        .bind(site.longitude)
        .bind(site.active.unwrap_or(true))
        .bind(now)
        .execute(&mut *write.tx)
        .await
        .map_err(|e| named(e, None))?;
        // Devices echo their site's name, code and region: followers must
        // hear about a change of any of them.
        if before != (site.name.clone(), site.code.clone(), site.region.clone()) {
            let ids: Vec<Uuid> =
                sqlx::query_scalar("SELECT id FROM devices WHERE site_id = ?1 ORDER BY name")
                    .bind(id)
                    .fetch_all(&mut *write.tx)
                    .await?;
            let items: Vec<_> = ids
                .into_iter()
                .map(|id| (id, v1::ChangeKind::Updated))
                .collect();
            log_changes(&mut write.tx, &items, now, traceparent).await?;
        }
        let row = sqlx::query(concat!(site_select!(), "WHERE s.id = ?1"))
            .bind(id)
            .fetch_one(&mut *write.tx)
            .await?;
        write.tx.commit().await?;
        site_from_row(&row)
    }

    async fn delete_site(&self, id: Uuid) -> StoreResult<bool> {
        let mut write = self.write().await?;
        let deleted = sqlx::query("DELETE FROM sites WHERE id = ?1")
            .bind(id)
            .execute(&mut *write.tx)
            .await
            .map_err(|e| named(e, Some("devices_site_fkey")))?;
        write.tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn list_sites(
        &self,
        filter: &SiteFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::Site>> {
        let query = filter.query.as_deref().map(like_pattern);
        let rows = sqlx::query(concat!(
            site_select!(),
            site_filter!(),
            "AND (?5 IS NULL OR s.name > ?5) ORDER BY s.name LIMIT ?6"
        ))
        .bind(&filter.region)
        .bind(filter.active)
        .bind(&query)
        .bind(json_names(filter.names.as_deref()))
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar(concat!("SELECT count(*) FROM sites s ", site_filter!()))
                .bind(&filter.region)
                .bind(filter.active)
                .bind(&query)
                .bind(json_names(filter.names.as_deref()))
                .fetch_one(&self.pool)
                .await?;
        let items = rows
            .iter()
            .map(site_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(finish_page(items, page, total, |s| s.name.clone()))
    }

    async fn all_sites(&self) -> StoreResult<Vec<v1::Site>> {
        let rows = sqlx::query(concat!(site_select!(), "ORDER BY s.name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(site_from_row).collect()
    }

    async fn list_regions(&self) -> StoreResult<Vec<v1::RegionSummary>> {
        let rows = sqlx::query(
            "SELECT s.region, count(DISTINCT s.id) AS sites, \
                    count(DISTINCT s.id) FILTER (WHERE s.active) AS active_sites, \
                    count(d.id) AS devices, count(d.id) FILTER (WHERE d.enabled) AS enabled_devices \
             FROM sites s LEFT JOIN devices d ON d.site_id = s.id \
             GROUP BY s.region ORDER BY s.region",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let count = |name: &str| row.try_get::<i64, _>(name).map(|v| v.max(0) as u32);
                Ok(v1::RegionSummary {
                    name: row.try_get("region")?,
                    site_count: count("sites")?,
                    active_site_count: count("active_sites")?,
                    device_count: count("devices")?,
                    enabled_device_count: count("enabled_devices")?,
                })
            })
            .collect()
    }

    async fn get_device(&self, key: &Key) -> StoreResult<Option<v1::Device>> {
        let mut conn = self.pool.acquire().await?;
        let row = match key {
            Key::Id(id) => {
                sqlx::query(concat!(device_select!(), "WHERE d.id = ?1"))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            Key::Name(name) => {
                sqlx::query(concat!(device_select!(), "WHERE d.name = ?1"))
                    .bind(name)
                    .fetch_optional(&mut *conn)
                    .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let mut devices = vec![device_from_row(&row)?];
        attach_overrides(&mut conn, &mut devices).await?;
        Ok(devices.pop())
    }

    async fn device_index(&self) -> StoreResult<Vec<DeviceIndexEntry>> {
        let rows: Vec<(Uuid, String, String, bool, Option<Uuid>)> =
            sqlx::query_as("SELECT id, name, ip_address, enabled, parent_id FROM devices")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, name, ip_address, enabled, parent_id)| DeviceIndexEntry {
                    id,
                    name,
                    ip_address,
                    enabled,
                    parent_id,
                },
            )
            .collect())
    }

    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::Device>> {
        let query = filter.query.as_deref().map(like_pattern);
        let tags = map_json(&filter.tags.iter().cloned().collect());
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(concat!(
            device_select!(),
            device_filter!(),
            "AND (?10 IS NULL OR d.name > ?10) ORDER BY d.name LIMIT ?11"
        ))
        .bind(filter.site_id)
        .bind(&filter.region)
        .bind(filter.device_type)
        .bind(&tags)
        .bind(filter.enabled)
        .bind(filter.snmp_enabled)
        .bind(&query)
        .bind(filter.parent_id)
        .bind(json_names(filter.site_names.as_deref()))
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let total: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM devices d JOIN sites s ON s.id = d.site_id ",
            device_filter!()
        ))
        .bind(filter.site_id)
        .bind(&filter.region)
        .bind(filter.device_type)
        .bind(&tags)
        .bind(filter.enabled)
        .bind(filter.snmp_enabled)
        .bind(&query)
        .bind(filter.parent_id)
        .bind(json_names(filter.site_names.as_deref()))
        .fetch_one(&mut *conn)
        .await?;
        let mut items = rows
            .iter()
            .map(device_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        attach_overrides(&mut conn, &mut items).await?;
        Ok(finish_page(items, page, total, |d| d.name.clone()))
    }

    async fn write_devices(
        &self,
        new_sites: &[v1::Site],
        writes: &[DeviceWrite],
        expected_revision: Option<(Uuid, u64)>,
        traceparent: &str,
    ) -> StoreResult<Option<(Vec<v1::Device>, u64)>> {
        let now = now_micros();
        let mut write = self.write().await?;
        if let Some((id, expected)) = expected_revision {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM devices WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *write.tx)
                    .await?;
            if current != Some(expected as i64) {
                return Ok(None);
            }
        }
        insert_sites(&mut write.tx, new_sites, now).await?;

        let mut upserts = Vec::with_capacity(writes.len());
        let mut items = Vec::with_capacity(writes.len());
        let mut deletes = Vec::new();
        for device_write in writes {
            let (id, kind) = match device_write {
                DeviceWrite::Create(device) => {
                    upserts.push(device);
                    (parse_id(&device.id), v1::ChangeKind::Created)
                }
                DeviceWrite::Update(device) => {
                    upserts.push(device);
                    (parse_id(&device.id), v1::ChangeKind::Updated)
                }
                DeviceWrite::Delete(id) => {
                    deletes.push(*id);
                    (Some(*id), v1::ChangeKind::Deleted)
                }
            };
            // An unparsable id is refused by upsert_devices below.
            items.extend(id.map(|id| (id, kind)));
        }
        upsert_devices(&mut write.tx, &upserts, now).await?;
        // Log before deleting, so a deleted device is logged as it was.
        let (devices, revision) = log_changes(&mut write.tx, &items, now, traceparent).await?;
        if !deletes.is_empty() {
            sqlx::query("DELETE FROM devices WHERE id IN (SELECT unhex(value) FROM json_each(?1))")
                .bind(id_list(&deletes))
                .execute(&mut *write.tx)
                .await?;
        }
        // The parent key is deferred: a child left without its parent (or a
        // parent that never existed) fails here.
        write
            .tx
            .commit()
            .await
            .map_err(|e| named(e, Some("devices_parent_fkey")))?;
        Ok(Some((devices, revision)))
    }

    async fn snapshot(&self) -> StoreResult<(u64, Vec<v1::Device>)> {
        // One read transaction is one consistent view (WAL): the counter and
        // every device as of its first read.
        let mut tx = self.pool.begin().await?;
        let revision: i64 = sqlx::query_scalar("SELECT current FROM revision_counter")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(concat!(device_select!(), "ORDER BY d.name"))
            .fetch_all(&mut *tx)
            .await?;
        let mut devices = rows
            .iter()
            .map(device_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let overrides =
            sqlx::query("SELECT * FROM interface_overrides ORDER BY device_id, if_index, if_name")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        group_overrides(&overrides, &mut devices)?;
        Ok((revision.max(0) as u64, devices))
    }

    async fn changes_since(&self, after: u64, limit: u32) -> StoreResult<ChangeBatch> {
        let mut tx = self.pool.begin().await?;
        let (current, pruned_through): (i64, i64) =
            sqlx::query_as("SELECT current, pruned_through FROM revision_counter")
                .fetch_one(&mut *tx)
                .await?;
        let rows: Vec<(i64, i32, Vec<u8>, i64, String)> = sqlx::query_as(
            "SELECT revision, kind, device, changed_at, traceparent FROM device_changes \
             WHERE revision > ?1 ORDER BY revision LIMIT ?2",
        )
        .bind(after.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let changes = rows
            .into_iter()
            .map(|(revision, kind, device, changed_at, traceparent)| {
                let device = v1::Device::decode(device.as_slice())
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok(v1::DeviceChange {
                    revision: revision.max(0) as u64,
                    kind,
                    device: Some(device),
                    changed_at: Some(timestamp(changed_at)),
                    trace_context: (!traceparent.is_empty()).then(|| v1::TraceContext {
                        traceparent,
                        tracestate: String::new(),
                    }),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ChangeBatch {
            pruned_through: pruned_through.max(0) as u64,
            current: current.max(0) as u64,
            changes,
        })
    }

    async fn prune_changes(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        let cutoff = older_than.timestamp_micros();
        let mut write = self.write().await?;
        let through: Option<i64> =
            sqlx::query_scalar("SELECT max(revision) FROM device_changes WHERE changed_at < ?1")
                .bind(cutoff)
                .fetch_one(&mut *write.tx)
                .await?;
        let Some(through) = through else {
            return Ok(0);
        };
        let pruned = sqlx::query("DELETE FROM device_changes WHERE changed_at < ?1")
            .bind(cutoff)
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE revision_counter SET pruned_through = max(pruned_through, ?1)")
            .bind(through)
            .execute(&mut *write.tx)
            .await?;
        write.tx.commit().await?;
        Ok(pruned)
    }

    async fn create_credential(
        &self,
        credential: &StoredCredential,
    ) -> StoreResult<StoredCredential> {
        let c = &credential.credential;
        let id = parse_id(&c.id).unwrap_or_default();
        let mut write = self.write().await?;
        sqlx::query(
            "INSERT INTO credentials (id, name, version, community, username, auth_protocol, \
                 auth_key, priv_protocol, priv_key, context_name, description, created_at, \
                 updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
        )
        .bind(id)
        .bind(&c.name)
        .bind(c.version)
        .bind(&credential.community)
        .bind(&c.username)
        .bind(c.auth_protocol)
        .bind(&credential.auth_key)
        .bind(c.priv_protocol)
        .bind(&credential.priv_key)
        .bind(&c.context_name)
        .bind(&c.description)
        .bind(now_micros())
        .execute(&mut *write.tx)
        .await
        .map_err(|e| named(e, None))?;
        let row = sqlx::query(concat!(credential_select!(), "WHERE c.id = ?1"))
            .bind(id)
            .fetch_one(&mut *write.tx)
            .await?;
        write.tx.commit().await?;
        credential_from_row(&row)
    }

    async fn get_credential(&self, key: &Key) -> StoreResult<Option<StoredCredential>> {
        let row = match key {
            Key::Id(id) => {
                sqlx::query(concat!(credential_select!(), "WHERE c.id = ?1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Key::Name(name) => {
                sqlx::query(concat!(credential_select!(), "WHERE c.name = ?1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn update_credential(
        &self,
        credential: &StoredCredential,
        traceparent: &str,
    ) -> StoreResult<StoredCredential> {
        let c = &credential.credential;
        let id = parse_id(&c.id).unwrap_or_default();
        let now = now_micros();
        let mut write = self.write().await?;
        let updated = sqlx::query(
            "UPDATE credentials SET name = ?2, version = ?3, community = ?4, username = ?5, \
                 auth_protocol = ?6, auth_key = ?7, priv_protocol = ?8, priv_key = ?9, \
                 context_name = ?10, description = ?11, updated_at = ?12 WHERE id = ?1",
        )
        .bind(id)
        .bind(&c.name)
        .bind(c.version)
        .bind(&credential.community)
        .bind(&c.username)
        .bind(c.auth_protocol)
        .bind(&credential.auth_key)
        .bind(c.priv_protocol)
        .bind(&credential.priv_key)
        .bind(&c.context_name)
        .bind(&c.description)
        .bind(now)
        .execute(&mut *write.tx)
        .await
        .map_err(|e| named(e, None))?;
        if updated.rows_affected() == 0 {
            return Err(sqlx::Error::RowNotFound);
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE snmp_credential_id = ?1 ORDER BY name",
        )
        .bind(id)
        .fetch_all(&mut *write.tx)
        .await?;
        let items: Vec<_> = ids
            .into_iter()
            .map(|id| (id, v1::ChangeKind::Updated))
            .collect();
        log_changes(&mut write.tx, &items, now, traceparent).await?;
        let row = sqlx::query(concat!(credential_select!(), "WHERE c.id = ?1"))
            .bind(id)
            .fetch_one(&mut *write.tx)
            .await?;
        write.tx.commit().await?;
        credential_from_row(&row)
    }

    async fn delete_credential(&self, id: Uuid) -> StoreResult<bool> {
        let mut write = self.write().await?;
        let deleted = sqlx::query("DELETE FROM credentials WHERE id = ?1")
            .bind(id)
            .execute(&mut *write.tx)
            .await
            .map_err(|e| named(e, Some("devices_credential_fkey")))?;
        write.tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn list_credentials(
        &self,
        query: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<StoredCredential>> {
        let pattern = query.map(like_pattern);
        let rows = sqlx::query(concat!(
            credential_select!(),
            credential_filter!(),
            "AND (?2 IS NULL OR c.name > ?2) ORDER BY c.name LIMIT ?3"
        ))
        .bind(&pattern)
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM credentials c ",
            credential_filter!()
        ))
        .bind(&pattern)
        .fetch_one(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(credential_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(finish_page(items, page, total, |c| {
            c.credential.name.clone()
        }))
    }

    async fn credentials_with_secrets(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM credentials \
             WHERE community IS NOT NULL OR auth_key IS NOT NULL OR priv_key IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(count.max(0) as u64)
    }

    async fn set_interface_override(
        &self,
        value: &v1::InterfaceOverride,
        traceparent: &str,
    ) -> StoreResult<v1::InterfaceOverride> {
        let device_id = parse_id(&value.device_id).unwrap_or_default();
        let now = now_micros();
        let mut write = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO interface_overrides (device_id, if_index, if_name, role, isp_name, \
                 monitored, comment, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (device_id, if_index, if_name) DO UPDATE SET role = excluded.role, \
                 isp_name = excluded.isp_name, monitored = excluded.monitored, \
                 comment = excluded.comment, updated_at = excluded.updated_at \
             RETURNING *",
        )
        .bind(device_id)
        .bind(value.if_index.min(i32::MAX as u32) as i32)
        .bind(&value.if_name)
        .bind(value.role)
        .bind(&value.isp_name)
        .bind(value.monitored)
        .bind(&value.comment)
        .bind(now)
        .fetch_one(&mut *write.tx)
        .await
        .map_err(|e| named(e, Some("interface_overrides_device_id_fkey")))?;
        let stored = override_from_row(&row)?;
        log_changes(
            &mut write.tx,
            &[(device_id, v1::ChangeKind::Updated)],
            now,
            traceparent,
        )
        .await?;
        write.tx.commit().await?;
        Ok(stored)
    }

    async fn list_interface_overrides(
        &self,
        device_id: Option<Uuid>,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::InterfaceOverride>> {
        // Keyset on "device_id/if_index/if_name" text, so the page token is
        // one string; the blob order of ids is the order of their text.
        let rows = sqlx::query(concat!(
            "SELECT * FROM interface_overrides \
             WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR ",
            override_key!(),
            " > ?2) ORDER BY device_id, if_index, if_name LIMIT ?3"
        ))
        .bind(device_id)
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM interface_overrides WHERE (?1 IS NULL OR device_id = ?1)",
        )
        .bind(device_id)
        .fetch_one(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(override_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(finish_page(items, page, total, |o| {
            format!("{}/{:010}/{}", o.device_id, o.if_index, o.if_name)
        }))
    }

    async fn delete_interface_override(
        &self,
        device_id: Uuid,
        if_index: u32,
        if_name: &str,
        traceparent: &str,
    ) -> StoreResult<bool> {
        let mut write = self.write().await?;
        let deleted = sqlx::query(
            "DELETE FROM interface_overrides WHERE device_id = ?1 AND if_index = ?2 AND if_name = ?3",
        )
        .bind(device_id)
        .bind(if_index.min(i32::MAX as u32) as i32)
        .bind(if_name)
        .execute(&mut *write.tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        log_changes(
            &mut write.tx,
            &[(device_id, v1::ChangeKind::Updated)],
            now_micros(),
            traceparent,
        )
        .await?;
        write.tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let mut write = self.write().await?;
        audit::sqlite::insert(&mut *write.tx, event).await?;
        write.tx.commit().await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        audit::sqlite::list(&self.pool, query).await
    }
}

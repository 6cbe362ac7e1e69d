//! The PostgreSQL store (schema `inventory`). Batched writes use UNNEST, so
//! an import of 100,000 devices is a handful of statements, not 100,000.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netward_shared::audit::{self, AuditEvent, AuditQuery};
use netward_shared::proto::v1;
use prost::Message as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{
    ChangeBatch, DeviceFilter, DeviceIndexEntry, DeviceWrite, InventoryStore, Key, Page,
    PageRequest, SiteFilter, StoreResult, StoredCredential, finish_page, json_map, like_pattern,
    map_json, opt_u32, page_size, parse_id,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The schema every table of the inventory lives in.
pub const SCHEMA: &str = "inventory";

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects with `search_path = inventory`, creates the schema if needed,
    /// and runs the migrations (their bookkeeping table lives in the schema
    /// too, so services sharing a database never mix their migrations).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .options([("search_path", SCHEMA)]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        // Two instances starting at once race on IF NOT EXISTS: the loser
        // sees a unique violation, which means the schema is there.
        if let Err(error) = sqlx::query("CREATE SCHEMA IF NOT EXISTS inventory")
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

macro_rules! device_select {
    () => {
        "SELECT d.id, d.name, d.ip_address, d.site_id, s.name AS site_name, s.code AS site_code, \
                s.region, d.device_type, d.vendor, d.model, d.tags::text AS tags, d.enabled, \
                d.parent_id, p.name AS parent_name, d.has_snmp, d.snmp_enabled, d.snmp_version, \
                d.snmp_port, d.snmp_credential_id, c.name AS credential_name, d.snmp_profile, \
                d.probe_count, d.probe_timeout_ms, d.probe_interval_ms, d.probe_retries, \
                d.executor_selector::text AS executor_selector, d.description, d.created_at, \
                d.updated_at, d.revision \
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

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn device_from_row(row: &PgRow) -> StoreResult<v1::Device> {
    let parent_id: Option<Uuid> = row.try_get("parent_id")?;
    let has_snmp: bool = row.try_get("has_snmp")?;
    let credential_id: Option<Uuid> = row.try_get("snmp_credential_id")?;
    let snmp = has_snmp
        .then(|| -> StoreResult<v1::SnmpSettings> {
            Ok(v1::SnmpSettings {
                enabled: row.try_get("snmp_enabled")?,
                version: i32::from(row.try_get::<i16, _>("snmp_version")?),
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
        device_type: i32::from(row.try_get::<i16, _>("device_type")?),
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

fn site_from_row(row: &PgRow) -> StoreResult<v1::Site> {
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

fn credential_from_row(row: &PgRow) -> StoreResult<StoredCredential> {
    let community: Option<Vec<u8>> = row.try_get("community")?;
    let auth_key: Option<Vec<u8>> = row.try_get("auth_key")?;
    let priv_key: Option<Vec<u8>> = row.try_get("priv_key")?;
    Ok(StoredCredential {
        credential: v1::SnmpCredential {
            id: row.try_get::<Uuid, _>("id")?.to_string(),
            name: row.try_get("name")?,
            version: i32::from(row.try_get::<i16, _>("version")?),
            community_set: community.is_some(),
            username: row.try_get("username")?,
            auth_protocol: i32::from(row.try_get::<i16, _>("auth_protocol")?),
            auth_key_set: auth_key.is_some(),
            priv_protocol: i32::from(row.try_get::<i16, _>("priv_protocol")?),
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

fn override_from_row(row: &PgRow) -> StoreResult<v1::InterfaceOverride> {
    Ok(v1::InterfaceOverride {
        device_id: row.try_get::<Uuid, _>("device_id")?.to_string(),
        if_index: row.try_get::<i32, _>("if_index")?.max(0) as u32,
        if_name: row.try_get("if_name")?,
        role: i32::from(row.try_get::<i16, _>("role")?),
        isp_name: row.try_get("isp_name")?,
        monitored: row.try_get("monitored")?,
        comment: row.try_get("comment")?,
        updated_at: Some(timestamp(row.try_get("updated_at")?)),
    })
}

async fn load_devices(conn: &mut PgConnection, ids: &[Uuid]) -> StoreResult<Vec<v1::Device>> {
    let rows = sqlx::query(concat!(device_select!(), "WHERE d.id = ANY($1)"))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut devices = rows
        .iter()
        .map(device_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    attach_overrides(conn, &mut devices).await?;
    Ok(devices)
}

async fn attach_overrides(conn: &mut PgConnection, devices: &mut [v1::Device]) -> StoreResult<()> {
    let ids: Vec<Uuid> = devices.iter().filter_map(|d| parse_id(&d.id)).collect();
    let rows = sqlx::query(
        "SELECT * FROM interface_overrides WHERE device_id = ANY($1) ORDER BY device_id, if_index, if_name",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut by_device: HashMap<String, Vec<v1::InterfaceOverride>> = HashMap::new();
    for row in &rows {
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

/// Takes the revision counter's row lock: every writer takes it first, so
/// writes (and their revisions) are serialized in commit order.
async fn lock_revisions(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT current FROM revision_counter FOR UPDATE")
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives each (device, kind) the next revision, stamps it on the device row,
/// and logs the device as it now is. Deletions are logged before the row goes.
async fn log_changes(
    conn: &mut PgConnection,
    items: &[(Uuid, v1::ChangeKind)],
    traceparent: &str,
) -> StoreResult<(Vec<v1::Device>, u64)> {
    let last: i64 =
        sqlx::query_scalar("UPDATE revision_counter SET current = current + $1 RETURNING current")
            .bind(items.len() as i64)
            .fetch_one(&mut *conn)
            .await?;
    if items.is_empty() {
        return Ok((Vec::new(), last.max(0) as u64));
    }
    let first = last - items.len() as i64 + 1;
    let ids: Vec<Uuid> = items.iter().map(|(id, _)| *id).collect();
    let revisions: Vec<i64> = (first..=last).collect();
    sqlx::query(
        "UPDATE devices d SET revision = v.revision \
         FROM UNNEST($1::uuid[], $2::int8[]) AS v(id, revision) WHERE d.id = v.id",
    )
    .bind(&ids)
    .bind(&revisions)
    .execute(&mut *conn)
    .await?;
    let mut devices: HashMap<String, v1::Device> = load_devices(conn, &ids)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let mut ordered = Vec::with_capacity(items.len());
    let mut kinds = Vec::with_capacity(items.len());
    let mut encoded = Vec::with_capacity(items.len());
    for (id, kind) in items {
        let device = devices.remove(&id.to_string()).ok_or_else(|| {
            sqlx::Error::Protocol(format!("device {id} vanished while logging its change"))
        })?;
        kinds.push(*kind as i16);
        encoded.push(device.encode_to_vec());
        ordered.push(device);
    }
    sqlx::query(
        "INSERT INTO device_changes (revision, device_id, kind, device, traceparent) \
         SELECT r, i, k, d, $5 FROM UNNEST($1::int8[], $2::uuid[], $3::int2[], $4::bytea[]) AS v(r, i, k, d)",
    )
    .bind(&revisions)
    .bind(&ids)
    .bind(&kinds)
    .bind(&encoded)
    .bind(traceparent)
    .execute(&mut *conn)
    .await?;
    Ok((ordered, last as u64))
}

/// Column arrays of a batch of devices, for one UNNEST upsert.
#[derive(Default)]
struct DeviceColumns {
    id: Vec<Uuid>,
    name: Vec<String>,
    ip_address: Vec<String>,
    site_id: Vec<Uuid>,
    device_type: Vec<i16>,
    vendor: Vec<String>,
    model: Vec<String>,
    tags: Vec<String>,
    enabled: Vec<bool>,
    parent_id: Vec<Option<Uuid>>,
    has_snmp: Vec<bool>,
    snmp_enabled: Vec<bool>,
    snmp_version: Vec<i16>,
    snmp_port: Vec<i32>,
    snmp_credential_id: Vec<Option<Uuid>>,
    snmp_profile: Vec<String>,
    probe_count: Vec<Option<i32>>,
    probe_timeout_ms: Vec<Option<i32>>,
    probe_interval_ms: Vec<Option<i32>>,
    probe_retries: Vec<Option<i32>>,
    executor_selector: Vec<String>,
    description: Vec<String>,
}

impl DeviceColumns {
    fn push(&mut self, device: &v1::Device) -> StoreResult<()> {
        let id = |text: &str, what: &str| {
            parse_id(text)
                .ok_or_else(|| sqlx::Error::Protocol(format!("unresolved {what} {text:?}")))
        };
        let to_i32 = |v: Option<u32>| v.map(|v| v.min(i32::MAX as u32) as i32);
        self.id.push(id(&device.id, "device id")?);
        self.name.push(device.name.clone());
        self.ip_address.push(device.ip_address.clone());
        self.site_id.push(id(&device.site_id, "site id")?);
        self.device_type.push(device.device_type as i16);
        self.vendor.push(device.vendor.clone());
        self.model.push(device.model.clone());
        self.tags.push(map_json(&device.tags));
        self.enabled.push(device.enabled.unwrap_or(true));
        self.parent_id.push(parse_id(&device.parent_device_id));
        let snmp = device.snmp.clone();
        self.has_snmp.push(snmp.is_some());
        let snmp = snmp.unwrap_or_default();
        self.snmp_enabled.push(snmp.enabled);
        self.snmp_version.push(snmp.version as i16);
        self.snmp_port.push(snmp.port.min(65_535) as i32);
        self.snmp_credential_id.push(parse_id(&snmp.credential_id));
        self.snmp_profile.push(snmp.profile);
        let probe = device.probe_overrides.unwrap_or_default();
        self.probe_count.push(to_i32(probe.count));
        self.probe_timeout_ms.push(to_i32(probe.timeout_ms));
        self.probe_interval_ms.push(to_i32(probe.interval_ms));
        self.probe_retries.push(to_i32(probe.retries));
        self.executor_selector
            .push(map_json(&device.executor_selector));
        self.description.push(device.description.clone());
        Ok(())
    }

    async fn upsert(self, conn: &mut PgConnection) -> StoreResult<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO devices (id, name, ip_address, site_id, device_type, vendor, model, tags, \
                 enabled, parent_id, has_snmp, snmp_enabled, snmp_version, snmp_port, \
                 snmp_credential_id, snmp_profile, probe_count, probe_timeout_ms, \
                 probe_interval_ms, probe_retries, executor_selector, description, revision) \
             SELECT id, name, ip, site, dtype, vendor, model, tags::jsonb, enabled, parent, \
                 has_snmp, snmp_enabled, snmp_version, snmp_port, cred, profile, pc, pt, pi, pr, \
                 sel::jsonb, descr, 0 \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::int2[], $6::text[], \
                 $7::text[], $8::text[], $9::bool[], $10::uuid[], $11::bool[], $12::bool[], \
                 $13::int2[], $14::int4[], $15::uuid[], $16::text[], $17::int4[], $18::int4[], \
                 $19::int4[], $20::int4[], $21::text[], $22::text[]) \
                 AS v(id, name, ip, site, dtype, vendor, model, tags, enabled, parent, has_snmp, \
                      snmp_enabled, snmp_version, snmp_port, cred, profile, pc, pt, pi, pr, sel, descr) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, ip_address = EXCLUDED.ip_address, \
                 site_id = EXCLUDED.site_id, device_type = EXCLUDED.device_type, \
                 vendor = EXCLUDED.vendor, model = EXCLUDED.model, tags = EXCLUDED.tags, \
                 enabled = EXCLUDED.enabled, parent_id = EXCLUDED.parent_id, \
                 has_snmp = EXCLUDED.has_snmp, snmp_enabled = EXCLUDED.snmp_enabled, \
                 snmp_version = EXCLUDED.snmp_version, snmp_port = EXCLUDED.snmp_port, \
                 snmp_credential_id = EXCLUDED.snmp_credential_id, \
                 snmp_profile = EXCLUDED.snmp_profile, probe_count = EXCLUDED.probe_count, \
                 probe_timeout_ms = EXCLUDED.probe_timeout_ms, \
                 probe_interval_ms = EXCLUDED.probe_interval_ms, \
                 probe_retries = EXCLUDED.probe_retries, \
                 executor_selector = EXCLUDED.executor_selector, \
                 description = EXCLUDED.description, updated_at = now()",
        )
        .bind(self.id)
        .bind(self.name)
        .bind(self.ip_address)
        .bind(self.site_id)
        .bind(self.device_type)
        .bind(self.vendor)
        .bind(self.model)
        .bind(self.tags)
        .bind(self.enabled)
        .bind(self.parent_id)
        .bind(self.has_snmp)
        .bind(self.snmp_enabled)
        .bind(self.snmp_version)
        .bind(self.snmp_port)
        .bind(self.snmp_credential_id)
        .bind(self.snmp_profile)
        .bind(self.probe_count)
        .bind(self.probe_timeout_ms)
        .bind(self.probe_interval_ms)
        .bind(self.probe_retries)
        .bind(self.executor_selector)
        .bind(self.description)
        .execute(conn)
        .await?;
        Ok(())
    }
}

async fn insert_sites(conn: &mut PgConnection, sites: &[v1::Site]) -> StoreResult<()> {
    if sites.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut codes = Vec::new();
    let mut regions = Vec::new();
    let mut addresses = Vec::new();
    let mut latitudes = Vec::new();
    let mut longitudes = Vec::new();
    let mut active = Vec::new();
    for site in sites {
        ids.push(
            parse_id(&site.id).ok_or_else(|| sqlx::Error::Protocol("unassigned site id".into()))?,
        );
        names.push(site.name.clone());
        codes.push(site.code.clone());
        regions.push(site.region.clone());
        addresses.push(site.address.clone());
        latitudes.push(site.latitude);
        longitudes.push(site.longitude);
        active.push(site.active.unwrap_or(true));
    }
    sqlx::query(
        "INSERT INTO sites (id, name, code, region, address, latitude, longitude, active) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                              $6::float8[], $7::float8[], $8::bool[])",
    )
    .bind(ids)
    .bind(names)
    .bind(codes)
    .bind(regions)
    .bind(addresses)
    .bind(latitudes)
    .bind(longitudes)
    .bind(active)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl InventoryStore for PgStore {
    async fn create_site(&self, site: &v1::Site) -> StoreResult<v1::Site> {
        let mut conn = self.pool.acquire().await?;
        insert_sites(&mut conn, std::slice::from_ref(site)).await?;
        let id = parse_id(&site.id).unwrap_or_default();
        let row = sqlx::query(concat!(site_select!(), "WHERE s.id = $1"))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        site_from_row(&row)
    }

    async fn get_site(&self, key: &Key) -> StoreResult<Option<v1::Site>> {
        let row = match key {
            Key::Id(id) => {
                sqlx::query(concat!(site_select!(), "WHERE s.id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Key::Name(name) => {
                sqlx::query(concat!(site_select!(), "WHERE s.name = $1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(site_from_row).transpose()
    }

    async fn update_site(&self, site: &v1::Site, traceparent: &str) -> StoreResult<v1::Site> {
        let id = parse_id(&site.id).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        lock_revisions(&mut tx).await?;
        let before: Option<(String, String, String)> =
            sqlx::query_as("SELECT name, code, region FROM sites WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(before) = before else {
            return Err(sqlx::Error::RowNotFound);
        };
        sqlx::query(
            "UPDATE sites SET name = $2, code = $3, region = $4, address = $5, latitude = $6, \
                 longitude = $7, active = $8, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(&site.name)
        .bind(&site.code)
        .bind(&site.region)
        .bind(&site.address)
        .bind(site.latitude)
        .bind(site.longitude)
        .bind(site.active.unwrap_or(true))
        .execute(&mut *tx)
        .await?;
        // Devices echo their site's name, code and region: followers must
        // hear about a change of any of them.
        if before != (site.name.clone(), site.code.clone(), site.region.clone()) {
            let ids: Vec<Uuid> =
                sqlx::query_scalar("SELECT id FROM devices WHERE site_id = $1 ORDER BY name")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            let items: Vec<_> = ids
                .into_iter()
                .map(|id| (id, v1::ChangeKind::Updated))
                .collect();
            log_changes(&mut tx, &items, traceparent).await?;
        }
        let row = sqlx::query(concat!(site_select!(), "WHERE s.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        site_from_row(&row)
    }

    async fn delete_site(&self, id: Uuid) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM sites WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
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
            "WHERE ($1::text IS NULL OR s.region = $1) AND ($2::bool IS NULL OR s.active = $2) \
               AND ($3::text IS NULL OR s.name ILIKE $3 OR s.code ILIKE $3 OR s.address ILIKE $3) \
               AND ($4::text IS NULL OR s.name > $4) AND ($6::text[] IS NULL OR s.name = ANY($6)) \
             ORDER BY s.name LIMIT $5"
        ))
        .bind(&filter.region)
        .bind(filter.active)
        .bind(&query)
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .bind(&filter.names)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sites s WHERE ($1::text IS NULL OR s.region = $1) \
               AND ($2::bool IS NULL OR s.active = $2) \
               AND ($3::text IS NULL OR s.name ILIKE $3 OR s.code ILIKE $3 OR s.address ILIKE $3) \
               AND ($4::text[] IS NULL OR s.name = ANY($4))",
        )
        .bind(&filter.region)
        .bind(filter.active)
        .bind(&query)
        .bind(&filter.names)
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
                sqlx::query(concat!(device_select!(), "WHERE d.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            Key::Name(name) => {
                sqlx::query(concat!(device_select!(), "WHERE d.name = $1"))
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
        let device_type = filter.device_type.map(|t| t as i16);
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(concat!(
            device_select!(),
            "WHERE ($1::uuid IS NULL OR d.site_id = $1) AND ($2::text IS NULL OR s.region = $2) \
               AND ($3::int2 IS NULL OR d.device_type = $3) AND d.tags @> $4::jsonb \
               AND ($5::bool IS NULL OR d.enabled = $5) \
               AND ($6::bool IS NULL OR (d.has_snmp AND d.snmp_enabled) = $6) \
               AND ($7::text IS NULL OR d.name ILIKE $7 OR d.ip_address ILIKE $7) \
               AND ($8::uuid IS NULL OR d.parent_id = $8) AND ($9::text IS NULL OR d.name > $9) \
               AND ($11::text[] IS NULL OR s.name = ANY($11)) \
             ORDER BY d.name LIMIT $10"
        ))
        .bind(filter.site_id)
        .bind(&filter.region)
        .bind(device_type)
        .bind(&tags)
        .bind(filter.enabled)
        .bind(filter.snmp_enabled)
        .bind(&query)
        .bind(filter.parent_id)
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .bind(&filter.site_names)
        .fetch_all(&mut *conn)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM devices d JOIN sites s ON s.id = d.site_id \
             WHERE ($1::uuid IS NULL OR d.site_id = $1) AND ($2::text IS NULL OR s.region = $2) \
               AND ($3::int2 IS NULL OR d.device_type = $3) AND d.tags @> $4::jsonb \
               AND ($5::bool IS NULL OR d.enabled = $5) \
               AND ($6::bool IS NULL OR (d.has_snmp AND d.snmp_enabled) = $6) \
               AND ($7::text IS NULL OR d.name ILIKE $7 OR d.ip_address ILIKE $7) \
               AND ($8::uuid IS NULL OR d.parent_id = $8) \
               AND ($9::text[] IS NULL OR s.name = ANY($9))",
        )
        .bind(filter.site_id)
        .bind(&filter.region)
        .bind(device_type)
        .bind(&tags)
        .bind(filter.enabled)
        .bind(filter.snmp_enabled)
        .bind(&query)
        .bind(filter.parent_id)
        .bind(&filter.site_names)
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
        let mut tx = self.pool.begin().await?;
        lock_revisions(&mut tx).await?;
        if let Some((id, expected)) = expected_revision {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM devices WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if current != Some(expected as i64) {
                return Ok(None);
            }
        }
        insert_sites(&mut tx, new_sites).await?;

        let mut columns = DeviceColumns::default();
        let mut items = Vec::with_capacity(writes.len());
        let mut deletes = Vec::new();
        for write in writes {
            match write {
                DeviceWrite::Create(device) => {
                    columns.push(device)?;
                    items.push((columns.id[columns.id.len() - 1], v1::ChangeKind::Created));
                }
                DeviceWrite::Update(device) => {
                    columns.push(device)?;
                    items.push((columns.id[columns.id.len() - 1], v1::ChangeKind::Updated));
                }
                DeviceWrite::Delete(id) => {
                    items.push((*id, v1::ChangeKind::Deleted));
                    deletes.push(*id);
                }
            }
        }
        columns.upsert(&mut tx).await?;
        // Log before deleting, so a deleted device is logged as it was.
        let (devices, revision) = log_changes(&mut tx, &items, traceparent).await?;
        if !deletes.is_empty() {
            sqlx::query("DELETE FROM devices WHERE id = ANY($1)")
                .bind(&deletes)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some((devices, revision)))
    }

    async fn snapshot(&self) -> StoreResult<(u64, Vec<v1::Device>)> {
        let mut tx = self.pool.begin().await?;
        // One consistent view: the counter and every device as of one moment
        // (writers hold the counter's row lock until they commit).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
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
        if !overrides.is_empty() {
            let mut by_device: HashMap<String, Vec<v1::InterfaceOverride>> = HashMap::new();
            for row in &overrides {
                let value = override_from_row(row)?;
                by_device
                    .entry(value.device_id.clone())
                    .or_default()
                    .push(value);
            }
            for device in &mut devices {
                if let Some(list) = by_device.remove(&device.id) {
                    device.interface_overrides = list;
                }
            }
        }
        Ok((revision.max(0) as u64, devices))
    }

    async fn changes_since(&self, after: u64, limit: u32) -> StoreResult<ChangeBatch> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let (current, pruned_through): (i64, i64) =
            sqlx::query_as("SELECT current, pruned_through FROM revision_counter")
                .fetch_one(&mut *tx)
                .await?;
        let rows: Vec<(i64, i16, Vec<u8>, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT revision, kind, device, changed_at, traceparent FROM device_changes \
             WHERE revision > $1 ORDER BY revision LIMIT $2",
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
                    revision: revision as u64,
                    kind: i32::from(kind),
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
        let mut tx = self.pool.begin().await?;
        lock_revisions(&mut tx).await?;
        let (count, through): (i64, Option<i64>) = sqlx::query_as(
            "WITH gone AS (DELETE FROM device_changes WHERE changed_at < $1 RETURNING revision) \
             SELECT count(*), max(revision) FROM gone",
        )
        .bind(older_than)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(through) = through {
            sqlx::query(
                "UPDATE revision_counter SET pruned_through = greatest(pruned_through, $1)",
            )
            .bind(through)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(count.max(0) as u64)
    }

    async fn create_credential(
        &self,
        credential: &StoredCredential,
    ) -> StoreResult<StoredCredential> {
        let c = &credential.credential;
        let id = parse_id(&c.id).unwrap_or_default();
        sqlx::query(
            "INSERT INTO credentials (id, name, version, community, username, auth_protocol, \
                 auth_key, priv_protocol, priv_key, context_name, description) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(&c.name)
        .bind(c.version as i16)
        .bind(&credential.community)
        .bind(&c.username)
        .bind(c.auth_protocol as i16)
        .bind(&credential.auth_key)
        .bind(c.priv_protocol as i16)
        .bind(&credential.priv_key)
        .bind(&c.context_name)
        .bind(&c.description)
        .execute(&self.pool)
        .await?;
        self.get_credential(&Key::Id(id))
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    async fn get_credential(&self, key: &Key) -> StoreResult<Option<StoredCredential>> {
        let row = match key {
            Key::Id(id) => {
                sqlx::query(concat!(credential_select!(), "WHERE c.id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Key::Name(name) => {
                sqlx::query(concat!(credential_select!(), "WHERE c.name = $1"))
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
        let mut tx = self.pool.begin().await?;
        lock_revisions(&mut tx).await?;
        let updated = sqlx::query(
            "UPDATE credentials SET name = $2, version = $3, community = $4, username = $5, \
                 auth_protocol = $6, auth_key = $7, priv_protocol = $8, priv_key = $9, \
                 context_name = $10, description = $11, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(&c.name)
        .bind(c.version as i16)
        .bind(&credential.community)
        .bind(&c.username)
        .bind(c.auth_protocol as i16)
        .bind(&credential.auth_key)
        .bind(c.priv_protocol as i16)
        .bind(&credential.priv_key)
        .bind(&c.context_name)
        .bind(&c.description)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(sqlx::Error::RowNotFound);
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE snmp_credential_id = $1 ORDER BY name",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let items: Vec<_> = ids
            .into_iter()
            .map(|id| (id, v1::ChangeKind::Updated))
            .collect();
        log_changes(&mut tx, &items, traceparent).await?;
        let row = sqlx::query(concat!(credential_select!(), "WHERE c.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        credential_from_row(&row)
    }

    async fn delete_credential(&self, id: Uuid) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
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
            "WHERE ($1::text IS NULL OR c.name ILIKE $1 OR c.description ILIKE $1) \
               AND ($2::text IS NULL OR c.name > $2) ORDER BY c.name LIMIT $3"
        ))
        .bind(&pattern)
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM credentials c WHERE ($1::text IS NULL OR c.name ILIKE $1 OR c.description ILIKE $1)",
        )
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
        let mut tx = self.pool.begin().await?;
        lock_revisions(&mut tx).await?;
        let row = sqlx::query(
            "INSERT INTO interface_overrides (device_id, if_index, if_name, role, isp_name, monitored, comment) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (device_id, if_index, if_name) DO UPDATE SET role = EXCLUDED.role, \
                 isp_name = EXCLUDED.isp_name, monitored = EXCLUDED.monitored, \
                 comment = EXCLUDED.comment, updated_at = now() \
             RETURNING *",
        )
        .bind(device_id)
        .bind(value.if_index.min(i32::MAX as u32) as i32)
        .bind(&value.if_name)
        .bind(value.role as i16)
        .bind(&value.isp_name)
        .bind(value.monitored)
        .bind(&value.comment)
        .fetch_one(&mut *tx)
        .await?;
        log_changes(
            &mut tx,
            &[(device_id, v1::ChangeKind::Updated)],
            traceparent,
        )
        .await?;
        tx.commit().await?;
        override_from_row(&row)
    }

    async fn list_interface_overrides(
        &self,
        device_id: Option<Uuid>,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::InterfaceOverride>> {
        // Keyset on "device_id/if_index/if_name" text, so the page token is one string.
        let rows = sqlx::query(
            "SELECT * FROM interface_overrides \
             WHERE ($1::uuid IS NULL OR device_id = $1) \
               AND ($2::text IS NULL OR (device_id::text || '/' || lpad(if_index::text, 10, '0') || '/' || if_name) > $2) \
             ORDER BY device_id::text, lpad(if_index::text, 10, '0'), if_name LIMIT $3",
        )
        .bind(device_id)
        .bind(&page.after)
        .bind(page_size(page) + 1)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM interface_overrides WHERE ($1::uuid IS NULL OR device_id = $1)",
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
        let mut tx = self.pool.begin().await?;
        lock_revisions(&mut tx).await?;
        let deleted = sqlx::query(
            "DELETE FROM interface_overrides WHERE device_id = $1 AND if_index = $2 AND if_name = $3",
        )
        .bind(device_id)
        .bind(if_index.min(i32::MAX as u32) as i32)
        .bind(if_name)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        log_changes(
            &mut tx,
            &[(device_id, v1::ChangeKind::Updated)],
            traceparent,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        audit::pg::insert(&self.pool, event).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        audit::pg::list(&self.pool, query).await
    }
}

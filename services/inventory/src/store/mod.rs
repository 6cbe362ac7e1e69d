//! Storage behind the inventory: one trait, a PostgreSQL implementation
//! (schema `inventory`) and a SQLite one (the embedded default), chosen by
//! [`open`] from the database URL. The store persists validated data and
//! keeps the change log; it never validates (that is the service's job) and
//! never sees a plaintext secret.
//!
//! Both backends report a violated constraint as a `sqlx::Error::Database`
//! carrying the PostgreSQL constraint name (`devices_name_key`,
//! `devices_site_fkey`, …): the names in `migrations/0001_inventory.sql` are
//! the vocabulary the service maps to its errors, whatever the backend.

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use netward_shared::audit::{AuditEvent, AuditQuery};
use netward_shared::proto::v1;
use uuid::Uuid;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store `url` names, running its migrations: `sqlite:PATH` (or
/// `sqlite://PATH`; the file is created if missing) → SQLite,
/// `postgres://…` or `postgresql://…` → PostgreSQL.
pub async fn open(url: &str) -> StoreResult<Arc<dyn InventoryStore>> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite") => Ok(Arc::new(SqliteStore::connect(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(PgStore::connect(url).await?)),
        // Only the scheme is echoed: the rest of a URL may hold a password.
        _ => Err(sqlx::Error::Configuration(
            format!(
                "unsupported database URL scheme {:?}: use sqlite:PATH or postgres://USER@HOST/DATABASE",
                scheme.unwrap_or_default()
            )
            .into(),
        )),
    }
}

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// Selects a site, device or credential by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id(Uuid),
    Name(String),
}

/// Keyset pagination by name: the page starts after `after`.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The last name of this page when more may follow.
    pub next_after: Option<String>,
    pub total: u64,
}

/// Validated site filter.
#[derive(Debug, Clone, Default)]
pub struct SiteFilter {
    pub region: Option<String>,
    pub active: Option<bool>,
    pub query: Option<String>,
    /// Only these sites (names): a scoped caller's; `None` = every site.
    pub names: Option<Vec<String>>,
}

/// Validated device filter (names already resolved to ids).
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub site_id: Option<Uuid>,
    pub region: Option<String>,
    pub device_type: Option<i32>,
    pub tags: Vec<(String, String)>,
    pub enabled: Option<bool>,
    pub snmp_enabled: Option<bool>,
    pub query: Option<String>,
    pub parent_id: Option<Uuid>,
    /// Only devices of these sites (names): a scoped caller's; `None` =
    /// every site.
    pub site_names: Option<Vec<String>>,
}

/// A credential as stored: public fields in `credential` (the `*_set` flags
/// derived from the ciphertexts), secrets as ciphertexts.
#[derive(Clone, Default)]
pub struct StoredCredential {
    pub credential: v1::SnmpCredential,
    pub community: Option<Vec<u8>>,
    pub auth_key: Option<Vec<u8>>,
    pub priv_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("id", &self.credential.id)
            .field("name", &self.credential.name)
            .finish_non_exhaustive()
    }
}

/// One device write of a batch. Devices carry resolved ids (`id`, `site_id`,
/// `parent_device_id`, `snmp.credential_id`); names are ignored.
#[derive(Debug, Clone)]
pub enum DeviceWrite {
    Create(v1::Device),
    Update(v1::Device),
    Delete(Uuid),
}

/// The change log after a revision.
#[derive(Debug, Clone, Default)]
pub struct ChangeBatch {
    /// Changes at or below this revision are gone: a watcher behind it needs
    /// a snapshot.
    pub pruned_through: u64,
    /// The newest committed revision.
    pub current: u64,
    pub changes: Vec<v1::DeviceChange>,
}

#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    async fn create_site(&self, site: &v1::Site) -> StoreResult<v1::Site>;
    async fn get_site(&self, key: &Key) -> StoreResult<Option<v1::Site>>;
    /// Also logs an UPDATED change for each device of the site.
    async fn update_site(&self, site: &v1::Site, traceparent: &str) -> StoreResult<v1::Site>;
    async fn delete_site(&self, id: Uuid) -> StoreResult<bool>;
    async fn list_sites(
        &self,
        filter: &SiteFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::Site>>;
    async fn all_sites(&self) -> StoreResult<Vec<v1::Site>>;
    async fn list_regions(&self) -> StoreResult<Vec<v1::RegionSummary>>;

    async fn get_device(&self, key: &Key) -> StoreResult<Option<v1::Device>>;
    /// Every device's (id, name, ip, enabled, parent id), for validation.
    async fn device_index(&self) -> StoreResult<Vec<DeviceIndexEntry>>;
    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::Device>>;
    /// Creates `new_sites` and applies `writes` in one transaction, logging a
    /// change per device; with `expected_revision` the write is refused
    /// (returns `Ok(None)`) unless that device is still at that revision.
    /// Returns the written devices (deleted ones as they were) and the new
    /// revision.
    async fn write_devices(
        &self,
        new_sites: &[v1::Site],
        writes: &[DeviceWrite],
        expected_revision: Option<(Uuid, u64)>,
        traceparent: &str,
    ) -> StoreResult<Option<(Vec<v1::Device>, u64)>>;
    /// Every device at one consistent revision.
    async fn snapshot(&self) -> StoreResult<(u64, Vec<v1::Device>)>;
    async fn changes_since(&self, after: u64, limit: u32) -> StoreResult<ChangeBatch>;
    /// Drops logged changes older than `older_than`; returns how many.
    async fn prune_changes(&self, older_than: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;

    async fn create_credential(
        &self,
        credential: &StoredCredential,
    ) -> StoreResult<StoredCredential>;
    async fn get_credential(&self, key: &Key) -> StoreResult<Option<StoredCredential>>;
    /// Also logs an UPDATED change for each device using the credential, so
    /// the planner resolves it again.
    async fn update_credential(
        &self,
        credential: &StoredCredential,
        traceparent: &str,
    ) -> StoreResult<StoredCredential>;
    async fn delete_credential(&self, id: Uuid) -> StoreResult<bool>;
    async fn list_credentials(
        &self,
        query: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<StoredCredential>>;
    /// How many credentials hold at least one secret.
    async fn credentials_with_secrets(&self) -> StoreResult<u64>;

    /// Inserts or replaces; logs an UPDATED change for the device.
    async fn set_interface_override(
        &self,
        value: &v1::InterfaceOverride,
        traceparent: &str,
    ) -> StoreResult<v1::InterfaceOverride>;
    async fn list_interface_overrides(
        &self,
        device_id: Option<Uuid>,
        page: &PageRequest,
    ) -> StoreResult<Page<v1::InterfaceOverride>>;
    async fn delete_interface_override(
        &self,
        device_id: Uuid,
        if_index: u32,
        if_name: &str,
        traceparent: &str,
    ) -> StoreResult<bool>;

    /// Appends an audit event; called right after the change it records
    /// succeeded (in its own transaction).
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Audit events matching `query`, newest first, at most `query.size + 1`.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

/// The few fields of a device that validation needs about all devices.
#[derive(Debug, Clone)]
pub struct DeviceIndexEntry {
    pub id: Uuid,
    pub name: String,
    pub ip_address: String,
    pub enabled: bool,
    pub parent_id: Option<Uuid>,
}

// ---- helpers shared by the backends ---------------------------------------

fn json_map(text: &str) -> HashMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn map_json(map: &HashMap<String, String>) -> String {
    // Sorted, so equal maps store equal text.
    let sorted: BTreeMap<_, _> = map.iter().collect();
    serde_json::to_string(&sorted).expect("a string map always serializes")
}

/// A name list as a JSON array (SQLite's `json_each`); `None` stays NULL.
fn json_names(names: Option<&[String]>) -> Option<String> {
    names.map(|names| serde_json::to_string(names).expect("strings always serialize"))
}

fn opt_u32(value: Option<i32>) -> Option<u32> {
    value.map(|v| v.max(0) as u32)
}

fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

/// Escapes LIKE wildcards so a search for "10_0" means what it says.
fn like_pattern(query: &str) -> String {
    let escaped = query
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn page_size(page: &PageRequest) -> i64 {
    i64::from(page.size.clamp(1, 10_000))
}

fn finish_page<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    total: i64,
    name: impl Fn(&T) -> String,
) -> Page<T> {
    let size = page_size(page) as usize;
    let next_after = if items.len() > size {
        items.truncate(size);
        items.last().map(name)
    } else {
        None
    };
    Page {
        items,
        next_after,
        total: total.max(0) as u64,
    }
}

//! The store test-suite: every case is written once against the
//! `InventoryStore` trait and runs on PostgreSQL (a fresh database) and on
//! SQLite (a temporary file), so both backends keep one behaviour —
//! revisions, the change log, paging, filters, and constraint names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use netward_inventory::store::{
    self, DeviceFilter, DeviceWrite, InventoryStore, Key, PageRequest, SiteFilter, StoredCredential,
};
use netward_shared::audit::{AuditEvent, AuditQuery};
use netward_shared::auth::Caller;
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::status::{DbErrorKind, classify_sqlx};
use uuid::Uuid;

use crate::support::{Backend, Storage, on_both_backends};

on_both_backends!(
    sites_create_get_update_list_delete,
    device_writes_hand_out_revisions_and_log_each_change,
    expected_revision_refuses_a_stale_write,
    snapshot_is_every_device_at_one_revision,
    changes_since_pages_and_prune_moves_pruned_through,
    device_pages_and_filters,
    credentials_keep_ciphertexts_and_log_their_devices,
    interface_overrides_are_upserted_paged_and_logged,
    violations_carry_the_postgresql_constraint_names,
    concurrent_writers_get_revisions_in_commit_order,
    imports_the_example_inventory,
    audit_events_page_newest_first_with_filters,
);

#[tokio::test]
async fn open_chooses_the_backend_by_scheme() {
    // In memory: one connection kept open, so the data stays.
    let store = store::open("sqlite::memory:").await.unwrap();
    store
        .create_site(&site("ambrolauri-01", "Racha"))
        .await
        .unwrap();
    let sites = store.all_sites().await.unwrap();
    assert_eq!(sites.len(), 1);
    let Err(error) = store::open("mysql://root:hunter2@127.0.0.1/netward").await else {
        panic!("a MySQL URL was accepted");
    };
    let message = error.to_string();
    assert!(
        message.contains("sqlite:") && message.contains("postgres://"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

/// A store on a fresh database; the storage must outlive it.
async fn open(backend: Backend) -> (Arc<dyn InventoryStore>, Storage) {
    let storage = backend.storage().await;
    let store = store::open(&storage.url(Target::Inventory)).await.unwrap();
    (store, storage)
}

fn site(name: &str, region: &str) -> v1::Site {
    v1::Site {
        id: Uuid::new_v4().to_string(),
        name: name.into(),
        region: region.into(),
        active: Some(true),
        ..Default::default()
    }
}

fn device(name: &str, ip: &str, site: &v1::Site) -> v1::Device {
    v1::Device {
        id: Uuid::new_v4().to_string(),
        name: name.into(),
        ip_address: ip.into(),
        site_id: site.id.clone(),
        device_type: v1::DeviceType::Router as i32,
        enabled: Some(true),
        ..Default::default()
    }
}

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

fn page(size: u32, after: Option<String>) -> PageRequest {
    PageRequest { size, after }
}

/// Writes `writes` (no new sites, no expected revision).
async fn write(store: &dyn InventoryStore, writes: Vec<DeviceWrite>) -> (Vec<v1::Device>, u64) {
    store
        .write_devices(&[], &writes, None, "")
        .await
        .unwrap()
        .expect("no expected revision, so never refused")
}

async fn current(store: &dyn InventoryStore) -> u64 {
    store.changes_since(u64::MAX >> 1, 0).await.unwrap().current
}

/// Every logged change after `after`, as (revision, kind, device name).
async fn log(store: &dyn InventoryStore, after: u64) -> Vec<(u64, v1::ChangeKind, String)> {
    store
        .changes_since(after, 1000)
        .await
        .unwrap()
        .changes
        .into_iter()
        .map(|c| {
            (
                c.revision,
                v1::ChangeKind::try_from(c.kind).unwrap(),
                c.device.unwrap().name,
            )
        })
        .collect()
}

/// What the service sees of a store error.
fn kind(error: &sqlx::Error) -> DbErrorKind {
    classify_sqlx(error)
}

fn unique(constraint: &str) -> DbErrorKind {
    DbErrorKind::UniqueViolation(Some(constraint.into()))
}

fn foreign_key(constraint: &str) -> DbErrorKind {
    DbErrorKind::ForeignKeyViolation(Some(constraint.into()))
}

async fn sites_create_get_update_list_delete(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let mut tbilisi = site("tbilisi-01", "Tbilisi");
    tbilisi.code = "TB1".into();
    tbilisi.address = "Rustaveli Ave 1".into();
    tbilisi.latitude = Some(41.7151);
    tbilisi.longitude = Some(44.8271);
    let created = store.create_site(&tbilisi).await.unwrap();
    assert_eq!(created.id, tbilisi.id);
    assert_eq!(created.code, "TB1");
    assert_eq!(created.latitude, Some(41.7151));
    assert_eq!(created.active, Some(true));
    assert_eq!(created.device_count, 0);
    assert!(created.created_at.is_some() && created.updated_at.is_some());
    store
        .create_site(&site("tbilisi-02", "Tbilisi"))
        .await
        .unwrap();
    let mut batumi = site("batumi-01", "Batumi");
    batumi.active = Some(false);
    let batumi = store.create_site(&batumi).await.unwrap();

    let by_name = store
        .get_site(&Key::Name("tbilisi-01".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name, created);
    let by_id = store.get_site(&Key::Id(id(&batumi.id))).await.unwrap();
    assert_eq!(by_id.unwrap().name, "batumi-01");
    assert!(
        store
            .get_site(&Key::Name("nowhere".into()))
            .await
            .unwrap()
            .is_none()
    );

    // Pages by name, with the total of the whole filter.
    let first = store
        .list_sites(&SiteFilter::default(), &page(2, None))
        .await
        .unwrap();
    let names: Vec<_> = first.items.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["batumi-01", "tbilisi-01"]);
    assert_eq!(first.total, 3);
    assert_eq!(first.next_after.as_deref(), Some("tbilisi-01"));
    let second = store
        .list_sites(&SiteFilter::default(), &page(2, first.next_after))
        .await
        .unwrap();
    let names: Vec<_> = second.items.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tbilisi-02"]);
    assert_eq!(second.next_after, None);

    let filtered = |region: Option<&str>, active: Option<bool>, query: Option<&str>| SiteFilter {
        region: region.map(Into::into),
        active,
        query: query.map(Into::into),
        names: None,
    };
    let names = |page: store::Page<v1::Site>| -> Vec<String> {
        page.items.into_iter().map(|s| s.name).collect()
    };
    let tbilisi_sites = store
        .list_sites(&filtered(Some("Tbilisi"), None, None), &page(10, None))
        .await
        .unwrap();
    assert_eq!(tbilisi_sites.total, 2);
    let inactive = store
        .list_sites(&filtered(None, Some(false), None), &page(10, None))
        .await
        .unwrap();
    assert_eq!(names(inactive), ["batumi-01"]);
    // Query text matches name, code or address, case-insensitively.
    for query in ["TBILISI-01", "tb1", "rustaveli"] {
        let found = store
            .list_sites(&filtered(None, None, Some(query)), &page(10, None))
            .await
            .unwrap();
        assert_eq!(names(found), ["tbilisi-01"], "query {query:?}");
    }
    // LIKE wildcards in the query are literal.
    let none = store
        .list_sites(&filtered(None, None, Some("tbilisi_0%")), &page(10, None))
        .await
        .unwrap();
    assert_eq!(none.total, 0);

    let all: Vec<_> = store
        .all_sites()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(all, ["batumi-01", "tbilisi-01", "tbilisi-02"]);

    // A device makes the site's count and the region summary.
    let mut disabled = device("tbilisi-01-rtr", "10.0.0.1", &created);
    disabled.enabled = Some(false);
    write(
        store,
        vec![
            DeviceWrite::Create(device("tbilisi-01-sw", "10.0.0.2", &created)),
            DeviceWrite::Create(disabled),
        ],
    )
    .await;
    let regions = store.list_regions().await.unwrap();
    let summary: Vec<_> = regions
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.site_count,
                r.active_site_count,
                r.device_count,
                r.enabled_device_count,
            )
        })
        .collect();
    assert_eq!(summary, [("Batumi", 1, 0, 0, 0), ("Tbilisi", 2, 2, 2, 1)]);

    // Renaming the site logs each of its devices (they echo the name); a
    // new address alone does not.
    let before = current(store).await;
    let mut moved = created.clone();
    moved.address = "Chavchavadze Ave 5".into();
    let updated = store.update_site(&moved, "").await.unwrap();
    assert_eq!(updated.address, "Chavchavadze Ave 5");
    assert_eq!(updated.device_count, 2);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(current(store).await, before);
    moved.name = "tbilisi-central".into();
    store.update_site(&moved, "").await.unwrap();
    let changes = log(store, before).await;
    assert_eq!(
        changes,
        [
            (before + 1, v1::ChangeKind::Updated, "tbilisi-01-rtr".into()),
            (before + 2, v1::ChangeKind::Updated, "tbilisi-01-sw".into()),
        ]
    );
    let logged = store.changes_since(before, 10).await.unwrap().changes;
    assert_eq!(
        logged[0].device.as_ref().unwrap().site_name,
        "tbilisi-central"
    );
    let missing = site("ghost", "");
    assert!(matches!(
        store.update_site(&missing, "").await,
        Err(sqlx::Error::RowNotFound)
    ));

    assert!(store.delete_site(id(&batumi.id)).await.unwrap());
    assert!(!store.delete_site(id(&batumi.id)).await.unwrap());
    assert!(
        store
            .get_site(&Key::Id(id(&batumi.id)))
            .await
            .unwrap()
            .is_none()
    );
}

async fn device_writes_hand_out_revisions_and_log_each_change(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let mut gori = site("gori-01", "Gori");
    gori.code = "GR1".into();
    // The site comes with the batch, as an import creates it.
    let router = device("gori-01-rtr", "10.1.0.1", &gori);
    let mut switch = device("gori-01-sw", "10.1.0.2", &gori);
    switch.parent_device_id = router.id.clone();
    switch.device_type = v1::DeviceType::Switch as i32;
    switch.vendor = "Cisco".into();
    switch.model = "C9200".into();
    switch.description = "access switch".into();
    switch.tags = HashMap::from([("role".into(), "access".into())]);
    switch.executor_selector = HashMap::from([("zone".into(), "east".into())]);
    switch.probe_overrides = Some(v1::ProbeOverrides {
        count: Some(5),
        timeout_ms: Some(800),
        interval_ms: None,
        retries: Some(2),
    });
    // Children before their parent: the parent key is checked at commit.
    let (written, revision) = store
        .write_devices(
            std::slice::from_ref(&gori),
            &[
                DeviceWrite::Create(switch.clone()),
                DeviceWrite::Create(router.clone()),
            ],
            None,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revision, 2);
    let revisions: Vec<_> = written
        .iter()
        .map(|d| (d.name.as_str(), d.revision))
        .collect();
    assert_eq!(revisions, [("gori-01-sw", 1), ("gori-01-rtr", 2)]);
    let stored = &written[0];
    assert_eq!(stored.site_name, "gori-01");
    assert_eq!(stored.site_code, "GR1");
    assert_eq!(stored.region, "Gori");
    assert_eq!(stored.parent_device_name, "gori-01-rtr");
    assert_eq!(stored.tags, switch.tags);
    assert_eq!(stored.executor_selector, switch.executor_selector);
    assert_eq!(stored.probe_overrides, switch.probe_overrides);
    assert_eq!(
        (stored.vendor.as_str(), stored.model.as_str()),
        ("Cisco", "C9200")
    );
    assert_eq!(stored.snmp, None);
    assert_eq!(stored.enabled, Some(true));
    assert_eq!(
        store
            .get_site(&Key::Name("gori-01".into()))
            .await
            .unwrap()
            .unwrap()
            .device_count,
        2
    );

    let by_name = store
        .get_device(&Key::Name("gori-01-sw".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&by_name, stored);
    let by_id = store.get_device(&Key::Id(id(&router.id))).await.unwrap();
    assert_eq!(by_id.unwrap().revision, 2);

    let mut index = store.device_index().await.unwrap();
    index.sort_by(|a, b| a.name.cmp(&b.name));
    let entries: Vec<_> = index
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.ip_address.as_str(),
                e.enabled,
                e.parent_id,
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("gori-01-rtr", "10.1.0.1", true, None),
            ("gori-01-sw", "10.1.0.2", true, Some(id(&router.id))),
        ]
    );

    // An update keeps created_at and takes the next revision.
    let mut changed = stored.clone();
    changed.ip_address = "10.1.0.3".into();
    changed.enabled = Some(false);
    changed.snmp = Some(v1::SnmpSettings {
        enabled: true,
        version: v1::SnmpVersion::V2c as i32,
        port: 1161,
        profile: "generic".into(),
        ..Default::default()
    });
    let (updated, revision) = write(store, vec![DeviceWrite::Update(changed.clone())]).await;
    assert_eq!(revision, 3);
    let updated = &updated[0];
    assert_eq!(updated.revision, 3);
    assert_eq!(updated.ip_address, "10.1.0.3");
    assert_eq!(updated.enabled, Some(false));
    assert_eq!(updated.snmp, changed.snmp);
    assert_eq!(updated.created_at, stored.created_at);

    // A deletion is logged with the device as it was.
    let (deleted, revision) = write(store, vec![DeviceWrite::Delete(id(&changed.id))]).await;
    assert_eq!(revision, 4);
    assert_eq!(deleted[0].ip_address, "10.1.0.3");
    assert_eq!(deleted[0].revision, 4);
    assert!(
        store
            .get_device(&Key::Id(id(&changed.id)))
            .await
            .unwrap()
            .is_none()
    );

    let batch = store.changes_since(0, 100).await.unwrap();
    assert_eq!((batch.current, batch.pruned_through), (4, 0));
    let kinds: Vec<_> = batch
        .changes
        .iter()
        .map(|c| {
            let device = c.device.as_ref().unwrap();
            (c.revision, c.kind, device.name.as_str(), device.revision)
        })
        .collect();
    use v1::ChangeKind::{Created, Deleted, Updated};
    assert_eq!(
        kinds,
        [
            (1, Created as i32, "gori-01-sw", 1),
            (2, Created as i32, "gori-01-rtr", 2),
            (3, Updated as i32, "gori-01-sw", 3),
            (4, Deleted as i32, "gori-01-sw", 4),
        ]
    );
    // The log holds the device as encoded then, trace context included.
    assert_eq!(batch.changes[0].device.as_ref(), Some(stored));
    let trace = batch.changes[0].trace_context.as_ref().unwrap();
    assert_eq!(
        trace.traceparent,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(batch.changes[2].trace_context, None);
    assert!(batch.changes.iter().all(|c| c.changed_at.is_some()));
}

async fn expected_revision_refuses_a_stale_write(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let telavi = store
        .create_site(&site("telavi-01", "Telavi"))
        .await
        .unwrap();
    let (written, _) = write(
        store,
        vec![DeviceWrite::Create(device(
            "telavi-01-rtr",
            "10.2.0.1",
            &telavi,
        ))],
    )
    .await;
    let mut router = written[0].clone();
    let device_id = id(&router.id);

    router.description = "first".into();
    let accepted = store
        .write_devices(
            &[],
            &[DeviceWrite::Update(router.clone())],
            Some((device_id, 1)),
            "",
        )
        .await
        .unwrap();
    assert_eq!(accepted.map(|(_, revision)| revision), Some(2));

    // Someone else wrote revision 2: a write expecting 1 is refused whole.
    router.description = "second".into();
    let new_site = site("telavi-02", "Telavi");
    let refused = store
        .write_devices(
            std::slice::from_ref(&new_site),
            &[DeviceWrite::Update(router.clone())],
            Some((device_id, 1)),
            "",
        )
        .await
        .unwrap();
    assert!(refused.is_none());
    assert_eq!(current(store).await, 2);
    let stored = store
        .get_device(&Key::Id(device_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.description, "first");
    assert!(
        store
            .get_site(&Key::Name("telavi-02".into()))
            .await
            .unwrap()
            .is_none()
    );
    // An unknown device is never at the expected revision.
    let unknown = store
        .write_devices(&[], &[], Some((Uuid::new_v4(), 1)), "")
        .await
        .unwrap();
    assert!(unknown.is_none());
}

async fn snapshot_is_every_device_at_one_revision(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let (revision, devices) = store.snapshot().await.unwrap();
    assert_eq!((revision, devices.len()), (0, 0));

    let zugdidi = store
        .create_site(&site("zugdidi-01", "Zugdidi"))
        .await
        .unwrap();
    let names = ["zugdidi-01-c", "zugdidi-01-a", "zugdidi-01-b"];
    let writes = names
        .iter()
        .enumerate()
        .map(|(i, name)| DeviceWrite::Create(device(name, &format!("10.3.0.{}", i + 1), &zugdidi)))
        .collect();
    let (written, _) = write(store, writes).await;
    let uplink = v1::InterfaceOverride {
        device_id: written[1].id.clone(),
        if_index: 2,
        role: v1::InterfaceRole::IspUplink as i32,
        isp_name: "Magti".into(),
        monitored: Some(true),
        ..Default::default()
    };
    store.set_interface_override(&uplink, "").await.unwrap();

    let (revision, devices) = store.snapshot().await.unwrap();
    assert_eq!(revision, 4);
    let listed: Vec<_> = devices
        .iter()
        .map(|d| (d.name.as_str(), d.revision))
        .collect();
    assert_eq!(
        listed,
        [
            ("zugdidi-01-a", 4),
            ("zugdidi-01-b", 3),
            ("zugdidi-01-c", 1)
        ]
    );
    assert_eq!(devices[0].interface_overrides.len(), 1);
    assert_eq!(devices[0].interface_overrides[0].isp_name, "Magti");
    assert!(devices[1].interface_overrides.is_empty());
}

async fn changes_since_pages_and_prune_moves_pruned_through(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let kutaisi = store
        .create_site(&site("kutaisi-01", "Kutaisi"))
        .await
        .unwrap();
    for i in 1..=5 {
        write(
            store,
            vec![DeviceWrite::Create(device(
                &format!("kutaisi-01-{i}"),
                &format!("10.4.0.{i}"),
                &kutaisi,
            ))],
        )
        .await;
    }
    let batch = store.changes_since(2, 2).await.unwrap();
    let revisions: Vec<_> = batch.changes.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, [3, 4]);
    assert_eq!((batch.current, batch.pruned_through), (5, 0));
    // Limit 0 reads only the counters.
    let counters = store.changes_since(0, 0).await.unwrap();
    assert!(counters.changes.is_empty());
    assert_eq!(counters.current, 5);

    // Nothing is older than an hour ago.
    let hour = chrono::Duration::hours(1);
    assert_eq!(
        store
            .prune_changes(chrono::Utc::now() - hour)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.changes_since(0, 0).await.unwrap().pruned_through, 0);
    // Everything is older than an hour from now.
    assert_eq!(
        store
            .prune_changes(chrono::Utc::now() + hour)
            .await
            .unwrap(),
        5
    );
    let batch = store.changes_since(0, 100).await.unwrap();
    assert!(batch.changes.is_empty());
    assert_eq!((batch.current, batch.pruned_through), (5, 5));
    assert_eq!(
        store
            .prune_changes(chrono::Utc::now() + hour)
            .await
            .unwrap(),
        0
    );

    // New changes continue the count; pruned_through stays.
    write(
        store,
        vec![DeviceWrite::Create(device(
            "kutaisi-01-6",
            "10.4.0.6",
            &kutaisi,
        ))],
    )
    .await;
    let batch = store.changes_since(5, 100).await.unwrap();
    let revisions: Vec<_> = batch.changes.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, [6]);
    assert_eq!((batch.current, batch.pruned_through), (6, 5));
}

async fn device_pages_and_filters(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let rustavi = store
        .create_site(&site("rustavi-01", "Rustavi"))
        .await
        .unwrap();
    let poti = store.create_site(&site("poti-01", "Poti")).await.unwrap();
    let router = device("rustavi-01-rtr", "10.5.0.1", &rustavi);
    let mut switch = device("rustavi-01-sw", "10.5.0.2", &rustavi);
    switch.device_type = v1::DeviceType::Switch as i32;
    switch.parent_device_id = router.id.clone();
    switch.tags = HashMap::from([
        ("role".into(), "access".into()),
        ("floor".into(), "2".into()),
    ]);
    let mut atm = device("rustavi-01_atm", "10.5.1.10", &rustavi);
    atm.device_type = v1::DeviceType::Atm as i32;
    atm.parent_device_id = router.id.clone();
    atm.enabled = Some(false);
    atm.tags = HashMap::from([("role".into(), "atm".into())]);
    let mut poti_router = device("poti-01-rtr", "10.6.0.1", &poti);
    poti_router.snmp = Some(v1::SnmpSettings {
        enabled: true,
        version: v1::SnmpVersion::V2c as i32,
        ..Default::default()
    });
    poti_router.tags = HashMap::from([("role".into(), "access".into())]);
    let mut poti_switch = device("poti-01-sw", "10.6.0.2", &poti);
    poti_switch.snmp = Some(v1::SnmpSettings {
        enabled: false,
        ..Default::default()
    });
    write(
        store,
        [&router, &switch, &atm, &poti_router, &poti_switch]
            .into_iter()
            .map(|d| DeviceWrite::Create(d.clone()))
            .collect(),
    )
    .await;

    // Every page, following next_after to the end.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let listed = store
            .list_devices(&DeviceFilter::default(), &page(2, after))
            .await
            .unwrap();
        assert_eq!(listed.total, 5);
        assert!(listed.items.len() <= 2);
        seen.extend(listed.items.into_iter().map(|d| d.name));
        match listed.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "poti-01-rtr",
            "poti-01-sw",
            "rustavi-01-rtr",
            "rustavi-01-sw",
            "rustavi-01_atm"
        ]
    );

    let names = |filter: DeviceFilter| async move {
        let listed = store.list_devices(&filter, &page(100, None)).await.unwrap();
        let names: Vec<String> = listed.items.into_iter().map(|d| d.name).collect();
        assert_eq!(listed.total as usize, names.len(), "{filter:?}");
        names
    };
    let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    assert_eq!(
        names(DeviceFilter {
            site_id: Some(id(&poti.id)),
            ..Default::default()
        })
        .await,
        ["poti-01-rtr", "poti-01-sw"]
    );
    assert_eq!(
        names(DeviceFilter {
            region: Some("Rustavi".into()),
            device_type: Some(v1::DeviceType::Switch as i32),
            ..Default::default()
        })
        .await,
        ["rustavi-01-sw"]
    );
    assert_eq!(
        names(DeviceFilter {
            tags: tags(&[("role", "access")]),
            ..Default::default()
        })
        .await,
        ["poti-01-rtr", "rustavi-01-sw"]
    );
    assert_eq!(
        names(DeviceFilter {
            tags: tags(&[("role", "access"), ("floor", "2")]),
            ..Default::default()
        })
        .await,
        ["rustavi-01-sw"]
    );
    assert!(
        names(DeviceFilter {
            tags: tags(&[("role", "access"), ("floor", "3")]),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        names(DeviceFilter {
            enabled: Some(false),
            ..Default::default()
        })
        .await,
        ["rustavi-01_atm"]
    );
    assert_eq!(
        names(DeviceFilter {
            snmp_enabled: Some(true),
            ..Default::default()
        })
        .await,
        ["poti-01-rtr"]
    );
    assert_eq!(
        names(DeviceFilter {
            snmp_enabled: Some(false),
            ..Default::default()
        })
        .await
        .len(),
        4
    );
    assert_eq!(
        names(DeviceFilter {
            parent_id: Some(id(&router.id)),
            ..Default::default()
        })
        .await,
        ["rustavi-01-sw", "rustavi-01_atm"]
    );
    // Query text: name or address, case-insensitive, wildcards literal.
    let query = |text: &str| DeviceFilter {
        query: Some(text.into()),
        ..Default::default()
    };
    assert_eq!(names(query("RUSTAVI-01-R")).await, ["rustavi-01-rtr"]);
    assert_eq!(names(query("10.5.1.")).await, ["rustavi-01_atm"]);
    assert_eq!(names(query("01_")).await, ["rustavi-01_atm"]);
    assert!(names(query("%")).await.is_empty());
}

fn credential(name: &str, community: Option<Vec<u8>>) -> StoredCredential {
    StoredCredential {
        credential: v1::SnmpCredential {
            id: Uuid::new_v4().to_string(),
            name: name.into(),
            version: v1::SnmpVersion::V2c as i32,
            description: format!("{name} credential"),
            ..Default::default()
        },
        community,
        auth_key: None,
        priv_key: None,
    }
}

async fn credentials_keep_ciphertexts_and_log_their_devices(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    // Ciphertexts are arbitrary bytes: NULs and invalid UTF-8 included.
    let ciphertext: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
    let branches = store
        .create_credential(&credential("branches", Some(ciphertext.clone())))
        .await
        .unwrap();
    assert!(branches.credential.community_set);
    assert!(!branches.credential.auth_key_set);
    assert_eq!(branches.community.as_deref(), Some(ciphertext.as_slice()));
    store
        .create_credential(&credential("anonymous", None))
        .await
        .unwrap();
    let mut v3 = credential("core-v3", None);
    v3.credential.version = v1::SnmpVersion::V3 as i32;
    v3.credential.username = "netward".into();
    v3.credential.auth_protocol = 3;
    v3.credential.priv_protocol = 2;
    v3.auth_key = Some(vec![1, 2, 3]);
    v3.priv_key = Some(vec![4, 5, 6]);
    let v3 = store.create_credential(&v3).await.unwrap();
    assert!(v3.credential.auth_key_set && v3.credential.priv_key_set);
    assert_eq!(v3.credential.auth_protocol, 3);
    assert_eq!(store.credentials_with_secrets().await.unwrap(), 2);

    let by_name = store
        .get_credential(&Key::Name("branches".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.community, Some(ciphertext));
    assert_eq!(by_name.credential, branches.credential);

    // A device using it counts, and names it.
    let mestia = store
        .create_site(&site("mestia-01", "Mestia"))
        .await
        .unwrap();
    let mut router = device("mestia-01-rtr", "10.7.0.1", &mestia);
    router.snmp = Some(v1::SnmpSettings {
        enabled: true,
        version: v1::SnmpVersion::V2c as i32,
        port: 161,
        credential_id: branches.credential.id.clone(),
        ..Default::default()
    });
    let (written, _) = write(store, vec![DeviceWrite::Create(router.clone())]).await;
    let snmp = written[0].snmp.as_ref().unwrap();
    assert_eq!(snmp.credential_name, "branches");
    let branches = store
        .get_credential(&Key::Id(id(&branches.credential.id)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(branches.credential.device_count, 1);

    // An update (a new secret) logs the devices using it, for the planner.
    let before = current(store).await;
    let mut rotated = branches.clone();
    rotated.community = Some(vec![9; 40]);
    rotated.credential.name = "branches-2026".into();
    let rotated = store.update_credential(&rotated, "").await.unwrap();
    assert_eq!(rotated.credential.name, "branches-2026");
    assert_eq!(rotated.community, Some(vec![9; 40]));
    let changes = log(store, before).await;
    assert_eq!(
        changes,
        [(before + 1, v1::ChangeKind::Updated, "mestia-01-rtr".into())]
    );
    let logged = store.changes_since(before, 1).await.unwrap().changes;
    let snmp = logged[0].device.as_ref().unwrap().snmp.as_ref().unwrap();
    assert_eq!(snmp.credential_name, "branches-2026");
    let ghost = credential("ghost", None);
    assert!(matches!(
        store.update_credential(&ghost, "").await,
        Err(sqlx::Error::RowNotFound)
    ));

    // Listing: by name, paged, with query text over name and description.
    let first = store.list_credentials(None, &page(2, None)).await.unwrap();
    let names: Vec<_> = first
        .items
        .iter()
        .map(|c| c.credential.name.as_str())
        .collect();
    assert_eq!(names, ["anonymous", "branches-2026"]);
    assert_eq!(first.total, 3);
    let second = store
        .list_credentials(None, &page(2, first.next_after))
        .await
        .unwrap();
    let names: Vec<_> = second
        .items
        .iter()
        .map(|c| c.credential.name.as_str())
        .collect();
    assert_eq!(names, ["core-v3"]);
    assert_eq!(second.next_after, None);
    let found = store
        .list_credentials(Some("CORE-V3 CRED"), &page(10, None))
        .await
        .unwrap();
    assert_eq!(found.total, 1);

    // Still used: refused, under the PostgreSQL constraint name.
    let used = store
        .delete_credential(id(&rotated.credential.id))
        .await
        .unwrap_err();
    assert_eq!(kind(&used), foreign_key("devices_credential_fkey"));
    router.snmp = None;
    write(store, vec![DeviceWrite::Update(router)]).await;
    assert!(
        store
            .delete_credential(id(&rotated.credential.id))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_credential(id(&rotated.credential.id))
            .await
            .unwrap()
    );
    assert_eq!(store.credentials_with_secrets().await.unwrap(), 1);
}

async fn interface_overrides_are_upserted_paged_and_logged(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let sighnaghi = store
        .create_site(&site("sighnaghi-01", "Kakheti"))
        .await
        .unwrap();
    let (written, _) = write(
        store,
        vec![
            DeviceWrite::Create(device("sighnaghi-01-rtr", "10.8.0.1", &sighnaghi)),
            DeviceWrite::Create(device("sighnaghi-01-sw", "10.8.0.2", &sighnaghi)),
        ],
    )
    .await;
    let (router, switch) = (&written[0], &written[1]);
    let value = |device: &v1::Device, if_index: u32, if_name: &str| v1::InterfaceOverride {
        device_id: device.id.clone(),
        if_index,
        if_name: if_name.into(),
        role: v1::InterfaceRole::IspUplink as i32,
        isp_name: "Silknet".into(),
        monitored: None,
        comment: "primary uplink".into(),
        updated_at: None,
    };
    let before = current(store).await;
    let stored = store
        .set_interface_override(&value(router, 2, ""), "")
        .await
        .unwrap();
    assert_eq!(stored.isp_name, "Silknet");
    assert_eq!(stored.monitored, None);
    assert!(stored.updated_at.is_some());
    // The same key again replaces it.
    let mut changed = value(router, 2, "");
    changed.isp_name = "Magti".into();
    changed.monitored = Some(false);
    let replaced = store.set_interface_override(&changed, "").await.unwrap();
    assert_eq!(
        (replaced.isp_name.as_str(), replaced.monitored),
        ("Magti", Some(false))
    );
    store
        .set_interface_override(&value(router, 0, "ge-0/0/1"), "")
        .await
        .unwrap();
    store
        .set_interface_override(&value(switch, 24, ""), "")
        .await
        .unwrap();
    // Each set logs its device, with the overrides it now has.
    let changes = log(store, before).await;
    let devices: Vec<_> = changes.iter().map(|(_, _, name)| name.as_str()).collect();
    assert_eq!(
        devices,
        [
            "sighnaghi-01-rtr",
            "sighnaghi-01-rtr",
            "sighnaghi-01-rtr",
            "sighnaghi-01-sw"
        ]
    );
    let logged = store.changes_since(before + 2, 1).await.unwrap().changes;
    assert_eq!(
        logged[0].device.as_ref().unwrap().interface_overrides.len(),
        2
    );

    let got = store
        .get_device(&Key::Id(id(&router.id)))
        .await
        .unwrap()
        .unwrap();
    let keys: Vec<_> = got
        .interface_overrides
        .iter()
        .map(|o| (o.if_index, o.if_name.as_str()))
        .collect();
    assert_eq!(keys, [(0, "ge-0/0/1"), (2, "")]);

    let of_router = store
        .list_interface_overrides(Some(id(&router.id)), &page(10, None))
        .await
        .unwrap();
    assert_eq!(of_router.total, 2);
    // Paged one at a time across devices, with the same tokens.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let listed = store
            .list_interface_overrides(None, &page(1, after))
            .await
            .unwrap();
        assert_eq!(listed.total, 3);
        seen.extend(
            listed
                .items
                .into_iter()
                .map(|o| (o.device_id, o.if_index, o.if_name)),
        );
        match listed.next_after {
            Some(next) => {
                assert!(next.contains('/'), "{next}");
                after = Some(next);
            }
            None => break,
        }
    }
    let mut expected = vec![
        (router.id.clone(), 0, "ge-0/0/1".to_string()),
        (router.id.clone(), 2, String::new()),
        (switch.id.clone(), 24, String::new()),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    let before = current(store).await;
    assert!(
        store
            .delete_interface_override(id(&router.id), 2, "", "")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_interface_override(id(&router.id), 2, "", "")
            .await
            .unwrap()
    );
    assert_eq!(
        log(store, before).await,
        [(
            before + 1,
            v1::ChangeKind::Updated,
            "sighnaghi-01-rtr".into()
        )]
    );

    // Deleting the device takes its overrides along.
    write(store, vec![DeviceWrite::Delete(id(&switch.id))]).await;
    let left = store
        .list_interface_overrides(None, &page(10, None))
        .await
        .unwrap();
    assert_eq!(left.total, 1);
    // An override of no device is refused.
    let orphan = v1::InterfaceOverride {
        device_id: Uuid::new_v4().to_string(),
        if_index: 1,
        ..Default::default()
    };
    let refused = store.set_interface_override(&orphan, "").await.unwrap_err();
    assert_eq!(
        kind(&refused),
        foreign_key("interface_overrides_device_id_fkey")
    );
}

async fn violations_carry_the_postgresql_constraint_names(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let mut borjomi = site("borjomi-01", "Borjomi");
    borjomi.code = "BJ1".into();
    let borjomi = store.create_site(&borjomi).await.unwrap();
    // Sites: name and (non-empty) code are unique.
    let error = store
        .create_site(&site("borjomi-01", ""))
        .await
        .unwrap_err();
    assert_eq!(kind(&error), unique("sites_name_key"));
    let mut same_code = site("borjomi-02", "");
    same_code.code = "BJ1".into();
    let error = store.create_site(&same_code).await.unwrap_err();
    assert_eq!(kind(&error), unique("sites_code_key"));
    store.create_site(&site("no-code-1", "")).await.unwrap();
    let no_code = store.create_site(&site("no-code-2", "")).await.unwrap();
    let mut renamed = no_code.clone();
    renamed.name = "borjomi-01".into();
    let error = store.update_site(&renamed, "").await.unwrap_err();
    assert_eq!(kind(&error), unique("sites_name_key"));
    // Credentials: the name.
    store
        .create_credential(&credential("shared", None))
        .await
        .unwrap();
    let error = store
        .create_credential(&credential("shared", None))
        .await
        .unwrap_err();
    assert_eq!(kind(&error), unique("credentials_name_key"));

    // Devices: the name, and the address among enabled devices.
    let router = device("borjomi-01-rtr", "10.9.0.1", &borjomi);
    let (_, revision) = write(store, vec![DeviceWrite::Create(router.clone())]).await;
    let refused = |writes: Vec<DeviceWrite>| async move {
        let error = store
            .write_devices(&[], &writes, None, "")
            .await
            .unwrap_err();
        kind(&error)
    };
    // The first device of the batch is fine; the batch is refused whole.
    assert_eq!(
        refused(vec![
            DeviceWrite::Create(device("borjomi-01-sw", "10.9.0.2", &borjomi)),
            DeviceWrite::Create(device("borjomi-01-rtr", "10.9.0.3", &borjomi)),
        ])
        .await,
        unique("devices_name_key")
    );
    assert_eq!(
        refused(vec![DeviceWrite::Create(device(
            "borjomi-01-ap",
            "10.9.0.1",
            &borjomi
        ))])
        .await,
        unique("devices_ip_address_key")
    );
    // A new site in a refused batch is not kept either.
    let error = store
        .write_devices(
            &[site("borjomi-03", "")],
            &[DeviceWrite::Create(device(
                "borjomi-03-rtr",
                "10.9.0.1",
                &borjomi,
            ))],
            None,
            "",
        )
        .await
        .unwrap_err();
    assert_eq!(kind(&error), unique("devices_ip_address_key"));
    assert!(
        store
            .get_site(&Key::Name("borjomi-03".into()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(current(store).await, revision);
    assert!(
        store
            .get_device(&Key::Name("borjomi-01-sw".into()))
            .await
            .unwrap()
            .is_none()
    );
    // A disabled device may share an address.
    let mut spare = device("borjomi-01-rtr-old", "10.9.0.1", &borjomi);
    spare.enabled = Some(false);
    write(store, vec![DeviceWrite::Create(spare)]).await;

    // References: a missing site, credential or parent.
    let ghost_site = site("ghost", "");
    assert_eq!(
        refused(vec![DeviceWrite::Create(device(
            "ghost-1",
            "10.9.1.1",
            &ghost_site
        ))])
        .await,
        foreign_key("devices_site_fkey")
    );
    let mut no_credential = device("ghost-2", "10.9.1.2", &borjomi);
    no_credential.snmp = Some(v1::SnmpSettings {
        credential_id: Uuid::new_v4().to_string(),
        ..Default::default()
    });
    assert_eq!(
        refused(vec![DeviceWrite::Create(no_credential)]).await,
        foreign_key("devices_credential_fkey")
    );
    let mut orphan = device("ghost-3", "10.9.1.3", &borjomi);
    orphan.parent_device_id = Uuid::new_v4().to_string();
    assert_eq!(
        refused(vec![DeviceWrite::Create(orphan)]).await,
        foreign_key("devices_parent_fkey")
    );
    // Still referenced: a site with devices, a parent with children.
    let error = store.delete_site(id(&borjomi.id)).await.unwrap_err();
    assert_eq!(kind(&error), foreign_key("devices_site_fkey"));
    let mut child = device("borjomi-01-sw", "10.9.0.2", &borjomi);
    child.parent_device_id = router.id.clone();
    write(store, vec![DeviceWrite::Create(child.clone())]).await;
    let revision = current(store).await;
    assert_eq!(
        refused(vec![DeviceWrite::Delete(id(&router.id))]).await,
        foreign_key("devices_parent_fkey")
    );
    assert_eq!(current(store).await, revision);
    assert!(
        store
            .get_device(&Key::Id(id(&router.id)))
            .await
            .unwrap()
            .is_some()
    );
    // Parent and child together may go.
    write(
        store,
        vec![
            DeviceWrite::Delete(id(&router.id)),
            DeviceWrite::Delete(id(&child.id)),
        ],
    )
    .await;
}

/// Eight writers at once, and a follower reading the log meanwhile: the
/// follower never finds a gap that a later read fills (revisions are handed
/// out in commit order), and every revision is used once.
async fn concurrent_writers_get_revisions_in_commit_order(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let dmanisi = store
        .create_site(&site("dmanisi-01", "Kvemo Kartli"))
        .await
        .unwrap();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            let dmanisi = dmanisi.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..10 {
                    let name = format!("dmanisi-01-{writer}-{i}");
                    let ip = format!("10.11.{writer}.{i}");
                    let created = device(&name, &ip, &dmanisi);
                    let (_, revision) =
                        write(store.as_ref(), vec![DeviceWrite::Create(created)]).await;
                    revisions.push(revision);
                }
                revisions
            })
        })
        .collect();
    let follow = async {
        let mut last = 0;
        while last < 80 {
            let batch = store.changes_since(last, 1000).await.unwrap();
            for change in batch.changes {
                assert_eq!(change.revision, last + 1, "a gap after revision {last}");
                last = change.revision;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), follow)
        .await
        .expect("the follower read 80 changes within 60 s");
    let mut all = Vec::new();
    for writer in writers {
        let revisions = writer.await.unwrap();
        assert!(revisions.is_sorted(), "{revisions:?}");
        all.extend(revisions);
    }
    all.sort();
    assert_eq!(all, (1..=80).collect::<Vec<u64>>());
}

/// deploy/examples/inventory.csv (854 devices in 128 sites, parents by
/// name) written in one `write_devices`, as an import of it is; prints the
/// time it took.
async fn imports_the_example_inventory(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    let csv = include_str!("../../../../deploy/examples/inventory.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<HashMap<&str, &str>> = lines
        .map(|line| header.iter().copied().zip(line.split(',')).collect())
        .collect();
    let mut sites: HashMap<&str, v1::Site> = HashMap::new();
    let ids: HashMap<&str, String> = rows
        .iter()
        .map(|row| (row["name"], Uuid::new_v4().to_string()))
        .collect();
    let mut writes = Vec::new();
    for row in &rows {
        let site = sites
            .entry(row["site"])
            .or_insert_with(|| site(row["site"], row["region"]));
        let kind = format!("DEVICE_TYPE_{}", row["type"].to_uppercase());
        writes.push(DeviceWrite::Create(v1::Device {
            id: ids[row["name"]].clone(),
            name: row["name"].into(),
            ip_address: row["ip"].into(),
            site_id: site.id.clone(),
            device_type: v1::DeviceType::from_str_name(&kind).unwrap() as i32,
            vendor: row["vendor"].into(),
            model: row["model"].into(),
            parent_device_id: ids.get(row["parent"]).cloned().unwrap_or_default(),
            tags: row["tags"]
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            enabled: Some(row["enabled"] == "true"),
            description: row["description"].into(),
            ..Default::default()
        }));
    }
    let sites: Vec<v1::Site> = sites.into_values().collect();

    let started = Instant::now();
    let (written, revision) = store
        .write_devices(&sites, &writes, None, "")
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "{backend:?}: imported {} devices in {} sites in {elapsed:?}",
        written.len(),
        sites.len()
    );
    assert_eq!(written.len(), 854);
    assert_eq!(revision, 854);
    let (revision, devices) = store.snapshot().await.unwrap();
    assert_eq!((revision, devices.len()), (854, 854));
    let with_parent = devices
        .iter()
        .filter(|d| !d.parent_device_name.is_empty())
        .count();
    let expected = rows.iter().filter(|row| !row["parent"].is_empty()).count();
    assert_eq!(with_parent, expected);
}

async fn audit_events_page_newest_first_with_filters(backend: Backend) {
    let (store, _storage) = open(backend).await;
    let store = store.as_ref();
    for (actor, object) in [("alice", "a"), ("bob", "b"), ("alice", "c"), ("alice", "a")] {
        let caller = Caller {
            name: actor.into(),
            ..Caller::anonymous()
        };
        let detail = serde_json::json!({ "object": object });
        let event = AuditEvent::new(&caller, "inventory", "UpdateSite", "site", object, detail);
        store.record_audit(&event).await.unwrap();
    }
    // Pages of one, alice's only: ids strictly decreasing, the last page says so.
    let mut query = AuditQuery {
        actor: Some("alice".into()),
        size: 1,
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let rows = store.list_audit(&query).await.unwrap();
        let page = netward_shared::audit::response(rows, &query);
        seen.extend(page.events.iter().map(|e| (e.id, e.object_id.clone())));
        if page.next_page_token.is_empty() {
            break;
        }
        query.before_id = Some(page.next_page_token.parse().unwrap());
    }
    let objects: Vec<&str> = seen.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(objects, ["a", "c", "a"]);
    assert!(seen.windows(2).all(|w| w[0].0 > w[1].0), "{seen:?}");
    let by_object = AuditQuery {
        object_id: Some("a".into()),
        size: 10,
        ..AuditQuery::default()
    };
    let rows = store.list_audit(&by_object).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].detail, r#"{"object":"a"}"#);
    let future = AuditQuery {
        since: Some(std::time::SystemTime::now() + std::time::Duration::from_secs(60)),
        size: 10,
        ..AuditQuery::default()
    };
    assert!(store.list_audit(&future).await.unwrap().is_empty());
}

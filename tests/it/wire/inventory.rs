//! InventoryService over the wire: every RPC of `inventory.proto` called
//! by grpcurl on the real binary's inventory target (PostgreSQL, a secret
//! key, `[[auth.tokens]]` with an admin, a viewer and a service token),
//! once as the proto promises and once refused with the code it documents.

use std::time::Duration;

use netward_shared::auth::token_sha256;
use netward_shared::config::Target as ClusterTarget;
use netward_shared::testkit::cluster::Cluster;
use serde_json::Value;

use super::Target;

const ADMIN: &str = "wire-inventory-admin";
const VIEWER: &str = "wire-inventory-viewer";
const SERVICE: &str = "wire-inventory-service";

/// A running inventory with its targets: admin, viewer, service and no token.
struct Stack {
    _cluster: Cluster,
    admin: Target,
    viewer: Target,
    service: Target,
    anonymous: Target,
}

async fn stack() -> Stack {
    let auth = format!(
        "[auth]\npeer_token = \"{SERVICE}\"\n\n\
         [[auth.tokens]]\nname = \"alice\"\nrole = \"admin\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"victor\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"services\"\nrole = \"service\"\nsha256 = \"{}\"\n",
        token_sha256(ADMIN),
        token_sha256(VIEWER),
        token_sha256(SERVICE),
    );
    let cluster = crate::support::cluster()
        .config(ClusterTarget::Inventory, &auth)
        .set("NETWARD_SECRET_KEY", &"cd".repeat(32))
        .client_token(ADMIN)
        .start()
        .await;
    let addr = cluster.inventory.as_ref().unwrap().grpc_addr;
    Stack {
        _cluster: cluster,
        admin: Target::with_token(addr, ADMIN),
        viewer: Target::with_token(addr, VIEWER),
        service: Target::with_token(addr, SERVICE),
        anonymous: Target::new(addr),
    }
}

/// A uint64 as grpcurl prints it (a JSON string).
fn u64_of(value: &Value) -> u64 {
    value
        .as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| value.as_u64())
        .unwrap_or(0)
}

fn assert_uuid(value: &Value) {
    let text = value.as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(text).is_ok(), "not a UUID: {value}");
}

fn assert_names(message: &str, words: &[&str]) {
    for word in words {
        assert!(
            message.to_lowercase().contains(&word.to_lowercase()),
            "the message {message:?} must name {word:?}"
        );
    }
}

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000001";

#[tokio::test]
async fn sites_devices_import_export_and_watch_keep_their_contract() {
    let s = stack().await;
    let admin = &s.admin;

    // CreateSite: server id, `active` defaulted to true, timestamps.
    let site = admin
        .ok(
            "netward.v1.InventoryService/CreateSite",
            r#"{"site":{"name":"tbilisi-01","code":"101","region":"EMEA","latitude":41.7,"longitude":44.8}}"#,
        )
        .await["site"]
        .clone();
    assert_uuid(&site["id"]);
    assert_eq!(site["name"], "tbilisi-01");
    assert_eq!(site["active"], true);
    assert!(site["createdAt"].is_string() && site["updatedAt"].is_string());
    let site_id = site["id"].as_str().unwrap().to_string();
    let message = admin
        .err(
            "netward.v1.InventoryService/CreateSite",
            "InvalidArgument",
            r#"{"site":{"name":"north-pole","latitude":95}}"#,
        )
        .await;
    assert_names(&message, &["latitude"]);
    let message = admin
        .err(
            "netward.v1.InventoryService/CreateSite",
            "AlreadyExists",
            r#"{"site":{"name":"tbilisi-01"}}"#,
        )
        .await;
    assert_names(&message, &["tbilisi-01"]);

    // GetSite by name and by id.
    let got = admin
        .ok(
            "netward.v1.InventoryService/GetSite",
            r#"{"name":"tbilisi-01"}"#,
        )
        .await;
    assert_eq!(got["site"]["id"], site_id.as_str());
    let message = admin
        .err(
            "netward.v1.InventoryService/GetSite",
            "NotFound",
            &format!(r#"{{"id":"{UNKNOWN}"}}"#),
        )
        .await;
    assert_names(&message, &[UNKNOWN]);
    let message = admin
        .err(
            "netward.v1.InventoryService/GetSite",
            "InvalidArgument",
            r#"{"id":"not-a-uuid"}"#,
        )
        .await;
    assert_names(&message, &["id"]);

    // UpdateSite: only the masked field changes.
    let updated = admin
        .ok(
            "netward.v1.InventoryService/UpdateSite",
            &format!(
                r#"{{"site":{{"id":"{site_id}","address":"Rustaveli 1","code":"ignored"}},"updateMask":{{"paths":["address"]}}}}"#
            ),
        )
        .await["site"]
        .clone();
    assert_eq!(updated["address"], "Rustaveli 1");
    assert_eq!(updated["code"], "101");
    let message = admin
        .err(
            "netward.v1.InventoryService/UpdateSite",
            "InvalidArgument",
            &format!(
                r#"{{"site":{{"id":"{site_id}"}},"updateMask":{{"paths":["device_count"]}}}}"#
            ),
        )
        .await;
    assert_names(&message, &["device_count"]);
    admin
        .err(
            "netward.v1.InventoryService/UpdateSite",
            "NotFound",
            &format!(r#"{{"site":{{"id":"{UNKNOWN}","address":"x"}},"updateMask":{{"paths":["address"]}}}}"#),
        )
        .await;

    // A second site, so filters and orders show.
    admin
        .ok(
            "netward.v1.InventoryService/CreateSite",
            r#"{"site":{"name":"austin-01","region":"AMER","active":false}}"#,
        )
        .await;

    // CreateDevice: site echoed, enabled defaulted, a revision.
    let router = admin
        .ok(
            "netward.v1.InventoryService/CreateDevice",
            r#"{"device":{"name":"tbilisi-01-rtr","ipAddress":"127.0.0.10","siteName":"tbilisi-01","deviceType":"DEVICE_TYPE_ROUTER","tags":{"tier":"core"}}}"#,
        )
        .await["device"]
        .clone();
    assert_uuid(&router["id"]);
    assert_eq!(router["siteId"], site_id.as_str());
    assert_eq!(router["siteCode"], "101");
    assert_eq!(router["region"], "EMEA");
    assert_eq!(router["enabled"], true);
    assert_eq!(router["deviceType"], "DEVICE_TYPE_ROUTER");
    assert!(u64_of(&router["revision"]) > 0, "{router}");
    let router_id = router["id"].as_str().unwrap().to_string();
    let switch = admin
        .ok(
            "netward.v1.InventoryService/CreateDevice",
            r#"{"device":{"name":"tbilisi-01-sw","ipAddress":"::1","siteName":"tbilisi-01","parentDeviceName":"tbilisi-01-rtr"}}"#,
        )
        .await["device"]
        .clone();
    assert_eq!(switch["parentDeviceId"], router_id.as_str());
    assert_eq!(switch["parentDeviceName"], "tbilisi-01-rtr");
    assert_eq!(switch["deviceType"], "DEVICE_TYPE_OTHER");
    let switch_id = switch["id"].as_str().unwrap().to_string();
    let message = admin
        .err(
            "netward.v1.InventoryService/CreateDevice",
            "InvalidArgument",
            r#"{"device":{"name":"bad-ip","ipAddress":"999.1.1.1","siteName":"tbilisi-01"}}"#,
        )
        .await;
    assert_names(&message, &["ip_address"]);
    let message = admin
        .err(
            "netward.v1.InventoryService/CreateDevice",
            "AlreadyExists",
            r#"{"device":{"name":"same-ip","ipAddress":"127.0.0.10","siteName":"tbilisi-01"}}"#,
        )
        .await;
    assert_names(&message, &["127.0.0.10"]);

    // GetDevice by id and by name.
    let got = admin
        .ok(
            "netward.v1.InventoryService/GetDevice",
            &format!(r#"{{"id":"{switch_id}"}}"#),
        )
        .await;
    assert_eq!(got["device"]["ipAddress"], "::1");
    let message = admin
        .err(
            "netward.v1.InventoryService/GetDevice",
            "NotFound",
            r#"{"name":"no-such-device"}"#,
        )
        .await;
    assert_names(&message, &["no-such-device"]);

    // UpdateDevice: optimistic concurrency on `revision`; a parent cycle is
    // FAILED_PRECONDITION (it depends on the stored tree, not on the request).
    let revision = u64_of(&router["revision"]);
    let updated = admin
        .ok(
            "netward.v1.InventoryService/UpdateDevice",
            &format!(
                r#"{{"device":{{"id":"{router_id}","vendor":"Cisco"}},"updateMask":{{"paths":["vendor"]}},"expectedRevision":"{revision}"}}"#
            ),
        )
        .await["device"]
        .clone();
    assert_eq!(updated["vendor"], "Cisco");
    assert_eq!(updated["tags"]["tier"], "core", "unmasked fields stay");
    assert!(u64_of(&updated["revision"]) > revision);
    admin
        .err(
            "netward.v1.InventoryService/UpdateDevice",
            "Aborted",
            &format!(
                r#"{{"device":{{"id":"{router_id}","vendor":"Juniper"}},"updateMask":{{"paths":["vendor"]}},"expectedRevision":"{revision}"}}"#
            ),
        )
        .await;
    let message = admin
        .err(
            "netward.v1.InventoryService/UpdateDevice",
            "FailedPrecondition",
            &format!(
                r#"{{"device":{{"id":"{router_id}","parentDeviceId":"{switch_id}"}},"updateMask":{{"paths":["parent_device_id"]}}}}"#
            ),
        )
        .await;
    assert_names(&message, &["cycle"]);

    // ListDevices: filtered, ordered by name, counted.
    let list = admin
        .ok(
            "netward.v1.InventoryService/ListDevices",
            r#"{"filter":{"region":"EMEA"},"pageSize":1}"#,
        )
        .await;
    assert_eq!(list["devices"][0]["name"], "tbilisi-01-rtr");
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
    assert_eq!(u64_of(&list["totalCount"]), 2);
    let next = list["nextPageToken"].as_str().unwrap();
    let page = admin
        .ok(
            "netward.v1.InventoryService/ListDevices",
            &format!(r#"{{"filter":{{"region":"EMEA"}},"pageSize":1,"pageToken":"{next}"}}"#),
        )
        .await;
    assert_eq!(page["devices"][0]["name"], "tbilisi-01-sw");
    let message = admin
        .err(
            "netward.v1.InventoryService/ListDevices",
            "InvalidArgument",
            r#"{"filter":{"siteId":"not-a-uuid"}}"#,
        )
        .await;
    assert_names(&message, &["site_id"]);

    // ListSites: filtered, ordered by name, device counts.
    let sites = admin
        .ok("netward.v1.InventoryService/ListSites", r#"{}"#)
        .await;
    assert_eq!(sites["sites"][0]["name"], "austin-01");
    assert_eq!(sites["sites"][1]["deviceCount"], 2);
    assert_eq!(u64_of(&sites["totalCount"]), 2);
    let active = admin
        .ok(
            "netward.v1.InventoryService/ListSites",
            r#"{"active":true}"#,
        )
        .await;
    assert_eq!(u64_of(&active["totalCount"]), 1);
    admin
        .err(
            "netward.v1.InventoryService/ListSites",
            "InvalidArgument",
            r#"{"pageToken":"garbage!"}"#,
        )
        .await;

    // ListRegions: ordered by name, with counts; a read needs a token.
    let regions = s
        .viewer
        .ok("netward.v1.InventoryService/ListRegions", r#"{}"#)
        .await;
    assert_eq!(regions["regions"][0]["name"], "AMER");
    assert_eq!(regions["regions"][0]["siteCount"], 1);
    assert!(regions["regions"][0].get("activeSiteCount").is_none());
    assert_eq!(regions["regions"][1]["name"], "EMEA");
    assert_eq!(regions["regions"][1]["deviceCount"], 2);
    assert_eq!(regions["regions"][1]["enabledDeviceCount"], 2);
    s.anonymous
        .err(
            "netward.v1.InventoryService/ListRegions",
            "Unauthenticated",
            r#"{}"#,
        )
        .await;

    // ImportDevices: options first, then rows; an unknown site is created.
    let import = concat!(
        r#"{"options":{"sourceName":"wire.csv"}}"#,
        "\n",
        r#"{"rows":{"rows":[{"line":2,"name":"batumi-01-rtr","ip":"127.0.0.20","site":"batumi-01","region":"EMEA","deviceType":"router"},"#,
        r#"{"line":3,"name":"batumi-01-bad","ip":"not-an-ip","site":"batumi-01"}]}}"#,
    );
    let summary = admin
        .stream_ok(
            "netward.v1.InventoryService/ImportDevices",
            import,
            Duration::from_secs(20),
        )
        .await;
    let summary = &summary[0];
    assert_eq!(u64_of(&summary["totalRows"]), 2, "{summary}");
    assert_eq!(u64_of(&summary["created"]), 1);
    assert_eq!(u64_of(&summary["failed"]), 1);
    assert_eq!(u64_of(&summary["sitesCreated"]), 1);
    assert_eq!(summary["applied"], true);
    assert_eq!(summary["errors"][0]["line"], 3);
    assert_eq!(summary["errors"][0]["field"], "ip");
    assert_eq!(summary["errors"][0]["name"], "batumi-01-bad");
    let message = admin
        .stream_err(
            "netward.v1.InventoryService/ImportDevices",
            "InvalidArgument",
            r#"{"rows":{"rows":[{"line":2,"name":"x","ip":"127.0.0.30","site":"batumi-01"}]}}"#,
        )
        .await;
    assert_names(&message, &["options"]);

    // ExportDevices: chunks ordered by name, one revision, the total in each.
    let chunks = admin
        .stream_ok(
            "netward.v1.InventoryService/ExportDevices",
            r#"{"chunkSize":2}"#,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    let names: Vec<&str> = chunks
        .iter()
        .flat_map(|chunk| chunk["devices"].as_array().unwrap())
        .map(|device| device["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batumi-01-rtr", "tbilisi-01-rtr", "tbilisi-01-sw"]);
    for chunk in &chunks {
        assert_eq!(u64_of(&chunk["totalCount"]), 3);
        assert_eq!(chunk["revision"], chunks[0]["revision"]);
    }
    // (A chunk_size above the maximum is capped, not refused.)
    let message = admin
        .stream_err(
            "netward.v1.InventoryService/ExportDevices",
            "InvalidArgument",
            r#"{"filter":{"siteId":"not-a-uuid"}}"#,
        )
        .await;
    assert_names(&message, &["site_id"]);

    // WatchDevices: a snapshot in chunks (begin, chunks, end), endless after.
    let events = admin
        .stream_ok(
            "netward.v1.InventoryService/WatchDevices",
            r#"{"chunkSize":2}"#,
            Duration::from_secs(2),
        )
        .await;
    let begin = &events[0]["snapshotBegin"];
    assert_eq!(begin["reason"], "SNAPSHOT_REASON_INITIAL", "{events:?}");
    assert_eq!(u64_of(&begin["deviceCount"]), 3);
    assert_eq!(
        events[1]["snapshotChunk"]["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        events[2]["snapshotChunk"]["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(events[3]["snapshotEnd"]["revision"], begin["revision"]);
    // A resume point newer than the current revision: a fresh snapshot.
    let current = u64_of(&begin["revision"]);
    let events = admin
        .stream_ok(
            "netward.v1.InventoryService/WatchDevices",
            &format!(r#"{{"fromRevision":"{}"}}"#, current + 1000),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(
        events[0]["snapshotBegin"]["reason"], "SNAPSHOT_REASON_REVISION_TOO_OLD",
        "{events:?}"
    );
    s.anonymous
        .stream_err(
            "netward.v1.InventoryService/WatchDevices",
            "Unauthenticated",
            r#"{}"#,
        )
        .await;

    // DeleteDevice: refused while a child names it as parent.
    let message = admin
        .err(
            "netward.v1.InventoryService/DeleteDevice",
            "FailedPrecondition",
            &format!(r#"{{"id":"{router_id}"}}"#),
        )
        .await;
    assert_names(&message, &["parent"]);
    admin
        .ok(
            "netward.v1.InventoryService/DeleteDevice",
            &format!(r#"{{"id":"{switch_id}"}}"#),
        )
        .await;
    admin
        .err(
            "netward.v1.InventoryService/DeleteDevice",
            "NotFound",
            &format!(r#"{{"id":"{switch_id}"}}"#),
        )
        .await;

    // DeleteSite: refused while devices belong to it.
    let message = admin
        .err(
            "netward.v1.InventoryService/DeleteSite",
            "FailedPrecondition",
            &format!(r#"{{"id":"{site_id}"}}"#),
        )
        .await;
    assert_names(&message, &["device"]);
    admin
        .ok(
            "netward.v1.InventoryService/DeleteDevice",
            &format!(r#"{{"id":"{router_id}"}}"#),
        )
        .await;
    admin
        .ok(
            "netward.v1.InventoryService/DeleteSite",
            &format!(r#"{{"id":"{site_id}"}}"#),
        )
        .await;
    admin
        .err(
            "netward.v1.InventoryService/GetSite",
            "NotFound",
            r#"{"name":"tbilisi-01"}"#,
        )
        .await;
}

#[tokio::test]
async fn credentials_overrides_and_audit_keep_their_contract() {
    let s = stack().await;
    let admin = &s.admin;

    // CreateCredential: secrets only as "set" flags.
    let credential = admin
        .ok(
            "netward.v1.InventoryService/CreateCredential",
            r#"{"name":"branch-v2c","version":"SNMP_VERSION_V2C","community":"wire-s3cret-community"}"#,
        )
        .await;
    let text = credential.to_string();
    assert!(!text.contains("wire-s3cret-community"), "{text}");
    let credential = credential["credential"].clone();
    assert_uuid(&credential["id"]);
    assert_eq!(credential["communitySet"], true);
    assert_eq!(credential["version"], "SNMP_VERSION_V2C");
    let credential_id = credential["id"].as_str().unwrap().to_string();
    let message = admin
        .err(
            "netward.v1.InventoryService/CreateCredential",
            "InvalidArgument",
            r#"{"name":"v3-without-user","version":"SNMP_VERSION_V3"}"#,
        )
        .await;
    assert_names(&message, &["username"]);
    admin
        .err(
            "netward.v1.InventoryService/CreateCredential",
            "AlreadyExists",
            r#"{"name":"branch-v2c","version":"SNMP_VERSION_V2C","community":"other"}"#,
        )
        .await;

    // GetCredential by name.
    let got = admin
        .ok(
            "netward.v1.InventoryService/GetCredential",
            r#"{"name":"branch-v2c"}"#,
        )
        .await;
    assert_eq!(got["credential"]["id"], credential_id.as_str());
    assert!(!got.to_string().contains("wire-s3cret-community"));
    let message = admin
        .err(
            "netward.v1.InventoryService/GetCredential",
            "NotFound",
            r#"{"name":"no-such-credential"}"#,
        )
        .await;
    assert_names(&message, &["no-such-credential"]);

    // A site and an SNMP device using the credential.
    admin
        .ok(
            "netward.v1.InventoryService/CreateSite",
            r#"{"site":{"name":"kutaisi-01","region":"EMEA"}}"#,
        )
        .await;
    let device = admin
        .ok(
            "netward.v1.InventoryService/CreateDevice",
            r#"{"device":{"name":"kutaisi-01-rtr","ipAddress":"127.0.0.40","siteName":"kutaisi-01","snmp":{"enabled":true,"credentialName":"branch-v2c"}}}"#,
        )
        .await["device"]
        .clone();
    assert_eq!(device["snmp"]["credentialId"], credential_id.as_str());
    assert_eq!(device["snmp"]["version"], "SNMP_VERSION_V2C");
    let device_id = device["id"].as_str().unwrap().to_string();

    // UpdateCredential: only the fields set change.
    let updated = admin
        .ok(
            "netward.v1.InventoryService/UpdateCredential",
            &format!(r#"{{"id":"{credential_id}","description":"branches"}}"#),
        )
        .await["credential"]
        .clone();
    assert_eq!(updated["description"], "branches");
    assert_eq!(updated["communitySet"], true);
    assert_eq!(updated["deviceCount"], 1);
    let message = admin
        .err(
            "netward.v1.InventoryService/UpdateCredential",
            "InvalidArgument",
            r#"{"id":"not-a-uuid","description":"x"}"#,
        )
        .await;
    assert_names(&message, &["id"]);
    admin
        .err(
            "netward.v1.InventoryService/UpdateCredential",
            "NotFound",
            &format!(r#"{{"id":"{UNKNOWN}","description":"x"}}"#),
        )
        .await;

    // ListCredentials: no secrets, filtered by query; a read needs a token.
    let list = s
        .viewer
        .ok(
            "netward.v1.InventoryService/ListCredentials",
            r#"{"query":"BRANCH"}"#,
        )
        .await;
    assert_eq!(list["credentials"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("wire-s3cret-community"));
    s.anonymous
        .err(
            "netward.v1.InventoryService/ListCredentials",
            "Unauthenticated",
            r#"{}"#,
        )
        .await;

    // ResolveCredential: the secret, for the service token only.
    let resolved = s
        .service
        .ok(
            "netward.v1.InventoryService/ResolveCredential",
            &format!(r#"{{"id":"{credential_id}"}}"#),
        )
        .await;
    assert_eq!(resolved["credential"]["community"], "wire-s3cret-community");
    s.viewer
        .err(
            "netward.v1.InventoryService/ResolveCredential",
            "PermissionDenied",
            &format!(r#"{{"id":"{credential_id}"}}"#),
        )
        .await;
    s.anonymous
        .err(
            "netward.v1.InventoryService/ResolveCredential",
            "Unauthenticated",
            &format!(r#"{{"id":"{credential_id}"}}"#),
        )
        .await;
    s.service
        .err(
            "netward.v1.InventoryService/ResolveCredential",
            "NotFound",
            r#"{"name":"no-such-credential"}"#,
        )
        .await;

    // SetInterfaceOverride: stored and echoed, bumps the device's revision.
    let stored = admin
        .ok(
            "netward.v1.InventoryService/SetInterfaceOverride",
            &format!(
                r#"{{"interfaceOverride":{{"deviceId":"{device_id}","ifIndex":3,"role":"INTERFACE_ROLE_ISP_UPLINK","ispName":"Magti","monitored":true}}}}"#
            ),
        )
        .await["interfaceOverride"]
        .clone();
    assert_eq!(stored["ispName"], "Magti");
    assert_eq!(stored["role"], "INTERFACE_ROLE_ISP_UPLINK");
    assert!(stored["updatedAt"].is_string());
    let after = admin
        .ok(
            "netward.v1.InventoryService/GetDevice",
            &format!(r#"{{"id":"{device_id}"}}"#),
        )
        .await["device"]
        .clone();
    assert!(u64_of(&after["revision"]) > u64_of(&device["revision"]));
    assert_eq!(after["interfaceOverrides"][0]["ifIndex"], 3);
    let message = admin
        .err(
            "netward.v1.InventoryService/SetInterfaceOverride",
            "NotFound",
            &format!(r#"{{"interfaceOverride":{{"deviceId":"{UNKNOWN}","ifIndex":3}}}}"#),
        )
        .await;
    assert_names(&message, &[UNKNOWN]);
    admin
        .err(
            "netward.v1.InventoryService/SetInterfaceOverride",
            "InvalidArgument",
            r#"{"interfaceOverride":{"ifIndex":3}}"#,
        )
        .await;

    // ListInterfaceOverrides of the device.
    let overrides = admin
        .ok(
            "netward.v1.InventoryService/ListInterfaceOverrides",
            &format!(r#"{{"deviceId":"{device_id}"}}"#),
        )
        .await;
    assert_eq!(
        overrides["interfaceOverrides"][0]["deviceId"],
        device_id.as_str()
    );
    assert_eq!(overrides["interfaceOverrides"].as_array().unwrap().len(), 1);
    let message = admin
        .err(
            "netward.v1.InventoryService/ListInterfaceOverrides",
            "InvalidArgument",
            r#"{"deviceId":"not-a-uuid"}"#,
        )
        .await;
    assert_names(&message, &["device_id"]);

    // DeleteInterfaceOverride, then it is gone.
    admin
        .ok(
            "netward.v1.InventoryService/DeleteInterfaceOverride",
            &format!(r#"{{"deviceId":"{device_id}","ifIndex":3}}"#),
        )
        .await;
    admin
        .err(
            "netward.v1.InventoryService/DeleteInterfaceOverride",
            "NotFound",
            &format!(r#"{{"deviceId":"{device_id}","ifIndex":3}}"#),
        )
        .await;

    // DeleteCredential: refused while a device uses it.
    let message = admin
        .err(
            "netward.v1.InventoryService/DeleteCredential",
            "FailedPrecondition",
            &format!(r#"{{"id":"{credential_id}"}}"#),
        )
        .await;
    assert_names(&message, &["device"]);
    admin
        .ok(
            "netward.v1.InventoryService/DeleteDevice",
            &format!(r#"{{"id":"{device_id}"}}"#),
        )
        .await;
    admin
        .ok(
            "netward.v1.InventoryService/DeleteCredential",
            &format!(r#"{{"id":"{credential_id}"}}"#),
        )
        .await;

    // ListAuditEvents: newest first, with actor, role, action, no secret.
    let audit = s
        .viewer
        .ok("netward.v1.InventoryService/ListAuditEvents", r#"{}"#)
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events[0]["action"], "DeleteCredential", "{audit}");
    assert_eq!(events[0]["actor"], "alice");
    assert_eq!(events[0]["actorRole"], "admin");
    assert_eq!(events[0]["service"], "inventory");
    assert_eq!(events[0]["objectKind"], "credential");
    assert_eq!(events[0]["objectId"], credential_id.as_str());
    assert!(!audit.to_string().contains("wire-s3cret-community"));
    let ids: Vec<u64> = events.iter().map(|e| u64_of(&e["id"])).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    s.anonymous
        .err(
            "netward.v1.InventoryService/ListAuditEvents",
            "Unauthenticated",
            r#"{}"#,
        )
        .await;
}

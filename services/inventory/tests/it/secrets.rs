//! Stored communities and v3 keys never leave the inventory: not in a
//! response (but ResolveCredential's), not in an error, not in a log line.

use netward_shared::config::Target;
use netward_shared::proto::v1;

use netward_inventory::SqliteStore;

use crate::support::{
    Backend, Storage, TestInventory, captured_logs, create, device, on_both_backends, site,
};

on_both_backends!(
    secrets_never_appear_in_responses_errors_or_logs,
    refuses_to_start_with_stored_secrets_and_no_key,
);

const COMMUNITY: &str = "s3cret-community-5d1f";
const AUTH_KEY: &str = "s3cret-authkey-8a2c";
const PRIV_KEY: &str = "s3cret-privkey-3e9b";

fn assert_clean(what: &str, text: &str) {
    for secret in [COMMUNITY, AUTH_KEY, PRIV_KEY] {
        assert!(!text.contains(secret), "{what} contains a secret:\n{text}");
    }
}

async fn secrets_never_appear_in_responses_errors_or_logs(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    let v2 = c
        .create_credential(v1::CreateCredentialRequest {
            name: "leak-v2".into(),
            version: v1::SnmpVersion::V2c as i32,
            community: COMMUNITY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_clean("CreateCredential (v2c)", &format!("{v2:?}"));
    let v3 = c
        .create_credential(v1::CreateCredentialRequest {
            name: "leak-v3".into(),
            version: v1::SnmpVersion::V3 as i32,
            username: "ops".into(),
            auth_protocol: v1::SnmpAuthProtocol::Sha1 as i32,
            auth_key: AUTH_KEY.into(),
            priv_protocol: v1::SnmpPrivProtocol::Des as i32,
            priv_key: PRIV_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_clean("CreateCredential (v3)", &format!("{v3:?}"));
    let v3 = v3.credential.unwrap();

    // Requests that fail must not echo the secret they carried.
    let errors = [
        c.create_credential(v1::CreateCredentialRequest {
            name: "leak-v2".into(), // duplicate name
            version: v1::SnmpVersion::V2c as i32,
            community: COMMUNITY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.create_credential(v1::CreateCredentialRequest {
            name: "mixed".into(),
            version: v1::SnmpVersion::V3 as i32,
            username: "ops".into(),
            community: COMMUNITY.into(), // v3 has no community
            auth_protocol: v1::SnmpAuthProtocol::None as i32,
            auth_key: AUTH_KEY.into(), // key without a protocol
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.update_credential(v1::UpdateCredentialRequest {
            id: v3.id.clone(),
            priv_key: Some(format!("{PRIV_KEY}{}", "x".repeat(300))), // too long
            ..Default::default()
        })
        .await
        .unwrap_err(),
    ];
    for status in &errors {
        assert_clean("an error status", &format!("{status:?}"));
    }

    // Every read of credentials and devices that use them.
    site(&mut c, "rustavi-01", "Rustavi").await;
    let mut router = device("rustavi-rtr", "127.7.0.1", "rustavi-01");
    router.snmp = Some(v1::SnmpSettings {
        enabled: true,
        credential_name: "leak-v3".into(),
        ..Default::default()
    });
    let router = create(&mut c, router).await.unwrap();
    assert_clean("CreateDevice", &format!("{router:?}"));
    let reads = [
        format!(
            "{:?}",
            c.get_credential(v1::GetCredentialRequest {
                key: Some(v1::get_credential_request::Key::Id(v3.id.clone())),
            })
            .await
            .unwrap()
        ),
        format!(
            "{:?}",
            c.list_credentials(v1::ListCredentialsRequest::default())
                .await
                .unwrap()
        ),
        format!(
            "{:?}",
            c.update_credential(v1::UpdateCredentialRequest {
                id: v3.id.clone(),
                auth_key: Some(format!("{AUTH_KEY}-2")),
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        format!(
            "{:?}",
            c.list_devices(v1::ListDevicesRequest::default())
                .await
                .unwrap()
        ),
    ];
    for read in &reads {
        assert_clean("a read", read);
    }
    let mut export = c
        .export_devices(v1::ExportDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = export.message().await.unwrap() {
        assert_clean("ExportDevices", &format!("{chunk:?}"));
    }
    let mut watch = c
        .watch_devices(v1::WatchDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        let event = watch.message().await.unwrap().unwrap();
        assert_clean("WatchDevices", &format!("{event:?}"));
    }

    // The one way out, for the planner: ResolveCredential.
    let resolved = c
        .resolve_credential(v1::ResolveCredentialRequest {
            key: Some(v1::resolve_credential_request::Key::Name("leak-v2".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(resolved.community, COMMUNITY);

    // At rest, the database holds ciphertexts only.
    let stored: Vec<Option<Vec<u8>>> = match inv.storage() {
        Storage::Postgres(database) => sqlx::query_scalar(
            "SELECT community FROM inventory.credentials UNION ALL SELECT auth_key FROM inventory.credentials \
             UNION ALL SELECT priv_key FROM inventory.credentials",
        )
        .fetch_all(database.pool())
        .await
        .unwrap(),
        Storage::Sqlite(_) => {
            let store = SqliteStore::connect(&inv.storage().url(Target::Inventory)).await.unwrap();
            sqlx::query_scalar(
                "SELECT community FROM credentials UNION ALL SELECT auth_key FROM credentials \
                 UNION ALL SELECT priv_key FROM credentials",
            )
            .fetch_all(store.pool())
            .await
            .unwrap()
        }
    };
    assert_eq!(stored.iter().flatten().count(), 3, "the stored secrets");
    for bytes in stored.into_iter().flatten() {
        assert_clean("a stored column", &String::from_utf8_lossy(&bytes));
    }

    inv.stop().await;
    assert_clean("the log", &captured_logs());
    assert!(
        captured_logs().contains("serving"),
        "the log capture caught nothing"
    );
}

async fn refuses_to_start_with_stored_secrets_and_no_key(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    c.create_credential(v1::CreateCredentialRequest {
        name: "needs-key".into(),
        version: v1::SnmpVersion::V1 as i32,
        community: COMMUNITY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = inv
        .cluster
        .try_start_another(Target::Inventory, &[("NETWARD_SECRET_KEY", "")])
        .await
        .err()
        .expect("no key: the inventory refuses to start");
    assert!(refused.contains("NETWARD_SECRET_KEY"), "{refused}");
    // And with the wrong key the secrets do not decrypt: a clear error, no garbage.
    let wrong = inv
        .cluster
        .try_start_another(
            Target::Inventory,
            &[("NETWARD_SECRET_KEY", &"ab".repeat(32))],
        )
        .await
        .unwrap();
    let mut other =
        netward_shared::proto::v1::inventory_service_client::InventoryServiceClient::new(
            netward_shared::client::connect(&wrong.url(), &Default::default()).unwrap(),
        );
    let status = other
        .resolve_credential(v1::ResolveCredentialRequest {
            key: Some(v1::resolve_credential_request::Key::Name(
                "needs-key".into(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("does not decrypt"), "{status:?}");
    assert!(wrong.stop().await.clean());
    inv.stop().await;
}

//! Every InventoryService RPC, and its error cases with their exact codes.

use netward_shared::proto::v1;
use prost_types::FieldMask;
use tonic::Code;

use crate::support::{Backend, TestInventory, create, device, on_both_backends, site, violations};

on_both_backends!(
    sites_create_get_update_list_regions_delete,
    devices_are_validated_with_precise_errors,
    device_update_get_list_delete_and_parent_rules,
    credentials_and_interface_overrides,
);

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn sites_create_get_update_list_regions_delete(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    let tbilisi = site(&mut c, "tbilisi-01", "Tbilisi").await;
    site(&mut c, "tbilisi-02", "Tbilisi").await;
    let batumi = site(&mut c, "batumi-01", "Batumi").await;
    assert_eq!(tbilisi.active, Some(true));

    let by_name = c
        .get_site(v1::GetSiteRequest {
            key: Some(v1::get_site_request::Key::Name("batumi-01".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .site
        .unwrap();
    assert_eq!(by_name.id, batumi.id);

    let duplicate = c
        .create_site(v1::CreateSiteRequest {
            site: Some(v1::Site {
                name: "batumi-01".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists, "{duplicate:?}");

    let bad = c
        .create_site(v1::CreateSiteRequest {
            site: Some(v1::Site {
                name: String::new(),
                latitude: Some(91.0),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&bad).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["site.name", "site.latitude"]);

    let updated = c
        .update_site(v1::UpdateSiteRequest {
            site: Some(v1::Site {
                id: batumi.id.clone(),
                address: "Rustaveli Ave 1".into(),
                region: "ignored: not in the mask".into(),
                ..Default::default()
            }),
            update_mask: mask(&["address"]),
        })
        .await
        .unwrap()
        .into_inner()
        .site
        .unwrap();
    assert_eq!(updated.address, "Rustaveli Ave 1");
    assert_eq!(updated.region, "Batumi");
    let output_only = c
        .update_site(v1::UpdateSiteRequest {
            site: Some(v1::Site {
                id: batumi.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["device_count"]),
        })
        .await
        .unwrap_err();
    assert_eq!(output_only.code(), Code::InvalidArgument);

    let page1 = c
        .list_sites(v1::ListSitesRequest {
            region: "Tbilisi".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.total_count, 2);
    assert_eq!(page1.sites[0].name, "tbilisi-01");
    let page2 = c
        .list_sites(v1::ListSitesRequest {
            region: "Tbilisi".into(),
            page_size: 1,
            page_token: page1.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.sites[0].name, "tbilisi-02");
    assert!(page2.next_page_token.is_empty());
    let bad_token = c
        .list_sites(v1::ListSitesRequest {
            page_token: "zz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);

    create(&mut c, device("tbilisi-01-rtr", "127.1.0.1", "tbilisi-01"))
        .await
        .unwrap();
    let regions = c
        .list_regions(v1::ListRegionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .regions;
    let summary: Vec<(&str, u32, u32)> = regions
        .iter()
        .map(|r| (r.name.as_str(), r.site_count, r.device_count))
        .collect();
    assert_eq!(summary, [("Batumi", 1, 0), ("Tbilisi", 2, 1)]);

    let in_use = c
        .delete_site(v1::DeleteSiteRequest {
            id: tbilisi.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition, "{in_use:?}");
    c.delete_site(v1::DeleteSiteRequest {
        id: batumi.id.clone(),
    })
    .await
    .unwrap();
    let gone = c
        .delete_site(v1::DeleteSiteRequest {
            id: batumi.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    inv.stop().await;
}

async fn devices_are_validated_with_precise_errors(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    site(&mut c, "kutaisi-01", "Kutaisi").await;
    let router = create(&mut c, device("kutaisi-01-rtr", "127.2.0.1", "kutaisi-01"))
        .await
        .unwrap();
    assert_eq!(router.site_code, "");
    assert_eq!(router.region, "Kutaisi");
    assert_eq!(router.enabled, Some(true));
    assert!(router.revision > 0);

    // Bad IP, unknown enum value, out-of-range port: INVALID_ARGUMENT naming each field.
    let mut bad = device("bad", "10.0.0.300", "kutaisi-01");
    bad.device_type = 42;
    bad.snmp = Some(v1::SnmpSettings {
        port: 70_000,
        ..Default::default()
    });
    let status = create(&mut c, bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "device.ip_address",
            "device.device_type",
            "device.snmp.port"
        ]
    );
    assert!(
        status.message().contains("10.0.0.300"),
        "{}",
        status.message()
    );

    // Unknown site and unknown parent.
    let status = create(&mut c, device("x", "127.2.0.9", "nowhere"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "device.site_name");
    let mut orphan = device("y", "127.2.0.10", "kutaisi-01");
    orphan.parent_device_name = "no-such-router".into();
    let status = create(&mut c, orphan).await.unwrap_err();
    assert_eq!(violations(&status)[0].0, "device.parent_device_name");

    // Duplicate name, duplicate address among enabled devices.
    let status = create(&mut c, device("kutaisi-01-rtr", "127.2.0.2", "kutaisi-01"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("device.name"),
        "{}",
        status.message()
    );
    let status = create(&mut c, device("other", "127.2.0.1", "kutaisi-01"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("127.2.0.1"),
        "{}",
        status.message()
    );
    // A disabled device may share it.
    let mut spare = device("spare", "127.2.0.1", "kutaisi-01");
    spare.enabled = Some(false);
    create(&mut c, spare).await.unwrap();

    // IPv6 is normalized.
    let v6 = create(&mut c, device("v6", "0:0:0:0:0:0:0:1", "kutaisi-01"))
        .await
        .unwrap();
    assert_eq!(v6.ip_address, "::1");
    inv.stop().await;
}

async fn device_update_get_list_delete_and_parent_rules(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    site(&mut c, "gori-01", "Gori").await;
    let router = create(&mut c, device("gori-01-rtr", "127.3.0.1", "gori-01"))
        .await
        .unwrap();
    let mut sw = device("gori-01-sw", "127.3.0.2", "gori-01");
    sw.parent_device_name = "gori-01-rtr".into();
    sw.device_type = v1::DeviceType::Switch as i32;
    sw.tags.insert("criticality".into(), "high".into());
    let sw = create(&mut c, sw).await.unwrap();
    assert_eq!(sw.parent_device_id, router.id);
    let mut atm = device("gori-01-atm", "127.3.0.3", "gori-01");
    atm.parent_device_id = sw.id.clone();
    atm.device_type = v1::DeviceType::Atm as i32;
    let atm = create(&mut c, atm).await.unwrap();

    // Get by id and by name.
    let got = c
        .get_device(v1::GetDeviceRequest {
            key: Some(v1::get_device_request::Key::Name("gori-01-atm".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert_eq!(got.id, atm.id);
    assert_eq!(got.parent_device_name, "gori-01-sw");
    let missing = c
        .get_device(v1::GetDeviceRequest {
            key: Some(v1::get_device_request::Key::Id(
                uuid::Uuid::new_v4().to_string(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // A parent cycle is refused: the router may not hang below the ATM.
    let cycle = c
        .update_device(v1::UpdateDeviceRequest {
            device: Some(v1::Device {
                id: router.id.clone(),
                parent_device_id: atm.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["parent_device_id"]),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(cycle.code(), Code::FailedPrecondition, "{cycle:?}");
    assert!(cycle.message().contains("cycle"), "{}", cycle.message());
    let own = c
        .update_device(v1::UpdateDeviceRequest {
            device: Some(v1::Device {
                id: router.id.clone(),
                parent_device_id: router.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["parent_device_id"]),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::InvalidArgument);

    // A masked update changes only what it names; a stale revision is ABORTED.
    let updated = c
        .update_device(v1::UpdateDeviceRequest {
            device: Some(v1::Device {
                id: atm.id.clone(),
                vendor: "NCR".into(),
                name: "ignored".into(),
                ..Default::default()
            }),
            update_mask: mask(&["vendor"]),
            expected_revision: atm.revision,
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert_eq!(
        (updated.vendor.as_str(), updated.name.as_str()),
        ("NCR", "gori-01-atm")
    );
    assert!(updated.revision > atm.revision);
    let stale = c
        .update_device(v1::UpdateDeviceRequest {
            device: Some(v1::Device {
                id: atm.id.clone(),
                model: "SelfServ 22".into(),
                ..Default::default()
            }),
            update_mask: mask(&["model"]),
            expected_revision: atm.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // List with filters and pages.
    let listed = c
        .list_devices(v1::ListDevicesRequest {
            filter: Some(v1::DeviceFilter {
                site_name: "gori-01".into(),
                tags: [("criticality".to_string(), "high".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["gori-01-sw"]
    );
    let by_type = c
        .list_devices(v1::ListDevicesRequest {
            filter: Some(v1::DeviceFilter {
                device_type: v1::DeviceType::Atm as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_type.total_count, 1);
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_devices(v1::ListDevicesRequest {
                filter: Some(v1::DeviceFilter {
                    query: "GORI-01".into(),
                    ..Default::default()
                }),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_count, 3);
        names.extend(page.devices.into_iter().map(|d| d.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["gori-01-atm", "gori-01-rtr", "gori-01-sw"]);

    // Export streams everything.
    let mut export = c
        .export_devices(v1::ExportDevicesRequest {
            filter: None,
            chunk_size: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let mut exported = 0;
    while let Some(chunk) = export.message().await.unwrap() {
        assert!(chunk.devices.len() <= 2);
        exported += chunk.devices.len();
    }
    assert_eq!(exported, 3);

    // A parent with children cannot go; a leaf can.
    let busy = c
        .delete_device(v1::DeleteDeviceRequest { id: sw.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    c.delete_device(v1::DeleteDeviceRequest { id: atm.id.clone() })
        .await
        .unwrap();
    let again = c
        .delete_device(v1::DeleteDeviceRequest { id: atm.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    inv.stop().await;
}

async fn credentials_and_interface_overrides(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    let v2 = c
        .create_credential(v1::CreateCredentialRequest {
            name: "branch-v2".into(),
            version: v1::SnmpVersion::V2c as i32,
            community: "c0mmunity-x".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert!(v2.community_set && !v2.auth_key_set);
    let v3 = c
        .create_credential(v1::CreateCredentialRequest {
            name: "core-v3".into(),
            version: v1::SnmpVersion::V3 as i32,
            username: "netward".into(),
            auth_protocol: v1::SnmpAuthProtocol::Sha256 as i32,
            auth_key: "auth-key-123".into(),
            priv_protocol: v1::SnmpPrivProtocol::Aes128 as i32,
            priv_key: "priv-key-456".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert!(v3.auth_key_set && v3.priv_key_set && !v3.community_set);

    // Privacy without authentication, a short key, a missing community.
    let bad = c
        .create_credential(v1::CreateCredentialRequest {
            name: "bad".into(),
            version: v1::SnmpVersion::V3 as i32,
            username: "u".into(),
            auth_protocol: v1::SnmpAuthProtocol::None as i32,
            priv_protocol: v1::SnmpPrivProtocol::Des as i32,
            priv_key: "short".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&bad).into_iter().map(|(f, _)| f).collect();
    assert!(
        fields.contains(&"priv_protocol".to_string()) && fields.contains(&"priv_key".to_string()),
        "{fields:?}"
    );
    let no_community = c
        .create_credential(v1::CreateCredentialRequest {
            name: "empty".into(),
            version: v1::SnmpVersion::V2c as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&no_community)[0].0, "community");

    // Get, list, update.
    let got = c
        .get_credential(v1::GetCredentialRequest {
            key: Some(v1::get_credential_request::Key::Name("core-v3".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(got.id, v3.id);
    let listed = c
        .list_credentials(v1::ListCredentialsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .credentials;
    assert_eq!(listed.len(), 2);
    let renamed = c
        .update_credential(v1::UpdateCredentialRequest {
            id: v2.id.clone(),
            description: Some("branch routers".into()),
            community: Some("new-c0mmunity".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(renamed.description, "branch routers");
    let resolved = c
        .resolve_credential(v1::ResolveCredentialRequest {
            key: Some(v1::resolve_credential_request::Key::Id(v2.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(resolved.community, "new-c0mmunity");
    let resolved = c
        .resolve_credential(v1::ResolveCredentialRequest {
            key: Some(v1::resolve_credential_request::Key::Name("core-v3".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(
        (resolved.auth_key.as_str(), resolved.priv_key.as_str()),
        ("auth-key-123", "priv-key-456")
    );

    // A device using it; the versions must agree.
    site(&mut c, "poti-01", "Poti").await;
    let mut router = device("poti-01-rtr", "127.4.0.1", "poti-01");
    router.snmp = Some(v1::SnmpSettings {
        enabled: true,
        version: v1::SnmpVersion::V2c as i32,
        credential_name: "core-v3".into(),
        ..Default::default()
    });
    let mismatch = create(&mut c, router.clone()).await.unwrap_err();
    assert_eq!(violations(&mismatch)[0].0, "device.snmp.version");
    router.snmp.as_mut().unwrap().credential_name = "branch-v2".into();
    let router = create(&mut c, router).await.unwrap();
    let snmp = router.snmp.clone().unwrap();
    assert_eq!(
        (snmp.credential_id.as_str(), snmp.profile.as_str()),
        (v2.id.as_str(), "auto")
    );
    let in_use = c
        .delete_credential(v1::DeleteCredentialRequest { id: v2.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    c.delete_credential(v1::DeleteCredentialRequest { id: v3.id.clone() })
        .await
        .unwrap();

    // Interface overrides: set, list (also on the device), delete.
    let set = c
        .set_interface_override(v1::SetInterfaceOverrideRequest {
            interface_override: Some(v1::InterfaceOverride {
                device_id: router.id.clone(),
                if_name: "Gi0/0".into(),
                role: v1::InterfaceRole::IspUplink as i32,
                isp_name: "Magti".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .interface_override
        .unwrap();
    assert_eq!(set.isp_name, "Magti");
    let both = c
        .set_interface_override(v1::SetInterfaceOverrideRequest {
            interface_override: Some(v1::InterfaceOverride {
                device_id: router.id.clone(),
                if_index: 3,
                if_name: "Gi0/1".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    let listed = c
        .list_interface_overrides(v1::ListInterfaceOverridesRequest {
            device_id: router.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .interface_overrides;
    assert_eq!(listed.len(), 1);
    let with_override = c
        .get_device(v1::GetDeviceRequest {
            key: Some(v1::get_device_request::Key::Id(router.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert_eq!(with_override.interface_overrides.len(), 1);
    c.delete_interface_override(v1::DeleteInterfaceOverrideRequest {
        device_id: router.id.clone(),
        if_index: 0,
        if_name: "Gi0/0".into(),
    })
    .await
    .unwrap();
    let gone = c
        .delete_interface_override(v1::DeleteInterfaceOverrideRequest {
            device_id: router.id.clone(),
            if_index: 0,
            if_name: "Gi0/0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    inv.stop().await;
}

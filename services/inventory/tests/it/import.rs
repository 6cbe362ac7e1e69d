//! Importing 1,000 rows of which 100 are bad in ten different ways: the good
//! rows land, each bad row is reported by line with its reason, nothing of a
//! bad row is written; atomic imports write nothing at all; dry runs nothing.

use std::collections::BTreeMap;

use netward_shared::proto::v1;
use netward_shared::proto::v1::import_devices_request::Item;

use crate::support::{Backend, Client, TestInventory, on_both_backends};

on_both_backends!(
    good_rows_land_and_bad_rows_are_named_by_line,
    parents_within_the_file_and_their_failures,
);

fn row(line: u32, name: &str, ip: &str, site: &str, parent: &str) -> v1::ImportRow {
    v1::ImportRow {
        line,
        name: name.into(),
        ip: ip.into(),
        site: site.into(),
        region: "Tbilisi".into(),
        device_type: if parent.is_empty() { "router" } else { "atm" }.into(),
        parent: parent.into(),
        tags: "env=lab".into(),
        ..Default::default()
    }
}

/// 1,000 rows (lines 2..=1001): 10 sites of a router and 89 devices, with
/// 100 rows broken — the expected (line → field) of each broken row.
fn rows() -> (Vec<v1::ImportRow>, BTreeMap<u32, &'static str>) {
    let mut rows = Vec::new();
    let mut bad = BTreeMap::new();
    for i in 0..1000u32 {
        let line = i + 2;
        let site = format!("site-{:02}", i / 100);
        let k = i % 100;
        let router = format!("{site}-rtr");
        let mut r = if k == 0 {
            row(line, &router, &format!("127.10.{}.1", i / 100), &site, "")
        } else {
            row(
                line,
                &format!("{site}-dev{k:02}"),
                &format!("127.10.{}.{}", i / 100, k + 1),
                &site,
                &router,
            )
        };
        // Ten kinds of damage, ten rows each, never on a router row.
        if k % 10 == 5 {
            let field = match (i / 10) % 10 {
                0 => {
                    r.ip = "10.0.0.300".into();
                    "ip"
                }
                1 => {
                    r.device_type = "toaster".into();
                    "type"
                }
                2 => {
                    r.parent = "no-such-router".into();
                    "parent"
                }
                3 => {
                    r.enabled = "maybe".into();
                    "enabled"
                }
                4 => {
                    r.tags = "env".into();
                    "tags"
                }
                5 => {
                    r.snmp_version = "4".into();
                    "snmp_version"
                }
                6 => {
                    r.name = String::new();
                    "name"
                }
                7 => {
                    r.ip = "127.10.0.1".into();
                    "ip"
                } // the address of site-00's router
                8 => {
                    r.snmp_version = "2c".into();
                    r.snmp_credential = "nope".into();
                    "snmp_credential"
                }
                _ => {
                    r.vendor = "v".repeat(65);
                    "vendor"
                }
            };
            bad.insert(line, field);
        }
        rows.push(r);
    }
    (rows, bad)
}

async fn import(
    client: &mut Client,
    rows: Vec<v1::ImportRow>,
    dry_run: bool,
    atomic: bool,
) -> v1::ImportDevicesResponse {
    let mut messages = vec![v1::ImportDevicesRequest {
        item: Some(Item::Options(v1::ImportOptions {
            dry_run,
            atomic,
            source_name: "test.csv".into(),
        })),
    }];
    for chunk in rows.chunks(300) {
        messages.push(v1::ImportDevicesRequest {
            item: Some(Item::Rows(v1::ImportRows {
                rows: chunk.to_vec(),
            })),
        });
    }
    client
        .import_devices(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
}

async fn device_count(client: &mut Client) -> u64 {
    client
        .list_devices(v1::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .total_count
}

async fn good_rows_land_and_bad_rows_are_named_by_line(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    let (rows, bad) = rows();

    // Dry run: the same report, nothing written.
    let dry = import(&mut c, rows.clone(), true, false).await;
    assert_eq!((dry.created, dry.failed, dry.applied), (900, 100, false));
    assert_eq!(device_count(&mut c).await, 0);

    // Atomic: nothing at all is written.
    let atomic = import(&mut c, rows.clone(), false, true).await;
    assert_eq!((atomic.failed, atomic.applied), (100, false));
    assert_eq!(device_count(&mut c).await, 0);
    let sites = c
        .list_sites(v1::ListSitesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sites.total_count, 0,
        "an atomic import with errors created sites"
    );

    let report = import(&mut c, rows.clone(), false, false).await;
    assert_eq!(report.total_rows, 1000);
    assert_eq!(
        (
            report.created,
            report.updated,
            report.unchanged,
            report.failed
        ),
        (900, 0, 0, 100)
    );
    assert_eq!(report.sites_created, 10);
    assert!(report.applied);
    let reported: BTreeMap<u32, String> = report
        .errors
        .iter()
        .map(|e| (e.line, e.field.clone()))
        .collect();
    let expected: BTreeMap<u32, String> = bad.iter().map(|(l, f)| (*l, f.to_string())).collect();
    assert_eq!(reported, expected);
    for error in &report.errors {
        assert!(!error.reason.is_empty(), "{error:?}");
    }
    let clash = report
        .errors
        .iter()
        .find(|e| e.value == "127.10.0.1")
        .unwrap();
    assert!(clash.reason.contains("site-00-rtr"), "{clash:?}");
    assert_eq!(device_count(&mut c).await, 900);

    // Nothing partial of a bad row: none of their names exists.
    for line in bad.keys() {
        let name = &rows[(*line - 2) as usize].name;
        if name.is_empty() {
            continue;
        }
        let got = c
            .get_device(v1::GetDeviceRequest {
                key: Some(v1::get_device_request::Key::Name(name.clone())),
            })
            .await;
        assert_eq!(
            got.unwrap_err().code(),
            tonic::Code::NotFound,
            "line {line}: {name}"
        );
    }

    // The same file again: the good rows are unchanged, nothing is rewritten.
    let again = import(&mut c, rows, false, false).await;
    assert_eq!(
        (again.created, again.updated, again.unchanged, again.failed),
        (0, 0, 900, 100)
    );
    inv.stop().await;
}

async fn parents_within_the_file_and_their_failures(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    let rows = vec![
        // The child comes before its parent: order in the file does not matter.
        row(2, "a-sw", "127.11.0.2", "site-a", "a-rtr"),
        row(3, "a-rtr", "127.11.0.1", "site-a", ""),
        // The parent row is bad, so its child fails too, saying why.
        row(4, "b-rtr", "bad-ip", "site-b", ""),
        row(5, "b-sw", "127.11.1.2", "site-b", "b-rtr"),
        // A cycle within the file.
        row(6, "c-1", "127.11.2.1", "site-c", "c-2"),
        row(7, "c-2", "127.11.2.2", "site-c", "c-1"),
        // A duplicate name.
        row(8, "a-sw", "127.11.0.9", "site-a", ""),
    ];
    let report = import(&mut c, rows, false, false).await;
    assert_eq!(
        (report.created, report.failed),
        (2, 5),
        "{:?}",
        report.errors
    );
    let by_line: BTreeMap<u32, (&str, &str)> = report
        .errors
        .iter()
        .map(|e| (e.line, (e.field.as_str(), e.reason.as_str())))
        .collect();
    assert_eq!(by_line[&4].0, "ip");
    assert_eq!(by_line[&5], ("parent", "parent row (line 4) was refused"));
    assert_eq!(by_line[&6], ("parent", "parent cycle"));
    assert_eq!(by_line[&7], ("parent", "parent cycle"));
    assert!(
        by_line[&8]
            .1
            .contains("duplicate name in file (first at line 2)")
    );
    let sw = c
        .get_device(v1::GetDeviceRequest {
            key: Some(v1::get_device_request::Key::Name("a-sw".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    assert_eq!(sw.parent_device_name, "a-rtr");
    // Unknown site "site-b" was not created: its only rows failed.
    let sites: Vec<String> = c
        .list_sites(v1::ListSitesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sites
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(sites, ["site-a"]);
    inv.stop().await;
}

//! Availability reports end to end: inventory and alerting as a cluster of
//! processes of the real binary on PostgreSQL, devices of two regions,
//! several sites and types made DOWN and UP by results sent on Ingest, a
//! maintenance window over part of one outage; then `GetAvailabilityReport`
//! against `GetAvailability` of each device, `netward availability` as CSV,
//! JSON and a table, a region-scoped token, and bad requests. (The exact
//! figures at chosen instants, on both backends, are in the alerting
//! crate's `tests/it/availability.rs`.)

use std::collections::HashMap;
use std::time::Duration;

use netward_shared::auth::token_sha256;
use netward_shared::client::{ClientOptions, PeerChannel, connect};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::secret::Secret;
use netward_shared::testkit::eventually;
use tokio::process::Command;
use tonic::Code;

use crate::alerting::Ingest;
use crate::support::NETWARD;

/// The admin token is named `test` in the config: Ingest's sender calls
/// itself `test`.
const ADMIN: &str = "t-admin-availability";
const EMEA: &str = "t-emea-availability";
const SERVICES: &str = "t-services-availability";

/// (name, site, region, type).
const DEVICES: [(&str, &str, &str, &str); 6] = [
    ("t-rtr", "tbilisi", "EMEA", "router"),
    ("t-atm", "tbilisi", "EMEA", "atm"),
    ("b-sw", "batumi", "EMEA", "switch"),
    ("k-rtr", "tokyo", "APAC", "router"),
    ("k-cam", "tokyo", "APAC", "camera"),
    ("o-ap", "osaka", "APAC", "access_point"),
];

fn client(url: &str, token: &str) -> AlertingServiceClient<PeerChannel> {
    let options = ClientOptions {
        token: Some(Secret::new(token.to_string())),
        ..ClientOptions::default()
    };
    AlertingServiceClient::new(connect(url, &options).unwrap())
}

/// `netward availability ARGS` with `token`: (success, stdout, stderr).
async fn netward_availability(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(NETWARD)
        .arg("availability")
        .args(["--alerting-url", url])
        .args(args)
        .env("NETWARD_TOKEN", token)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn secs(d: Option<prost_types::Duration>) -> f64 {
    d.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

fn nanos(d: Option<prost_types::Duration>) -> i128 {
    d.map_or(0, |d| {
        i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos)
    })
}

/// The additive figures: durations in nanoseconds, then counts.
fn additive(f: &v1::AvailabilityFigures) -> [i128; 10] {
    [
        nanos(f.monitored_time),
        nanos(f.downtime),
        nanos(f.unreachable_time),
        nanos(f.maintenance_time),
        nanos(f.unknown_time),
        nanos(f.unmonitored_time),
        nanos(f.recovery_time),
        i128::from(f.incidents),
        i128::from(f.recoveries),
        i128::from(f.device_count),
    ]
}

fn summed<'a>(rows: impl IntoIterator<Item = &'a v1::AvailabilityReportRow>) -> [i128; 10] {
    let mut sums = [0; 10];
    for row in rows {
        for (s, v) in sums.iter_mut().zip(additive(row.figures.as_ref().unwrap())) {
            *s += v;
        }
    }
    sums
}

#[tokio::test]
async fn reports_sum_their_devices_and_the_cli_writes_them_as_csv_json_and_a_table() {
    let config = format!(
        "[auth]\npeer_token = \"{SERVICES}\"\n\n\
         [[auth.tokens]]\nname = \"test\"\nrole = \"admin\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"emea-noc\"\nrole = \"viewer\"\nsha256 = \"{}\"\nregions = [\"EMEA\"]\n\n\
         [[auth.tokens]]\nname = \"services\"\nrole = \"service\"\nsha256 = \"{}\"\n",
        token_sha256(ADMIN),
        token_sha256(EMEA),
        token_sha256(SERVICES),
    );
    // The fleet, imported with the admin token.
    let rows = DEVICES
        .iter()
        .enumerate()
        .map(|(i, (name, site, region, kind))| v1::ImportRow {
            line: i as u32 + 2,
            name: name.to_string(),
            ip: format!("127.44.0.{}", i + 1),
            site: site.to_string(),
            region: region.to_string(),
            device_type: kind.to_string(),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let cluster = crate::support::cluster()
        .alerting()
        .config_all(&config)
        .client_token(ADMIN)
        .devices(rows)
        .start()
        .await;
    let imported = cluster.imported.as_ref().unwrap();
    assert_eq!(imported.created, 6, "{imported:?}");
    let ids = &cluster.ids;
    let url = cluster.alerting_url();
    let mut admin = cluster.alerting_client();
    eventually(
        "alerting follows the inventory",
        Duration::from_secs(20),
        || {
            let mut admin = admin.clone();
            async move {
                let report = admin
                    .get_availability_report(v1::GetAvailabilityReportRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                (report.totals?.device_count == 6).then_some(())
            }
        },
    )
    .await;

    // UP; then t-rtr, k-cam and o-ap silent (DOWN); a maintenance window
    // over k-cam for part of its outage; t-rtr and k-cam answer again (UP
    // at the second answer), o-ap stays down.
    let all: Vec<String> = DEVICES.iter().map(|d| ids[d.0].clone()).collect();
    let mut ingest = Ingest::over(admin.clone()).await;
    ingest.all(1, &all, true).await;
    ingest.all(2, &all, true).await;
    let failing = ["t-rtr", "k-cam", "o-ap"];
    let cycle = |answered: &dyn Fn(&str) -> bool| -> Vec<(String, bool)> {
        DEVICES
            .iter()
            .map(|d| (ids[d.0].clone(), answered(d.0)))
            .collect()
    };
    let down = cycle(&|name| !failing.contains(&name));
    let refs: Vec<(&str, bool)> = down.iter().map(|(id, ok)| (id.as_str(), *ok)).collect();
    ingest.results(3, &refs).await;
    // The scenario's time: k-cam is down a while before its window opens,
    // and the window lasts a while (neither waits for anything).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let window = admin
        .create_silence(v1::CreateSilenceRequest {
            silence: Some(v1::Silence {
                matchers: vec![v1::Scope {
                    kind: v1::ScopeKind::Device as i32,
                    value: "k-cam".into(),
                }],
                ends_at: Some(prost_types::Timestamp::from(
                    std::time::SystemTime::now() + Duration::from_secs(3600),
                )),
                maintenance: true,
                created_by: "noc".into(),
                comment: "camera firmware".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    admin
        .delete_silence(v1::DeleteSilenceRequest { id: window.id })
        .await
        .unwrap();
    let up = cycle(&|name| name != "o-ap");
    let refs: Vec<(&str, bool)> = up.iter().map(|(id, ok)| (id.as_str(), *ok)).collect();
    ingest.results(4, &refs).await;
    ingest.results(5, &refs).await;

    // One period for every call: the last hour, to now.
    let end = prost_types::Timestamp::from(std::time::SystemTime::now());
    let start = prost_types::Timestamp {
        seconds: end.seconds - 3600,
        nanos: end.nanos,
    };
    let request = |group_by: v1::AvailabilityGrouping| v1::GetAvailabilityReportRequest {
        start_time: Some(start),
        end_time: Some(end),
        group_by: group_by as i32,
        top: 100,
        ..Default::default()
    };
    let mut reports = HashMap::new();
    for grouping in [
        v1::AvailabilityGrouping::Region,
        v1::AvailabilityGrouping::Site,
        v1::AvailabilityGrouping::DeviceType,
        v1::AvailabilityGrouping::Device,
    ] {
        let report = admin
            .get_availability_report(request(grouping))
            .await
            .unwrap()
            .into_inner();
        reports.insert(grouping, report);
    }
    let by_device = &reports[&v1::AvailabilityGrouping::Device];
    let totals = by_device.totals.unwrap();

    // Each device's row is GetAvailability of the device; the totals are
    // their sum, and every grouping has the same totals.
    for row in &by_device.rows {
        let one = admin
            .get_availability(v1::GetAvailabilityRequest {
                target: Some(v1::get_availability_request::Target::DeviceId(
                    row.key.clone(),
                )),
                start_time: Some(start),
                end_time: Some(end),
            })
            .await
            .unwrap()
            .into_inner();
        let f = row.figures.unwrap();
        assert_eq!(
            (
                nanos(f.downtime),
                nanos(f.unreachable_time),
                nanos(f.maintenance_time),
                nanos(f.unknown_time),
                nanos(f.unmonitored_time),
                f.incidents,
                f.mttr,
                f.longest_outage,
                f.uptime_percent,
            ),
            (
                nanos(one.downtime),
                nanos(one.unreachable_time),
                nanos(one.maintenance_time),
                nanos(one.unknown_time),
                nanos(one.unmonitored_time),
                one.incidents,
                one.mttr,
                one.longest_outage,
                one.uptime_percent,
            ),
            "{}",
            row.name
        );
    }
    assert_eq!(summed(&by_device.rows), additive(&totals));
    assert_eq!(totals.device_count, 6);
    assert_eq!((totals.incidents, totals.recoveries), (3, 2), "{totals:?}");
    for (grouping, report) in &reports {
        assert_eq!(
            additive(report.totals.as_ref().unwrap()),
            additive(&totals),
            "{grouping:?}"
        );
        assert_eq!(summed(&report.rows), additive(&totals), "{grouping:?}");
    }
    // A region's row sums its sites' rows.
    let sites = &reports[&v1::AvailabilityGrouping::Site].rows;
    let regions = &reports[&v1::AvailabilityGrouping::Region].rows;
    assert_eq!(
        regions.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["APAC", "EMEA"]
    );
    for region in regions {
        let of_region = sites.iter().filter(|s| s.region == region.name);
        assert_eq!(
            summed(of_region),
            additive(region.figures.as_ref().unwrap())
        );
    }
    // Maintenance: k-cam's window is left out of its downtime, and is the
    // only maintenance in the report.
    let camera = by_device.rows.iter().find(|r| r.name == "k-cam").unwrap();
    let camera = camera.figures.unwrap();
    assert!(nanos(camera.maintenance_time) > 0, "{camera:?}");
    assert_eq!(
        nanos(totals.maintenance_time),
        nanos(camera.maintenance_time)
    );
    assert!(
        nanos(camera.downtime) < nanos(camera.longest_outage),
        "{camera:?}"
    );
    // Problem devices: o-ap is still down (longest), all three listed.
    let top: Vec<&str> = by_device
        .top_devices
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(top.len(), 3, "{top:?}");
    assert_eq!(top[0], "o-ap");

    // The CLI: CSV and JSON of the same report carry the same rows.
    let period = [
        "--from".to_string(),
        start.to_string(),
        "--to".to_string(),
        end.to_string(),
    ];
    let period: Vec<&str> = period.iter().map(String::as_str).collect();
    let args = |extra: &[&'static str]| -> Vec<&str> {
        let mut args = period.clone();
        args.extend(["--by", "site", "--top", "5"]);
        args.extend(extra);
        args
    };
    let (ok, json, stderr) = netward_availability(&url, ADMIN, &args(&["--json"])).await;
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let (ok, csv_text, stderr) = netward_availability(&url, ADMIN, &args(&["--csv"])).await;
    assert!(ok, "{stderr}");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "kind",
            "key",
            "name",
            "region",
            "site",
            "device_type",
            "devices",
            "uptime_percent",
            "monitored_seconds",
            "downtime_seconds",
            "unreachable_seconds",
            "maintenance_seconds",
            "unknown_seconds",
            "unmonitored_seconds",
            "incidents",
            "recoveries",
            "recovery_seconds",
            "mttr_seconds",
            "longest_outage_seconds",
        ]
    );
    let records: Vec<HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect();
    let mut from_json: Vec<&serde_json::Value> = json["rows"].as_array().unwrap().iter().collect();
    from_json.push(&json["totals"]);
    from_json.extend(json["top_devices"].as_array().unwrap());
    assert_eq!(records.len(), from_json.len());
    assert_eq!(records.len(), 4 + 1 + 3);
    for (record, object) in records.iter().zip(&from_json) {
        for column in &header {
            let value = &object[column];
            let cell = &record[column];
            match value {
                serde_json::Value::String(text) => assert_eq!(cell, text, "{column}"),
                serde_json::Value::Number(number) => {
                    // serde_json reads floats to within an ulp, not exactly.
                    let (cell, number): (f64, f64) =
                        (cell.parse().unwrap(), number.as_f64().unwrap());
                    assert!(
                        (cell - number).abs() <= 1e-12 * number.abs().max(1.0),
                        "{column}: {cell} vs {number}"
                    );
                }
                other => panic!("{column}: {other:?}"),
            }
        }
    }
    assert_eq!(json["group_by"], "site");
    assert_eq!(json["start_time"], start.to_string());
    let sites_of = |kind: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| r["name"].as_str())
            .collect()
    };
    assert_eq!(sites_of("site"), ["batumi", "osaka", "tbilisi", "tokyo"]);
    assert_eq!(sites_of("top")[0], "o-ap");
    // The JSON's totals are the RPC's, in seconds.
    let json_totals = &json["totals"];
    assert_eq!(json_totals["devices"], 6);
    assert_eq!(json_totals["incidents"], 3);
    for (field, value) in [
        ("downtime_seconds", totals.downtime),
        ("maintenance_seconds", totals.maintenance_time),
        ("monitored_seconds", totals.monitored_time),
    ] {
        let got = json_totals[field].as_f64().unwrap();
        assert!(
            (got - secs(value)).abs() < 1e-3,
            "{field}: {got} vs {value:?}"
        );
    }

    // A table by default, with relative times.
    let (ok, table, stderr) =
        netward_availability(&url, ADMIN, &["--from", "2h", "--by", "type"]).await;
    assert!(ok, "{stderr}");
    assert!(table.starts_with("availability "), "{table}");
    assert!(
        table.contains("TYPE") && table.contains("UPTIME"),
        "{table}"
    );
    for name in ["access_point", "atm", "camera", "router", "switch", "TOTAL"] {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }
    assert!(table.contains("top problem devices"), "{table}");

    // A token of EMEA sees EMEA only; APAC and its sites do not exist for it.
    let mut emea = client(&url, EMEA);
    let scoped = emea
        .get_availability_report(request(v1::AvailabilityGrouping::Site))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = scoped.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["batumi", "tbilisi"]);
    assert_eq!(scoped.totals.unwrap().device_count, 3);
    assert!(scoped.top_devices.iter().all(|r| r.region == "EMEA"));
    let (ok, _, stderr) = netward_availability(&url, EMEA, &["--region", "APAC", "--json"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("NOT_FOUND")
            && stderr.contains(
                "region \"APAC\" has no devices in the inventory within this token's scope"
            ),
        "{stderr}"
    );
    let status = emea
        .get_availability_report(v1::GetAvailabilityReportRequest {
            site: "tokyo".into(),
            ..request(v1::AvailabilityGrouping::Device)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Bad requests: precise codes and messages.
    let later = prost_types::Timestamp {
        seconds: start.seconds - 60,
        ..start
    };
    let cases = [
        (
            v1::GetAvailabilityReportRequest {
                end_time: Some(later),
                ..request(v1::AvailabilityGrouping::Region)
            },
            Code::InvalidArgument,
            "start_time",
            "must be before end_time",
        ),
        (
            v1::GetAvailabilityReportRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: end.seconds - 401 * 86_400,
                    nanos: 0,
                }),
                ..request(v1::AvailabilityGrouping::Region)
            },
            Code::InvalidArgument,
            "end_time",
            "at most 400 days after start_time",
        ),
        (
            v1::GetAvailabilityReportRequest {
                site: "atlantis".into(),
                ..request(v1::AvailabilityGrouping::Region)
            },
            Code::NotFound,
            "site \"atlantis\"",
            "has no devices in the inventory",
        ),
        (
            v1::GetAvailabilityReportRequest {
                group_by: 99,
                ..request(v1::AvailabilityGrouping::Region)
            },
            Code::InvalidArgument,
            "group_by",
            "not an AvailabilityGrouping",
        ),
    ];
    for (request, code, field, reason) in cases {
        let status = admin.get_availability_report(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(field) && status.message().contains(reason),
            "{status:?}"
        );
    }
    let (ok, _, stderr) = netward_availability(&url, ADMIN, &["--by", "country"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("invalid value 'country' for '--by <GROUPING>'")
            && stderr.contains("[possible values: region, site, type, device]"),
        "{stderr}"
    );
    let (ok, _, stderr) = netward_availability(&url, ADMIN, &["--from", "1h", "--to", "2h"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("GetAvailabilityReport at")
            && stderr.contains("INVALID_ARGUMENT")
            && stderr.contains("must be before end_time"),
        "{stderr}"
    );
    let (ok, _, stderr) = netward_availability(&url, ADMIN, &["--type", "toaster"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("unknown device type \"toaster\""),
        "{stderr}"
    );
}

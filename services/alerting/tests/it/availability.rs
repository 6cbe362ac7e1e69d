//! Availability reports through the domain, at instants the test chooses:
//! the evaluator makes devices of two regions DOWN, UNREACHABLE and UP from
//! results at set minutes, a maintenance window (a silence made through the
//! service) covers part of one outage, and the report's rows and totals are
//! checked against `GetAvailability` of each device — on PostgreSQL and on
//! SQLite. Then the request's checks, the caller's scope, and (ignored by
//! default, run by hand) the time a report of 10,000 devices over 30 days
//! takes on PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use netward_alerting::alerts::AlertEngine;
use netward_alerting::backlog::Backlog;
use netward_alerting::evaluate::Evaluator;
use netward_alerting::ingest::Ingestor;
use netward_alerting::notify::{Notifier, NotifyConfig};
use netward_alerting::service::{Alerting, Error};
use netward_alerting::snmp::book::SnmpBook;
use netward_alerting::snmp::classify::{Classifier, InterfacesConfig};
use netward_alerting::snmp::rates::RateConfig;
use netward_alerting::state::{StateConfig, StateMachine};
use netward_alerting::store::{ChangeRow, PgStore, ProbeRow, StateRow, Stores};
use netward_shared::auth::Scope;
use netward_shared::inventory_copy::{InventoryCopy, SharedCopy};
use netward_shared::proto::v1;
use netward_shared::testkit::TestDatabase;
use uuid::Uuid;

use crate::stores::Backend;

/// Each case, as a test on PostgreSQL and one on SQLite.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::postgres().await;
                    super::$case(super::Fleet::drive(&backend.stores).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::sqlite().await;
                    super::$case(super::Fleet::drive(&backend.stores).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    totals_are_the_sum_of_each_devices_get_availability,
    maintenance_is_left_out_of_the_outage_it_covers,
    filters_scope_and_bad_requests_are_answered_precisely,
);

/// (name, region, site, type, parent name).
const DEVICES: [(&str, &str, &str, v1::DeviceType, &str); 8] = [
    ("t-rtr", "EMEA", "tbilisi", v1::DeviceType::Router, ""),
    ("t-sw", "EMEA", "tbilisi", v1::DeviceType::Switch, "t-rtr"),
    ("t-atm", "EMEA", "tbilisi", v1::DeviceType::Atm, ""),
    ("b-rtr", "EMEA", "batumi", v1::DeviceType::Router, ""),
    ("b-ap", "EMEA", "batumi", v1::DeviceType::AccessPoint, ""),
    ("k-rtr", "APAC", "tokyo", v1::DeviceType::Router, ""),
    ("k-cam", "APAC", "tokyo", v1::DeviceType::Camera, ""),
    ("o-rtr", "APAC", "osaka", v1::DeviceType::Router, ""),
];

/// Whether `device` is silent at `minute`: t-rtr's outage makes t-sw
/// UNREACHABLE; o-rtr is still down when the period ends.
fn silent(device: &str, minute: i64) -> bool {
    match device {
        "t-rtr" | "t-sw" => (30..=40).contains(&minute),
        "b-ap" => minute == 50,
        "k-cam" => (20..=60).contains(&minute),
        "o-rtr" => minute >= 100,
        _ => false,
    }
}

/// The maintenance window over k-cam, within its outage [20, 80).
const WINDOW: (i64, i64) = (40, 70);
/// The period reported on, in minutes from `t0`; results every 10 minutes.
const PERIOD: (i64, i64) = (15, 150);

/// The domain on a fleet that has been driven through the timeline.
struct Fleet {
    alerting: Alerting,
    ids: HashMap<&'static str, Uuid>,
    site_ids: HashMap<&'static str, String>,
    t0: DateTime<Utc>,
}

impl Fleet {
    /// Wires the domain as `run` does, then plays the timeline: each
    /// minute, the windows open then are applied, then the results. The
    /// timeline lies ahead of the clock so that the window, created now
    /// through the service, is not yet over (the service forgets windows
    /// that are).
    async fn drive(stores: &Stores) -> Fleet {
        let t0 = (Utc::now() + TimeDelta::days(2))
            .duration_trunc(TimeDelta::hours(1))
            .unwrap();
        let ids: HashMap<&'static str, Uuid> =
            DEVICES.iter().map(|d| (d.0, Uuid::new_v4())).collect();
        let site_ids: HashMap<&'static str, String> = DEVICES
            .iter()
            .map(|d| (d.2, format!("site-{}", d.2)))
            .collect();
        let devices = DEVICES.iter().map(|(name, region, site, kind, parent)| {
            let parent_id = if parent.is_empty() {
                String::new()
            } else {
                ids[parent].to_string()
            };
            v1::Device {
                id: ids[name].to_string(),
                name: name.to_string(),
                site_id: site_ids[site].clone(),
                site_name: site.to_string(),
                site_code: site.to_uppercase(),
                region: region.to_string(),
                device_type: *kind as i32,
                parent_device_id: parent_id,
                ..Default::default()
            }
        });
        let copy: SharedCopy = Default::default();
        *copy.write().unwrap() = InventoryCopy::of(devices, 1);
        let (alerting, evaluator, alerts) = wire(stores, copy.clone()).await;

        let window = alerting
            .create_silence(
                Some(v1::Silence {
                    matchers: vec![v1::Scope {
                        kind: v1::ScopeKind::Device as i32,
                        value: "k-cam".into(),
                    }],
                    starts_at: Some(ts(t0 + TimeDelta::minutes(WINDOW.0))),
                    ends_at: Some(ts(t0 + TimeDelta::minutes(WINDOW.1))),
                    maintenance: true,
                    created_by: "noc".into(),
                    comment: "camera firmware".into(),
                    ..Default::default()
                }),
                &Scope::default(),
            )
            .await
            .unwrap();
        assert!(window.maintenance && !window.active, "{window:?}");

        for minute in (0..=PERIOD.1).step_by(10) {
            let at = t0 + TimeDelta::minutes(minute);
            let in_maintenance = {
                let copy = copy.read().unwrap();
                alerts.silences().in_maintenance(&copy, at)
            };
            evaluator
                .apply_maintenance(&in_maintenance, at.into())
                .await
                .unwrap();
            // Parents first: a child's silence is judged by its parent's result.
            let rows: Vec<ProbeRow> = DEVICES
                .iter()
                .map(|(name, ..)| probe(ids[name], at, minute, !silent(name, minute)))
                .collect();
            evaluator.evaluate(&rows, at.into()).await.unwrap();
        }
        Fleet {
            alerting,
            ids,
            site_ids,
            t0,
        }
    }

    fn at(&self, minute: i64) -> prost_types::Timestamp {
        ts(self.t0 + TimeDelta::minutes(minute))
    }

    /// A report over the period.
    fn request(&self, group_by: v1::AvailabilityGrouping) -> v1::GetAvailabilityReportRequest {
        v1::GetAvailabilityReportRequest {
            start_time: Some(self.at(PERIOD.0)),
            end_time: Some(self.at(PERIOD.1)),
            group_by: group_by as i32,
            top: 1000,
            ..Default::default()
        }
    }

    async fn report(
        &self,
        group_by: v1::AvailabilityGrouping,
    ) -> v1::GetAvailabilityReportResponse {
        self.alerting
            .availability_report(&self.request(group_by), &Scope::default())
            .await
            .unwrap()
    }

    /// `GetAvailability` of a device or site over the period.
    async fn availability(
        &self,
        target: v1::get_availability_request::Target,
    ) -> v1::GetAvailabilityResponse {
        self.alerting
            .availability(
                v1::GetAvailabilityRequest {
                    target: Some(target),
                    start_time: Some(self.at(PERIOD.0)),
                    end_time: Some(self.at(PERIOD.1)),
                },
                &Scope::default(),
            )
            .await
            .unwrap()
    }
}

/// The domain as `run` wires it on `stores` and `copy`, with the handles
/// the timeline drives.
async fn wire(stores: &Stores, copy: SharedCopy) -> (Alerting, Arc<Evaluator>, Arc<AlertEngine>) {
    let book = Arc::new(
        SnmpBook::load(
            stores.snmp.clone(),
            Classifier::new(&InterfacesConfig::default()).unwrap(),
            RateConfig::default(),
            copy.clone(),
        )
        .await
        .unwrap(),
    );
    let ingestor = Arc::new(
        Ingestor::new(
            stores.results.clone(),
            Duration::from_secs(7 * 86_400),
            (
                Duration::from_secs(30 * 86_400),
                Duration::from_secs(400 * 86_400),
            ),
        )
        .with_snmp(book.clone()),
    );
    let notifier =
        Arc::new(Notifier::new(stores.notifications.clone(), NotifyConfig::default()).unwrap());
    let alerts = Arc::new(
        AlertEngine::start(stores, copy.clone(), Some(notifier.clone()))
            .await
            .unwrap(),
    );
    let machine = StateMachine::new(StateConfig::default()).unwrap();
    let evaluator = Arc::new(
        Evaluator::restore(machine, stores.results.clone(), copy.clone())
            .await
            .unwrap(),
    );
    let backlog = Arc::new(Backlog::new(evaluator.clone(), alerts.clone(), 1000));
    let alerting = Alerting::new(
        ingestor,
        evaluator.clone(),
        alerts.clone(),
        backlog,
        notifier,
        book,
        copy,
    );
    (alerting, evaluator, alerts)
}

fn ts(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn probe(device: Uuid, at: DateTime<Utc>, cycle: i64, answered: bool) -> ProbeRow {
    ProbeRow {
        device_id: device,
        probed_at: at,
        result: v1::ProbeResult {
            device_id: device.to_string(),
            cycle_id: cycle as u64 + 1,
            sent: 3,
            received: if answered { 3 } else { 0 },
            loss_percent: if answered { 0.0 } else { 100.0 },
            rtt_avg_us: answered.then_some(150),
            outcome: if answered {
                v1::ProbeOutcome::Ok
            } else {
                v1::ProbeOutcome::Timeout
            } as i32,
            ..Default::default()
        },
    }
}

fn nanos(d: Option<prost_types::Duration>) -> i128 {
    d.map_or(0, |d| {
        i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos)
    })
}

fn minutes(n: i64) -> i128 {
    i128::from(n) * 60 * 1_000_000_000
}

/// The figures that add up across devices, in nanoseconds and counts.
fn additive(f: &v1::AvailabilityFigures) -> [i128; 10] {
    [
        nanos(f.monitored_time),
        nanos(f.downtime),
        nanos(f.unreachable_time),
        nanos(f.maintenance_time),
        nanos(f.unknown_time),
        nanos(f.unmonitored_time),
        i128::from(f.incidents),
        i128::from(f.recoveries),
        nanos(f.recovery_time),
        i128::from(f.device_count),
    ]
}

/// Rows summed as the proto defines: additive figures summed, the longest
/// outage the largest, uptime and MTTR recomputed from the sums.
fn sum<'a>(rows: impl IntoIterator<Item = &'a v1::AvailabilityFigures>) -> v1::AvailabilityFigures {
    let mut sums = [0i128; 10];
    let mut longest = 0;
    for f in rows {
        for (s, v) in sums.iter_mut().zip(additive(f)) {
            *s += v;
        }
        longest = longest.max(nanos(f.longest_outage));
    }
    let d = |n: i128| {
        Some(prost_types::Duration {
            seconds: (n / 1_000_000_000) as i64,
            nanos: (n % 1_000_000_000) as i32,
        })
    };
    let [
        monitored,
        down,
        unreachable,
        maintenance,
        unknown,
        unmonitored,
        incidents,
        recoveries,
        recovery,
        devices,
    ] = sums;
    v1::AvailabilityFigures {
        uptime_percent: if monitored == 0 {
            100.0
        } else {
            100.0 * (monitored - down) as f64 / monitored as f64
        },
        monitored_time: d(monitored),
        downtime: d(down),
        unreachable_time: d(unreachable),
        maintenance_time: d(maintenance),
        unknown_time: d(unknown),
        unmonitored_time: d(unmonitored),
        incidents: incidents as u32,
        recoveries: recoveries as u32,
        recovery_time: d(recovery),
        mttr: d(if recoveries == 0 {
            0
        } else {
            recovery / recoveries
        }),
        longest_outage: d(longest),
        device_count: devices as u32,
    }
}

/// Equal but for the float's last bits (a sum of nanoseconds divided).
fn assert_same(got: &v1::AvailabilityFigures, want: &v1::AvailabilityFigures, what: &str) {
    assert_eq!(additive(got), additive(want), "{what}: {got:?} vs {want:?}");
    assert_eq!(got.mttr, want.mttr, "{what}: mttr");
    assert_eq!(got.longest_outage, want.longest_outage, "{what}: longest");
    assert!(
        (got.uptime_percent - want.uptime_percent).abs() < 1e-9,
        "{what}: uptime {} vs {}",
        got.uptime_percent,
        want.uptime_percent
    );
}

fn figures(row: &v1::AvailabilityReportRow) -> &v1::AvailabilityFigures {
    row.figures.as_ref().unwrap()
}

async fn totals_are_the_sum_of_each_devices_get_availability(fleet: Fleet) {
    let by_device = fleet.report(v1::AvailabilityGrouping::Device).await;
    assert_eq!(by_device.rows.len(), DEVICES.len());
    assert!(by_device.transitions_read > 0);
    // Each device's row is what GetAvailability says of it.
    for row in &by_device.rows {
        let one = fleet
            .availability(v1::get_availability_request::Target::DeviceId(
                row.key.clone(),
            ))
            .await;
        let f = figures(row);
        assert_eq!(one.name, row.name);
        let range = minutes(PERIOD.1 - PERIOD.0);
        let monitored = range
            - nanos(one.maintenance_time)
            - nanos(one.unknown_time)
            - nanos(one.unmonitored_time);
        assert_eq!(
            (
                nanos(f.monitored_time),
                nanos(f.downtime),
                nanos(f.unreachable_time),
                nanos(f.maintenance_time),
                nanos(f.unknown_time),
                nanos(f.unmonitored_time),
                f.incidents,
                f.mttr,
                f.longest_outage,
                f.uptime_percent,
                f.device_count,
            ),
            (
                monitored,
                nanos(one.downtime),
                nanos(one.unreachable_time),
                nanos(one.maintenance_time),
                nanos(one.unknown_time),
                nanos(one.unmonitored_time),
                one.incidents,
                one.mttr,
                one.longest_outage,
                one.uptime_percent,
                1,
            ),
            "{}",
            row.name
        );
    }
    let totals = by_device.totals.unwrap();
    assert_same(&totals, &sum(by_device.rows.iter().map(figures)), "totals");
    // The fleet's outages: t-rtr 30 min (t-sw UNREACHABLE for 20 of them:
    // it is UP again at its first answer), b-ap 20, k-cam 30 out of
    // maintenance, o-rtr 50 and still open.
    assert_eq!(totals.incidents, 5, "{totals:?}");
    assert_eq!(totals.recoveries, 4, "{totals:?}");
    assert_eq!(nanos(totals.downtime), minutes(30 + 20 + 20 + 30 + 50));
    assert_eq!(nanos(totals.unreachable_time), minutes(20));
    assert_eq!(nanos(totals.longest_outage), minutes(60));
    assert_eq!(totals.device_count, 8);

    // Every grouping has the same totals, and its rows sum to them.
    let mut reports = HashMap::new();
    for grouping in [
        v1::AvailabilityGrouping::Region,
        v1::AvailabilityGrouping::Site,
        v1::AvailabilityGrouping::DeviceType,
    ] {
        let report = fleet.report(grouping).await;
        assert_eq!(report.group_by, grouping as i32);
        assert_same(
            report.totals.as_ref().unwrap(),
            &totals,
            grouping.as_str_name(),
        );
        assert_same(
            &sum(report.rows.iter().map(figures)),
            &totals,
            grouping.as_str_name(),
        );
        reports.insert(grouping, report);
    }
    let names = |g: v1::AvailabilityGrouping| -> Vec<String> {
        reports[&g].rows.iter().map(|r| r.name.clone()).collect()
    };
    assert_eq!(names(v1::AvailabilityGrouping::Region), ["APAC", "EMEA"]);
    assert_eq!(
        names(v1::AvailabilityGrouping::Site),
        ["batumi", "osaka", "tbilisi", "tokyo"]
    );
    assert_eq!(
        names(v1::AvailabilityGrouping::DeviceType),
        ["access_point", "atm", "camera", "router", "switch"]
    );
    // A region's row is the sum of its sites' rows.
    for region in &reports[&v1::AvailabilityGrouping::Region].rows {
        let sites: Vec<&v1::AvailabilityFigures> = reports[&v1::AvailabilityGrouping::Site]
            .rows
            .iter()
            .filter(|s| s.region == region.name)
            .map(figures)
            .collect();
        assert_eq!(sites.len(), 2);
        assert_same(figures(region), &sum(sites), &region.name);
    }
    // A site's row is GetAvailability of the site.
    for site in &reports[&v1::AvailabilityGrouping::Site].rows {
        let whole = fleet
            .availability(v1::get_availability_request::Target::SiteId(
                site.key.clone(),
            ))
            .await;
        let f = figures(site);
        assert_eq!(site.key, fleet.site_ids[site.name.as_str()]);
        assert_eq!(
            (
                nanos(f.downtime),
                nanos(f.maintenance_time),
                f.incidents,
                f.mttr,
                f.longest_outage,
                f.uptime_percent,
                f.device_count,
            ),
            (
                nanos(whole.downtime),
                nanos(whole.maintenance_time),
                whole.incidents,
                whole.mttr,
                whole.longest_outage,
                whole.uptime_percent,
                whole.device_count,
            ),
            "{}",
            site.name
        );
    }
    // Problem devices: most downtime, then most incidents, then by name;
    // the devices never down are not listed.
    let top: Vec<&str> = by_device
        .top_devices
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(top, ["o-rtr", "k-cam", "t-rtr", "b-ap", "t-sw"]);
    let mut request = fleet.request(v1::AvailabilityGrouping::Region);
    request.top = 2;
    let two = fleet
        .alerting
        .availability_report(&request, &Scope::default())
        .await
        .unwrap();
    let top: Vec<&str> = two.top_devices.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(top, ["o-rtr", "k-cam"]);
    assert_eq!(two.top_devices[0].region, "APAC");
    assert_eq!(two.top_devices[0].site_name, "osaka");
}

async fn maintenance_is_left_out_of_the_outage_it_covers(fleet: Fleet) {
    let report = fleet.report(v1::AvailabilityGrouping::Device).await;
    let camera = report.rows.iter().find(|r| r.name == "k-cam").unwrap();
    assert_eq!(camera.key, fleet.ids["k-cam"].to_string());
    let f = figures(camera);
    // DOWN from 20 to 80, in maintenance from 40 to 70: 30 minutes down,
    // 30 in maintenance, up from 15 to 20 and from 80 to 150.
    assert_eq!(nanos(f.maintenance_time), minutes(WINDOW.1 - WINDOW.0));
    assert_eq!(nanos(f.downtime), minutes(30));
    assert_eq!(nanos(f.monitored_time), minutes(30 + 5 + 70));
    assert!(
        (f.uptime_percent - 100.0 * 75.0 / 105.0).abs() < 1e-9,
        "{f:?}"
    );
    // The outage itself lasted 60 minutes, maintenance or not.
    assert_eq!((f.incidents, f.recoveries), (1, 1));
    assert_eq!(nanos(f.mttr), minutes(60));
    // The window is nobody else's.
    let maintenance: i128 = report
        .rows
        .iter()
        .map(|r| nanos(figures(r).maintenance_time))
        .sum();
    assert_eq!(maintenance, minutes(30));
    // An outage still open at the end counts as down, not in the MTTR.
    let open = figures(report.rows.iter().find(|r| r.name == "o-rtr").unwrap());
    assert_eq!(nanos(open.downtime), minutes(50));
    assert_eq!(
        (open.incidents, open.recoveries, nanos(open.mttr)),
        (1, 0, 0)
    );
    // The child of the router that went down was UNREACHABLE, not DOWN,
    // from the router's outage (30) to its own first answer (50).
    let child = figures(report.rows.iter().find(|r| r.name == "t-sw").unwrap());
    assert_eq!(nanos(child.unreachable_time), minutes(20));
    assert_eq!(nanos(child.downtime), minutes(20));
}

async fn filters_scope_and_bad_requests_are_answered_precisely(fleet: Fleet) {
    let everyone = Scope::default();
    let ask = |request: v1::GetAvailabilityReportRequest, scope: Scope| {
        let alerting = &fleet.alerting;
        async move { alerting.availability_report(&request, &scope).await }
    };
    let base = fleet.request(v1::AvailabilityGrouping::Device);
    let devices = |report: &v1::GetAvailabilityReportResponse| -> Vec<String> {
        report.rows.iter().map(|r| r.name.clone()).collect()
    };

    // Filters: region, site by name or id, type; all must match.
    let apac = ask(
        v1::GetAvailabilityReportRequest {
            region: "APAC".into(),
            ..base.clone()
        },
        everyone.clone(),
    )
    .await
    .unwrap();
    assert_eq!(devices(&apac), ["k-cam", "k-rtr", "o-rtr"]);
    for site in ["tokyo".to_string(), fleet.site_ids["tokyo"].clone()] {
        let tokyo = ask(
            v1::GetAvailabilityReportRequest {
                site,
                ..base.clone()
            },
            everyone.clone(),
        )
        .await
        .unwrap();
        assert_eq!(devices(&tokyo), ["k-cam", "k-rtr"]);
    }
    let routers = ask(
        v1::GetAvailabilityReportRequest {
            region: "EMEA".into(),
            device_type: v1::DeviceType::Router as i32,
            ..base.clone()
        },
        everyone.clone(),
    )
    .await
    .unwrap();
    assert_eq!(devices(&routers), ["b-rtr", "t-rtr"]);
    assert_eq!(routers.totals.unwrap().device_count, 2);

    // A token of EMEA sees EMEA only, and nothing of APAC's existence.
    let emea = Scope {
        regions: vec!["EMEA".into()],
        sites: Vec::new(),
    };
    let scoped = ask(
        fleet.request(v1::AvailabilityGrouping::Region),
        emea.clone(),
    )
    .await
    .unwrap();
    let regions: Vec<&str> = scoped.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(regions, ["EMEA"]);
    assert_eq!(scoped.totals.unwrap().device_count, 5);
    assert!(scoped.top_devices.iter().all(|r| r.region == "EMEA"));
    for (region, site) in [("APAC", ""), ("", "tokyo"), ("MARS", ""), ("", "nowhere")] {
        let error = ask(
            v1::GetAvailabilityReportRequest {
                region: region.into(),
                site: site.into(),
                ..base.clone()
            },
            emea.clone(),
        )
        .await
        .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::NotFound(_)), "{message}");
        assert!(
            message.contains("has no devices in the inventory within this token's scope"),
            "{message}"
        );
    }
    let error = ask(
        v1::GetAvailabilityReportRequest {
            site: "nowhere".into(),
            ..base.clone()
        },
        everyone.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "site \"nowhere\" (id or name) has no devices in the inventory"
    );

    // Bad requests name the field, the value and why.
    let cases = [
        (
            v1::GetAvailabilityReportRequest {
                start_time: Some(fleet.at(60)),
                end_time: Some(fleet.at(30)),
                ..base.clone()
            },
            "start_time",
            "must be before end_time",
        ),
        (
            v1::GetAvailabilityReportRequest {
                start_time: Some(fleet.at(0)),
                end_time: Some(ts(fleet.t0 + TimeDelta::days(401))),
                ..base.clone()
            },
            "end_time",
            "at most 400 days after start_time",
        ),
        (
            v1::GetAvailabilityReportRequest {
                group_by: 99,
                ..base.clone()
            },
            "group_by",
            "not an AvailabilityGrouping",
        ),
        (
            v1::GetAvailabilityReportRequest {
                top: 5000,
                ..base.clone()
            },
            "top",
            "at most 1000",
        ),
        (
            v1::GetAvailabilityReportRequest {
                device_type: 99,
                ..base.clone()
            },
            "device_type",
            "not a DeviceType",
        ),
    ];
    for (request, field, reason) in cases {
        let error = ask(request, everyone.clone()).await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::InvalidArgument(_)), "{message}");
        assert!(
            message.starts_with(&format!("invalid argument: {field} = "))
                && message.contains(reason),
            "{message}"
        );
    }
}

/// How long a report of 10,000 devices over 30 days takes on PostgreSQL
/// (`NETWARD_BENCH_DEVICES`, `NETWARD_BENCH_CHANGES_PER_DAY` change the
/// fleet): the transitions are written with the store's own batch write,
/// four a day per device (two outages). Run by hand:
/// `cargo test -p netward-alerting --test it --release -- --ignored --nocapture report_of_a_large_fleet`.
#[tokio::test]
#[ignore = "a benchmark: run by hand with --ignored --nocapture"]
async fn report_of_a_large_fleet_over_30_days() {
    let count: usize = std::env::var("NETWARD_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let per_day: i64 = std::env::var("NETWARD_BENCH_CHANGES_PER_DAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let database = TestDatabase::create().await.unwrap();
    let stores = Stores::postgres(PgStore::connect(database.url()).await.unwrap());
    let end = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let start = end - TimeDelta::days(30);
    let regions = ["EMEA", "APAC", "AMER", "LATAM"];
    let devices: Vec<v1::Device> = (0..count)
        .map(|i| v1::Device {
            id: Uuid::new_v4().to_string(),
            name: format!("dev-{i:06}"),
            site_id: format!("site-{}", i / 10),
            site_name: format!("site-{}", i / 10),
            region: regions[i % regions.len()].into(),
            device_type: (i % 5 + 1) as i32,
            ..Default::default()
        })
        .collect();

    let written = Instant::now();
    let mut total = 0usize;
    for chunk in devices.chunks(200) {
        let mut changes = Vec::new();
        for (n, device) in chunk.iter().enumerate() {
            let id = Uuid::parse_str(&device.id).unwrap();
            let change = |at: DateTime<Utc>, to: v1::DeviceState| ChangeRow {
                device_id: id,
                from: v1::DeviceState::Unknown,
                to,
                maintenance: false,
                reason: "1 failed probe (3/3 lost + 2 retries)".into(),
                changed_at: at,
                cycle_id: 1,
                stale: false,
            };
            // The state before the period, then outages spread over each day.
            changes.push(change(start - TimeDelta::days(3), v1::DeviceState::Up));
            for day in 0..30 {
                for k in 0..per_day / 2 {
                    let offset = (n as i64 * 37 + k * 600 + day * 11) % 1300;
                    let down = start + TimeDelta::days(day) + TimeDelta::minutes(offset);
                    changes.push(change(down, v1::DeviceState::Down));
                    changes.push(change(down + TimeDelta::minutes(7), v1::DeviceState::Up));
                }
            }
        }
        total += changes.len();
        let states: Vec<StateRow> = Vec::new();
        stores.results.save_states(&states, &changes).await.unwrap();
    }
    let written = written.elapsed();

    let copy: SharedCopy = Default::default();
    *copy.write().unwrap() = InventoryCopy::of(devices, 1);
    let (alerting, _, _) = wire(&stores, copy).await;
    sqlx::query("ANALYZE state_changes")
        .execute(PgStore::connect(database.url()).await.unwrap().pool())
        .await
        .unwrap();
    for grouping in [
        v1::AvailabilityGrouping::Region,
        v1::AvailabilityGrouping::Site,
        v1::AvailabilityGrouping::Device,
    ] {
        let began = Instant::now();
        let report = alerting
            .availability_report(
                &v1::GetAvailabilityReportRequest {
                    start_time: Some(ts(start)),
                    end_time: Some(ts(end)),
                    group_by: grouping as i32,
                    top: 10,
                    ..Default::default()
                },
                &Scope::default(),
            )
            .await
            .unwrap();
        let took = began.elapsed();
        let totals = report.totals.unwrap();
        println!(
            "{count} devices, {total} transitions written in {written:.1?}; report by {} over 30 days: {} rows, {} transitions read, {took:.2?}",
            grouping.as_str_name(),
            report.rows.len(),
            report.transitions_read,
        );
        assert_eq!(totals.device_count as usize, count);
        assert_eq!(report.transitions_read as usize, total - count);
        assert_eq!(
            totals.incidents as usize,
            count * 30 * (per_day as usize / 2)
        );
        assert!(took < Duration::from_secs(60), "{took:?}");
    }
}

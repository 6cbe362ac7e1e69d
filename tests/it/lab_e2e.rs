//! The core loop end to end, in the network lab: inventory, planner, two
//! ping executors and alerting as separate processes of the real binary,
//! PostgreSQL through its unix socket, real ICMP on loopback shaped by nft.
//! 1,000 devices in 40 sites; 20 silent from the start; a branch router and
//! the 20 devices behind it go silent mid-run; one device flaps; 50 lose 5 %
//! of their packets. Over three minutes: the silent ones are DOWN and
//! alerted within one interval (plus timeout, retries and the parent
//! hold-down), the branch outage is one alert with 20 UNREACHABLE devices,
//! the flapping device one flapping alert, the lossy ones no DOWN alert, and
//! every result the executors produced is stored once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use netward_shared::client::connect;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::testkit::lab::{self, Rule};
use netward_shared::testkit::{TestDatabase, eventually};

use crate::support::Netward;

const RUN: Duration = Duration::from_secs(180);
const INTERVAL: Duration = Duration::from_secs(10);

fn ip(site: usize, k: usize) -> String {
    format!("127.50.{site}.{}", k + 1)
}

#[tokio::test]
async fn the_core_loop_in_the_lab() {
    if !lab::inside() {
        return;
    }
    // The fleet: site 0 has 29 devices, sites 1-38 have 25, site 39 (the
    // branch that fails mid-run) has its router and 20 devices: 1,000.
    let mut rows = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for site in 0..40usize {
        let count = match site {
            0 => 29,
            39 => 21,
            _ => 25,
        };
        for k in 0..count {
            let name = if k == 0 {
                format!("s{site:02}-rtr")
            } else {
                format!("s{site:02}-d{k:02}")
            };
            names.insert(ip(site, k), name.clone());
            rows.push(v1::ImportRow {
                line: rows.len() as u32 + 2,
                name,
                ip: ip(site, k),
                site: format!("s{site:02}"),
                parent: if k == 0 {
                    String::new()
                } else {
                    format!("s{site:02}-rtr")
                },
                ..Default::default()
            });
        }
    }
    assert_eq!(rows.len(), 1000);
    let silent: Vec<String> = (0..20).map(|site| ip(site, 24)).collect();
    let branch: Vec<String> = (0..21).map(|k| ip(39, k)).collect();
    let flapper = ip(1, 10);
    let lossy: Vec<String> = (2..12)
        .flat_map(|site| (1..6).map(move |k| ip(site, k)))
        .collect();

    let database = TestDatabase::create().await.unwrap();
    let db = database.url().to_string();
    let inventory = Netward::start("inventory", &["--database-url", &db]).await;
    let inventory_url = format!("http://{}", inventory.grpc_addr);
    let (imported, _) = crate::support::import(&inventory_url, rows).await;
    assert_eq!(imported.created, 1000);

    let _silent_rule = Rule::down(&format!("{{ {} }}", silent.join(", ")));
    let _lossy_rule = Rule::lossy(&format!("{{ {} }}", lossy.join(", ")), 5);

    let alerting = Netward::start(
        "alerting",
        &["--database-url", &db, "--inventory-url", &inventory_url],
    )
    .await;
    let alerting_url = format!("http://{}", alerting.grpc_addr);
    let planner = Netward::start("planner", &["--inventory-url", &inventory_url]).await;
    let planner_url = format!("http://{}", planner.grpc_addr);
    let executors = [
        Netward::start_with_env(
            "ping-executor",
            &[
                "--planner-url",
                &planner_url,
                "--alerting-url",
                &alerting_url,
            ],
            &[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "lab-ping-1")],
        )
        .await,
        Netward::start_with_env(
            "ping-executor",
            &[
                "--planner-url",
                &planner_url,
                "--alerting-url",
                &alerting_url,
            ],
            &[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "lab-ping-2")],
        )
        .await,
    ];
    let mut planner_client = PlannerServiceClient::new(connect(&planner_url, None).unwrap());
    eventually("both executors register", Duration::from_secs(30), || {
        let mut client = planner_client.clone();
        async move {
            let listed = client
                .list_executors(v1::ListExecutorsRequest::default())
                .await
                .ok()?
                .into_inner();
            (listed.executors.len() == 2).then_some(())
        }
    })
    .await;
    let started = Instant::now();
    let started_at = Utc::now();

    // The flapping device: 25 s up, 15 s down, over and over.
    let flapper_task = tokio::spawn({
        let flapper = flapper.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            loop {
                let rule = Rule::down(&flapper);
                tokio::time::sleep(Duration::from_secs(15)).await;
                drop(rule);
                tokio::time::sleep(Duration::from_secs(25)).await;
            }
        }
    });

    // Mid-run, the branch goes silent: its router and everything behind it.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let branch_rule = Rule::down(&format!("{{ {} }}", branch.join(", ")));
    let branch_silent_at = Utc::now();
    tokio::time::sleep(RUN.saturating_sub(started.elapsed())).await;
    flapper_task.abort();

    // Stop the executors first (they drain: running batches finish and
    // their results are acked), then read what was stored.
    for executor in executors {
        let (status, log) = executor.stop().await;
        assert!(status.success(), "{log}");
    }
    drop(branch_rule);

    let mut alerting_client = AlertingServiceClient::new(connect(&alerting_url, None).unwrap());
    let statuses = alerting_client
        .list_device_statuses(v1::ListDeviceStatusesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let state_of: HashMap<String, i32> = statuses
        .statuses
        .iter()
        .map(|s| (s.ip_address.clone(), s.state))
        .collect();
    let alerts = alerting_client
        .list_alerts(v1::ListAlertsRequest {
            include_resolved: true,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let alerts_for = |ip: &str, kind: v1::RuleKind| {
        alerts
            .iter()
            .filter(|a| a.ip_address == ip && a.rule_kind == kind as i32)
            .count()
    };

    // Silent from the start: DOWN and alerted, each once.
    for address in &silent {
        assert_eq!(
            state_of[address],
            v1::DeviceState::Down as i32,
            "{}",
            names[address]
        );
        assert_eq!(
            alerts_for(address, v1::RuleKind::DeviceDown),
            1,
            "{}",
            names[address]
        );
    }
    // The branch: one alert (its router), 20 UNREACHABLE devices, no alert for them.
    assert_eq!(state_of[&branch[0]], v1::DeviceState::Down as i32);
    assert_eq!(alerts_for(&branch[0], v1::RuleKind::DeviceDown), 1);
    for address in &branch[1..] {
        assert_eq!(
            state_of[address],
            v1::DeviceState::Unreachable as i32,
            "{}",
            names[address]
        );
        assert_eq!(
            alerts.iter().filter(|a| &a.ip_address == address).count(),
            0,
            "{}",
            names[address]
        );
    }
    // The flapping device: one flapping alert.
    assert_eq!(
        alerts_for(&flapper, v1::RuleKind::DeviceFlapping),
        1,
        "{alerts:?}"
    );
    // The lossy devices: never DOWN.
    for address in &lossy {
        assert_eq!(
            alerts_for(address, v1::RuleKind::DeviceDown),
            0,
            "{} lost too much",
            names[address]
        );
    }

    // Detection latency, from the transitions.
    let changes: Vec<(String, i16, DateTime<Utc>)> = sqlx::query_as(
        "SELECT d.device_id::text, c.to_state, c.changed_at FROM alerting.state_changes c \
         JOIN alerting.device_state d ON d.device_id = c.device_id ORDER BY c.id",
    )
    .fetch_all(database.pool())
    .await
    .unwrap();
    let ids: HashMap<String, String> = statuses
        .statuses
        .iter()
        .map(|s| (s.device_id.clone(), s.ip_address.clone()))
        .collect();
    let first_down = |address: &str, after: DateTime<Utc>| {
        changes
            .iter()
            .filter(|(id, to, at)| {
                ids.get(id).map(String::as_str) == Some(address)
                    && *to == v1::DeviceState::Down as i16
                    && *at >= after
            })
            .map(|(_, _, at)| *at)
            .next()
    };
    let mut latencies: Vec<f64> = silent
        .iter()
        .chain([&branch[0]])
        .map(|address| {
            let since = if address == &branch[0] {
                branch_silent_at
            } else {
                started_at
            };
            let at =
                first_down(address, since).unwrap_or_else(|| panic!("{address} never went DOWN"));
            (at - since).num_milliseconds() as f64 / 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let bound = INTERVAL.as_secs_f64() + 1.0 + 2.0 + 2.0 + 1.0; // interval + timeout + retries + hold + slack
    let max = latencies[latencies.len() - 1];
    let median = latencies[latencies.len() / 2];
    println!(
        "lab e2e: detection latency max {max:.1} s, median {median:.1} s (bound {bound:.0} s)"
    );
    assert!(max <= bound, "detection took {max:.1} s: {latencies:?}");

    // Stored vs sent: every result of every completed batch is a row.
    let cycles = planner_client
        .list_cycles(v1::ListCyclesRequest {
            kind: v1::ExecutorKind::Ping as i32,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .cycles;
    let sent: u64 = cycles
        .iter()
        .map(|c| u64::from(c.succeeded) + u64::from(c.failed))
        .sum();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM alerting.probe_results")
        .fetch_one(database.pool())
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "lab e2e: {} cycles, results reported by executors {sent}, stored {stored}, {:.0} results/s stored",
        cycles.len(),
        stored as f64 / elapsed
    );
    assert_eq!(stored as u64, sent, "stored vs sent");
    // Write throughput: results stored per second of time spent writing
    // (alerting's own histogram of batch writes), i.e. what the same
    // writer would sustain if batches arrived back to back.
    let metrics = crate::support::http_get(alerting.metrics_addr, "/metrics").await;
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in alerting's /metrics"))
    };
    let (write_seconds, writes) = (
        metric("alerting_write_seconds_sum"),
        metric("alerting_write_seconds_count"),
    );
    println!(
        "lab e2e: ingest wrote {stored} results in {writes:.0} transactions, {write_seconds:.2} s writing: \
         {:.0} results/s of write time, {:.1} ms per transaction",
        stored as f64 / write_seconds,
        1000.0 * write_seconds / writes
    );

    let (status, log) = planner.stop().await;
    assert!(status.success(), "{log}");
    alerting.stop().await;
    inventory.stop().await;
}

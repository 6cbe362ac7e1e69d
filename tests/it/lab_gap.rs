//! Never blind, in the network lab: the only ping executor is killed. Within
//! `stale_after` + one interval every device it probed is UNKNOWN with a
//! reason, exactly one monitoring-gap alert fires (none per device, no DOWN
//! alert), `netward status` says how stale the view is, and when an
//! executor returns the devices are UP and fresh again and the gap resolves.
//! Inventory, planner, executors and alerting run as processes of the real
//! binary; a 2 s ping interval keeps the run short (stale_after = 6 s).

use std::time::{Duration, Instant};

use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::testkit::eventually;
use netward_shared::testkit::lab;

use crate::support::NETWARD;

const DEVICES: usize = 100;
const INTERVAL: Duration = Duration::from_secs(2);

async fn statuses(
    client: &mut AlertingServiceClient<netward_shared::client::PeerChannel>,
) -> v1::ListDeviceStatusesResponse {
    client
        .list_device_statuses(v1::ListDeviceStatusesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every alert (resolved too) that started at or after `since` (Unix seconds).
async fn alerts(
    client: &mut AlertingServiceClient<netward_shared::client::PeerChannel>,
    since: i64,
) -> Vec<v1::Alert> {
    let all = client
        .list_alerts(v1::ListAlertsRequest {
            include_resolved: true,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    all.into_iter()
        .filter(|a| a.started_at.as_ref().is_some_and(|t| t.seconds >= since))
        .collect()
}

#[tokio::test]
async fn lab_the_only_executor_dies_one_gap_alert_and_no_green() {
    if !lab::inside() {
        return;
    }
    let rows: Vec<v1::ImportRow> = (0..DEVICES)
        .map(|k| v1::ImportRow {
            line: k as u32 + 2,
            name: format!("gap-{k:03}"),
            ip: format!("127.52.{}.{}", k / 25, k % 25 + 1),
            site: format!("gap-site-{}", k / 25),
            ..Default::default()
        })
        .collect();
    let mut cluster = crate::support::cluster()
        .planner()
        .alerting()
        .ping_executors(1)
        .executor_ids(Target::PingExecutor, &["gap-ping-1"])
        .ping_interval(INTERVAL)
        .devices(rows)
        .start()
        .await;
    assert_eq!(cluster.imported.as_ref().unwrap().created, DEVICES as u64);
    let alerting_url = cluster.alerting_url();
    let mut client = cluster.alerting_client();

    eventually("every device UP and fresh", Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let listed = statuses(&mut client).await;
            let counts = listed.counts?;
            (counts.up == DEVICES as u64 && counts.stale == 0).then_some(())
        }
    })
    .await;

    // The only executor dies: nothing probes any device any more.
    let first = cluster.ping_executors.pop().unwrap();
    first.kill().await;
    let killed = Instant::now();
    let killed_at = chrono::Utc::now().timestamp() - 1;
    let stale_after = INTERVAL * 3;
    eventually(
        "every device UNKNOWN and stale",
        stale_after + INTERVAL + Duration::from_secs(5),
        || {
            let mut client = client.clone();
            async move {
                let listed = statuses(&mut client).await;
                listed
                    .statuses
                    .iter()
                    .all(|s| s.state == v1::DeviceState::Unknown as i32 && s.stale)
                    .then_some(())
            }
        },
    )
    .await;
    let went_stale = killed.elapsed();
    println!(
        "lab gap: every device UNKNOWN {:.1} s after the only executor was killed (stale_after {:.0} s, interval {:.0} s)",
        went_stale.as_secs_f64(),
        stale_after.as_secs_f64(),
        INTERVAL.as_secs_f64()
    );
    assert!(
        went_stale <= stale_after + INTERVAL + Duration::from_secs(2),
        "took {went_stale:?}"
    );
    let listed = statuses(&mut client).await;
    for status in &listed.statuses {
        assert!(
            status
                .state_reason
                .contains("no ping executor is connected to the planner"),
            "{}: {}",
            status.device_name,
            status.state_reason
        );
        assert!(
            status.state_reason.starts_with("no result since "),
            "{}",
            status.state_reason
        );
    }
    let counts = listed.counts.unwrap();
    assert_eq!((counts.stale, counts.unknown), (100, 100));
    let age = listed.oldest_result_age.unwrap();
    assert!(age.seconds >= 6, "oldest result {age:?}");

    // Exactly one alert, and it is the gap: no DOWN, no per-device alert.
    eventually("the gap alert", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { (!alerts(&mut client, killed_at).await.is_empty()).then_some(()) }
    })
    .await;
    // A few more sweeps must not add any (a span to watch, not a wait).
    tokio::time::sleep(INTERVAL * 2).await;
    let all = alerts(&mut client, killed_at).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    let gap = &all[0];
    assert_eq!(gap.rule_kind, v1::RuleKind::MonitoringGap as i32);
    assert_eq!(gap.state, v1::AlertState::Firing as i32);
    assert_eq!(gap.device_name, "devices");
    assert_eq!(gap.value, Some(100.0));
    assert!(
        gap.summary
            .starts_with("monitoring gap: 100 of 100 devices have no fresh result since ")
            && gap
                .summary
                .ends_with(": no ping executor is connected to the planner"),
        "{}",
        gap.summary
    );

    // What an operator sees on the command line.
    let output = tokio::process::Command::new(NETWARD)
        .args(["status", "--alerting-url", &alerting_url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let first_line = text.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("total 100: up 0, down 0, unreachable 0, flapping 0, unknown 100, maintenance 0; stale 100, oldest result "),
        "{first_line}"
    );
    assert!(text.contains("unknown (stale)"), "{text}");
    // And the metric a Prometheus rule would watch.
    let alerting_metrics = cluster.alerting.as_ref().unwrap().metrics_addr;
    let metrics = crate::support::http_get(alerting_metrics, "/metrics").await;
    let stale_metric = metrics.lines().find_map(|l| {
        l.strip_prefix("netward_alerting_stale_devices ")?
            .trim()
            .parse::<f64>()
            .ok()
    });
    assert_eq!(stale_metric, Some(100.0), "{metrics}");
    assert!(metrics.contains("netward_alerting_oldest_result_age_seconds "));
    assert!(
        metrics.contains("netward_alerting_devices{state=\"UNKNOWN\"} 100"),
        "{metrics}"
    );
    assert!(
        metrics.contains("netward_alerting_devices{state=\"UP\"} 0"),
        "{metrics}"
    );

    // An executor returns: fresh and UP again, the gap resolved.
    cluster
        .add_ping_executor(&[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "gap-ping-2")])
        .await;
    eventually(
        "every device UP and fresh again",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            async move {
                let listed = statuses(&mut client).await;
                let counts = listed.counts?;
                (counts.up == DEVICES as u64 && counts.stale == 0).then_some(())
            }
        },
    )
    .await;
    eventually("the gap resolved", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            let all = alerts(&mut client, killed_at).await;
            (all.len() == 1 && all[0].state == v1::AlertState::Resolved as i32).then_some(())
        }
    })
    .await;
    // Availability: the stale time is unmonitored, not downtime.
    let device_id = statuses(&mut client).await.statuses[0].device_id.clone();
    let availability = client
        .get_availability(v1::GetAvailabilityRequest {
            target: Some(v1::get_availability_request::Target::DeviceId(device_id)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let unmonitored = availability.unmonitored_time.unwrap_or_default();
    assert!(unmonitored.seconds >= 1, "{availability:?}");
    assert_eq!(availability.downtime.unwrap_or_default().seconds, 0);
    assert_eq!(availability.incidents, 0);
}

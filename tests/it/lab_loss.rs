//! Packet loss judged over a window of probes, in the network lab: the real
//! binary's inventory, planner, a ping executor and alerting as processes,
//! real ICMP on loopback with nft dropping echo requests at random. 100
//! devices lose 3 % of their packets and raise no alert of any kind; 100
//! lose 25 % and each gets a packet-loss alert. The ping interval is 2 s;
//! the run lasts at least 25 cycles and until every 25 % device has fired:
//! 3-4 minutes while a device is probed only about every other 2 s cycle
//! (45-56 probes a device in 200-240 s, issue 11 item 2).

use std::time::{Duration, Instant};

use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use netward_shared::testkit::lab::{self, Rule};

const INTERVAL: Duration = Duration::from_secs(2);
/// Cycles every device is probed before the 3 % ones are judged.
const MIN_CYCLES: u32 = 25;
/// At 25 % loss a device fires within about 5 probes of a full window (10
/// probes), but the slowest of 100 can take 50 or more: 200 cycles bound it.
const MAX_CYCLES: u32 = 200;

fn ip(group: usize, k: usize) -> String {
    format!("127.51.{group}.{}", k + 1)
}

#[tokio::test]
async fn lab_random_loss_alerts_only_above_the_threshold() {
    if !lab::inside() {
        println!("skipped: not in the network lab (run it with deploy/lab/lab.sh)");
        return;
    }
    let healthy: Vec<String> = (0..100).map(|k| ip(0, k)).collect();
    let lossy: Vec<String> = (0..100).map(|k| ip(1, k)).collect();
    let rows: Vec<v1::ImportRow> = healthy
        .iter()
        .chain(&lossy)
        .enumerate()
        .map(|(i, address)| v1::ImportRow {
            line: i as u32 + 2,
            name: format!("loss-{}", address.replace('.', "-")),
            ip: address.clone(),
            site: if i < 100 { "healthy" } else { "lossy" }.into(),
            ..Default::default()
        })
        .collect();
    let _three = Rule::lossy("127.51.0.0/24", 3);
    let _quarter = Rule::lossy("127.51.1.0/24", 25);

    let mut cluster = crate::support::cluster()
        .planner()
        .alerting()
        .ping_executors(1)
        .executor_ids(Target::PingExecutor, &["lab-loss-1"])
        .ping_interval(INTERVAL)
        .devices(rows)
        .start()
        .await;
    assert_eq!(cluster.imported.as_ref().unwrap().created, 200);

    let client = cluster.alerting_client();
    let list_alerts = || {
        let mut client = client.clone();
        async move {
            client
                .list_alerts(v1::ListAlertsRequest {
                    include_resolved: true,
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().alerts)
        }
    };
    let alerted = |alerts: &[v1::Alert], address: &String| {
        alerts
            .iter()
            .any(|a| &a.ip_address == address && a.rule_kind == v1::RuleKind::PacketLoss as i32)
    };
    let started = Instant::now();
    eventually(
        "every device at 25 % loss alerted",
        INTERVAL * MAX_CYCLES,
        || async {
            let alerts = list_alerts().await.ok()?;
            lossy.iter().all(|a| alerted(&alerts, a)).then_some(())
        },
    )
    .await;
    println!(
        "lab loss: 100/100 devices at 25 % alerted after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // The run lasts at least MIN_CYCLES, so the 3 % devices are judged over
    // that many probes: the scenario's length, not a wait.
    tokio::time::sleep((INTERVAL * MIN_CYCLES).saturating_sub(started.elapsed())).await;
    let alerts = list_alerts().await.unwrap();
    let executor = cluster.ping_executors.pop().unwrap();
    let stopped = executor.stop().await;
    assert!(stopped.clean(), "{stopped:?}");

    // Probed all along: the windows were full.
    let addresses: std::collections::HashMap<uuid::Uuid, String> =
        sqlx::query_as::<_, (uuid::Uuid, String)>("SELECT id, ip_address FROM inventory.devices")
            .fetch_all(cluster.postgres().pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut per_address: std::collections::HashMap<String, (i64, i64, i64)> = Default::default();
    for result in crate::support::stored_results(cluster.postgres().pool()).await {
        if let Some(address) = addresses.get(&result.device_id) {
            let entry = per_address.entry(address.clone()).or_default();
            entry.0 += 1;
            entry.1 += i64::from(result.sent);
            entry.2 += i64::from(result.sent.saturating_sub(result.received));
        }
    }
    let probes: Vec<(String, i64, i64, i64)> = per_address
        .into_iter()
        .map(|(address, (n, sent, lost))| (address, n, sent, lost))
        .collect();
    let measured = |group: &[String]| {
        let (sent, lost) = probes
            .iter()
            .filter(|(address, ..)| group.contains(address))
            .fold((0, 0), |(s, l), (_, _, sent, lost)| (s + sent, l + lost));
        100.0 * lost as f64 / sent.max(1) as f64
    };
    let fewest = probes.iter().map(|(_, n, ..)| *n).min().unwrap_or_default();
    println!(
        "lab loss: measured {:.1} % and {:.1} % loss, at least {fewest} probes a device",
        measured(&healthy),
        measured(&lossy)
    );

    let noisy: Vec<(&str, &str)> = alerts
        .iter()
        .filter(|a| healthy.contains(&a.ip_address))
        .map(|a| (a.rule_name.as_str(), a.summary.as_str()))
        .collect();
    assert!(noisy.is_empty(), "3 % loss alerted: {noisy:?}");
    let silent: Vec<&String> = lossy
        .iter()
        .filter(|address| !alerted(&alerts, address))
        .collect();
    assert!(silent.is_empty(), "25 % loss never alerted: {silent:?}");

    let stopped = cluster.planner.take().unwrap().stop().await;
    assert!(stopped.clean(), "{stopped:?}");
}

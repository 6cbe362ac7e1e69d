//! `netward up` in the network lab, as the README's first command runs it:
//! the whole system in one process on its embedded default (SQLite under a
//! data dir), the example inventory loaded on first start, real ICMP on
//! loopback. Three ATMs of the example are made silent with nft. Within a
//! few cycles every other device is UP in `netward status --json`, the
//! silent ones DOWN with one alert each; Ctrl-C drains and exits cleanly;
//! a second start on the same data dir resumes the same alerts (same ids,
//! none new, none resolved) without loading the inventory again. Prints the
//! time from start to the first completed cycle, and the process's RSS and
//! CPU time over its first minute.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use netward_shared::testkit::lab::{self, Rule};

use crate::up::{Up, cli, wait_for};

const EXAMPLE: &str = include_str!("../../deploy/examples/inventory.csv");

/// Open alerts as (device name → alert ids), from `netward alerts --json`.
async fn open_alerts() -> HashMap<String, BTreeSet<String>> {
    let mut alerts: HashMap<String, BTreeSet<String>> = HashMap::new();
    for line in cli(&["alerts", "--json"]).await.lines() {
        let alert: serde_json::Value = serde_json::from_str(line).unwrap();
        alerts
            .entry(alert["device"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert(alert["id"].as_str().unwrap().to_string());
    }
    alerts
}

/// `/proc/<pid>` figures: resident memory in MiB and CPU seconds used.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    (crate::support::rss_kib(pid) as f64 / 1024.0, ticks / 100.0)
}

#[tokio::test]
async fn netward_up_runs_the_example_and_resumes_from_its_data_dir() {
    if !lab::inside() {
        return;
    }
    // Three ATMs go silent; their branch routers stay up, so each is DOWN
    // on its own, with an alert of its own.
    let mut reader = csv::Reader::from_reader(EXAMPLE.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (name_col, ip_col, type_col) = (column("name"), column("ip"), column("type"));
    let devices: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[name_col].to_string(),
                r[ip_col].to_string(),
                r[type_col].to_string(),
            )
        })
        .collect();
    let silent: Vec<(String, String)> = devices
        .iter()
        .filter(|(_, _, kind)| kind == "atm")
        .take(3)
        .map(|(name, ip, _)| (name.clone(), ip.clone()))
        .collect();
    assert_eq!(silent.len(), 3);
    let _rules: Vec<Rule> = silent
        .iter()
        .map(|(_, ip)| Rule::down(&format!("{ip}/32")))
        .collect();
    let silent_names: BTreeSet<String> = silent.iter().map(|(n, _)| n.clone()).collect();

    let dir = std::env::temp_dir().join(format!("netward-up-{:016x}", rand::random::<u64>()));
    let up = Up::start(&dir);

    // The first completed cycle.
    wait_for(&up, "a completed cycle", Duration::from_secs(60), || {
        let lines = up.lines();
        async move { lines.iter().any(|l| l.starts_with("cycle ")).then_some(()) }
    })
    .await;
    let first_cycle = up.started.elapsed();
    let pid = up.child.id().unwrap();
    let banner = up.output();
    assert!(banner.contains("created"), "{banner}");
    assert!(banner.contains("127.0.0.1:50052"), "{banner}");

    // Every device UP but the silent ones, DOWN, with one alert each.
    wait_for(
        &up,
        "every device judged",
        Duration::from_secs(90),
        || async {
            let status: serde_json::Value =
                serde_json::from_str(&cli(&["status", "--json"]).await).unwrap();
            let counts = &status["counts"];
            let down: BTreeSet<String> = status["devices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["state"] == "down")
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (counts["total"] == devices.len()
                && counts["up"] == devices.len() - silent.len()
                && down == silent_names)
                .then_some(())
        },
    )
    .await;
    let alerts = wait_for(
        &up,
        "one alert per silent ATM",
        Duration::from_secs(30),
        || async {
            let alerts = open_alerts().await;
            (alerts.keys().cloned().collect::<BTreeSet<_>>() == silent_names
                && alerts.values().all(|ids| ids.len() == 1))
            .then_some(alerts)
        },
    )
    .await;

    // A minute in: memory and CPU of the whole system (the sleep is the
    // span measured, not a wait for anything).
    let elapsed = up.started.elapsed();
    if elapsed < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(60) - elapsed).await;
    }
    let (rss, cpu) = usage(pid);
    let minute = up.started.elapsed().as_secs_f64();
    let cycles = up
        .lines()
        .iter()
        .filter(|l| l.starts_with("cycle "))
        .count();
    println!(
        "netward up ({} devices): first cycle completed {:.1} s after start; after {minute:.0} s \
         ({cycles} cycles): RSS {rss:.0} MiB, CPU {cpu:.1} s ({:.1} % of one core)",
        devices.len(),
        first_cycle.as_secs_f64(),
        100.0 * cpu / minute
    );
    let stopped = up.interrupt().await;
    assert!(stopped.contains("netward up: stopped"), "{stopped}");

    // The second start resumes: no import, the same open alerts.
    let up = Up::start(&dir);
    wait_for(&up, "two cycles after the restart", Duration::from_secs(60), || {
        let lines = up.lines();
        async move { (lines.iter().filter(|l| l.starts_with("cycle ")).count() >= 2).then_some(()) }
    })
    .await;
    let output = up.output();
    assert!(
        output.contains(&format!(
            "inventory: {} devices (from the data dir)",
            devices.len()
        )),
        "{output}"
    );
    assert_eq!(
        open_alerts().await,
        alerts,
        "the alerts resumed as they were"
    );
    let status: serde_json::Value =
        serde_json::from_str(&cli(&["status", "--json"]).await).unwrap();
    assert_eq!(status["counts"]["down"], silent.len(), "{status}");
    up.interrupt().await;
    std::fs::remove_dir_all(&dir).ok();
}

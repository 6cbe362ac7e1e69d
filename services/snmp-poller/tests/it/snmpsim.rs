//! The poller's interface table against recorded real devices (snmpsim with
//! the Debian package's examples) equals what net-snmp's snmpbulkwalk reads
//! from the same agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use netward_shared::proto::v1::SnmpOutcome;

use crate::agents::{self, SNMPSIM_DATA};
use crate::snmpd::poller;

/// `snmpbulkwalk -v2c -c COMMUNITY -On` of one column: ifIndex → value text.
fn bulkwalk(port: u16, community: &str, column: &str) -> BTreeMap<u32, String> {
    let out = Command::new("snmpbulkwalk")
        .args([
            "-v2c", "-c", community, "-On", "-Oq", "-Oe", "-t", "2", "-r", "1",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg(column)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snmpbulkwalk {column}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!(".{column}.");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (oid, value) = line.split_once(' ')?;
            let index = oid.strip_prefix(&prefix)?.parse().ok()?;
            Some((index, value.trim().trim_matches('"').to_string()))
        })
        .collect()
}

async fn interface_table_matches_bulkwalk(community: &str, record: &Path, min_interfaces: usize) {
    let agent = agents::snmpsim(&[(community, record)]);
    let target = agents::v2c(agent.port, community, "interfaces");
    let (sample, _) = poller().await.poll("127.0.0.1", "", &target, None).await;
    assert_eq!(
        sample.outcome(),
        SnmpOutcome::Ok,
        "{community}: {}",
        sample.error_detail
    );

    let oper = bulkwalk(agent.port, community, "1.3.6.1.2.1.2.2.1.8");
    let names = bulkwalk(agent.port, community, "1.3.6.1.2.1.31.1.1.1.1");
    let in32 = bulkwalk(agent.port, community, "1.3.6.1.2.1.2.2.1.10");
    let out32 = bulkwalk(agent.port, community, "1.3.6.1.2.1.2.2.1.16");
    let in64 = bulkwalk(agent.port, community, "1.3.6.1.2.1.31.1.1.1.6");
    let out64 = bulkwalk(agent.port, community, "1.3.6.1.2.1.31.1.1.1.10");

    let polled: Vec<u32> = sample.interfaces.iter().map(|i| i.if_index).collect();
    let walked: Vec<u32> = oper.keys().copied().collect();
    assert_eq!(polled, walked, "{community}: interfaces");
    assert!(
        polled.len() >= min_interfaces,
        "{community}: {} interfaces",
        polled.len()
    );
    for interface in &sample.interfaces {
        let i = interface.if_index;
        let context = format!("{community} ifIndex {i}");
        assert_eq!(
            Some(&interface.oper_status.to_string()),
            oper.get(&i),
            "{context}: oper"
        );
        assert_eq!(
            names.get(&i).cloned().unwrap_or_default(),
            interface.if_name,
            "{context}: ifName"
        );
        // The HC choice follows what the agent has for this interface.
        assert_eq!(interface.hc, in64.contains_key(&i), "{context}: hc");
        let (ins, outs) = if interface.hc {
            (&in64, &out64)
        } else {
            (&in32, &out32)
        };
        assert_eq!(
            interface.in_octets.map(|v| v.to_string()).as_ref(),
            ins.get(&i),
            "{context}: in"
        );
        assert_eq!(
            interface.out_octets.map(|v| v.to_string()).as_ref(),
            outs.get(&i),
            "{context}: out"
        );
    }
}

#[tokio::test]
async fn linux_full_walk_interfaces_equal_snmpbulkwalk() {
    if !agents::snmpsim_tools() {
        return;
    }
    let record = Path::new(SNMPSIM_DATA).join("recorded/linux-full-walk.snmprec.gz");
    interface_table_matches_bulkwalk("linux", &record, 2).await;
}

#[tokio::test]
async fn hp_and_cisco_records_interfaces_equal_snmpbulkwalk() {
    if !agents::snmpsim_tools() {
        return;
    }
    // The HP ProCurve record has a broken ifXTable (ifName typed INTEGER):
    // whatever the agent makes of it, both readers must see the same.
    let hp = Path::new(SNMPSIM_DATA).join("hp_perf.snmprec.gz");
    interface_table_matches_bulkwalk("hp", &hp, 0).await;
    let cisco = Path::new(SNMPSIM_DATA).join("cisco_16_switch.snmprec.gz");
    interface_table_matches_bulkwalk("cisco", &cisco, 10).await;
}

#[tokio::test]
async fn auto_picks_vendor_profiles_from_recorded_devices() {
    if !agents::snmpsim_tools() {
        return;
    }
    let data = Path::new(SNMPSIM_DATA);
    let agent = agents::snmpsim(&[
        ("cisco", &data.join("cisco_16_switch.snmprec.gz")),
        ("hp", &data.join("hp_perf.snmprec.gz")),
        ("linux", &data.join("recorded/linux-full-walk.snmprec.gz")),
    ]);
    let poller = poller().await;
    for (community, profile) in [
        ("cisco", "cisco"),
        ("hp", "hp-aruba"),
        ("linux", "net-snmp"),
    ] {
        let mut target = agents::v2c(agent.port, community, "auto");
        target.refresh_labels = false;
        let (sample, hints) = poller.poll("127.0.0.1", community, &target, None).await;
        assert_eq!(
            sample.outcome(),
            SnmpOutcome::Ok,
            "{community}: {}",
            sample.error_detail
        );
        assert_eq!(
            (sample.profile.as_str(), hints.resolved_profile.as_str()),
            (profile, profile)
        );
    }
    // The Cisco record's CPU (cpmCPUTotal5minRev.1 = 25) and memory pools.
    let target = agents::v2c(agent.port, "cisco", "cisco");
    let (sample, _) = poller.poll("127.0.0.1", "", &target, None).await;
    let cpu = sample
        .values
        .iter()
        .find(|v| v.name == "cpmCPUTotal5minRev")
        .unwrap();
    assert_eq!(
        (cpu.instance.as_str(), cpu.value.clone()),
        (
            "1",
            Some(netward_shared::proto::v1::scalar_value::Value::Gauge32(25))
        )
    );
    assert!(
        sample
            .values
            .iter()
            .any(|v| v.name == "ciscoMemoryPoolUsed" && v.instance == "1")
    );
}

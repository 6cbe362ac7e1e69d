//! What a stored SNMP batch means for the rules: each polled interface is
//! observed for the interface kinds (down, ISP link down and flapping,
//! utilisation, errors), each answered device for reboots and for the SNMP
//! value thresholds. The alert engine judges them against the rules.

use netward_shared::proto::v1;

use super::book::{SnmpStored, numeric};
use crate::alerts::{Measure, Observation, Subject};

/// Vendor metric names that mean the same thing, so one rule (e.g.
/// `snmp_metric = "cpu.load"`) covers every vendor profile.
pub fn canonical_metric(name: &str) -> Option<&'static str> {
    match name {
        "hrProcessorLoad"
        | "cpmCPUTotal1minRev"
        | "jnxOperatingCPU"
        | "fgSysCpuUsage"
        | "hpSwitchCpuStat"
        | "mtxrHlProcessorLoad" => Some("cpu.load"),
        "fgSysMemUsage" | "jnxOperatingBuffer" => Some("memory.used_percent"),
        _ => None,
    }
}

/// `memory.used_percent` per instance, from the profiles that report
/// memory as amounts: HOST-RESOURCES (the RAM row of hrStorage: used/size),
/// Cisco memory pools (used/(used+free)) and HP local memory
/// (allocated/total). Vendors that report a percentage are mapped by
/// [`canonical_metric`] instead.
pub fn memory_percent(values: &[v1::ScalarValue]) -> Vec<(String, f64)> {
    use std::collections::BTreeMap;
    const HR_STORAGE_RAM: &str = "1.3.6.1.2.1.25.2.1.2";
    let mut by_instance: BTreeMap<&str, BTreeMap<&str, &v1::ScalarValue>> = BTreeMap::new();
    for value in values {
        by_instance
            .entry(value.instance.as_str())
            .or_default()
            .insert(value.name.as_str(), value);
    }
    let number =
        |row: &BTreeMap<&str, &v1::ScalarValue>, name: &str| row.get(name).and_then(|v| numeric(v));
    let percent = |part: f64, whole: f64| (whole > 0.0).then(|| 100.0 * part / whole);
    by_instance
        .into_iter()
        .filter_map(|(instance, row)| {
            let ram = row.get("hrStorageType").is_some_and(|t| {
                matches!(&t.value, Some(v1::scalar_value::Value::ObjectId(oid)) if oid == HR_STORAGE_RAM)
            });
            let used = if ram {
                percent(number(&row, "hrStorageUsed")?, number(&row, "hrStorageSize")?)
            } else if let (Some(used), Some(free)) = (
                number(&row, "ciscoMemoryPoolUsed"),
                number(&row, "ciscoMemoryPoolFree"),
            ) {
                percent(used, used + free)
            } else {
                percent(
                    number(&row, "hpLocalMemAllocBytes")?,
                    number(&row, "hpLocalMemTotalBytes")?,
                )
            }?;
            Some((instance.to_string(), used))
        })
        .collect()
}

fn down(status: &v1::InterfaceStatus) -> bool {
    status.admin_status == v1::IfAdminStatus::Up as i32
        && matches!(
            v1::IfOperStatus::try_from(status.oper_status),
            Ok(v1::IfOperStatus::Down | v1::IfOperStatus::LowerLayerDown)
        )
}

/// The observations of one stored batch, in poll order.
pub fn observations(stored: &SnmpStored) -> Vec<Observation> {
    let mut out = Vec::new();
    for update in &stored.interfaces {
        let status = &update.status;
        let subject = Subject::Interface {
            if_index: status.if_index,
            if_name: status.if_name.clone(),
            role: v1::InterfaceRole::try_from(status.role)
                .unwrap_or(v1::InterfaceRole::Unspecified),
            isp_name: status.isp_name.clone(),
            monitored: status.monitored,
        };
        let observe = |kind: v1::RuleKind, measure: Measure| Observation {
            kind,
            device_id: update.device_id.to_string(),
            subject: subject.clone(),
            measure,
            at: update.polled_at,
            cycle_id: update.cycle_id,
            probe: None,
        };
        let is_down = down(status);
        out.push(observe(
            v1::RuleKind::InterfaceDown,
            Measure::Holds(is_down, "is down (admin up, oper down)"),
        ));
        out.push(observe(
            v1::RuleKind::IspLinkDown,
            Measure::Holds(is_down, "is down (admin up, oper down)"),
        ));
        out.push(observe(
            v1::RuleKind::IspLinkFlapping,
            Measure::Changes(update.oper_changes.clone()),
        ));
        let utilisation = match (
            status.in_utilisation_percent,
            status.out_utilisation_percent,
        ) {
            (Some(i), Some(o)) => Some(i.max(o)),
            (i, o) => i.or(o),
        };
        if let Some(utilisation) = utilisation {
            out.push(observe(
                v1::RuleKind::InterfaceUtilisation,
                Measure::Value(utilisation, "%"),
            ));
        }
        if let (Some(i), Some(o)) = (status.in_errors_per_second, status.out_errors_per_second) {
            out.push(observe(
                v1::RuleKind::InterfaceErrors,
                Measure::Value(i + o, "errors/s"),
            ));
        }
    }
    for update in stored
        .devices
        .iter()
        .filter(|d| d.outcome == v1::SnmpOutcome::Ok)
    {
        let observe = |kind, subject, measure| Observation {
            kind,
            device_id: update.device_id.to_string(),
            subject,
            measure,
            at: update.polled_at,
            cycle_id: update.cycle_id,
            probe: None,
        };
        out.push(observe(
            v1::RuleKind::DeviceRebooted,
            Subject::Device,
            Measure::RebootedAt(update.last_reboot_at),
        ));
        for (instance, used) in memory_percent(&update.values) {
            out.push(observe(
                v1::RuleKind::SnmpThreshold,
                Subject::Value {
                    name: "memory.used_percent".into(),
                    oid: String::new(),
                    instance,
                },
                Measure::Value(used, "%"),
            ));
        }
        for value in &update.values {
            let Some(number) = numeric(value) else {
                continue;
            };
            let names = std::iter::once(value.name.clone())
                .chain(canonical_metric(&value.name).map(String::from));
            for name in names {
                out.push(observe(
                    v1::RuleKind::SnmpThreshold,
                    Subject::Value {
                        name,
                        oid: value.oid.clone(),
                        instance: value.instance.clone(),
                    },
                    Measure::Value(number, ""),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str, instance: &str, value: v1::scalar_value::Value) -> v1::ScalarValue {
        v1::ScalarValue {
            name: name.into(),
            instance: instance.into(),
            value: Some(value),
            ..Default::default()
        }
    }

    #[test]
    fn memory_percent_from_amounts() {
        use v1::scalar_value::Value::{Gauge32, Integer, ObjectId};
        let values = vec![
            // HOST-RESOURCES: row 1 is RAM (3/4 used), row 31 a disk.
            value(
                "hrStorageType",
                "1",
                ObjectId("1.3.6.1.2.1.25.2.1.2".into()),
            ),
            value("hrStorageSize", "1", Integer(4000)),
            value("hrStorageUsed", "1", Integer(3000)),
            value(
                "hrStorageType",
                "31",
                ObjectId("1.3.6.1.2.1.25.2.1.4".into()),
            ),
            value("hrStorageSize", "31", Integer(100)),
            value("hrStorageUsed", "31", Integer(99)),
            // A Cisco processor pool: 900 used, 100 free.
            value("ciscoMemoryPoolUsed", "1.1", Gauge32(900)),
            value("ciscoMemoryPoolFree", "1.1", Gauge32(100)),
            // An HP slot with no total: nothing.
            value("hpLocalMemAllocBytes", "2", Gauge32(5)),
        ];
        assert_eq!(
            memory_percent(&values),
            [("1".to_string(), 75.0), ("1.1".to_string(), 90.0)]
        );
    }

    #[test]
    fn vendor_cpu_metrics_share_one_name() {
        for name in [
            "hrProcessorLoad",
            "cpmCPUTotal1minRev",
            "jnxOperatingCPU",
            "fgSysCpuUsage",
        ] {
            assert_eq!(canonical_metric(name), Some("cpu.load"));
        }
        assert_eq!(canonical_metric("sysUpTime"), None);
    }
}

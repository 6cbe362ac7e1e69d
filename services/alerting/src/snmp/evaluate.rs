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
        "fgSysMemUsage" => Some("memory.used_percent"),
        _ => None,
    }
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

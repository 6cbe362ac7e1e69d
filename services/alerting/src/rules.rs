//! Rules are data: the seeded defaults (the seed system's list), the check
//! of a rule given over gRPC (every field named when wrong), and the merge
//! of an update under its field mask.

use netward_shared::inventory_copy::InventoryCopy;
use netward_shared::proto::v1;
use netward_shared::status::{FieldViolation, Violations};
use uuid::Uuid;

use crate::scope;
use crate::window;

/// The seed system's rules, created when no built-in rule exists.
pub fn default_rules() -> Vec<v1::Rule> {
    let rule = |name: &str,
                kind: v1::RuleKind,
                severity: v1::Severity,
                threshold: f64,
                consecutive: u32,
                description: &str| v1::Rule {
        id: Uuid::new_v4().to_string(),
        name: name.into(),
        description: description.into(),
        kind: kind as i32,
        scope: Some(v1::Scope {
            kind: v1::ScopeKind::Global as i32,
            value: String::new(),
        }),
        severity: severity as i32,
        threshold,
        consecutive,
        enabled: Some(true),
        builtin: true,
        ..Default::default()
    };
    vec![
        rule(
            "device-down",
            v1::RuleKind::DeviceDown,
            v1::Severity::Critical,
            0.0,
            1,
            "the device answers no probe",
        ),
        rule(
            "device-flapping",
            v1::RuleKind::DeviceFlapping,
            v1::Severity::High,
            0.0,
            0,
            "the device keeps going up and down",
        ),
        windowed(rule(
            "high-latency",
            v1::RuleKind::HighLatency,
            v1::Severity::Medium,
            200.0,
            1,
            LATENCY_DESCRIPTION,
        )),
        windowed(rule(
            "packet-loss",
            v1::RuleKind::PacketLoss,
            v1::Severity::Medium,
            10.0,
            1,
            LOSS_DESCRIPTION,
        )),
        v1::Rule {
            interface_roles: vec![
                v1::InterfaceRole::Trunk as i32,
                v1::InterfaceRole::ServerLink as i32,
            ],
            ..rule(
                "interface-down",
                v1::RuleKind::InterfaceDown,
                v1::Severity::Medium,
                0.0,
                2,
                "a trunk or server link admin up, oper down for 2 polls",
            )
        },
        rule(
            "isp-link-down",
            v1::RuleKind::IspLinkDown,
            v1::Severity::High,
            0.0,
            1,
            "an ISP uplink admin up, oper down",
        ),
        v1::Rule {
            window: Some(prost_types::Duration {
                seconds: 15 * 60,
                nanos: 0,
            }),
            ..rule(
                "isp-link-flapping",
                v1::RuleKind::IspLinkFlapping,
                v1::Severity::Medium,
                3.0,
                1,
                "an ISP uplink changed oper status 3 times in 15 min",
            )
        },
        v1::Rule {
            interface_roles: vec![
                v1::InterfaceRole::IspUplink as i32,
                v1::InterfaceRole::Trunk as i32,
            ],
            ..rule(
                "interface-utilisation",
                v1::RuleKind::InterfaceUtilisation,
                v1::Severity::Medium,
                90.0,
                3,
                "an ISP uplink or trunk above 90 % of its speed for 3 polls",
            )
        },
        rule(
            "interface-errors",
            v1::RuleKind::InterfaceErrors,
            v1::Severity::Low,
            10.0,
            3,
            "more than 10 interface errors/s for 3 polls",
        ),
        v1::Rule {
            for_duration: Some(prost_types::Duration {
                seconds: 30 * 60,
                nanos: 0,
            }),
            ..rule(
                "device-rebooted",
                v1::RuleKind::DeviceRebooted,
                v1::Severity::Low,
                0.0,
                1,
                "sysUpTime went back; open for 30 min",
            )
        },
        v1::Rule {
            snmp_metric: "cpu.load".into(),
            ..rule(
                "cpu-high",
                v1::RuleKind::SnmpThreshold,
                v1::Severity::Medium,
                90.0,
                3,
                "CPU load above 90 % for 3 polls (any vendor profile)",
            )
        },
        v1::Rule {
            snmp_metric: "memory.used_percent".into(),
            ..rule(
                "memory-high",
                v1::RuleKind::SnmpThreshold,
                v1::Severity::Medium,
                90.0,
                3,
                "memory above 90 % used for 3 polls (any vendor profile)",
            )
        },
        rule(
            "monitoring-gap",
            v1::RuleKind::MonitoringGap,
            v1::Severity::High,
            0.0,
            0,
            "devices have had no fresh result for stale_after: netward cannot see them",
        ),
    ]
}

const LATENCY_DESCRIPTION: &str = "median RTT of the last 10 probes above 200 ms";
const LOSS_DESCRIPTION: &str =
    "packet loss above 10 % over the last 10 probes (at least 30 packets, beyond chance)";

/// Kinds judged over a window of probes.
fn windowed_kind(kind: v1::RuleKind) -> bool {
    matches!(kind, v1::RuleKind::HighLatency | v1::RuleKind::PacketLoss)
}

/// A latency or loss rule with its window settings spelled out (a zero
/// means the default; responses show what applies).
fn windowed(mut rule: v1::Rule) -> v1::Rule {
    let settings = window::Settings::of(&rule);
    rule.window_probes = settings.window_probes;
    if rule.kind == v1::RuleKind::PacketLoss as i32 {
        rule.min_packets = settings.min_packets;
    } else {
        rule.min_probes = settings.min_probes;
        rule.latency_statistic = settings.statistic as i32;
    }
    rule
}

/// The built-in latency and loss rules as seeded before they judged a
/// window ("for 3 probes"), untouched since: they become today's defaults.
/// Rules changed by an operator are left alone (their zero window fields
/// mean the defaults).
pub fn upgrade_builtin(rule: &v1::Rule) -> Option<v1::Rule> {
    let old_description = match v1::RuleKind::try_from(rule.kind).ok()? {
        v1::RuleKind::HighLatency => "average RTT above 200 ms for 3 probes",
        v1::RuleKind::PacketLoss => "packet loss above 10 % for 3 probes",
        _ => return None,
    };
    let untouched = rule.builtin
        && rule.window_probes == 0
        && rule.consecutive == 3
        && rule.description == old_description;
    if !untouched {
        return None;
    }
    let seeded = default_rules().into_iter().find(|d| d.kind == rule.kind)?;
    Some(v1::Rule {
        description: seeded.description,
        consecutive: seeded.consecutive,
        ..windowed(rule.clone())
    })
}

/// Kinds evaluated per interface (they may filter on interface roles).
fn per_interface(kind: v1::RuleKind) -> bool {
    matches!(
        kind,
        v1::RuleKind::InterfaceDown
            | v1::RuleKind::IspLinkDown
            | v1::RuleKind::IspLinkFlapping
            | v1::RuleKind::InterfaceUtilisation
            | v1::RuleKind::InterfaceErrors
    )
}

const DAY_SECONDS: i64 = 86_400;

fn duration_ok(d: &prost_types::Duration) -> bool {
    (0..=DAY_SECONDS).contains(&d.seconds)
        && (0..1_000_000_000).contains(&d.nanos)
        && !(d.seconds == DAY_SECONDS && d.nanos > 0)
}

/// Checks a rule's own fields and returns it normalised (scope by id,
/// `enabled` set). `channels` are the configured channel names. Identity
/// and output-only fields are left to the caller.
pub fn check(
    rule: &v1::Rule,
    copy: &InventoryCopy,
    channels: &[String],
) -> Result<v1::Rule, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let mut out = rule.clone();
    v.name("rule.name", &rule.name, 128);
    v.text("rule.description", &rule.description, 1024);
    let kind = v1::RuleKind::try_from(rule.kind)
        .ok()
        .filter(|k| *k != v1::RuleKind::Unspecified);
    if kind.is_none() {
        v.add("rule.kind", rule.kind, "required: a RULE_KIND_* value");
    }
    let kind = kind.unwrap_or(v1::RuleKind::Unspecified);
    out.scope = Some(match &rule.scope {
        None => v1::Scope {
            kind: v1::ScopeKind::Global as i32,
            value: String::new(),
        },
        Some(given) => scope::normalize("rule.scope", given, copy).unwrap_or_else(|violation| {
            v.0.push(violation);
            given.clone()
        }),
    });
    if v1::Severity::try_from(rule.severity)
        .ok()
        .is_none_or(|s| s == v1::Severity::Unspecified)
    {
        v.add(
            "rule.severity",
            rule.severity,
            "required: a SEVERITY_* value",
        );
    }
    if !rule.threshold.is_finite() || rule.threshold < 0.0 {
        v.add("rule.threshold", rule.threshold, "a finite number >= 0");
    } else if matches!(
        kind,
        v1::RuleKind::PacketLoss | v1::RuleKind::InterfaceUtilisation
    ) && rule.threshold > 100.0
    {
        v.add("rule.threshold", rule.threshold, "a percentage: 0..=100");
    }
    v.range("rule.consecutive", Some(rule.consecutive), 0, 100);
    if kind == v1::RuleKind::MonitoringGap
        && out
            .scope
            .as_ref()
            .is_some_and(|s| s.kind != v1::ScopeKind::Global as i32)
    {
        v.add(
            "rule.scope",
            out.scope.as_ref().map_or(0, |s| s.kind),
            "a MONITORING_GAP rule covers the whole fleet: scope must be GLOBAL",
        );
    }
    check_window(&mut v, rule, kind);
    for (field, value) in [
        ("rule.for_duration", &rule.for_duration),
        ("rule.window", &rule.window),
    ] {
        if let Some(d) = value
            && !duration_ok(d)
        {
            v.add(field, format!("{}s", d.seconds), "from 0 to 24 h");
        }
    }
    if kind == v1::RuleKind::SnmpThreshold {
        if rule.snmp_metric.is_empty() && rule.snmp_oid.is_empty() {
            v.add(
                "rule.snmp_metric",
                "",
                "an SNMP_THRESHOLD rule needs snmp_metric (or snmp_oid)",
            );
        }
        v.text("rule.snmp_metric", &rule.snmp_metric, 128);
        let numeric = rule
            .snmp_oid
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
        if !rule.snmp_oid.is_empty() && !numeric {
            v.add(
                "rule.snmp_oid",
                &rule.snmp_oid,
                "a numeric OID, e.g. 1.3.6.1.4.1.9.9.109.1.1.1.1.8",
            );
        }
    } else {
        for (field, value) in [
            ("rule.snmp_metric", &rule.snmp_metric),
            ("rule.snmp_oid", &rule.snmp_oid),
        ] {
            if !value.is_empty() {
                v.add(field, value, "only for RULE_KIND_SNMP_THRESHOLD");
            }
        }
    }
    v.enum_value::<v1::ThresholdDirection>("rule.direction", rule.direction);
    if !rule.interface_roles.is_empty() && !per_interface(kind) {
        v.add(
            "rule.interface_roles",
            rule.interface_roles.len(),
            "only for interface rule kinds",
        );
    }
    for role in &rule.interface_roles {
        if v1::InterfaceRole::try_from(*role)
            .ok()
            .is_none_or(|r| r == v1::InterfaceRole::Unspecified)
        {
            v.add("rule.interface_roles", role, "an INTERFACE_ROLE_* value");
        }
    }
    for channel in &rule.channels {
        if !channels.contains(channel) {
            v.add(
                "rule.channels",
                channel,
                format!(
                    "not a configured channel ([alerting.notify] has: {})",
                    channels.join(", ")
                ),
            );
        }
    }
    v.labels("rule.labels", &rule.labels);
    out.enabled = Some(rule.enabled.unwrap_or(true));
    if windowed_kind(kind) {
        out = windowed(out);
    }
    if v.is_empty() { Ok(out) } else { Err(v.0) }
}

/// The window fields: each only for the kinds that judge a window, within
/// its bounds (0 = the default).
fn check_window(v: &mut Violations, rule: &v1::Rule, kind: v1::RuleKind) {
    let loss = kind == v1::RuleKind::PacketLoss;
    let latency = kind == v1::RuleKind::HighLatency;
    let window_probes = window::Settings::of(rule).window_probes;
    let fields = [
        (
            "rule.window_probes",
            rule.window_probes,
            loss || latency,
            "RULE_KIND_HIGH_LATENCY and RULE_KIND_PACKET_LOSS",
            window::MAX_WINDOW_PROBES,
        ),
        (
            "rule.min_packets",
            rule.min_packets,
            loss,
            "RULE_KIND_PACKET_LOSS",
            window::MAX_MIN_PACKETS,
        ),
        (
            "rule.min_probes",
            rule.min_probes,
            latency,
            "RULE_KIND_HIGH_LATENCY",
            window_probes,
        ),
    ];
    for (field, value, applies, kinds, max) in fields {
        if value == 0 {
            continue;
        }
        if !applies {
            v.add(field, value, format!("only for {kinds}"));
        } else if value > max {
            let why = if field == "rule.min_probes" {
                format!("must be 1..={max} (window_probes: the window never holds more)")
            } else {
                format!("must be 1..={max}")
            };
            v.add(field, value, why);
        }
    }
    if rule.latency_statistic != 0 && !latency {
        v.add(
            "rule.latency_statistic",
            rule.latency_statistic,
            "only for RULE_KIND_HIGH_LATENCY",
        );
    } else {
        v.enum_value::<v1::LatencyStatistic>("rule.latency_statistic", rule.latency_statistic);
    }
}

/// Fields an update may name (the proto's names); `kind` is fixed at
/// creation and the rest is output only.
const MUTABLE: &[&str] = &[
    "name",
    "description",
    "scope",
    "severity",
    "threshold",
    "consecutive",
    "for_duration",
    "window",
    "snmp_metric",
    "snmp_oid",
    "direction",
    "interface_roles",
    "enabled",
    "channels",
    "labels",
    "window_probes",
    "min_packets",
    "min_probes",
    "latency_statistic",
];

/// Applies the masked fields of `update` to `current` (empty mask = every
/// mutable field).
pub fn merge(
    current: &v1::Rule,
    update: &v1::Rule,
    mask: &[String],
) -> Result<v1::Rule, Vec<FieldViolation>> {
    let bad: Vec<FieldViolation> = mask
        .iter()
        .filter(|p| !MUTABLE.contains(&p.as_str()))
        .map(|p| {
            let why = if p == "kind" {
                "fixed after creation: create a new rule".to_string()
            } else {
                format!("not a mutable rule field ({})", MUTABLE.join(", "))
            };
            FieldViolation::new("update_mask", p, why)
        })
        .collect();
    if !bad.is_empty() {
        return Err(bad);
    }
    let all = mask.is_empty();
    let wants = |field: &str| all || mask.iter().any(|p| p == field);
    let mut out = current.clone();
    macro_rules! take {
        ($($field:ident),*) => {
            $(if wants(stringify!($field)) {
                out.$field = update.$field.clone();
            })*
        };
    }
    take!(
        name,
        description,
        scope,
        severity,
        threshold,
        consecutive,
        for_duration,
        window,
        snmp_metric,
        snmp_oid,
        direction,
        interface_roles,
        channels,
        labels,
        window_probes,
        min_packets,
        min_probes,
        latency_statistic
    );
    if wants("enabled") {
        out.enabled = Some(update.enabled.unwrap_or(true));
    }
    Ok(out)
}

/// A rule id given in a request (a UUID, or the rule's unique name).
pub fn matches(rule: &v1::Rule, id: &str) -> bool {
    rule.id == id || rule.name == id || Uuid::parse_str(id).is_ok_and(|u| u.to_string() == rule.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> v1::Rule {
        v1::Rule {
            name: "branch latency".into(),
            kind: v1::RuleKind::HighLatency as i32,
            severity: v1::Severity::High as i32,
            threshold: 150.0,
            consecutive: 3,
            ..Default::default()
        }
    }

    fn fields(result: Result<v1::Rule, Vec<FieldViolation>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_plain_rule_is_global_and_enabled() {
        let checked = check(&rule(), &InventoryCopy::default(), &[]).unwrap();
        assert_eq!(checked.scope.unwrap().kind, v1::ScopeKind::Global as i32);
        assert_eq!(checked.enabled, Some(true));
    }

    #[test]
    fn every_bad_field_is_named() {
        let copy = InventoryCopy::default();
        let cases: Vec<(v1::Rule, &[&str])> = vec![
            (
                v1::Rule {
                    name: String::new(),
                    ..rule()
                },
                &["rule.name"],
            ),
            (v1::Rule { kind: 0, ..rule() }, &["rule.kind"]),
            (v1::Rule { kind: 99, ..rule() }, &["rule.kind"]),
            (
                v1::Rule {
                    severity: 0,
                    ..rule()
                },
                &["rule.severity"],
            ),
            (
                v1::Rule {
                    threshold: -1.0,
                    ..rule()
                },
                &["rule.threshold"],
            ),
            (
                v1::Rule {
                    threshold: f64::NAN,
                    ..rule()
                },
                &["rule.threshold"],
            ),
            (
                v1::Rule {
                    kind: v1::RuleKind::PacketLoss as i32,
                    threshold: 120.0,
                    ..rule()
                },
                &["rule.threshold"],
            ),
            (
                v1::Rule {
                    consecutive: 101,
                    ..rule()
                },
                &["rule.consecutive"],
            ),
            (
                v1::Rule {
                    for_duration: Some(prost_types::Duration {
                        seconds: 90_000,
                        nanos: 0,
                    }),
                    ..rule()
                },
                &["rule.for_duration"],
            ),
            (
                v1::Rule {
                    snmp_metric: "cpu.load".into(),
                    ..rule()
                },
                &["rule.snmp_metric"],
            ),
            (
                v1::Rule {
                    kind: v1::RuleKind::SnmpThreshold as i32,
                    ..rule()
                },
                &["rule.snmp_metric"],
            ),
            (
                v1::Rule {
                    kind: v1::RuleKind::SnmpThreshold as i32,
                    snmp_oid: "1.3.x".into(),
                    ..rule()
                },
                &["rule.snmp_oid"],
            ),
            (
                v1::Rule {
                    interface_roles: vec![v1::InterfaceRole::IspUplink as i32],
                    ..rule()
                },
                &["rule.interface_roles"],
            ),
            (
                v1::Rule {
                    channels: vec!["pager".into()],
                    ..rule()
                },
                &["rule.channels"],
            ),
            (
                v1::Rule {
                    scope: Some(v1::Scope {
                        kind: v1::ScopeKind::Site as i32,
                        value: "nowhere".into(),
                    }),
                    ..rule()
                },
                &["rule.scope.value"],
            ),
            (
                v1::Rule {
                    window_probes: 101,
                    min_packets: 30,
                    ..rule()
                },
                &["rule.window_probes", "rule.min_packets"],
            ),
            (
                v1::Rule {
                    window_probes: 4,
                    min_probes: 5,
                    latency_statistic: 7,
                    ..rule()
                },
                &["rule.min_probes", "rule.latency_statistic"],
            ),
            (
                v1::Rule {
                    kind: v1::RuleKind::PacketLoss as i32,
                    threshold: 10.0,
                    min_packets: 10_001,
                    min_probes: 3,
                    latency_statistic: v1::LatencyStatistic::P90 as i32,
                    ..rule()
                },
                &[
                    "rule.min_packets",
                    "rule.min_probes",
                    "rule.latency_statistic",
                ],
            ),
            (
                v1::Rule {
                    kind: v1::RuleKind::DeviceDown as i32,
                    window_probes: 10,
                    ..rule()
                },
                &["rule.window_probes"],
            ),
        ];
        for (rule, want) in cases {
            assert_eq!(
                fields(check(&rule, &copy, &["noc".into()])),
                want,
                "{rule:?}"
            );
        }
    }

    #[test]
    fn window_rules_show_the_settings_that_apply() {
        let checked = check(&rule(), &InventoryCopy::default(), &[]).unwrap();
        assert_eq!(
            (
                checked.window_probes,
                checked.min_probes,
                checked.min_packets,
                checked.latency_statistic
            ),
            (10, 5, 0, v1::LatencyStatistic::Median as i32)
        );
        let loss = v1::Rule {
            kind: v1::RuleKind::PacketLoss as i32,
            threshold: 5.0,
            window_probes: 20,
            ..rule()
        };
        let checked = check(&loss, &InventoryCopy::default(), &[]).unwrap();
        assert_eq!(
            (checked.window_probes, checked.min_packets),
            (20, window::DEFAULT_MIN_PACKETS)
        );
    }

    #[test]
    fn untouched_builtins_of_old_take_the_window_defaults() {
        let old = |kind: v1::RuleKind, description: &str| v1::Rule {
            id: "x".into(),
            name: "old".into(),
            kind: kind as i32,
            threshold: 10.0,
            consecutive: 3,
            description: description.into(),
            builtin: true,
            ..Default::default()
        };
        let loss = old(
            v1::RuleKind::PacketLoss,
            "packet loss above 10 % for 3 probes",
        );
        let upgraded = upgrade_builtin(&loss).unwrap();
        assert_eq!(
            (
                upgraded.consecutive,
                upgraded.window_probes,
                upgraded.min_packets
            ),
            (1, 10, 30)
        );
        assert_eq!((upgraded.id.as_str(), upgraded.threshold), ("x", 10.0));
        assert_eq!(upgrade_builtin(&upgraded), None, "once");
        let changed = v1::Rule {
            consecutive: 5,
            ..loss.clone()
        };
        assert_eq!(
            upgrade_builtin(&changed),
            None,
            "an operator's change stays"
        );
        let custom = v1::Rule {
            builtin: false,
            ..loss
        };
        assert_eq!(upgrade_builtin(&custom), None);
        let latency = old(
            v1::RuleKind::HighLatency,
            "average RTT above 200 ms for 3 probes",
        );
        let upgraded = upgrade_builtin(&latency).unwrap();
        assert_eq!((upgraded.window_probes, upgraded.min_probes), (10, 5));
        assert!(upgraded.description.starts_with("median RTT"));
    }

    #[test]
    fn merge_takes_only_masked_fields_and_refuses_kind() {
        let current = v1::Rule {
            id: "x".into(),
            enabled: Some(true),
            ..rule()
        };
        let update = v1::Rule {
            threshold: 300.0,
            name: "other".into(),
            enabled: Some(false),
            ..Default::default()
        };
        let merged = merge(&current, &update, &["threshold".into(), "enabled".into()]).unwrap();
        assert_eq!(merged.threshold, 300.0);
        assert_eq!(merged.name, "branch latency");
        assert_eq!(merged.enabled, Some(false));
        assert_eq!(
            fields(merge(&current, &update, &["kind".into(), "builtin".into()])),
            ["update_mask", "update_mask"]
        );
    }
}

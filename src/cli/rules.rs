//! `netward rules list|create|update|enable|disable`: alerting's rules.
//! A rule is named by its id, an unambiguous prefix of it, or its exact
//! name. `update` changes only the fields given (the update mask is the
//! flags on the command line).

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use netward_shared::proto::v1::{
    CreateRuleRequest, InterfaceRole, LatencyStatistic, ListRulesRequest, Rule, RuleKind, Severity,
    ThresholdDirection, UpdateRuleRequest,
};
use serde::Serialize;

use super::selectors::{Names, Selector, parse_selector, parse_tag};
use super::services::{Service, ServicesArgs};
use super::table::Table;
use super::when::{parse_duration, proto_duration};
use super::words::{enum_text, parse_enum};

/// Rules per page: the most alerting serves in one.
const PAGE_SIZE: u32 = 1000;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only rules of this kind (device_down, packet_loss, …)
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    kind: Option<RuleKind>,
    /// Only enabled rules
    #[arg(long, conflicts_with = "disabled")]
    enabled: bool,
    /// Only disabled rules
    #[arg(long)]
    disabled: bool,
    /// One JSON object per rule and line, instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    services: ServicesArgs,
}

/// The fields of a rule the verbs set; on `update` only the ones given change.
#[derive(Debug, Args)]
pub struct RuleFields {
    /// Unique name of the rule
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Free-text description
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Severity of its alerts: critical, high, medium, low, info
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    severity: Option<Severity>,
    /// Which devices: global, site:NAME, type:TYPE, tag:KEY=VALUE or device:NAME
    #[arg(long, value_name = "SELECTOR", value_parser = parse_selector)]
    scope: Option<Selector>,
    /// Threshold, in the kind's unit (ms, percent, errors/s, changes, the SNMP value's unit)
    #[arg(long, value_name = "NUMBER")]
    threshold: Option<f64>,
    /// Consecutive probes or polls that must breach before firing (1-100)
    #[arg(long, value_name = "N")]
    consecutive: Option<u32>,
    /// How long the condition must hold before firing (30s, 5m, 1h)
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    for_duration: Option<Duration>,
    /// Counting window of isp_link_flapping (5m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    window: Option<Duration>,
    /// high_latency, packet_loss: probes the sliding window holds (1-100)
    #[arg(long, value_name = "N")]
    window_probes: Option<u32>,
    /// packet_loss: packets the window must hold before it is judged
    #[arg(long, value_name = "N")]
    min_packets: Option<u32>,
    /// high_latency: answered probes the window must hold before it is judged
    #[arg(long, value_name = "N")]
    min_probes: Option<u32>,
    /// high_latency: median or p90 of the window
    #[arg(long, value_name = "STATISTIC", value_parser = parse_statistic)]
    statistic: Option<LatencyStatistic>,
    /// snmp_threshold: metric name from the profile (e.g. cpu.load)
    #[arg(long, value_name = "NAME")]
    metric: Option<String>,
    /// snmp_threshold: numeric OID prefix, when no metric is named
    #[arg(long, value_name = "OID")]
    oid: Option<String>,
    /// snmp_threshold: which side of the threshold is bad, above or below
    #[arg(long, value_name = "SIDE", value_parser = parse_direction)]
    direction: Option<ThresholdDirection>,
    /// Interface kinds: a role the rule applies to (repeat for more; isp_uplink, trunk, access, server_link, other)
    #[arg(long = "role", value_name = "ROLE", value_parser = parse_role)]
    roles: Vec<InterfaceRole>,
    /// A notification channel (by its configured name) to notify; repeat for more [default: every channel]
    #[arg(long = "channel", value_name = "NAME")]
    channels: Vec<String>,
    /// A label copied onto its alerts' notifications, KEY=VALUE; repeat for more
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_tag)]
    labels: Vec<String>,
    /// One JSON object of the rule as stored, instead of a line
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What the rule watches (fixed after creation): device_down, device_flapping, high_latency,
    /// packet_loss, interface_down, isp_link_down, isp_link_flapping, interface_utilisation,
    /// interface_errors, device_rebooted, snmp_threshold, monitoring_gap
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    kind: RuleKind,
    /// Create it disabled
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    fields: RuleFields,
    #[command(flatten)]
    services: ServicesArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The rule: id, unambiguous id prefix, or exact name
    rule: String,
    /// Enable it
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Disable it
    #[arg(long)]
    disable: bool,
    #[command(flatten)]
    fields: RuleFields,
    #[command(flatten)]
    services: ServicesArgs,
}

#[derive(Debug, Args)]
pub struct ToggleArgs {
    /// The rule: id, unambiguous id prefix, or exact name
    rule: String,
    #[command(flatten)]
    services: ServicesArgs,
}

fn parse_kind(text: &str) -> Result<RuleKind, String> {
    parse_enum(
        "rule kind",
        text,
        "RULE_KIND_",
        RuleKind::from_str_name,
        RuleKind::as_str_name,
    )
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    parse_enum(
        "severity",
        text,
        "SEVERITY_",
        Severity::from_str_name,
        Severity::as_str_name,
    )
}

fn parse_statistic(text: &str) -> Result<LatencyStatistic, String> {
    parse_enum(
        "latency statistic",
        text,
        "LATENCY_STATISTIC_",
        LatencyStatistic::from_str_name,
        LatencyStatistic::as_str_name,
    )
}

fn parse_direction(text: &str) -> Result<ThresholdDirection, String> {
    parse_enum(
        "direction",
        text,
        "THRESHOLD_DIRECTION_",
        ThresholdDirection::from_str_name,
        ThresholdDirection::as_str_name,
    )
}

fn parse_role(text: &str) -> Result<InterfaceRole, String> {
    parse_enum(
        "interface role",
        text,
        "INTERFACE_ROLE_",
        InterfaceRole::from_str_name,
        InterfaceRole::as_str_name,
    )
}

impl RuleFields {
    /// Writes the fields given into `rule`; returns their proto names (the update mask).
    async fn apply(&self, rule: &mut Rule, names: &mut Names<'_>) -> anyhow::Result<Vec<String>> {
        let mut mask = Vec::new();
        let mut set = |field: &str| mask.push(field.to_string());
        if let Some(name) = &self.name {
            rule.name = name.clone();
            set("name");
        }
        if let Some(description) = &self.description {
            rule.description = description.clone();
            set("description");
        }
        if let Some(severity) = self.severity {
            rule.severity = severity as i32;
            set("severity");
        }
        if let Some(selector) = &self.scope {
            rule.scope = Some(names.scope(selector).await?);
            set("scope");
        }
        if let Some(threshold) = self.threshold {
            rule.threshold = threshold;
            set("threshold");
        }
        if let Some(consecutive) = self.consecutive {
            rule.consecutive = consecutive;
            set("consecutive");
        }
        if let Some(duration) = self.for_duration {
            rule.for_duration = Some(proto_duration(duration));
            set("for_duration");
        }
        if let Some(window) = self.window {
            rule.window = Some(proto_duration(window));
            set("window");
        }
        if let Some(n) = self.window_probes {
            rule.window_probes = n;
            set("window_probes");
        }
        if let Some(n) = self.min_packets {
            rule.min_packets = n;
            set("min_packets");
        }
        if let Some(n) = self.min_probes {
            rule.min_probes = n;
            set("min_probes");
        }
        if let Some(statistic) = self.statistic {
            rule.latency_statistic = statistic as i32;
            set("latency_statistic");
        }
        if let Some(metric) = &self.metric {
            rule.snmp_metric = metric.clone();
            set("snmp_metric");
        }
        if let Some(oid) = &self.oid {
            rule.snmp_oid = oid.clone();
            set("snmp_oid");
        }
        if let Some(direction) = self.direction {
            rule.direction = direction as i32;
            set("direction");
        }
        if !self.roles.is_empty() {
            rule.interface_roles = self.roles.iter().map(|role| *role as i32).collect();
            set("interface_roles");
        }
        if !self.channels.is_empty() {
            rule.channels = self.channels.clone();
            set("channels");
        }
        if !self.labels.is_empty() {
            rule.labels = self
                .labels
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            set("labels");
        }
        Ok(mask)
    }
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let enabled = match (args.enabled, args.disabled) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let rules = fetch(&args.services, args.kind, enabled).await?;
    let mut names = Names::new(&args.services)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        for rule in &rules {
            let json = RuleJson::of(rule, &mut names).await;
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
    } else if rules.is_empty() {
        eprintln!("no rules");
    } else {
        let mut table = Table::new(vec![
            "id",
            "name",
            "kind",
            "severity",
            "threshold",
            "scope",
            "enabled",
            "builtin",
        ]);
        for rule in &rules {
            let scope = match &rule.scope {
                Some(scope) => names.describe(scope).await,
                None => "global".into(),
            };
            table.push(vec![
                rule.id.chars().take(8).collect(),
                rule.name.clone(),
                kind_text(rule.kind()),
                enum_text(rule.severity().as_str_name(), "SEVERITY_"),
                threshold_text(rule),
                scope,
                yes_no(rule.enabled.unwrap_or(true)),
                yes_no(rule.builtin),
            ]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

async fn fetch(
    services: &ServicesArgs,
    kind: Option<RuleKind>,
    enabled: Option<bool>,
) -> anyhow::Result<Vec<Rule>> {
    let mut client = services.alerting()?;
    let mut rules = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_rules(ListRulesRequest {
                kind: kind.unwrap_or_default() as i32,
                enabled,
                page_size: PAGE_SIZE,
                page_token,
            })
            .await
            .map_err(|status| services.call_failed(Service::Alerting, "ListRules", &status))?
            .into_inner();
        rules.extend(page.rules);
        if page.next_page_token.is_empty() {
            return Ok(rules);
        }
        page_token = page.next_page_token;
    }
}

/// The one rule `key` names: its exact id or name, else the only id it prefixes.
async fn find(services: &ServicesArgs, key: &str) -> anyhow::Result<Rule> {
    let rules = fetch(services, None, None).await?;
    if let Some(rule) = rules.iter().find(|r| r.id == key || r.name == key) {
        return Ok(rule.clone());
    }
    let mut prefixed = rules.into_iter().filter(|r| r.id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(rule), None) => Ok(rule),
        (Some(_), Some(_)) => {
            bail!("{key:?} is the start of more than one rule id: give more of it")
        }
        (None, _) => bail!("no rule has the id or name {key:?} (netward rules list shows them)"),
    }
}

pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let mut names = Names::new(&args.services)?;
    let mut rule = Rule {
        kind: args.kind as i32,
        enabled: Some(!args.disabled),
        ..Rule::default()
    };
    args.fields.apply(&mut rule, &mut names).await?;
    if rule.name.is_empty() {
        bail!("a rule needs --name");
    }
    if rule.severity == 0 {
        bail!("a rule needs --severity (critical, high, medium, low, info)");
    }
    let created = args
        .services
        .alerting()?
        .create_rule(CreateRuleRequest { rule: Some(rule) })
        .await
        .map_err(|status| {
            args.services
                .call_failed(Service::Alerting, "CreateRule", &status)
        })?
        .into_inner()
        .rule
        .context("CreateRule answered without the rule")?;
    report("created", &created, args.fields.json, &mut names).await
}

pub async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let mut names = Names::new(&args.services)?;
    let mut rule = find(&args.services, &args.rule).await?;
    let mut mask = args.fields.apply(&mut rule, &mut names).await?;
    if args.enable || args.disable {
        rule.enabled = Some(args.enable);
        mask.push("enabled".into());
    }
    if mask.is_empty() {
        bail!("nothing to change: give the fields to update (netward rules update --help)");
    }
    send_update(&args.services, rule, mask, args.fields.json, &mut names).await
}

pub async fn set_enabled(args: ToggleArgs, enabled: bool) -> anyhow::Result<()> {
    let mut names = Names::new(&args.services)?;
    let mut rule = find(&args.services, &args.rule).await?;
    rule.enabled = Some(enabled);
    send_update(
        &args.services,
        rule,
        vec!["enabled".into()],
        false,
        &mut names,
    )
    .await
}

async fn send_update(
    services: &ServicesArgs,
    rule: Rule,
    mask: Vec<String>,
    json: bool,
    names: &mut Names<'_>,
) -> anyhow::Result<()> {
    let updated = services
        .alerting()?
        .update_rule(UpdateRuleRequest {
            rule: Some(rule),
            update_mask: Some(prost_types::FieldMask { paths: mask }),
        })
        .await
        .map_err(|status| services.call_failed(Service::Alerting, "UpdateRule", &status))?
        .into_inner()
        .rule
        .context("UpdateRule answered without the rule")?;
    report("updated", &updated, json, names).await
}

async fn report(verb: &str, rule: &Rule, json: bool, names: &mut Names<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let json = RuleJson::of(rule, names).await;
        writeln!(out, "{}", serde_json::to_string(&json)?)?;
    } else {
        writeln!(
            out,
            "{verb} rule {} ({}): {}, {}, threshold {}, {}",
            rule.name,
            rule.id,
            kind_text(rule.kind()),
            enum_text(rule.severity().as_str_name(), "SEVERITY_"),
            threshold_text(rule),
            if rule.enabled.unwrap_or(true) {
                "enabled"
            } else {
                "disabled"
            }
        )?;
    }
    Ok(())
}

fn kind_text(kind: RuleKind) -> String {
    enum_text(kind.as_str_name(), "RULE_KIND_")
}

/// The threshold with its unit where the kind fixes one.
fn threshold_text(rule: &Rule) -> String {
    let value = if rule.threshold.fract() == 0.0 {
        format!("{:.0}", rule.threshold)
    } else {
        format!("{}", rule.threshold)
    };
    match rule.kind() {
        RuleKind::HighLatency => format!("{value} ms"),
        RuleKind::PacketLoss | RuleKind::InterfaceUtilisation => format!("{value} %"),
        RuleKind::DeviceDown | RuleKind::DeviceFlapping | RuleKind::MonitoringGap => "-".into(),
        _ => value,
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

/// A rule as `--json` prints it: enums as words, scope in words, durations in seconds.
#[derive(Debug, Serialize)]
struct RuleJson {
    id: String,
    name: String,
    description: String,
    kind: String,
    scope: String,
    severity: String,
    threshold: f64,
    consecutive: u32,
    for_seconds: Option<i64>,
    window_seconds: Option<i64>,
    window_probes: u32,
    min_packets: u32,
    min_probes: u32,
    latency_statistic: String,
    snmp_metric: String,
    snmp_oid: String,
    direction: String,
    interface_roles: Vec<String>,
    enabled: bool,
    builtin: bool,
    channels: Vec<String>,
    labels: BTreeMap<String, String>,
}

impl RuleJson {
    async fn of(rule: &Rule, names: &mut Names<'_>) -> Self {
        let scope = match &rule.scope {
            Some(scope) => names.describe(scope).await,
            None => "global".into(),
        };
        Self {
            id: rule.id.clone(),
            name: rule.name.clone(),
            description: rule.description.clone(),
            kind: kind_text(rule.kind()),
            scope,
            severity: enum_text(rule.severity().as_str_name(), "SEVERITY_"),
            threshold: rule.threshold,
            consecutive: rule.consecutive,
            for_seconds: rule.for_duration.map(|d| d.seconds),
            window_seconds: rule.window.map(|d| d.seconds),
            window_probes: rule.window_probes,
            min_packets: rule.min_packets,
            min_probes: rule.min_probes,
            latency_statistic: enum_text(
                rule.latency_statistic().as_str_name(),
                "LATENCY_STATISTIC_",
            ),
            snmp_metric: rule.snmp_metric.clone(),
            snmp_oid: rule.snmp_oid.clone(),
            direction: enum_text(rule.direction().as_str_name(), "THRESHOLD_DIRECTION_"),
            interface_roles: rule
                .interface_roles()
                .map(|role| enum_text(role.as_str_name(), "INTERFACE_ROLE_"))
                .collect(),
            enabled: rule.enabled.unwrap_or(true),
            builtin: rule.builtin,
            channels: rule.channels.clone(),
            labels: rule.labels.clone().into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_severities_read_as_the_table_writes_them() {
        assert_eq!(parse_kind("packet_loss"), Ok(RuleKind::PacketLoss));
        assert_eq!(parse_kind("packet-loss"), Ok(RuleKind::PacketLoss));
        assert!(parse_kind("loss").unwrap_err().contains("monitoring_gap"));
        assert_eq!(parse_severity("critical"), Ok(Severity::Critical));
        assert_eq!(parse_role("isp_uplink"), Ok(InterfaceRole::IspUplink));
    }

    #[test]
    fn thresholds_carry_their_kinds_unit() {
        let rule = |kind: RuleKind, threshold| Rule {
            kind: kind as i32,
            threshold,
            ..Rule::default()
        };
        assert_eq!(
            threshold_text(&rule(RuleKind::HighLatency, 150.0)),
            "150 ms"
        );
        assert_eq!(threshold_text(&rule(RuleKind::PacketLoss, 2.5)), "2.5 %");
        assert_eq!(threshold_text(&rule(RuleKind::DeviceDown, 0.0)), "-");
    }
}

//! `netward status`, `netward alerts` and `netward alerts ack ID`: clients
//! of alerting's query RPCs (`ListDeviceStatuses`, `ListAlerts`, `AckAlert`)
//! that print the counts per state and the devices not UP, the alerts as a
//! table or JSON lines, and the acknowledged alert.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::Args;
use netward_shared::client::PeerChannel;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::{
    AckAlertRequest, Alert, AlertState, DeviceState, DeviceStatus, ListAlertsRequest,
    ListDeviceStatusesRequest, ProbeOutcome, RuleKind, Severity, StateCounts,
};
use netward_shared::tonic::Status;
use serde::Serialize;

use super::csv_format;
use super::planner::age;
use super::table::Table;
use super::words::enum_text;
use super::{TlsArgs, describe_status};

/// Statuses or alerts per page: the most alerting serves in one.
const PAGE_SIZE: u32 = 1000;
/// The states `status` lists: every one but UP.
const NOT_UP: [DeviceState; 4] = [
    DeviceState::Down,
    DeviceState::Flapping,
    DeviceState::Unreachable,
    DeviceState::Unknown,
];
/// Characters of an alert id the table shows, and the usual prefix to `ack`.
const SHORT_ID: usize = 8;
/// Characters of a full alert id (a UUID with its hyphens).
const FULL_ID: usize = 36;

/// Where alerting is and how to authenticate: every alerting verb takes these.
#[derive(Debug, Args)]
pub struct AlertingArgs {
    /// Alerting service to call
    #[arg(
        long,
        env = "NETWARD_ALERTING_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50053"
    )]
    alerting_url: String,
    /// Bearer token sent with every call
    #[arg(
        long,
        env = "NETWARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

type AlertingClient = AlertingServiceClient<PeerChannel>;

impl AlertingArgs {
    /// A client on a lazy channel: nothing is dialled until the first call.
    pub(super) fn client(&self) -> anyhow::Result<AlertingClient> {
        let options = self.tls.client_options(self.token.as_ref());
        let channel = netward_shared::client::connect(&self.alerting_url, &options)
            .context("cannot set up the alerting client")?;
        Ok(AlertingServiceClient::new(channel))
    }

    /// An error for a failed call, naming the RPC, the service, and the
    /// status code and message the operator can act on.
    pub(super) fn call_failed(&self, rpc: &str, status: &Status) -> anyhow::Error {
        anyhow::anyhow!(
            "{rpc} at {}: {}",
            self.alerting_url,
            describe_status(status)
        )
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only devices of this site (exact name); the counts are then the site's
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    /// One JSON object with the counts and the devices not UP, instead of a line and a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    alerting: AlertingArgs,
}

/// `status --json`: the counts and the devices not UP.
#[derive(Debug, Serialize)]
struct StatusJson {
    counts: CountsJson,
    /// Age of the oldest last conclusive result, in seconds.
    oldest_result_age_seconds: Option<f64>,
    devices: Vec<DeviceStatusJson>,
}

#[derive(Debug, Serialize)]
struct CountsJson {
    total: u64,
    up: u64,
    down: u64,
    unreachable: u64,
    flapping: u64,
    unknown: u64,
    maintenance: u64,
    stale: u64,
}

#[derive(Debug, Serialize)]
struct DeviceStatusJson {
    id: String,
    name: String,
    ip: String,
    site: String,
    region: String,
    #[serde(rename = "type")]
    device_type: String,
    parent: Option<String>,
    state: String,
    maintenance: bool,
    stale: bool,
    state_since: Option<String>,
    state_reason: String,
    last_probe_at: Option<String>,
    last_outcome: Option<String>,
    last_loss_percent: Option<f64>,
    last_rtt_avg_us: Option<u32>,
    consecutive_failures: u32,
    recent_changes: u32,
    open_alerts: u32,
    last_cycle_id: u64,
}

impl From<StateCounts> for CountsJson {
    fn from(counts: StateCounts) -> Self {
        Self {
            total: counts.total,
            up: counts.up,
            down: counts.down,
            unreachable: counts.unreachable,
            flapping: counts.flapping,
            unknown: counts.unknown,
            maintenance: counts.maintenance,
            stale: counts.stale,
        }
    }
}

impl From<DeviceStatus> for DeviceStatusJson {
    fn from(status: DeviceStatus) -> Self {
        let last_outcome = match status.last_outcome() {
            ProbeOutcome::Unspecified => None,
            outcome => Some(enum_text(outcome.as_str_name(), "PROBE_OUTCOME_")),
        };
        Self {
            device_type: csv_format::device_type_text(status.device_type()),
            state: state_text(status.state).to_string(),
            parent: Some(status.parent_device_name).filter(|name| !name.is_empty()),
            state_since: status.state_since.map(|at| at.to_string()),
            last_probe_at: status.last_probe_at.map(|at| at.to_string()),
            last_outcome,
            id: status.device_id,
            name: status.device_name,
            ip: status.ip_address,
            site: status.site_name,
            region: status.region,
            maintenance: status.maintenance,
            stale: status.stale,
            state_reason: status.state_reason,
            last_loss_percent: status.last_loss_percent,
            last_rtt_avg_us: status.last_rtt_avg_us,
            consecutive_failures: status.consecutive_failures,
            recent_changes: status.recent_changes,
            open_alerts: status.open_alerts,
            last_cycle_id: status.last_cycle_id,
        }
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = args.alerting.client()?;
    let mut counts = None;
    let mut oldest_result_age = None;
    let mut devices = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_device_statuses(ListDeviceStatusesRequest {
                site_name: args.site.clone().unwrap_or_default(),
                states: NOT_UP.iter().map(|&state| state as i32).collect(),
                page_size: PAGE_SIZE,
                page_token,
                ..ListDeviceStatusesRequest::default()
            })
            .await
            .map_err(|status| args.alerting.call_failed("ListDeviceStatuses", &status))?
            .into_inner();
        // Every page carries the counts over all pages; the first page's
        // are the picture when the listing began.
        if counts.is_none() {
            counts = page.counts;
            oldest_result_age = page
                .oldest_result_age
                .and_then(|age| Duration::try_from(age).ok());
        }
        devices.extend(page.statuses);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let counts = counts.unwrap_or_default();
    sort_not_up(&mut devices);

    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        let status = StatusJson {
            counts: CountsJson::from(counts),
            oldest_result_age_seconds: oldest_result_age.map(|age| age.as_secs_f64()),
            devices: devices.into_iter().map(DeviceStatusJson::from).collect(),
        };
        // Through a String: serde_json hides an I/O error's kind, and a
        // closed pipe must stay recognisable.
        let line = serde_json::to_string(&status)?;
        writeln!(out, "{line}")?;
    } else {
        write_status(
            &mut out,
            &counts,
            oldest_result_age,
            &devices,
            SystemTime::now(),
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Worst state first (DOWN, FLAPPING, UNREACHABLE, UNKNOWN), as the proto
/// documents the order, then by name: the same table whatever order the
/// pages came in.
fn sort_not_up(devices: &mut [DeviceStatus]) {
    devices.sort_by(|a, b| {
        state_rank(a.state)
            .cmp(&state_rank(b.state))
            .then_with(|| a.device_name.cmp(&b.device_name))
    });
}

fn state_rank(state: i32) -> u8 {
    match DeviceState::try_from(state) {
        Ok(DeviceState::Down) => 0,
        Ok(DeviceState::Flapping) => 1,
        Ok(DeviceState::Unreachable) => 2,
        Ok(DeviceState::Unknown) => 3,
        Ok(DeviceState::Up) => 4,
        Ok(DeviceState::Unspecified) | Err(_) => 5,
    }
}

/// The counts line, then (a blank line apart) the devices not UP, if any.
fn write_status(
    out: &mut impl io::Write,
    counts: &StateCounts,
    oldest_result_age: Option<Duration>,
    devices: &[DeviceStatus],
    now: SystemTime,
) -> io::Result<()> {
    writeln!(out, "{}", counts_line(counts, oldest_result_age))?;
    if devices.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(vec![
        "name",
        "ip",
        "site",
        "state",
        "since",
        "reason",
        "last loss %",
    ]);
    for device in devices {
        table.push(status_row(device, now));
    }
    table.write(out)
}

/// One line of counts, with how fresh the view is: stale devices (no
/// conclusive result for `stale_after`) and the oldest result's age.
fn counts_line(counts: &StateCounts, oldest_result_age: Option<Duration>) -> String {
    let oldest = oldest_result_age.map_or_else(
        || "no result yet".to_string(),
        |age| format!("oldest result {}s ago", age.as_secs()),
    );
    format!(
        "total {}: up {}, down {}, unreachable {}, flapping {}, unknown {}, maintenance {}; stale {}, {oldest}",
        counts.total,
        counts.up,
        counts.down,
        counts.unreachable,
        counts.flapping,
        counts.unknown,
        counts.maintenance,
        counts.stale,
    )
}

fn status_row(device: &DeviceStatus, now: SystemTime) -> Vec<String> {
    let state = state_text(device.state);
    vec![
        device.device_name.clone(),
        device.ip_address.clone(),
        device.site_name.clone(),
        match (device.maintenance, device.stale) {
            (true, true) => format!("{state} (maintenance, stale)"),
            (true, false) => format!("{state} (maintenance)"),
            (false, true) => format!("{state} (stale)"),
            (false, false) => state.to_string(),
        },
        age(device.state_since.as_ref(), now),
        dash_if_empty(&device.state_reason),
        device
            .last_loss_percent
            .map_or_else(|| "-".to_string(), percent_text),
    ]
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Resolved alerts too (the history), not only the open ones
    #[arg(long)]
    all: bool,
    /// One JSON object per alert and line, instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    alerting: AlertingArgs,
}

/// An alert as `alerts --json` prints it: the proto's fields, enums as
/// lower-case words, timestamps as RFC 3339.
#[derive(Debug, Serialize)]
struct AlertJson {
    id: String,
    severity: String,
    state: String,
    rule_id: String,
    rule: String,
    rule_kind: String,
    device_id: String,
    device: String,
    ip: String,
    #[serde(rename = "type")]
    device_type: String,
    site_id: String,
    site: String,
    region: String,
    parent_device_id: Option<String>,
    if_index: Option<u32>,
    if_name: Option<String>,
    isp_name: Option<String>,
    started_at: Option<String>,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    ack_comment: Option<String>,
    resolved_at: Option<String>,
    updated_at: Option<String>,
    summary: String,
    loss_percent: Option<f64>,
    rtt_avg_us: Option<u32>,
    cycle_id: u64,
    value: Option<f64>,
    threshold: f64,
    suppressed: bool,
    suppression_reason: Option<String>,
    silence_id: Option<String>,
    maintenance: bool,
    labels: BTreeMap<String, String>,
}

impl From<Alert> for AlertJson {
    fn from(alert: Alert) -> Self {
        let non_empty = |text: String| Some(text).filter(|text| !text.is_empty());
        Self {
            severity: severity_text(alert.severity).to_string(),
            state: alert_state_text(alert.state).to_string(),
            rule_kind: rule_kind_text(alert.rule_kind()),
            device_type: csv_format::device_type_text(alert.device_type()),
            started_at: alert.started_at.map(|at| at.to_string()),
            acknowledged_at: alert.acknowledged_at.map(|at| at.to_string()),
            resolved_at: alert.resolved_at.map(|at| at.to_string()),
            updated_at: alert.updated_at.map(|at| at.to_string()),
            parent_device_id: non_empty(alert.parent_device_id),
            if_name: non_empty(alert.if_name),
            isp_name: non_empty(alert.isp_name),
            acknowledged_by: non_empty(alert.acknowledged_by),
            ack_comment: non_empty(alert.ack_comment),
            suppression_reason: non_empty(alert.suppression_reason),
            silence_id: non_empty(alert.silence_id),
            labels: alert.labels.into_iter().collect(),
            id: alert.id,
            rule_id: alert.rule_id,
            rule: alert.rule_name,
            device_id: alert.device_id,
            device: alert.device_name,
            ip: alert.ip_address,
            site_id: alert.site_id,
            site: alert.site_name,
            region: alert.region,
            if_index: alert.if_index,
            summary: alert.summary,
            loss_percent: alert.loss_percent,
            rtt_avg_us: alert.rtt_avg_us,
            cycle_id: alert.cycle_id,
            value: alert.value,
            threshold: alert.threshold,
            suppressed: alert.suppressed,
            maintenance: alert.maintenance,
        }
    }
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = args.alerting.client()?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut alerts = Vec::new();
    let mut received = 0_u64;
    // Alerts matching, all pages together, as the last page counts them.
    let mut total;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_alerts(ListAlertsRequest {
                include_resolved: args.all,
                page_size: PAGE_SIZE,
                page_token,
                ..ListAlertsRequest::default()
            })
            .await
            .map_err(|status| args.alerting.call_failed("ListAlerts", &status))?
            .into_inner();
        received += page.alerts.len() as u64;
        total = page.total_count;
        if args.json {
            for alert in page.alerts {
                // Through a String: serde_json hides an I/O error's kind, and a
                // closed pipe must stay recognisable.
                let line = serde_json::to_string(&AlertJson::from(alert))?;
                writeln!(out, "{line}")?;
            }
            // JSON lines go out page by page; a table needs every row for its widths.
            out.flush()?;
        } else {
            alerts.extend(page.alerts);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if !args.json {
        if alerts.is_empty() {
            eprintln!(
                "{}",
                if args.all {
                    "no alerts"
                } else {
                    "no open alerts"
                }
            );
        } else {
            sort_newest_first(&mut alerts);
            write_alerts(&mut out, &alerts, SystemTime::now())?;
        }
    }
    out.flush()?;
    if received < total {
        // Said on standard error, so a script reading the lines still gets
        // only alerts, and a reader of the table is not misled.
        eprintln!("only {received} of {total} alerts were returned by alerting");
    }
    Ok(())
}

/// Newest first, as alerting pages them; stable, so equal start times keep its order.
fn sort_newest_first(alerts: &mut [Alert]) {
    alerts.sort_by_key(|alert| Reverse(alert.started_at.map(|at| (at.seconds, at.nanos))));
}

fn write_alerts(out: &mut impl io::Write, alerts: &[Alert], now: SystemTime) -> io::Result<()> {
    let mut table = Table::new(vec![
        "id", "severity", "state", "rule", "device", "site", "started", "summary",
    ]);
    for alert in alerts {
        table.push(alert_row(alert, now));
    }
    table.write(out)
}

fn alert_row(alert: &Alert, now: SystemTime) -> Vec<String> {
    vec![
        short_id(&alert.id).to_string(),
        severity_text(alert.severity).to_string(),
        alert_state_text(alert.state).to_string(),
        alert.rule_name.clone(),
        alert.device_name.clone(),
        alert.site_name.clone(),
        age(alert.started_at.as_ref(), now),
        alert.summary.clone(),
    ]
}

#[derive(Debug, Args)]
pub struct AckArgs {
    /// Alert id: the full UUID, or an unambiguous prefix such as the 8 characters `alerts` shows
    #[arg(value_name = "ID")]
    id: String,
    /// Who acknowledges [default: $USER, else "cli"]
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Why, or what is being done about it (at most 1024 characters)
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
    #[command(flatten)]
    alerting: AlertingArgs,
}

pub async fn ack(args: AckArgs) -> anyhow::Result<()> {
    let mut client = args.alerting.client()?;
    let id = resolve_id(&mut client, &args).await?;
    let by = args.by.clone().unwrap_or_else(default_acknowledger);
    let alert = client
        .ack_alert(AckAlertRequest {
            id: id.clone(),
            acknowledged_by: by,
            comment: args.comment.clone().unwrap_or_default(),
        })
        .await
        .map_err(|status| args.alerting.call_failed("AckAlert", &status))?
        .into_inner()
        .alert
        .with_context(|| {
            format!(
                "AckAlert at {}: no alert in the answer",
                args.alerting.alerting_url
            )
        })?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}", acked_line(&alert, SystemTime::now()))?;
    out.flush()?;
    Ok(())
}

/// `$USER`, so the alert says who; "cli" where there is none (a container, cron).
fn default_acknowledger() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.trim().is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

/// A full id goes as it is; a shorter one is a prefix of exactly one open
/// alert's id (a resolved alert cannot be acknowledged anyway).
async fn resolve_id(client: &mut AlertingClient, args: &AckArgs) -> anyhow::Result<String> {
    let prefix = args.id.trim();
    if prefix.is_empty() {
        bail!("the alert id is empty: give the id `netward alerts` shows");
    }
    if prefix.len() >= FULL_ID {
        return Ok(prefix.to_string());
    }
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_alerts(ListAlertsRequest {
                page_size: PAGE_SIZE,
                page_token,
                ..ListAlertsRequest::default()
            })
            .await
            .map_err(|status| args.alerting.call_failed("ListAlerts", &status))?
            .into_inner();
        ids.extend(page.alerts.into_iter().map(|alert| alert.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match_prefix(prefix, ids)
}

fn match_prefix(prefix: &str, ids: Vec<String>) -> anyhow::Result<String> {
    let wanted = prefix.to_ascii_lowercase();
    let mut matching: Vec<String> = ids
        .into_iter()
        .filter(|id| id.to_ascii_lowercase().starts_with(&wanted))
        .collect();
    match matching.len() {
        0 => bail!("no open alert has an id starting with {prefix:?} (see `netward alerts`)"),
        1 => Ok(matching.remove(0)),
        n => bail!(
            "{prefix:?} is the start of {n} open alerts' ids ({}): give more characters",
            matching.join(", ")
        ),
    }
}

/// `acknowledged 1f0c2a3b by alice ("ISP ticket"): critical device-down on
/// tbilisi-001-rtr1 (tbilisi-001), started 5m ago: <summary>`.
fn acked_line(alert: &Alert, now: SystemTime) -> String {
    let mut line = format!(
        "{} {} by {}",
        alert_state_text(alert.state),
        short_id(&alert.id),
        dash_if_empty(&alert.acknowledged_by)
    );
    if !alert.ack_comment.is_empty() {
        line.push_str(&format!(" ({:?})", alert.ack_comment));
    }
    line.push_str(&format!(
        ": {} {} on {} ({}), started {}",
        severity_text(alert.severity),
        alert.rule_name,
        alert.device_name,
        alert.site_name,
        age(alert.started_at.as_ref(), now)
    ));
    if !alert.summary.is_empty() {
        line.push_str(": ");
        line.push_str(&alert.summary);
    }
    line
}

/// The first 8 characters of an id, as `docker ps` shortens ids.
fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}

/// `down`, `unreachable`, …: the proto's name without its prefix, lower case.
fn state_text(state: i32) -> &'static str {
    match DeviceState::try_from(state) {
        Ok(DeviceState::Up) => "up",
        Ok(DeviceState::Down) => "down",
        Ok(DeviceState::Unreachable) => "unreachable",
        Ok(DeviceState::Flapping) => "flapping",
        Ok(DeviceState::Unknown) => "unknown",
        Ok(DeviceState::Unspecified) | Err(_) => "?",
    }
}

fn severity_text(severity: i32) -> &'static str {
    match Severity::try_from(severity) {
        Ok(Severity::Critical) => "critical",
        Ok(Severity::High) => "high",
        Ok(Severity::Medium) => "medium",
        Ok(Severity::Low) => "low",
        Ok(Severity::Info) => "info",
        Ok(Severity::Unspecified) | Err(_) => "?",
    }
}

fn alert_state_text(state: i32) -> &'static str {
    match AlertState::try_from(state) {
        Ok(AlertState::Firing) => "firing",
        Ok(AlertState::Acknowledged) => "acknowledged",
        Ok(AlertState::Resolved) => "resolved",
        Ok(AlertState::Unspecified) | Err(_) => "?",
    }
}

/// `device_down`, `packet_loss`, …; empty for UNSPECIFIED.
fn rule_kind_text(kind: RuleKind) -> String {
    if kind == RuleKind::Unspecified {
        return String::new();
    }
    enum_text(kind.as_str_name(), "RULE_KIND_")
}

/// `100`, `33.3`: whole percentages without a decimal, others with one.
fn percent_text(percent: f64) -> String {
    if percent.fract() == 0.0 {
        format!("{percent:.0}")
    } else {
        format!("{percent:.1}")
    }
}

fn dash_if_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost_types::Timestamp;

    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(ago: Duration) -> Option<Timestamp> {
        Some(Timestamp::from(now() - ago))
    }

    fn device(name: &str, state: DeviceState, ago: u64) -> DeviceStatus {
        DeviceStatus {
            device_id: format!("id-{name}"),
            device_name: name.into(),
            site_name: "tbilisi-001".into(),
            state: state as i32,
            state_since: at(Duration::from_secs(ago)),
            ..DeviceStatus::default()
        }
    }

    fn alert(id: &str, severity: Severity, state: AlertState, started_ago: u64) -> Alert {
        Alert {
            id: id.into(),
            rule_name: "device-down".into(),
            rule_kind: RuleKind::DeviceDown as i32,
            device_name: "tbilisi-001-rtr1".into(),
            site_name: "tbilisi-001".into(),
            severity: severity as i32,
            state: state as i32,
            started_at: at(Duration::from_secs(started_ago)),
            summary: "tbilisi-001-rtr1 DOWN: 3/3 lost + 2 retries".into(),
            ..Alert::default()
        }
    }

    #[test]
    fn the_counts_line_names_every_state() {
        let counts = StateCounts {
            total: 900,
            up: 850,
            down: 20,
            unreachable: 20,
            flapping: 1,
            unknown: 9,
            maintenance: 0,
            stale: 3,
        };
        assert_eq!(
            counts_line(&counts, Some(Duration::from_millis(12_400))),
            "total 900: up 850, down 20, unreachable 20, flapping 1, unknown 9, maintenance 0; stale 3, oldest result 12s ago"
        );
        assert!(counts_line(&counts, None).ends_with("; stale 3, no result yet"));
    }

    #[test]
    fn status_lists_the_devices_not_up_worst_first() {
        let mut devices = vec![
            DeviceStatus {
                ip_address: "127.1.2.20".into(),
                state_reason: "parent tbilisi-001-rtr1 is DOWN".into(),
                last_loss_percent: Some(100.0),
                ..device("tbilisi-001-sw2", DeviceState::Unreachable, 120)
            },
            DeviceStatus {
                ip_address: "127.1.2.9".into(),
                stale: true,
                ..device("poti-002-ap1", DeviceState::Unknown, 4000)
            },
            DeviceStatus {
                ip_address: "127.1.2.1".into(),
                state_reason: "3/3 lost, 2 retries lost".into(),
                last_loss_percent: Some(100.0),
                maintenance: true,
                ..device("tbilisi-001-rtr1", DeviceState::Down, 125)
            },
            DeviceStatus {
                ip_address: "127.1.3.7".into(),
                state_reason: "3 changes in 5m".into(),
                last_loss_percent: Some(100.0 / 3.0),
                ..device("batumi-003-sw1", DeviceState::Flapping, 30)
            },
            DeviceStatus {
                ip_address: "127.1.2.2".into(),
                state_reason: "1 failed probe".into(),
                last_loss_percent: Some(100.0),
                ..device("gori-001-rtr1", DeviceState::Down, 59)
            },
        ];
        sort_not_up(&mut devices);
        let counts = StateCounts {
            total: 12,
            up: 7,
            down: 2,
            unreachable: 1,
            flapping: 1,
            unknown: 1,
            maintenance: 1,
            stale: 1,
        };
        let mut out = Vec::new();
        let oldest = Some(Duration::from_secs(4000));
        write_status(&mut out, &counts, oldest, &devices, now()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "total 12: up 7, down 2, unreachable 1, flapping 1, unknown 1, maintenance 1; stale 1, oldest result 4000s ago\n\
             \n\
             NAME              IP          SITE         STATE               SINCE    REASON                           LAST LOSS %\n\
             gori-001-rtr1     127.1.2.2   tbilisi-001  down                59s ago  1 failed probe                   100\n\
             tbilisi-001-rtr1  127.1.2.1   tbilisi-001  down (maintenance)  2m ago   3/3 lost, 2 retries lost         100\n\
             batumi-003-sw1    127.1.3.7   tbilisi-001  flapping            30s ago  3 changes in 5m                  33.3\n\
             tbilisi-001-sw2   127.1.2.20  tbilisi-001  unreachable         2m ago   parent tbilisi-001-rtr1 is DOWN  100\n\
             poti-002-ap1      127.1.2.9   tbilisi-001  unknown (stale)     1h ago   -                                -\n"
        );
    }

    #[test]
    fn an_all_up_fleet_is_one_line() {
        let counts = StateCounts {
            total: 3,
            up: 3,
            ..StateCounts::default()
        };
        let mut out = Vec::new();
        write_status(&mut out, &counts, None, &[], now()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "total 3: up 3, down 0, unreachable 0, flapping 0, unknown 0, maintenance 0; stale 0, no result yet\n"
        );
    }

    #[test]
    fn status_json_has_the_counts_and_the_devices() {
        let status = StatusJson {
            counts: CountsJson::from(StateCounts {
                total: 2,
                up: 1,
                down: 1,
                ..StateCounts::default()
            }),
            oldest_result_age_seconds: Some(2.5),
            devices: vec![DeviceStatusJson::from(DeviceStatus {
                last_outcome: ProbeOutcome::Timeout as i32,
                last_loss_percent: Some(100.0),
                ..device("gori-001-rtr1", DeviceState::Down, 0)
            })],
        };
        let json = serde_json::to_value(status).unwrap();
        assert_eq!(json["counts"]["total"], 2);
        assert_eq!(json["counts"]["down"], 1);
        assert_eq!(json["counts"]["stale"], 0);
        assert_eq!(json["oldest_result_age_seconds"], 2.5);
        let device = &json["devices"][0];
        assert_eq!(device["name"], "gori-001-rtr1");
        assert_eq!(device["state"], "down");
        assert_eq!(device["state_since"], "2027-01-15T08:00:00Z");
        assert_eq!(device["last_outcome"], "timeout");
        assert_eq!(device["last_loss_percent"], 100.0);
        assert_eq!(device["last_rtt_avg_us"], serde_json::Value::Null);
        assert_eq!(device["parent"], serde_json::Value::Null);
        assert_eq!(device["last_probe_at"], serde_json::Value::Null);
    }

    #[test]
    fn alerts_are_a_table_newest_first_with_short_ids() {
        let mut alerts = vec![
            alert(
                "1f0c2a3b-0000-4000-8000-000000000001",
                Severity::Critical,
                AlertState::Acknowledged,
                300,
            ),
            Alert {
                rule_name: "packet-loss".into(),
                rule_kind: RuleKind::PacketLoss as i32,
                device_name: "batumi-003-sw1".into(),
                site_name: "batumi-003".into(),
                summary: "batumi-003-sw1 loss 40 % for 3 probes".into(),
                ..alert(
                    "9a8b7c6d-0000-4000-8000-000000000002",
                    Severity::Medium,
                    AlertState::Firing,
                    20,
                )
            },
        ];
        sort_newest_first(&mut alerts);
        let mut out = Vec::new();
        write_alerts(&mut out, &alerts, now()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID        SEVERITY  STATE         RULE         DEVICE            SITE         STARTED  SUMMARY\n\
             9a8b7c6d  medium    firing        packet-loss  batumi-003-sw1    batumi-003   20s ago  batumi-003-sw1 loss 40 % for 3 probes\n\
             1f0c2a3b  critical  acknowledged  device-down  tbilisi-001-rtr1  tbilisi-001  5m ago   tbilisi-001-rtr1 DOWN: 3/3 lost + 2 retries\n"
        );
    }

    #[test]
    fn alert_json_names_enums_and_drops_empty_fields() {
        let json = serde_json::to_value(AlertJson::from(Alert {
            loss_percent: Some(100.0),
            labels: [("team".to_string(), "noc".to_string())].into(),
            ..alert(
                "1f0c2a3b-0000-4000-8000-000000000001",
                Severity::Critical,
                AlertState::Firing,
                0,
            )
        }))
        .unwrap();
        assert_eq!(json["id"], "1f0c2a3b-0000-4000-8000-000000000001");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["state"], "firing");
        assert_eq!(json["rule"], "device-down");
        assert_eq!(json["rule_kind"], "device_down");
        assert_eq!(json["started_at"], "2027-01-15T08:00:00Z");
        assert_eq!(json["acknowledged_by"], serde_json::Value::Null);
        assert_eq!(json["resolved_at"], serde_json::Value::Null);
        assert_eq!(json["loss_percent"], 100.0);
        assert_eq!(json["labels"]["team"], "noc");
    }

    #[test]
    fn the_acknowledged_alert_is_one_line() {
        let acked = Alert {
            acknowledged_by: "alice".into(),
            ack_comment: "ISP ticket 4711".into(),
            ..alert(
                "1f0c2a3b-0000-4000-8000-000000000001",
                Severity::Critical,
                AlertState::Acknowledged,
                300,
            )
        };
        assert_eq!(
            acked_line(&acked, now()),
            "acknowledged 1f0c2a3b by alice (\"ISP ticket 4711\"): critical device-down on \
             tbilisi-001-rtr1 (tbilisi-001), started 5m ago: tbilisi-001-rtr1 DOWN: 3/3 lost + 2 retries"
        );
    }

    #[test]
    fn a_prefix_names_exactly_one_open_alert() {
        let ids = || {
            vec![
                "1f0c2a3b-0000-4000-8000-000000000001".to_string(),
                "1f0c9999-0000-4000-8000-000000000002".to_string(),
            ]
        };
        assert_eq!(
            match_prefix("1F0C2A3B", ids()).unwrap(),
            "1f0c2a3b-0000-4000-8000-000000000001"
        );
        let ambiguous = match_prefix("1f0c", ids()).unwrap_err().to_string();
        assert!(ambiguous.contains("2 open alerts"), "{ambiguous}");
        let unknown = match_prefix("deadbeef", ids()).unwrap_err().to_string();
        assert!(unknown.contains("no open alert"), "{unknown}");
    }

    #[test]
    fn percentages_and_short_ids_read_at_a_glance() {
        assert_eq!(percent_text(100.0), "100");
        assert_eq!(percent_text(0.0), "0");
        assert_eq!(percent_text(100.0 / 3.0), "33.3");
        assert_eq!(short_id("1f0c2a3b-0000"), "1f0c2a3b");
        assert_eq!(short_id("abc"), "abc");
    }
}

//! `netward interfaces DEVICE`: one device's SNMP interfaces as alerting
//! holds them (`ListInterfaces`) — role, ISP, admin/oper status, rates,
//! utilisation, errors, open alerts — as a header line and a table, or as
//! one JSON object. A device name becomes an id through the inventory
//! (`GetDevice`); an id goes straight to alerting.

use std::io::{self, Write as _};
use std::time::SystemTime;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::get_device_request::Key;
use netward_shared::proto::v1::{
    CounterDiscontinuity, Device, GetDeviceRequest, InterfaceRole, InterfaceStatus,
    ListInterfacesRequest, ListInterfacesResponse, SnmpOutcome,
};
use netward_shared::tonic::Code;
use prost_types::Timestamp;
use serde::Serialize;

use super::planner::age;
use super::table::Table;
use super::{InventoryArgs, call_failed};

/// The table's columns, in order (`Table` prints them in upper case).
const COLUMNS: [&str; 14] = [
    "ifindex",
    "name",
    "alias",
    "role",
    "isp",
    "admin/oper",
    "since",
    "speed",
    "in",
    "out",
    "util",
    "err/s",
    "alerts",
    "note",
];
/// SI prefixes of bit counts (steps of 1000, as link speeds are quoted).
const PREFIXES: [&str; 5] = ["", "k", "M", "G", "T"];

#[derive(Debug, Args)]
pub struct InterfacesArgs {
    /// The device: its name (looked up in the inventory) or its id (UUID)
    #[arg(value_name = "DEVICE")]
    device: String,
    /// Only interfaces of this role
    #[arg(long, value_enum, value_name = "ROLE")]
    role: Option<Role>,
    /// Only monitored interfaces (those rules are evaluated on)
    #[arg(long)]
    monitored: bool,
    /// One JSON object (the device and its interfaces) instead of a line and a table
    #[arg(long)]
    json: bool,
    /// Alerting service to call
    #[arg(
        long,
        env = "NETWARD_ALERTING_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50053"
    )]
    alerting_url: String,
    // --inventory-url is dialled only to turn a name into an id; --token
    // goes to both services.
    #[command(flatten)]
    inventory: InventoryArgs,
}

/// `--role`: the words the table and the JSON use for `InterfaceRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Isp,
    Trunk,
    Access,
    Server,
    Other,
}

impl Role {
    fn from_proto(role: InterfaceRole) -> Option<Self> {
        match role {
            InterfaceRole::IspUplink => Some(Self::Isp),
            InterfaceRole::Trunk => Some(Self::Trunk),
            InterfaceRole::Access => Some(Self::Access),
            InterfaceRole::ServerLink => Some(Self::Server),
            InterfaceRole::Other => Some(Self::Other),
            InterfaceRole::Unspecified => None,
        }
    }

    fn to_proto(self) -> InterfaceRole {
        match self {
            Self::Isp => InterfaceRole::IspUplink,
            Self::Trunk => InterfaceRole::Trunk,
            Self::Access => InterfaceRole::Access,
            Self::Server => InterfaceRole::ServerLink,
            Self::Other => InterfaceRole::Other,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Isp => "isp",
            Self::Trunk => "trunk",
            Self::Access => "access",
            Self::Server => "server",
            Self::Other => "other",
        }
    }
}

pub async fn run(args: InterfacesArgs) -> anyhow::Result<()> {
    let device = args.device.trim();
    if device.is_empty() {
        bail!("the device is empty: give its name or its id (see `netward devices list`)");
    }
    // Alerting keys its devices by the lower-case UUID text.
    let (device_id, inventory_name) = if is_uuid(device) {
        (device.to_ascii_lowercase(), None)
    } else {
        let found = get_device(&args.inventory, Key::Name(device.to_string()))
            .await?
            .with_context(|| {
                format!(
                    "no device named {device:?} in the inventory at {} (see `netward devices list`)",
                    args.inventory.inventory_url
                )
            })?;
        (found.id, Some(found.name))
    };

    let options = args
        .inventory
        .tls
        .client_options(args.inventory.token.as_ref());
    let channel = netward_shared::client::connect(&args.alerting_url, &options)
        .context("cannot set up the alerting client")?;
    let mut response = AlertingServiceClient::new(channel)
        .list_interfaces(ListInterfacesRequest {
            device_id: device_id.clone(),
            role: args.role.map_or(InterfaceRole::Unspecified, Role::to_proto) as i32,
            monitored_only: args.monitored,
        })
        .await
        .map_err(|status| {
            if status.code() == Code::NotFound {
                anyhow!(
                    "alerting at {} knows no device with id {device_id}",
                    args.alerting_url
                )
            } else {
                call_failed("ListInterfaces", &args.alerting_url, &status)
            }
        })?
        .into_inner();
    // Alerting names the devices its inventory copy holds. Without a name
    // it does not know the id: the inventory says whether the device exists.
    // If the inventory cannot be asked, what alerting said still stands.
    if response.device_name.is_empty() {
        response.device_name = match inventory_name {
            Some(name) => name,
            None => match get_device(&args.inventory, Key::Id(device_id.clone())).await {
                Ok(Some(found)) => found.name,
                Ok(None) => bail!(
                    "no device with id {device_id} in the inventory at {} (see `netward devices list`)",
                    args.inventory.inventory_url
                ),
                Err(error) => {
                    eprintln!("cannot name the device: {error:#}");
                    String::new()
                }
            },
        };
    }
    response
        .interfaces
        .sort_by_key(|interface| interface.if_index);

    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        // Through a String: serde_json hides an I/O error's kind, and a
        // closed pipe must stay recognisable.
        let line = serde_json::to_string(&InterfacesJson::from(response))?;
        writeln!(out, "{line}")?;
    } else {
        write_interfaces(&mut out, &response, SystemTime::now())?;
    }
    out.flush()?;
    Ok(())
}

/// The inventory's device by id or name; `None` when it has none (NOT_FOUND).
async fn get_device(inventory: &InventoryArgs, key: Key) -> anyhow::Result<Option<Device>> {
    let response = inventory
        .client()?
        .get_device(GetDeviceRequest { key: Some(key) })
        .await;
    match response {
        Ok(response) => response.into_inner().device.map(Some).with_context(|| {
            format!(
                "GetDevice at {}: no device in the answer",
                inventory.inventory_url
            )
        }),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(inventory.call_failed("GetDevice", &status)),
    }
}

/// `8-4-4-4-12` hexadecimal digits: an id, not a name.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The header line, then (a blank line apart) the table, if any interface.
fn write_interfaces(
    out: &mut impl io::Write,
    response: &ListInterfacesResponse,
    now: SystemTime,
) -> io::Result<()> {
    writeln!(out, "{}", header_line(response, now))?;
    if response.interfaces.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(COLUMNS.to_vec());
    for interface in &response.interfaces {
        table.push(interface_row(interface, response.polled_at.as_ref(), now));
    }
    // ALERTS and NOTE are mostly blank, and `Table` pads every column but
    // the last: the lines are trimmed so none ends in blanks.
    let mut text = Vec::new();
    table.write(&mut text)?;
    for line in String::from_utf8_lossy(&text).lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `tbilisi-001-rtr1 (<id>): 4 interfaces, polled 12s ago`, and when the
/// last poll was not OK, what it was: `…; last poll agent_error: incomplete:
/// the agent answered genErr at index 0` — an empty or old table then says
/// why.
fn header_line(response: &ListInterfacesResponse, now: SystemTime) -> String {
    let device = if response.device_name.is_empty() {
        response.device_id.clone()
    } else {
        format!("{} ({})", response.device_name, response.device_id)
    };
    let count = response.interfaces.len();
    let noun = if count == 1 {
        "interface"
    } else {
        "interfaces"
    };
    let polled = match age(response.polled_at.as_ref(), now).as_str() {
        "never" => "never polled".to_string(),
        ago => format!("polled {ago}"),
    };
    let mut line = format!("{device}: {count} {noun}, {polled}");
    if let Some(outcome) = last_poll_problem(response) {
        line.push_str("; last poll ");
        line.push_str(&outcome);
        let detail = response.last_snmp_error.trim();
        if !detail.is_empty() {
            line.push_str(": ");
            line.push_str(detail);
        }
    }
    line
}

/// The last poll's outcome word when it was neither OK nor unknown.
fn last_poll_problem(response: &ListInterfacesResponse) -> Option<String> {
    match response.last_snmp_outcome() {
        SnmpOutcome::Ok | SnmpOutcome::Unspecified => None,
        other => enum_word(other.as_str_name(), "SNMP_OUTCOME_"),
    }
}

fn interface_row(
    interface: &InterfaceStatus,
    device_polled_at: Option<&Timestamp>,
    now: SystemTime,
) -> Vec<String> {
    let dash = || "-".to_string();
    vec![
        interface.if_index.to_string(),
        interface_name(interface),
        dash_if_empty(interface.if_alias.trim()),
        Role::from_proto(interface.role())
            .map_or("-", Role::text)
            .to_string(),
        dash_if_empty(interface.isp_name.trim()),
        format!(
            "{}/{}",
            admin_status_text(interface).as_deref().unwrap_or("-"),
            oper_status_text(interface).as_deref().unwrap_or("-")
        ),
        interface
            .oper_status_since
            .as_ref()
            .map_or_else(dash, |since| age(Some(since), now)),
        interface.speed_bps.map_or_else(dash, speed_text),
        interface.in_bps.map_or_else(dash, rate_text),
        interface.out_bps.map_or_else(dash, rate_text),
        utilisation_percent(interface).map_or_else(dash, percent_text),
        errors_per_second(interface).map_or_else(dash, per_second_text),
        match interface.open_alerts {
            0 => String::new(),
            open => open.to_string(),
        },
        fresh_discontinuity(interface, device_polled_at)
            .unwrap_or_default()
            .to_string(),
    ]
}

/// ifName, else ifDescr (old agents have no ifName), else `-`.
fn interface_name(interface: &InterfaceStatus) -> String {
    let name = interface.if_name.trim();
    let name = if name.is_empty() {
        interface.if_descr.trim()
    } else {
        name
    };
    dash_if_empty(name)
}

/// The higher of the two directions: a link is as full as its busier side.
fn utilisation_percent(interface: &InterfaceStatus) -> Option<f64> {
    match (
        interface.in_utilisation_percent,
        interface.out_utilisation_percent,
    ) {
        (Some(inbound), Some(outbound)) => Some(inbound.max(outbound)),
        (inbound, outbound) => inbound.or(outbound),
    }
}

fn errors_per_second(interface: &InterfaceStatus) -> Option<f64> {
    match (
        interface.in_errors_per_second,
        interface.out_errors_per_second,
    ) {
        (Some(inbound), Some(outbound)) => Some(inbound + outbound),
        (inbound, outbound) => inbound.or(outbound),
    }
}

/// The last counter discontinuity, if it was seen at the last poll (as
/// alerting itself decides it): an older one no longer explains the rates.
fn fresh_discontinuity(
    interface: &InterfaceStatus,
    device_polled_at: Option<&Timestamp>,
) -> Option<&'static str> {
    let seen_at = interface.last_discontinuity_at?;
    let polled_at = interface.last_polled_at.or(device_polled_at.copied())?;
    if (seen_at.seconds, seen_at.nanos) < (polled_at.seconds, polled_at.nanos) {
        return None;
    }
    discontinuity_note(interface.last_discontinuity)
}

fn discontinuity_note(discontinuity: i32) -> Option<&'static str> {
    match CounterDiscontinuity::try_from(discontinuity).ok()? {
        CounterDiscontinuity::Wrap => Some("wrap"),
        CounterDiscontinuity::Reboot => Some("reboot"),
        CounterDiscontinuity::MissedPoll => Some("missed poll"),
        CounterDiscontinuity::CounterReset => Some("counter reset"),
        CounterDiscontinuity::Unspecified => None,
    }
}

fn admin_status_text(interface: &InterfaceStatus) -> Option<String> {
    enum_word(interface.admin_status().as_str_name(), "IF_ADMIN_STATUS_")
}

fn oper_status_text(interface: &InterfaceStatus) -> Option<String> {
    enum_word(interface.oper_status().as_str_name(), "IF_OPER_STATUS_")
}

/// A proto enum value's name without its prefix, in lower case
/// (`lower_layer_down`); `None` for UNSPECIFIED.
fn enum_word(name: &str, prefix: &str) -> Option<String> {
    let word = name.strip_prefix(prefix).unwrap_or(name);
    (word != "UNSPECIFIED").then(|| word.to_ascii_lowercase())
}

/// A bit count scaled to the largest SI prefix that keeps it under 1000
/// once rounded as shown (no decimal without a prefix, one with), so
/// 999,960 reads 1.0 M rather than 1000.0 k.
fn scaled(bits: f64) -> (f64, &'static str) {
    let mut value = bits;
    let mut prefix = 0;
    while prefix + 1 < PREFIXES.len() {
        let shown = if prefix == 0 {
            value.round()
        } else {
            (value * 10.0).round() / 10.0
        };
        if shown < 1000.0 {
            break;
        }
        value /= 1000.0;
        prefix += 1;
    }
    (value, PREFIXES[prefix])
}

/// `850 b/s`, `12.3 Mb/s`, `1.0 Gb/s`.
fn rate_text(bits_per_second: f64) -> String {
    if !bits_per_second.is_finite() || bits_per_second < 0.0 {
        return "-".to_string();
    }
    match scaled(bits_per_second) {
        (value, "") => format!("{value:.0} b/s"),
        (value, prefix) => format!("{value:.1} {prefix}b/s"),
    }
}

/// `100M`, `1G`, `2.5G`: as link speeds are written, no trailing `.0`.
fn speed_text(bits_per_second: u64) -> String {
    let (value, prefix) = scaled(bits_per_second as f64);
    let number = format!("{value:.1}");
    let number = number.strip_suffix(".0").unwrap_or(&number);
    format!("{number}{prefix}")
}

/// `73%`, `0.4%`: whole percentages without a decimal, others with one.
fn percent_text(percent: f64) -> String {
    if percent.fract() == 0.0 {
        format!("{percent:.0}%")
    } else {
        format!("{percent:.1}%")
    }
}

/// `0`, `0.05`, `12.5`, `<0.01`: errors per second are usually fractions.
fn per_second_text(rate: f64) -> String {
    if rate == 0.0 {
        return "0".to_string();
    }
    if rate < 0.01 {
        return "<0.01".to_string();
    }
    let text = format!("{rate:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn dash_if_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// `interfaces --json`: the response with the proto's field names, enums
/// as lower-case words (`role` as `--role` spells it), timestamps as RFC
/// 3339, and `null` for whatever is unset.
#[derive(Debug, Serialize)]
struct InterfacesJson {
    device_id: String,
    device_name: String,
    polled_at: Option<String>,
    last_snmp_outcome: Option<String>,
    last_snmp_error: String,
    interfaces: Vec<InterfaceJson>,
}

#[derive(Debug, Serialize)]
struct InterfaceJson {
    if_index: u32,
    if_name: String,
    if_alias: String,
    if_descr: String,
    role: Option<&'static str>,
    isp_name: String,
    classification_confidence: f64,
    classification_source: Option<String>,
    monitored: bool,
    admin_status: Option<String>,
    oper_status: Option<String>,
    speed_bps: Option<u64>,
    in_bps: Option<f64>,
    out_bps: Option<f64>,
    in_utilisation_percent: Option<f64>,
    out_utilisation_percent: Option<f64>,
    in_errors_per_second: Option<f64>,
    out_errors_per_second: Option<f64>,
    in_discards_per_second: Option<f64>,
    out_discards_per_second: Option<f64>,
    in_packets_per_second: Option<f64>,
    out_packets_per_second: Option<f64>,
    hc: bool,
    last_polled_at: Option<String>,
    oper_status_since: Option<String>,
    last_discontinuity: Option<String>,
    last_discontinuity_at: Option<String>,
    open_alerts: u32,
}

impl From<ListInterfacesResponse> for InterfacesJson {
    fn from(response: ListInterfacesResponse) -> Self {
        let last_snmp_outcome =
            enum_word(response.last_snmp_outcome().as_str_name(), "SNMP_OUTCOME_");
        Self {
            device_id: response.device_id,
            device_name: response.device_name,
            polled_at: response.polled_at.map(|at| at.to_string()),
            last_snmp_outcome,
            last_snmp_error: response.last_snmp_error,
            interfaces: response
                .interfaces
                .into_iter()
                .map(InterfaceJson::from)
                .collect(),
        }
    }
}

impl From<InterfaceStatus> for InterfaceJson {
    fn from(interface: InterfaceStatus) -> Self {
        Self {
            role: Role::from_proto(interface.role()).map(Role::text),
            classification_source: enum_word(
                interface.classification_source().as_str_name(),
                "CLASSIFICATION_SOURCE_",
            ),
            admin_status: admin_status_text(&interface),
            oper_status: oper_status_text(&interface),
            last_discontinuity: enum_word(
                interface.last_discontinuity().as_str_name(),
                "COUNTER_DISCONTINUITY_",
            ),
            last_polled_at: interface.last_polled_at.map(|at| at.to_string()),
            oper_status_since: interface.oper_status_since.map(|at| at.to_string()),
            last_discontinuity_at: interface.last_discontinuity_at.map(|at| at.to_string()),
            if_index: interface.if_index,
            if_name: interface.if_name,
            if_alias: interface.if_alias,
            if_descr: interface.if_descr,
            isp_name: interface.isp_name,
            classification_confidence: interface.classification_confidence,
            monitored: interface.monitored,
            speed_bps: interface.speed_bps,
            in_bps: interface.in_bps,
            out_bps: interface.out_bps,
            in_utilisation_percent: interface.in_utilisation_percent,
            out_utilisation_percent: interface.out_utilisation_percent,
            in_errors_per_second: interface.in_errors_per_second,
            out_errors_per_second: interface.out_errors_per_second,
            in_discards_per_second: interface.in_discards_per_second,
            out_discards_per_second: interface.out_discards_per_second,
            in_packets_per_second: interface.in_packets_per_second,
            out_packets_per_second: interface.out_packets_per_second,
            hc: interface.hc,
            open_alerts: interface.open_alerts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use netward_shared::proto::v1::{ClassificationSource, IfAdminStatus, IfOperStatus};

    use super::*;

    const DEVICE_ID: &str = "5f2b7c1e-8d4a-4c3b-9e61-0a7d3f9b2c10";

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(ago: u64) -> Option<Timestamp> {
        Some(Timestamp::from(now() - Duration::from_secs(ago)))
    }

    /// Polled 12 s ago, up/up since an hour, admin up.
    fn interface(if_index: u32, if_name: &str, role: InterfaceRole) -> InterfaceStatus {
        InterfaceStatus {
            if_index,
            if_name: if_name.into(),
            if_descr: if_name.into(),
            role: role as i32,
            monitored: true,
            admin_status: IfAdminStatus::Up as i32,
            oper_status: IfOperStatus::Up as i32,
            oper_status_since: at(3600),
            last_polled_at: at(12),
            ..InterfaceStatus::default()
        }
    }

    /// An ISP uplink whose link went down 2 minutes ago: no rate since.
    fn isp_uplink_down() -> InterfaceStatus {
        InterfaceStatus {
            if_alias: "ISP: Magti 1G circuit 4711".into(),
            isp_name: "Magti".into(),
            oper_status: IfOperStatus::Down as i32,
            oper_status_since: at(125),
            speed_bps: Some(1_000_000_000),
            open_alerts: 1,
            ..interface(1, "Gi0/0", InterfaceRole::IspUplink)
        }
    }

    /// A trunk whose 32-bit counter wrapped at the last poll.
    fn trunk_wrapped() -> InterfaceStatus {
        InterfaceStatus {
            if_alias: "TRUNK to tbilisi-001-sw1".into(),
            speed_bps: Some(10_000_000_000),
            in_bps: Some(3_456_789_012.0),
            out_bps: Some(1_234_567_890.0),
            in_utilisation_percent: Some(34.6),
            out_utilisation_percent: Some(12.3),
            in_errors_per_second: Some(0.05),
            out_errors_per_second: Some(0.0),
            last_discontinuity: CounterDiscontinuity::Wrap as i32,
            last_discontinuity_at: at(12),
            ..interface(2, "Te0/1", InterfaceRole::Trunk)
        }
    }

    fn response(interfaces: Vec<InterfaceStatus>) -> ListInterfacesResponse {
        ListInterfacesResponse {
            device_id: DEVICE_ID.into(),
            device_name: "tbilisi-001-rtr1".into(),
            polled_at: at(12),
            interfaces,
            last_snmp_outcome: SnmpOutcome::Ok as i32,
            last_snmp_error: String::new(),
        }
    }

    #[test]
    fn rates_read_in_bits_per_second() {
        assert_eq!(rate_text(0.0), "0 b/s");
        assert_eq!(rate_text(850.4), "850 b/s");
        assert_eq!(rate_text(999.6), "1.0 kb/s");
        assert_eq!(rate_text(12_345_678.0), "12.3 Mb/s");
        assert_eq!(rate_text(999_960.0), "1.0 Mb/s");
        assert_eq!(rate_text(1_000_000_000.0), "1.0 Gb/s");
        assert_eq!(rate_text(2.5e12), "2.5 Tb/s");
        assert_eq!(rate_text(4.0e15), "4000.0 Tb/s");
        assert_eq!(rate_text(f64::NAN), "-");
        assert_eq!(rate_text(-1.0), "-");
    }

    #[test]
    fn speeds_read_as_links_are_sold() {
        assert_eq!(speed_text(0), "0");
        assert_eq!(speed_text(64_000), "64k");
        assert_eq!(speed_text(1_544_000), "1.5M");
        assert_eq!(speed_text(100_000_000), "100M");
        assert_eq!(speed_text(1_000_000_000), "1G");
        assert_eq!(speed_text(2_500_000_000), "2.5G");
        assert_eq!(speed_text(10_000_000_000), "10G");
        assert_eq!(speed_text(400_000_000_000), "400G");
        // ifSpeed's ceiling, 2^32 - 1: an agent that has no ifHighSpeed.
        assert_eq!(speed_text(u64::from(u32::MAX)), "4.3G");
    }

    #[test]
    fn percentages_and_error_rates_read_at_a_glance() {
        assert_eq!(percent_text(73.0), "73%");
        assert_eq!(percent_text(0.44), "0.4%");
        assert_eq!(per_second_text(0.0), "0");
        assert_eq!(per_second_text(0.001), "<0.01");
        assert_eq!(per_second_text(0.05), "0.05");
        assert_eq!(per_second_text(1.5), "1.5");
        assert_eq!(per_second_text(12.0), "12");
    }

    #[test]
    fn an_isp_uplink_down_with_no_rate_yet() {
        assert_eq!(
            interface_row(&isp_uplink_down(), at(12).as_ref(), now()),
            [
                "1",
                "Gi0/0",
                "ISP: Magti 1G circuit 4711",
                "isp",
                "Magti",
                "up/down",
                "2m ago",
                "1G",
                "-",
                "-",
                "-",
                "-",
                "1",
                "",
            ]
        );
    }

    #[test]
    fn a_wrap_at_the_last_poll_is_noted() {
        assert_eq!(
            interface_row(&trunk_wrapped(), at(12).as_ref(), now()),
            [
                "2",
                "Te0/1",
                "TRUNK to tbilisi-001-sw1",
                "trunk",
                "-",
                "up/up",
                "1h ago",
                "10G",
                "3.5 Gb/s",
                "1.2 Gb/s",
                "34.6%",
                "0.05",
                "",
                "wrap",
            ]
        );
    }

    #[test]
    fn an_older_discontinuity_is_not_noted() {
        let older = InterfaceStatus {
            last_discontinuity: CounterDiscontinuity::Reboot as i32,
            last_discontinuity_at: at(72),
            ..trunk_wrapped()
        };
        assert_eq!(fresh_discontinuity(&older, at(12).as_ref()), None);
        // Without its own poll time, the device's decides.
        let unpolled = InterfaceStatus {
            last_polled_at: None,
            last_discontinuity: CounterDiscontinuity::MissedPoll as i32,
            ..trunk_wrapped()
        };
        assert_eq!(
            fresh_discontinuity(&unpolled, at(12).as_ref()),
            Some("missed poll")
        );
        assert_eq!(fresh_discontinuity(&unpolled, None), None);
    }

    #[test]
    fn the_header_and_the_table() {
        let interfaces = vec![
            isp_uplink_down(),
            trunk_wrapped(),
            InterfaceStatus {
                // No ifName: ifDescr stands in.
                if_name: String::new(),
                if_descr: "GigabitEthernet0/2".into(),
                if_alias: "srv-db1".into(),
                speed_bps: Some(1_000_000_000),
                in_bps: Some(12_345_678.0),
                out_bps: Some(850.0),
                in_utilisation_percent: Some(1.2),
                out_utilisation_percent: Some(0.0),
                in_errors_per_second: Some(0.0),
                out_errors_per_second: Some(0.0),
                ..interface(3, "", InterfaceRole::ServerLink)
            },
            InterfaceStatus {
                admin_status: IfAdminStatus::Down as i32,
                oper_status: IfOperStatus::Down as i32,
                oper_status_since: at(200_000),
                speed_bps: Some(100_000_000),
                monitored: false,
                ..interface(4, "Fa0/3", InterfaceRole::Unspecified)
            },
        ];
        let mut out = Vec::new();
        write_interfaces(&mut out, &response(interfaces), now()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "tbilisi-001-rtr1 (5f2b7c1e-8d4a-4c3b-9e61-0a7d3f9b2c10): 4 interfaces, polled 12s ago\n\
             \n\
             IFINDEX  NAME                ALIAS                       ROLE    ISP    ADMIN/OPER  SINCE   SPEED  IN         OUT       UTIL   ERR/S  ALERTS  NOTE\n\
             1        Gi0/0               ISP: Magti 1G circuit 4711  isp     Magti  up/down     2m ago  1G     -          -         -      -      1\n\
             2        Te0/1               TRUNK to tbilisi-001-sw1    trunk   -      up/up       1h ago  10G    3.5 Gb/s   1.2 Gb/s  34.6%  0.05           wrap\n\
             3        GigabitEthernet0/2  srv-db1                     server  -      up/up       1h ago  1G     12.3 Mb/s  850 b/s   1.2%   0\n\
             4        Fa0/3               -                           -       -      down/down   2d ago  100M   -          -         -      -\n"
        );
    }

    #[test]
    fn a_device_never_polled_is_one_line() {
        let never = ListInterfacesResponse {
            polled_at: None,
            ..response(Vec::new())
        };
        let mut out = Vec::new();
        write_interfaces(&mut out, &never, now()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "tbilisi-001-rtr1 (5f2b7c1e-8d4a-4c3b-9e61-0a7d3f9b2c10): 0 interfaces, never polled\n"
        );
        let one = response(vec![isp_uplink_down()]);
        assert_eq!(
            header_line(&one, now()),
            "tbilisi-001-rtr1 (5f2b7c1e-8d4a-4c3b-9e61-0a7d3f9b2c10): 1 interface, polled 12s ago"
        );
    }

    #[test]
    fn a_last_poll_that_was_not_ok_is_said_in_the_header() {
        let refused = ListInterfacesResponse {
            last_snmp_outcome: SnmpOutcome::AgentError as i32,
            last_snmp_error: "incomplete: the agent answered genErr at index 0".into(),
            ..response(Vec::new())
        };
        assert_eq!(
            header_line(&refused, now()),
            "tbilisi-001-rtr1 (5f2b7c1e-8d4a-4c3b-9e61-0a7d3f9b2c10): 0 interfaces, polled 12s ago; \
             last poll agent_error: incomplete: the agent answered genErr at index 0"
        );
        let json = serde_json::to_value(InterfacesJson::from(refused)).unwrap();
        assert_eq!(json["last_snmp_outcome"], "agent_error");
        let silent = ListInterfacesResponse {
            last_snmp_outcome: SnmpOutcome::Timeout as i32,
            ..response(vec![isp_uplink_down()])
        };
        assert!(
            header_line(&silent, now()).ends_with("polled 12s ago; last poll timeout"),
            "{}",
            header_line(&silent, now())
        );
    }

    #[test]
    fn json_keeps_the_proto_names_and_words_for_enums() {
        let json = serde_json::to_value(InterfacesJson::from(response(vec![
            InterfaceStatus {
                classification_source: ClassificationSource::Pattern as i32,
                classification_confidence: 0.9,
                oper_status: IfOperStatus::LowerLayerDown as i32,
                ..isp_uplink_down()
            },
            trunk_wrapped(),
        ])))
        .unwrap();
        assert_eq!(json["device_id"], DEVICE_ID);
        assert_eq!(json["device_name"], "tbilisi-001-rtr1");
        assert_eq!(json["polled_at"], "2027-01-15T07:59:48Z");
        let uplink = &json["interfaces"][0];
        assert_eq!(uplink["if_index"], 1);
        assert_eq!(uplink["role"], "isp");
        assert_eq!(uplink["isp_name"], "Magti");
        assert_eq!(uplink["classification_source"], "pattern");
        assert_eq!(uplink["admin_status"], "up");
        assert_eq!(uplink["oper_status"], "lower_layer_down");
        assert_eq!(uplink["speed_bps"], 1_000_000_000_u64);
        assert_eq!(uplink["in_bps"], serde_json::Value::Null);
        assert_eq!(uplink["last_discontinuity"], serde_json::Value::Null);
        assert_eq!(uplink["open_alerts"], 1);
        let trunk = &json["interfaces"][1];
        assert_eq!(trunk["role"], "trunk");
        assert_eq!(trunk["in_bps"], 3_456_789_012.0);
        assert_eq!(trunk["last_discontinuity"], "wrap");
        assert_eq!(trunk["last_discontinuity_at"], "2027-01-15T07:59:48Z");
    }

    #[test]
    fn ids_go_to_alerting_and_names_to_the_inventory() {
        assert!(is_uuid(DEVICE_ID));
        assert!(is_uuid("5F2B7C1E-8D4A-4C3B-9E61-0A7D3F9B2C10"));
        assert!(!is_uuid("tbilisi-001-rtr1"));
        assert!(!is_uuid("5f2b7c1e8d4a4c3b9e610a7d3f9b2c10"));
        assert!(!is_uuid("5f2b7c1e-8d4a-4c3b-9e61-0a7d3f9b2c1g"));
    }

    #[test]
    fn roles_round_trip_through_the_flag_words() {
        for role in Role::value_variants() {
            assert_eq!(Role::from_proto(role.to_proto()), Some(*role));
            let flag = role.to_possible_value().unwrap();
            assert_eq!(flag.get_name(), role.text());
        }
        assert_eq!(Role::from_proto(InterfaceRole::Unspecified), None);
    }
}

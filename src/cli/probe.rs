//! `netward probe DEVICE` and `netward poll DEVICE`: probe-now through the
//! planner (`ProbeDevice`, `PollDevice`), which picks a connected executor
//! whose labels match the device's selector. Prints a short summary, or one
//! JSON object with --json; the result is not stored by alerting.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write as _};

use anyhow::Context as _;
use clap::Args;
use netward_shared::proto::v1::{
    IfOperStatus, PollDeviceRequest, PollDeviceResponse, ProbeDeviceRequest, ProbeDeviceResponse,
    ProbeResult, SnmpSample, scalar_value,
};
use serde::Serialize;

use super::planner::PlannerArgs;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The device: its name or its id (UUID)
    #[arg(value_name = "DEVICE")]
    device: String,
    /// One JSON object instead of the summary
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    planner: PlannerArgs,
}

/// `netward probe DEVICE`: ICMP now, on a ping-executor the selector allows.
pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let response = args
        .planner
        .client()?
        .probe_device(ProbeDeviceRequest {
            device: args.device.clone(),
        })
        .await
        .map_err(|status| args.planner.call_failed("ProbeDevice", &status))?
        .into_inner();
    let json = ProbeJson::from(response);
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &json)?;
        writeln!(out)?;
    } else {
        write_probe(&mut out, &json)?;
    }
    out.flush().context("cannot write the result")
}

/// `netward poll DEVICE`: SNMP now, on an snmp-poller the selector allows.
pub async fn poll(args: ProbeArgs) -> anyhow::Result<()> {
    let response = args
        .planner
        .client()?
        .poll_device(PollDeviceRequest {
            device: args.device.clone(),
        })
        .await
        .map_err(|status| args.planner.call_failed("PollDevice", &status))?
        .into_inner();
    let json = PollJson::from(response);
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &json)?;
        writeln!(out)?;
    } else {
        write_poll(&mut out, &json)?;
    }
    out.flush().context("cannot write the result")
}

/// `probe --json`.
#[derive(Debug, Serialize)]
struct ProbeJson {
    device_id: String,
    device_name: String,
    address: String,
    /// `ok`, `timeout`, `unreachable`, … (the ProbeOutcome without its prefix).
    outcome: String,
    error_detail: String,
    sent: u32,
    received: u32,
    loss_percent: f64,
    rtt_min_ms: Option<f64>,
    rtt_avg_ms: Option<f64>,
    rtt_max_ms: Option<f64>,
    duration_ms: u32,
    executor_id: String,
    executor_labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
}

impl From<ProbeDeviceResponse> for ProbeJson {
    fn from(response: ProbeDeviceResponse) -> Self {
        let result: ProbeResult = response.result.unwrap_or_default();
        let ms = |us: Option<u32>| us.map(|us| f64::from(us) / 1000.0);
        Self {
            outcome: enum_name(result.outcome().as_str_name(), "PROBE_OUTCOME_"),
            device_id: result.device_id,
            device_name: response.device_name,
            address: result.address,
            error_detail: result.error_detail,
            sent: result.sent,
            received: result.received,
            loss_percent: result.loss_percent,
            rtt_min_ms: ms(result.rtt_min_us),
            rtt_avg_ms: ms(result.rtt_avg_us),
            rtt_max_ms: ms(result.rtt_max_us),
            duration_ms: result.duration_ms,
            executor_id: response.executor_id,
            executor_labels: sorted(response.executor_labels),
            selector: sorted(response.selector),
        }
    }
}

/// `poll --json`: the sample's headline figures (values and interfaces counted).
#[derive(Debug, Serialize)]
struct PollJson {
    device_id: String,
    device_name: String,
    address: String,
    /// `ok`, `timeout`, `auth_failure`, … (the SnmpOutcome without its prefix).
    outcome: String,
    partial: bool,
    error_detail: String,
    sys_name: Option<String>,
    sys_uptime_ticks: Option<u32>,
    sys_object_id: String,
    profile: String,
    interfaces: usize,
    interfaces_up: usize,
    values: usize,
    requests_sent: u32,
    duration_ms: u32,
    executor_id: String,
    executor_labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
}

impl From<PollDeviceResponse> for PollJson {
    fn from(response: PollDeviceResponse) -> Self {
        let sample: SnmpSample = response.sample.unwrap_or_default();
        let sys_name = sample
            .values
            .iter()
            .find(|v| v.name == "sysName")
            .and_then(|v| match &v.value {
                Some(scalar_value::Value::Text(text)) => Some(text.clone()),
                _ => None,
            });
        Self {
            outcome: enum_name(sample.outcome().as_str_name(), "SNMP_OUTCOME_"),
            device_id: sample.device_id,
            device_name: response.device_name,
            address: sample.address,
            partial: sample.partial,
            error_detail: sample.error_detail,
            sys_name,
            sys_uptime_ticks: sample.sys_uptime_ticks,
            sys_object_id: sample.sys_object_id,
            profile: sample.profile,
            interfaces: sample.interfaces.len(),
            interfaces_up: sample
                .interfaces
                .iter()
                .filter(|i| i.oper_status() == IfOperStatus::Up)
                .count(),
            values: sample.values.len(),
            requests_sent: sample.requests_sent,
            duration_ms: sample.duration_ms,
            executor_id: response.executor_id,
            executor_labels: sorted(response.executor_labels),
            selector: sorted(response.selector),
        }
    }
}

fn write_probe(out: &mut impl io::Write, probe: &ProbeJson) -> io::Result<()> {
    let rtt = |ms: Option<f64>| ms.map_or_else(|| "-".into(), |ms| format!("{ms:.3}"));
    let lines = [
        ("device", device_text(&probe.device_name, &probe.device_id)),
        ("address", probe.address.clone()),
        ("outcome", with_detail(&probe.outcome, &probe.error_detail)),
        (
            "loss",
            format!(
                "{:.1} % ({} sent, {} received)",
                probe.loss_percent, probe.sent, probe.received
            ),
        ),
        (
            "rtt",
            format!(
                "min/avg/max {}/{}/{} ms",
                rtt(probe.rtt_min_ms),
                rtt(probe.rtt_avg_ms),
                rtt(probe.rtt_max_ms)
            ),
        ),
        ("took", format!("{} ms", probe.duration_ms)),
        (
            "executor",
            executor_text(&probe.executor_id, &probe.executor_labels),
        ),
    ];
    write_lines(out, &lines)
}

fn write_poll(out: &mut impl io::Write, poll: &PollJson) -> io::Result<()> {
    let mut outcome = with_detail(&poll.outcome, &poll.error_detail);
    if poll.partial {
        outcome.push_str(" (partial)");
    }
    let lines = [
        ("device", device_text(&poll.device_name, &poll.device_id)),
        ("address", poll.address.clone()),
        ("outcome", outcome),
        (
            "sysname",
            poll.sys_name.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "uptime",
            poll.sys_uptime_ticks.map_or_else(|| "-".into(), uptime),
        ),
        ("profile", or_dash(&poll.profile)),
        (
            "interfaces",
            format!("{} ({} up)", poll.interfaces, poll.interfaces_up),
        ),
        ("values", poll.values.to_string()),
        (
            "took",
            format!("{} ms, {} requests", poll.duration_ms, poll.requests_sent),
        ),
        (
            "executor",
            executor_text(&poll.executor_id, &poll.executor_labels),
        ),
    ];
    write_lines(out, &lines)
}

/// `NAME  value` lines, names upper-cased and padded to the longest.
fn write_lines(out: &mut impl io::Write, lines: &[(&str, String)]) -> io::Result<()> {
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in lines {
        writeln!(out, "{:width$}  {value}", name.to_uppercase())?;
    }
    Ok(())
}

fn device_text(name: &str, id: &str) -> String {
    format!("{name} ({id})")
}

fn executor_text(id: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return id.to_string();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{id} ({})", pairs.join(", "))
}

fn with_detail(outcome: &str, detail: &str) -> String {
    let outcome = outcome.to_uppercase();
    if detail.is_empty() {
        outcome
    } else {
        format!("{outcome}: {detail}")
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.into()
    }
}

/// `3d 04:05:06` from TimeTicks (hundredths of a second).
fn uptime(ticks: u32) -> String {
    let seconds = ticks / 100;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    format!(
        "{days}d {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `PROBE_OUTCOME_TIMEOUT` → `timeout`.
fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_summary_names_outcome_loss_rtt_and_executor() {
        let json = ProbeJson::from(ProbeDeviceResponse {
            result: Some(ProbeResult {
                device_id: "d1".into(),
                address: "127.0.0.1".into(),
                sent: 3,
                received: 2,
                loss_percent: 33.3,
                rtt_min_us: Some(41),
                rtt_avg_us: Some(60),
                rtt_max_us: Some(1085),
                outcome: 1,
                ..Default::default()
            }),
            executor_id: "ping-b".into(),
            executor_labels: HashMap::from([("zone".into(), "b".into())]),
            device_name: "r1".into(),
            selector: HashMap::new(),
        });
        let mut out = Vec::new();
        write_probe(&mut out, &json).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("DEVICE    r1 (d1)\n"), "{text}");
        assert!(text.contains("OUTCOME   OK\n"), "{text}");
        assert!(
            text.contains("LOSS      33.3 % (3 sent, 2 received)\n"),
            "{text}"
        );
        assert!(
            text.contains("RTT       min/avg/max 0.041/0.060/1.085 ms\n"),
            "{text}"
        );
        assert!(text.ends_with("EXECUTOR  ping-b (zone=b)\n"), "{text}");
        assert_eq!(serde_json::to_value(&json).unwrap()["outcome"], "ok");
    }

    #[test]
    fn uptime_reads_as_days_and_clock() {
        assert_eq!(uptime(0), "0d 00:00:00");
        assert_eq!(
            uptime(100 * (2 * 86_400 + 3 * 3600 + 4 * 60 + 5)),
            "2d 03:04:05"
        );
    }
}

//! `netward availability`: an availability report (`GetAvailabilityReport`)
//! per region, site, device type or device over a period, with totals and
//! the top problem devices, as a table, CSV (durations in seconds, one
//! header row) or one JSON object. The CSV and the JSON carry the same rows
//! with the same field names (docs/reports.md).

use std::io;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use netward_shared::proto::v1::{
    AvailabilityFigures, AvailabilityGrouping, AvailabilityReportRow, DeviceType,
    GetAvailabilityReportRequest, GetAvailabilityReportResponse,
};
use prost_types::Timestamp;
use serde::Serialize;

use super::alerting::AlertingArgs;
use super::csv_format::device_type_text;
use super::selectors::parse_type;
use super::table::Table;
use super::when::parse_since;

#[derive(Debug, Args)]
pub struct AvailabilityArgs {
    /// Only devices of sites in this region (combines with --site and --type: all must match)
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Only devices of this site, by id or exact name
    #[arg(long, value_name = "SITE")]
    site: Option<String>,
    /// Only devices of this type (router, switch, access_point, atm, …)
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    device_type: Option<DeviceType>,
    /// One row per region, site, device type or device
    #[arg(long, value_enum, value_name = "GROUPING", default_value_t = By::Region)]
    by: By,
    /// Start of the period: this long ago (30m, 12h, 7d) or an RFC 3339 instant [default: --to minus 24h]
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = parse_since)]
    from: Option<SystemTime>,
    /// End of the period: this long ago or an RFC 3339 instant [default: now]
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = parse_since)]
    to: Option<SystemTime>,
    /// How many problem devices to list (most downtime, then most incidents), at most 1000
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: u32,
    /// CSV (a header row, durations in seconds) instead of a table
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// One JSON object instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    alerting: AlertingArgs,
}

/// `--by`: the report's grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    Region,
    Site,
    Type,
    Device,
}

impl By {
    fn grouping(self) -> AvailabilityGrouping {
        match self {
            By::Region => AvailabilityGrouping::Region,
            By::Site => AvailabilityGrouping::Site,
            By::Type => AvailabilityGrouping::DeviceType,
            By::Device => AvailabilityGrouping::Device,
        }
    }
}

pub async fn run(args: AvailabilityArgs) -> anyhow::Result<()> {
    let request = GetAvailabilityReportRequest {
        start_time: args.from.map(Timestamp::from),
        end_time: args.to.map(Timestamp::from),
        region: args.region.clone().unwrap_or_default(),
        site: args.site.clone().unwrap_or_default(),
        device_type: args.device_type.unwrap_or_default() as i32,
        group_by: args.by.grouping() as i32,
        top: args.top,
    };
    let report = args
        .alerting
        .client()?
        .get_availability_report(request)
        .await
        .map_err(|status| args.alerting.call_failed("GetAvailabilityReport", &status))?
        .into_inner();
    let out = io::stdout().lock();
    if args.json {
        write_json(out, &report)
    } else if args.csv {
        write_csv(out, &report)
    } else {
        write_table(out, &report, args.by)
    }
}

/// One line of the CSV, and one row of the JSON object's lists: `kind` is
/// the grouping (`region`, `site`, `type`, `device`) for a report row,
/// `total` for the totals, `top` for a problem device. Durations in
/// seconds, to the millisecond.
#[derive(Debug, Serialize)]
struct RowOut {
    kind: String,
    key: String,
    name: String,
    region: String,
    site: String,
    device_type: String,
    devices: u32,
    uptime_percent: f64,
    monitored_seconds: f64,
    downtime_seconds: f64,
    unreachable_seconds: f64,
    maintenance_seconds: f64,
    unknown_seconds: f64,
    unmonitored_seconds: f64,
    incidents: u32,
    recoveries: u32,
    recovery_seconds: f64,
    mttr_seconds: f64,
    longest_outage_seconds: f64,
}

/// `--json`: the period, the grouping, the rows, the totals and the top devices.
#[derive(Debug, Serialize)]
struct ReportOut {
    start_time: String,
    end_time: String,
    group_by: &'static str,
    rows: Vec<RowOut>,
    totals: RowOut,
    top_devices: Vec<RowOut>,
}

fn kind_of(grouping: i32) -> &'static str {
    match AvailabilityGrouping::try_from(grouping) {
        Ok(AvailabilityGrouping::Site) => "site",
        Ok(AvailabilityGrouping::DeviceType) => "type",
        Ok(AvailabilityGrouping::Device) => "device",
        _ => "region",
    }
}

/// Seconds to the millisecond (the state changes' own precision is the
/// microsecond; a report needs no more).
fn seconds(d: Option<&prost_types::Duration>) -> f64 {
    d.map_or(0.0, |d| {
        let millis = i128::from(d.seconds) * 1000 + i128::from(d.nanos / 1_000_000);
        millis as f64 / 1000.0
    })
}

fn row_out(kind: &str, row: &AvailabilityReportRow) -> RowOut {
    let default = AvailabilityFigures::default();
    let f = row.figures.as_ref().unwrap_or(&default);
    RowOut {
        kind: kind.to_string(),
        key: row.key.clone(),
        name: row.name.clone(),
        region: row.region.clone(),
        site: row.site_name.clone(),
        device_type: device_type_text(row.device_type()),
        devices: f.device_count,
        uptime_percent: f.uptime_percent,
        monitored_seconds: seconds(f.monitored_time.as_ref()),
        downtime_seconds: seconds(f.downtime.as_ref()),
        unreachable_seconds: seconds(f.unreachable_time.as_ref()),
        maintenance_seconds: seconds(f.maintenance_time.as_ref()),
        unknown_seconds: seconds(f.unknown_time.as_ref()),
        unmonitored_seconds: seconds(f.unmonitored_time.as_ref()),
        incidents: f.incidents,
        recoveries: f.recoveries,
        recovery_seconds: seconds(f.recovery_time.as_ref()),
        mttr_seconds: seconds(f.mttr.as_ref()),
        longest_outage_seconds: seconds(f.longest_outage.as_ref()),
    }
}

fn report_out(report: &GetAvailabilityReportResponse) -> ReportOut {
    let kind = kind_of(report.group_by);
    let totals = AvailabilityReportRow {
        key: "total".into(),
        name: "total".into(),
        figures: report.totals,
        ..Default::default()
    };
    ReportOut {
        start_time: time_text(report.start_time.as_ref()),
        end_time: time_text(report.end_time.as_ref()),
        group_by: kind,
        rows: report.rows.iter().map(|r| row_out(kind, r)).collect(),
        totals: row_out("total", &totals),
        top_devices: report
            .top_devices
            .iter()
            .map(|r| row_out("top", r))
            .collect(),
    }
}

fn time_text(at: Option<&Timestamp>) -> String {
    at.map(ToString::to_string).unwrap_or_default()
}

fn write_json(
    mut out: impl io::Write,
    report: &GetAvailabilityReportResponse,
) -> anyhow::Result<()> {
    serde_json::to_writer(&mut out, &report_out(report))?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The rows, then the totals (`kind` = `total`), then the top devices
/// (`kind` = `top`), under one header.
fn write_csv(out: impl io::Write, report: &GetAvailabilityReportResponse) -> anyhow::Result<()> {
    let report = report_out(report);
    let mut writer = csv::Writer::from_writer(out);
    for row in report
        .rows
        .iter()
        .chain([&report.totals])
        .chain(&report.top_devices)
    {
        writer.serialize(row).context("cannot write the csv")?;
    }
    writer.flush().context("cannot write the csv")?;
    Ok(())
}

fn write_table(
    mut out: impl io::Write,
    report: &GetAvailabilityReportResponse,
    by: By,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "availability {} to {}, by {}",
        second_text(report.start_time.as_ref()),
        second_text(report.end_time.as_ref()),
        kind_of(report.group_by)
    )?;
    // Where a row is, for the groupings whose rows have a place.
    let (first, place): (&'static str, &[&'static str]) = match by {
        By::Region => ("region", &[]),
        By::Site => ("site", &["region"]),
        By::Type => ("type", &[]),
        By::Device => ("device", &["site", "region"]),
    };
    let mut header = vec![first];
    header.extend(place);
    header.extend([
        "devices",
        "uptime",
        "downtime",
        "unreachable",
        "maintenance",
        "incidents",
        "mttr",
        "longest",
    ]);
    let mut table = Table::new(header);
    let cells = |name: &str, places: Vec<String>, f: &AvailabilityFigures| {
        let mut cells = vec![name.to_string()];
        cells.extend(places);
        cells.extend([
            f.device_count.to_string(),
            format!("{:.3}%", f.uptime_percent),
            span_text(f.downtime.as_ref()),
            span_text(f.unreachable_time.as_ref()),
            span_text(f.maintenance_time.as_ref()),
            f.incidents.to_string(),
            span_text(f.mttr.as_ref()),
            span_text(f.longest_outage.as_ref()),
        ]);
        cells
    };
    let default = AvailabilityFigures::default();
    for row in &report.rows {
        let places = match by {
            By::Site => vec![row.region.clone()],
            By::Device => vec![row.site_name.clone(), row.region.clone()],
            By::Region | By::Type => Vec::new(),
        };
        table.push(cells(
            &row.name,
            places,
            row.figures.as_ref().unwrap_or(&default),
        ));
    }
    table.push(cells(
        "TOTAL",
        vec![String::new(); place.len()],
        report.totals.as_ref().unwrap_or(&default),
    ));
    table.write(&mut out)?;
    if report.top_devices.is_empty() {
        writeln!(out, "\nno device was down in the period")?;
    } else {
        writeln!(out, "\ntop problem devices")?;
        let mut top = Table::new(vec![
            "device",
            "site",
            "region",
            "type",
            "downtime",
            "incidents",
            "mttr",
            "longest",
        ]);
        for row in &report.top_devices {
            let f = row.figures.as_ref().unwrap_or(&default);
            top.push(vec![
                row.name.clone(),
                row.site_name.clone(),
                row.region.clone(),
                device_type_text(row.device_type()),
                span_text(f.downtime.as_ref()),
                f.incidents.to_string(),
                span_text(f.mttr.as_ref()),
                span_text(f.longest_outage.as_ref()),
            ]);
        }
        top.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// An instant to the second, for the table's title.
fn second_text(at: Option<&Timestamp>) -> String {
    at.map(|t| Timestamp {
        seconds: t.seconds,
        nanos: 0,
    })
    .as_ref()
    .map(ToString::to_string)
    .unwrap_or_default()
}

/// `0s`, `45s`, `12m 05s`, `3h 20m`, `2d 04h`: two units are enough to read.
fn span_text(d: Option<&prost_types::Duration>) -> String {
    let secs = Duration::from_secs_f64(seconds(d).max(0.0)).as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_read_as_the_csv_writes_them() {
        assert_eq!(parse_type("router"), Ok(DeviceType::Router));
        assert_eq!(parse_type("access_point"), Ok(DeviceType::AccessPoint));
        assert_eq!(parse_type("DEVICE_TYPE_ATM"), Ok(DeviceType::Atm));
        let error = parse_type("toaster").unwrap_err();
        assert!(
            error.contains("router") && error.contains("access_point"),
            "{error}"
        );
    }

    #[test]
    fn spans_read_in_two_units() {
        let d = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
        assert_eq!(span_text(d(0).as_ref()), "0s");
        assert_eq!(span_text(d(725).as_ref()), "12m 05s");
        assert_eq!(span_text(d(12_000).as_ref()), "3h 20m");
        assert_eq!(span_text(d(187_200).as_ref()), "2d 04h");
    }
}

//! `netward devices import|list|export`: a CSV file streamed into
//! `ImportDevices` with a progress bar and a per-line report, `ListDevices`
//! paged into a table or JSON lines, and `ExportDevices` written as CSV.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use netward_shared::proto::v1::{
    Device, DeviceFilter, ExportDevicesRequest, ImportDevicesRequest, ImportDevicesResponse,
    ImportOptions, ImportRow, ImportRows, ListDevicesRequest, import_devices_request,
};
use serde::Serialize;

use super::InventoryArgs;
use super::csv_format::{self, LineError, RowWriter};
use super::table::Table;

/// Rows per `ImportRows` message: the most the inventory accepts in one.
const CHUNK_ROWS: usize = 1000;
/// Devices per `ListDevices` page: the most the inventory serves in one.
const PAGE_SIZE: u32 = 1000;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV file with a header row (columns: see the README)
    #[arg(value_name = "FILE.csv")]
    file: PathBuf,
    /// Check every row and report what would change, but write nothing
    #[arg(long)]
    dry_run: bool,
    /// All or nothing: if any row fails, write no row at all
    #[arg(long)]
    atomic: bool,
    #[command(flatten)]
    inventory: InventoryArgs,
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    // The whole file is read before anything is sent: a bad header then
    // costs no call, and the progress bar knows the total.
    let outcome = csv_format::read_rows(BufReader::new(file))
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let local_errors = outcome.errors;
    let total_rows = outcome.rows.len();
    // The inventory never sees a line that is not a CSV record, so it cannot
    // honour --atomic for it: such an import is only checked, never applied.
    let atomic_blocked = args.atomic && !local_errors.is_empty();
    let options = ImportOptions {
        dry_run: args.dry_run || atomic_blocked,
        atomic: args.atomic,
        source_name: args
            .file
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
    };

    let progress = progress_bar(total_rows as u64);
    let sent = progress.clone();
    // tonic pulls a message when the connection can take it, so counting
    // rows as they are pulled shows the upload as it happens.
    let stream =
        futures::stream::iter(import_messages(options, outcome.rows)).inspect(move |message| {
            if let Some(import_devices_request::Item::Rows(chunk)) = &message.item {
                sent.inc(chunk.rows.len() as u64);
                if sent.position() == sent.length().unwrap_or(0) {
                    sent.set_message("waiting for the inventory");
                }
            }
        });

    let mut client = args.inventory.client()?;
    let result = client.import_devices(stream).await;
    progress.finish_and_clear();
    let response = result
        .map_err(|status| args.inventory.call_failed("ImportDevices", &status))?
        .into_inner();

    let mut out = io::stdout().lock();
    write_import_report(&mut out, &response, &local_errors, atomic_blocked)?;
    out.flush()?;

    let failed = response.failed + local_errors.len() as u64;
    if failed > 0 {
        let total = response.total_rows + local_errors.len() as u64;
        bail!("{failed} of {total} rows failed");
    }
    Ok(())
}

/// The `ImportDevices` stream of `rows`: the options, then the rows in
/// chunks of the most the inventory takes in one message.
fn import_messages(options: ImportOptions, rows: Vec<ImportRow>) -> Vec<ImportDevicesRequest> {
    let mut messages = Vec::with_capacity(1 + rows.len().div_ceil(CHUNK_ROWS));
    messages.push(ImportDevicesRequest {
        item: Some(import_devices_request::Item::Options(options)),
    });
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<ImportRow> = rows.by_ref().take(CHUNK_ROWS).collect();
        messages.push(ImportDevicesRequest {
            item: Some(import_devices_request::Item::Rows(ImportRows {
                rows: chunk,
            })),
        });
    }
    messages
}

/// Imports a CSV text (upsert by name) without a progress bar or report:
/// for `netward up`, which prints its own line. A line that is not a CSV
/// record fails the import before anything is sent.
pub async fn import_csv(
    client: &mut super::InventoryClient,
    csv: impl io::Read,
    source_name: &str,
) -> anyhow::Result<ImportDevicesResponse> {
    let outcome =
        csv_format::read_rows(csv).with_context(|| format!("cannot read {source_name}"))?;
    if let Some(error) = outcome.errors.first() {
        bail!(
            "{source_name}: {} lines are not CSV records, the first: line {}: {}",
            outcome.errors.len(),
            error.line,
            error.reason
        );
    }
    let options = ImportOptions {
        source_name: source_name.to_string(),
        ..ImportOptions::default()
    };
    let messages = import_messages(options, outcome.rows);
    Ok(client
        .import_devices(futures::stream::iter(messages))
        .await
        .map_err(|status| anyhow::anyhow!("ImportDevices: {}", super::describe_status(&status)))?
        .into_inner())
}

/// A progress bar on standard error, drawn only when it is a terminal
/// (a log file or CI output gets no escape codes).
fn progress_bar(total: u64) -> ProgressBar {
    let target = if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let progress = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:40}] {human_pos}/{human_len} rows ({elapsed})",
    )
    .map_or_else(
        |_| ProgressStyle::default_bar(),
        |style| style.progress_chars("=> "),
    );
    progress.set_style(style);
    progress.set_message("sending");
    progress.enable_steady_tick(Duration::from_millis(100));
    progress
}

/// The summary, then one line per error, sorted by line (the inventory's
/// errors and the lines that were not CSV records, merged).
fn write_import_report(
    out: &mut impl io::Write,
    response: &ImportDevicesResponse,
    local_errors: &[LineError],
    atomic_blocked: bool,
) -> io::Result<()> {
    let local = local_errors.len() as u64;
    writeln!(
        out,
        "rows: {}, created: {}, updated: {}, unchanged: {}, failed: {}, sites created: {}",
        response.total_rows + local,
        response.created,
        response.updated,
        response.unchanged,
        response.failed + local,
        response.sites_created,
    )?;
    let applied = if response.applied {
        "applied: yes".to_string()
    } else if atomic_blocked {
        format!(
            "applied: no (atomic, and {local} line(s) are not CSV records; the other rows were only checked)"
        )
    } else if response.dry_run {
        "applied: no (dry run: the counts say what an import would do)".to_string()
    } else if response.atomic && response.failed > 0 {
        "applied: no (atomic, and some rows failed)".to_string()
    } else if response.created + response.updated + response.sites_created == 0 {
        "applied: no (nothing to change)".to_string()
    } else {
        "applied: no".to_string()
    };
    writeln!(out, "{applied}")?;

    let mut lines: Vec<(u64, String)> = response
        .errors
        .iter()
        .map(|error| {
            let text = if error.field.is_empty() {
                error.reason.clone()
            } else {
                format!("{} = {:?}: {}", error.field, error.value, error.reason)
            };
            (u64::from(error.line), text)
        })
        .chain(
            local_errors
                .iter()
                .map(|error| (error.line, format!("not a CSV record: {}", error.reason))),
        )
        .collect();
    // Stable: several errors of one line keep the inventory's order.
    lines.sort_by_key(|(line, _)| *line);
    for (line, text) in &lines {
        writeln!(out, "line {line}: {text}")?;
    }
    if response.errors_truncated {
        writeln!(
            out,
            "… more errors than listed: the inventory reports at most {}",
            response.errors.len()
        )?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only devices of this site (exact name)
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    /// One JSON object per device and line, instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    inventory: InventoryArgs,
}

/// A device as `devices list --json` prints it: the fields an operator
/// scripts against, in the CSV's text forms.
#[derive(Debug, Serialize)]
struct DeviceJson {
    id: String,
    name: String,
    ip: String,
    site: String,
    region: String,
    #[serde(rename = "type")]
    device_type: String,
    vendor: String,
    model: String,
    parent: Option<String>,
    tags: BTreeMap<String, String>,
    enabled: bool,
    snmp_version: Option<&'static str>,
    description: String,
}

impl From<Device> for DeviceJson {
    fn from(device: Device) -> Self {
        let snmp_version = device
            .snmp
            .as_ref()
            .filter(|snmp| snmp.enabled)
            .map(|snmp| csv_format::snmp_version_text(snmp.version()));
        Self {
            device_type: csv_format::device_type_text(device.device_type()),
            enabled: device.enabled.unwrap_or(true),
            parent: Some(device.parent_device_name).filter(|name| !name.is_empty()),
            tags: device.tags.into_iter().collect(),
            snmp_version,
            id: device.id,
            name: device.name,
            ip: device.ip_address,
            site: device.site_name,
            region: device.region,
            vendor: device.vendor,
            model: device.model,
            description: device.description,
        }
    }
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = args.inventory.client()?;
    let filter = DeviceFilter {
        site_name: args.site.clone().unwrap_or_default(),
        ..DeviceFilter::default()
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut table = Table::new(vec![
        "name", "ip", "site", "type", "vendor", "parent", "enabled",
    ]);
    let mut page_token = String::new();
    loop {
        let page = client
            .list_devices(ListDevicesRequest {
                filter: Some(filter.clone()),
                page_size: PAGE_SIZE,
                page_token,
            })
            .await
            .map_err(|status| args.inventory.call_failed("ListDevices", &status))?
            .into_inner();
        for device in page.devices {
            if args.json {
                // Through a String: serde_json hides an I/O error's kind, and a
                // closed pipe must stay recognisable.
                let line = serde_json::to_string(&DeviceJson::from(device))?;
                writeln!(out, "{line}")?;
            } else {
                table.push(table_row(&device));
            }
        }
        // JSON lines go out page by page; a table needs every row for its widths.
        out.flush()?;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if !args.json {
        if table.is_empty() {
            eprintln!("no devices");
        } else {
            table.write(&mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn table_row(device: &Device) -> Vec<String> {
    vec![
        device.name.clone(),
        device.ip_address.clone(),
        device.site_name.clone(),
        csv_format::device_type_text(device.device_type()),
        device.vendor.clone(),
        device.parent_device_name.clone(),
        if device.enabled.unwrap_or(true) {
            "yes"
        } else {
            "no"
        }
        .to_string(),
    ]
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only devices of this site (exact name)
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    #[command(flatten)]
    inventory: InventoryArgs,
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let mut client = args.inventory.client()?;
    let request = ExportDevicesRequest {
        filter: Some(DeviceFilter {
            site_name: args.site.clone().unwrap_or_default(),
            ..DeviceFilter::default()
        }),
        chunk_size: 1000,
    };
    let mut stream = client
        .export_devices(request)
        .await
        .map_err(|status| args.inventory.call_failed("ExportDevices", &status))?
        .into_inner();
    let mut writer = RowWriter::new(io::stdout().lock())?;
    let mut exported = 0_u64;
    let mut revision = 0;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| args.inventory.call_failed("ExportDevices", &status))?
    {
        revision = chunk.revision;
        for device in &chunk.devices {
            writer.write(&csv_format::device_row(device))?;
        }
        exported += chunk.devices.len() as u64;
    }
    writer.finish()?;
    eprintln!("exported {exported} devices (inventory revision {revision})");
    Ok(())
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Resume after this revision instead of starting with a snapshot
    #[arg(long, value_name = "REVISION", default_value_t = 0)]
    from: u64,
    /// Stop after the snapshot, printing its size and how long it took
    #[arg(long)]
    snapshot_only: bool,
    #[command(flatten)]
    inventory: InventoryArgs,
}

/// Prints the snapshot's size and time, then one line per change:
/// `revision kind name ip`, until interrupted.
pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    use netward_shared::proto::v1::watch_devices_response::Event;
    use netward_shared::proto::v1::{ChangeKind, SnapshotReason, WatchDevicesRequest};

    let mut client = args
        .inventory
        .client()?
        .max_decoding_message_size(64 * 1024 * 1024);
    let started = std::time::Instant::now();
    let mut stream = client
        .watch_devices(WatchDevicesRequest {
            from_revision: args.from,
            chunk_size: 0,
        })
        .await
        .map_err(|status| args.inventory.call_failed("WatchDevices", &status))?
        .into_inner();
    let mut stdout = io::stdout().lock();
    let mut devices = 0usize;
    loop {
        let message = stream
            .message()
            .await
            .map_err(|status| args.inventory.call_failed("WatchDevices", &status))?;
        let Some(event) = message.and_then(|m| m.event) else {
            bail!("the inventory ended the watch");
        };
        match event {
            Event::SnapshotBegin(begin) => {
                devices = 0;
                let reason = SnapshotReason::try_from(begin.reason).map_or("?", |r| {
                    r.as_str_name().trim_start_matches("SNAPSHOT_REASON_")
                });
                writeln!(
                    stdout,
                    "snapshot of {} devices at revision {} ({reason})",
                    begin.device_count, begin.revision
                )?;
            }
            Event::SnapshotChunk(chunk) => devices += chunk.devices.len(),
            Event::SnapshotEnd(end) => {
                writeln!(
                    stdout,
                    "snapshot: {devices} devices at revision {} in {:.3} s",
                    end.revision,
                    started.elapsed().as_secs_f64()
                )?;
                if args.snapshot_only {
                    return Ok(());
                }
            }
            Event::Change(change) => {
                let kind = ChangeKind::try_from(change.kind)
                    .map_or("?", |k| k.as_str_name().trim_start_matches("CHANGE_KIND_"));
                let device = change.device.unwrap_or_default();
                writeln!(
                    stdout,
                    "{} {kind} {} {}",
                    change.revision, device.name, device.ip_address
                )?;
            }
            Event::Progress(_) => {}
        }
        stdout.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use netward_shared::proto::v1::ImportRowError;

    use super::*;

    fn report(response: &ImportDevicesResponse, local: &[LineError], blocked: bool) -> String {
        let mut out = Vec::new();
        write_import_report(&mut out, response, local, blocked).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_report_lists_every_error_by_line() {
        let response = ImportDevicesResponse {
            total_rows: 4,
            created: 2,
            failed: 2,
            errors: vec![
                ImportRowError {
                    line: 17,
                    field: "ip".into(),
                    value: "10.0.0.300".into(),
                    reason: "not an IP address".into(),
                    name: "gori-001-sw1".into(),
                },
                ImportRowError {
                    line: 3,
                    field: String::new(),
                    value: String::new(),
                    reason: "duplicate name in file".into(),
                    name: "gori-001-sw2".into(),
                },
            ],
            applied: true,
            ..ImportDevicesResponse::default()
        };
        let local = [LineError {
            line: 9,
            reason: "2 fields where the header has 12".into(),
        }];
        assert_eq!(
            report(&response, &local, false),
            "rows: 5, created: 2, updated: 0, unchanged: 0, failed: 3, sites created: 0\n\
             applied: yes\n\
             line 3: duplicate name in file\n\
             line 9: not a CSV record: 2 fields where the header has 12\n\
             line 17: ip = \"10.0.0.300\": not an IP address\n"
        );
    }

    #[test]
    fn the_report_says_why_nothing_was_written() {
        let dry = ImportDevicesResponse {
            dry_run: true,
            ..ImportDevicesResponse::default()
        };
        assert!(report(&dry, &[], false).contains("applied: no (dry run"));
        let atomic = ImportDevicesResponse {
            atomic: true,
            failed: 1,
            ..ImportDevicesResponse::default()
        };
        assert!(report(&atomic, &[], false).contains("applied: no (atomic, and some rows failed)"));
        let local = [LineError {
            line: 2,
            reason: "x".into(),
        }];
        assert!(report(&dry, &local, true).contains("1 line(s) are not CSV records"));
        let same = ImportDevicesResponse {
            total_rows: 3,
            unchanged: 3,
            ..ImportDevicesResponse::default()
        };
        assert!(report(&same, &[], false).contains("applied: no (nothing to change)"));
    }

    #[test]
    fn json_uses_the_csv_text_forms() {
        let device = Device {
            name: "rustavi-004-ap1".into(),
            ip_address: "127.1.90.5".into(),
            device_type: netward_shared::proto::v1::DeviceType::AccessPoint as i32,
            enabled: Some(true),
            tags: [("criticality".to_string(), "low".to_string())].into(),
            ..Device::default()
        };
        let json = serde_json::to_value(DeviceJson::from(device)).unwrap();
        assert_eq!(json["type"], "access_point");
        assert_eq!(json["parent"], serde_json::Value::Null);
        assert_eq!(json["tags"]["criticality"], "low");
        assert_eq!(json["snmp_version"], serde_json::Value::Null);
    }
}

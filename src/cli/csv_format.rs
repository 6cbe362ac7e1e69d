//! The device CSV format shared by import, export and the generator: the
//! columns, the header check, CSV records ↔ `ImportRow`s with their line
//! numbers, and the text forms of a `Device`'s fields.

use std::collections::HashMap;
use std::io;

use anyhow::{Context as _, bail};
use csv::StringRecord;
use netward_shared::proto::v1::{Device, DeviceType, ImportRow, SnmpVersion};

/// One CSV column; each is one text field of `ImportRow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Ip,
    Site,
    Region,
    Type,
    Vendor,
    Model,
    Parent,
    Tags,
    Enabled,
    SnmpVersion,
    SnmpCredential,
    SnmpPort,
    SnmpProfile,
    ExecutorSelector,
    Description,
}

/// Every column, in the order export and the generator write them.
pub const COLUMNS: [Column; 16] = [
    Column::Name,
    Column::Ip,
    Column::Site,
    Column::Region,
    Column::Type,
    Column::Vendor,
    Column::Model,
    Column::Parent,
    Column::Tags,
    Column::Enabled,
    Column::SnmpVersion,
    Column::SnmpCredential,
    Column::SnmpPort,
    Column::SnmpProfile,
    Column::ExecutorSelector,
    Column::Description,
];

/// Columns a header must have: a row without them could never be imported.
/// A missing optional column is read as empty cells, which the inventory
/// takes as "default on create, unchanged on update".
const REQUIRED: [Column; 3] = [Column::Name, Column::Ip, Column::Site];

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Name => "name",
            Column::Ip => "ip",
            Column::Site => "site",
            Column::Region => "region",
            Column::Type => "type",
            Column::Vendor => "vendor",
            Column::Model => "model",
            Column::Parent => "parent",
            Column::Tags => "tags",
            Column::Enabled => "enabled",
            Column::SnmpVersion => "snmp_version",
            Column::SnmpCredential => "snmp_credential",
            Column::SnmpPort => "snmp_port",
            Column::SnmpProfile => "snmp_profile",
            Column::ExecutorSelector => "executor_selector",
            Column::Description => "description",
        }
    }

    fn from_header(text: &str) -> Option<Column> {
        COLUMNS
            .into_iter()
            .find(|column| column.name().eq_ignore_ascii_case(text))
    }

    pub fn cell(self, row: &ImportRow) -> &str {
        match self {
            Column::Name => &row.name,
            Column::Ip => &row.ip,
            Column::Site => &row.site,
            Column::Region => &row.region,
            Column::Type => &row.device_type,
            Column::Vendor => &row.vendor,
            Column::Model => &row.model,
            Column::Parent => &row.parent,
            Column::Tags => &row.tags,
            Column::Enabled => &row.enabled,
            Column::SnmpVersion => &row.snmp_version,
            Column::SnmpCredential => &row.snmp_credential,
            Column::SnmpPort => &row.snmp_port,
            Column::SnmpProfile => &row.snmp_profile,
            Column::ExecutorSelector => &row.executor_selector,
            Column::Description => &row.description,
        }
    }

    fn cell_mut(self, row: &mut ImportRow) -> &mut String {
        match self {
            Column::Name => &mut row.name,
            Column::Ip => &mut row.ip,
            Column::Site => &mut row.site,
            Column::Region => &mut row.region,
            Column::Type => &mut row.device_type,
            Column::Vendor => &mut row.vendor,
            Column::Model => &mut row.model,
            Column::Parent => &mut row.parent,
            Column::Tags => &mut row.tags,
            Column::Enabled => &mut row.enabled,
            Column::SnmpVersion => &mut row.snmp_version,
            Column::SnmpCredential => &mut row.snmp_credential,
            Column::SnmpPort => &mut row.snmp_port,
            Column::SnmpProfile => &mut row.snmp_profile,
            Column::ExecutorSelector => &mut row.executor_selector,
            Column::Description => &mut row.description,
        }
    }
}

/// The columns of a file, in the file's order.
#[derive(Debug)]
pub struct Header {
    columns: Vec<Column>,
}

impl Header {
    /// Checks a header row: every name known, none twice, the required ones present.
    pub fn parse(record: &StringRecord) -> anyhow::Result<Header> {
        let mut columns = Vec::with_capacity(record.len());
        for (index, text) in record.iter().enumerate() {
            // Spreadsheets often save UTF-8 CSV with a byte-order mark.
            let text = if index == 0 {
                text.trim_start_matches('\u{feff}').trim()
            } else {
                text
            };
            let Some(column) = Column::from_header(text) else {
                let known: Vec<&str> = COLUMNS.iter().map(|c| c.name()).collect();
                bail!(
                    "line 1: unknown column {text:?} in the header (the first line must name the columns: {})",
                    known.join(",")
                );
            };
            if columns.contains(&column) {
                bail!(
                    "line 1: column {:?} appears twice in the header",
                    column.name()
                );
            }
            columns.push(column);
        }
        if let Some(missing) = REQUIRED.iter().find(|c| !columns.contains(c)) {
            bail!("line 1: the header has no {:?} column", missing.name());
        }
        Ok(Header { columns })
    }

    /// Maps one record (already checked to have as many fields as the header) to a row.
    pub fn row(&self, record: &StringRecord, line: u32) -> ImportRow {
        let mut row = ImportRow {
            line,
            ..ImportRow::default()
        };
        for (column, value) in self.columns.iter().zip(record.iter()) {
            *column.cell_mut(&mut row) = value.to_string();
        }
        row
    }
}

/// A line that is not a CSV record at all; it is reported here and never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub reason: String,
}

/// The rows of a file, and the lines that could not be read as records.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub rows: Vec<ImportRow>,
    pub errors: Vec<LineError>,
}

/// Reads a device CSV: the header row, then one `ImportRow` per record, each
/// carrying the line it starts on (header = line 1). Cells are trimmed.
/// A malformed record is collected as a `LineError` and reading goes on;
/// only a bad header or an I/O error stops it.
pub fn read_rows(input: impl io::Read) -> anyhow::Result<ReadOutcome> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = match reader.headers() {
        Ok(record) if record.is_empty() => bail!("the file is empty: a header row is needed"),
        Ok(record) => Header::parse(record)?,
        Err(error) => return Err(csv_error(error)).context("line 1: cannot read the header"),
    };
    let mut outcome = ReadOutcome::default();
    let mut record = StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line);
                let line = u32::try_from(line)
                    .with_context(|| format!("line {line}: the file is too long to import"))?;
                outcome.rows.push(header.row(&record, line));
            }
            Err(error) => outcome.errors.push(line_error(error)?),
        }
    }
    Ok(outcome)
}

/// Describes a record-level CSV error, or gives up on an I/O error.
fn line_error(error: csv::Error) -> anyhow::Result<LineError> {
    let line = error.position().map_or(0, csv::Position::line);
    let reason = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("field {} is not valid UTF-8", err.field() + 1)
        }
        csv::ErrorKind::Io(_) => return Err(csv_error(error)),
        _ => error.to_string(),
    };
    Ok(LineError { line, reason })
}

/// Unwraps an I/O error from a CSV error, so that a closed pipe stays
/// recognisable (see `is_broken_pipe`); other CSV errors stay as they are.
pub fn csv_error(error: csv::Error) -> anyhow::Error {
    if !error.is_io_error() {
        return anyhow::Error::new(error);
    }
    match error.into_kind() {
        csv::ErrorKind::Io(io_error) => io_error.into(),
        other => anyhow::anyhow!("csv error: {other:?}"),
    }
}

/// Writes rows as CSV: the header with every column, then one record per row.
pub struct RowWriter<W: io::Write> {
    writer: csv::Writer<W>,
}

impl<W: io::Write> RowWriter<W> {
    pub fn new(output: W) -> anyhow::Result<Self> {
        let mut writer = csv::Writer::from_writer(output);
        writer
            .write_record(COLUMNS.iter().map(|column| column.name()))
            .map_err(csv_error)?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, row: &ImportRow) -> anyhow::Result<()> {
        self.writer
            .write_record(COLUMNS.iter().map(|column| column.cell(row)))
            .map_err(csv_error)
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.writer.flush()?;
        Ok(())
    }
}

/// A device in the import format, so that exporting and importing again
/// changes nothing. SNMP cells are left empty when SNMP is disabled.
pub fn device_row(device: &Device) -> ImportRow {
    let snmp = device.snmp.as_ref().filter(|snmp| snmp.enabled);
    ImportRow {
        line: 0,
        name: device.name.clone(),
        ip: device.ip_address.clone(),
        site: device.site_name.clone(),
        region: device.region.clone(),
        device_type: device_type_text(device.device_type()).to_string(),
        vendor: device.vendor.clone(),
        model: device.model.clone(),
        parent: device.parent_device_name.clone(),
        tags: pairs_text(&device.tags),
        enabled: device
            .enabled
            .map_or(String::new(), |enabled| enabled.to_string()),
        snmp_version: snmp
            .map_or("", |s| snmp_version_text(s.version()))
            .to_string(),
        snmp_credential: snmp.map_or(String::new(), |s| s.credential_name.clone()),
        snmp_port: snmp
            .filter(|s| s.port != 0)
            .map_or(String::new(), |s| s.port.to_string()),
        snmp_profile: snmp.map_or(String::new(), |s| s.profile.clone()),
        executor_selector: pairs_text(&device.executor_selector),
        description: device.description.clone(),
    }
}

/// `router`, `access_point`, … (the enum name without its prefix, lower
/// case); empty for UNSPECIFIED, which the inventory reads as "other".
pub fn device_type_text(device_type: DeviceType) -> String {
    if device_type == DeviceType::Unspecified {
        return String::new();
    }
    let name = device_type.as_str_name();
    name.strip_prefix("DEVICE_TYPE_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// `1`, `2c` or `3`; empty for UNSPECIFIED.
pub fn snmp_version_text(version: SnmpVersion) -> &'static str {
    match version {
        SnmpVersion::Unspecified => "",
        SnmpVersion::V1 => "1",
        SnmpVersion::V2c => "2c",
        SnmpVersion::V3 => "3",
    }
}

/// Tags or an executor selector as `key=value;key2=value2`, sorted by key so
/// that the same map always gives the same text.
pub fn pairs_text(pairs: &HashMap<String, String>) -> String {
    let mut sorted: Vec<(&String, &String)> = pairs.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use netward_shared::proto::v1::SnmpSettings;

    use super::*;

    const HEADER: &str =
        "name,ip,site,region,type,vendor,model,parent,tags,enabled,snmp_version,snmp_credential\n";

    #[test]
    fn rows_carry_their_line_numbers_and_quoted_commas_survive() {
        let text = format!(
            "{HEADER}\
             tbilisi-001-rtr1,127.1.2.1,tbilisi-001,Tbilisi,router,Cisco,ISR 4331,,criticality=high,true,2c,branch-v2c\n\
             \"batumi-014-atm1\",127.1.3.2,batumi-014,Batumi,atm,NCR,\"SelfServ 84, lobby\",batumi-014-rtr1,,,,\n"
        );
        let outcome = read_rows(text.as_bytes()).unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(outcome.rows.len(), 2);
        let router = &outcome.rows[0];
        assert_eq!(router.line, 2);
        assert_eq!(router.name, "tbilisi-001-rtr1");
        assert_eq!(router.device_type, "router");
        assert_eq!(router.snmp_version, "2c");
        assert_eq!(router.snmp_credential, "branch-v2c");
        let atm = &outcome.rows[1];
        assert_eq!(atm.line, 3);
        assert_eq!(atm.name, "batumi-014-atm1");
        assert_eq!(atm.model, "SelfServ 84, lobby");
        assert_eq!(atm.parent, "batumi-014-rtr1");
        assert_eq!(atm.enabled, "");
    }

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let text = "\u{feff}site, IP ,Name,description\n\
                    poti-001 , 127.1.9.1 , poti-001-sw1 ,\"two\nlines\"\n\
                    poti-001,127.1.9.2,poti-001-sw2,\n";
        let outcome = read_rows(text.as_bytes()).unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(outcome.rows[0].name, "poti-001-sw1");
        assert_eq!(outcome.rows[0].ip, "127.1.9.1");
        assert_eq!(outcome.rows[0].site, "poti-001");
        assert_eq!(outcome.rows[0].description, "two\nlines");
        // A record spanning two lines is numbered by its first line.
        assert_eq!(outcome.rows[0].line, 2);
        assert_eq!(outcome.rows[1].line, 4);
        assert_eq!(outcome.rows[1].region, "");
    }

    #[test]
    fn an_unknown_column_is_an_error_naming_it() {
        let error = read_rows("name,ip,site,colour\na,127.1.0.1,s,red\n".as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("unknown column \"colour\""),
            "{error}"
        );
    }

    #[test]
    fn a_header_must_name_the_required_columns_once() {
        let error = read_rows("name,ip\n".as_bytes()).unwrap_err();
        assert!(error.to_string().contains("no \"site\" column"), "{error}");
        let error = read_rows("name,ip,site,ip\n".as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("\"ip\" appears twice"),
            "{error}"
        );
        let error = read_rows("".as_bytes()).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number_and_reading_goes_on() {
        let text = b"name,ip,site\na,127.1.0.1,s\nb,127.1.0.2\nc,127.1.0.3,s,extra\nd,\xff,s\ne,127.1.0.5,s\n";
        let outcome = read_rows(&text[..]).unwrap();
        let names: Vec<(&str, u32)> = outcome
            .rows
            .iter()
            .map(|row| (row.name.as_str(), row.line))
            .collect();
        assert_eq!(names, [("a", 2), ("e", 6)]);
        assert_eq!(
            outcome.errors,
            [
                LineError {
                    line: 3,
                    reason: "2 fields where the header has 3".into()
                },
                LineError {
                    line: 4,
                    reason: "4 fields where the header has 3".into()
                },
                LineError {
                    line: 5,
                    reason: "field 2 is not valid UTF-8".into()
                },
            ]
        );
    }

    fn device() -> Device {
        Device {
            id: "4f1b0c8e-0000-4000-8000-000000000001".into(),
            name: "kutaisi-003-sw1".into(),
            ip_address: "127.1.40.3".into(),
            site_id: "4f1b0c8e-0000-4000-8000-000000000002".into(),
            site_name: "kutaisi-003".into(),
            site_code: "K003".into(),
            region: "Kutaisi".into(),
            device_type: DeviceType::AccessPoint as i32,
            vendor: "Ubiquiti".into(),
            model: "U6-Pro, ceiling".into(),
            tags: HashMap::from([
                ("role".into(), "wifi".into()),
                ("criticality".into(), "low".into()),
            ]),
            enabled: Some(false),
            parent_device_name: "kutaisi-003-rtr1".into(),
            snmp: Some(SnmpSettings {
                enabled: true,
                version: SnmpVersion::V3 as i32,
                port: 1161,
                credential_id: "4f1b0c8e-0000-4000-8000-000000000003".into(),
                credential_name: "branch-v3".into(),
                profile: "auto".into(),
            }),
            executor_selector: HashMap::from([("site".into(), "kutaisi-003".into())]),
            description: "lobby \"north\"".into(),
            ..Device::default()
        }
    }

    /// Reads an import row back the way the ImportRow comments in
    /// inventory.proto define the text forms.
    fn interpret(row: &ImportRow) -> Device {
        let device_type = DeviceType::from_str_name(&format!(
            "DEVICE_TYPE_{}",
            row.device_type.to_ascii_uppercase()
        ))
        .unwrap();
        let version = match row.snmp_version.as_str() {
            "1" => SnmpVersion::V1,
            "2c" => SnmpVersion::V2c,
            "3" => SnmpVersion::V3,
            other => panic!("unexpected snmp_version {other:?}"),
        };
        let pairs = |text: &str| -> HashMap<String, String> {
            text.split(';')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_string(), value.to_string())
                })
                .collect()
        };
        Device {
            name: row.name.clone(),
            ip_address: row.ip.clone(),
            site_name: row.site.clone(),
            region: row.region.clone(),
            device_type: device_type as i32,
            vendor: row.vendor.clone(),
            model: row.model.clone(),
            tags: pairs(&row.tags),
            enabled: Some(row.enabled.parse().unwrap()),
            parent_device_name: row.parent.clone(),
            snmp: Some(SnmpSettings {
                enabled: true,
                version: version as i32,
                port: row.snmp_port.parse().unwrap(),
                credential_name: row.snmp_credential.clone(),
                profile: row.snmp_profile.clone(),
                ..SnmpSettings::default()
            }),
            executor_selector: pairs(&row.executor_selector),
            description: row.description.clone(),
            ..Device::default()
        }
    }

    #[test]
    fn an_exported_device_imports_as_the_same_device() {
        let device = device();
        let mut out = Vec::new();
        let mut writer = RowWriter::new(&mut out).unwrap();
        writer.write(&device_row(&device)).unwrap();
        writer.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "name,ip,site,region,type,vendor,model,parent,tags,enabled,snmp_version,snmp_credential,\
             snmp_port,snmp_profile,executor_selector,description\n"
        ));
        assert!(
            text.contains(",access_point,Ubiquiti,\"U6-Pro, ceiling\",kutaisi-003-rtr1,criticality=low;role=wifi,false,3,branch-v3,1161,auto,site=kutaisi-003,"),
            "{text}"
        );

        let outcome = read_rows(text.as_bytes()).unwrap();
        assert!(outcome.errors.is_empty());
        let [row] = outcome.rows.as_slice() else {
            panic!("one row expected, got {:?}", outcome.rows)
        };
        assert_eq!(row.line, 2);
        let back = interpret(row);
        let expected = Device {
            id: String::new(),
            site_id: String::new(),
            site_code: String::new(),
            snmp: device.snmp.clone().map(|snmp| SnmpSettings {
                credential_id: String::new(),
                ..snmp
            }),
            ..device
        };
        assert_eq!(back, expected);
    }

    #[test]
    fn disabled_snmp_and_unset_fields_export_as_empty_cells() {
        let device = Device {
            name: "gori-002-nvr1".into(),
            ip_address: "127.1.77.4".into(),
            site_name: "gori-002".into(),
            enabled: Some(true),
            snmp: Some(SnmpSettings {
                enabled: false,
                version: SnmpVersion::V2c as i32,
                credential_name: "old".into(),
                ..SnmpSettings::default()
            }),
            ..Device::default()
        };
        let row = device_row(&device);
        assert_eq!(row.device_type, "");
        assert_eq!(row.enabled, "true");
        assert_eq!(
            (
                row.snmp_version.as_str(),
                row.snmp_credential.as_str(),
                row.snmp_port.as_str(),
                row.snmp_profile.as_str()
            ),
            ("", "", "", "")
        );
        assert_eq!(row.tags, "");
    }

    #[test]
    fn text_forms_follow_the_proto() {
        assert_eq!(device_type_text(DeviceType::Router), "router");
        assert_eq!(device_type_text(DeviceType::AccessPoint), "access_point");
        assert_eq!(device_type_text(DeviceType::Paybox), "paybox");
        assert_eq!(device_type_text(DeviceType::Unspecified), "");
        assert_eq!(snmp_version_text(SnmpVersion::V2c), "2c");
        assert_eq!(snmp_version_text(SnmpVersion::V1), "1");
    }
}

//! Planning an import: rows of text (as in the CSV) checked against the
//! current inventory and each other, turned into device writes. Pure: it
//! reads a snapshot and returns a plan, so every rule is unit-testable and a
//! dry run is the same code as a real one.
//!
//! A row is all or nothing: a row with any error writes nothing. A row's
//! parent may be another row of the same import; if that row fails, so does
//! this one (and the error says why), repeated until nothing changes.

use std::collections::{BTreeMap, HashMap, HashSet};

use netward_shared::auth::Scope;
use netward_shared::proto::v1;
use uuid::Uuid;

use crate::access;

use crate::store::DeviceWrite;
use crate::validate::{self, Violations, normalize_ip};

/// At most this many errors are returned; the count of failed rows is exact.
pub const MAX_ERRORS: usize = 10_000;

/// The current inventory, as the import sees it.
#[derive(Debug, Default)]
pub struct ImportContext {
    pub sites: HashMap<String, v1::Site>,
    /// Credential name → (id, version).
    pub credentials: HashMap<String, (String, i32)>,
    pub devices: HashMap<String, v1::Device>,
}

#[derive(Debug, Default)]
pub struct ImportPlan {
    pub new_sites: Vec<v1::Site>,
    pub writes: Vec<DeviceWrite>,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub errors: Vec<v1::ImportRowError>,
    pub errors_truncated: bool,
}

struct Candidate<'a> {
    row: &'a v1::ImportRow,
    device: v1::Device,
    existing: Option<&'a v1::Device>,
    /// Parent named by the row (None = keep the existing parent).
    parent: Option<String>,
    new_site: Option<String>,
    errors: Vec<v1::ImportRowError>,
}

impl Candidate<'_> {
    fn fail(&mut self, field: &str, value: impl std::fmt::Display, reason: impl Into<String>) {
        self.errors.push(v1::ImportRowError {
            line: self.row.line,
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
            name: self.row.name.clone(),
        });
    }

    fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn plan(rows: &[v1::ImportRow], context: &ImportContext) -> ImportPlan {
    let mut new_sites: BTreeMap<String, v1::Site> = BTreeMap::new();
    let mut first_line: HashMap<&str, u32> = HashMap::new();
    let mut candidates: Vec<Candidate> = Vec::with_capacity(rows.len());

    for row in rows {
        let existing = context.devices.get(&row.name);
        let mut candidate = Candidate {
            row,
            device: existing.cloned().unwrap_or_else(|| v1::Device {
                id: Uuid::new_v4().to_string(),
                enabled: Some(true),
                device_type: v1::DeviceType::Other as i32,
                ..Default::default()
            }),
            existing,
            parent: None,
            new_site: None,
            errors: Vec::new(),
        };
        if row.line == 0 {
            candidate.fail("", 0, "line must be > 0");
        }
        match first_line.get(row.name.as_str()) {
            Some(first) if !row.name.is_empty() => {
                let reason = format!("duplicate name in file (first at line {first})");
                candidate.fail("name", &row.name, reason);
            }
            _ => {
                first_line.insert(&row.name, row.line);
            }
        }
        fill(&mut candidate, context, &mut new_sites);
        candidates.push(candidate);
    }

    resolve_references(&mut candidates, context);

    let mut plan = ImportPlan::default();
    let mut used_sites = HashSet::new();
    for candidate in &mut candidates {
        if !candidate.ok() {
            plan.failed += 1;
            plan.errors.append(&mut candidate.errors);
            continue;
        }
        if let Some(site) = &candidate.new_site {
            used_sites.insert(site.clone());
        }
        match candidate.existing {
            None => {
                plan.created += 1;
                plan.writes
                    .push(DeviceWrite::Create(candidate.device.clone()));
            }
            Some(existing) if same_stored_fields(existing, &candidate.device) => {
                plan.unchanged += 1
            }
            Some(_) => {
                plan.updated += 1;
                plan.writes
                    .push(DeviceWrite::Update(candidate.device.clone()));
            }
        }
    }
    plan.new_sites = new_sites
        .into_iter()
        .filter(|(name, _)| used_sites.contains(name))
        .map(|(_, site)| site)
        .collect();
    plan.errors.sort_by_key(|e| e.line);
    if plan.errors.len() > MAX_ERRORS {
        plan.errors.truncate(MAX_ERRORS);
        plan.errors_truncated = true;
    }
    plan
}

impl ImportPlan {
    /// Counts rows refused before planning (outside the caller's scope) as
    /// failed, their errors among the others by line.
    pub fn refuse(&mut self, errors: Vec<v1::ImportRowError>) {
        if errors.is_empty() {
            return;
        }
        self.failed += errors.len() as u64;
        self.errors.extend(errors);
        self.errors.sort_by_key(|e| e.line);
        if self.errors.len() > MAX_ERRORS {
            self.errors.truncate(MAX_ERRORS);
            self.errors_truncated = true;
        }
    }
}

/// Splits rows into those a scoped caller may import and errors for the
/// rest: a row's site (existing, or created with the row's region) must be
/// in `scope`, and so must the site of the device it would update.
pub fn split_by_scope(
    rows: &[v1::ImportRow],
    sites: &[v1::Site],
    devices: &[v1::Device],
    scope: &Scope,
) -> (Vec<v1::ImportRow>, Vec<v1::ImportRowError>) {
    let sites: HashMap<&str, &v1::Site> = sites.iter().map(|s| (s.name.as_str(), s)).collect();
    let devices: HashMap<&str, &v1::Device> =
        devices.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut kept = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for row in rows {
        let site = row.site.trim();
        let (site_ok, region) = match sites.get(site) {
            Some(known) => (access::site_allowed(scope, known), known.region.as_str()),
            None => (scope.allows(row.region.trim(), &[site]), row.region.trim()),
        };
        let current = devices
            .get(row.name.trim())
            .filter(|d| !access::device_allowed(scope, d));
        let (field, value, region) = match current {
            Some(device) => ("name", row.name.as_str(), device.region.as_str()),
            None if !site_ok => ("site", row.site.as_str(), region),
            None => {
                kept.push(row.clone());
                continue;
            }
        };
        refused.push(v1::ImportRowError {
            line: row.line,
            field: field.to_string(),
            value: value.to_string(),
            reason: format!("in region {region:?}, outside this token's scope ({scope})"),
            name: row.name.clone(),
        });
    }
    (kept, refused)
}

/// Applies a row's own cells to its candidate device; references to other
/// devices are left for [`resolve_references`].
fn fill(
    candidate: &mut Candidate,
    context: &ImportContext,
    new_sites: &mut BTreeMap<String, v1::Site>,
) {
    let row = candidate.row;
    let creating = candidate.existing.is_none();
    let mut v = Violations::default();
    v.name("name", &row.name, 128);
    for violation in v.0 {
        candidate.fail(&violation.field, violation.value, violation.reason);
    }
    candidate.device.name = row.name.clone();

    // An empty optional cell leaves the stored value as it is on update.
    if row.ip.trim().is_empty() {
        if creating {
            candidate.fail("ip", "", "required");
        }
    } else {
        match normalize_ip(&row.ip) {
            Some(ip) => candidate.device.ip_address = ip,
            None => candidate.fail("ip", &row.ip, "not an IPv4 or IPv6 address"),
        }
    }

    let site = row.site.trim();
    if site.is_empty() {
        if creating {
            candidate.fail("site", "", "required");
        }
    } else if let Some(known) = context.sites.get(site) {
        if !row.region.is_empty() && row.region != known.region {
            let reason = format!("site {site:?} is in region {:?}", known.region);
            candidate.fail("region", &row.region, reason);
        }
        candidate.device.site_id = known.id.clone();
        candidate.device.site_name = known.name.clone();
    } else {
        let mut v = Violations::default();
        v.name("site", site, 128);
        v.text("region", &row.region, 128);
        if v.is_empty() {
            let entry = new_sites
                .entry(site.to_string())
                .or_insert_with(|| v1::Site {
                    id: Uuid::new_v4().to_string(),
                    name: site.to_string(),
                    region: row.region.clone(),
                    active: Some(true),
                    ..Default::default()
                });
            if !row.region.is_empty() && entry.region != row.region {
                let reason = format!(
                    "new site {site:?} was given region {:?} on an earlier line",
                    entry.region
                );
                candidate.fail("region", &row.region, reason);
            }
            candidate.device.site_id = entry.id.clone();
            candidate.device.site_name = entry.name.clone();
            candidate.new_site = Some(site.to_string());
        } else {
            for violation in v.0 {
                candidate.fail(&violation.field, violation.value, violation.reason);
            }
        }
    }

    if !row.device_type.is_empty() {
        match parse_device_type(&row.device_type) {
            Some(t) => candidate.device.device_type = t as i32,
            None => candidate.fail(
                "type",
                &row.device_type,
                "unknown type (router, switch, access_point, atm, nvr, paybox, firewall, server, camera, other)",
            ),
        }
    }
    for (cell, slot) in [
        (&row.vendor, &mut candidate.device.vendor),
        (&row.model, &mut candidate.device.model),
        (&row.description, &mut candidate.device.description),
    ] {
        if !cell.is_empty() || creating {
            *slot = cell.clone();
        }
    }
    if !row.tags.is_empty() {
        match parse_pairs(&row.tags) {
            Ok(tags) => candidate.device.tags = tags,
            Err(reason) => candidate.fail("tags", &row.tags, reason),
        }
    }
    if !row.executor_selector.is_empty() {
        match parse_pairs(&row.executor_selector) {
            Ok(selector) => candidate.device.executor_selector = selector,
            Err(reason) => candidate.fail("executor_selector", &row.executor_selector, reason),
        }
    }
    if !row.enabled.is_empty() {
        match parse_bool(&row.enabled) {
            Some(enabled) => candidate.device.enabled = Some(enabled),
            None => candidate.fail(
                "enabled",
                &row.enabled,
                "expected true/false, yes/no or 1/0",
            ),
        }
    }
    if !row.parent.is_empty() {
        candidate.parent = Some(row.parent.clone());
    }

    fill_snmp(candidate, context);

    // The remaining per-field limits are the API's; report them by column.
    let mut v = Violations::default();
    validate::device(&mut v, &candidate.device);
    for violation in v.0 {
        let column = match violation.field.as_str() {
            // Already reported above with the column's own words.
            "device.name" | "device.ip_address" | "device.device_type" => continue,
            "device.snmp.port" => "snmp_port",
            "device.snmp.profile" => "snmp_profile",
            field => field
                .trim_start_matches("device.")
                .split(['.', '['])
                .next()
                .unwrap_or(field),
        };
        candidate.fail(column, violation.value, violation.reason);
    }
}

fn fill_snmp(candidate: &mut Candidate, context: &ImportContext) {
    let row = candidate.row;
    if row.snmp_version.is_empty() {
        if !row.snmp_credential.is_empty() {
            candidate.fail("snmp_version", "", "required when snmp_credential is set");
        }
        return;
    }
    let Some(version) = parse_snmp_version(&row.snmp_version) else {
        candidate.fail("snmp_version", &row.snmp_version, "expected 1, 2c or 3");
        return;
    };
    let mut snmp = candidate.device.snmp.clone().unwrap_or_default();
    snmp.enabled = true;
    snmp.version = version as i32;
    if row.snmp_credential.is_empty() {
        candidate.fail("snmp_credential", "", "required when snmp_version is set");
    } else {
        match context.credentials.get(&row.snmp_credential) {
            Some((id, credential_version)) if *credential_version == version as i32 => {
                snmp.credential_id = id.clone();
                snmp.credential_name = row.snmp_credential.clone();
            }
            Some((_, other)) => {
                let name = v1::SnmpVersion::try_from(*other)
                    .map(|v| v.as_str_name())
                    .unwrap_or("?");
                candidate.fail(
                    "snmp_credential",
                    &row.snmp_credential,
                    format!("credential is for {name}"),
                );
            }
            None => candidate.fail(
                "snmp_credential",
                &row.snmp_credential,
                "unknown credential",
            ),
        }
    }
    if !row.snmp_port.is_empty() {
        match row.snmp_port.trim().parse::<u32>() {
            Ok(port) if (1..=65_535).contains(&port) => snmp.port = port,
            _ => candidate.fail("snmp_port", &row.snmp_port, "must be 1..=65535"),
        }
    }
    if !row.snmp_profile.is_empty() {
        snmp.profile = row.snmp_profile.clone();
    } else if snmp.profile.is_empty() {
        snmp.profile = "auto".into();
    }
    candidate.device.snmp = Some(snmp);
}

/// Parents, cycles and address clashes, repeated until no more rows fail
/// (a row fails when the row it hangs from fails).
fn resolve_references(candidates: &mut [Candidate], context: &ImportContext) {
    let by_name: HashMap<String, usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.row.name.is_empty())
        .map(|(i, c)| (c.row.name.clone(), i))
        .rev() // the first occurrence wins
        .collect();

    loop {
        let mut failures: Vec<(usize, &'static str, String, String)> = Vec::new();

        // Parent links.
        let mut parent_of: HashMap<String, String> = context
            .devices
            .values()
            .filter(|d| !d.parent_device_id.is_empty())
            .map(|d| (d.id.clone(), d.parent_device_id.clone()))
            .collect();
        for (i, candidate) in candidates.iter().enumerate() {
            if !candidate.ok() {
                continue;
            }
            let Some(parent) = &candidate.parent else {
                if !candidate.device.parent_device_id.is_empty() {
                    parent_of.insert(
                        candidate.device.id.clone(),
                        candidate.device.parent_device_id.clone(),
                    );
                }
                continue;
            };
            if *parent == candidate.row.name {
                failures.push((
                    i,
                    "parent",
                    parent.clone(),
                    "a device cannot be its own parent".into(),
                ));
                continue;
            }
            let parent_id = match by_name.get(parent) {
                Some(&j) if !candidates[j].ok() => {
                    let reason =
                        format!("parent row (line {}) was refused", candidates[j].row.line);
                    failures.push((i, "parent", parent.clone(), reason));
                    continue;
                }
                Some(&j) => candidates[j].device.id.clone(),
                None => match context.devices.get(parent) {
                    Some(device) => device.id.clone(),
                    None => {
                        failures.push((
                            i,
                            "parent",
                            parent.clone(),
                            "unknown parent device".into(),
                        ));
                        continue;
                    }
                },
            };
            parent_of.insert(candidate.device.id.clone(), parent_id);
        }

        // Cycles: walk up from each row; coming back to it is a cycle.
        for (i, candidate) in candidates.iter().enumerate() {
            if !candidate.ok() || failures.iter().any(|f| f.0 == i) {
                continue;
            }
            let own = &candidate.device.id;
            let mut at = parent_of.get(own);
            let mut steps = 0;
            while let Some(id) = at {
                if id == own {
                    let parent = candidate.parent.clone().unwrap_or_default();
                    failures.push((i, "parent", parent, "parent cycle".into()));
                    break;
                }
                steps += 1;
                if steps > 1000 {
                    break;
                }
                at = parent_of.get(id);
            }
        }

        // Addresses: unique among enabled devices, after the import.
        let importing: HashSet<&str> = candidates
            .iter()
            .filter(|c| c.existing.is_some())
            .map(|c| c.device.id.as_str())
            .collect();
        let mut owner: HashMap<&str, String> = context
            .devices
            .values()
            .filter(|d| d.enabled.unwrap_or(true) && !importing.contains(d.id.as_str()))
            .map(|d| {
                (
                    d.ip_address.as_str(),
                    format!("existing device {:?}", d.name),
                )
            })
            .collect();
        for (i, candidate) in candidates.iter().enumerate() {
            if !candidate.ok()
                || !candidate.device.enabled.unwrap_or(true)
                || failures.iter().any(|f| f.0 == i)
            {
                continue;
            }
            let ip = candidate.device.ip_address.as_str();
            match owner.get(ip) {
                Some(other) => {
                    failures.push((
                        i,
                        "ip",
                        ip.to_string(),
                        format!("address already used by {other}"),
                    ));
                }
                None => {
                    owner.insert(
                        ip,
                        format!("{:?} (line {})", candidate.row.name, candidate.row.line),
                    );
                }
            }
        }

        if failures.is_empty() {
            break;
        }
        for (i, field, value, reason) in failures {
            candidates[i].fail(field, value, reason);
        }
    }

    // Record the resolved parent ids on the devices that will be written.
    let ids: HashMap<String, String> = candidates
        .iter()
        .filter(|c| c.ok())
        .map(|c| (c.row.name.clone(), c.device.id.clone()))
        .collect();
    for candidate in candidates.iter_mut().filter(|c| c.ok()) {
        if let Some(parent) = candidate.parent.clone() {
            let id = ids
                .get(&parent)
                .cloned()
                .or_else(|| context.devices.get(&parent).map(|d| d.id.clone()))
                .unwrap_or_default();
            candidate.device.parent_device_id = id;
            candidate.device.parent_device_name = parent;
        }
    }
}

/// Whether an import would store nothing new for this device.
fn same_stored_fields(a: &v1::Device, b: &v1::Device) -> bool {
    let snmp = |d: &v1::Device| {
        d.snmp.as_ref().map(|s| {
            (
                s.enabled,
                s.version,
                s.port,
                s.credential_id.clone(),
                s.profile.clone(),
            )
        })
    };
    a.name == b.name
        && a.ip_address == b.ip_address
        && a.site_id == b.site_id
        && a.device_type == b.device_type
        && a.vendor == b.vendor
        && a.model == b.model
        && a.tags == b.tags
        && a.enabled.unwrap_or(true) == b.enabled.unwrap_or(true)
        && a.parent_device_id == b.parent_device_id
        && snmp(a) == snmp(b)
        && a.probe_overrides == b.probe_overrides
        && a.executor_selector == b.executor_selector
        && a.description == b.description
}

pub fn parse_device_type(text: &str) -> Option<v1::DeviceType> {
    let upper = text.trim().to_ascii_uppercase().replace([' ', '-'], "_");
    let name = if upper.starts_with("DEVICE_TYPE_") {
        upper
    } else {
        format!("DEVICE_TYPE_{upper}")
    };
    v1::DeviceType::from_str_name(&name).filter(|t| *t != v1::DeviceType::Unspecified)
}

pub fn parse_snmp_version(text: &str) -> Option<v1::SnmpVersion> {
    match text.trim().to_ascii_lowercase().trim_start_matches('v') {
        "1" => Some(v1::SnmpVersion::V1),
        "2" | "2c" => Some(v1::SnmpVersion::V2c),
        "3" => Some(v1::SnmpVersion::V3),
        _ => None,
    }
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "y" => Some(true),
        "false" | "no" | "0" | "n" => Some(false),
        _ => None,
    }
}

/// "key=value;key2=value2" → map.
pub fn parse_pairs(text: &str) -> Result<HashMap<String, String>, String> {
    let mut pairs = HashMap::new();
    for piece in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = piece.split_once('=') else {
            return Err(format!("expected key=value, got {piece:?}"));
        };
        if pairs
            .insert(key.trim().to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("key {:?} given twice", key.trim()));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_of_the_csv() {
        assert_eq!(
            parse_device_type("Access Point"),
            Some(v1::DeviceType::AccessPoint)
        );
        assert_eq!(
            parse_device_type("access_point"),
            Some(v1::DeviceType::AccessPoint)
        );
        assert_eq!(
            parse_device_type("DEVICE_TYPE_ATM"),
            Some(v1::DeviceType::Atm)
        );
        assert_eq!(parse_device_type("unspecified"), None);
        assert_eq!(parse_device_type("toaster"), None);
        assert_eq!(parse_snmp_version("v2c"), Some(v1::SnmpVersion::V2c));
        assert_eq!(parse_snmp_version("3"), Some(v1::SnmpVersion::V3));
        assert_eq!(parse_snmp_version("4"), None);
        assert_eq!(parse_bool(" Yes "), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("perhaps"), None);
        let pairs = parse_pairs("env=lab; role = wan ;").unwrap();
        assert_eq!(pairs.get("role").map(String::as_str), Some("wan"));
        assert!(parse_pairs("env").is_err());
        assert!(parse_pairs("a=1;a=2").is_err());
    }

    fn row(line: u32, name: &str, ip: &str, parent: &str) -> v1::ImportRow {
        v1::ImportRow {
            line,
            name: name.into(),
            ip: ip.into(),
            site: "s".into(),
            parent: parent.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rows_outside_the_scope_are_refused_with_their_line() {
        let scope = Scope {
            regions: vec!["EMEA".into()],
            sites: Vec::new(),
        };
        let site = |name: &str, region: &str| v1::Site {
            id: format!("{name}-id"),
            name: name.into(),
            region: region.into(),
            ..Default::default()
        };
        let sites = [site("paris", "EMEA"), site("boston", "AMER")];
        let devices = [v1::Device {
            name: "moved".into(),
            site_name: "boston".into(),
            region: "AMER".into(),
            ..Default::default()
        }];
        let at = |line: u32, name: &str, site: &str, region: &str| v1::ImportRow {
            site: site.into(),
            region: region.into(),
            ..row(line, name, "10.0.0.1", "")
        };
        let rows = [
            at(2, "a", "paris", ""),
            at(3, "b", "boston", ""),
            at(4, "c", "lyon", "EMEA"),
            at(5, "d", "austin", "AMER"),
            at(6, "moved", "paris", ""),
        ];
        let (kept, refused) = split_by_scope(&rows, &sites, &devices, &scope);
        let kept: Vec<&str> = kept.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(kept, ["a", "c"]);
        let refused: Vec<(u32, &str)> =
            refused.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(refused, [(3, "site"), (5, "site"), (6, "name")]);
    }

    #[test]
    fn an_update_keeps_what_the_row_leaves_empty() {
        let mut context = ImportContext::default();
        let existing = v1::Device {
            id: Uuid::new_v4().to_string(),
            name: "d".into(),
            ip_address: "127.9.0.1".into(),
            vendor: "Cisco".into(),
            enabled: Some(true),
            device_type: v1::DeviceType::Router as i32,
            ..Default::default()
        };
        context.devices.insert("d".into(), existing.clone());
        let mut update = row(2, "d", "", "");
        update.site = String::new();
        update.model = "ISR".into();
        let plan = plan(&[update], &context);
        assert_eq!((plan.updated, plan.failed), (1, 0), "{:?}", plan.errors);
        let DeviceWrite::Update(device) = &plan.writes[0] else {
            panic!("expected an update");
        };
        assert_eq!(device.ip_address, "127.9.0.1");
        assert_eq!(
            (device.vendor.as_str(), device.model.as_str()),
            ("Cisco", "ISR")
        );
        assert_eq!(device.id, existing.id);
    }

    #[test]
    fn an_address_held_by_a_device_the_import_moves_away_is_free() {
        let mut context = ImportContext::default();
        for (name, ip) in [("a", "127.9.0.1"), ("b", "127.9.0.2")] {
            context.devices.insert(
                name.into(),
                v1::Device {
                    id: Uuid::new_v4().to_string(),
                    name: name.into(),
                    ip_address: ip.into(),
                    enabled: Some(true),
                    ..Default::default()
                },
            );
        }
        // a takes a new address, c takes a's old one: no clash.
        let plan = plan(
            &[row(2, "a", "127.9.0.3", ""), row(3, "c", "127.9.0.1", "")],
            &context,
        );
        assert_eq!(plan.failed, 0, "{:?}", plan.errors);
        // d takes b's address, which b keeps: a clash naming b.
        let plan = super::plan(&[row(2, "d", "127.9.0.2", "")], &context);
        assert_eq!(plan.failed, 1);
        assert!(plan.errors[0].reason.contains("\"b\""), "{:?}", plan.errors);
    }
}

//! Availability reports: the devices a request selects (filters and the
//! caller's scope, from the inventory copy), each device's figures from one
//! scan of the period's state changes — walked by the same
//! [`crate::availability::Walk`] as `GetAvailability` — and rows per region,
//! site, device type or device, summed by [`Figures::add`], so that the
//! totals are the sum of the per-device figures.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use netward_shared::auth::Scope;
use netward_shared::inventory_copy::{CopiedDevice, InventoryCopy};
use netward_shared::proto::v1;
use netward_shared::status::FieldViolation;
use uuid::Uuid;

use crate::access;
use crate::availability::{Figures, Walk};
use crate::service::{Error, Result, duration};
use crate::store::AlertingStore;
use crate::{from_timestamp, timestamp};

/// Longest period a report covers, as for `GetAvailability`.
const MAX_DAYS: i64 = 400;
/// Problem devices listed when the request leaves `top` at 0, and the most.
const DEFAULT_TOP: u32 = 10;
const MAX_TOP: u32 = 1000;

/// A device the report covers, with what its rows are keyed by.
#[derive(Debug, Clone)]
struct Member {
    id: Uuid,
    name: String,
    region: String,
    site_id: String,
    site_name: String,
    device_type: v1::DeviceType,
}

/// A validated request: the period, the devices, how to group them.
#[derive(Debug)]
pub struct Plan {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    grouping: v1::AvailabilityGrouping,
    top: usize,
    members: Vec<Member>,
}

impl Plan {
    /// Checks `r` and selects its devices from `copy` within `scope`.
    /// UNAVAILABLE before alerting has its first inventory snapshot;
    /// INVALID_ARGUMENT names the field; NOT_FOUND a region or site with no
    /// device the caller may see (the same answer whether it exists
    /// elsewhere or not: a scoped caller learns nothing of other regions).
    pub fn new(
        r: &v1::GetAvailabilityReportRequest,
        copy: &InventoryCopy,
        scope: &Scope,
        now: DateTime<Utc>,
    ) -> Result<Plan> {
        let (start, end) = period(r, now)?;
        // Before the first snapshot every device would be missing.
        if !copy.synced {
            return Err(Error::Unavailable(
                "alerting does not know the inventory yet; try again shortly".into(),
            ));
        }
        let grouping = match v1::AvailabilityGrouping::try_from(r.group_by) {
            Ok(v1::AvailabilityGrouping::Unspecified) => v1::AvailabilityGrouping::Region,
            Ok(grouping) => grouping,
            Err(_) => {
                return Err(invalid(
                    "group_by",
                    r.group_by,
                    "not an AvailabilityGrouping",
                ));
            }
        };
        let device_type = v1::DeviceType::try_from(r.device_type)
            .map_err(|_| invalid("device_type", r.device_type, "not a DeviceType"))?;
        let top = match r.top {
            0 => DEFAULT_TOP,
            n if n > MAX_TOP => {
                return Err(invalid("top", n, format!("at most {MAX_TOP}")));
            }
            n => n,
        } as usize;
        let region = r.region.trim();
        let site = r.site.trim();
        let visible = || {
            copy.devices
                .values()
                .filter(|d| access::device_allowed(scope, d))
        };
        let within = if scope.is_unlimited() {
            String::new()
        } else {
            format!(" within this token's scope ({scope})")
        };
        if !region.is_empty() && !visible().any(|d| &*d.region == region) {
            return Err(Error::NotFound(format!(
                "region {region:?} has no devices in the inventory{within}"
            )));
        }
        if !site.is_empty() && !visible().any(|d| at_site(d, site)) {
            return Err(Error::NotFound(format!(
                "site {site:?} (id or name) has no devices in the inventory{within}"
            )));
        }
        let members = visible()
            .filter(|d| region.is_empty() || &*d.region == region)
            .filter(|d| site.is_empty() || at_site(d, site))
            .filter(|d| {
                device_type == v1::DeviceType::Unspecified || d.device_type == device_type as i32
            })
            .filter_map(|d| {
                Some(Member {
                    id: Uuid::parse_str(&d.id).ok()?,
                    name: d.name.to_string(),
                    region: d.region.to_string(),
                    site_id: d.site_id.to_string(),
                    site_name: d.site_name.to_string(),
                    device_type: v1::DeviceType::try_from(d.device_type).unwrap_or_default(),
                })
            })
            .collect();
        Ok(Plan {
            start,
            end,
            grouping,
            top,
            members,
        })
    }

    /// Reads the period's state changes of the plan's devices — their
    /// states at the start, then one scan in time order — and builds the
    /// report.
    pub async fn run(self, store: &dyn AlertingStore) -> Result<v1::GetAvailabilityReportResponse> {
        let began = Instant::now();
        let ids: Vec<Uuid> = self.members.iter().map(|m| m.id).collect();
        let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut walks = vec![Walk::new(None, self.start); ids.len()];
        let storage = |source| Error::Storage {
            context: "reading state changes",
            source,
        };
        for (device, before) in store.states_at(&ids, self.start).await.map_err(storage)? {
            if let Some(&i) = index.get(&device) {
                walks[i] = Walk::new(Some(before), self.start);
            }
        }
        let read = store
            .scan_changes(&ids, self.start, self.end, &mut |device, change| {
                if let Some(&i) = index.get(&device) {
                    walks[i].step(&change);
                }
            })
            .await
            .map_err(storage)?;
        let figures: Vec<Figures> = walks.into_iter().map(|w| w.finish(self.end)).collect();
        tracing::info!(
            devices = ids.len(),
            transitions = read,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "availability report read"
        );
        Ok(self.assemble(&figures, read))
    }

    /// Rows, totals and top devices from each member's figures.
    fn assemble(&self, figures: &[Figures], read: u64) -> v1::GetAvailabilityReportResponse {
        let mut groups: BTreeMap<String, (v1::AvailabilityReportRow, Figures, u32)> =
            BTreeMap::new();
        let mut totals = Figures::default();
        for (member, f) in self.members.iter().zip(figures) {
            let row = row_of(self.grouping, member);
            let group = groups
                .entry(row.key.clone())
                .or_insert_with(|| (row, Figures::default(), 0));
            group.1.add(f);
            group.2 += 1;
            totals.add(f);
        }
        let mut rows: Vec<v1::AvailabilityReportRow> = groups
            .into_values()
            .map(|(row, f, count)| v1::AvailabilityReportRow {
                figures: Some(message(&f, count)),
                ..row
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.key.cmp(&b.key)));
        let mut problems: Vec<(&Member, &Figures)> = self
            .members
            .iter()
            .zip(figures)
            .filter(|(_, f)| f.down > Duration::ZERO || f.incidents > 0)
            .collect();
        problems.sort_by(|(ma, fa), (mb, fb)| {
            fb.down
                .cmp(&fa.down)
                .then_with(|| fb.incidents.cmp(&fa.incidents))
                .then_with(|| ma.name.cmp(&mb.name))
        });
        let top_devices = problems
            .into_iter()
            .take(self.top)
            .map(|(member, f)| v1::AvailabilityReportRow {
                figures: Some(message(f, 1)),
                ..row_of(v1::AvailabilityGrouping::Device, member)
            })
            .collect();
        v1::GetAvailabilityReportResponse {
            start_time: Some(timestamp(self.start)),
            end_time: Some(timestamp(self.end)),
            group_by: self.grouping as i32,
            rows,
            totals: Some(message(&totals, self.members.len() as u32)),
            top_devices,
            transitions_read: read,
        }
    }
}

/// The request's period: [end - 24 h, now) by default, at most 400 days.
fn period(
    r: &v1::GetAvailabilityReportRequest,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let end = match &r.end_time {
        Some(t) => {
            from_timestamp(t).ok_or_else(|| invalid("end_time", t, "not a valid instant"))?
        }
        None => now,
    };
    let start = match &r.start_time {
        Some(t) => {
            from_timestamp(t).ok_or_else(|| invalid("start_time", t, "not a valid instant"))?
        }
        None => end - TimeDelta::hours(24),
    };
    if start >= end {
        return Err(invalid(
            "start_time",
            start.to_rfc3339(),
            format!("must be before end_time ({})", end.to_rfc3339()),
        ));
    }
    if end - start > TimeDelta::days(MAX_DAYS) {
        return Err(invalid(
            "end_time",
            end.to_rfc3339(),
            format!(
                "at most {MAX_DAYS} days after start_time ({}); the range is {} days",
                start.to_rfc3339(),
                (end - start).num_days()
            ),
        ));
    }
    Ok((start, end))
}

fn invalid(field: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Error {
    Error::InvalidArgument(vec![FieldViolation::new(field, value, reason)])
}

/// Whether `device` is at the site with this id or exact name.
fn at_site(device: &CopiedDevice, site: &str) -> bool {
    &*device.site_id == site || &*device.site_name == site
}

/// The row `member` falls in under `grouping`, without figures.
fn row_of(grouping: v1::AvailabilityGrouping, member: &Member) -> v1::AvailabilityReportRow {
    match grouping {
        v1::AvailabilityGrouping::Site => v1::AvailabilityReportRow {
            key: member.site_id.clone(),
            name: member.site_name.clone(),
            region: member.region.clone(),
            ..Default::default()
        },
        v1::AvailabilityGrouping::DeviceType => v1::AvailabilityReportRow {
            key: member.device_type.as_str_name().to_string(),
            name: type_name(member.device_type),
            device_type: member.device_type as i32,
            ..Default::default()
        },
        v1::AvailabilityGrouping::Device => v1::AvailabilityReportRow {
            key: member.id.to_string(),
            name: member.name.clone(),
            region: member.region.clone(),
            site_name: member.site_name.clone(),
            device_type: member.device_type as i32,
            figures: None,
        },
        v1::AvailabilityGrouping::Region | v1::AvailabilityGrouping::Unspecified => {
            v1::AvailabilityReportRow {
                key: member.region.clone(),
                name: member.region.clone(),
                region: member.region.clone(),
                ..Default::default()
            }
        }
    }
}

/// `router`, `access_point`; `other` for UNSPECIFIED.
fn type_name(device_type: v1::DeviceType) -> String {
    if device_type == v1::DeviceType::Unspecified {
        return "other".into();
    }
    let name = device_type.as_str_name();
    name.strip_prefix("DEVICE_TYPE_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// The message form of `f`, summed over `devices` devices.
fn message(f: &Figures, devices: u32) -> v1::AvailabilityFigures {
    v1::AvailabilityFigures {
        uptime_percent: f.uptime_percent(),
        monitored_time: Some(duration(f.monitored())),
        downtime: Some(duration(f.down)),
        unreachable_time: Some(duration(f.unreachable)),
        maintenance_time: Some(duration(f.maintenance)),
        unknown_time: Some(duration(f.unknown)),
        unmonitored_time: Some(duration(f.unmonitored)),
        incidents: f.incidents,
        recoveries: f.recoveries,
        recovery_time: Some(duration(f.recovery_time)),
        mttr: Some(duration(f.mttr())),
        longest_outage: Some(duration(f.longest_outage)),
        device_count: devices,
    }
}

//! The status page's overview: every site's devices counted by state, from
//! the evaluator's rows and the inventory copy, within a caller's scope.
//! Pure functions over what the caller hands in, so the counting is tested
//! without a store; `Alerting::status_summary` puts them together.

use std::collections::{BTreeMap, HashMap};

use netward_shared::auth::Scope;
use netward_shared::inventory_copy::InventoryCopy;
use netward_shared::proto::v1;
use uuid::Uuid;

use crate::access;

/// What the summary needs of one device's state row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brief {
    pub state: v1::DeviceState,
    pub maintenance: bool,
    pub stale: bool,
}

impl Brief {
    /// An enabled device of the inventory that has no row yet.
    const NEVER_PROBED: Brief = Brief {
        state: v1::DeviceState::Unknown,
        maintenance: false,
        stale: false,
    };
}

/// The rank of a state on the page, worst first (the tile takes the worst).
pub fn rank(state: v1::DeviceState) -> u8 {
    match state {
        v1::DeviceState::Down => 0,
        v1::DeviceState::Flapping => 1,
        v1::DeviceState::Unreachable => 2,
        v1::DeviceState::Up => 4,
        _ => 3,
    }
}

/// Adds one device to `counts`.
pub fn count(counts: &mut v1::StateCounts, brief: Brief) {
    counts.total += 1;
    match brief.state {
        v1::DeviceState::Up => counts.up += 1,
        v1::DeviceState::Down => counts.down += 1,
        v1::DeviceState::Unreachable => counts.unreachable += 1,
        v1::DeviceState::Flapping => counts.flapping += 1,
        _ => counts.unknown += 1,
    }
    counts.maintenance += u64::from(brief.maintenance);
    counts.stale += u64::from(brief.stale);
}

/// The sites, totals and stale device ids (by name, all of them) of the
/// enabled devices of `copy` in `scope` (and `region`, when not empty).
pub fn summarize(
    copy: &InventoryCopy,
    briefs: &HashMap<Uuid, Brief>,
    scope: &Scope,
    region: &str,
) -> (Vec<v1::SiteSummary>, v1::StateCounts, Vec<(String, Uuid)>) {
    // Keyed by (region, site name, site id): the page's order.
    let mut sites: BTreeMap<(&str, &str, &str), v1::SiteSummary> = BTreeMap::new();
    let mut totals = v1::StateCounts::default();
    let mut stale = Vec::new();
    for device in copy.devices.values() {
        if !device.enabled
            || (!region.is_empty() && &*device.region != region)
            || !(scope.is_unlimited() || access::device_allowed(scope, device))
        {
            continue;
        }
        let id = Uuid::parse_str(&device.id).unwrap_or_default();
        let brief = briefs.get(&id).copied().unwrap_or(Brief::NEVER_PROBED);
        let site = sites
            .entry((&device.region, &device.site_name, &device.site_id))
            .or_insert_with(|| v1::SiteSummary {
                site_id: device.site_id.to_string(),
                site_name: device.site_name.to_string(),
                region: device.region.to_string(),
                counts: Some(v1::StateCounts::default()),
                worst_state: v1::DeviceState::Up as i32,
            });
        count(site.counts.get_or_insert_default(), brief);
        let worst = v1::DeviceState::try_from(site.worst_state).unwrap_or_default();
        if rank(brief.state) < rank(worst) {
            site.worst_state = brief.state as i32;
        }
        count(&mut totals, brief);
        if brief.stale {
            stale.push((device.name.to_string(), id));
        }
    }
    stale.sort();
    (sites.into_values().collect(), totals, stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: Uuid, name: &str, site: &str, region: &str) -> v1::Device {
        v1::Device {
            id: id.to_string(),
            name: name.into(),
            ip_address: "127.0.0.1".into(),
            site_id: format!("id-{site}"),
            site_name: site.into(),
            region: region.into(),
            enabled: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn sites_take_their_worst_state_and_a_scope_hides_other_regions() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let copy = InventoryCopy::of(
            [
                device(ids[0], "a1", "alpha", "EMEA"),
                device(ids[1], "a2", "alpha", "EMEA"),
                device(ids[2], "b1", "beta", "AMER"),
                device(ids[3], "b2", "beta", "AMER"),
            ],
            1,
        );
        let briefs = HashMap::from([
            (
                ids[0],
                Brief {
                    state: v1::DeviceState::Up,
                    maintenance: false,
                    stale: false,
                },
            ),
            (
                ids[1],
                Brief {
                    state: v1::DeviceState::Down,
                    maintenance: true,
                    stale: true,
                },
            ),
            (
                ids[2],
                Brief {
                    state: v1::DeviceState::Up,
                    maintenance: false,
                    stale: false,
                },
            ),
        ]);
        let (sites, totals, stale) = summarize(&copy, &briefs, &Scope::default(), "");
        // AMER before EMEA; beta's device without a row is UNKNOWN.
        let names: Vec<(&str, i32)> = sites
            .iter()
            .map(|s| (s.site_name.as_str(), s.worst_state))
            .collect();
        assert_eq!(
            names,
            [
                ("beta", v1::DeviceState::Unknown as i32),
                ("alpha", v1::DeviceState::Down as i32)
            ]
        );
        let alpha = sites[1].counts.unwrap();
        assert_eq!(
            (
                alpha.total,
                alpha.up,
                alpha.down,
                alpha.maintenance,
                alpha.stale
            ),
            (2, 1, 1, 1, 1)
        );
        assert_eq!((totals.total, totals.up, totals.unknown), (4, 2, 1));
        assert_eq!(stale, [("a2".to_string(), ids[1])]);

        let (sites, totals, _) = summarize(&copy, &briefs, &Scope::default(), "AMER");
        assert_eq!((sites.len(), totals.total), (1, 2));
    }
}

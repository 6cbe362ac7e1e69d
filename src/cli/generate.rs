//! `netward devices generate`: synthetic fleets for benchmarks and the example
//! inventory (`deploy/examples/inventory.csv`), as import CSV. Output depends
//! only on the arguments, and every address is in 127.0.0.0/8 but outside
//! 127.0.0.0/16 (where host services listen), so any machine can ping it.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;

use anyhow::bail;
use clap::Args;
use netward_shared::proto::v1::ImportRow;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::csv_format::RowWriter;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of sites, one /24 of 127.0.0.0/8 each (at most 63750)
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "example",
        conflicts_with = "example"
    )]
    sites: Option<u32>,
    /// Devices per site, its branch router included (at most 254)
    #[arg(
        long,
        value_name = "M",
        required_unless_present = "example",
        conflicts_with = "example"
    )]
    per_site: Option<u32>,
    /// Seed of the random choices (types, vendors, models): the same seed gives the same file
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1,
        conflicts_with = "example"
    )]
    seed: u64,
    /// Write the example inventory instead (128 sites, 854 devices, as in deploy/examples/inventory.csv)
    #[arg(long)]
    example: bool,
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let rows: Box<dyn Iterator<Item = ImportRow>> = match (args.example, args.sites, args.per_site)
    {
        (true, _, _) => Box::new(example().into_iter()),
        (false, Some(sites), Some(per_site)) => Box::new(fleet(sites, per_site, args.seed)?),
        // clap requires both unless --example; this only guards a change of the flags.
        _ => bail!("give --sites and --per-site, or --example"),
    };
    let mut writer = RowWriter::new(io::stdout().lock())?;
    for row in rows {
        writer.write(&row)?;
    }
    writer.finish()
}

/// Sites per value of the second octet; 250 keeps the third octet readable
/// (site 1234 → 127.5.234.x).
const SITES_PER_OCTET: u32 = 250;
/// Second octets 1 to 255: 0 would be 127.0.0.0/16.
pub const MAX_SITES: u32 = 255 * SITES_PER_OCTET;
/// Host numbers 1 to 254 in a site's /24.
pub const MAX_PER_SITE: u32 = 254;

/// Device `device` (from 0) of site `site` (from 0): 127.(1 + s/250).(s%250).(d+1).
fn address(site: u32, device: u32) -> Option<Ipv4Addr> {
    let second = u8::try_from(1 + site / SITES_PER_OCTET).ok()?;
    let third = u8::try_from(site % SITES_PER_OCTET).ok()?;
    let fourth = u8::try_from(device + 1).ok().filter(|host| *host < 255)?;
    Some(Ipv4Addr::new(127, second, third, fourth))
}

/// A kind of device: how it is typed, named and tagged, and the vendors and models it comes in.
struct Kind {
    device_type: &'static str,
    /// Name suffix before the per-site number: `rtr` → `tbilisi-001-rtr1`.
    abbr: &'static str,
    criticality: &'static str,
    role: &'static str,
    models: &'static [(&'static str, &'static str)],
}

const CORE_ROUTER: Kind = Kind {
    device_type: "router",
    abbr: "core",
    criticality: "high",
    role: "core-router",
    models: &[("Cisco", "ASR 1001-X"), ("Juniper", "MX204")],
};

const BRANCH_ROUTER: Kind = Kind {
    device_type: "router",
    abbr: "rtr",
    criticality: "high",
    role: "branch-router",
    models: &[
        ("Cisco", "ISR 4331"),
        ("Cisco", "ISR 1111-8P"),
        ("MikroTik", "CCR2004-16G-2S+"),
        ("MikroTik", "RB4011iGS+"),
        ("Fortinet", "FortiGate 60F"),
    ],
};

const SWITCH: Kind = Kind {
    device_type: "switch",
    abbr: "sw",
    criticality: "medium",
    role: "access-switch",
    models: &[
        ("Cisco", "Catalyst 9200L-24P"),
        ("MikroTik", "CRS326-24G-2S+"),
        ("Ubiquiti", "USW-24-PoE"),
        ("HPE Aruba", "2530-24G"),
    ],
};

const ACCESS_POINT: Kind = Kind {
    device_type: "access_point",
    abbr: "ap",
    criticality: "low",
    role: "wifi",
    models: &[
        ("Ubiquiti", "U6-Lite"),
        ("Ubiquiti", "U6-Pro"),
        ("MikroTik", "cAP ax"),
        ("Cisco", "Catalyst 9115AXI"),
    ],
};

const NVR: Kind = Kind {
    device_type: "nvr",
    abbr: "nvr",
    criticality: "medium",
    role: "cctv",
    models: &[
        ("Hikvision", "DS-7608NI-K2"),
        ("Hikvision", "DS-7616NI-K2"),
        ("Dahua", "NVR4108HS-4KS2"),
    ],
};

const ATM: Kind = Kind {
    device_type: "atm",
    abbr: "atm",
    criticality: "high",
    role: "atm",
    models: &[
        ("NCR", "SelfServ 84"),
        ("NCR", "SelfServ 22e"),
        ("Diebold Nixdorf", "DN Series 200"),
        ("Hyosung", "MoniMax 8600"),
    ],
};

const PAYBOX: Kind = Kind {
    device_type: "paybox",
    abbr: "pay",
    criticality: "medium",
    role: "paybox",
    models: &[("KIOSK", "Slim 4"), ("Olea Kiosks", "Opal 22")],
};

/// What sits behind the seed fleet's branch routers, with the seed's counts:
/// the weights of the synthetic mix and the exact counts of the example.
const BRANCH_MIX: [(&Kind, u32); 5] = [
    (&SWITCH, 130),
    (&ACCESS_POINT, 115),
    (&NVR, 105),
    (&ATM, 90),
    (&PAYBOX, 180),
];

/// The rows of one site as they are built, numbering devices per kind.
struct SiteRows {
    index: u32,
    name: String,
    region: String,
    /// Tags every device of the site gets besides criticality and role, e.g. `env=lab`.
    extra_tag: Option<&'static str>,
    rows: Vec<ImportRow>,
    /// Devices so far per name suffix, for `-sw1`, `-sw2`, ….
    numbers: HashMap<&'static str, u32>,
}

impl SiteRows {
    fn new(index: u32, name: String, region: String, extra_tag: Option<&'static str>) -> Self {
        Self {
            index,
            name,
            region,
            extra_tag,
            rows: Vec::new(),
            numbers: HashMap::new(),
        }
    }

    /// Adds one device and returns its name (the parent of later ones).
    fn add(
        &mut self,
        rng: &mut StdRng,
        kind: &'static Kind,
        parent: &str,
        description: &str,
    ) -> String {
        let number = self.numbers.entry(kind.abbr).or_insert(0);
        *number += 1;
        let name = format!("{}-{}{}", self.name, kind.abbr, number);
        let device = u32::try_from(self.rows.len()).unwrap_or(u32::MAX);
        let ip = address(self.index, device).map_or_else(String::new, |ip| ip.to_string());
        let (vendor, model) = kind.models[rng.random_range(0..kind.models.len())];
        // Keys in order, as export writes them, so an export diffs cleanly.
        let tags = match self.extra_tag {
            Some(extra) => format!(
                "criticality={};{extra};role={}",
                kind.criticality, kind.role
            ),
            None => format!("criticality={};role={}", kind.criticality, kind.role),
        };
        self.rows.push(ImportRow {
            name: name.clone(),
            ip,
            site: self.name.clone(),
            region: self.region.clone(),
            device_type: kind.device_type.to_string(),
            vendor: vendor.to_string(),
            model: model.to_string(),
            parent: parent.to_string(),
            tags,
            enabled: "true".to_string(),
            description: description.to_string(),
            ..ImportRow::default()
        });
        name
    }
}

/// A synthetic fleet: `sites` sites of `per_site` devices each, a branch
/// router first and the rest behind it, typed by the seed's mix.
pub fn fleet(
    sites: u32,
    per_site: u32,
    seed: u64,
) -> anyhow::Result<impl Iterator<Item = ImportRow>> {
    if sites == 0 || per_site == 0 {
        bail!("--sites and --per-site must be at least 1");
    }
    if per_site > MAX_PER_SITE {
        bail!(
            "--per-site {per_site} does not fit: each site gets one /24 of 127.0.0.0/8, so at most {MAX_PER_SITE} devices per site"
        );
    }
    if sites > MAX_SITES {
        bail!(
            "--sites {sites} does not fit: 127.0.0.0/8 outside 127.0.0.0/16 has room for at most {MAX_SITES} sites of one /24 each"
        );
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let total_weight: u32 = BRANCH_MIX.iter().map(|(_, weight)| weight).sum();
    Ok((0..sites).flat_map(move |index| {
        let mut site = SiteRows::new(
            index,
            format!("site-{:04}", index + 1),
            format!("region-{:02}", index / 100 + 1),
            Some("env=lab"),
        );
        let router = site.add(&mut rng, &BRANCH_ROUTER, "", "");
        for _ in 1..per_site {
            let mut pick = rng.random_range(0..total_weight);
            let mut chosen = BRANCH_MIX[0].0;
            for (kind, weight) in BRANCH_MIX {
                if pick < weight {
                    chosen = kind;
                    break;
                }
                pick -= weight;
            }
            site.add(&mut rng, chosen, &router, "");
        }
        site.rows
    }))
}

/// Fixed, so that `--example` always writes the file in deploy/examples.
const EXAMPLE_SEED: u64 = 875;
/// Regions (Georgian cities) and how many branches each has.
const CITIES: [(&str, u32); 8] = [
    ("Tbilisi", 40),
    ("Batumi", 20),
    ("Kutaisi", 18),
    ("Rustavi", 12),
    ("Zugdidi", 10),
    ("Gori", 10),
    ("Telavi", 8),
    ("Poti", 8),
];
/// Cities whose branches hang off the western data centre.
const WEST: [&str; 4] = ["Batumi", "Kutaisi", "Zugdidi", "Poti"];
/// Branch routers in all: one per branch, a second at 230 - 126 = 104 of them.
const BRANCH_ROUTERS: usize = 230;

/// The example inventory: two data centres with two core routers each, and
/// 126 branches in eight regions, each behind its first branch router with
/// the seed's mix (230 branch routers, 130 switches, 115 access points, 105
/// NVRs, 90 ATMs, 180 payboxes).
pub fn example() -> Vec<ImportRow> {
    let mut rng = StdRng::seed_from_u64(EXAMPLE_SEED);
    let mut rows = Vec::new();
    let mut cores: Vec<[String; 2]> = Vec::new();
    for (index, (name, region)) in [("tbilisi-dc1", "Tbilisi"), ("kutaisi-dc1", "Kutaisi")]
        .into_iter()
        .enumerate()
    {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let mut site = SiteRows::new(index, name.to_string(), region.to_string(), None);
        let first = site.add(&mut rng, &CORE_ROUTER, "", "core router");
        let second = site.add(&mut rng, &CORE_ROUTER, "", "core router");
        cores.push([first, second]);
        rows.append(&mut site.rows);
    }

    let branches: Vec<(String, &str, u32)> = CITIES
        .iter()
        .flat_map(|(city, count)| {
            (1..=*count).map(move |number| {
                (
                    format!("{}-{number:03}", city.to_lowercase()),
                    *city,
                    number,
                )
            })
        })
        .collect();
    let mut second_router = vec![false; branches.len()];
    for index in rand::seq::index::sample(&mut rng, branches.len(), BRANCH_ROUTERS - branches.len())
    {
        second_router[index] = true;
    }
    let dealt: Vec<Vec<u32>> = BRANCH_MIX
        .iter()
        .map(|(_, count)| deal(&mut rng, *count, branches.len()))
        .collect();

    for (branch, (name, city, number)) in branches.iter().enumerate() {
        let index = u32::try_from(cores.len() + branch).unwrap_or(u32::MAX);
        let mut site = SiteRows::new(index, name.clone(), (*city).to_string(), None);
        let dc = usize::from(WEST.contains(city));
        let core = &cores[dc][(*number % 2) as usize];
        let router = site.add(&mut rng, &BRANCH_ROUTER, core, "primary WAN router");
        if second_router[branch] {
            site.add(&mut rng, &BRANCH_ROUTER, &router, "backup WAN router");
        }
        for ((kind, _), counts) in BRANCH_MIX.iter().zip(&dealt) {
            for _ in 0..counts[branch] {
                site.add(&mut rng, kind, &router, "");
            }
        }
        rows.append(&mut site.rows);
    }
    rows
}

/// Spreads `count` devices over `sites` sites: everyone gets the same share,
/// and the remainder goes one each to sites chosen at random.
fn deal(rng: &mut StdRng, count: u32, sites: usize) -> Vec<u32> {
    let sites_u32 = u32::try_from(sites).unwrap_or(u32::MAX);
    let mut counts = vec![count / sites_u32; sites];
    let remainder = (count % sites_u32) as usize;
    for index in rand::seq::index::sample(rng, sites, remainder) {
        counts[index] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn count_by_type(rows: &[ImportRow]) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for row in rows {
            *counts.entry(row.device_type.as_str()).or_default() += 1;
        }
        counts
    }

    /// Every parent names a device earlier in the file, so the file can be
    /// imported top to bottom by anything that needs parents first.
    fn assert_parents_come_first(rows: &[ImportRow], parentless: impl Fn(&ImportRow) -> bool) {
        let mut seen = HashSet::new();
        for row in rows {
            if parentless(row) {
                assert_eq!(row.parent, "", "{} should have no parent", row.name);
            } else {
                assert!(
                    seen.contains(row.parent.as_str()),
                    "{} has parent {:?}, not earlier in the file",
                    row.name,
                    row.parent
                );
            }
            assert!(
                seen.insert(row.name.as_str()),
                "duplicate name {}",
                row.name
            );
        }
    }

    fn assert_lab_addresses(rows: &[ImportRow]) {
        let mut seen = HashSet::new();
        for row in rows {
            let ip: Ipv4Addr = row.ip.parse().unwrap();
            let [first, second, _, fourth] = ip.octets();
            assert_eq!(first, 127, "{ip} outside 127.0.0.0/8");
            assert_ne!(second, 0, "{ip} inside 127.0.0.0/16");
            assert!((1..=254).contains(&fourth), "{ip} is not a host address");
            assert!(seen.insert(ip), "{ip} given twice");
        }
    }

    #[test]
    fn the_example_has_the_seed_mix() {
        let rows = example();
        let counts = count_by_type(&rows);
        let core = rows
            .iter()
            .filter(|row| row.tags.contains("role=core-router"))
            .count();
        assert_eq!(core, 4);
        assert_eq!(counts["router"] - core, 230);
        assert_eq!(counts["paybox"], 180);
        assert_eq!(counts["switch"], 130);
        assert_eq!(counts["access_point"], 115);
        assert_eq!(counts["nvr"], 105);
        assert_eq!(counts["atm"], 90);
        assert_eq!(rows.len(), 854);
        let sites: HashSet<&str> = rows.iter().map(|row| row.site.as_str()).collect();
        assert_eq!(sites.len(), 128);
        let regions: HashSet<&str> = rows.iter().map(|row| row.region.as_str()).collect();
        assert_eq!(regions.len(), 8);
        assert!(rows.iter().any(|row| row.name == "tbilisi-001-rtr1"));
        assert!(rows.iter().all(|row| row.snmp_version.is_empty()));
    }

    #[test]
    fn every_example_device_is_behind_its_branch_router() {
        let rows = example();
        assert_parents_come_first(&rows, |row| row.tags.contains("role=core-router"));
        let by_name: HashMap<&str, &ImportRow> =
            rows.iter().map(|row| (row.name.as_str(), row)).collect();
        for row in &rows {
            let Some(parent) = by_name.get(row.parent.as_str()) else {
                continue;
            };
            if row.name.ends_with("-rtr1") {
                assert!(parent.tags.contains("role=core-router"), "{}", row.name);
            } else {
                // The backup router and everything else hang off the site's first router.
                assert_eq!(row.parent, format!("{}-rtr1", row.site), "{}", row.name);
            }
        }
    }

    #[test]
    fn example_addresses_are_unique_lab_addresses() {
        assert_lab_addresses(&example());
    }

    #[test]
    fn the_committed_example_is_the_generator_output() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/inventory.csv");
        let committed = std::fs::read_to_string(path).unwrap();
        let mut generated = Vec::new();
        let mut writer = RowWriter::new(&mut generated).unwrap();
        for row in example() {
            writer.write(&row).unwrap();
        }
        writer.finish().unwrap();
        assert!(
            committed == String::from_utf8(generated).unwrap(),
            "deploy/examples/inventory.csv is stale: netward devices generate --example > deploy/examples/inventory.csv"
        );
    }

    #[test]
    fn a_fleet_has_a_router_per_site_and_everything_behind_it() {
        let rows: Vec<ImportRow> = fleet(30, 12, 7).unwrap().collect();
        assert_eq!(rows.len(), 360);
        assert_parents_come_first(&rows, |row| row.name.ends_with("-rtr1"));
        for site in rows.chunks(12) {
            assert_eq!(site[0].device_type, "router");
            assert!(
                site[1..]
                    .iter()
                    .all(|row| row.parent == site[0].name && row.site == site[0].site)
            );
        }
        assert_eq!(rows[0].name, "site-0001-rtr1");
        assert_eq!(rows[0].ip, "127.1.0.1");
        assert_eq!(rows[0].region, "region-01");
        assert!(rows[0].tags.contains("env=lab"));
        assert!(rows.iter().all(|row| row.snmp_version.is_empty()));
        let counts = count_by_type(&rows);
        for (kind, _) in BRANCH_MIX {
            assert!(counts[kind.device_type] > 0, "no {}", kind.device_type);
        }
        assert_lab_addresses(&rows);
    }

    #[test]
    fn a_benchmark_fleet_fits() {
        let rows: Vec<ImportRow> = fleet(1000, 100, 1).unwrap().collect();
        assert_eq!(rows.len(), 100_000);
        assert_eq!(rows[99_999].site, "site-1000");
        assert_eq!(rows[99_999].ip, "127.4.249.100");
        assert_lab_addresses(&rows);
    }

    #[test]
    fn a_fleet_is_the_same_for_the_same_seed() {
        let names = |seed| -> Vec<(String, String, String)> {
            fleet(5, 50, seed)
                .unwrap()
                .map(|row| (row.name, row.vendor, row.model))
                .collect()
        };
        assert_eq!(names(42), names(42));
        assert_ne!(names(42), names(43));
        assert_eq!(example(), example());
    }

    #[test]
    fn a_fleet_too_large_for_127_8_is_refused() {
        let error = fleet(10, 255, 1).err().unwrap();
        assert!(
            error.to_string().contains("at most 254 devices per site"),
            "{error}"
        );
        let error = fleet(MAX_SITES + 1, 10, 1).err().unwrap();
        assert!(error.to_string().contains("at most 63750 sites"), "{error}");
        assert!(fleet(0, 10, 1).is_err());
        assert!(fleet(10, 0, 1).is_err());
        // The largest fleet that fits ends at the top of 127/8.
        assert_eq!(
            address(MAX_SITES - 1, MAX_PER_SITE - 1),
            Some(Ipv4Addr::new(127, 255, 249, 254))
        );
        assert_eq!(address(MAX_SITES, 0), None);
    }
}

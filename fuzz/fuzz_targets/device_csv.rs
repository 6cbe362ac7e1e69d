//! A device CSV file through the import: the CLI's reader (header check,
//! records to rows, line numbers) and the inventory's `plan` (validation,
//! references, tags) against a small existing inventory.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use netward_inventory::import::{ImportContext, plan};
use netward_shared::proto::v1;

// The reader lives in the binary crate, which has no library to depend on:
// its file is compiled in here as it is (it needs only anyhow, csv and
// netward-shared). Not every function of it is used by this target.
#[allow(dead_code)]
#[path = "../../src/cli/csv_format.rs"]
mod csv_format;

fn context() -> ImportContext {
    let site = v1::Site {
        id: "00000000-0000-4000-8000-000000000001".into(),
        name: "tbilisi-dc1".into(),
        region: "Tbilisi".into(),
        active: Some(true),
        ..Default::default()
    };
    let device = v1::Device {
        id: "00000000-0000-4000-8000-000000000002".into(),
        name: "tbilisi-dc1-core1".into(),
        ip_address: "127.1.0.1".into(),
        site_name: "tbilisi-dc1".into(),
        site_id: site.id.clone(),
        enabled: Some(true),
        device_type: v1::DeviceType::Router as i32,
        ..Default::default()
    };
    ImportContext {
        sites: HashMap::from([(site.name.clone(), site)]),
        credentials: HashMap::from([(
            "lab".into(),
            ("00000000-0000-4000-8000-000000000003".into(), 1),
        )]),
        devices: HashMap::from([(device.name.clone(), device)]),
    }
}

fuzz_target!(|file: &[u8]| {
    let Ok(outcome) = csv_format::read_rows(file) else {
        return;
    };
    let plan = plan(&outcome.rows, &context());
    assert_eq!(
        plan.created + plan.updated + plan.unchanged + plan.failed,
        outcome.rows.len() as u64,
        "every row is counted once"
    );
});

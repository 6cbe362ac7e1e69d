//! A config file's text through the loader (defaults, the TOML file layer,
//! deserialization of the shared settings) and into the sections of the
//! targets built here.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netward_shared::config::{ConfigLoader, Target};

fuzz_target!(|text: &[u8]| {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // One target per input (the first byte picks it): loading is the cost.
    let target = Target::ALL[usize::from(text.bytes().next().unwrap_or(0)) % Target::ALL.len()];
    let Ok(config) = ConfigLoader::new(target).toml(text).load() else {
        return;
    };
    let _ = config.value::<String>("secret_key");
    let _ = config.section::<netward_inventory::InventoryConfig>();
    let _ = config.section::<netward_ping_executor::PingExecutorConfig>();
    let _ = config.section::<netward_snmp_poller::SnmpPollerConfig>();
});

//! Field validation at the edge: every rule names the field, the value and
//! the reason, and every rule is checked so one reply lists all problems.

use std::net::IpAddr;

use netward_shared::proto::v1;

pub use netward_shared::status::Violations;

/// An IPv4 or IPv6 address in its canonical text (RFC 5952 for IPv6).
pub fn normalize_ip(text: &str) -> Option<String> {
    text.trim().parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Checks a site's own fields (not uniqueness: the database does that).
pub fn site(v: &mut Violations, site: &v1::Site) {
    v.name("site.name", &site.name, 128);
    v.text("site.code", &site.code, 32);
    v.text("site.region", &site.region, 128);
    v.text("site.address", &site.address, 512);
    if let Some(lat) = site.latitude
        && !(-90.0..=90.0).contains(&lat)
    {
        v.add("site.latitude", lat, "must be -90..=90");
    }
    if let Some(lon) = site.longitude
        && !(-180.0..=180.0).contains(&lon)
    {
        v.add("site.longitude", lon, "must be -180..=180");
    }
}

/// Checks a device's own fields; references (site, parent, credential) are
/// resolved and checked by the service.
pub fn device(v: &mut Violations, device: &v1::Device) {
    v.name("device.name", &device.name, 128);
    if normalize_ip(&device.ip_address).is_none() {
        v.add(
            "device.ip_address",
            &device.ip_address,
            "not an IPv4 or IPv6 address",
        );
    }
    v.enum_value::<v1::DeviceType>("device.device_type", device.device_type);
    v.text("device.vendor", &device.vendor, 64);
    v.text("device.model", &device.model, 64);
    v.labels("device.tags", &device.tags);
    v.labels("device.executor_selector", &device.executor_selector);
    v.text("device.description", &device.description, 1024);
    if let Some(snmp) = &device.snmp {
        v.enum_value::<v1::SnmpVersion>("device.snmp.version", snmp.version);
        if snmp.port > 65_535 {
            v.add("device.snmp.port", snmp.port, "must be 1..=65535 (0 = 161)");
        }
        v.text("device.snmp.profile", &snmp.profile, 64);
    }
    if let Some(probe) = &device.probe_overrides {
        v.range("device.probe_overrides.count", probe.count, 1, 100);
        v.range(
            "device.probe_overrides.timeout_ms",
            probe.timeout_ms,
            50,
            30_000,
        );
        v.range(
            "device.probe_overrides.interval_ms",
            probe.interval_ms,
            10,
            5_000,
        );
        v.range("device.probe_overrides.retries", probe.retries, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn ip_addresses_are_normalized() {
        assert_eq!(normalize_ip("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            normalize_ip(" 2001:DB8:0:0::1 ").as_deref(),
            Some("2001:db8::1")
        );
        for bad in ["", "10.0.0.300", "10.0.0", "host.example", "::g"] {
            assert_eq!(normalize_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn device_violations_name_every_field() {
        let mut v = Violations::default();
        device(
            &mut v,
            &v1::Device {
                name: " padded".into(),
                ip_address: "300.1.1.1".into(),
                device_type: 99,
                tags: HashMap::from([("bad key".into(), "x".into())]),
                snmp: Some(v1::SnmpSettings {
                    port: 70_000,
                    version: 9,
                    ..Default::default()
                }),
                probe_overrides: Some(v1::ProbeOverrides {
                    count: Some(0),
                    timeout_ms: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let fields: Vec<&str> = v.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "device.name",
                "device.ip_address",
                "device.device_type",
                "device.tags.key",
                "device.snmp.version",
                "device.snmp.port",
                "device.probe_overrides.count",
                "device.probe_overrides.timeout_ms",
            ]
        );
    }
}

//! Field validation at the edge: every rule names the field, the value and
//! the reason, and every rule is checked so one reply lists all problems.

use std::collections::HashMap;
use std::net::IpAddr;

use netward_shared::proto::v1;
use netward_shared::status::FieldViolation;

/// Collects violations while a message is checked.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn add(
        &mut self,
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) {
        self.0.push(FieldViolation::new(field, value, reason));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A required, trimmed, bounded name-like text.
    pub fn name(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, value, "required");
        } else if value.trim() != value {
            self.add(field, value, "must not start or end with white space");
        } else if value.chars().count() > max {
            self.add(field, value, format!("at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.add(field, value, "must not contain control characters");
        }
    }

    /// An optional bounded free text.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.add(field, value, format!("at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            self.add(field, value, "must not contain control characters");
        }
    }

    pub fn range(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) {
        if let Some(value) = value
            && !(min..=max).contains(&value)
        {
            self.add(field, value, format!("must be {min}..={max}"));
        }
    }

    /// Tag-like maps: at most 32 entries, keys of [A-Za-z0-9_.-]{1,64},
    /// values of at most 256 characters.
    pub fn labels(&mut self, field: &str, map: &HashMap<String, String>) {
        if map.len() > 32 {
            self.add(field, map.len(), "at most 32 entries");
        }
        for (key, value) in map {
            let key_ok = !key.is_empty()
                && key.len() <= 64
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !key_ok {
                self.add(
                    format!("{field}.key"),
                    key,
                    "1-64 characters of A-Z a-z 0-9 _ . -",
                );
            }
            if value.chars().count() > 256 || value.chars().any(char::is_control) {
                self.add(
                    format!("{field}[{key}]"),
                    value,
                    "at most 256 characters, no control characters",
                );
            }
        }
    }

    pub fn enum_value<E: TryFrom<i32>>(&mut self, field: &str, value: i32) {
        if E::try_from(value).is_err() {
            self.add(field, value, "unknown enum value");
        }
    }
}

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

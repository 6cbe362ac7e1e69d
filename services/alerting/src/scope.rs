//! Scopes select devices: a rule's scope and a silence's matchers. This
//! module owns the match (with its specificity — the most specific rule of
//! a kind wins) and the check of a scope against the inventory copy.

use netward_shared::inventory_copy::{CopiedDevice, InventoryCopy};
use netward_shared::proto::v1;
use netward_shared::status::FieldViolation;

/// How specifically `scope` selects `device` (device 5, tag 4, site 3,
/// device type 2, global 1), or `None` when it does not select it.
pub fn specificity(scope: &v1::Scope, device: &CopiedDevice) -> Option<u8> {
    let value = scope.value.as_str();
    match v1::ScopeKind::try_from(scope.kind).ok()? {
        v1::ScopeKind::Device => (value == &*device.id || value == &*device.name).then_some(5),
        v1::ScopeKind::Tag => {
            let (k, v) = value.split_once('=')?;
            (device.tags.get(k) == Some(v)).then_some(4)
        }
        v1::ScopeKind::Site => {
            (value == &*device.site_id || value == &*device.site_name).then_some(3)
        }
        v1::ScopeKind::DeviceType => {
            let name = v1::DeviceType::try_from(device.device_type)
                .ok()?
                .as_str_name();
            (value == name).then_some(2)
        }
        v1::ScopeKind::Global | v1::ScopeKind::Unspecified => Some(1),
    }
}

/// Checks a scope and returns it normalised: a device or site given by
/// name is stored by id (so a rename does not break it), a device type is
/// accepted with or without its `DEVICE_TYPE_` prefix. Unknown devices and
/// sites are rejected once the inventory copy is synced.
pub fn normalize(
    field: &str,
    scope: &v1::Scope,
    copy: &InventoryCopy,
) -> Result<v1::Scope, FieldViolation> {
    let value = scope.value.trim();
    let violation = |reason: &str| FieldViolation::new(format!("{field}.value"), value, reason);
    let kind = v1::ScopeKind::try_from(scope.kind)
        .ok()
        .filter(|k| *k != v1::ScopeKind::Unspecified)
        .ok_or_else(|| {
            FieldViolation::new(
                format!("{field}.kind"),
                scope.kind,
                "GLOBAL, SITE, DEVICE_TYPE, TAG or DEVICE",
            )
        })?;
    let normalized = match kind {
        v1::ScopeKind::Global => {
            if !value.is_empty() {
                return Err(violation("must be empty for GLOBAL"));
            }
            String::new()
        }
        v1::ScopeKind::Device => {
            let device = copy
                .devices
                .values()
                .find(|d| &*d.id == value || &*d.name == value);
            match device {
                Some(device) => device.id.to_string(),
                None if !copy.synced && uuid::Uuid::parse_str(value).is_ok() => value.to_string(),
                None => return Err(violation("no such device in the inventory (id or name)")),
            }
        }
        v1::ScopeKind::Site => {
            let site = copy
                .devices
                .values()
                .find(|d| &*d.site_id == value || &*d.site_name == value);
            match site {
                Some(device) => device.site_id.to_string(),
                None if !copy.synced && uuid::Uuid::parse_str(value).is_ok() => value.to_string(),
                None => {
                    return Err(violation(
                        "no device of the inventory is in this site (id or name)",
                    ));
                }
            }
        }
        v1::ScopeKind::DeviceType => {
            let name = if value.starts_with("DEVICE_TYPE_") {
                value.to_string()
            } else {
                format!("DEVICE_TYPE_{}", value.to_uppercase())
            };
            match v1::DeviceType::from_str_name(&name) {
                Some(t) if t != v1::DeviceType::Unspecified => name,
                _ => return Err(violation("not a device type, e.g. DEVICE_TYPE_ROUTER")),
            }
        }
        v1::ScopeKind::Tag => match value.split_once('=') {
            Some((k, _)) if !k.is_empty() => value.to_string(),
            _ => return Err(violation("a tag as key=value")),
        },
        v1::ScopeKind::Unspecified => unreachable!("rejected above"),
    };
    Ok(v1::Scope {
        kind: kind as i32,
        value: normalized,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn device() -> v1::Device {
        v1::Device {
            id: "7d4c6a52-8c1e-4f0e-9a57-0f3d1a3c9b11".into(),
            name: "tbilisi-01-atm-3".into(),
            site_id: "0b8e3c8e-2f7a-4f77-8f0a-6b8c2c7e5d10".into(),
            site_name: "tbilisi-01".into(),
            device_type: v1::DeviceType::Atm as i32,
            tags: HashMap::from([("tier".into(), "gold".into())]),
            ..Default::default()
        }
    }

    fn scope(kind: v1::ScopeKind, value: &str) -> v1::Scope {
        v1::Scope {
            kind: kind as i32,
            value: value.into(),
        }
    }

    #[test]
    fn specificity_orders_device_tag_site_type_global() {
        let d = device();
        let cases = [
            (scope(v1::ScopeKind::Device, &d.id), Some(5)),
            (scope(v1::ScopeKind::Device, "tbilisi-01-atm-3"), Some(5)),
            (scope(v1::ScopeKind::Device, "other"), None),
            (scope(v1::ScopeKind::Tag, "tier=gold"), Some(4)),
            (scope(v1::ScopeKind::Tag, "tier=silver"), None),
            (scope(v1::ScopeKind::Tag, "tier"), None),
            (scope(v1::ScopeKind::Site, "tbilisi-01"), Some(3)),
            (scope(v1::ScopeKind::DeviceType, "DEVICE_TYPE_ATM"), Some(2)),
            (scope(v1::ScopeKind::DeviceType, "DEVICE_TYPE_ROUTER"), None),
            (scope(v1::ScopeKind::Global, ""), Some(1)),
        ];
        for (scope, want) in cases {
            let copied = CopiedDevice::of(d.clone(), &mut Default::default());
            assert_eq!(specificity(&scope, &copied), want, "{scope:?}");
        }
    }

    #[test]
    fn normalize_stores_ids_and_rejects_unknowns() {
        let d = device();
        let copy = InventoryCopy::of([d.clone()], 1);
        let ok = |s: v1::Scope| normalize("scope", &s, &copy).map(|s| s.value);
        assert_eq!(ok(scope(v1::ScopeKind::Device, &d.name)), Ok(d.id.clone()));
        assert_eq!(
            ok(scope(v1::ScopeKind::Site, "tbilisi-01")),
            Ok(d.site_id.clone())
        );
        assert_eq!(
            ok(scope(v1::ScopeKind::DeviceType, "atm")),
            Ok("DEVICE_TYPE_ATM".into())
        );
        for bad in [
            scope(v1::ScopeKind::Device, "nope"),
            scope(v1::ScopeKind::Site, "batumi-02"),
            scope(v1::ScopeKind::DeviceType, "toaster"),
            scope(v1::ScopeKind::Tag, "=x"),
            scope(v1::ScopeKind::Global, "x"),
            scope(v1::ScopeKind::Unspecified, ""),
        ] {
            assert!(ok(bad.clone()).is_err(), "{bad:?} accepted");
        }
    }
}

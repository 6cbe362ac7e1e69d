//! What a region- or site-scoped caller may see and change: devices by
//! their place in the inventory copy, alerts by their device, silences by
//! their matchers. Pure functions; every one answers yes at once for an
//! unlimited caller, so the common path costs nothing.

use netward_shared::auth::Scope;
use netward_shared::inventory_copy::{CopiedDevice, InventoryCopy};
use netward_shared::proto::v1;

/// Whether `device`'s region or site is in `scope`.
pub fn device_allowed(scope: &Scope, device: &CopiedDevice) -> bool {
    scope.allows(
        &device.region,
        &[&device.site_id, &device.site_name, &device.site_code],
    )
}

/// Whether the device `id` is in `scope`: a device the copy does not know
/// is outside every limited scope (its place cannot be told).
pub fn device_id_allowed(scope: &Scope, copy: &InventoryCopy, id: &str) -> bool {
    scope.is_unlimited()
        || copy
            .devices
            .get(id)
            .is_some_and(|device| device_allowed(scope, device))
}

/// Whether `alert` is in `scope`: by its device's place now, or by the
/// place the alert recorded when the device has left the inventory.
pub fn alert_allowed(scope: &Scope, copy: &InventoryCopy, alert: &v1::Alert) -> bool {
    if scope.is_unlimited() {
        return true;
    }
    match copy.devices.get(&alert.device_id) {
        Some(device) => device_allowed(scope, device),
        None => scope.allows(&alert.region, &[&alert.site_id, &alert.site_name]),
    }
}

/// The region an alert's device is in, for messages.
pub fn alert_region(copy: &InventoryCopy, alert: &v1::Alert) -> String {
    copy.devices
        .get(&alert.device_id)
        .map_or_else(|| alert.region.clone(), |d| d.region.to_string())
}

/// Whether silence `matchers` select only devices inside `scope`: matchers
/// must all hold, so one DEVICE or SITE matcher inside the scope confines
/// the silence, and none may name a device or site outside it. GLOBAL,
/// DEVICE_TYPE and TAG matchers alone select devices of every region.
/// `Err` says why not.
pub fn silence_confined(
    scope: &Scope,
    copy: &InventoryCopy,
    matchers: &[v1::Scope],
) -> Result<(), String> {
    if scope.is_unlimited() {
        return Ok(());
    }
    let mut confined = false;
    for matcher in matchers {
        let value = matcher.value.trim();
        let selected: Vec<&CopiedDevice> = match v1::ScopeKind::try_from(matcher.kind) {
            Ok(v1::ScopeKind::Device) => copy
                .devices
                .values()
                .filter(|d| &*d.id == value || &*d.name == value)
                .map(|d| &**d)
                .collect(),
            Ok(v1::ScopeKind::Site) => copy
                .devices
                .values()
                .filter(|d| &*d.site_id == value || &*d.site_name == value)
                .map(|d| &**d)
                .collect(),
            _ => continue,
        };
        if selected.is_empty() {
            return Err(format!(
                "{value:?} is not a device or site of the inventory this token can see ({scope})"
            ));
        }
        if let Some(outside) = selected.iter().find(|d| !device_allowed(scope, d)) {
            return Err(format!(
                "{value:?} is in region {:?}, outside this token's scope ({scope})",
                &*outside.region
            ));
        }
        confined = true;
    }
    if confined {
        Ok(())
    } else {
        Err(format!(
            "a token limited to {scope} needs a DEVICE or SITE matcher inside its scope: \
             GLOBAL, DEVICE_TYPE and TAG matchers alone select devices of every region"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, site: &str, region: &str) -> v1::Device {
        v1::Device {
            id: id.into(),
            name: format!("{id}-name"),
            site_id: format!("{site}-id"),
            site_name: site.into(),
            site_code: format!("{site}-code"),
            region: region.into(),
            ..Default::default()
        }
    }

    fn emea() -> Scope {
        Scope {
            regions: vec!["EMEA".into()],
            sites: Vec::new(),
        }
    }

    fn copy() -> InventoryCopy {
        InventoryCopy::of(
            [
                device("d1", "paris", "EMEA"),
                device("d2", "boston", "AMER"),
            ],
            1,
        )
    }

    fn matcher(kind: v1::ScopeKind, value: &str) -> v1::Scope {
        v1::Scope {
            kind: kind as i32,
            value: value.into(),
        }
    }

    #[test]
    fn devices_and_alerts_by_their_place() {
        let copy = copy();
        assert!(device_id_allowed(&emea(), &copy, "d1"));
        assert!(!device_id_allowed(&emea(), &copy, "d2"));
        assert!(!device_id_allowed(&emea(), &copy, "gone"));
        assert!(device_id_allowed(&Scope::default(), &copy, "gone"));
        let by_site = Scope {
            regions: Vec::new(),
            sites: vec!["boston-code".into()],
        };
        assert!(device_id_allowed(&by_site, &copy, "d2"));
        assert!(!device_id_allowed(&by_site, &copy, "d1"));

        let alert = |device: &str, region: &str| v1::Alert {
            device_id: device.into(),
            region: region.into(),
            ..Default::default()
        };
        // The copy's place wins over the one recorded on the alert.
        assert!(alert_allowed(&emea(), &copy, &alert("d1", "AMER")));
        assert!(!alert_allowed(&emea(), &copy, &alert("d2", "EMEA")));
        // A device gone from the inventory: the recorded place.
        assert!(alert_allowed(&emea(), &copy, &alert("gone", "EMEA")));
        assert!(!alert_allowed(&emea(), &copy, &alert("gone", "AMER")));
        assert_eq!(alert_region(&copy, &alert("d2", "")), "AMER");
    }

    #[test]
    fn silences_must_be_confined_by_a_device_or_site_matcher() {
        use v1::ScopeKind::*;
        let copy = copy();
        let confined = |m: &[v1::Scope]| silence_confined(&emea(), &copy, m);
        assert!(confined(&[matcher(Device, "d1")]).is_ok());
        assert!(confined(&[matcher(Site, "paris")]).is_ok());
        assert!(confined(&[matcher(Site, "paris-id"), matcher(Tag, "tier=gold")]).is_ok());
        for refused in [
            vec![matcher(Global, "")],
            vec![matcher(Tag, "tier=gold")],
            vec![matcher(DeviceType, "DEVICE_TYPE_ATM")],
            vec![matcher(Device, "d2")],
            vec![matcher(Site, "boston")],
            vec![matcher(Site, "paris"), matcher(Device, "d2")],
            vec![matcher(Device, "nope")],
        ] {
            assert!(confined(&refused).is_err(), "{refused:?} accepted");
        }
        let error = confined(&[matcher(Device, "d2-name")]).unwrap_err();
        assert!(error.contains("AMER"), "{error}");
        assert!(silence_confined(&Scope::default(), &copy, &[matcher(Global, "")]).is_ok());
    }
}

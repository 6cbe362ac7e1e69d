//! What a region- or site-scoped caller may see and change in the
//! inventory: sites by their region, name, code or id, devices by their
//! site. Every check answers yes at once for an unlimited caller.

use netward_shared::auth::Scope;
use netward_shared::proto::v1;

use crate::error::Error;

pub fn site_allowed(scope: &Scope, site: &v1::Site) -> bool {
    scope.allows(&site.region, &[&site.id, &site.name, &site.code])
}

/// By the device's site, as the store returns it (with region and code).
pub fn device_allowed(scope: &Scope, device: &v1::Device) -> bool {
    scope.allows(
        &device.region,
        &[&device.site_id, &device.site_name, &device.site_code],
    )
}

/// The refusal of a write to `what` (a device or site) in `region`.
pub fn outside(scope: &Scope, what: &str, region: &str) -> Error {
    Error::PermissionDenied(format!(
        "{what} is in region {region:?}, outside this token's scope ({scope})"
    ))
}

/// Credentials serve devices of every region: only unlimited callers
/// change them.
pub fn check_credential_write(scope: &Scope) -> Result<(), Error> {
    if scope.is_unlimited() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "SNMP credentials are shared by every region: a token limited to {scope} cannot change them"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_and_devices_by_region_or_site() {
        let scope = Scope {
            regions: vec!["EMEA".into()],
            sites: vec!["NYC-01".into()],
        };
        let site = |name: &str, code: &str, region: &str| v1::Site {
            id: format!("{name}-id"),
            name: name.into(),
            code: code.into(),
            region: region.into(),
            ..Default::default()
        };
        assert!(site_allowed(&scope, &site("paris", "PAR-01", "EMEA")));
        assert!(site_allowed(&scope, &site("new-york", "NYC-01", "AMER")));
        assert!(!site_allowed(&scope, &site("boston", "BOS-01", "AMER")));
        assert!(site_allowed(&Scope::default(), &site("x", "", "")));
        let device = |site_code: &str, region: &str| v1::Device {
            site_code: site_code.into(),
            region: region.into(),
            ..Default::default()
        };
        assert!(device_allowed(&scope, &device("PAR-01", "emea")));
        assert!(!device_allowed(&scope, &device("BOS-01", "AMER")));
        assert!(check_credential_write(&scope).is_err());
        assert!(check_credential_write(&Scope::default()).is_ok());
    }
}
